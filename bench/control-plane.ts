/**
 * `npm run bench -- control-plane`: the control plane alone, as Kubernetes' kubemark measures it.
 * A `troupe controller` process leads (started with the flags its executable has, NODE_FLAGS);
 * 1,000 hollow nodes (real bus protocol, simulated containers; heartbeats every second, as an
 * agent's by default) run in this process; Deployments
 * totalling 30,000 pods are applied at once.
 *
 * - podsPerSecond: pods from the first apply until every one is Running (acknowledged by the store).
 * - p50/p99ScheduleMs: a pod's creation → its PodScheduled condition (the binding). A pod the
 *   ReplicaSet controller created already placed (Scheduler.place) was scheduled as it was made: 0.
 * - placedAtCreation: how many pods were so placed (the others went through the scheduler's queue).
 * - p50/p99PodStartupMs: a pod's creation → seen Running here (Kubernetes' pod startup SLI, its SLO
 *   p99 ≤ 5 s; hollow containers start at once, so this is the control plane's and the bus's part).
 * - controllerRssMb: the controller process's resident memory with everything in place.
 * - controllerCpuMsPerPod: the controller's CPU time (all its threads, GC included) from the first
 *   apply until every pod is Running, per pod: what the run's speed costs it, steadier than the
 *   speed itself on a machine it shares with the server and the hollow nodes.
 * - natsCpuMsPerPod, fleetCpuMsPerPod: the same for nats-server and for this process (the hollow
 *   nodes and the watcher). With the controller's, what a pod costs the machine: on 2 cores,
 *   3,000 pods/s leaves 0.67 ms of CPU per pod for the three together.
 * - nodeLossToReplacedMs: one hollow node stops → all its pods Running on other nodes.
 *
 * Sizes: TROUPE_BENCH_NODES (1000), TROUPE_BENCH_PODS (30000), TROUPE_BENCH_PER_DEPLOYMENT (500).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Bus, Resources, startNatsServer } from '../actors/index.js';
import { HollowFleet } from '../node-agent/index.js';
import { kindInfo, normalize, type KObject } from '../protocol/index.js';
import { NODE_FLAGS } from '../cli/heap.js';
import { rssMb } from './pod-start.js';
import { cpuMs, percentile, round1, round2 } from './stats.js';

const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));

function isRunning(p: KObject): boolean {
  return !p.metadata.deletionTimestamp && p.status?.phase === 'Running';
}

export async function benchControlPlane(): Promise<Record<string, number>> {
  const nodeCount = Number(process.env.TROUPE_BENCH_NODES ?? 1000);
  const podCount = Number(process.env.TROUPE_BENCH_PODS ?? 30000);
  const per = Number(process.env.TROUPE_BENCH_PER_DEPLOYMENT ?? 500);
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-cp-'));
  const srv = await startNatsServer({ dataDir: join(dir, 'nats') });
  const quiet = pino({ level: 'silent' });
  let controller: ChildProcess | undefined;
  const buses: Bus[] = [];
  let fleet: HollowFleet | undefined;
  try {
    controller = spawn(process.execPath, ['--max-old-space-size=2048', ...NODE_FLAGS, ...(process.env.TROUPE_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.TROUPE_BENCH_PROF}`] : []), cli, 'controller', '--server', srv.url, '--log-level', 'warn', '--cluster-cidr', '10.128.0.0/9'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: controller!.stdout! }).on('line', (l) => l.includes('is leading') && resolve());
      controller!.once('exit', (c) => reject(new Error(`controller exited ${c}`)));
    });
    const fleetBus = await Bus.connect({ servers: srv.url, logger: quiet, name: 'fleet' });
    const bus = await Bus.connect({ servers: srv.url, logger: quiet, name: 'bench' });
    buses.push(fleetBus, bus);
    const names = Array.from({ length: nodeCount }, (_, i) => `hollow-${i}`);
    fleet = new HollowFleet(fleetBus, names, { capacity: { cpu: '32', memory: '128Gi', pods: '110' }, logger: quiet });
    await fleet.start();
    await fleet.registered;
    const res = await Resources.open(bus);
    const NODE = kindInfo('Node')!;
    for (;;) {
      const ready = (await res.list(NODE)).filter((n) => n.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True')).length;
      if (ready === nodeCount) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // the watcher: the fleet's own pod informer (one watch and one decode of each pod change in
    // this process instead of two: the harness shares the machine with what it measures)
    const pods = fleet.pods!;
    let running = 0;
    let allRunning!: () => void;
    const done = new Promise<void>((r) => (allRunning = r));
    const counted = new Set<string>();
    /** Each pod's creation → Running seen here (ms). */
    const startup: number[] = [];
    // kept by events, not by scanning: this process also runs the hollow nodes
    const runningNow = new Set<string>();
    let onChange: (() => void) | undefined;
    pods.on((type, p) => {
      const key = `${p.metadata.namespace}/${p.metadata.name}`;
      if (type !== 'delete' && isRunning(p)) runningNow.add(key);
      else runningNow.delete(key);
      if (type !== 'delete' && isRunning(p) && !counted.has(key)) {
        counted.add(key);
        if (p.metadata.creationTimestamp) startup.push(Date.now() - Date.parse(p.metadata.creationTimestamp));
        if (++running === podCount) allRunning();
      }
      onChange?.();
    });
    const deployments = Math.ceil(podCount / per);
    const cpu0 = cpuMs(controller.pid!);
    const natsCpu0 = cpuMs(srv.pid());
    const selfCpu0 = cpuMs(process.pid);
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: deployments }, (_, i) =>
        res.apply(
          normalize({
            apiVersion: 'apps/v1',
            kind: 'Deployment',
            metadata: { name: `load-${i}` },
            spec: {
              replicas: Math.min(per, podCount - i * per),
              selector: { matchLabels: { app: `load-${i}` } },
              template: { metadata: { labels: { app: `load-${i}` } }, spec: { containers: [{ name: 'c', image: 'hollow:1', resources: { requests: { cpu: '10m', memory: '16Mi' } } }] } },
            },
          }),
        ),
      ),
    );
    const timer = setInterval(() => process.stderr.write(`control-plane: ${running}/${podCount} pods Running after ${((Date.now() - t0) / 1000).toFixed(1)} s\n`), 5000);
    await done;
    clearInterval(timer);
    const seconds = (Date.now() - t0) / 1000;
    const controllerCpu = cpuMs(controller.pid!) - cpu0;
    const natsCpu = cpuMs(srv.pid()) - natsCpu0;
    const selfCpu = cpuMs(process.pid) - selfCpu0;
    const schedule: number[] = [];
    let placedAtCreation = 0;
    for (const p of pods.list()) {
      const c = (p.status?.conditions as { type: string; status: string; lastTransitionTime?: string }[] | undefined)?.find((x) => x.type === 'PodScheduled');
      if (c?.lastTransitionTime && p.metadata.creationTimestamp) schedule.push(Date.parse(c.lastTransitionTime) - Date.parse(p.metadata.creationTimestamp));
      if (c?.lastTransitionTime === p.metadata.creationTimestamp) placedAtCreation++;
    }
    const controllerRss = rssMb(controller.pid!);

    // a node stops: its pods Running elsewhere
    const victim = names[0]!;
    const lost = new Set([...pods.list()].filter((p) => p.spec.nodeName === victim && isRunning(p)).map((p) => p.metadata.name));
    const lostCount = lost.size;
    const tKill = Date.now();
    fleet.kill(victim);
    let replacedAt = 0;
    await new Promise<void>((resolve) => {
      onChange = () => {
        if (replacedAt) return;
        const stillThere = [...lost].some((name) => runningNow.has(`default/${name}`));
        if (!stillThere && runningNow.size >= podCount) {
          replacedAt = Date.now();
          resolve();
        }
      };
    });
    return {
      nodes: nodeCount,
      pods: podCount,
      podsPerSecond: Math.round(podCount / seconds),
      p50ScheduleMs: round1(percentile(schedule, 50)),
      p99ScheduleMs: round1(percentile(schedule, 99)),
      placedAtCreation,
      p50PodStartupMs: round1(percentile(startup, 50)),
      p99PodStartupMs: round1(percentile(startup, 99)),
      controllerRssMb: controllerRss,
      controllerCpuMsPerPod: round2(controllerCpu / podCount),
      natsCpuMsPerPod: round2(natsCpu / podCount),
      fleetCpuMsPerPod: round2(selfCpu / podCount),
      podsOnLostNode: lostCount,
      nodeLossToReplacedMs: replacedAt - tKill,
    };
  } finally {
    await fleet?.stop();
    if (controller && controller.exitCode === null) {
      controller.kill('SIGTERM');
      await new Promise((r) => controller!.once('exit', r));
    }
    for (const b of buses) await b.close();
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
