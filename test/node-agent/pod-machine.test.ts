/**
 * The pod and container machines with scripted effects and a simulated clock: restart policies,
 * CrashLoopBackOff timing, image pull back-off, delete winning over everything.
 */
import t from 'tap';
import { assign, createActor, fromPromise } from 'xstate';
import { SimulatedClock, flush } from '../../supervisor/index.js';
import { containerMachine, podInitialSnapshot, podMachine, podStatus, restartDelay, type ContainerContext, type ExitInfo, type PreparedImage } from '../../node-agent/index.js';

interface Script {
  pull?: () => Promise<PreparedImage>;
  exits: (ExitInfo | 'hang')[];
  log: string[];
}

const TUNING = { backoffBaseMs: 100, backoffCapMs: 400, backoffResetMs: 10_000 };

function harness(script: Script, clock: SimulatedClock, fromInitialSnapshot = false, imageAtHand = false) {
  let run = 0;
  const pendingExit: ((e: ExitInfo) => void)[] = [];
  const container = containerMachine.provide({
    guards: { imageAtHand: () => imageAtHand },
    actions: { takeImage: assign({ image: () => ({ config: {}, lowerDir: '/at-hand' }) }) },
    actors: {
      ensureImage: fromPromise(async () => {
        script.log.push(`pull@${clock.now()}`);
        return script.pull ? script.pull() : { config: {}, lowerDir: '/x' };
      }),
      runContainer: fromPromise(async () => {
        script.log.push(`run@${clock.now()}`);
        return { startedAt: new Date(clock.now()).toISOString(), pid: 1 };
      }),
      waitExit: fromPromise<ExitInfo, { ctx: ContainerContext }>(async () => {
        const next = script.exits[run++] ?? 'hang';
        if (next === 'hang') return new Promise<ExitInfo>((r) => pendingExit.push(r));
        return { ...next, finishedAt: new Date(clock.now()).toISOString() };
      }),
      stopContainer: fromPromise(async () => {
        script.log.push('stop');
        pendingExit.forEach((r) => r({ exitCode: 143, reason: 'Error', finishedAt: new Date(clock.now()).toISOString() }));
      }),
      removeContainer: fromPromise(async () => {
        script.log.push('remove');
      }),
    },
  });
  const machine = podMachine.provide({ actors: { container } });
  const key = { namespace: 'default', name: 'p' };
  const actor = createActor(machine, { clock, input: { ...key, tuning: TUNING }, ...(fromInitialSnapshot ? { snapshot: podInitialSnapshot(key, TUNING) as never } : {}) });
  actor.start();
  return actor;
}

const spec = (restartPolicy: 'Always' | 'OnFailure' | 'Never') => ({ type: 'run' as const, uid: 'u1', spec: { restartPolicy, containers: [{ name: 'c', image: 'img:1' }] } });
const err = (code: number): ExitInfo => ({ exitCode: code, reason: code === 0 ? 'Completed' : 'Error', finishedAt: '' });

t.test("podInitialSnapshot: a new pod actor starts from exactly what the machine makes, and behaves the same", async (t) => {
  const key = { namespace: 'default', name: 'p' };
  const made = createActor(podMachine, { input: { ...key, tuning: TUNING } });
  made.start();
  const ours = podInitialSnapshot(key, TUNING);
  t.strictSame(ours, made.getPersistedSnapshot(), 'the same as the machine\'s own');
  t.same(Object.keys(ours), Object.keys(made.getPersistedSnapshot()), 'the same fields in the same order');
  t.not(podInitialSnapshot(key, TUNING), ours, 'a new object each time');
  // the same pod run from either: the same effects at the same times, the same statuses
  const runs = await Promise.all(
    [false, true].map(async (fromSnapshot) => {
      const clock = new SimulatedClock();
      const script: Script = { exits: [err(1), err(0)], log: [] };
      const actor = harness(script, clock, fromSnapshot);
      actor.send(spec('OnFailure'));
      await flush();
      await clock.advance(1000);
      return { log: script.log, status: podStatus(actor.getSnapshot()) };
    }),
  );
  t.ok(runs[0]!.log.length >= 4, `a pull, a run, a restart: ${runs[0]!.log.join(' ')}`);
  t.same(runs[1], runs[0], 'started from the snapshot: the same log and status');
});

t.test('an image the node has at hand: the container starts without the pull step; a restart pulls as before', async (t) => {
  for (const atHand of [true, false]) {
    const clock = new SimulatedClock();
    const script: Script = { exits: [err(1), 'hang'], log: [] };
    const actor = harness(script, clock, false, atHand);
    actor.send(spec('Always'));
    await flush();
    await clock.advance(100);
    t.same(script.log, atHand ? ['run@0', 'pull@100', 'run@100'] : ['pull@0', 'run@0', 'pull@100', 'run@100'], `image at hand: ${atHand}`);
    t.equal(podStatus(actor.getSnapshot()).phase, 'Running');
  }
});

