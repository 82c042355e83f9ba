/**
 * Runs containers with crun, one shim each.
 *
 * The shim is a small shell job of the node's launcher (launcher.ts): two loggers, then, in a
 * private mount namespace of its own, the container's overlay rootfs (the image's unpacked rootfs
 * as the lower layer) and `crun run` in the foreground (crun waits for the container and returns
 * its exit status; measured here, `run --detach` + waitpid lost the status ~10% of the time); the
 * status goes to a file. The shim outlives an agent restart, so a new agent can adopt the
 * container and still learn its real exit status; its mounts vanish with its namespace.
 *
 * Bundles, crun's state and the writable layers live on tmpfs (prepareStateDir); output on disk.
 * Signals go straight to the container's first process (crun's pid file), as `crun kill` does.
 * Limits live on the agent's own cgroup for the container (cgroups.ts); crun's is a child of it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, realpathSync, renameSync, rmdirSync, rmSync, statSync, statfsSync, symlinkSync, unlinkSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { readFile, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { stableJson, type Container } from '../protocol/index.js';
import { backoff } from '../supervisor/index.js';
import { ContainerCgroup, detectCgroups, makeSpareCgroup, removeSpareCgroup, spareCgroupName, sweepNodeCgroups, type CgroupInfo, type CgroupStats } from './cgroups.js';
import { Crun } from './crun.js';
import type { Cni, CniResult, PortMapping } from './cni.js';
import { RuntimeError } from './errors.js';
import { readdirIf, readIf } from './files.js';
import { Gate } from './gate.js';
import { Launcher, OVERLAY_DIRS, type PooledShim } from './launcher.js';
import type { ImageRuntimeConfig } from './image-config.js';
import { buildSpec, limitsFor } from './oci-spec.js';

export interface RunRequest {
  podUid: string;
  podName: string;
  namespace: string;
  container: Container;
  image: ImageRuntimeConfig;
  /** The image's unpacked rootfs (lower layer). */
  lowerDir: string;
  extraEnv?: { name: string; value: string }[];
  /** Kept beside the container so that a restarted agent can take the pod back (adoption). */
  podSpec?: unknown;
  restartCount?: number;
  /**
   * The pod sandbox's process, which the container joins for its network, IPC and UTS namespaces.
   * It may still be starting: the container's folder, files and cgroup are prepared meanwhile, and
   * only its OCI config waits for the sandbox.
   */
  sandbox?: Promise<{ pid: number }>;
  /**
   * The sandbox's pid as soon as it is spawned (its namespaces exist from then on), before it is
   * ready. With it the container's shim starts at once and waits only for the sandbox to be ready
   * (hostname, loopback, pod network) before it runs crun.
   */
  sandboxPid?: Promise<number>;
}


/** Which pod a container folder belongs to (meta.json). */
export interface ContainerMeta {
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
  podSpec?: unknown;
  restartCount?: number;
}

export type Inspected = { state: 'running'; pid: number; startedAt: Date } | { state: 'exited'; exit: Exited; startedAt?: Date } | { state: 'absent' };

export interface Started {
  id: string;
  pid: number;
  startedAt: Date;
}

export type ContainerExitReason = 'Completed' | 'Error' | 'OOMKilled' | 'ContainerCannotRun';

export interface Exited {
  id: string;
  exitCode: number;
  /** The signal that ended it, when it was killed. */
  signal?: string;
  reason: ContainerExitReason;
  /** For ContainerCannotRun: what crun or the shim said. */
  message?: string;
  finishedAt: Date;
}

/** A container's output files beside `<log base>.`: each stream and its rotated file. */
const LOG_FILES = ['stdout.log', 'stdout.log.1', 'stderr.log', 'stderr.log.1'];
/** The same files of the instance before (logs --previous). */
const previousLog = (f: string) => f.replace('.log', '.previous.log');

const SIGNALS: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 9: 'SIGKILL', 15: 'SIGTERM', 6: 'SIGABRT', 11: 'SIGSEGV' };

/** One log line: when it was read (ms since the epoch, µs precision) and what it said. */
export interface LogLine {
  ts: number;
  stream: 'stdout' | 'stderr';
  line: string;
}

function parseLog(text: string, stream: 'stdout' | 'stderr'): LogLine[] {
  const out: LogLine[] = [];
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const sp = raw.indexOf(' ');
    const ts = Number(raw.slice(0, sp));
    if (sp < 0 || !Number.isFinite(ts)) continue;
    out.push({ ts: ts * 1000, stream, line: raw.slice(sp + 1) });
  }
  return out;
}

export interface RuntimeOptions {
  /**
   * Folder for bundles and crun's state. Made a link to a folder on tmpfs when there is one (see
   * prepareStateDir); an existing folder is used as it is.
   */
  dataDir: string;
  /** Folder for the containers' output (default: `logs` beside dataDir). */
  logDir?: string;
  /** Node name: part of every container id, cgroup and folder, so agents never collide. */
  node: string;
  cgroups?: CgroupInfo;
  crunBinary?: string;
  /** A container log file is rotated past this size (bytes; kubelet's default 10 MiB). */
  logMaxBytes?: number;
  /** busybox-static for the shims' short steps (default /bin/busybox when there; '' for util-linux). */
  busybox?: string;
  /**
   * How many containers (and, apart, how many pod sandboxes) are started at once; the others wait
   * their turn (default TROUPE_START_CONCURRENCY, else 4).
   */
  startConcurrency?: number;
  /**
   * Sandboxes kept ready on the pod network, for pods without host ports to take, and as many
   * shims made ahead (default TROUPE_SANDBOX_POOL, else 2; 0: none). See fillPool().
   */
  sandboxPool?: number;
}

export const DEFAULT_START_CONCURRENCY = 4;
export const DEFAULT_SANDBOX_POOL = 2;
/** After a pooled sandbox failed, the pool is filled again this long after (ms), doubling per failure in a row up to the max. */
const POOL_RETRY_MS = 500;
const POOL_RETRY_MAX_MS = 30_000;

