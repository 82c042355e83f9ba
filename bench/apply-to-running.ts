/**
 * `npm run bench -- apply-to-running`: a one-replica Deployment applied → its pod Running as seen
 * by a watcher, through the whole system (resource actors, ReplicaSet and Deployment controllers,
 * scheduler, a real `troupe agent` with crun), against crun's own create-start-wait-delete of the
 * same image in the same run.
 *
 * - rawCrunP50Ms: `crun run` of /bin/true on a prepared bundle, twice before each apply (after
 *   five not counted; the apply path too has five not counted).
 * - applyToRunningP50Ms / P99: apply sent → the pod object says Running, its container running
 *   (informer on the store).
 * - ratio = applyToRunningP50Ms / rawCrunP50Ms.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Bus, ControlPlane, Informer, KvStore, Resources, startNatsServer } from '../actors/index.js';
import { NODE_FLAGS } from '../cli/heap.js';
import { ClusterImages, ImageStore, bridgeName, detectCgroups, removeServiceProxy, sweepNodeCgroups } from '../node-agent/index.js';
import { kindInfo, normalize, type KObject } from '../protocol/index.js';
import { killNodeLeftovers, removeStateDir } from '../test/helpers/agent.js';
import { busyboxRootfs, tarDir } from '../test/helpers/tar.js';
import { poolSettled, rawCrun } from './pod-start.js';
import { percentile, round1, round2 } from './stats.js';

const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));

function deployment(name: string): KObject {
  return normalize({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'c', image: 'busybox:bench', command: ['/bin/sleep', '3600'] }] } },
    },
  });
}

export async function benchApplyToRunning(n = 30): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-apply-'));
  const srv = await startNatsServer({ dataDir: join(dir, 'nats') });
  const quiet = pino({ level: 'silent' });
  let agent: ChildProcess | undefined;
  const buses: Bus[] = [];
  let cp: ControlPlane | undefined;
  try {
    const tar = tarDir(busyboxRootfs(join(dir, 'src')), join(dir, 'rootfs.tar'));
    const local = new ImageStore(join(dir, 'raw-images'));
    await local.importRootfs(tar, 'busybox:bench');
    const rawLifecycle = rawCrun(dir, (await local.rootfs('busybox:bench')).path);
    await rawLifecycle.run(5); // warm-up, not counted
    const raw: number[] = [];

    const cpBus = await Bus.connect({ servers: srv.url, logger: quiet });
    const bus = await Bus.connect({ servers: srv.url, logger: quiet });
    buses.push(cpBus, bus);
    cp = await ControlPlane.start({ bus: cpBus, logger: quiet });
    await (await ClusterImages.open(bus)).importRootfs(tar, 'busybox:bench');
    // TROUPE_BENCH_PROF=DIR: the agent writes a CPU profile there when it stops (sampled every 100 µs)
    const prof = process.env.TROUPE_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${process.env.TROUPE_BENCH_PROF}`] : [];
    agent = spawn(process.execPath, [...NODE_FLAGS, ...prof, cli, 'agent', '--server', srv.url, '--node-name', 'bench', '--data-dir', join(dir, 'agent'), '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: agent!.stdout! }).on('line', (l) => l.includes('is up') && resolve());
      agent!.once('exit', (c) => reject(new Error(`agent exited ${c}`)));
    });
    const res = await Resources.open(bus);
    const pods = new Informer(bus, await KvStore.open(bus, bus.subjects.stateBucket), kindInfo('Pod')!, quiet);
    const waiting = new Map<string, (t: bigint) => void>();
    // where the time goes: the pod object made (controllers), bound (scheduler), Running (node)
    const seen = new Map<string, { created?: bigint; bound?: bigint }>();
    const gone = new Map<string, () => void>();
    pods.on((type, p) => {
      const app = p.metadata.labels?.app;
      if (!app) return;
      const st = seen.get(app);
      if (st && type !== 'delete') {
        st.created ??= process.hrtime.bigint();
        if (p.spec?.nodeName) st.bound ??= process.hrtime.bigint();
      }
      if (type !== 'delete' && runs(p)) waiting.get(app)?.(process.hrtime.bigint());
      if (type === 'delete' && [...pods.list()].every((q) => q.metadata.labels?.app !== app)) gone.get(app)?.();
    });
    await pods.start();
    await waitNodeReady(res);
    const created: number[] = [];
    const bound: number[] = [];
    const run = async (name: string): Promise<number> => {
      const running = new Promise<bigint>((r) => waiting.set(name, r));
      seen.set(name, {});
      // (the manifest read before the clock starts: from the apply's sending on)
      const manifest = deployment(name);
      const t0 = process.hrtime.bigint();
      await res.apply(manifest);
      const t1 = await running;
      waiting.delete(name);
      const st = seen.get(name)!;
      if (st.created && st.bound) {
        created.push(Number(st.created - t0) / 1e6);
        bound.push(Number(st.bound - st.created) / 1e6);
      }
      const deleted = new Promise<void>((r) => gone.set(name, r));
      await res.send(kindInfo('Deployment')!, 'default', name, { type: 'delete' });
      await deleted;
      return Number(t1 - t0) / 1e6;
    };
    // warm-up, not counted, as crun's five above: the image reaches the node, and the code of the
    // path is compiled (the first applies of a fresh process took 20-27 ms where the later took
    // 14-17: the JIT, not the path)
    for (let w = 0; w < 5; w++) await run(`warm${w}`);
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      // crun's own lifecycle, twice, between each apply and the next (see rawCrun), once the
      // node is quiet again
      await poolSettled(join(dir, 'agent', 'runtime'), true);
      raw.push(...(await rawLifecycle.run(2)));
      times.push(await run(`b${i}`));
    }
    await pods.stop();
    const rawP50 = percentile(raw, 50);
    const p50 = percentile(times, 50);
    const createdP50 = percentile(created.slice(1), 50);
    const boundP50 = percentile(bound.slice(1), 50);
    return {
      rawCrunP50Ms: round1(rawP50),
      applyToRunningP50Ms: round1(p50),
      applyToRunningP99Ms: round1(percentile(times, 99)),
      ratio: round2(p50 / rawP50),
      // the parts of the p50 path (medians of each part, so they need not add up exactly)
      applyToPodCreatedP50Ms: round1(createdP50),
      createdToBoundP50Ms: round1(boundP50),
      boundToRunningP50Ms: round1(p50 - createdP50 - boundP50),
    };
  } finally {
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent!.once('exit', r));
    }
    await cp?.stop();
    for (const b of buses) await b.close();
    await srv.stop();
    // an agent that did not stop in order (it crashed) leaves its sandboxes, pooled ones too, and
    // its state folder on tmpfs: they go here (after a clean stop there is none of either)
    const runtime = join(dir, 'agent', 'runtime');
    await killNodeLeftovers(runtime).catch(() => undefined);
    removeStateDir(runtime);
    rmSync(dir, { recursive: true, force: true });
    try {
      execFileSync('ip', ['link', 'del', bridgeName('bench')], { stdio: 'ignore' });
    } catch {
      // no pod network was made
    }
    // the agent leaves its node's network in place when it stops (its pods may outlive it)
    await removeServiceProxy('bench');
    // and, should it have failed to stop in order, its cgroups
    await sweepNodeCgroups(detectCgroups(), 'bench', new Set()).catch(() => undefined);
  }
}

/**
 * Running, and its container running: a pod whose container failed to start is Running too, as in
 * Kubernetes (a container restarting), and must not count as started.
 */
function runs(p: KObject): boolean {
  const cs = p.status?.containerStatuses as { state?: { running?: unknown } }[] | undefined;
  return p.status?.phase === 'Running' && !!cs?.length && cs.every((c) => c.state?.running !== undefined);
}

async function waitNodeReady(res: Resources): Promise<void> {
  for (;;) {
    const n = await res.get(kindInfo('Node')!, undefined, 'bench');
    if (n?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True')) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}
