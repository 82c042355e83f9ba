/**
 * The node's pod sync reports what its pod actors say to the store (real nats-server, real control
 * plane; the pod actors' events are published by the test, as the node's actors would).
 */
import t from 'tap';
import { pino } from 'pino';
import { ControlPlane, Informer, KvStore, Resources, type Bus } from '../../actors/index.js';
import { PodSync } from '../../node-agent/index.js';
import { heartbeatBody, kindInfo, MessageType, type KObject } from '../../protocol/index.js';
import { waitFor, withBus, withNats, type Teardown } from '../helpers/nats.js';

const POD = kindInfo('Pod')!;
const quiet = pino({ level: 'silent' });
const ready = (p: KObject | undefined) => (p?.status?.conditions as { type: string; status: string }[] | undefined)?.find((c) => c.type === 'Ready')?.status;

/** A nats-server, a control plane on it, and a bus and Resources for the test. */
async function withControlPlane(t: Teardown) {
  const srv = await withNats(t);
  const cp = await ControlPlane.start({ bus: await withBus(t, srv.url, { logger: quiet }), logger: quiet });
  t.teardown(() => cp.stop());
  const bus = await withBus(t, srv.url, { logger: quiet });
  return { bus, res: await Resources.open(bus) };
}

/** The node's heartbeats, as its agent sends them (a node that is not Ready has its pods evicted). */
function heartbeats(t: Teardown, bus: Bus, node: string): void {
  if (!bus.codec.types.has('hb')) bus.codec.types.register('hb', heartbeatBody);
  let seq = 0;
  const beat = () => bus.publish(bus.subjects.nodeHb(node), 'hb', { node, seq: seq++, pods: 1 });
  beat();
  const beats = setInterval(beat, 100);
  t.teardown(() => clearInterval(beats));
}

t.test('a status that goes back to what the informer still shows is written all the same', async (t) => {
  // (an agent restart showed it: an adopted pod stayed Ready False in the store for good)
  const { bus, res } = await withControlPlane(t);
  // a pod on this node
  await res.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default' }, spec: { nodeName: 'ps-node', containers: [{ name: 'c', image: 'busybox:test' }] } });
  const uid = (await res.get(POD, 'default', 'web'))!.metadata.uid as string;
  const readyStatus = (r: boolean) => ({
    uid,
    phase: 'Running',
    conditions: [
      { type: 'Ready', status: r ? 'True' : 'False' },
      { type: 'ContainersReady', status: r ? 'True' : 'False' },
    ],
    containerStatuses: [{ name: 'c', image: 'busybox:test', state: { running: { startedAt: '2026-11-27T00:00:00.000Z' } }, restartCount: 0, started: true, ready: r }],
  });

  // the restarted node's pod sync, the pod adopted
  const sync = new PodSync(bus, 'ps-node', 'node.ps-node', quiet);
  await sync.start({ name: 'ps-node', labels: {}, capacity: { cpu: '1', memory: '1Gi', pods: '10' }, allocatable: { cpu: '1', memory: '1Gi', pods: '10' }, cgroupLayout: 'v1', startedAt: new Date().toISOString(), agentId: 'test' }, [
    { namespace: 'default', pod: 'web', uid, managed: true },
  ]);
  t.teardown(() => sync.stop());
  const subject = bus.subjects.scoped('node.ps-node').evt('pod', 'default', 'web');
  const event = (seq: number, r: boolean) => bus.publish(subject, MessageType.Event, { kind: 'pod', namespace: 'default', name: 'web', seq, cause: 'x', value: 'running', status: 'active', data: readyStatus(r) });
  // the pod Ready, written and seen by the pod sync's informer
  event(1, true);
  const informer = (sync as unknown as { informer: Informer }).informer;
  await waitFor(() => ready(informer.get('default', 'web')) === 'True', 'the pod sync to see the pod Ready');

  // every status the store takes, in order
  const kv = await KvStore.open(bus, bus.subjects.stateBucket);
  const mine = new Informer(bus, kv, POD, quiet);
  const seen: (string | undefined)[] = [];
  mine.on((type, p) => type !== 'delete' && p.metadata.name === 'web' && seen.push(ready(p)));
  await mine.start();
  t.teardown(() => mine.stop());
  seen.length = 0;

  // Ready False, then at once Ready True again (as an adopted pod says it): both before the
  // informer can have seen the first write, so it still shows the earlier Ready True
  event(2, false);
  event(3, true);

  // the store says what the pod actor said last (before the fix: Ready False, for good)
  await waitFor(() => seen.includes('False') && seen.at(-1) === 'True', 'Ready False written, then Ready True', 10_000).catch(() => undefined);
  t.equal(ready(await res.get(POD, 'default', 'web')), 'True', 'the store ends with Ready True');
  t.same(seen, ['False', 'True'], 'both statuses were written, in order');
});

