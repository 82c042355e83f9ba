/**
 * How `get` and `describe` print objects: kubectl's tables (and their `-o wide` columns), and
 * Kubernetes-shaped JSON and YAML (a `List` for many).
 */
import { stringify } from 'yaml';
import { formatSelector, type KObject, type KindInfo } from '../protocol/index.js';
import { condition, type KubeEvent } from '../actors/index.js';

export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml' | 'name';

export function parseOutput(o: string | undefined): OutputFormat {
  if (o === undefined) return 'table';
  if (['wide', 'json', 'yaml', 'name'].includes(o)) return o as OutputFormat;
  throw new Error(`--output: expected one of wide, json, yaml, name, got ${JSON.stringify(o)}`);
}

/** "5s", "3m", "2h", "4d", as kubectl's AGE. */
export function age(ts: string | null | undefined, now = Date.now()): string {
  if (!ts) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('').trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

/** What kubectl shows in a pod's STATUS column. */
export function podStatusText(p: KObject): string {
  if (p.metadata.deletionTimestamp) return 'Terminating';
  const cs = (p.status?.containerStatuses ?? []) as { state: Record<string, { reason?: string }> }[];
  for (const c of cs) {
    const w = c.state.waiting;
    if (w?.reason && w.reason !== 'ContainerCreating') return w.reason;
    const t = c.state.terminated;
    if (t?.reason && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Running') return t.reason;
  }
  if (p.status?.phase === 'Pending' && p.spec.nodeName) return 'ContainerCreating';
  return p.status?.phase ?? 'Pending';
}

function podReady(p: KObject): string {
  const cs = (p.status?.containerStatuses ?? []) as { ready: boolean }[];
  return `${cs.filter((c) => c.ready).length}/${p.spec.containers.length}`;
}

function restarts(p: KObject): string {
  return String(((p.status?.containerStatuses ?? []) as { restartCount: number }[]).reduce((n, c) => n + (c.restartCount ?? 0), 0));
}

function images(tpl: { spec: { containers: { name: string; image: string }[] } }): [string, string] {
  return [tpl.spec.containers.map((c) => c.name).join(','), tpl.spec.containers.map((c) => c.image).join(',')];
}

function servicePorts(svc: KObject): string {
  const ports = (svc.spec.ports ?? []) as { port: number; protocol?: string; nodePort?: number }[];
  if (ports.length === 0) return '<none>';
  return ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',');
}

/** The table for objects of one kind. */
export function tableFor(info: KindInfo, objects: KObject[], opts: { wide?: boolean; allNamespaces?: boolean; now?: number } = {}): string {
  const now = opts.now ?? Date.now();
  const wide = opts.wide === true;
  let header: string[];
  let row: (o: KObject) => string[];
  switch (info.kind) {
    case 'Pod':
      header = ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE', ...(wide ? ['IP', 'NODE'] : [])];
      row = (p) => [p.metadata.name, podReady(p), podStatusText(p), restarts(p), age(p.metadata.creationTimestamp, now), ...(wide ? [p.status?.podIP ?? '<none>', p.spec.nodeName ?? '<none>'] : [])];
      break;
    case 'Deployment':
      header = ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE', ...(wide ? ['CONTAINERS', 'IMAGES', 'SELECTOR'] : [])];
      row = (d) => [
        d.metadata.name,
        `${d.status?.readyReplicas ?? 0}/${d.spec.replicas}`,
        String(d.status?.updatedReplicas ?? 0),
        String(d.status?.availableReplicas ?? 0),
        age(d.metadata.creationTimestamp, now),
        ...(wide ? [...images(d.spec.template), formatSelector(d.spec.selector)] : []),
      ];
      break;
    case 'ReplicaSet':
      header = ['NAME', 'DESIRED', 'CURRENT', 'READY', 'AGE', ...(wide ? ['CONTAINERS', 'IMAGES', 'SELECTOR'] : [])];
      row = (r) => [
        r.metadata.name,
        String(r.spec.replicas),
        String(r.status?.replicas ?? 0),
        String(r.status?.readyReplicas ?? 0),
        age(r.metadata.creationTimestamp, now),
        ...(wide ? [...images(r.spec.template), formatSelector(r.spec.selector)] : []),
      ];
      break;
    case 'Node':
      header = ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION', ...(wide ? ['INTERNAL-IP', 'OS-IMAGE', 'CONTAINER-RUNTIME'] : [])];
      row = (n) => {
        const ready = condition(n, 'Ready')?.status;
        const st = [ready === 'True' ? 'Ready' : ready === undefined ? 'Unknown' : 'NotReady', ...(n.spec?.unschedulable ? ['SchedulingDisabled'] : [])].join(',');
        return [n.metadata.name, st, '<none>', age(n.metadata.creationTimestamp, now), n.status?.nodeInfo?.kubeletVersion ?? '', ...(wide ? [n.status?.addresses?.[0]?.address ?? '<none>', 'linux', n.status?.nodeInfo?.containerRuntimeVersion ?? ''] : [])];
      };
      break;
    case 'Service':
      header = ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE', ...(wide ? ['SELECTOR'] : [])];
      row = (s) => [
        s.metadata.name,
        s.spec.type ?? 'ClusterIP',
        s.spec.clusterIP ?? '<pending>',
        '<none>',
        servicePorts(s),
        age(s.metadata.creationTimestamp, now),
        ...(wide ? [Object.entries(s.spec.selector ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '<none>'] : []),
      ];
      break;
    case 'Endpoints':
      header = ['NAME', 'ENDPOINTS', 'AGE'];
      row = (e) => [e.metadata.name, endpointsText(e), age(e.metadata.creationTimestamp, now)];
      break;
    case 'Namespace':
      header = ['NAME', 'STATUS', 'AGE'];
      row = (n) => [n.metadata.name, n.status?.phase ?? 'Active', age(n.metadata.creationTimestamp, now)];
      break;
    default:
      header = ['NAME', 'AGE'];
      row = (o) => [o.metadata.name, age(o.metadata.creationTimestamp, now)];
  }
  if (opts.allNamespaces && info.namespaced) {
    header = ['NAMESPACE', ...header];
    const inner = row;
    row = (o) => [o.metadata.namespace ?? '', ...inner(o)];
  }
  return table(header, objects.map(row));
}

/** kubectl's ENDPOINTS column: ip:port of ready addresses, the first three, then "+ N more...". */
export function endpointsText(e: KObject): string {
  const all: string[] = [];
  for (const sub of (e as { subsets?: { addresses?: { ip: string }[]; ports?: { port: number }[] }[] }).subsets ?? []) {
    for (const a of sub.addresses ?? []) for (const p of sub.ports ?? [{ port: 0 }]) all.push(p.port ? `${a.ip}:${p.port}` : a.ip);
  }
  if (all.length === 0) return '<none>';
  return all.length > 3 ? `${all.slice(0, 3).join(',')} + ${all.length - 3} more...` : all.join(',');
}

export function eventsTable(events: KubeEvent[], opts: { allNamespaces?: boolean; now?: number } = {}): string {
  const now = opts.now ?? Date.now();
  const header = [...(opts.allNamespaces ? ['NAMESPACE'] : []), 'LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE'];
  const rows = events.map((e) => [
    ...(opts.allNamespaces ? [e.metadata.namespace] : []),
    age(e.lastTimestamp, now),
    e.type,
    e.reason,
    `${e.involvedObject.kind.toLowerCase()}/${e.involvedObject.name}`,
    e.count > 1 ? `${e.message} (x${e.count})` : e.message,
  ]);
  return table(header, rows);
}

/** Kubernetes-shaped JSON or YAML; many objects become a `List`. */
export function serialize(objects: KObject[] | KObject, format: 'json' | 'yaml', single: boolean): string {
  const value = single && !Array.isArray(objects) ? objects : { apiVersion: 'v1', kind: 'List', items: objects, metadata: { resourceVersion: '' } };
  return format === 'json' ? `${JSON.stringify(value, null, 2)}\n` : stringify(value, { aliasDuplicateObjects: false });
}

export function nameOf(info: KindInfo, o: KObject): string {
  const group = info.apiVersion.includes('/') ? `.${info.apiVersion.split('/')[0]}` : '';
  return `${info.kind.toLowerCase()}${group}/${o.metadata.name}`;
}