export class ContainerRuntime {
  readonly crun: Crun;
  readonly cgroups: CgroupInfo;
  private readonly exits = new Map<string, Promise<Exited>>();
  private readonly sandboxes = new Map<string, Promise<{ pid: number }>>();
  /** Container starts under way at once (see Gate), and sandbox starts. */
  private readonly starts: Gate;
  private readonly sandboxStarts: Gate;
  /**
   * Each sandbox's pid, known once it is spawned (before it is ready); `pid` once it is (a
   * container's config then needs no wait for it).
   */
  private readonly sandboxPids = new Map<string, { known: Promise<number>; pid?: number }>();
  /** Sandboxes spawned but not yet ready (their pids). */
  private readonly startingSandboxes = new Set<number>();
  private launch?: Launcher;
  /** Where container output goes (on disk: the state folder may be tmpfs). */
  readonly logDir: string;
  /** The node's pod network, once the control plane has given the node a pod CIDR. */
  network?: Cni;
  /** The cluster DNS pods use (their /etc/resolv.conf), once the node serves it. */
  dns?: { nameserver: string; domain: string };
  /** Containers the agent itself sent SIGKILL to (so their 137 is not an OOM kill). */
  private readonly killedByUs = new Set<string>();
  /** How many ready sandboxes the pool keeps, and those ready now. */
  private readonly poolSize: number;
  /** The image folder of the last container with a sandbox started here: pooled shims hold its rootfs ready. */
  private lastLowerDir?: string;
  private readonly pool: { id: string; pid: number; net: boolean }[] = [];
  /** Pooled sandboxes being made (their ids). */
  private readonly poolInFlight = new Set<string>();
  private poolClosed = false;
  /**
   * The last sweep of the pool folder: before the pod network was known, or with it (none yet: no
   * fillPool() so far, and a runtime whose owner never asks for a pool has none); the one under way.
   */
  private poolSweep?: 'plain' | 'net';
  /** Spare cgroups made ahead (see makeSpareCgroup): a pod's first container takes one. */
  private readonly spareCgroups: string[] = [];
  private spareSeq = 0;
  private poolSweeping?: Promise<void>;
  private refillTimer?: NodeJS.Timeout;
  /** Pooled sandboxes that failed in a row, and the refill waiting after them (see refillAfterFailure). */
  private poolFailures = 0;
  private poolRetry?: NodeJS.Timeout;
  /** Pods whose containers are prepared but not run yet (see holdStarts), by pod uid. */
  private readonly holds = new Map<string, StartHold>();
  /** Containers started before their pod actor asked (see startAhead), by container id. */
  private readonly ahead = new Map<string, { req: RunRequest; run: Promise<Started> }>();
  /** Pods whose sandbox was taken ahead and of which no actor has asked for a container yet. */
  private readonly aheadPods = new Set<string>();

  constructor(readonly opts: RuntimeOptions) {
    // (checked before anything is made on disk)
    const parallel = countSetting('startConcurrency', opts.startConcurrency, 'TROUPE_START_CONCURRENCY', DEFAULT_START_CONCURRENCY, 1);
    this.poolSize = sandboxPoolSize(opts.sandboxPool);
    this.starts = new Gate(parallel);
    this.sandboxStarts = new Gate(parallel);
    prepareStateDir(opts.dataDir, opts.node);
    this.logDir = opts.logDir ?? join(dirname(opts.dataDir), 'logs');
    mkdirSync(this.logDir, { recursive: true });
    this.cgroups = opts.cgroups ?? detectCgroups();
    this.crun = new Crun(join(opts.dataDir, 'crun'), this.cgroups, opts.crunBinary);
    // crun exec (probes, `troupe exec`) and the rest run as launcher jobs: no fork of this process
    this.crun.runner = (argv, o) => this.runCommand(argv, o);
  }

  /** A container's id: unique per node (crun ids are per state root). */
  containerId(podUid: string, name: string): string {
    return `${this.opts.node}.${podUid}.${name}`;
  }

  dir(id: string): string {
    return join(this.opts.dataDir, 'containers', id);
  }

  cgroupOf(podUid: string, name: string): ContainerCgroup {
    return new ContainerCgroup(this.cgroups, `troupe-${this.opts.node}/${podUid}/${name}`);
  }

  /**
   * Holds the starts of pod `podUid`'s containers: each is prepared as usual (folder, cgroup, shim,
   * sandbox, config), and crun runs only once releaseStarts() says so; after refuseStarts() each
   * start fails instead (the shim told to give up). What a node agent does with a pod it was told
   * is on its way before the store has it (see PodSync.intent): everything but running it.
   */
  holdStarts(podUid: string): void {
    if (!this.holds.has(podUid)) this.holds.set(podUid, new StartHold());
  }

  /**
   * Lets the held starts of pod `podUid` go on (see holdStarts): a container whose config is
   * written is told `go` before this returns.
   */
  releaseStarts(podUid: string): void {
    this.holds.get(podUid)?.release();
    this.holds.delete(podUid);
  }

  /**
   * Makes the held starts of pod `podUid` fail with `err`, and those still to come, until
   * forgetStarts() (see holdStarts).
   */
  refuseStarts(podUid: string, err: Error): void {
    this.holdStarts(podUid);
    this.holds.get(podUid)!.refuse(err);
  }

  /** Forgets pod `podUid`'s hold, released or refused (the pod is gone from the node). */
  forgetStarts(podUid: string): void {
    this.holds.delete(podUid);
  }

  /** Creates and starts one container; resolves once it runs (its pid is known). */
  async run(req: RunRequest): Promise<Started> {
    const id = this.containerId(req.podUid, req.container.name);
    // (an actor has the pod now: what was made ahead for it is its own)
    this.aheadPods.delete(req.podUid);
    const ahead = this.ahead.get(id);
    if (ahead) {
      // started before its actor asked (see startAhead): that start is this one
      this.ahead.delete(id);
      if (sameStart(ahead.req, req)) return ahead.run;
      // (asked with another spec than it was started with, which its makers never do: the actor's
      // spec is the truth, the other goes)
      await ahead.run.catch(() => undefined);
      await this.remove(req.podUid, req.container.name);
    }
    return this.start(req);
  }

  /**
   * Starts a container before its pod's actor asks for it: a pod the node was told of ahead (see
   * PodSync.intent), its starts held (holdStarts) until the store has it. Everything but crun is
   * done at once (sandbox, folder, cgroup, shim, config), so that a release leaves only `go`; the
   * actor's run() of the same container then takes this start over. dropAhead() undoes it.
   */
  startAhead(req: RunRequest): void {
    const id = this.containerId(req.podUid, req.container.name);
    if (this.ahead.has(id) || this.exits.has(id)) return;
    const run = this.start(req);
    run.catch(() => undefined);
    this.ahead.set(id, { req, run });
  }

  /**
   * Undoes the starts made ahead for pod `podUid` that no actor took over (the pod was given up,
   * its starts refused first: see refuseStarts; or its actor refused to run it): their containers
   * go, and the pod's sandbox when it was taken ahead and no actor has asked for the pod since.
   * What an actor took over is left alone.
   */
  async dropAhead(podUid: string): Promise<void> {
    for (const [id, a] of [...this.ahead]) {
      if (a.req.podUid !== podUid) continue;
      this.ahead.delete(id);
      await a.run.catch(() => undefined);
      await this.remove(podUid, a.req.container.name);
    }
    if (this.aheadPods.delete(podUid)) await this.removeSandbox(podUid);
  }

