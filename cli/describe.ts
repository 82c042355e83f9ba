/**
 * `troupe describe`: an object as kubectl describes it — its main fields, each container's state
 * for pods, conditions, and the recent Events about it.
 */
import { formatSelector, type KObject } from '../protocol/index.js';
import type { KubeEvent } from '../actors/index.js';
import { age, endpointsText, podStatusText } from './printers.js';

function kv(lines: string[], key: string, value: unknown, indent = 0): void {
  lines.push(`${' '.repeat(indent)}${`${key}:`.padEnd(Math.max(0, 22 - indent))}${value === undefined || value === '' ? '<none>' : String(value)}`);
}

function mapText(m: Record<string, string> | undefined): string {
  const e = Object.entries(m ?? {});
  return e.length ? e.map(([k, v]) => `${k}=${v}`).join('\n                      ') : '<none>';
}

function containers(lines: string[], list: { name: string; image: string; ports?: { containerPort: number; protocol?: string }[]; command?: string[]; args?: string[]; resources?: { limits?: object; requests?: object } }[], statuses?: KObject['status']): void {
  lines.push('Containers:');
  for (const c of list) {
    lines.push(`  ${c.name}:`);
    kv(lines, 'Image', c.image, 4);
    kv(lines, 'Port', (c.ports ?? []).map((p) => `${p.containerPort}/${p.protocol ?? 'TCP'}`).join(', ') || '<none>', 4);
    if (c.command) kv(lines, 'Command', c.command.join(' '), 4);
    if (c.args) kv(lines, 'Args', c.args.join(' '), 4);
    if (c.resources?.limits) kv(lines, 'Limits', JSON.stringify(c.resources.limits), 4);
    if (c.resources?.requests) kv(lines, 'Requests', JSON.stringify(c.resources.requests), 4);
    const st = ((statuses?.containerStatuses ?? []) as { name: string; state: Record<string, Record<string, unknown>>; lastState?: Record<string, Record<string, unknown>>; ready: boolean; restartCount: number }[]).find((s) => s.name === c.name);
    if (!st) continue;
    stateLines(lines, 'State', st.state);
    if (st.lastState) stateLines(lines, 'Last State', st.lastState);
    kv(lines, 'Ready', st.ready ? 'True' : 'False', 4);
    kv(lines, 'Restart Count', st.restartCount, 4);
  }
}

function stateLines(lines: string[], title: string, state: Record<string, Record<string, unknown>>): void {
  const [name, detail] = Object.entries(state)[0] ?? ['unknown', {}];
  kv(lines, title, name[0]!.toUpperCase() + name.slice(1), 4);
  for (const [k, v] of Object.entries(detail ?? {})) kv(lines, `  ${k[0]!.toUpperCase()}${k.slice(1)}`, v, 4);
}

function conditions(lines: string[], o: KObject): void {
  const list = (o.status?.conditions ?? []) as { type: string; status: string; reason?: string; message?: string }[];
  if (!list.length) return;
  lines.push('Conditions:');
  lines.push('  Type              Status   Reason');
  for (const c of list) lines.push(`  ${c.type.padEnd(18)}${c.status.padEnd(9)}${c.reason ?? ''}${c.message ? `  (${c.message})` : ''}`);
}

