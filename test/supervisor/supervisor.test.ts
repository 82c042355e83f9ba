/**
 * Supervision logic with a simulated clock. The children here are scripted handles: this is a unit
 * test of the logic above real children (process and actor children have their own tests).
 */
import t from 'tap';
import {
  ChildStartError,
  RestartIntensityError,
  SimulatedClock,
  Supervisor,
  SupervisorSpecError,
  flush,
  supervisorChild,
  type ChildSpec,
  type ExitReason,
  type Restart,
  type Shutdown,
  type SupervisorReport,
} from '../../supervisor/index.js';

interface Scripted {
  log: string[];
  spec(id: string, opts?: { restart?: Restart; shutdown?: Shutdown; onStop?: 'exit' | 'hang'; failStart?: () => boolean }): ChildSpec;
  crash(id: string, message?: string): void;
  exitNormally(id: string): void;
  running(id: string): boolean;
  starts(id: string): number;
}

function scripted(clock: SimulatedClock): Scripted {
  const log: string[] = [];
  const exits = new Map<string, (r: ExitReason) => void>();
  const startCount = new Map<string, number>();
  return {
    log,
    spec(id, opts = {}) {
      return {
        id,
        restart: opts.restart,
        shutdown: opts.shutdown,
        start: async () => {
          if (opts.failStart?.()) {
            log.push(`start-failed:${id}`);
            throw new Error(`${id} cannot start`);
          }
          log.push(`start:${id}`);
          startCount.set(id, (startCount.get(id) ?? 0) + 1);
          let resolve!: (r: ExitReason) => void;
          const exited = new Promise<ExitReason>((r) => (resolve = r));
          const done = (r: ExitReason) => {
            if (exits.get(id) === done) exits.delete(id);
            resolve(r);
          };
          exits.set(id, done);
          return {
            exited,
            stop: () => {
              log.push(`stop:${id}@${clock.now()}`);
              if (opts.onStop !== 'hang') done({ type: 'shutdown' });
            },
            kill: () => {
              log.push(`kill:${id}@${clock.now()}`);
              done({ type: 'shutdown' });
            },
            value: id.toUpperCase(),
          };
        },
      };
    },
    crash(id, message = 'boom') {
      exits.get(id)?.({ type: 'error', error: new Error(message) });
    },
    exitNormally(id) {
      exits.get(id)?.({ type: 'normal' });
    },
    running: (id) => exits.has(id),
    starts: (id) => startCount.get(id) ?? 0,
  };
}

async function setup(strategy: 'one_for_one' | 'one_for_all' | 'rest_for_one', ids = ['a', 'b', 'c'], extra: { intensity?: number; period?: number } = {}) {
  const clock = new SimulatedClock(1000);
  const kids = scripted(clock);
  const reports: SupervisorReport[] = [];
  const sup = await Supervisor.start(
    { name: 'sup', strategy, intensity: extra.intensity ?? 3, period: extra.period ?? 5000, children: ids.map((id) => kids.spec(id)) },
    { clock, onReport: (r) => reports.push(r) },
  );
  return { clock, kids, reports, sup };
}

t.test('children start in order and stop in reverse order', async (t) => {
  const { kids, sup } = await setup('one_for_one');
  t.same(kids.log, ['start:a', 'start:b', 'start:c']);
  t.same(
    sup.whichChildren().map((c) => [c.id, c.running, c.value]),
    [
      ['a', true, 'A'],
      ['b', true, 'B'],
      ['c', true, 'C'],
    ],
  );
  kids.log.length = 0;
  await sup.stop();
  t.same(kids.log, ['stop:c@1000', 'stop:b@1000', 'stop:a@1000']);
  t.same(await sup.exited, { type: 'shutdown' });
});

t.test('one_for_one restarts only the child that failed', async (t) => {
  const { kids, reports, sup } = await setup('one_for_one');
  kids.log.length = 0;
  kids.crash('b');
  await flush();
  t.same(kids.log, ['start:b']);
  t.equal(reports[0]?.context, 'child_terminated');
  t.equal(reports[0]?.offender?.id, 'b');
  await sup.stop();
});

t.test('one_for_all stops the others in reverse order and restarts all in order', async (t) => {
  const { kids, sup } = await setup('one_for_all');
  kids.log.length = 0;
  kids.crash('b');
  await flush();
  t.same(kids.log, ['stop:c@1000', 'stop:a@1000', 'start:a', 'start:b', 'start:c']);
  await sup.stop();
});

t.test('rest_for_one restarts the failed child and those started after it', async (t) => {
  const { kids, sup } = await setup('rest_for_one', ['a', 'b', 'c', 'd']);
  kids.log.length = 0;
  kids.crash('b');
  await flush();
  t.same(kids.log, ['stop:d@1000', 'stop:c@1000', 'start:b', 'start:c', 'start:d']);
  await sup.stop();
});

