import t from 'tap';
import { alive } from '../helpers/agent.js';
import {
  ChildStartError,
  ProcessExitError,
  ProgramMissingError,
  Supervisor,
  processChild,
  requireProgram,
  type ProcessValue,
  type SupervisorReport,
} from '../../supervisor/index.js';
import { captureLogger, waitFor } from '../helpers/nats.js';


t.test('a process child: ready from its output, lines into pino, SIGTERM on stop', async (t) => {
  const { logger, lines } = captureLogger('info');
  const sup = await Supervisor.start(
    {
      name: 'p',
      strategy: 'one_for_one',
      children: [
        processChild({
          id: 'echo',
          file: '/bin/sh',
          args: ['-c', 'echo "port=4321"; echo oops >&2; exec sleep 30'],
          ready: (line) => (line.startsWith('port=') ? Number(line.slice(5)) : undefined),
        }),
      ],
    },
    { logger },
  );
  t.teardown(() => sup.stop());
  const v = sup.valueOf<ProcessValue<number>>('echo')!;
  t.equal(v.ready, 4321, 'the ready value comes from the output');
  t.ok(alive(v.pid));
  await waitFor(() => lines().some((l) => l.msg === 'oops' && l.stream === 'stderr'), 'stderr line in the log');
  await sup.stop();
  t.notOk(alive(v.pid), 'stopped');
  t.same(await sup.exited, { type: 'shutdown' });
});

t.test('a process that ignores SIGTERM is killed after its shutdown timeout', async (t) => {
  const reports: SupervisorReport[] = [];
  const sup = await Supervisor.start(
    {
      name: 'p',
      strategy: 'one_for_one',
      children: [processChild({ id: 'stubborn', file: '/bin/sh', args: ['-c', 'trap "" TERM; echo ready; while :; do sleep 0.05; done'], ready: (l) => (l === 'ready' ? true : undefined), shutdown: 300 })],
    },
    { onReport: (r) => reports.push(r) },
  );
  const pid = sup.valueOf<ProcessValue<boolean>>('stubborn')!.pid;
  const t0 = Date.now();
  await sup.stop();
  const took = Date.now() - t0;
  t.notOk(alive(pid), 'gone');
  t.ok(took >= 250, `waited for the timeout (${took} ms)`);
  t.ok(reports.some((r) => r.context === 'shutdown_error' && r.offender?.id === 'stubborn'), 'reported as killed');
});

t.test('an unexpected exit is observed with its status and the child restarted', async (t) => {
  const reports: SupervisorReport[] = [];
  let runs = 0;
  const sup = await Supervisor.start(
    {
      name: 'p',
      strategy: 'one_for_one',
      intensity: 5,
      children: [
        {
          ...processChild({ id: 'crashy', file: '/bin/sh', args: ['-c', 'echo up; read x; exit 3'], ready: (l) => (l === 'up' ? true : undefined) }),
          id: 'crashy',
        },
      ],
    },
    { onReport: (r) => reports.push(r) },
  );
  t.teardown(() => sup.stop());
  runs = 1;
  const first = sup.valueOf<ProcessValue<boolean>>('crashy')!.pid;
  // stdin is ignored (/dev/null): `read` hits EOF and the shell exits 3 at once, so it keeps crashing
  await waitFor(() => reports.filter((r) => r.context === 'child_terminated').length >= 2 || undefined, 'two crash reports');
  const r = reports.find((x) => x.context === 'child_terminated')!;
  const err = (r.reason as { error: unknown }).error;
  t.type(err, ProcessExitError);
  t.match((err as ProcessExitError).details, { exitCode: 3 });
  t.match((err as Error).message, /exited unexpectedly \(exit code 3\)/);
  t.ok(runs >= 1 && first > 0);
});

t.test('a process that dies before it is ready fails the start with its last output', async (t) => {
  try {
    await Supervisor.start({
      name: 'p',
      strategy: 'one_for_one',
      children: [processChild({ id: 'bad', file: '/bin/sh', args: ['-c', 'echo "config error: port in use" >&2; exit 1'], ready: () => undefined })],
    });
    t.fail('started');
  } catch (err) {
    t.type(err, ChildStartError);
    t.match(((err as Error).cause as Error).message, /ended before it was ready \(exit code 1\); last output: config error: port in use/);
  }
});

t.test('a missing program is a clear error with the install hint', async (t) => {
  t.throws(() => requireProgram('no-such-program-troupe', 'install it with `apt-get install x`'), ProgramMissingError);
  try {
    requireProgram('no-such-program-troupe', 'install it with `apt-get install x`');
  } catch (err) {
    t.equal((err as Error).message, 'no-such-program-troupe is not installed or not on PATH; install it with `apt-get install x`');
  }
});
