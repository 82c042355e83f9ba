/**
 * cgroups: which layout this machine mounts, and the agent's own per-container cgroup that
 * carries the limits.
 *
 * The agent creates `<hierarchy>/troupe-<node>/<pod>/<container>` itself and writes the limits
 * there; crun's cgroup for the container process is created below it. So the OOM-kill counter and
 * the usage stay readable after crun removed its own cgroup, and the limits apply to everything
 * the container starts (exec'd processes included).
 *
 * Detected, not assumed: cgroup v1, v2, or hybrid (v1 plus a cgroup2 `unified` mount, which crun
 * 1.8 refuses: it must run where that mount is gone, see mount-namespace.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { readFile, rmdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export type CgroupLayout = 'v1' | 'v2' | 'hybrid';

interface MountLine {
  mountPoint: string;
  fsType: string;
  superOptions: string;
}

function parseMountinfo(text: string): MountLine[] {
  const out: MountLine[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const l = left.split(' ');
    const r = right.split(' ');
    out.push({ mountPoint: l[4]!.replace(/\\040/g, ' '), fsType: r[0]!, superOptions: r[2] ?? '' });
  }
  return out;
}

export interface CgroupInfo {
  layout: CgroupLayout;
  /** v1: controller name → mount point. */
  v1: Record<string, string>;
  /** v2 (or the hybrid's unified) mount point. */
  unified?: string;
  /** Every cgroup v1 hierarchy mounted (named ones such as systemd's included): crun creates its path in each. */
  v1Mounts: string[];
}

export function detectCgroups(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): CgroupInfo {
  const mounts = parseMountinfo(mountinfo);
  const v1: Record<string, string> = {};
  const v1Mounts: string[] = [];
  let unified: string | undefined;
  for (const m of mounts) {
    if (m.fsType === 'cgroup2') unified ??= m.mountPoint;
    if (m.fsType === 'cgroup') {
      if (!v1Mounts.includes(m.mountPoint)) v1Mounts.push(m.mountPoint);
      for (const opt of m.superOptions.split(',')) {
        if (['memory', 'cpu', 'cpuacct', 'pids', 'cpuset', 'blkio', 'devices', 'freezer'].includes(opt)) v1[opt] = m.mountPoint;
      }
    }
  }
  const hasV1 = Object.keys(v1).length > 0;
  const layout: CgroupLayout = hasV1 ? (unified ? 'hybrid' : 'v1') : 'v2';
  return { layout, v1, unified, v1Mounts };
}

/**
 * What favorDynamicCgroups found or did: `on` (already set), `enabled` (remounted now),
 * `unavailable` (no cgroup2 mount here to set it on), `failed` (the kernel refused: before 6.2 it
 * has no such option).
 */
export interface FavorDynmodsResult {
  state: 'on' | 'enabled' | 'unavailable' | 'failed';
  mountPoint?: string;
  message?: string;
}

/** Remounts a mount point with one more option (util-linux keeps the options it has). */
export type Remount = (mountPoint: string, option: string) => void;

const remountWith: Remount = (mountPoint, option) => {
  execFileSync('mount', ['-o', `remount,${option}`, mountPoint], { stdio: ['ignore', 'ignore', 'pipe'] });
};

/**
 * Turns on the kernel's `favordynmods` for cgroups, on the cgroup2 mount (v2, or the hybrid
 * layout's `unified`): a node that starts and stops containers all day moves processes between
 * cgroups all day, and without it every move waits for an RCU grace period under the global
 * threadgroup lock. Measured on the project's machines (cgroup v1 + unified, kernel 6.18): moving
 * one process into a new v1 cgroup took 16 ms, 0.19 ms with it; a pod start went from 36 to 24 ms.
 * The price, as the kernel's documentation says, is slightly dearer forks and exits. The flag is
 * the kernel's, for every hierarchy at once; v1 hierarchies cannot take it on a remount. Like the
 * kernel tunables the kubelet sets at its start, it is left on when the agent stops.
 */