t.test('restart types: permanent always, transient on abnormal exit only, temporary never', async (t) => {
  const clock = new SimulatedClock();
  const kids = scripted(clock);
  const sup = await Supervisor.start(
    {
      name: 's',
      strategy: 'one_for_one',
      intensity: 10,
      children: [kids.spec('perm', { restart: 'permanent' }), kids.spec('trans', { restart: 'transient' }), kids.spec('temp', { restart: 'temporary' })],
    },
    { clock },
  );
  kids.exitNormally('perm');
  kids.exitNormally('trans');
  kids.crash('temp');
  await flush();
  t.equal(kids.starts('perm'), 2, 'permanent restarted after a normal exit');
  t.equal(kids.starts('trans'), 1, 'transient not restarted after a normal exit');
  t.equal(kids.starts('temp'), 1, 'temporary not restarted after a crash');
  t.same(
    sup.whichChildren().map((c) => c.id),
    ['perm', 'trans'],
    'a temporary child is forgotten once it exits',
  );
  t.notOk(sup.whichChildren()[1]!.running);
  // a transient child that crashes does come back
  await sup.restartChild('trans');
  kids.crash('trans');
  await flush();
  t.equal(kids.starts('trans'), 3);
  await sup.stop();
});

t.test('a temporary sibling taken down by one_for_all is not restarted', async (t) => {
  const clock = new SimulatedClock();
  const kids = scripted(clock);
  const sup = await Supervisor.start({ name: 's', strategy: 'one_for_all', intensity: 5, children: [kids.spec('a'), kids.spec('tmp', { restart: 'temporary' })] }, { clock });
  kids.crash('a');
  await flush();
  t.equal(kids.starts('a'), 2);
  t.equal(kids.starts('tmp'), 1);
  t.same(
    sup.whichChildren().map((c) => c.id),
    ['a'],
  );
  await sup.stop();
});

t.test('past its intensity a supervisor stops everything and fails; restarts outside the period do not count', async (t) => {
  const { clock, kids, reports, sup } = await setup('one_for_one', ['a', 'b'], { intensity: 2, period: 1000 });
  kids.crash('a');
  await flush();
  await clock.advance(600);
  kids.crash('a');
  await flush();
  await clock.advance(600); // the first restart leaves the window
  kids.crash('a');
  await flush();
  t.equal(kids.starts('a'), 4, 'three restarts, never more than two within 1000 ms');
  kids.crash('a');
  await flush();
  const reason = await sup.exited;
  t.equal(reason.type, 'error');
  t.type((reason as { error: unknown }).error, RestartIntensityError);
  t.match((reason as { error: Error }).error.message, /more than 2 restart\(s\) within 1000 ms/);
  t.notOk(kids.running('a'));
  t.notOk(kids.running('b'), 'siblings stopped when it gave up');
  t.ok(reports.some((r) => r.context === 'reached_max_restart_intensity'));
});

t.test('escalation: a child supervisor that gives up is restarted by its parent, which gives up in turn', async (t) => {
  const clock = new SimulatedClock();
  const kids = scripted(clock);
  const parentReports: SupervisorReport[] = [];
  const parent = await Supervisor.start(
    {
      name: 'root',
      strategy: 'one_for_one',
      intensity: 1,
      period: 10_000,
      children: [kids.spec('sibling'), supervisorChild({ name: 'inner', strategy: 'one_for_one', intensity: 0, period: 1000, children: [kids.spec('w')] })],
    },
    { clock, onReport: (r) => parentReports.push(r) },
  );
  kids.crash('w'); // inner (intensity 0) gives up → root restarts inner (1 restart allowed)
  await flush();
  t.equal(kids.starts('w'), 2, 'the worker came back with a new inner supervisor');
  t.equal(parentReports.filter((r) => r.context === 'child_terminated' && r.offender?.id === 'inner').length, 1);
  kids.crash('w'); // inner gives up again → root is past its intensity
  await flush(10);
  const reason = await parent.exited;
  t.equal(reason.type, 'error');
  t.notOk(kids.running('sibling'));
});

t.test('shutdown timeout: a child that ignores stop is killed when its time is up', async (t) => {
  const clock = new SimulatedClock();
  const kids = scripted(clock);
  const reports: SupervisorReport[] = [];
  const sup = await Supervisor.start(
    { name: 's', strategy: 'one_for_one', children: [kids.spec('slow', { shutdown: 2000, onStop: 'hang' }), kids.spec('brutal', { shutdown: 'brutal' })] },
    { clock, onReport: (r) => reports.push(r) },
  );
  const stopping = sup.stop();
  await flush();
  t.same(kids.log.slice(2), ['kill:brutal@0', 'stop:slow@0'], 'brutal is killed at once; slow is asked to stop');
  await clock.advance(1999);
  t.ok(kids.running('slow'), 'still given time');
  await clock.advance(1);
  await stopping;
  t.same(kids.log.slice(-1), ['kill:slow@2000']);
  t.ok(reports.some((r) => r.context === 'shutdown_error' && r.offender?.id === 'slow'));
});

