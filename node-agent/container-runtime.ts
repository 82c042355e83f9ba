/**
 * Runs containers with crun, one shim each.
 *
 * The shim is a small detached shell in its own private mount namespace: it mounts a tmpfs
 * scratch and the container's overlay rootfs (the image's unpacked rootfs as the lower layer),
 * runs `crun run` in the foreground (crun waits for the container and returns its exit status;
 * measured here, `run --detach` + waitpid lost the status ~10% of the time), then writes the
 * status to a file. The shim outlives an agent restart, so a new agent can adopt the container
 * and still learn its real exit status; its mounts vanish with its namespace when it ends.
 *
 * Limits live on the agent's own cgroup for the container (cgroups.ts); crun's is a child of it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Container } from '../protocol/index.js';
import { ContainerCgroup, detectCgroups, sweepNodeCgroups, type CgroupInfo, type CgroupStats } from './cgroups.js';
import { Crun } from './crun.js';
import type { Cni, PortMapping } from './cni.js';
import { RuntimeError } from './errors.js';
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
  /** Size of the tmpfs holding the container's writable layer. */
  scratchSize?: string;
  /** Kept beside the container so that a restarted agent can take the pod back (adoption). */
  podSpec?: unknown;
  restartCount?: number;
  /**
   * The pod sandbox's process, which the container joins for its network, IPC and UTS namespaces.
   * It may still be starting: the container's folder, files and cgroup are prepared meanwhile, and
   * only its OCI config waits for the sandbox.
   */
  sandbox?: Promise<{ pid: number }>;
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

const SIGNALS: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 9: 'SIGKILL', 15: 'SIGTERM', 6: 'SIGABRT', 11: 'SIGSEGV' };

/**
 * One stream's logger, a shell function run in a forked subshell (no exec): each line stamped with
 * bash's $EPOCHREALTIME (no fork per line), the file rotated to `.1` past LOGMAX bytes (one rotated
 * file kept, as the kubelet's default).
 */
const LOGGER = [
  'log() {',
  '  f="$D/$1.log"; max="$LOGMAX"; size=0',
  '  [ -e "$f" ] && size=$(stat -c %s "$f")',
  '  exec 5>>"$f"',
  '  while IFS= read -r line || [ -n "$line" ]; do',
  '    printf "%s %s\\n" "$EPOCHREALTIME" "$line" >&5',
  '    size=$(( size + ${#line} + 19 ))',
  '    if [ "$size" -ge "$max" ]; then exec 5>&-; mv -f "$f" "$f.1"; exec 5>>"$f"; size=0; fi',
  '  done',
  '}',
].join('\n');

/**
 * The shim: the two loggers first (process substitutions: pipes, no fifo files, no new bash), then
 * the scratch tmpfs and the overlay rootfs, then, once the agent says `go` on its stdin (the bundle
 * is complete), crun in the foreground; its status goes to a file once both loggers have drained.
 */
function shimScript(unified: string | undefined): string {
  return [
    'D="$1"; LOWER="$2"; shift 2',
    'exec 2>>"$D/shim.log"',
    LOGGER,
    'exec 3> >(log stdout); L1=$!',
    'exec 4> >(exec 3>&-; log stderr); L2=$!',
    unified ? `umount ${unified} 2>/dev/null || umount -l ${unified} 2>/dev/null || true` : ':',
    'mount -t tmpfs -o "mode=755,size=$SCRATCH" tmpfs "$D/scratch" && mkdir "$D/scratch/upper" "$D/scratch/work" || exit 90',
    'mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$D/scratch/upper,workdir=$D/scratch/work" "$D/rootfs" || exit 90',
    // everything above overlaps the agent's preparation; crun waits for its word that the
    // bundle is complete (an agent gone before that: EOF, and no container)
    'IFS= read -r go; exec 0</dev/null; [ "$go" = go ] || exit 91',
    '"$@" </dev/null >&3 2>&4 3>&- 4>&-',
    'code=$?',
    // the loggers end when the last writer is gone (the container's processes and this shell)
    'exec 3>&- 4>&-',
    'wait $L1 $L2',
    'echo "$code" > "$D/exitcode.tmp" && mv "$D/exitcode.tmp" "$D/exitcode"',
  ].join('\n');
}

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
  /** Folder for bundles, logs and crun's state. */
  dataDir: string;
  /** Node name: part of every container id, cgroup and folder, so agents never collide. */
  node: string;
  cgroups?: CgroupInfo;
  crunBinary?: string;
  /** A container log file is rotated past this size (bytes; kubelet's default 10 MiB). */
  logMaxBytes?: number;
}

