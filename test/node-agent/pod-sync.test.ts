/**
 * The node's pod sync reports what its pod actors say to the store (real nats-server, real control
 * plane; the pod actors' events are published by the test, as the node's actors would).
 */
import t from 'tap';
import { pino } from 'pino';
import { ControlPlane, Informer, KvStore, Resources, type Bus } from '../../actors/index.js';
import { PodSync, intentPod } from '../../node-agent/index.js';
import { heartbeatBody, kindInfo, MessageType, packValue, POD_INTENT_TYPE, POD_STORED_TYPE, type KObject } from '../../protocol/index.js';
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

/** A PodSync whose pod actors and start holds are recorded (what a node agent would do with them). */
async function recordingSync(t: Teardown, bus: Bus, node: string, opts: { intentWaitMs?: number; refuseRun?: string } = {}) {
  const calls: string[] = [];
  const sync = new PodSync(bus, node, `node.${node}`, quiet, {
    podCommand: async (_ns, name, body) => {
      calls.push(`${body.type} ${name} ${body.uid ?? ''}`.trim());
      if (body.type === 'run' && opts.refuseRun) throw Object.assign(new Error('refused'), { code: opts.refuseRun });
      return { ok: true };
    },
    holdStarts: (uid) => calls.push(`hold ${uid}`),
    startAhead: (pod, spec) => calls.push(`ahead ${pod.namespace}/${pod.name} ${pod.uid} ${spec.containers.map((c) => c.image).join(',')}`),
    dropAhead: async (uid) => void calls.push(`drop ${uid}`),
    releaseStarts: (uid) => calls.push(`release ${uid}`),
    refuseStarts: (uid, err) => calls.push(`refuse ${uid}: ${err.message}`),
    forgetStarts: (uid) => calls.push(`forget ${uid}`),
    intentWaitMs: opts.intentWaitMs,
  });
  await sync.start({ name: node, labels: {}, capacity: { cpu: '1', memory: '1Gi', pods: '10' }, allocatable: { cpu: '1', memory: '1Gi', pods: '10' }, cgroupLayout: 'v1', startedAt: new Date().toISOString(), agentId: 'test' }, []);
  t.teardown(() => sync.stop());
  return { sync, calls };
}

/** A control plane, a Ready node of that name whose pod sync is recorded, following its intents unless told not to. */
async function intentNode(t: Teardown, node: string, opts: { intentWaitMs?: number; refuseRun?: string; follow?: boolean } = {}) {
  const { bus, res } = await withControlPlane(t);
  heartbeats(t, bus, node);
  const { sync, calls } = await recordingSync(t, bus, node, opts);
  await waitFor(async () => ready((await res.get(kindInfo('Node')!, undefined, node)) as KObject) === 'True', 'the node Ready', 10_000);
  if (opts.follow !== false) {
    const sub = sync.followIntents();
    t.teardown(() => sub.unsubscribe());
  }
  return { bus, res, sync, calls };
}