t.test("shutdown 'infinity' waits as long as the child takes", async (t) => {
  const clock = new SimulatedClock();
  const kids = scripted(clock);
  const sup = await Supervisor.start({ name: 's', strategy: 'one_for_one', children: [kids.spec('sub', { shutdown: 'infinity', onStop: 'hang' })] }, { clock });
  let done = false;
  void sup.stop().then(() => (done = true));
  await clock.advance(3_600_000);
  t.notOk(done, 'an hour later it still waits');
  t.notOk(kids.log.some((l) => l.startsWith('kill:')));
  kids.crash('sub'); // the child finally exits
  await flush();
  t.ok(done);
});

t.test('a child that fails to start stops the ones before it and fails the start', async (t) => {
  const clock = new SimulatedClock();
  const kids = scripted(clock);
  await t.rejects(
    Supervisor.start({ name: 's', strategy: 'one_for_one', children: [kids.spec('a'), kids.spec('b'), kids.spec('c', { failStart: () => true })] }, { clock }),
    ChildStartError,
  );
  t.same(kids.log, ['start:a', 'start:b', 'start-failed:c', 'stop:b@0', 'stop:a@0']);
});

t.test('a failed restart counts against the intensity', async (t) => {
  const clock = new SimulatedClock();
  const kids = scripted(clock);
  let fail = false;
  const sup = await Supervisor.start({ name: 's', strategy: 'one_for_one', intensity: 3, period: 1000, children: [kids.spec('a', { failStart: () => fail })] }, { clock });
  fail = true;
  kids.crash('a');
  await flush(20);
  const reason = await sup.exited;
  t.type((reason as { error: unknown }).error, RestartIntensityError);
  t.equal(kids.log.filter((l) => l === 'start-failed:a').length, 3, 'three restart attempts, then it gave up');
});

t.test('dynamic: children added at run time, independent, stopped together', async (t) => {
  const clock = new SimulatedClock();
  const kids = scripted(clock);
  const sup = await Supervisor.start({ name: 'pool', strategy: 'dynamic', intensity: 5 }, { clock });
  for (const id of ['w1', 'w2', 'w3']) await sup.startChild(kids.spec(id, { restart: 'transient' }));
  await t.rejects(sup.startChild(kids.spec('w1')), /exists already/);
  kids.crash('w2');
  await flush();
  t.equal(kids.starts('w2'), 2);
  t.equal(kids.starts('w1'), 1);
  await sup.terminateChild('w1');
  t.same(
    sup.whichChildren().map((c) => c.id),
    ['w2', 'w3'],
  );
  await sup.stop();
  t.notOk(kids.running('w2') || kids.running('w3'));
  await t.rejects(sup.startChild(kids.spec('w4')), /stopped/);
});

t.test('bad specs are rejected up front with the offending field', async (t) => {
  const ok = { id: 'a', start: async () => ({ exited: new Promise<ExitReason>(() => {}), stop() {}, kill() {} }) };
  const cases: [unknown, RegExp][] = [
    [{ name: 's', strategy: 'one_for_some' }, /strategy: expected one of one_for_one, one_for_all, rest_for_one, dynamic, got "one_for_some"/],
    [{ name: 's', strategy: 'one_for_one', intensity: -1 }, /intensity: expected an integer ≥ 0, got -1/],
    [{ name: 's', strategy: 'one_for_one', period: 0 }, /period: expected milliseconds ≥ 1/],
    [{ name: 's', strategy: 'one_for_one', children: [{ ...ok, restart: 'sometimes' }] }, /children\[0\]\["a"\]\.restart: expected one of permanent, transient, temporary/],
    [{ name: 's', strategy: 'one_for_one', children: [{ ...ok, shutdown: -5 }] }, /shutdown: expected milliseconds ≥ 0, 'brutal' or 'infinity', got -5/],
    [{ name: 's', strategy: 'one_for_one', children: [ok, ok] }, /children\[1\]\.id: duplicate id "a"/],
    [{ name: 's', strategy: 'one_for_one', children: [{ id: 'x' }] }, /start: expected a function/],
    [{ name: 's', strategy: 'dynamic', children: [ok] }, /a 'dynamic' supervisor starts empty/],
    [{ name: 's', strategy: 'one_for_one', childern: [] }, /childern: unknown field/],
  ];
  for (const [spec, re] of cases) await t.rejects(Supervisor.start(spec as never), { name: 'SupervisorSpecError', message: re });
  await t.rejects(Supervisor.start({ name: '', strategy: 'one_for_one' }), SupervisorSpecError);
});