t.test('a pod that starts at once goes from nothing to Running in the store; a slow one shows Pending first', async (t) => {
  const { bus, res } = await withControlPlane(t);
  heartbeats(t, bus, 'hold-node');
  // a hold that a loaded machine cannot stretch 5 ms past
  const sync = new PodSync(bus, 'hold-node', 'node.hold-node', quiet, { pendingHoldMs: 1000 });
  await sync.start({ name: 'hold-node', labels: {}, capacity: { cpu: '1', memory: '1Gi', pods: '10' }, allocatable: { cpu: '1', memory: '1Gi', pods: '10' }, cgroupLayout: 'v1', startedAt: new Date().toISOString(), agentId: 'test' }, []);
  t.teardown(() => sync.stop());
  const NODE = kindInfo('Node')!;
  await waitFor(async () => ready((await res.get(NODE, undefined, 'hold-node')) as KObject) === 'True', 'the node Ready', 10_000);
  const uids: Record<string, string> = {};
  for (const name of ['fast', 'slow']) {
    await res.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName: 'hold-node', containers: [{ name: 'c', image: 'busybox:test' }] } });
    uids[name] = (await res.get(POD, 'default', name))!.metadata.uid as string;
  }
  // the pod sync has taken them on (it would run them)
  const local = (sync as unknown as { local: Map<string, unknown> }).local;
  await waitFor(() => local.has('default/fast') && local.has('default/slow'), 'the pods taken on by the node');
  // every phase the node writes to the store, per pod (the control plane's own Pending at
  // creation has no container statuses)
  const kv = await KvStore.open(bus, bus.subjects.stateBucket);
  const mine = new Informer(bus, kv, POD, quiet);
  const phases: Record<string, string[]> = { fast: [], slow: [] };
  mine.on((type, p) => {
    const ph = p.status?.containerStatuses ? (p.status.phase as string | undefined) : undefined;
    const list = phases[p.metadata.name];
    if (type !== 'delete' && ph && list && list.at(-1) !== ph) list.push(ph);
  });
  await mine.start();
  t.teardown(() => mine.stop());
  const event = (name: string, seq: number, running: boolean) =>
    bus.publish(bus.subjects.scoped('node.hold-node').evt('pod', 'default', name), MessageType.Event, {
      kind: 'pod', namespace: 'default', name, seq, cause: 'x', value: running ? 'running' : 'starting', status: 'active',
      data: {
        uid: uids[name],
        phase: running ? 'Running' : 'Pending',
        conditions: [{ type: 'Ready', status: running ? 'True' : 'False' }, { type: 'ContainersReady', status: running ? 'True' : 'False' }],
        containerStatuses: [{ name: 'c', image: 'busybox:test', state: running ? { running: { startedAt: '2026-11-27T00:00:00.000Z' } } : { waiting: { reason: 'ContainerCreating' } }, restartCount: 0, started: running, ready: running }],
      },
    });
  // fast: Pending, then Running 5 ms later; slow: Pending, and Running only once its Pending is in
  event('fast', 1, false);
  event('slow', 1, false);
  await new Promise((r) => setTimeout(r, 5));
  event('fast', 2, true);
  await waitFor(() => phases.fast!.includes('Running'), 'fast Running in the store');
  await waitFor(() => phases.slow!.includes('Pending'), 'slow Pending in the store (after the hold)', 10_000);
  event('slow', 2, true);
  await waitFor(() => phases.slow!.includes('Running'), 'slow Running in the store');
  t.same(phases.fast, ['Running'], 'the fast pod’s Pending was never written');
  t.same(phases.slow, ['Pending', 'Running'], 'the slow pod’s Pending was, then its Running');
});

t.test('with podCommand, the pod actors are commanded in the process: nothing goes on the bus, and a run refused for a passing reason is sent again', async (t) => {
  const { bus, res } = await withControlPlane(t);
  heartbeats(t, bus, 'local-node');
  // what would go to the node's pod actors on the bus
  const onWire: string[] = [];
  const scoped = bus.subjects.scoped('node.local-node');
  const wire = bus.nc.subscribe(scoped.cmdAll('pod'), {
    callback: (_e, m) => {
      onWire.push(m.subject);
    },
  });
  t.teardown(() => wire.unsubscribe());
  const calls: { ns: string; name: string; type: string; uid?: unknown }[] = [];
  let refuse = 1;
  const sync = new PodSync(bus, 'local-node', 'node.local-node', quiet, {
    podCommand: async (ns, name, body) => {
      calls.push({ ns, name, type: body.type as string, uid: body.uid });
      if (body.type === 'run' && refuse-- > 0) throw Object.assign(new Error('the actor host is stopped'), { code: 'TRP_ERR_UNAVAILABLE' });
      return { ok: true };
    },
  });
  await sync.start({ name: 'local-node', labels: {}, capacity: { cpu: '1', memory: '1Gi', pods: '10' }, allocatable: { cpu: '1', memory: '1Gi', pods: '10' }, cgroupLayout: 'v1', startedAt: new Date().toISOString(), agentId: 'test' }, []);
  t.teardown(() => sync.stop());
  // (a pod on a node not yet Ready is replaced at once, as on a node that went silent)
  await waitFor(async () => ready((await res.get(kindInfo('Node')!, undefined, 'local-node')) as KObject) === 'True', 'the node Ready', 10_000);
  await res.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'here', namespace: 'default' }, spec: { nodeName: 'local-node', containers: [{ name: 'c', image: 'busybox:test' }] } });
  const uid = (await res.get(POD, 'default', 'here'))!.metadata.uid as string;
  await waitFor(() => calls.filter((c) => c.type === 'run').length === 2, 'run refused once, then sent again', 10_000);
  t.same(calls.slice(0, 2), [
    { ns: 'default', name: 'here', type: 'run', uid },
    { ns: 'default', name: 'here', type: 'run', uid },
  ]);
  // a pod bound elsewhere is none of this node's
  await res.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'there', namespace: 'default' }, spec: { nodeName: 'other-node', containers: [{ name: 'c', image: 'busybox:test' }] } });
  await res.send(POD, 'default', 'here', { type: 'delete', force: true });
  await waitFor(() => calls.some((c) => c.type === 'delete'), 'delete sent to the pod actor');
  t.same(calls.at(-1), { ns: 'default', name: 'here', type: 'delete', uid: undefined });
  t.notOk(calls.some((c) => c.name === 'there'));
  await bus.flush();
  t.same(onWire, [], 'no pod command went on the bus');
});