  private async start(req: RunRequest): Promise<Started> {
    const id = this.containerId(req.podUid, req.container.name);
    const d = this.dir(id);
    if (existsSync(d)) await this.clearForRestart(id, d);
    const cg = this.cgroupOf(req.podUid, req.container.name);
    // the folder is on tmpfs (see stateDir) and the cgroups on cgroupfs: written synchronously,
    // each in microseconds, where a thread-pool round trip apiece cost milliseconds in all
    mkdirSync(d, { recursive: true });
    for (const sub of OVERLAY_DIRS) mkdirSync(join(d, sub));
    /** The rest of the folder and the container's cgroup: all crun needs but its config. */
    const prepare = () => {
      writeFileSync(join(d, 'hosts'), `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${req.podName}\n`);
      writeFileSync(join(d, 'hostname'), `${req.podName}\n`);
      writeFileSync(
        join(d, 'meta.json'),
        JSON.stringify({ namespace: req.namespace, pod: req.podName, podUid: req.podUid, container: req.container.name, podSpec: req.podSpec, restartCount: req.restartCount ?? 0 } satisfies ContainerMeta),
      );
      writeFileSync(join(d, 'resolv.conf'), resolvConf(req.namespace, this.dns));
      // (a pod's first container, its pod folder not there yet, takes a spare made ahead)
      const spare = this.spareCgroups.length > 0 && !cg.podExists() ? this.spareCgroups.pop() : undefined;
      cg.create(limitsFor(req.container), spare);
    };
    const writeConfig = (sandboxPid: number | undefined) => {
      // (read only for a user or group given by name: most images name none)
      let passwd: string | undefined;
      let group: string | undefined;
      const spec = buildSpec({
        container: req.container,
        image: req.image,
        hostname: req.podName,
        rootfs: join(d, 'rootfs'),
        etcFiles: { hosts: join(d, 'hosts'), hostname: join(d, 'hostname'), resolvConf: join(d, 'resolv.conf') },
        cgroupsPath: cg.runtimePath,
        extraEnv: req.extraEnv,
        ...(sandboxPid ? { joinNamespaces: { network: `/proc/${sandboxPid}/ns/net`, ipc: `/proc/${sandboxPid}/ns/ipc`, uts: `/proc/${sandboxPid}/ns/uts` } } : {}),
        lookupUser: (name) => {
          passwd ??= readIf(join(req.lowerDir, 'etc/passwd'));
          const line = passwd.split('\n').find((l) => l.split(':')[0] === name);
          return line ? { uid: Number(line.split(':')[2]), gid: Number(line.split(':')[3]) } : undefined;
        },
        lookupGroup: (name) => {
          group ??= readIf(join(req.lowerDir, 'etc/group'));
          const line = group.split('\n').find((l) => l.split(':')[0] === name);
          return line ? Number(line.split(':')[2]) : undefined;
        },
      });
      writeFileSync(join(d, 'config.json'), JSON.stringify(spec));
    };

    // a bounded number of starts at once (see Gate): the rest wait here
    const release = await this.starts.enter();
    try {
      return await this.launchContainer(req, id, d, prepare, writeConfig);
    } finally {
      release();
    }
  }

  /**
   * run()'s second half: the shim, crun, and the wait until the container runs (or failed). In a
   * pod (a sandbox to join), the shim is started first and the folder prepared while it starts its
   * loggers and mounts the rootfs (about 5 ms of forks here); it runs crun once `go` is there.
   */
  private async launchContainer(req: RunRequest, id: string, d: string, prepare: () => void, writeConfig: (sandboxPid: number | undefined) => void): Promise<Started> {
    // crun in the foreground under the shim (measured here, `run --detach` + waitpid lost the status ~10% of the time)
    const crunArgv = [this.crun.binary, '--root', this.crun.stateRoot, `--log=file:${join(d, 'crun.log')}`, 'run', '--bundle', d, '--pid-file', join(d, 'pid'), id];
    // a held pod's container (see holdStarts) runs crun once released; without a sandbox its
    // shim starts only then
    const hold = this.holds.get(req.podUid);
    if (hold && !req.sandbox) await hold.until;
    // without a sandbox to wait for, everything is written before the shim starts
    if (!req.sandbox) {
      prepare();
      writeConfig(undefined);
    }
    const exited = this.watchExit(id);
    this.exits.set(id, exited.then(() => this.collect(id, req.podUid, req.container.name)));
    let notStarted: unknown;
    let shimmed: Promise<number>;
    if (req.sandbox) {
      // the shim gets going at once, while the folder is prepared and the sandbox comes up: it
      // starts its loggers and mounts the rootfs meanwhile, and runs crun once `go` is there (the
      // config written with the sandbox's namespaces, the sandbox ready), or gives up at `abort`
      const tell = (file: string) => {
        try {
          writeFileSync(join(d, file), '');
        } catch {
          // the folder is gone (the container removed meanwhile): its shim stops waiting too
        }
        this.launcher().wake(id);
      };
      // a pooled shim holding this image's rootfs mounted: its folder becomes the container's
      const claimed = this.takePremounted(req.lowerDir, d);
      shimmed = this.launcher().shim(id, d, req.lowerDir, this.logBase(id), crunArgv, true, claimed);
      // the folder prepared now, and the config too when the sandbox's pid is known (one taken from
      // the pool: a pod started ahead has only `go` left then); a failure to prepare is the
      // start's, as the sandbox's is
      const sandbox = req.sandbox;
      let configured: Promise<void>;
      try {
        prepare();
        const pid = req.sandboxPid ? this.sandboxPids.get(req.podUid)?.pid : undefined;
        if (pid) {
          writeConfig(pid);
          configured = Promise.resolve();
        } else configured = (req.sandboxPid ?? sandbox.then((sb) => sb.pid)).then(writeConfig);
      } catch (err) {
        configured = Promise.reject(err);
      }
      // `go` once the config is written, the sandbox ready and the pod not held (a release tells
      // it at once: see releaseStarts); `abort` at the first of them to fail
      let missing = hold ? 3 : 2;
      const one = () => --missing === 0 && tell('go');
      const fail = (err: unknown) => {
        if (missing <= 0) return;
        missing = 0;
        notStarted = err;
        tell('abort');
      };
      configured.then(one, fail);
      sandbox.then(one, fail);
      hold?.wait(one, fail);
    } else shimmed = this.launcher().shim(id, d, req.lowerDir, this.logBase(id), crunArgv);
    // (a pooled shim it may have taken is made again once the node is quiet)
    this.refillWhenQuiet();
    return this.started(id, d, shimmed, exited, () => notStarted);
  }

  /**
   * Takes a pooled shim that holds `lowerDir`'s overlay mounted (see Launcher.premounted) for
   * the container folder `d`, which has only its empty rootfs, upper and work then: they are
   * removed and the shim's folder (the same three, the mount on rootfs) renamed to `d`. Undefined
   * (the folder as it was) when there is none or the folder cannot be taken.
   */
  private takePremounted(lowerDir: string, d: string): PooledShim | undefined {
    this.lastLowerDir = lowerDir;
    const launcher = this.launcher();
    const s = launcher.premounted(lowerDir);
    if (!s) return undefined;
    try {
      for (const sub of OVERLAY_DIRS) rmdirSync(join(d, sub));
      renameSync(s.root!.dir, d);
      return s;
    } catch {
      for (const sub of OVERLAY_DIRS) mkdirSync(join(d, sub), { recursive: true });
      launcher.unclaim(s);
      return undefined;
    }
  }

  /** Waits until container `id`'s shim has crun's pid (Running), or the container ended first. */
  private async started(id: string, d: string, shimmed: Promise<number>, exited: Promise<void>, notStarted: () => unknown): Promise<Started> {
    try {
      await shimmed;
    } catch (err) {
      this.launcher().forgetExit(id);
      throw err;
    }

    // Running once crun has written the pid file (or failed): watched, not polled with backoff
    const pidFile = join(d, 'pid');
    let ended = false;
    void exited.then(() => (ended = true));
    const started = await new Promise<boolean>((resolve) => {
      let done = false;
      const finish = (ok: boolean) => {
        if (done) return;
        done = true;
        watcher?.close();
        clearInterval(poll);
        clearTimeout(limit);
        resolve(ok);
      };
      const check = () => {
        if (readIf(pidFile).trim()) finish(true);
        else if (ended) finish(false);
      };
      let watcher: FSWatcher | undefined;
      try {
        watcher = watch(d, (_e, file) => file === 'pid' && check());
      } catch {
        watcher = undefined;
      }
      // a backstop only: the watch tells (polling every pod every 20 ms was ~2% of the agent in a burst)
      const poll = setInterval(check, 250);
      const limit = setTimeout(() => finish(false), 30_000);
      void exited.then(check);
      check();
    });
    if (started) return { id, pid: Number(readIf(pidFile).trim()), startedAt: statSync(pidFile).mtime };
    if (ended) {
      const exit = await this.exits.get(id)!;
      const why = notStarted();
      if (why) throw why;
      throw new RuntimeError(exit.message ?? `container ${id} exited before it started`, { id, reason: exit.reason, exitCode: exit.exitCode });
    }
    throw new RuntimeError(`container ${id} did not start within 30 s`, { id });
  }