t.test('restart delays double from the base to the cap', async (t) => {
  t.same([0, 1, 2, 3, 4, 5].map((i) => restartDelay(i, 10_000, 300_000)), [10_000, 20_000, 40_000, 80_000, 160_000, 300_000], 'Kubernetes’ defaults');
});

t.test('Always: a crashing container goes to CrashLoopBackOff and restarts after 100, 200, 400, 400 ms', async (t) => {
  const clock = new SimulatedClock();
  const script: Script = { exits: [err(1), err(1), err(1), err(1), 'hang'], log: [] };
  const actor = harness(script, clock);
  actor.send(spec('Always'));
  await flush();
  let st = podStatus(actor.getSnapshot());
  t.equal(st.containerStatuses[0]!.state && 'waiting' in st.containerStatuses[0]!.state && st.containerStatuses[0]!.state.waiting.reason, 'CrashLoopBackOff');
  t.match(st.containerStatuses[0]!.lastState, { terminated: { exitCode: 1, reason: 'Error' } });
  const delays = [100, 200, 400, 400];
  for (let i = 0; i < delays.length; i++) {
    await clock.advance(delays[i]! - 1);
    t.equal(script.log.filter((l) => l.startsWith('run')).length, i + 1, `restart ${i + 1} not before ${delays[i]} ms`);
    await clock.advance(1);
  }
  st = podStatus(actor.getSnapshot());
  t.same(
    script.log.filter((l) => l.startsWith('run')),
    ['run@0', 'run@100', 'run@300', 'run@700', 'run@1100'],
  );
  t.equal(st.containerStatuses[0]!.restartCount, 4);
  t.equal(st.phase, 'Running');
  t.ok('running' in st.containerStatuses[0]!.state);
});

t.test('OnFailure: exit 0 completes the pod; Never: a failure fails it', async (t) => {
  const clock = new SimulatedClock();
  const a = harness({ exits: [err(0)], log: [] }, clock);
  a.send(spec('OnFailure'));
  await flush();
  t.equal(podStatus(a.getSnapshot()).phase, 'Succeeded');
  const b = harness({ exits: [err(2)], log: [] }, clock);
  b.send(spec('Never'));
  await flush();
  const st = podStatus(b.getSnapshot());
  t.equal(st.phase, 'Failed');
  t.match(st.containerStatuses[0]!.state, { terminated: { exitCode: 2 } });
  const c = harness({ exits: [err(2), err(0)], log: [] }, clock);
  c.send(spec('OnFailure'));
  await flush();
  await clock.advance(100);
  t.equal(podStatus(c.getSnapshot()).phase, 'Succeeded', 'OnFailure restarted the failure, then it completed');
  t.equal(podStatus(c.getSnapshot()).containerStatuses[0]!.restartCount, 1);
});

t.test('an image that cannot be pulled: ErrImagePull, then ImagePullBackOff, retried with backoff', async (t) => {
  const clock = new SimulatedClock();
  let fails = 2;
  const script: Script = {
    exits: ['hang'],
    log: [],
    pull: async () => {
      if (fails-- > 0) throw new Error('image "nope:1" is not in this node\'s store');
      return { config: {}, lowerDir: '/x' };
    },
  };
  const actor = harness(script, clock);
  actor.send(spec('Always'));
  await flush();
  t.match(podStatus(actor.getSnapshot()).containerStatuses[0]!.state, { waiting: { reason: 'ErrImagePull', message: /not in this node's store/ } });
  await clock.advance(1);
  t.match(podStatus(actor.getSnapshot()).containerStatuses[0]!.state, { waiting: { reason: 'ImagePullBackOff' } });
  t.equal(podStatus(actor.getSnapshot()).phase, 'Pending');
  await clock.advance(100);
  await clock.advance(200);
  t.same(script.log.filter((l) => l.startsWith('pull')), ['pull@0', 'pull@100', 'pull@300']);
  t.equal(podStatus(actor.getSnapshot()).phase, 'Running');
});

t.test('delete stops and removes every container, then the pod ends', async (t) => {
  const clock = new SimulatedClock();
  const script: Script = { exits: ['hang'], log: [] };
  const actor = harness(script, clock);
  actor.send(spec('Always'));
  await flush();
  t.equal(podStatus(actor.getSnapshot()).phase, 'Running');
  actor.send({ type: 'delete' });
  t.equal(podStatus(actor.getSnapshot()).phase, 'Terminating');
  await flush();
  t.same(script.log.slice(-2), ['stop', 'remove']);
  t.equal(actor.getSnapshot().status, 'done');
  t.equal(podStatus(actor.getSnapshot()).phase, 'Deleted');
});
