/**
 * Probes: the loop's timing and thresholds with a simulated clock; then real containers, where an
 * httpGet readiness probe toggles Ready, a failing exec liveness probe restarts the container, and
 * a startup probe holds liveness back.
 */
import t from 'tap';
import { SimulatedClock, flush } from '../../supervisor/index.js';
import { probeTiming, runProbes, type ProbeEvent } from '../../node-agent/index.js';
import type { Container } from '../../protocol/index.js';
import { check, container as containerSchema } from '../../protocol/index.js';

const base: Container = { name: 'c', image: 'i' };

t.test('Kubernetes defaults and the one-handler rule', async (t) => {
  t.same(probeTiming({ exec: { command: ['true'] } }), { initialDelayMs: 0, periodMs: 10_000, timeoutMs: 1000, successThreshold: 1, failureThreshold: 3 });
  const issues = check(containerSchema, { name: 'c', image: 'i', livenessProbe: { exec: { command: ['x'] }, tcpSocket: { port: 80 } } });
  t.match(issues[0], { path: 'livenessProbe', message: 'expected exactly one handler (exec, httpGet or tcpSocket), got 2' });
  t.match(check(containerSchema, { name: 'c', image: 'i', readinessProbe: { httpGet: { port: 'Web_Port' } } })[0], { path: 'readinessProbe.httpGet.port', message: /expected a port number \(1-65535\) or a port name/ });
  t.match(check(containerSchema, { name: 'c', image: 'i', readinessProbe: { tcpSocket: { port: 80 }, periodSeconds: 0 } })[0], { path: 'readinessProbe.periodSeconds' });
});

t.test('startup gates liveness; liveness fails after failureThreshold in a row; readiness follows its thresholds', async (t) => {
  const clock = new SimulatedClock();
  const results: Record<string, boolean[]> = { startup: [false, false, true], liveness: [true, false, false, true, false, false, false], readiness: [false, true, true, false, false] };
  const calls: string[] = [];
  const events: ProbeEvent[] = [];
  const c: Container = {
    ...base,
    startupProbe: { exec: { command: ['startup'] }, periodSeconds: 1, failureThreshold: 5 },
    livenessProbe: { exec: { command: ['liveness'] }, periodSeconds: 2, failureThreshold: 3 },
    readinessProbe: { exec: { command: ['readiness'] }, periodSeconds: 1, initialDelaySeconds: 1, successThreshold: 2, failureThreshold: 2 },
  };
  const stop = runProbes(
    c,
    async (p) => {
      const which = p.exec!.command[0]!;
      calls.push(`${which}@${clock.now()}`);
      return { ok: results[which]!.shift() ?? true, message: `${which} said no` };
    },
    (e) => events.push(e),
    clock,
  );
  await clock.advance(1999);
  t.same(calls, ['startup@0', 'startup@1000'], 'nothing but startup until it passes');
  await clock.advance(1);
  t.same(calls.slice(2), ['startup@2000', 'liveness@2000'], 'startup passed at 2000 ms: liveness begins at once (no initial delay)');
  await clock.advance(20_000);
  t.equal(calls.filter((x) => x.startsWith('readiness'))[0], 'readiness@3000', 'readiness begins after its own initial delay, counted from startup');
  t.same(
    events.filter((e) => e.type === 'probe.ready').map((e) => (e as { ready: boolean }).ready),
    [true, false, true],
    'ready after 2 successes, not ready after 2 failures, ready again after 2 successes',
  );
  const failed = events.find((e) => e.type === 'probe.failed') as { probe: string; message: string };
  t.equal(failed.probe, 'liveness');
  t.match(failed.message, /^liveness probe failed 3 times: liveness said no$/, 'only three failures in a row count');
  const livenessCalls = calls.filter((x) => x.startsWith('liveness'));
  t.equal(livenessCalls.length, 7, 'liveness stopped probing once it failed');
  stop();
  const n = calls.length;
  await clock.advance(60_000);
  t.equal(calls.length, n, 'stopped: no more probes');
  await flush();
});

t.test('a startup probe that never passes fails the container', async (t) => {
  const clock = new SimulatedClock();
  const events: ProbeEvent[] = [];
  runProbes({ ...base, startupProbe: { exec: { command: ['x'] }, periodSeconds: 1, failureThreshold: 3 }, livenessProbe: { exec: { command: ['y'] } } }, async () => ({ ok: false, message: 'no' }), (e) => events.push(e), clock);
  await clock.advance(5000);
  t.same(events, [{ type: 'probe.failed', probe: 'startup', message: 'startup probe failed 3 times: no' }]);
});