  /** The launcher that starts this runtime's shims and sandboxes (started on first use). */
  launcher(): Launcher {
    if (!this.launch) {
      // the launcher's one FIFO, which its shims read with a timeout to wait without a fork
      const tick = join(this.opts.dataDir, 'launcher.tick');
      // crun's binary made read-only once (see launcher.ts), only where the launcher's mount
      // namespace is the node's own: a fresh one (the prefix) or the agent's private one
      const ownMounts = this.crun.prefix.length > 0 || process.env.TROUPE_MOUNT_NS === '1';
      const env: NodeJS.ProcessEnv = { LOGMAX: String(this.opts.logMaxBytes ?? 10 * 1024 * 1024), TICK: tick, ...(ownMounts ? { CRUN_RO: this.crun.binary } : {}) };
      this.launch = new Launcher(this.crun.prefix, env, this.opts.busybox);
    }
    return this.launch;
  }

  /** Runs a short command as a job of the launcher (see Launcher.exec): CNI plugins, crun exec. */
  runCommand(argv: string[], opts: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string; exitCode: number }> {
    return this.launcher().exec(argv, { ...opts, scratchDir: join(this.opts.dataDir, 'tmp') });
  }

  /** Where container `id`'s output goes: `<base>.stdout.log`, `<base>.stderr.log` (on disk). */
  logBase(id: string): string {
    return join(this.logDir, id);
  }

