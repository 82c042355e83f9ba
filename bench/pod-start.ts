/**
 * `npm run bench -- pod-start`: pod start through the agent, against crun's own lifecycle measured
 * in the same run on the same image.
 *
 * - rawCrunP50Ms: `crun run` of /bin/true (create + start + wait + delete) on a prepared bundle,
 *   twice before each single pod start (60 in all), so both sides see the machine alike.
 * - agentPodStartP50Ms / P99: a `run` message on the bus → Running reported on the bus, one pod
 *   at a time, through a real `troupe agent` process. ratio = agent p50 / raw p50. The agent keeps
 *   its default pool of ready sandboxes (README, "Pod network"): each pod takes one; crun's own
 *   lifecycle is timed only once the pool is refilled (the node quiet).
 * - podsPerSecond: 100 pods sent at once, until all report Running.
 * - agentRssMb: the agent's resident memory, idle and with 100 pods.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { ActorClient, Bus, Crun, ImageStore, buildSpec, detectCgroups, favorDynamicCgroups, sweepNodeCgroups, namespacePrefix, requireProgram, sandboxPoolSize, startNatsServer, type EventBody, type PodStatus } from '../index.js';
import { NODE_FLAGS } from '../cli/heap.js';
import { killNodeLeftovers } from '../test/helpers/agent.js';
import { busyboxRootfs, tarDir } from '../test/helpers/tar.js';
import { percentile, round1, round2 } from './stats.js';

const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 102.4) / 10 : NaN;
}

/** The agent's own node process (inside the namespace wrapper, when there is one). */
export function agentPid(wrapper: number): number {
  try {
    const kids = execFileSync('pgrep', ['-P', String(wrapper)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
    for (const k of kids) {
      const cmd = readFileSync(`/proc/${k}/cmdline`, 'utf8');
      if (cmd.includes('agent')) return cmd.startsWith('unshare') ? agentPid(k) : k;
    }
  } catch {
    // no child: the wrapper is the agent
  }
  return wrapper;
}

/**
 * Waits until a node's pools are full again: its ready sandboxes (with `networked`, each on the
 * pod network) and its shims made ahead (their refill after a pod took one is done), so that no
 * refill runs while crun's own lifecycle is timed: that would slow the raw side and flatter the
 * ratio.
 */
export async function poolSettled(runtimeDir: string, networked: boolean): Promise<void> {
  const size = sandboxPoolSize();
  const count = (sub: string, ext: string) => {
    try {
      return readdirSync(join(runtimeDir, sub)).filter((f) => f.endsWith(ext)).length;
    } catch {
      return 0;
    }
  };
  const full = () => count('pool', '.pid') === size && (!networked || count('pool', '.ip') === size) && count('shims', '.pid') === size;
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !full()) await new Promise((r) => setTimeout(r, 5));
}

/**
 * crun's own lifecycle on a prepared bundle: `run(n)` runs `crun run` of /bin/true n times in one
 * shell (timed there, so no spawn of ours is counted) and returns each one's milliseconds. The
 * benches call it between their own samples, so that a VM whose speed drifts during a run (it
 * does, here, by a third from minute to minute) weighs on both sides alike.
 */
export interface RawCrun {
  run(n: number): Promise<number[]>;
}

export function rawCrun(dir: string, lowerDir: string): RawCrun {
  const crun = requireProgram('crun', 'apt-get install crun');
  // as a node agent would have it (troupe agent and troupe up turn it on): both sides measured alike
  const favor = favorDynamicCgroups();
  console.log(`cgroups: favordynmods ${favor.state}${favor.mountPoint ? ` on ${favor.mountPoint}` : ''}${favor.message ? ` (${favor.message})` : ''}`);
  const bundle = join(dir, 'raw-bundle');
  mkdirSync(bundle, { recursive: true });
  for (const f of ['hosts', 'hostname', 'resolv.conf']) writeFileSync(join(bundle, f), '\n');
  const spec = buildSpec({
    container: { name: 'raw', image: 'busybox:bench', command: ['/bin/true'] },
    image: {},
    hostname: 'raw',
    rootfs: lowerDir,
    etcFiles: { hosts: join(bundle, 'hosts'), hostname: join(bundle, 'hostname'), resolvConf: join(bundle, 'resolv.conf') },
    cgroupsPath: '/troupe-bench-raw',
  });
  (spec.root as { readonly: boolean }).readonly = true;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  // the same conditions as the agent's: crun where the hybrid cgroup2 mount is gone
  const prefix = namespacePrefix(detectCgroups());
  let seq = 0;
  return {
    async run(n: number): Promise<number[]> {
      const first = seq + 1;
      seq += n;
      // timed with bash's $EPOCHREALTIME: a `$(date)` around crun put a fork and exec of date
      // (about 1.8 ms here) inside every interval
      const script = `for i in $(seq ${first} ${seq}); do s=$EPOCHREALTIME; ${crun} --root ${join(dir, 'raw-state')} run --bundle ${bundle} raw-$i >/dev/null 2>&1 || exit 1; e=$EPOCHREALTIME; echo "$s $e"; done`;
      const argv = prefix.length ? [...prefix, '/bin/bash', '-c', script] : ['/bin/bash', '-c', script];
      const r = await execa(argv[0]!, argv.slice(1));
      return r.stdout
        .trim()
        .split('\n')
        .map((l) => {
          const [a, b] = l.split(' ').map(Number);
          return (b! - a!) * 1000;
        });
    },
  };
}

/**
 * A wait with a deadline that also ends on SIGINT/SIGTERM: a failed or interrupted run still
 * reaches the bench's cleanup (its containers are real).
 */
let interrupted: Promise<never> | undefined;
function guard<T>(p: Promise<T>, what: string, ms: number): Promise<T> {
  interrupted ??= new Promise<never>((_r, reject) => {
    const stop = (sig: string) => reject(new Error(`pod-start bench interrupted (${sig})`));
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  interrupted.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms / 1000} s`)), ms)));
  return Promise.race([p, limit, interrupted]).finally(() => clearTimeout(timer));
}

export async function benchPodStart(): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-pods-'));
  const srv = await startNatsServer({ dataDir: join(dir, 'nats') });
  let agent: ChildProcess | undefined;
  try {
    const dataDir = join(dir, 'agent');
    const store = new ImageStore(join(dataDir, 'images'));
    await store.importRootfs(tarDir(busyboxRootfs(join(dir, 'src')), join(dir, 'rootfs.tar')), 'busybox:bench');
    const { path: lowerDir } = await store.rootfs('busybox:bench');

    const rawLifecycle = rawCrun(dir, lowerDir);
    await rawLifecycle.run(5); // warm-up, not counted
    const raw: number[] = [];

    // TROUPE_BENCH_PROF=DIR: the agent writes a CPU profile there when it stops
    const prof = process.env.TROUPE_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.TROUPE_BENCH_PROF}`] : [];
    agent = spawn(process.execPath, [...NODE_FLAGS, ...prof, cli, 'agent', '--server', srv.url, '--node-name', 'bench', '--data-dir', dataDir, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: agent!.stdout! }).on('line', (l) => l.includes('is up') && resolve());
      agent!.once('exit', (c) => reject(new Error(`agent exited ${c}`)));
    });
    const apid = agentPid(agent.pid!);
    await new Promise((r) => setTimeout(r, 500));
    const idleRss = rssMb(apid);

    const bus = await Bus.connect({ servers: srv.url });
    const pods = new ActorClient(bus, 'pod', 'node.bench');
    const running = new Map<string, (t: bigint) => void>();
    const deleted = new Map<string, () => void>();
    const watch = new AbortController();
    void (async () => {
      for await (const e of pods.watch('bench', undefined, { signal: watch.signal }) as AsyncIterable<EventBody>) {
        // (its containers running: a pod whose container failed to start is Running too)
        const st = e.data as PodStatus;
        if (st.phase === 'Running' && st.containerStatuses.length > 0 && st.containerStatuses.every((c) => 'running' in c.state)) running.get(e.name)?.(process.hrtime.bigint());
        if (e.status === 'done') deleted.get(e.name)?.();
      }
    })();
    /** Deletes a pod and waits until its containers are gone (a delete is acknowledged at Terminating). */
    const remove = (name: string) =>
      new Promise<void>((resolve) => {
        deleted.set(name, resolve);
        void pods.send('bench', name, { type: 'delete' }, { timeout: 30_000 });
      });
    await pods.ready();
    const spec = { terminationGracePeriodSeconds: 0, containers: [{ name: 'c', image: 'busybox:bench', command: ['/bin/sleep', '3600'] }] };
    const start = (name: string): Promise<bigint> =>
      new Promise((resolve, reject) => {
        running.set(name, resolve);
        pods.send('bench', name, { type: 'run', uid: name, spec }).catch(reject);
      });

    // one at a time
    const single: number[] = [];
    for (let i = 0; i < 30; i++) {
      // crun's own lifecycle, twice, between each pod start and the next (see rawCrun), once the
      // node is quiet again
      await poolSettled(join(dataDir, 'runtime'), false);
      raw.push(...(await rawLifecycle.run(2)));
      const t0 = process.hrtime.bigint();
      const t1 = await guard(start(`s${i}`), `pod s${i} Running`, 30_000);
      single.push(Number(t1 - t0) / 1e6);
      await guard(remove(`s${i}`), `pod s${i} removed`, 60_000);
    }
    // 100 at once
    const t0 = process.hrtime.bigint();
    const all = await guard(Promise.all(Array.from({ length: 100 }, (_, i) => start(`m${i}`))), '100 pods Running', 120_000);
    const last = all.reduce((a, b) => (b > a ? b : a));
    const burstSec = Number(last - t0) / 1e9;
    await new Promise((r) => setTimeout(r, 500));
    const busyRss = rssMb(apid);
    await guard(Promise.all(Array.from({ length: 100 }, (_, i) => remove(`m${i}`))), '100 pods removed', 120_000);
    watch.abort();
    await bus.close();

    const rawP50 = percentile(raw, 50);
    const agentP50 = percentile(single, 50);
    return {
      rawCrunP50Ms: round1(rawP50),
      agentPodStartP50Ms: round1(agentP50),
      agentPodStartP99Ms: round1(percentile(single, 99)),
      ratio: round2(agentP50 / rawP50),
      podsPerSecond: round1(100 / burstSec),
      agentRssMbIdle: idleRss,
      agentRssMb100Pods: busyRss,
    };
  } finally {
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent!.once('exit', r));
    }
    await srv.stop();
    // the agent leaves containers running on SIGTERM (for adoption): the bench deleted them all
    // first, unless it failed on the way; then they are killed here (and the failure reported)
    const left = execFileSync('sh', ['-c', `ls ${join(dir, 'agent', 'runtime', 'containers')} 2>/dev/null | wc -l`], { encoding: 'utf8' }).trim();
    if (left !== '0') await killLeftovers(join(dir, 'agent', 'runtime'));
    // (its cgroups too, should the agent have failed to stop in order: its spares)
    else await sweepNodeCgroups(detectCgroups(), 'bench', new Set()).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    if (left !== '0') throw new Error(`${left} containers were left behind (killed)`);
  }
}


/** Kills what a failed run left: containers (their shims then end), sandboxes, then the node's cgroups. */
async function killLeftovers(runtimeDir: string): Promise<void> {
  await killNodeLeftovers(runtimeDir).catch(() => undefined);
  const crun = new Crun(join(runtimeDir, 'crun'));
  for (let i = 0; i < 100 && (await crun.list().catch(() => [])).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  await sweepNodeCgroups(detectCgroups(), 'bench', new Set()).catch(() => undefined);
}