export class ContainerRuntime {
  readonly crun: Crun;
  readonly cgroups: CgroupInfo;
  private readonly exits = new Map<string, Promise<Exited>>();
  private readonly sandboxes = new Map<string, Promise<{ pid: number }>>();
  /** Sandboxes spawned but not yet ready (nor their pid file written). */
  private readonly startingSandboxes = new Set<ChildProcess>();
  /** The node's pod network, once the control plane has given the node a pod CIDR. */
  network?: Cni;
  /** The cluster DNS pods use (their /etc/resolv.conf), once the node serves it. */
  dns?: { nameserver: string; domain: string };
  /** Containers the agent itself sent SIGKILL to (so their 137 is not an OOM kill). */
  private readonly killedByUs = new Set<string>();

  constructor(readonly opts: RuntimeOptions) {
    this.cgroups = opts.cgroups ?? detectCgroups();
    this.crun = new Crun(join(opts.dataDir, 'crun'), this.cgroups, opts.crunBinary);
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

  /** Creates and starts one container; resolves once it runs (its pid is known). */
  async run(req: RunRequest): Promise<Started> {
    const id = this.containerId(req.podUid, req.container.name);
    const d = this.dir(id);
    if (existsSync(d)) await this.clearForRestart(id, d);
    await mkdir(join(d, 'rootfs'), { recursive: true });
    await mkdir(join(d, 'scratch'));
    // The shim starts first: its shell, loggers and mounts overlap the files, cgroup and sandbox below.
    // --norc: its stdin (the `go` channel) is a socket, and bash -c on a socket at shell level 1
    // takes itself for an rshd session and reads ~/.bashrc (here: pyenv init, ~190 ms of forks)
    const crunArgv = [this.crun.binary, '--root', this.crun.stateRoot, `--log=file:${join(d, 'crun.log')}`, 'run', '--bundle', d, '--pid-file', join(d, 'pid'), id];
    const unified = this.crun.prefix.length > 0 ? this.cgroups.unified : undefined;
    const shim = spawn('unshare', ['-m', '--propagation', 'private', '--', '/bin/bash', '--norc', '--noprofile', '-c', shimScript(unified), 'troupe-shim', d, req.lowerDir, ...crunArgv], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
      env: { ...process.env, SCRATCH: req.scratchSize ?? '1g', LOGMAX: String(this.opts.logMaxBytes ?? 10 * 1024 * 1024) },
    });
    // a shim that ended early (a failed mount) closes its end: that is seen as its exit, not here
    shim.stdin!.on('error', () => undefined);
    // kept referenced: whoever awaits the exit keeps this process alive (an agent that stops and
    // leaves containers running for its successor exits explicitly)
    const shimDone = new Promise<void>((resolve) => {
      shim.once('exit', () => resolve());
      shim.once('error', () => resolve());
    });
    try {
      const cg = this.cgroupOf(req.podUid, req.container.name);
      await Promise.all([
        writeFile(join(d, 'hosts'), `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${req.podName}\n`),
        writeFile(join(d, 'hostname'), `${req.podName}\n`),
        writeFile(
          join(d, 'meta.json'),
          JSON.stringify({ namespace: req.namespace, pod: req.podName, podUid: req.podUid, container: req.container.name, podSpec: req.podSpec, restartCount: req.restartCount ?? 0 } satisfies ContainerMeta),
        ),
        writeFile(join(d, 'resolv.conf'), resolvConf(req.namespace, this.dns)),
        cg.create(limitsFor(req.container)),
      ]);
      const sandboxPid = req.sandbox ? (await req.sandbox).pid : undefined;
      const passwd = readIf(join(req.lowerDir, 'etc/passwd'));
      const group = readIf(join(req.lowerDir, 'etc/group'));
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
          const line = passwd.split('\n').find((l) => l.split(':')[0] === name);
          return line ? { uid: Number(line.split(':')[2]), gid: Number(line.split(':')[3]) } : undefined;
        },
        lookupGroup: (name) => {
          const line = group.split('\n').find((l) => l.split(':')[0] === name);
          return line ? Number(line.split(':')[2]) : undefined;
        },
      });
      await writeFile(join(d, 'config.json'), JSON.stringify(spec));
    } catch (err) {
      // no word to the shim: it reads EOF and ends without a container
      shim.stdin!.destroy();
      await shimDone;
      throw err;
    }
    shim.stdin!.end('go\n');
    this.exits.set(id, shimDone.then(() => this.collect(id, req.podUid, req.container.name)));

    // Running once crun has written the pid file (or failed): watched, not polled with backoff
    const pidFile = join(d, 'pid');
    let ended = false;
    void shimDone.then(() => (ended = true));
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
      const poll = setInterval(check, 20);
      const limit = setTimeout(() => finish(false), 30_000);
      void shimDone.then(check);
      check();
    });
    if (started) return { id, pid: Number(readIf(pidFile).trim()), startedAt: statSync(pidFile).mtime };
    if (ended) {
      const exit = await this.exits.get(id)!;
      throw new RuntimeError(exit.message ?? `container ${id} exited before it started`, { id, reason: exit.reason, exitCode: exit.exitCode });
    }
    throw new RuntimeError(`container ${id} did not start within 30 s`, { id });
  }

  /** A container run again: its folder starts afresh, keeping the last instance's output (logs --previous). */
  private async clearForRestart(id: string, d: string): Promise<void> {
    const prev = join(this.opts.dataDir, 'containers', `.prev-${id}`);
    await rm(prev, { recursive: true, force: true });
    const logFiles = ['stdout.log', 'stdout.log.1', 'stderr.log', 'stderr.log.1'];
    if (existsSync(join(d, 'stdout.log'))) {
      await mkdir(prev, { recursive: true });
      for (const f of logFiles) await rename(join(d, f), join(prev, f)).catch(() => undefined);
    }
    await rm(d, { recursive: true, force: true });
    if (existsSync(prev)) {
      await mkdir(d, { recursive: true });
      for (const f of logFiles) await rename(join(prev, f), join(d, f.replace('.log', '.previous.log'))).catch(() => undefined);
      await rm(prev, { recursive: true, force: true });
    }
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
    if (existsSync(join(d, 'exitcode'))) return { state: 'exited', exit: await this.collect(id, podUid, name), startedAt };
    const st = await this.crun.state(id);
    if (st && (st.status === 'running' || st.status === 'created') && pidText) return { state: 'running', pid: st.pid, startedAt: startedAt! };
    // the shim may be finishing: give it a moment to write the status
    await new Promise((r) => setTimeout(r, 300));
    if (existsSync(join(d, 'exitcode'))) return { state: 'exited', exit: await this.collect(id, podUid, name), startedAt };
    return { state: 'absent' };
  }

  /** Resolves when the container has exited, with its real status (also for adopted containers). */
  wait(podUid: string, name: string): Promise<Exited> {
    const id = this.containerId(podUid, name);
    let p = this.exits.get(id);
    if (!p) {
      p = (async () => {
        while (!existsSync(join(this.dir(id), 'exitcode')) && existsSync(this.dir(id))) {
          const st = await this.crun.state(id);
          if (!st && !existsSync(join(this.dir(id), 'exitcode'))) {
            // neither running nor finished through a shim: it is gone without a status
            await new Promise((r) => setTimeout(r, 200));
            if (!existsSync(join(this.dir(id), 'exitcode'))) break;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
        return this.collect(id, podUid, name);
      })();
      this.exits.set(id, p);
    }
    return p;
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
    await this.crun.kill(id, 'SIGTERM');
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
    if ((await Promise.race([exited, timer])) === 'timeout') {
      this.killedByUs.add(id);
      await this.crun.kill(id, 'SIGKILL');
    }
    return exited;
  }

  /** Removes everything of a stopped container: crun state, folder (with logs), cgroups. */
  async remove(podUid: string, name: string): Promise<void> {
    const id = this.containerId(podUid, name);
    const st = await this.crun.state(id);
    if (st && st.status !== 'stopped') {
      this.killedByUs.add(id);
      await this.crun.kill(id, 'SIGKILL');
      await this.wait(podUid, name);
    }
    await this.crun.delete(id);
    await rm(this.dir(id), { recursive: true, force: true });
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
    const d = this.dir(this.containerId(podUid, name));
    const read = async (stream: 'stdout' | 'stderr') => {
      const base = join(d, previous ? `${stream}.previous.log` : `${stream}.log`);
      const older = await readFile(`${base}.1`, 'utf8').catch(() => '');
      const current = await readFile(base, 'utf8').catch(() => '');
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
  ensureSandbox(podUid: string, podName: string, _namespace: string, portMappings: PortMapping[] = []): Promise<{ pid: number }> {
    let p = this.sandboxes.get(podUid);
    if (!p) {
      p = (async () => {
        const pidFile = this.sandboxPidFile(podUid);
        const known = Number(readIf(pidFile).trim());
        if (known > 0 && isSandbox(known)) return { pid: known };
        await mkdir(join(this.opts.dataDir, 'sandboxes'), { recursive: true });
        // it says `ready` once the hostname is set and loopback is up, then becomes `sleep` with its
        // output closed: no polling
        const child = spawn(
          'unshare',
          ['--net', '--ipc', '--uts', '--', '/bin/sh', '-c', 'echo "$1" > /proc/sys/kernel/hostname && ip link set lo up && echo ready && exec sleep 2147483647 >/dev/null 2>&1', 'troupe-sandbox', podName],
          { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        const pid = child.pid;
        this.startingSandboxes.add(child);
        let said = '';
        child.stderr!.on('data', (b: Buffer) => (said += b.toString()).length > 4096 && (said = said.slice(-4096)));
        const ready = await new Promise<boolean>((resolve) => {
          const limit = setTimeout(() => resolve(false), 10_000);
          let out = '';
          child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
          // `ready`, then the end of its output: it is becoming `sleep`
          child.stdout!.once('end', () => out.includes('ready') && (clearTimeout(limit), resolve(true)));
          child.once('error', () => (clearTimeout(limit), resolve(false)));
          child.once('exit', () => (clearTimeout(limit), resolve(false)));
        });
        child.stdout!.destroy();
        child.stderr!.destroy();
        child.unref();
        for (let i = 0; ready && pid && !isSandbox(pid) && i < 1000; i++) await new Promise((r) => setTimeout(r, 1));
        if (!pid || !ready) {
          this.startingSandboxes.delete(child);
          if (pid && child.exitCode === null) child.kill('SIGKILL');
          throw new RuntimeError(`pod sandbox for ${podName} did not start${child.exitCode !== null ? ` (exit ${child.exitCode})` : ''}${said.trim() ? `: ${said.trim()}` : ''}`, { podUid });
        }
        await writeFile(pidFile, `${pid}\n`);
        this.startingSandboxes.delete(child);
        if (this.network) {
          // on the node's pod network: an address of the node's pod CIDR (CNI bridge + host-local)
          try {
            // the host ports go beside the pid: their removal needs them, even after a restart
            if (portMappings.length > 0) await writeFile(this.sandboxPortsFile(podUid), JSON.stringify(portMappings));
            const r = await this.network.add(podUid, `/proc/${pid}/ns/net`, portMappings);
            await writeFile(this.sandboxIpFile(podUid), `${r.ip}\n`);
          } catch (err) {
            process.kill(pid, 'SIGKILL');
            await rm(pidFile, { force: true });
            throw err;
          }
        }
        return { pid };
      })();
      this.sandboxes.set(podUid, p);
      p.catch(() => this.sandboxes.delete(podUid));
    }
    return p;
  }

  /**
   * For an agent that stops: kills the sandboxes still coming up. No pid file names them yet, so
   * the next agent could not find them; it makes the pod's sandbox again. (Containers still
   * waiting for their bundle end by themselves: their shim reads EOF when this process is gone.)
   */
  abandonStarting(): void {
    for (const child of this.startingSandboxes) if (child.exitCode === null) child.kill('SIGKILL');
    this.startingSandboxes.clear();
  }

  private sandboxPidFile(podUid: string): string {
    return join(this.opts.dataDir, 'sandboxes', `${podUid}.pid`);
  }

  private sandboxPortsFile(podUid: string): string {
    return join(this.opts.dataDir, 'sandboxes', `${podUid}.ports`);
  }

  private sandboxIpFile(podUid: string): string {
    return join(this.opts.dataDir, 'sandboxes', `${podUid}.ip`);
  }

  /** The pod's address on the pod network, if it has one. */
  sandboxIp(podUid: string): string | undefined {
    return readIf(this.sandboxIpFile(podUid)).trim() || undefined;
  }

  /** Removes a pod's sandbox (its containers are gone): off the network first, then the process. */
  async removeSandbox(podUid: string): Promise<void> {
    await this.sandboxes.get(podUid)?.catch(() => undefined);
    this.sandboxes.delete(podUid);
    const pidFile = this.sandboxPidFile(podUid);
    const pid = Number(readIf(pidFile).trim());
    const ipFile = this.sandboxIpFile(podUid);
    if (existsSync(ipFile)) {
      // the address goes back even when the sandbox process is gone (an empty netns path)
      const netns = pid > 0 && isSandbox(pid) ? `/proc/${pid}/ns/net` : '';
      const ports = readIf(this.sandboxPortsFile(podUid));
      if (this.network) await this.network.del(podUid, netns, ports ? (JSON.parse(ports) as PortMapping[]) : []);
      await rm(ipFile, { force: true });
      await rm(this.sandboxPortsFile(podUid), { force: true });
    }
    if (pid > 0 && isSandbox(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
      for (let i = 0; i < 500 && existsSync(`/proc/${pid}`) && isSandbox(pid); i++) await new Promise((r) => setTimeout(r, 2));
    }
    await rm(pidFile, { force: true });
  }

  /** Removes the cgroups of pods that have no container or sandbox here any more. */
  async sweepCgroups(): Promise<string[]> {
    const keep = new Set((await this.containers()).map((c) => c.podUid));
    for (const f of await readdir(join(this.opts.dataDir, 'sandboxes')).catch(() => [] as string[])) keep.add(f.replace(/\.(pid|ip|ports)$/, ''));
    for (const uid of this.sandboxes.keys()) keep.add(uid);
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

/** Whether `pid` is a pod sandbox's sleeping process. */
function isSandbox(pid: number): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.startsWith('sleep\0') && cmd.includes('2147483647');
  } catch {
    return false;
  }
}

function readIf(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
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