  /**
   * Resolves when the shim of container `id` has ended: told by the launcher, or (a launcher gone,
   * a container adopted from an earlier agent) seen in its folder: an `exitcode` file, or a shim
   * that is gone without writing one.
   */
  private watchExit(id: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const d = this.dir(id);
      let missing = 0;
      const done = () => {
        clearInterval(poll);
        this.launch?.forgetExit(id);
        resolve();
      };
      this.launcher().onExit(id, done);
      const poll = setInterval(() => {
        if (hasExitCode(d) || !existsSync(d)) return done();
        const shim = Number(readIf(join(d, 'shim.pid')).trim());
        // a shim that is gone (or never came) and said nothing: seen three times in a row, as
        // it may be writing its status just now
        if (!(shim > 0 && isShim(shim))) {
          if (++missing >= 3 && !hasExitCode(d)) done();
        } else missing = 0;
      }, 1000);
    });
  }

  /** A container run again: its folder starts afresh, its last instance's output kept (logs --previous). */
  private async clearForRestart(id: string, d: string): Promise<void> {
    const base = this.logBase(id);
    for (const f of LOG_FILES) await rm(`${base}.${previousLog(f)}`, { force: true });
    for (const f of LOG_FILES) await rename(`${base}.${f}`, `${base}.${previousLog(f)}`).catch(() => undefined);
    await this.unmountRootfs(d);
    await rm(d, { recursive: true, force: true });
  }

  /**
   * A rootfs still mounted where the launcher lives (its shim was killed before it could unmount
   * it) is unmounted before its folder goes: a recursive removal would otherwise reach through the
   * overlay and fail on the mount point. Told by the device numbers (a mount point's differs from
   * its parent's): two stats, where reading the mount table cost 2 ms with a hundred pods.
   */
  private async unmountRootfs(d: string): Promise<void> {
    const rootfs = join(d, 'rootfs');
    try {
      if (statSync(rootfs).dev === statSync(d).dev) return;
    } catch {
      return;
    }
    const r = await this.runCommand(['umount', '-l', rootfs]);
    if (r.exitCode !== 0) throw new RuntimeError(`could not unmount ${rootfs}: ${r.stderr.trim() || `exit ${r.exitCode}`}`, { path: rootfs });
  }

  /**
   * What became of a container this node ran before (an agent restarting adopts): still running,
   * exited with its real status (from the shim's file), or not there.
   */
  async inspect(podUid: string, name: string): Promise<Inspected> {
    const id = this.containerId(podUid, name);
    const d = this.dir(id);
    if (!existsSync(join(d, 'meta.json'))) return { state: 'absent' };
    const pidText = readIf(join(d, 'pid')).trim();
    const startedAt = pidText ? statSync(join(d, 'pid')).mtime : undefined;
    if (hasExitCode(d)) return { state: 'exited', exit: await this.collect(id, podUid, name), startedAt };
    const st = await this.crun.state(id);
    if (st && (st.status === 'running' || st.status === 'created') && pidText) return { state: 'running', pid: st.pid, startedAt: startedAt! };
    // crun could not say (a busy node can make its state call fail): the process its pid file
    // names, alive and begun before the file was written, is still the container's first
    const pid = Number(pidText);
    if (!st && pid > 0 && startedAt && startedBefore(pid, startedAt)) return { state: 'running', pid, startedAt };
    // the shim may be finishing: give it a moment to write the status
    await new Promise((r) => setTimeout(r, 300));
    if (hasExitCode(d)) return { state: 'exited', exit: await this.collect(id, podUid, name), startedAt };
    return { state: 'absent' };
  }

  /** Resolves when the container has exited, with its real status (also for adopted containers). */
  wait(podUid: string, name: string): Promise<Exited> {
    const id = this.containerId(podUid, name);
    let p = this.exits.get(id);
    if (!p) {
      p = this.watchExit(id).then(() => this.collect(id, podUid, name));
      this.exits.set(id, p);
    }
    return p;
  }

  /** Whether the container's process runs (started, not exited). */
  isRunning(podUid: string, name: string): boolean {
    const pid = livePid(this.dir(this.containerId(podUid, name)));
    return pid !== undefined && existsSync(`/proc/${pid}`);
  }

  /**
   * Sends a signal to the container's first process, as `crun kill` does, without a crun process
   * (the pid is crun's pid file; a container whose status is written is not signalled).
   */
  private signal(id: string, sig: NodeJS.Signals): boolean {
    const pid = livePid(this.dir(id));
    if (pid === undefined) return false;
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  private async collect(id: string, podUid: string, name: string): Promise<Exited> {
    const d = this.dir(id);
    const finishedAt = new Date();
    const codeText = readIf(join(d, 'exitcode')).trim();
    const started = readIf(join(d, 'pid')).trim() !== '';
    if (!started || codeText === '') {
      const crunLog = lastLines(readIf(join(d, 'crun.log')));
      const shimLog = lastLines(readIf(join(d, 'shim.log')));
      return { id, exitCode: codeText === '' ? -1 : Number(codeText), reason: 'ContainerCannotRun', message: crunLog || shimLog || 'the container could not be started', finishedAt };
    }
    const exitCode = Number(codeText);
    const signal = exitCode > 128 ? SIGNALS[exitCode - 128] ?? `signal ${exitCode - 128}` : undefined;
    let reason: ContainerExitReason = exitCode === 0 ? 'Completed' : 'Error';
    // OOMKilled: killed by SIGKILL that the agent did not send, with the memory limit reached
    // (v1 records the kill itself only in crun's child cgroup, gone by now; our cgroup holds the
    // limit, so its limit-hit count tells)
    if (exitCode === 137 && !this.killedByUs.has(id)) {
      const stats = await this.cgroupOf(podUid, name).stats();
      if (stats.oomKills > 0 || stats.memoryLimitHits > 0) reason = 'OOMKilled';
    }
    this.killedByUs.delete(id);
    return { id, exitCode, signal, reason, finishedAt };
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves with the exit. */
  async stop(podUid: string, name: string, graceMs: number): Promise<Exited> {
    const id = this.containerId(podUid, name);
    const exited = this.wait(podUid, name);
    if (graceMs <= 0) {
      this.killedByUs.add(id);
      this.signal(id, 'SIGKILL');
      return exited;
    }
    this.signal(id, 'SIGTERM');
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
    if ((await Promise.race([exited, timer])) === 'timeout') {
      this.killedByUs.add(id);
      this.signal(id, 'SIGKILL');
    }
    return exited;
  }

  /** Removes everything of a stopped container: crun state, folder, logs, cgroups. */
  async remove(podUid: string, name: string): Promise<void> {
    const id = this.containerId(podUid, name);
    const d = this.dir(id);
    if (existsSync(d) && !hasExitCode(d)) {
      this.killedByUs.add(id);
      this.signal(id, 'SIGKILL');
      await this.wait(podUid, name);
    }
    // `crun run` deletes its state when the container ends; a crun that did not finish leaves it
    if (existsSync(join(this.crun.stateRoot, id))) await this.crun.delete(id);
    await this.unmountRootfs(d);
    await rm(d, { recursive: true, force: true });
    const base = this.logBase(id);
    await Promise.all([...LOG_FILES, ...LOG_FILES.map(previousLog)].map((f) => rm(`${base}.${f}`, { force: true })));
    await this.cgroupOf(podUid, name).remove();
    this.exits.delete(id);
  }

  async exec(podUid: string, name: string, command: string[], opts: { timeout?: number } = {}) {
    return this.crun.exec(this.containerId(podUid, name), command, opts);
  }

  stats(podUid: string, name: string): Promise<CgroupStats> {
    return this.cgroupOf(podUid, name).stats();
  }

  /** The container's output lines so far (or its previous instance's), rotated file first, stamped. */
  async logLines(podUid: string, name: string, previous = false): Promise<{ stdout: LogLine[]; stderr: LogLine[] }> {
    const base = this.logBase(this.containerId(podUid, name));
    const read = async (stream: 'stdout' | 'stderr') => {
      const file = `${base}.${stream}${previous ? '.previous' : ''}.log`;
      const older = await readFile(`${file}.1`, 'utf8').catch(() => '');
      const current = await readFile(file, 'utf8').catch(() => '');
      return parseLog(older + current, stream);
    };
    return { stdout: await read('stdout'), stderr: await read('stderr') };
  }

  /** The container's output so far (or its previous instance's), as the program wrote it. */
  async logs(podUid: string, name: string, previous = false): Promise<{ stdout: string; stderr: string }> {
    const l = await this.logLines(podUid, name, previous);
    const text = (lines: LogLine[]) => lines.map((x) => `${x.line}\n`).join('');
    return { stdout: text(l.stdout), stderr: text(l.stderr) };
  }

  /**
   * The pod's sandbox: one small process holding the network, IPC and UTS namespaces that all of
   * the pod's containers join (what Kubernetes' pause container does). It needs no rootfs, cgroup
   * or crun: `unshare --net --ipc --uts` sets the hostname, brings loopback up and sleeps. Its pid
   * is kept in `sandboxes/<pod uid>.pid`, so a restarted agent finds it again.
   */
  ensureSandbox(podUid: string, podName: string, _namespace: string, portMappings: PortMapping[] = [], opts: { now?: boolean; ahead?: boolean } = {}): Promise<{ pid: number }> {
    let p = this.sandboxes.get(podUid);
    // (taken for a pod started ahead: dropAhead removes it unless an actor asks for the pod first)
    if (opts.ahead && !p) this.aheadPods.add(podUid);
    if (!p) {
      let spawned!: (pid: number) => void;
      let notSpawned!: (err: unknown) => void;
      const entry: { known: Promise<number>; pid?: number } = {
        known: new Promise<number>((resolve, reject) => {
          spawned = (pid) => {
            entry.pid = pid;
            resolve(pid);
          };
          notSpawned = reject;
        }),
      };
      entry.known.catch(() => undefined);
      this.sandboxPids.set(podUid, entry);
      p = (async () => {
        // after this turn of the loop and the I/O of the next: what the pod's first container does
        // before its shim has its words (image, folder) is not held up by this (half a millisecond
        // of files here), nor is what came in meanwhile (for a pod told of ahead, the store's copy
        // that lets it run: read after this, it held the container's start by a third of a ms)
        // (`now`: a pod told of ahead, asked before its actor starts: see PodSync.intent)
        if (!opts.now) await new Promise((r) => setImmediate(() => setImmediate(r)));
        const pidFile = this.sandboxPidFile(podUid);
        // (a new pod has none: not read, a failed read's error cost more than the look)
        const known = existsSync(pidFile) ? Number(readIf(pidFile).trim()) : 0;
        if (known > 0 && isSandbox(known)) {
          spawned(known);
          return { pid: known };
        }
        mkdirSync(join(this.opts.dataDir, 'sandboxes'), { recursive: true });
        // a ready one from the pool (host ports are published per pod: those pods make their own)
        const pooled = portMappings.length === 0 ? this.claimPooled(podUid) : undefined;
        if (pooled) {
          spawned(pooled);
          return { pid: pooled };
        }
        const release = await this.sandboxStarts.enter();
        try {
          return await this.launchSandbox(podUid, podName, this.sandboxBase(podUid), portMappings, spawned);
        } finally {
          release();
        }
      })();
      this.sandboxes.set(podUid, p);
      p.catch((err: unknown) => {
        notSpawned(err);
        this.sandboxes.delete(podUid);
        this.sandboxPids.delete(podUid);
      });
    }
    return p;
  }

  /**
   * ensureSandbox()'s second half: the sandbox process, its readiness and its network. `id` names
   * it to CNI; its files are `<base>.pid`, `.err`, `.ports` and `.ip`.
   */
  private async launchSandbox(id: string, podName: string, base: string, portMappings: PortMapping[], spawned: (pid: number) => void): Promise<{ pid: number }> {
    // it writes its pid file and says `ready` once the hostname is set and loopback is up,
    // then becomes `sleep` with its output closed (its namespaces are there from the start:
    // the containers need not wait for that last exec)
    const pidFile = `${base}.pid`;
    const errFile = `${base}.err`;
    const launched = await this.launcher().sandbox(podName, pidFile, errFile);
    const pid = launched.pid;
    this.startingSandboxes.add(pid);
    if (pid > 0) spawned(pid);
    // on the node's pod network (CNI bridge + host-local): set up as soon as the namespaces
    // exist, while the sandbox sets its hostname and loopback
    const network = this.network;
    let attached: Promise<CniResult> | undefined;
    if (network) {
      attached = launched.ns.then(async (ok) => {
        if (!ok) throw new RuntimeError(`pod sandbox for ${podName} ended before its namespaces were made`, { podUid: id });
        // the host ports go beside the pid: their removal needs them, even after a restart
        if (portMappings.length > 0) writeFileSync(`${base}.ports`, JSON.stringify(portMappings));
        return network.add(id, `/proc/${pid}/ns/net`, portMappings);
      });
      attached.catch(() => undefined);
    }
    // a sandbox that ends before it is ready (unshare refused, say) says nothing: watched
    let poll: NodeJS.Timeout | undefined;
    let limit: NodeJS.Timeout | undefined;
    const ready = await Promise.race([
      launched.ready,
      new Promise<boolean>((resolve) => {
        poll = setInterval(() => pid > 0 && !existsSync(`/proc/${pid}`) && resolve(false), 250);
        limit = setTimeout(() => resolve(false), 10_000);
      }),
    ]);
    clearInterval(poll);
    clearTimeout(limit);
    this.startingSandboxes.delete(pid);
    if (!pid || !ready) {
      if (pid > 0 && existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
      await rm(pidFile, { force: true });
      // an address it was given meanwhile goes back
      if (attached && network) await attached.then(() => network.del(id, '', portMappings)).catch(() => undefined);
      const said = readIf(errFile).trim().slice(-4096);
      throw new RuntimeError(`pod sandbox for ${podName} did not start${said ? `: ${said}` : ''}`, { podUid: id });
    }
    if (attached) {
      try {
        const r = await attached;
        writeFileSync(`${base}.ip`, `${r.ip}\n`);
      } catch (err) {
        process.kill(pid, 'SIGKILL');
        await rm(pidFile, { force: true });
        throw err;
      }
    }
    return { pid };
  }

  /** The pid of the pod's sandbox once it is spawned (see ensureSandbox), before it is ready. */
  sandboxPid(podUid: string): Promise<number> | undefined {
    return this.sandboxPids.get(podUid)?.known;
  }

  /**
   * For an agent that stops: kills the sandboxes still coming up (not yet ready), so
   * the next agent makes the pod's sandbox again rather than adopting a half-made one (a pid file
   * left behind names a process that is gone: it is not taken), and ends the launcher.
   */
  abandonStarting(): void {
    for (const pid of this.startingSandboxes) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    this.startingSandboxes.clear();
    this.launch?.close();
  }

  /**
   * For a runtime that is done (an agent stopping): ends the launcher, and removes the state
   * folder on tmpfs when no container or sandbox is left in it.
   */
  release(): boolean {
    this.launch?.close();
    this.launch = undefined;
    return releaseStateDir(this.opts.dataDir);
  }

  /** A pod sandbox's files: `<base>.pid`, `.ip`, `.ports`, `.err`, and `.cni` for one taken from the pool. */
  private sandboxBase(podUid: string): string {
    return join(this.opts.dataDir, 'sandboxes', podUid);
  }

  private sandboxPidFile(podUid: string): string {
    return `${this.sandboxBase(podUid)}.pid`;
  }

  private sandboxIpFile(podUid: string): string {
    return `${this.sandboxBase(podUid)}.ip`;
  }

  private poolDir(): string {
    return join(this.opts.dataDir, 'pool');
  }

  /**
   * Keeps `sandboxPool` sandboxes ready: a pod without host ports takes one (claimPooled) instead
   * of waiting for its namespaces and, once the node has a pod network, for CNI, which on this
   * machine is most of a pod's start (the bridge and host-local plugins alone take 15–30 ms). The
   * container sets the pod's hostname in the shared UTS namespace itself (crun does, given one),
   * so a pooled sandbox needs nothing more when it is taken. On the network each pooled sandbox
   * holds one address of the node's pod CIDR. Those made before the network was known are
   * replaced once it is; those a killed agent left are removed (their addresses given back once
   * the network is known). Called when the agent starts, when the network comes, and (once no
   * start is under way) after each one taken. As many shims are kept ready (Launcher.fillShims).
   */
  fillPool(): void {
    // (a sweep under way calls it again when done)
    if (this.poolClosed || this.poolSize === 0 || this.poolSweeping) return;
    const mode = this.network ? 'net' : 'plain';
    if (this.poolSweep !== mode && this.poolSweep !== 'net') {
      this.poolSweep = mode;
      this.poolSweeping = this.sweepPool().finally(() => {
        this.poolSweeping = undefined;
        this.fillPool();
      });
      return;
    }
    // (makePooled counts itself in poolInFlight before its first wait)
    while (this.pool.length + this.poolInFlight.size < this.poolSize) void this.makePooled();
    // and as many shims made ahead (see launcher.ts, SHIM): a pod takes one of each
    this.launcher().fillShims(join(this.opts.dataDir, 'shims'), this.poolSize, this.lastLowerDir);
    // and spare cgroups (named for this process: another's left behind are swept as any pod's)
    while (this.spareCgroups.length < this.poolSize) {
      const name = spareCgroupName(++this.spareSeq);
      if (!makeSpareCgroup(this.cgroups, this.opts.node, name)) break;
      this.spareCgroups.push(name);
    }
  }

  private async makePooled(): Promise<void> {
    const id = `pool-${randomBytes(6).toString('hex')}`;
    const base = join(this.poolDir(), id);
    this.poolInFlight.add(id);
    let release: (() => void) | undefined;
    try {
      mkdirSync(this.poolDir(), { recursive: true });
      release = await this.sandboxStarts.enter();
      if (this.poolClosed) return;
      const net = this.network !== undefined;
      const { pid } = await this.launchSandbox(id, 'troupe-pool', base, [], () => undefined);
      this.poolFailures = 0;
      if (this.poolClosed) await this.destroySandbox(id, base);
      else this.pool.push({ id, pid, net });
    } catch {
      // (launchSandbox cleaned up) made again after a while, later after each failure in a row: a
      // sandbox or its network that failed once on a busy node (a CNI call, the readiness
      // deadline) otherwise left the pool one short until a pod took one
      this.poolFailures++;
      this.refillAfterFailure();
    } finally {
      this.poolInFlight.delete(id);
      release?.();
    }
  }

  /** Fills the pool again once a while has passed since a pooled sandbox failed (see makePooled). */
  private refillAfterFailure(): void {
    if (this.poolClosed || this.poolRetry) return;
    this.poolRetry = setTimeout(() => {
      this.poolRetry = undefined;
      this.fillPool();
    }, backoff(this.poolFailures - 1, POOL_RETRY_MS, POOL_RETRY_MAX_MS));
    this.poolRetry.unref();
  }

  /** Hands a ready pooled sandbox to a pod (its files move to the pod's names), or undefined. */
  private claimPooled(podUid: string): number | undefined {
    this.refillWhenQuiet();
    for (let s = this.pool.shift(); s; s = this.pool.shift()) {
      const from = join(this.poolDir(), s.id);
      // (one made before the network was known has none)
      if (!isSandbox(s.pid) || s.net !== (this.network !== undefined)) {
        void this.destroySandbox(s.id, from).catch(() => undefined);
        continue;
      }
      const to = this.sandboxBase(podUid);
      // the CNI name first: a pod whose files are half moved is still taken off the network right
      writeFileSync(`${to}.cni`, `${s.id}\n`);
      if (s.net) renameSync(`${from}.ip`, `${to}.ip`);
      renameSync(`${from}.pid`, `${to}.pid`);
      rmSync(`${from}.err`, { force: true });
      return s.pid;
    }
    return undefined;
  }

  /**
   * Refills the pool once no container or sandbox is starting: a refill made while the pod that
   * took the sandbox is starting would take the CPU from it (and in a burst, from all of them).
   */
  private refillWhenQuiet(): void {
    if (this.refillTimer || this.poolSweep === undefined) return;
    this.refillTimer = setInterval(() => {
      const busy = this.starts.load.held + this.starts.load.waiting + this.sandboxStarts.load.held + this.sandboxStarts.load.waiting;
      if (busy > 0 && !this.poolClosed) return;
      clearInterval(this.refillTimer);
      this.refillTimer = undefined;
      this.fillPool();
    }, 25);
    this.refillTimer.unref();
  }

  /**
   * Removes the pooled sandboxes a previous agent left (it was killed) and, once the network is
   * known, this one's made without it. A leftover on the network waits for the network to be
   * known: its address is given back then.
   */
  private async sweepPool(): Promise<void> {
    const net = this.network !== undefined;
    const stale = this.pool.filter((s) => s.net !== net);
    this.pool.splice(0, this.pool.length, ...this.pool.filter((s) => s.net === net));
    for (const s of stale) await this.destroySandbox(s.id, join(this.poolDir(), s.id)).catch(() => undefined);
    const files = await readdir(this.poolDir()).catch(() => [] as string[]);
    const ids = new Set(files.map((f) => f.replace(/\.(pid|ip|err)$/, '')));
    for (const id of ids) {
      const base = join(this.poolDir(), id);
      if (this.pool.some((s) => s.id === id) || this.poolInFlight.has(id) || (!net && existsSync(`${base}.ip`))) continue;
      await this.destroySandbox(id, base).catch(() => undefined);
    }
  }

  /** Empties the pool (an agent stopping): its sandboxes leave the network and end, its shims end (and unmount what they held). */
  async drainPool(): Promise<void> {
    this.poolClosed = true;
    clearInterval(this.refillTimer);
    this.refillTimer = undefined;
    clearTimeout(this.poolRetry);
    this.poolRetry = undefined;
    while (this.poolInFlight.size > 0 || this.poolSweeping) await new Promise((r) => setTimeout(r, 5));
    for (const s of this.pool.splice(0)) await this.destroySandbox(s.id, join(this.poolDir(), s.id)).catch(() => undefined);
    for (const name of this.spareCgroups.splice(0)) removeSpareCgroup(this.cgroups, this.opts.node, name);
    // and the shims made ahead, which may hold a rootfs mounted
    await this.launch?.drainShims();
  }

  /** The pod's address on the pod network, if it has one. */
  sandboxIp(podUid: string): string | undefined {
    return readIf(this.sandboxIpFile(podUid)).trim() || undefined;
  }

  /** Removes a pod's sandbox (its containers are gone): off the network first, then the process. */
  async removeSandbox(podUid: string): Promise<void> {
    await this.sandboxes.get(podUid)?.catch(() => undefined);
    this.sandboxes.delete(podUid);
    this.sandboxPids.delete(podUid);
    const base = this.sandboxBase(podUid);
    // one taken from the pool is known to CNI by its pool name
    await this.destroySandbox(readIf(`${base}.cni`).trim() || podUid, base);
  }

  /** A sandbox off the network (its address given back even when its process is gone), then ended. */
  private async destroySandbox(id: string, base: string): Promise<void> {
    const pidFile = `${base}.pid`;
    const pid = Number(readIf(pidFile).trim());
    const ours = pid > 0 && (await settledSandbox(pid));
    const ipFile = `${base}.ip`;
    if (existsSync(ipFile)) {
      const netns = ours ? `/proc/${pid}/ns/net` : '';
      const ports = readIf(`${base}.ports`);
      if (this.network) await this.network.del(id, netns, ports ? (JSON.parse(ports) as PortMapping[]) : []);
      await rm(ipFile, { force: true });
      await rm(`${base}.ports`, { force: true });
    }
    await rm(`${base}.err`, { force: true });
    if (ours) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
      for (let i = 0; i < 500 && existsSync(`/proc/${pid}`) && isSandbox(pid); i++) await new Promise((r) => setTimeout(r, 2));
    }
    await rm(pidFile, { force: true });
    await rm(`${base}.cni`, { force: true });
  }

  /** Removes the cgroups of pods that have no container or sandbox here any more. */
  async sweepCgroups(): Promise<string[]> {
    const keep = new Set((await this.containers()).map((c) => c.podUid));
    for (const f of await readdir(join(this.opts.dataDir, 'sandboxes')).catch(() => [] as string[])) keep.add(f.replace(/\.(pid|ip|ports|err|cni)$/, ''));
    for (const uid of this.sandboxes.keys()) keep.add(uid);
    for (const name of this.spareCgroups) keep.add(name);
    return sweepNodeCgroups(this.cgroups, this.opts.node, keep);
  }

  /** The containers this runtime has, with the pod each belongs to. */
  async containers(): Promise<(ContainerMeta & { id: string })[]> {
    const root = join(this.opts.dataDir, 'containers');
    const out: (ContainerMeta & { id: string })[] = [];
    for (const id of await readdir(root).catch(() => [] as string[])) {
      if (id.startsWith('.')) continue;
      try {
        out.push({ id, ...(JSON.parse(await readFile(join(root, id, 'meta.json'), 'utf8')) as ContainerMeta) });
      } catch {
        // a folder being set up or torn down
      }
    }
    return out;
  }
}

/** A pod's /etc/resolv.conf: the node's cluster DNS and the Kubernetes search path. */
export function resolvConf(namespace: string, dns: { nameserver: string; domain: string } | undefined): string {
  const domain = dns?.domain ?? 'cluster.local';
  return `${dns ? `nameserver ${dns.nameserver}\n` : ''}search ${namespace}.svc.${domain} svc.${domain} ${domain}\noptions ndots:5\n`;
}

const TMPFS_MAGIC = 0x01021994;

function onTmpfs(path: string): boolean {
  try {
    return statfsSync(path).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Bundles and crun's state live on tmpfs: measured here, each new file on ext4 costs 0.2–0.8 ms and
 * a container's folder has a dozen (its writable layer too: the overlay's upper and work folders).
 * tmpfs outlives the agent, so a restarted agent still adopts; after a reboot the containers are
 * gone anyway. `dataDir` becomes a link to `<tmpfs>/troupe/<node>-<hash of dataDir>` (/dev/shm, or
 * /run when only it is tmpfs: a full /run hurts systemd more than a full /dev/shm hurts anyone);
 * without tmpfs, with TROUPE_STATE_ON_DISK=1, or when dataDir is already a folder, it stays on
 * disk. Container output stays on disk (logDir). Writes to a writable layer on tmpfs are memory,
 * charged to the container's memory cgroup (its limit bounds them).
 */
export function prepareStateDir(dataDir: string, node: string): void {
  let st: ReturnType<typeof lstatSync> | undefined;
  try {
    st = lstatSync(dataDir);
  } catch {
    st = undefined;
  }
  if (st?.isSymbolicLink()) {
    // after a reboot the tmpfs folder is gone: made again
    mkdirSync(resolve(dirname(dataDir), readlinkSync(dataDir)), { recursive: true });
    return;
  }
  if (st) return;
  const base = ['/dev/shm', '/run'].find(onTmpfs);
  if (!base || process.env.TROUPE_STATE_ON_DISK === '1') {
    mkdirSync(dataDir, { recursive: true });
    return;
  }
  mkdirSync(dirname(dataDir), { recursive: true });
  const key = createHash('sha256').update(realpathSync(dirname(dataDir))).update('\0').update(dataDir).digest('hex').slice(0, 12);
  const target = join(base, 'troupe', `${node}-${key}`);
  mkdirSync(target, { recursive: true });
  symlinkSync(target, dataDir);
}

/**
 * Removes the tmpfs folder behind a state folder link, and the link, when nothing runs from it any
 * more (no container folder, no sandbox). Returns whether it did.
 */
export function releaseStateDir(dataDir: string): boolean {
  try {
    if (!lstatSync(dataDir).isSymbolicLink()) return false;
  } catch {
    return false;
  }
  const target = resolve(dirname(dataDir), readlinkSync(dataDir));
  const pids = (sub: string) => readdirIf(join(target, sub)).some((f) => f.endsWith('.pid'));
  if (readdirIf(join(target, 'containers')).some((f) => !f.startsWith('.')) || pids('sandboxes') || pids('pool')) return false;
  rmSync(target, { recursive: true, force: true });
  unlinkSync(dataDir);
  try {
    rmdirSync(dirname(target));
  } catch {
    // other nodes' folders are there
  }
  return true;
}

function hasExitCode(dir: string): boolean {
  return readIf(join(dir, 'exitcode')).trim() !== '';
}

/**
 * A whole-number setting: the option's value, else its environment variable, else the default;
 * anything that is not an integer ≥ min is refused, naming where it came from.
 */
function countSetting(option: string, value: number | undefined, env: string, fallback: number, min: number): number {
  const fromEnv = process.env[env];
  const n = value ?? (fromEnv === undefined ? fallback : Number(fromEnv));
  if (!Number.isInteger(n) || n < min) {
    throw new RuntimeError(`${value === undefined ? env : option}: expected an integer ≥ ${min}, got ${JSON.stringify(value ?? fromEnv)}`, {});
  }
  return n;
}

/** How many ready sandboxes a runtime keeps (see fillPool): `sandboxPool`, else TROUPE_SANDBOX_POOL, else 2. */
export function sandboxPoolSize(sandboxPool?: number): number {
  return countSetting('sandboxPool', sandboxPool, 'TROUPE_SANDBOX_POOL', DEFAULT_SANDBOX_POOL, 0);
}

/** USER_HZ: the unit of /proc's clock ticks (100 on every Linux architecture node runs on). */
const CLOCK_TICKS = 100;

/**
 * Whether process `pid` is alive and began before `written` (a second's slack for the clocks'
 * grain): crun writes the pid file after it made the process, so the process a pid file names
 * started before it; one that took the number after that process died started later.
 */
function startedBefore(pid: number, written: Date): boolean {
  const stat = readIf(`/proc/${pid}/stat`);
  if (!stat) return false;
  // the fields after the command's closing parenthesis; starttime is field 22 (ticks after boot)
  const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const uptime = Number(readIf('/proc/uptime').split(' ')[0]);
  if (!Number.isFinite(ticks) || !Number.isFinite(uptime)) return false;
  const startedMs = Date.now() - (uptime - ticks / CLOCK_TICKS) * 1000;
  return startedMs <= written.getTime() + 1000;
}

/** The container's first process (crun's pid file), unless it has none yet or its status is written. */
function livePid(dir: string): number | undefined {
  const pid = Number(readIf(join(dir, 'pid')).trim());
  return pid > 0 && !hasExitCode(dir) ? pid : undefined;
}

/** Whether `pid` is a shim (a job of a launcher). */
function isShim(pid: number): boolean {
  return readIf(`/proc/${pid}/cmdline`).includes('troupe-launcher');
}

/**
 * A pod's held container starts (see ContainerRuntime.holdStarts): released or refused once; those
 * waiting are told as it happens, in the same call.
 */
class StartHold {
  private state: 'held' | 'released' | 'refused' = 'held';
  private err?: Error;
  private waiters: { go: () => void; fail: (err: Error) => void }[] = [];
  private settle!: { resolve: () => void; reject: (err: Error) => void };
  /** For a start that awaits the hold (one without a sandbox). */
  readonly until = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));

  constructor() {
    this.until.catch(() => undefined);
  }

  wait(go: () => void, fail: (err: Error) => void): void {
    if (this.state === 'released') go();
    else if (this.state === 'refused') fail(this.err!);
    else this.waiters.push({ go, fail });
  }

  release(): void {
    if (this.state !== 'held') return;
    this.state = 'released';
    this.settle.resolve();
    for (const w of this.waiters.splice(0)) w.go();
  }

  refuse(err: Error): void {
    if (this.state !== 'held') return;
    this.state = 'refused';
    this.err = err;
    this.settle.reject(err);
    for (const w of this.waiters.splice(0)) w.fail(err);
  }
}

