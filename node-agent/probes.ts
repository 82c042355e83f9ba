/**
 * Probes, as the kubelet runs them: startup first (liveness and readiness wait for it), then
 * liveness (failureThreshold failures in a row → the container is killed and its restart policy
 * applies) and readiness (successThreshold successes → Ready, failureThreshold failures → not
 * Ready). Kubernetes' defaults: initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1,
 * successThreshold 1, failureThreshold 3.
 *
 * Handlers: exec runs in the container (crun exec); tcpSocket and httpGet connect from inside the
 * pod's network namespace (nsenter + bash's /dev/tcp), so they work before pod networking exists
 * and never leave the pod. The agent runs both through its launcher (a CommandRunner): a probe
 * forks nothing from the agent's own process.
 */
import type { Container, Probe } from '../protocol/index.js';
import type { CommandRunner } from './crun.js';

export interface ProbeTiming {
  initialDelayMs: number;
  periodMs: number;
  timeoutMs: number;
  successThreshold: number;
  failureThreshold: number;
}

export function probeTiming(p: Probe): ProbeTiming {
  return {
    initialDelayMs: (p.initialDelaySeconds ?? 0) * 1000,
    periodMs: (p.periodSeconds ?? 10) * 1000,
    timeoutMs: (p.timeoutSeconds ?? 1) * 1000,
    successThreshold: p.successThreshold ?? 1,
    failureThreshold: p.failureThreshold ?? 3,
  };
}

export interface ProbeResult {
  ok: boolean;
  message?: string;
}

/** Runs one probe once. */
export type ProbeExecutor = (probe: Probe, timeoutMs: number) => Promise<ProbeResult>;

export type ProbeEvent = { type: 'probe.ready'; ready: boolean } | { type: 'probe.failed'; probe: 'liveness' | 'startup'; message: string };

export interface ProbeTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(h: unknown): void;
}

/**
 * Runs the container's probes until stopped; reports readiness changes and fatal failures.
 * Returns the stop function.
 */
export function runProbes(container: Container, exec: ProbeExecutor, report: (e: ProbeEvent) => void, timers: ProbeTimers = globalThis as unknown as ProbeTimers): () => void {
  const handles = new Set<unknown>();
  let stopped = false;
  const later = (fn: () => void, ms: number) => {
    const h = timers.setTimeout(() => {
      handles.delete(h);
      if (!stopped) fn();
    }, ms);
    handles.add(h);
  };

  /** One probe's loop: calls onResult with each outcome and the consecutive counts. */
  const loop = (probe: Probe, onResult: (ok: boolean, message: string | undefined, successes: number, failures: number) => boolean) => {
    const t = probeTiming(probe);
    let successes = 0;
    let failures = 0;
    const tick = async () => {
      const r = await exec(probe, t.timeoutMs).catch((err: unknown) => ({ ok: false, message: (err as Error).message }));
      if (stopped) return;
      if (r.ok) {
        successes++;
        failures = 0;
      } else {
        failures++;
        successes = 0;
      }
      if (onResult(r.ok, r.message, successes, failures)) later(tick, t.periodMs);
    };
    later(tick, t.initialDelayMs);
  };

  let ready = false;
  const setReady = (r: boolean) => {
    if (r === ready) return;
    ready = r;
    report({ type: 'probe.ready', ready: r });
  };

  const afterStartup = () => {
    if (container.livenessProbe) {
      const th = probeTiming(container.livenessProbe).failureThreshold;
      loop(container.livenessProbe, (ok, message, _s, failures) => {
        if (!ok && failures >= th) {
          report({ type: 'probe.failed', probe: 'liveness', message: `liveness probe failed ${failures} times: ${message ?? 'failed'}` });
          return false;
        }
        return true;
      });
    }
    if (container.readinessProbe) {
      const t = probeTiming(container.readinessProbe);
      loop(container.readinessProbe, (ok, _m, successes, failures) => {
        if (ok && successes >= t.successThreshold) setReady(true);
        if (!ok && failures >= t.failureThreshold) setReady(false);
        return true;
      });
    } else setReady(true);
  };

  if (container.startupProbe) {
    const th = probeTiming(container.startupProbe).failureThreshold;
    loop(container.startupProbe, (ok, message, _s, failures) => {
      if (ok) {
        afterStartup();
        return false;
      }
      if (failures >= th) {
        report({ type: 'probe.failed', probe: 'startup', message: `startup probe failed ${failures} times: ${message ?? 'failed'}` });
        return false;
      }
      return true;
    });
  } else afterStartup();

  return () => {
    stopped = true;
    for (const h of handles) timers.clearTimeout(h);
    handles.clear();
  };
}

/** Resolves a probe's port: a number, or the name of one of the container's ports. */
export function resolvePort(container: Container, port: number | string): number {
  if (typeof port === 'number') return port;
  const p = container.ports?.find((x) => x.name === port);
  if (!p) throw new Error(`port ${JSON.stringify(port)} is not a named port of container ${container.name}`);
  return p.containerPort;
}

const HTTP_SCRIPT = [
  'exec 3<>"/dev/tcp/$H/$P" || exit 3',
  'printf "GET %s HTTP/1.0\\r\\nHost: %s\\r\\nUser-Agent: troupe-probe/1.0\\r\\n%b\\r\\n" "$URLPATH" "$H" "$HEADERS" >&3',
  'IFS= read -r line <&3 || exit 4',
  'printf "%s\\n" "$line"',
  // one line: the launcher's protocol is a line per request
].join('; ');

/**
 * tcpSocket and httpGet, from inside the network namespace of process `pid`, run by `run` (the
 * agent passes its launcher). `timeout` ends the attempt (exit 124); the runner's own deadline,
 * a little later, is only a backstop.
 */
export async function netProbe(pid: number, container: Container, probe: Probe, timeoutMs: number, run: CommandRunner): Promise<ProbeResult> {
  const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
  const inPod = (script: string, env: Record<string, string>) =>
    run(['nsenter', '-t', String(pid), '-n', 'timeout', String(secs), 'bash', '--norc', '--noprofile', '-c', script], { env, timeoutMs: secs * 1000 + 2000 });
  if (probe.tcpSocket) {
    const port = resolvePort(container, probe.tcpSocket.port);
    const host = probe.tcpSocket.host ?? '127.0.0.1';
    const r = await inPod('exec 3<>"/dev/tcp/$H/$P"', { H: host, P: String(port) });
    return r.exitCode === 0 ? { ok: true } : { ok: false, message: `dial tcp ${host}:${port}: ${r.exitCode === 124 ? 'timeout' : 'connection refused'}` };
  }
  if (probe.httpGet) {
    const port = resolvePort(container, probe.httpGet.port);
    const host = probe.httpGet.host ?? '127.0.0.1';
    const headers = (probe.httpGet.httpHeaders ?? []).map((h) => `${h.name}: ${h.value}\\r\\n`).join('');
    const r = await inPod(HTTP_SCRIPT, { H: host, P: String(port), URLPATH: probe.httpGet.path ?? '/', HEADERS: headers });
    if (r.exitCode === 124) return { ok: false, message: `Get "http://${host}:${port}${probe.httpGet.path ?? '/'}": timeout` };
    const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(r.stdout);
    if (!m) return { ok: false, message: `Get "http://${host}:${port}${probe.httpGet.path ?? '/'}": ${r.exitCode === 3 ? 'connection refused' : 'no HTTP response'}` };
    const code = Number(m[1]);
    return code >= 200 && code < 400 ? { ok: true } : { ok: false, message: `HTTP probe failed with statuscode: ${code}` };
  }
  return { ok: false, message: 'no network handler' };
}