export function favorDynamicCgroups(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8'), remount: Remount = remountWith): FavorDynmodsResult {
  const m = parseMountinfo(mountinfo).find((x) => x.fsType === 'cgroup2');
  if (!m) return { state: 'unavailable', message: 'no cgroup2 mount in this mount namespace' };
  if (m.superOptions.split(',').includes('favordynmods')) return { state: 'on', mountPoint: m.mountPoint };
  try {
    remount(m.mountPoint, 'favordynmods');
    return { state: 'enabled', mountPoint: m.mountPoint };
  } catch (err) {
    const said = String((err as { stderr?: Buffer | string }).stderr ?? (err as Error).message).trim().split('\n')[0];
    return { state: 'failed', mountPoint: m.mountPoint, message: said };
  }
}

export interface Limits {
  /** bytes */
  memory?: number;
  /** CFS quota (µs per period) and period (µs). */
  cpuQuota?: number;
  cpuPeriod?: number;
  cpuShares?: number;
  pids?: number;
}

export interface CgroupStats {
  /** Cumulative CPU time, nanoseconds. */
  cpuUsageNs: number;
  memoryBytes: number;
  /** OOM kills recorded for this cgroup (v2: hierarchical; v1: only where the victim's own memcg was). */
  oomKills: number;
  /** v1: times usage hit this cgroup's memory limit (its children's OOM kills are not counted here). */
  memoryLimitHits: number;
  pids: number;
}

const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids'] as const;

async function readNum(path: string): Promise<number> {
  try {
    return Number((await readFile(path, 'utf8')).trim()) || 0;
  } catch {
    return 0;
  }
}

/** The agent's cgroups for one container, under `troupe-<node>/<pod>/<container>`. */
export class ContainerCgroup {
  constructor(
    private readonly info: CgroupInfo,
    /** Relative path, e.g. troupe-node1/<pod uid>/<container>. */
    readonly path: string,
  ) {}

  /** The path crun gets as cgroupsPath: a child of ours. */
  get runtimePath(): string {
    return `/${this.path}/ctr`;
  }

  private dirs(): string[] {
    if (this.info.layout === 'v2') return [join(this.info.unified!, this.path)];
    return V1_CONTROLLERS.filter((c) => this.info.v1[c]).map((c) => join(this.info.v1[c]!, this.path));
  }

  private dir(controller: (typeof V1_CONTROLLERS)[number]): string | undefined {
    if (this.info.layout === 'v2') return join(this.info.unified!, this.path);
    const m = this.info.v1[controller];
    return m ? join(m, this.path) : undefined;
  }