/** Whether two requests start the same container the same way (a start made ahead and its actor's). */
function sameStart(a: RunRequest, b: RunRequest): boolean {
  const same = (x: unknown, y: unknown) => x === y || stableJson(x) === stableJson(y);
  return (
    a.podUid === b.podUid &&
    a.podName === b.podName &&
    a.namespace === b.namespace &&
    a.lowerDir === b.lowerDir &&
    (a.restartCount ?? 0) === (b.restartCount ?? 0) &&
    same(a.container, b.container) &&
    same(a.image, b.image) &&
    same(a.podSpec, b.podSpec) &&
    same(a.extraEnv, b.extraEnv)
  );
}

/** Whether `pid` is a pod sandbox's sleeping process. */
function isSandbox(pid: number): boolean {
  return sandboxCmdline(readIf(`/proc/${pid}/cmdline`));
}

/** True when a process's cmdline (NUL-separated) is a sandbox's. */
function sandboxCmdline(cmdline: string): boolean {
  const argv = cmdline.split('\0');
  // `sleep` once it has settled; its shell just before (it said ready, the exec is under way)
  if (argv[0] === 'sleep' || (argv[0]!.endsWith('busybox') && argv[1] === 'sleep')) return argv.includes('2147483647');
  const shell = argv[0]!.endsWith('busybox') ? argv.slice(1) : argv;
  return /(^|\/)sh$/.test(shell[0]!) && shell[1] === '-c' && shell[3] === 'troupe-sandbox';
}

/**
 * isSandbox, asked again while the process is between programs: during an exec its cmdline reads
 * empty, and a sandbox that has just said ready is execing sleep. Taken for not one then, it was
 * left running with its pid file removed (a pool drained as its sandboxes came up: test).
 */
async function settledSandbox(pid: number): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    // (one read decides: read twice, the exec could end between them)
    const cmdline = readIf(`/proc/${pid}/cmdline`);
    if (cmdline !== '') return sandboxCmdline(cmdline);
    if (!existsSync(`/proc/${pid}`)) return false;
    await new Promise((r) => setTimeout(r, 1));
  }
  return false;
}

function lastLines(text: string, n = 3): string {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .slice(-n)
    .map((l) => {
      try {
        const j = JSON.parse(l) as { msg?: string };
        return j.msg ?? l;
      } catch {
        return l;
      }
    })
    .join('; ');
}