export function describeObject(o: KObject, events: KubeEvent[], now = Date.now(), endpoints?: KObject): string {
  const lines: string[] = [];
  kv(lines, 'Name', o.metadata.name);
  if (o.metadata.namespace) kv(lines, 'Namespace', o.metadata.namespace);
  kv(lines, 'Labels', mapText(o.metadata.labels));
  kv(lines, 'Annotations', mapText(o.metadata.annotations));
  kv(lines, 'CreationTimestamp', o.metadata.creationTimestamp);
  const owner = o.metadata.ownerReferences?.find((r) => r.controller);
  if (owner) kv(lines, 'Controlled By', `${owner.kind}/${owner.name}`);
  switch (o.kind) {
    case 'Pod':
      kv(lines, 'Node', o.spec.nodeName ?? '<none>');
      kv(lines, 'Status', podStatusText(o));
      if (o.metadata.deletionTimestamp) kv(lines, 'Terminating since', o.metadata.deletionTimestamp);
      kv(lines, 'IP', o.status?.podIP);
      kv(lines, 'Start Time', o.status?.startTime);
      containers(lines, o.spec.containers, o.status);
      conditions(lines, o);
      kv(lines, 'Restart Policy', o.spec.restartPolicy);
      kv(lines, 'Node-Selectors', mapText(o.spec.nodeSelector));
      kv(lines, 'Tolerations', (o.spec.tolerations ?? []).map((t: { key?: string; effect?: string; operator?: string; tolerationSeconds?: number }) => `${t.key ?? ''}${t.operator === 'Exists' ? '' : '='}:${t.effect ?? ''}${t.tolerationSeconds !== undefined ? ` for ${t.tolerationSeconds}s` : ''}`).join(', ') || '<none>');
      break;
    case 'Deployment':
    case 'ReplicaSet': {
      kv(lines, 'Selector', formatSelector(o.spec.selector));
      const st = o.status ?? {};
      if (o.kind === 'Deployment') {
        kv(lines, 'Replicas', `${o.spec.replicas} desired | ${st.updatedReplicas ?? 0} updated | ${st.replicas ?? 0} total | ${st.availableReplicas ?? 0} available | ${st.unavailableReplicas ?? 0} unavailable`);
        kv(lines, 'StrategyType', o.spec.strategy?.type);
        kv(lines, 'MinReadySeconds', o.spec.minReadySeconds ?? 0);
        if (o.spec.strategy?.rollingUpdate) kv(lines, 'RollingUpdateStrategy', `${o.spec.strategy.rollingUpdate.maxUnavailable} max unavailable, ${o.spec.strategy.rollingUpdate.maxSurge} max surge`);
        if (o.spec.paused) kv(lines, 'Paused', 'true');
      } else {
        kv(lines, 'Replicas', `${st.replicas ?? 0} current / ${o.spec.replicas} desired`);
        kv(lines, 'Pods Status', `${st.readyReplicas ?? 0} Ready / ${st.availableReplicas ?? 0} Available`);
      }
      lines.push('Pod Template:');
      kv(lines, 'Labels', mapText(o.spec.template.metadata?.labels), 2);
      containers(lines, o.spec.template.spec.containers);
      conditions(lines, o);
      break;
    }
    case 'Node':
      kv(lines, 'Unschedulable', o.spec?.unschedulable ? 'true' : 'false');
      kv(lines, 'Taints', (o.spec?.taints ?? []).map((t: { key: string; value?: string; effect: string }) => `${t.key}${t.value ? `=${t.value}` : ''}:${t.effect}`).join(', ') || '<none>');
      conditions(lines, o);
      kv(lines, 'Capacity', JSON.stringify(o.status?.capacity ?? {}));
      kv(lines, 'Allocatable', JSON.stringify(o.status?.allocatable ?? {}));
      break;
    case 'Service':
      kv(lines, 'Selector', mapText(o.spec.selector));
      kv(lines, 'Type', o.spec.type);
      kv(lines, 'IP', o.spec.clusterIP);
      for (const p of o.spec.ports ?? []) kv(lines, 'Port', `${p.name ?? '<unset>'} ${p.port}/${p.protocol ?? 'TCP'} → ${p.targetPort}`);
      kv(lines, 'Session Affinity', o.spec.sessionAffinity);
      kv(lines, 'Endpoints', endpoints ? endpointsText(endpoints) : '<none>');
      break;
    default:
      kv(lines, 'Status', o.status?.phase);
  }
  if (events.length === 0) lines.push('Events:                <none>');
  else {
    lines.push('Events:');
    lines.push('  Type     Reason              Age    From                Message');
    for (const e of events.slice(-20)) {
      lines.push(`  ${e.type.padEnd(9)}${e.reason.padEnd(20)}${age(e.lastTimestamp, now).padEnd(7)}${e.source.component.padEnd(20)}${e.message}${e.count > 1 ? ` (x${e.count})` : ''}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