  /**
   * Creates the container's cgroups and writes its limits. Synchronous: cgroupfs answers in
   * microseconds, and on a pod's start path a round trip through the thread pool per folder and
   * per file cost more than the work (measured: 8 ms of awaits while a sandbox came up).
   *
   * With `spare` (see makeSpareCgroup; for a pod's first container, its pod folder not made yet),
   * that one's folders are renamed into place instead of made: the kernel sets a cgroup up at its
   * mkdir (a memory cgroup's 45 µs against a rename's 13 here), and this call went from 0.62 to
   * 0.38 ms on the pod's start path for the eight folders of cgroup v1.
   */
  create(limits: Limits, spare?: string): void {
    for (const d of this.dirs()) if (!spare || !takeSpare(d, spare)) mkdirSync(d, { recursive: true });
    if (this.info.layout === 'v2') {
      const d = this.dir('memory')!;
      // enable controllers down the path so the limits below take effect
      const enable = (dir: string) => {
        try {
          writeFileSync(join(dir, 'cgroup.subtree_control'), '+memory +cpu +pids');
        } catch {
          // a controller the kernel does not offer here: the limits that need it fail below
        }
      };
      let cur = this.info.unified!;
      for (const p of this.path.split('/')) {
        enable(cur);
        cur = join(cur, p);
      }
      enable(d);
      if (limits.memory) writeFileSync(join(d, 'memory.max'), String(limits.memory));
      if (limits.cpuQuota) writeFileSync(join(d, 'cpu.max'), `${limits.cpuQuota} ${limits.cpuPeriod ?? 100000}`);
      if (limits.cpuShares) writeFileSync(join(d, 'cpu.weight'), String(Math.max(1, Math.min(10000, Math.round(1 + ((limits.cpuShares - 2) * 9999) / 262142)))));
      if (limits.pids) writeFileSync(join(d, 'pids.max'), String(limits.pids));
      return;
    }
    const mem = this.dir('memory');
    if (mem && limits.memory) writeFileSync(join(mem, 'memory.limit_in_bytes'), String(limits.memory));
    const cpu = this.dir('cpu');
    if (cpu) {
      if (limits.cpuPeriod) writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(limits.cpuPeriod));
      if (limits.cpuQuota) writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String(limits.cpuQuota));
      if (limits.cpuShares) writeFileSync(join(cpu, 'cpu.shares'), String(limits.cpuShares));
    }
    const pids = this.dir('pids');
    if (pids && limits.pids) writeFileSync(join(pids, 'pids.max'), String(limits.pids));
  }

  /** The limits as the kernel holds them (for tests and describe). */
  async readLimits(): Promise<Limits> {
    if (this.info.layout === 'v2') {
      const d = this.dir('memory')!;
      const [q, p] = (await readFile(join(d, 'cpu.max'), 'utf8').catch(() => 'max 100000')).trim().split(' ');
      return { memory: await readNum(join(d, 'memory.max')), cpuQuota: q === 'max' ? -1 : Number(q), cpuPeriod: Number(p), pids: await readNum(join(d, 'pids.max')) };
    }
    return {
      memory: await readNum(join(this.dir('memory') ?? '/nonexistent', 'memory.limit_in_bytes')),
      cpuQuota: await readNum(join(this.dir('cpu') ?? '/nonexistent', 'cpu.cfs_quota_us')),
      cpuPeriod: await readNum(join(this.dir('cpu') ?? '/nonexistent', 'cpu.cfs_period_us')),
      cpuShares: await readNum(join(this.dir('cpu') ?? '/nonexistent', 'cpu.shares')),
      pids: await readNum(join(this.dir('pids') ?? '/nonexistent', 'pids.max')),
    };
  }

  async stats(): Promise<CgroupStats> {
    if (this.info.layout === 'v2') {
      const d = this.dir('memory')!;
      const cpuStat = await readFile(join(d, 'cpu.stat'), 'utf8').catch(() => '');
      const events = await readFile(join(d, 'memory.events'), 'utf8').catch(() => '');
      return {
        cpuUsageNs: Number(/usage_usec (\d+)/.exec(cpuStat)?.[1] ?? 0) * 1000,
        memoryBytes: await readNum(join(d, 'memory.current')),
        oomKills: Number(/oom_kill (\d+)/.exec(events)?.[1] ?? 0),
        memoryLimitHits: Number(/(?:^|\n)max (\d+)/.exec(events)?.[1] ?? 0),
        pids: await readNum(join(d, 'pids.current')),
      };
    }
    const oom = await readFile(join(this.dir('memory') ?? '/nonexistent', 'memory.oom_control'), 'utf8').catch(() => '');
    return {
      cpuUsageNs: await readNum(join(this.dir('cpuacct') ?? '/nonexistent', 'cpuacct.usage')),
      memoryBytes: await readNum(join(this.dir('memory') ?? '/nonexistent', 'memory.usage_in_bytes')),
      oomKills: Number(/oom_kill (\d+)/.exec(oom)?.[1] ?? 0),
      memoryLimitHits: await readNum(join(this.dir('memory') ?? '/nonexistent', 'memory.failcnt')),
      pids: await readNum(join(this.dir('pids') ?? '/nonexistent', 'pids.current')),
    };
  }

  /** Every folder of this container's path, in every hierarchy (crun's leaf included). */
  private allDirs(): string[] {
    if (this.info.layout === 'v2') return [join(this.info.unified!, this.path)];
    return this.info.v1Mounts.map((m) => join(m, this.path));
  }

  /** Removes the container's cgroups in every hierarchy (deepest first), and its pod's and node's when empty. */
  async remove(): Promise<void> {
    for (const d of this.allDirs()) {
      await removeTree(d);
      // parents: pod, then node folder, only if empty
      const parts = d.split('/');
      for (let i = 0; i < 2; i++) {
        parts.pop();
        await rmdir(parts.join('/')).catch(() => undefined);
      }
    }
  }

  /** Whether the pod's folder (this container's parent) is there, in the first hierarchy. */
  podExists(): boolean {
    return existsSync(dirname(this.dirs()[0]!));
  }

  exists(): boolean {
    return this.allDirs().some((d) => existsSync(d));
  }
}

