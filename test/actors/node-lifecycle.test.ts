import t from 'tap';
import { pino } from 'pino';
import { NodeLifecycle, type Bus, type EventRecorder, type Informer, type Resources } from '../../actors/index.js';
import { SimulatedClock } from '../../supervisor/index.js';
import type { KObject } from '../../protocol/index.js';

// The lifecycle's decisions over time, with a simulated clock; the store is a map that the
// commands it sends are applied to (merge patches of node status and spec, pod deletions).
function setup(nodeNames: string[], pods: KObject[] = []) {
  const clock = new SimulatedClock(0);
  const nodes = new Map<string, KObject>(nodeNames.map((n) => [n, { apiVersion: 'v1', kind: 'Node', metadata: { name: n }, spec: {}, status: {} }]));
  const podMap = new Map(pods.map((p) => [p.metadata.name, p]));
  const inf = (m: Map<string, KObject>) => ({ list: () => m.values(), get: (_: unknown, n: string) => m.get(n), on: () => undefined }) as unknown as Informer;
  const log: string[] = [];
  const res = {
    send: async (info: { kind: string }, _ns: unknown, name: string, cmd: { type: string; status?: { conditions: unknown }; spec?: { taints: unknown } }) => {
      log.push(`${info.kind} ${name} ${cmd.type}`);
      if (info.kind === 'Node') {
        const n = nodes.get(name)!;
        nodes.set(name, { ...n, status: { ...n.status, conditions: cmd.status!.conditions }, spec: { ...n.spec, taints: cmd.spec!.taints ?? undefined } });
      } else podMap.delete(name);
      return {};
    },
  } as unknown as Resources;
  const recorder = { record: () => undefined } as unknown as EventRecorder;
  const bus = { subscribe: () => ({ unsubscribe: () => undefined }), subjects: { nodeHbAll: () => 'hb' } } as unknown as Bus;
  const lc = new NodeLifecycle(bus, res, inf(nodes), inf(podMap), recorder, pino({ level: 'silent' }), { clock, notReadyAfterMs: 2000, readyAfterMs: 1000, flapWindowMs: 300_000 });
  const beat = (n: string) => (lc as unknown as { beat(n: string): void }).beat(n);
  const ready = (n: string) => (nodes.get(n)!.status.conditions as { type: string; status: string }[] | undefined)?.find((c) => c.type === 'Ready')?.status;
  return { clock, lc, beat, ready, nodes, podMap, log };
}

/** Heartbeats every second for `ms`, checking after each. */
async function beating(s: ReturnType<typeof setup>, node: string, ms: number) {
  for (let t = 0; t < ms; t += 500) {
    if (t % 1000 === 0) s.beat(node);
    await s.clock.advance(500);
    await s.lc.check();
  }
}

async function silent(s: ReturnType<typeof setup>, ms: number) {
  for (let t = 0; t < ms; t += 500) {
    await s.clock.advance(500);
    await s.lc.check();
  }
}

t.test('a new node is Ready at its first heartbeat; silent past 2 s it is NotReady and tainted', async (t) => {
  const s = setup(['n1']);
  await beating(s, 'n1', 1000);
  s.beat('n1'); // the last heartbeat: now
  t.equal(s.ready('n1'), 'True');
  await silent(s, 2000);
  t.equal(s.ready('n1'), 'True', 'not at exactly 2 s');
  await silent(s, 500);
  t.equal(s.ready('n1'), 'Unknown', 'NotReady after 2 s of silence');
  t.match(s.nodes.get('n1')!.spec.taints, [{ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' }]);
});

t.test('a flapping node waits longer each time before it is Ready again', async (t) => {
  const s = setup(['n1']);
  await beating(s, 'n1', 1000);
  const recoveries: number[] = [];
  for (let flap = 0; flap < 3; flap++) {
    await silent(s, 3000);
    t.equal(s.ready('n1'), 'Unknown');
    let waited = 0;
    while (s.ready('n1') !== 'True' && waited < 60_000) {
      await beating(s, 'n1', 500);
      waited += 500;
    }
    recoveries.push(waited);
  }
  t.ok(recoveries[0]! >= 1000, `first return: Ready after ${recoveries[0]} ms of steady heartbeats`);
  t.ok(recoveries[1]! >= 2000 && recoveries[1]! > recoveries[0]!, `second: ${recoveries[1]} ms`);
  t.ok(recoveries[2]! >= 4000 && recoveries[2]! > recoveries[1]!, `third: ${recoveries[2]} ms`);
});

t.test("pods on a NotReady node are deleted at once, or after their tolerationSeconds", async (t) => {
  const pod = (name: string, seconds?: number): KObject => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', uid: name },
    spec: { nodeName: 'n1', containers: [], ...(seconds !== undefined ? { tolerations: [{ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: seconds }] } : {}) },
  });
  const s = setup(['n1'], [pod('plain'), pod('patient', 5)]);
  await beating(s, 'n1', 1000);
  s.beat('n1'); // the last heartbeat: now
  await silent(s, 2500);
  t.equal(s.ready('n1'), 'Unknown');
  t.notOk(s.podMap.has('plain'), 'deleted at once');
  t.ok(s.podMap.has('patient'), 'kept while its toleration lasts');
  await silent(s, 4000);
  t.ok(s.podMap.has('patient'), 'still within 5 s');
  await silent(s, 1500);
  t.notOk(s.podMap.has('patient'), 'deleted after 5 s');
});