t.test('intents: a pod made bound to a node is told to that node as its write goes out, and again once the store has it; the node prepares it held, and lets it run then', async (t) => {
  // the node follows its intent subject as the agent does; the test sees what goes by there
  const { bus, res, sync, calls } = await intentNode(t, 'intent-node');
  const told: { t: string; body: Record<string, unknown> }[] = [];
  const seen = bus.subscribe<Record<string, unknown>>(bus.subjects.nodeIntent('intent-node'), (env) => void told.push({ t: env.t, body: env.body }));
  t.teardown(() => seen.unsubscribe());
  const elsewhere: string[] = [];
  const other = bus.subscribe(bus.subjects.nodeIntent('other-node'), (env) => void elsewhere.push(String(env.t)));
  t.teardown(() => other.unsubscribe());
  await bus.flush();

  await res.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'ahead', namespace: 'default', labels: { app: 'a' } }, spec: { nodeName: 'intent-node', containers: [{ name: 'c', image: 'busybox:test' }] } });
  const stored = (await res.get(POD, 'default', 'ahead'))!;
  const uid = stored.metadata.uid as string;
  await waitFor(() => calls.includes(`release ${uid}`) || undefined, 'the held start released');
  await waitFor(() => told.length === 2 || undefined, 'the intent and the stored notice');
  t.same(told.map((m) => m.t), [POD_INTENT_TYPE, POD_STORED_TYPE], 'the intent first, then the notice');
  t.match(intentPod(told[0]!.body.stored as Uint8Array), { kind: 'Pod', metadata: { name: 'ahead', namespace: 'default', uid, labels: { app: 'a' } }, spec: { nodeName: 'intent-node', containers: [{ name: 'c', image: 'busybox:test' }] } }, 'the pod as the store has it');
  t.same(told[1]!.body, { namespace: 'default', name: 'ahead', uid, revision: Number(stored.metadata.resourceVersion) }, 'the notice names the pod and the revision the store gave its creation');
  t.same(calls.slice(0, 4), [`hold ${uid}`, `ahead default/ahead ${uid} busybox:test`, `release ${uid}`, `run ahead ${uid}`], 'held and started ahead, then released once the store had it, and only then its actor asked to run it: once');
  // (the store's watch brings it too, and changes nothing: the notice or the watch released it, once)
  const informer = (sync as unknown as { informer: Informer }).informer;
  await waitFor(() => informer.get('default', 'ahead') || undefined, "the store's copy seen");
  await bus.flush();
  t.equal(calls.filter((c) => c.startsWith('run ') || c.startsWith('release ')).length, 2);
  t.equal(bus.metrics.get('pods_prepared_ahead_total'), 1, 'counted');

  // a pod bound elsewhere: nothing told here
  await res.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'there', namespace: 'default' }, spec: { nodeName: 'other-node', containers: [{ name: 'c', image: 'busybox:test' }] } });
  await waitFor(() => elsewhere.length === 2 || undefined, 'the other node told (intent and notice)');
  t.same(elsewhere, [POD_INTENT_TYPE, POD_STORED_TYPE]);
  t.equal(told.length, 2, 'nothing more told here');
  t.notOk(calls.some((c) => c.includes('there')), 'nor started here');
  // an update of the pod (its status) is no creation: no notice
  await res.send(POD, 'default', 'ahead', { type: 'status', uid, status: { phase: 'Running' } });
  await bus.flush();
  await new Promise((r) => setTimeout(r, 100));
  t.equal(told.length, 2, 'no notice for an update');
});

t.test("intents: the control plane's notice that a pod is stored lets it run before the store's watch brings it, for that very pod only", async (t) => {
  const { bus, calls } = await intentNode(t, 'notice-node');
  await bus.flush();
  // told on the subject as a control plane would; the store never has this pod, so only the
  // notice can let it run
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'early', namespace: 'default', uid: 'early-uid' }, spec: { nodeName: 'notice-node', containers: [{ name: 'c', image: 'busybox:test' }] }, status: { phase: 'Pending' } };
  const subject = bus.subjects.nodeIntent('notice-node');
  bus.publish(subject, POD_INTENT_TYPE, { stored: packValue({ owner: 'x', seq: 1, snapshot: { context: { object: pod } } }) });
  await waitFor(() => calls.length === 2 || undefined, 'held and started');
  t.same(calls, ['hold early-uid', 'ahead default/early early-uid busybox:test']);
  // a notice for another pod of that name, for another name, and a malformed one: nothing
  bus.publish(subject, POD_STORED_TYPE, { namespace: 'default', name: 'early', uid: 'other-uid', revision: 7 });
  bus.publish(subject, POD_STORED_TYPE, { namespace: 'default', name: 'late', uid: 'early-uid', revision: 7 });
  const rejected = bus.metrics.get('bus_rejected_total', { code: 'TRP_ERR_VALIDATION' }) ?? 0;
  const bad = bus.request(subject, POD_STORED_TYPE, { namespace: 'default', name: 'early', revision: 7 }, { timeout: 2000 });
  await t.rejects(bad, { name: 'ValidationError', message: /uid/ }, 'a notice without its uid is refused with the field');
  await bus.flush();
  await new Promise((r) => setTimeout(r, 100));
  t.same(calls, ['hold early-uid', 'ahead default/early early-uid busybox:test'], 'still held');
  t.ok((bus.metrics.get('bus_rejected_total', { code: 'TRP_ERR_VALIDATION' }) ?? 0) > rejected, 'the malformed one counted as refused');
  // the very pod's notice: released at once
  bus.publish(subject, POD_STORED_TYPE, { namespace: 'default', name: 'early', uid: 'early-uid', revision: 7 });
  await waitFor(() => calls.includes('release early-uid') || undefined, 'released by the notice');
  t.same(calls, ['hold early-uid', 'ahead default/early early-uid busybox:test', 'release early-uid', 'run early early-uid'], 'released once, and its actor asked');
  t.equal(bus.metrics.get('pods_confirmed_by_notice_total'), 1, 'counted');
  // a second notice changes nothing
  bus.publish(subject, POD_STORED_TYPE, { namespace: 'default', name: 'early', uid: 'early-uid', revision: 7 });
  await bus.flush();
  await new Promise((r) => setTimeout(r, 100));
  t.equal(calls.length, 4);
});