/** The folder a spare's container folder has until it is renamed to the container's name. */
const SPARE_LEAF = 'c';
const SPARE_PREFIX = 'spare-';

/** A spare's name (see makeSpareCgroup), unique to the agent process that made it. */
export function spareCgroupName(seq: number): string {
  return `${SPARE_PREFIX}${process.pid}-${seq}`;
}

/** Whether a folder under `troupe-<node>` is a spare rather than a pod's (pods are named by uid). */
export function isSpareCgroup(name: string): boolean {
  return name.startsWith(SPARE_PREFIX);
}

/**
 * Makes a spare: the folders a pod's first container needs (`troupe-<node>/<name>/c`, in each
 * hierarchy whose limits the agent writes), ahead of the pod, for create() to rename into place.
 * False (nothing left behind) when they cannot be made.
 */
export function makeSpareCgroup(info: CgroupInfo, node: string, name: string): boolean {
  const cg = new ContainerCgroup(info, `troupe-${node}/${name}/${SPARE_LEAF}`);
  try {
    cg.create({});
    return true;
  } catch {
    removeSpareCgroup(info, node, name);
    return false;
  }
}

/**
 * Removes a spare's folders (it was never taken, or only in some hierarchies), and the node's
 * folder when that leaves it empty (the last pod's removal left it to its spares).
 */
export function removeSpareCgroup(info: CgroupInfo, node: string, name: string): void {
  const roots = info.layout === 'v2' ? [info.unified!] : info.v1Mounts;
  // (not there: taken, or not made in this hierarchy; not empty: the node's)
  for (const root of roots) rmdirEach([join(root, `troupe-${node}`, name, SPARE_LEAF), join(root, `troupe-${node}`, name), join(root, `troupe-${node}`)]);
}

/** Removes each empty folder, deepest first as given; one not there or not empty stays, quietly. */
function rmdirEach(dirs: string[]): void {
  for (const d of dirs) {
    try {
      rmdirSync(d);
    } catch {
      // not there, or not empty
    }
  }
}

/**
 * Renames spare `spare` into place as container folder `dir` (`<root>/troupe-<node>/<pod>/<name>`),
 * within its hierarchy: the spare's folder becomes the pod's, its leaf the container's (cgroupfs
 * renames only within one parent, as here). False when the spare is not there or the pod's folder
 * is: then the caller makes the folders itself.
 */
function takeSpare(dir: string, spare: string): boolean {
  const pod = dirname(dir);
  const from = join(dirname(pod), spare);
  try {
    renameSync(from, pod);
  } catch {
    // (what is there of it goes)
    rmdirEach([join(from, SPARE_LEAF), from]);
    return false;
  }
  try {
    renameSync(join(pod, SPARE_LEAF), dir);
    return true;
  } catch {
    // (the leaf stays in the pod's folder: removed with it)
    return false;
  }
}

/**
 * Removes the pod folders under a node's cgroup parent (`troupe-<node>`) whose pod is not in
 * `keep`, in every hierarchy, then the parent itself when empty: housekeeping after a removal
 * that was cut short (a crash, a process slow to leave). Returns the folders removed.
 */
export async function sweepNodeCgroups(info: CgroupInfo, node: string, keep: Set<string>): Promise<string[]> {
  const roots = info.layout === 'v2' ? [info.unified!] : info.v1Mounts;
  const removed: string[] = [];
  for (const root of roots) {
    const parent = join(root, `troupe-${node}`);
    let pods: string[];
    try {
      pods = (await readdir(parent, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      continue;
    }
    for (const uid of pods) {
      if (keep.has(uid)) continue;
      await removeTree(join(parent, uid), 3);
      if (!existsSync(join(parent, uid))) removed.push(join(parent, uid));
    }
    await rmdir(parent).catch(() => undefined);
  }
  return removed;
}

async function removeTree(dir: string, tries = 150): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir, { withFileTypes: true }).then((es) => es.filter((e) => e.isDirectory()).map((e) => e.name));
  } catch {
    return;
  }
  for (const e of entries) await removeTree(join(dir, e), tries);
  // a cgroup folder holding no process can be removed; retry while the last processes exit and
  // are reaped (under load that takes seconds, not milliseconds)
  for (let i = 0; i < tries; i++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      await new Promise((r) => setTimeout(r, Math.min(100, 10 * (i + 1))));
    }
  }
}
