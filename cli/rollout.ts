/**
 * `troupe rollout status|history|undo|restart|pause|resume deploy/NAME`.
 */
import { parseArgs } from 'node:util';
import { HASH_LABEL, REVISION, Resources, condition, controllerRef, revisionOf, type Bus } from '../actors/index.js';
import { NotFoundError, ValidationError, copyJson, kindInfo, sameJson, type KObject } from '../protocol/index.js';
import { UsageError, kindArg, type Io } from './resource-commands.js';

const DEPLOY = kindInfo('Deployment')!;
const RS = kindInfo('ReplicaSet')!;

async function ownedReplicaSets(res: Resources, d: KObject): Promise<KObject[]> {
  return (await res.list(RS, { namespace: d.metadata.namespace })).filter((rs) => controllerRef(rs)?.uid === d.metadata.uid).sort((a, b) => revisionOf(a) - revisionOf(b));
}

export async function cmdRollout(bus: Bus, args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    strict: true,
    allowPositionals: true,
    options: { namespace: { type: 'string', short: 'n' }, server: { type: 'string' }, 'to-revision': { type: 'string' }, revision: { type: 'string' }, timeout: { type: 'string' }, watch: { type: 'string', short: 'w' } },
  });
  if (!['status', 'history', 'undo', 'restart', 'pause', 'resume'].includes(sub ?? '')) throw new UsageError('usage: troupe rollout status|history|undo|restart|pause|resume deployment/NAME');
  let kind: string | undefined;
  let name: string | undefined;
  if (positionals.length === 1 && positionals[0]!.includes('/')) [kind, name] = positionals[0]!.split('/', 2);
  else if (positionals.length === 2) [kind, name] = positionals;
  if (!kind || !name) throw new UsageError(`usage: troupe rollout ${sub} deployment/NAME`);
  if (kindArg(kind).kind !== 'Deployment') throw new UsageError(`rollout works on deployments, not ${kind}`);
  const ns = values.namespace ?? 'default';
  const res = await Resources.open(bus);
  const d = await res.get(DEPLOY, ns, name);
  if (!d) throw new NotFoundError(`deployments.apps "${name}" not found`);
  switch (sub) {
    case 'status':
      return status(res, ns, name, io, values.timeout === undefined ? 0 : parseDuration(values.timeout), values.watch !== 'false');
    case 'history': {
      const rss = await ownedReplicaSets(res, d);
      if (values.revision !== undefined) {
        const rs = rss.find((r) => String(revisionOf(r)) === values.revision);
        if (!rs) throw new NotFoundError(`unable to find the specified revision ${values.revision}`);
        io.out.write(`deployment.apps/${name} with revision #${values.revision}\nPod Template:\n  Labels: ${Object.entries(rs.spec.template.metadata?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',')}\n  Containers:\n`);
        for (const c of rs.spec.template.spec.containers) io.out.write(`   ${c.name}:\n    Image: ${c.image}\n`);
        return 0;
      }
      io.out.write(`deployment.apps/${name}\nREVISION  CHANGE-CAUSE\n`);
      for (const rs of rss) io.out.write(`${String(revisionOf(rs)).padEnd(10)}${rs.metadata.annotations?.['kubernetes.io/change-cause'] ?? '<none>'}\n`);
      return 0;
    }
    case 'undo': {
      const rss = await ownedReplicaSets(res, d);
      const current = Number(d.metadata.annotations?.[REVISION] ?? Math.max(0, ...rss.map(revisionOf)));
      let target: KObject | undefined;
      if (values['to-revision'] !== undefined && values['to-revision'] !== '0') {
        target = rss.find((r) => String(revisionOf(r)) === values['to-revision']);
        if (!target) throw new NotFoundError(`unable to find specified revision ${values['to-revision']} in history`);
      } else {
        target = [...rss].reverse().find((r) => revisionOf(r) < current);
        if (!target) throw new NotFoundError('no rollout history found: there is no previous revision to go back to');
      }
      const tpl = copyJson(target.spec.template);
      if (tpl.metadata?.labels) delete tpl.metadata.labels[HASH_LABEL];
      if (sameJson(tpl, d.spec.template)) {
        io.out.write(`deployment.apps/${name} skipped rollback (current template already matches revision ${revisionOf(target)})\n`);
        return 0;
      }
      const { resourceVersion: _rv, ...meta } = d.metadata;
      await res.apply({ ...d, metadata: meta, spec: { ...d.spec, template: tpl } });
      io.out.write(`deployment.apps/${name} rolled back\n`);
      return 0;
    }
    case 'restart':
      if (d.spec.paused) throw new ValidationError(`deployments.apps "${name}" is paused; resume it first (troupe rollout resume deployment/${name})`);
      await res.send(DEPLOY, ns, name, { type: 'patch', spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } } } });
      io.out.write(`deployment.apps/${name} restarted\n`);
      return 0;
    case 'pause':
    case 'resume': {
      const pause = sub === 'pause';
      if (!!d.spec.paused === pause) {
        io.out.write(`deployment.apps/${name} is already ${pause ? 'paused' : 'resumed'}\n`);
        return 0;
      }
      await res.send(DEPLOY, ns, name, { type: 'patch', spec: { paused: pause ? true : null } });
      io.out.write(`deployment.apps/${name} ${pause ? 'paused' : 'resumed'}\n`);
      return 0;
    }
  }
  return 0;
}

function parseDuration(s: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(s);
  if (!m) throw new UsageError(`--timeout: expected a duration such as 90s or 5m, got ${JSON.stringify(s)}`);
  const n = Number(m[1]);
  return n * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] ?? 1000);
}

/** Follows a rollout until it completes (0), stalls past its deadline (1), or times out (1). */
async function status(res: Resources, ns: string, name: string, io: Io, timeoutMs: number, watch: boolean): Promise<number> {
  const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
  let last = '';
  for (;;) {
    const d = await res.get(DEPLOY, ns, name);
    if (!d) throw new NotFoundError(`deployments.apps "${name}" not found`);
    const st = d.status ?? {};
    const want = d.spec.replicas as number;
    let line: string | undefined;
    let done = false;
    if ((st.observedGeneration ?? 0) < (d.metadata.generation ?? 1)) line = `Waiting for deployment spec update to be observed...`;
    else if (condition(d, 'Progressing')?.reason === 'ProgressDeadlineExceeded') {
      io.err.write(`error: deployment "${name}" exceeded its progress deadline\n`);
      return 1;
    } else if (d.spec.paused) line = `Waiting for deployment "${name}" rollout to finish: the deployment is paused (troupe rollout resume deployment/${name})`;
    else if ((st.updatedReplicas ?? 0) < want) line = `Waiting for deployment "${name}" rollout to finish: ${st.updatedReplicas ?? 0} out of ${want} new replicas have been updated...`;
    else if ((st.replicas ?? 0) > (st.updatedReplicas ?? 0)) line = `Waiting for deployment "${name}" rollout to finish: ${(st.replicas ?? 0) - (st.updatedReplicas ?? 0)} old replicas are pending termination...`;
    else if ((st.availableReplicas ?? 0) < (st.updatedReplicas ?? 0)) line = `Waiting for deployment "${name}" rollout to finish: ${st.availableReplicas ?? 0} of ${st.updatedReplicas} updated replicas are available...`;
    else done = true;
    if (done) {
      io.out.write(`deployment "${name}" successfully rolled out\n`);
      return 0;
    }
    if (line && line !== last) io.out.write(`${line}\n`);
    last = line ?? last;
    if (!watch) return 1;
    if (Date.now() > deadline) {
      io.err.write('error: timed out waiting for the condition\n');
      return 1;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