t.test('intents: a pod started ahead whose actor refuses to run it has what was started ahead dropped', async (t) => {
  const { bus, res, calls } = await intentNode(t, 'refusing-node', { refuseRun: 'TRP_ERR_VALIDATION' });
  await bus.flush();
  await res.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'refused', namespace: 'default' }, spec: { nodeName: 'refusing-node', containers: [{ name: 'c', image: 'busybox:test' }] } });
  const uid = (await res.get(POD, 'default', 'refused'))!.metadata.uid as string;
  await waitFor(() => calls.includes(`drop ${uid}`) || undefined, 'what was started ahead dropped');
  t.same(calls.slice(0, 5), [`hold ${uid}`, `ahead default/refused ${uid} busybox:test`, `release ${uid}`, `run refused ${uid}`, `drop ${uid}`], 'started ahead, released, the run refused: dropped');
});

t.test('intents: a pod told of ahead that the store never has is given up (its starts refused, what was started ahead removed, no actor asked), and nothing of it is written', async (t) => {
  const { bus, res, sync, calls } = await intentNode(t, 'lost-node', { intentWaitMs: 300, follow: false });
  // what a resource actor would be writing (a write that then failed)
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'ghost', namespace: 'default', uid: 'ghost-uid' }, spec: { nodeName: 'lost-node', containers: [{ name: 'c', image: 'busybox:test' }] }, status: { phase: 'Pending' } };
  sync.intent(intentPod(packValue({ owner: 'x', seq: 1, snapshot: { context: { object: pod } } })));
  t.same(calls, ['hold ghost-uid', 'ahead default/ghost ghost-uid busybox:test'], 'held and started ahead at once; no actor asked');
  // whatever a pod actor of that name said meanwhile would not be written (the store does not have the pod)
  const sends: string[] = [];
  const r = (sync as unknown as { res: Resources }).res;
  const send = r.send.bind(r);
  r.send = ((info, ns, name, cmd, o) => {
    sends.push(`${cmd.type} ${name}`);
    return send(info, ns, name, cmd, o);
  }) as Resources['send'];
  const subject = bus.subjects.scoped('node.lost-node').evt('pod', 'default', 'ghost');
  bus.publish(subject, MessageType.Event, {
    kind: 'pod', namespace: 'default', name: 'ghost', seq: 1, cause: 'x', value: 'starting', status: 'active',
    data: { uid: 'ghost-uid', phase: 'Failed', conditions: [], containerStatuses: [{ name: 'c', image: 'busybox:test', state: { terminated: { exitCode: 1, reason: 'Error' } }, restartCount: 0, started: false, ready: false }] },
  });
  await waitFor(() => calls.includes('forget ghost-uid') || undefined, 'given up', 5000);
  t.equal(calls.length, 5);
  t.match(calls[2], /^refuse ghost-uid: pod default\/ghost was not started: the store did not have it within 300 ms/);
  t.same(calls.slice(3), ['drop ghost-uid', 'forget ghost-uid'], 'its starts refused, then what was started ahead removed, then its hold forgotten');
  t.same(sends, [], 'no status was sent for it');
  t.equal(bus.metrics.get('pods_given_up_total'), 1, 'counted');
  t.equal(await res.get(POD, 'default', 'ghost'), undefined, 'the store has no such pod');
  // a pod of that name that the store does have later starts as any, from the store
  await res.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'ghost', namespace: 'default' }, spec: { nodeName: 'lost-node', containers: [{ name: 'c', image: 'busybox:test' }] } });
  const uid = (await res.get(POD, 'default', 'ghost'))!.metadata.uid as string;
  await waitFor(() => calls.includes(`run ghost ${uid}`) || undefined, 'the stored pod run');
  // an intent that is not a pod's entry is refused with what is wrong
  t.throws(() => intentPod(packValue({ owner: 'x', seq: 1, snapshot: { context: { object: { ...pod, spec: { containers: [] } } } } })), { name: 'ValidationError', message: /pod intent: .*spec\.nodeName/ });
  t.throws(() => intentPod(packValue(42)), { name: 'ValidationError', message: /pod intent/ });
  t.throws(() => intentPod(new Uint8Array([0xc1])), { message: /pod intent/ });
});
