/**
 * A node that could not hand a pod to its pod actor (the actor failed to start) sends the run
 * again with backoff for as long as it wants that pod, and the pod's run gets through once the
 * actor can start.
 *
 * The node's side is the agent's own PodSync on a real control plane and bus; the pod actor is a
 * stand-in hosted by a real ActorHost under the node's scope: a kind that keeps snapshots, so that
 * bytes no snapshot decodes to, put at its key, stop it from starting (the agent's own pod actor
 * keeps none and reads none, so nothing at its key can stop it).
 */
import t from 'tap';
import { assign, setup } from 'xstate';
import { ActorHost, ControlPlane, KvStore, Resources, defineKind } from '../../actors/index.js';
import { PodSync, podEvents } from '../../node-agent/index.js';
import { HEARTBEAT_TYPE, MessageType, kindInfo, normalize } from '../../protocol/index.js';
import { quiet } from '../helpers/cluster.js';
import { waitFor, withBus, withNats } from '../helpers/nats.js';

t.setTimeout(60_000);

const POD = kindInfo('Pod')!;
const NODE = kindInfo('Node')!;

/** The stand-in pod actor: Running once it has a run, done at delete; it counts the runs it took. */
const standIn = setup({
  types: {} as { context: { uid: string; runs: number }; events: { type: 'run'; uid: string } | { type: 'delete' } | { type: 'get' } },
}).createMachine({
  context: { uid: '', runs: 0 },
  initial: 'idle',
  states: {
    idle: { on: { run: { target: 'running', actions: assign({ uid: ({ event }) => event.uid, runs: ({ context }) => context.runs + 1 }) }, delete: 'gone' } },
    running: { on: { run: { actions: assign({ runs: ({ context }) => context.runs + 1 }) }, delete: 'gone' } },
    gone: { type: 'final' },
  },
});
/** What the node reads of a pod actor's events (the agent's PodStatus shape), and the runs taken. */
const status = (snap: { value: unknown; context: { uid: string; runs: number } }) => {
  const running = snap.value === 'running';
  return {
    phase: snap.value === 'gone' ? 'Deleted' : running ? 'Running' : 'Pending',
    uid: snap.context.uid,
    conditions: [{ type: 'Ready', status: running ? 'True' : 'False' }],
    containerStatuses: [],
    runs: snap.context.runs,
  };
};
const podStandIn = defineKind({
  kind: 'pod',
  machine: standIn,
  events: podEvents,
  reply: status,
  publish: status,
  persist: 'durable',
  deleteWhenDone: true,
});

t.test('a run the pod actor could not take is sent again: it gets through once the actor can start', async (t) => {
  const srv = await withNats(t);
  const bus = await withBus(t, srv.url, { logger: quiet });
  const cp = await ControlPlane.start({ bus: await withBus(t, srv.url, { logger: quiet }), logger: quiet });
  t.teardown(() => cp.stop());
  const scope = 'node.rt1';
  // where the actor for pod default/fragile keeps its state: bytes no one can read
  const state = await KvStore.open(bus, bus.subjects.stateBucket);
  const key = bus.subjects.scoped(scope).stateKey('pod', 'default', 'fragile');
  await state.put(key, Uint8Array.of(0xc1, 0xc1, 0xc1));
  const hostBus = await withBus(t, srv.url, { logger: quiet });
  const host = await ActorHost.start(hostBus, { kinds: [podStandIn], scope, logger: quiet });
  t.teardown(() => host.stop());

  // the node: registered, heartbeating, following the pods bound to it
  const nodeBus = await withBus(t, srv.url, { logger: quiet });
  const sync = new PodSync(nodeBus, 'rt1', scope, quiet);
  t.teardown(() => sync.stop());
  const cpu = '2';
  const info = { name: 'rt1', labels: { 'kubernetes.io/hostname': 'rt1' }, capacity: { cpu, memory: '4Gi', pods: '10' }, allocatable: { cpu, memory: '4Gi', pods: '10' }, cgroupLayout: 'unified', startedAt: new Date().toISOString(), agentId: nodeBus.id };
  let seq = 0;
  const beat = () => nodeBus.publish(nodeBus.subjects.nodeHb('rt1'), HEARTBEAT_TYPE, { node: 'rt1', seq: seq++, pods: 0 });
  beat();
  const beats = setInterval(beat, 300);
  t.teardown(() => clearInterval(beats));
  await sync.start(info, []);
  const res = await Resources.open(bus);
  await waitFor(async () => (await res.get(NODE, undefined, 'rt1'))?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True'), 'rt1 Ready', 15_000);

  await res.apply(
    normalize({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'fragile' },
      spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image: 'busybox:retry', command: ['/bin/sleep', '300'] }] },
    }),
  );
  await waitFor(async () => (await res.get(POD, 'default', 'fragile'))?.spec.nodeName === 'rt1', 'the pod bound to rt1', 15_000);
  // a few tries go by (200, 400, 800 ms apart): none can start the actor
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(hostBus.metrics.get('actor_commands_total'), 0, 'no run reached the actor while it could not start');
  t.not((await res.get(POD, 'default', 'fragile'))?.status?.phase, 'Running');

  await state.delete(key);
  await waitFor(async () => (await res.get(POD, 'default', 'fragile'))?.status?.phase === 'Running', 'the pod Running after a later try', 20_000);
  const uid = (await res.get(POD, 'default', 'fragile'))!.metadata.uid;
  const got = await bus.request<{ uid: string; runs: number }>(bus.subjects.scoped(scope).cmd('pod', 'default', 'fragile'), MessageType.Command, { type: 'get' });
  t.equal(got.body.uid, uid, "the actor has the pod's run");
  t.ok(got.body.runs >= 1, `runs taken: ${got.body.runs}`);
});
