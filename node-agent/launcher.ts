/**
 * The launcher: one small bash process per runtime that starts the node's shims and pod sandboxes.
 *
 * Node's spawn forks the whole agent synchronously on its event loop: measured during a 100-pod
 * burst, 38% of the agent's main thread went to `ChildProcess.spawn`, and the forked copies
 * (page tables of a 70 MB process, torn down again at exec) cost as much CPU again as crun itself.
 * A bash fork costs a fraction of that and happens off the agent's thread. So the agent writes
 * one line per start to the launcher, which forks a shim or a sandbox as a background job (in its
 * own session: a Ctrl-C aimed at the agent does not reach them) and says what became of it on its
 * stdout: `spawned <rid> <pid>`, `ready <rid> <pid>` / `failed <rid> <code>` for a sandbox,
 * `exit <container id> <code>` when a shim's container has ended.
 *
 * The launcher ends when the agent does (EOF on its stdin); its shims and sandboxes live on, for
 * the next agent to adopt (a shim's exit status is also in its folder's `exitcode` file).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, existsSync, mkdirSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { RuntimeError } from './errors.js';
import { readdirIf, readIf, running } from './files.js';

/**
 * One stream's logger, a shell function run in a forked subshell (no exec): each line stamped with
 * bash's $EPOCHREALTIME (no fork per line), the file opened at the first line (a container that
 * says nothing creates no file) and rotated to `.1` past LOGMAX bytes (one rotated file kept, as
 * the kubelet's default).
 */
const LOGGER = `
log() {
  local f="$1" size=0 open=
  while IFS= read -r line || [ -n "$line" ]; do
    if [ -z "$open" ]; then
      [ -e "$f" ] && size=$(stat -c %s "$f")
      exec 5>>"$f"; open=1
    fi
    printf "%s %s\\n" "$EPOCHREALTIME" "$line" >&5
    size=$(( size + \${#line} + 19 ))
    if [ "$size" -ge "$LOGMAX" ]; then exec 5>&-; mv -f "$f" "$f.1"; exec 5>>"$f"; size=0; fi
  done
}
# (a shim's loggers start before their container is known: the first line they read is their file)
logpath() {
  local f
  IFS= read -r f || return 0
  log "$f"
}`;

/**
 * A shim: the container's two loggers (process substitutions: pipes, no fifo files, no new
 * shell) and its runner, a job that mounts the overlay rootfs, waits for `go` when told to, and
 * becomes crun (exec: nothing is handed from one process to another between the mount and crun,
 * a wakeup and a fork less on the start path); then the shim unmounts the rootfs and writes the
 * status to `exitcode` once both loggers have drained, and to the agent. Its pid is in `shim.pid`
 * (an adopting agent watches it). The overlay is mounted where the launcher lives (the agent's
 * mount namespace, as containerd mounts a task's rootfs): crun's container takes its own copy at
 * create, and the shim needs no namespace, shell or exec of its own for it (an `unshare` and a
 * `sh` per container were a sixth of a pod start's processes). Its long arguments (the image's
 * folder, the log base, crun's command line) come in `shim.args`, NUL-separated: bash reads a pipe
 * one byte per read call, a file in blocks.
 *
 * A pooled shim (`pooled`) is the same made ahead of its container: it forks its loggers and its
 * runner, which opens the shim's FIFO (`<base>.fifo`, the shim's pid in `<base>.pid`) and waits
 * there for one line, the words a fresh shim gets (or `quit`); the FIFO then carries the agent's
 * word that `go` is there. On a pod's start path that leaves the mount and crun: the launcher's
 * fork, the shell's start and the loggers' and runner's forks (a millisecond and a half here,
 * more while the node is busy) are behind it. It quits on its own within a second of its
 * launcher's end.
 *
 * A pooled shim may also hold its container's rootfs ready (`pooled <base> <image folder>`): the
 * overlay of the image the node ran last, mounted on `<base>.root/rootfs` (upper and work beside
 * it) before it says ready. A container of that image takes the folder as its own (renamed, the
 * mount with it: see ContainerRuntime.launchContainer) and its line ends in `premounted`; the
 * mount, a fork and exec and the overlay's setup, then is not on its start path either. Given a
 * container of another image, the runner unmounts it first and mounts as a fresh shim does. A
 * pooled shim that quits unmounts it.
 */
const SHIM = `
shim() {
  local id="$1" D="$2" WAIT="$3" PRE="$4" code= L1 L2 R stage=
  trap '' PIPE
  exec 2>>"$D/shim.log"
  echo "$BASHPID" > "$D/shim.pid"
  exec 3> >(logpath); L1=$!
  exec 4> >(exec 3>&-; logpath); L2=$!
  runjob "$D" "$WAIT" '' "$PRE" &
  R=$!
  shimend
}
pooled() {
  local rid="$1" base="$2" lower="$3" root= f line id D WAIT code= L1 L2 R stage=
  trap '' PIPE
  if [ -n "$lower" ]; then
    root="$base.root"
    if ! $BB mount -t overlay overlay -o "lowerdir=$lower,upperdir=$root/upper,workdir=$root/work" "$root/rootfs" >/dev/null 2>&1; then
      echo "failed $rid 1"; return
    fi
  fi
  exec 3> >(logpath); L1=$!
  exec 4> >(exec 3>&-; logpath); L2=$!
  if ! { $BB mkfifo "$base.fifo" || mkfifo "$base.fifo"; } 2>/dev/null || ! exec {f}<>"$base.fifo"; then
    rm -f "$base.fifo"; exec 3>&- 4>&-; wait $L1 $L2
    [ -n "$root" ] && $BB umount "$root/rootfs" >/dev/null 2>&1
    echo "failed $rid 1"; return
  fi
  local me=$BASHPID
  coproc RUNNER { pooledrun "$f" "$me" "$root"; }
  R=$RUNNER_PID
  # (the FIFO is the runner's now)
  exec {f}>&-
  echo "$BASHPID" > "$base.pid"
  echo "ready $rid $BASHPID"
  IFS= read -r line <&"\${RUNNER[0]}" || line=quit
  # (its files are the agent's to remove: an rm here was a fork and exec on the pod's start path)
  if [ "$line" = quit ]; then
    exec 3>&- 4>&-; wait $R $L1 $L2
    [ -n "$root" ] && $BB umount "$root/rootfs" >/dev/null 2>&1
    return
  fi
  eval "set -- $line"
  id="$1" D="$2" WAIT="$3"
  exec 2>>"$D/shim.log"
  shimend
}
# a pooled shim's runner: it waits for its container on the FIFO (looking every second that the
# launcher and its shim are still there), tells its shim, writes the shim's pid file and goes on as runjob
pooledrun() {
  local f="$1" shim="$2" root="$3" line rc
  until IFS= read -r -t 1 -u "$f" line; do
    rc=$?
    # (one kill each: with two pids, kill succeeds when either is there)
    if [ "$rc" -le 128 ] || ! kill -0 $$ 2>/dev/null || ! kill -0 "$shim" 2>/dev/null; then exit 0; fi
  done
  [ "$line" = quit ] && exit 0
  # (a shim that is gone, killed meanwhile, cannot see its container through)
  echo "$line" || exit 0
  eval "set -- $line"
  # (the shim's pid is there before the container runs, as a fresh shim writes it)
  echo "$shim" > "$2/shim.pid"
  # a rootfs held ready and not taken (another image): unmounted, then mounted as a fresh shim does
  [ -n "$root" ] && [ "$4" != premounted ] && { $BB umount "$root/rootfs" >/dev/null 2>&1 3>&- 4>&- || $BB umount -l "$root/rootfs" >/dev/null 2>&1 3>&- 4>&-; }
  runjob "$2" "$3" "$f" "$4"
}
# the job that becomes crun, so that nothing is handed from process to process between the
# rootfs and crun: it mounts the rootfs, waits for \`go\` (on the FIFO in \`$3\` for a pooled
# shim) and execs crun's command line, its output the loggers'. It says in \`shim.stage\` where
# it stopped short (the shim then knows the status is not crun's)
runjob() {
  local D="$1" WAIT="$2" W="$3" PRE="$4" a
  exec 2>>"$D/shim.log"
  mapfile -d '' -t a < "$D/shim.args"
  printf '%s\\n' "\${a[1]}.stdout.log" >&3
  printf '%s\\n' "\${a[1]}.stderr.log" >&4
  if [ "$PRE" != premounted ] && ! $BB mount -t overlay overlay -o "lowerdir=\${a[0]},upperdir=$D/upper,workdir=$D/work" "$D/rootfs" >/dev/null 3>&- 4>&-; then
    echo mount > "$D/shim.stage"; exit 90
  fi
  if [ -n "$WAIT" ] && ! gowait "$D" "$W"; then
    echo wait > "$D/shim.stage"; echo "not started: the pod's sandbox did not become ready" >&2; exit 91
  fi
  [ -n "$W" ] && exec {W}>&-
  exec "\${a[@]:2}" </dev/null >&3 2>&4 3>&- 4>&-
}
shimend() {
  wait $R
  code=$?
  [ -e "$D/shim.stage" ] && read -r stage < "$D/shim.stage"
  if [ "$stage" = mount ]; then code=90
  else
    [ "$stage" = wait ] && code=91
    $BB umount "$D/rootfs" >/dev/null 3>&- 4>&- || $BB umount -l "$D/rootfs" >/dev/null 3>&- 4>&-
  fi
  # the loggers end when the last writer is gone (the container's processes and this shell)
  exec 3>&- 4>&-
  wait $L1 $L2
  echo "$code" > "$D/exitcode"
  echo "exit $id $code" 2>/dev/null
}`;

/**
 * Waits until the agent writes `go` in the container's folder (its pod's sandbox is ready), in
 * steps of a millisecond: a `read` with a timeout on the launcher's FIFO (opened read-write, it
 * never has data and never ends), so the wait forks nothing. A pooled shim waits on its own FIFO
 * instead (the fd in `$2`), where the agent writes a line once `go` or `abort` is there: no step
 * to wait out. Fails at `abort`, when the folder is gone, or after two minutes.
 */
const GOWAIT = `
gowait() {
  local D="$1" w="$2" n=0 t step=0.001 max=120000
  if [ -n "$w" ]; then t=$w; step=0.1; max=1200
  elif [ -p "$TICK" ]; then exec {t}<>"$TICK"; fi
  until [ -e "$D/go" ]; do
    if [ -e "$D/abort" ] || [ ! -d "$D" ] || [ $((n++)) -ge $max ]; then
      [ -n "$t" ] && [ -z "$w" ] && exec {t}>&-
      return 1
    fi
    if [ -n "$t" ]; then read -r -t $step -u "$t"; else $BB sleep 0.001; fi
  done
  [ -n "$t" ] && [ -z "$w" ] && exec {t}>&-
  return 0
}`;

/**
 * A pod sandbox: one process holding the pod's network, IPC and UTS namespaces. It says `ns` as
 * soon as they exist (the pod network can be set up from then on), sets the hostname, brings
 * loopback up, writes its own pid file (so no sandbox ever runs unnamed), says
 * `ready` and becomes `sleep` with its output closed. It is the launcher's job itself (exec, no
 * shell left waiting), so its pid is the sandbox's from the start.
 */
const SANDBOX = `
sandbox() {
  exec $BB unshare --net --ipc --uts -- $SH -c '
    echo "ns $3 $$"
    echo "$1" > /proc/sys/kernel/hostname && $BB ip link set lo up && echo $$ > "$2" && echo "ready $3 $$" &&
      exec $BB sleep 2147483647 >/dev/null 2>&1
    echo "failed $3 $?"' troupe-sandbox "$2" "$3" "$1" </dev/null 2>"$4"
}`;

/**
 * crun guards the host's binary against a container that would overwrite it through
 * /proc/self/exe (CVE-2019-5736) by re-executing itself from a read-only bind mount of itself,
 * unless it already runs from one and `_LIBCONTAINER_CLONED_BINARY` says so: a second exec and
 * dynamic link of crun on every call (3 ms of a pod start here). When the launcher's mount
 * namespace is the node's own (`CRUN_RO`: the agent's private namespace, or one made for the
 * launcher), the launcher makes that bind mount once, read-only over crun's own path, and sets the
 * variable; the protection is the same, made once. Where either step fails, crun protects itself.
 * (A crun upgraded on the host meanwhile is taken up when the agent starts again.)
 */
const CRUN_READ_ONLY = `
if [ -n "$CRUN_RO" ] && [ -w "$CRUN_RO" ]; then
  if mount --bind "$CRUN_RO" "$CRUN_RO" 2>/dev/null && ! mount -o remount,bind,ro "$CRUN_RO" 2>/dev/null; then umount "$CRUN_RO" 2>/dev/null; fi
fi
if [ -n "$CRUN_RO" ] && [ -e "$CRUN_RO" ] && [ ! -w "$CRUN_RO" ]; then export _LIBCONTAINER_CLONED_BINARY=1; fi`;

/**
 * With busybox-static there, its applets run the short-lived steps (unshare, sh, mount, ip, sleep):
 * a static binary starts in about half the time of util-linux's (measured here: unshare + sh 1.4
 * against 2.5 ms, an overlay mount 2.1 against 4.1 ms).
 */
const PROGRAMS = `
if [ -n "$BB" ]; then SH="$BB sh"; else SH=/bin/sh; fi
export BB SH
if [ -n "$TICK" ] && [ ! -p "$TICK" ]; then rm -f "$TICK"; mkfifo "$TICK" 2>/dev/null; fi
${CRUN_READ_ONLY}`;

/**
 * A short command (a CNI plugin, `crun exec`): its input from a file, its output to files, its
 * pid said (a deadline kills it), then its exit status.
 */
const RUN = `
runcmd() {
  local rid="$1" base="$2" in=/dev/null a i=0
  [ -e "$base.in" ] && in="$base.in"
  mapfile -d '' -t a < "$base.args"
  while [ "\${a[i]}" != -- ]; do export "\${a[i]}"; i=$((i + 1)); done
  "\${a[@]:i+1}" <"$in" >"$base.out" 2>"$base.err" &
  local c=$!
  echo "child $rid $c"
  wait $c
  echo "done $rid $?"
}`;

const SCRIPT = `${PROGRAMS}
${LOGGER}
${GOWAIT}
${SHIM}
${SANDBOX}
${RUN}
while IFS= read -r line; do
  eval "set -- $line"
  verb="$1"; rid="$2"; shift 2
  case "$verb" in
    shim) shim "$@" </dev/null & ;;
    pooled) pooled "$rid" "$@" </dev/null & ;;
    sandbox) sandbox "$rid" "$@" & ;;
    run) runcmd "$rid" "$@" & ;;
    *) echo "failed $rid 2"; continue ;;
  esac
  # forgotten at once: bash keeps every job it started otherwise, and each new one grew slower
  # (20,000 jobs: 45 s and 7 MB against 10 s and a flat 3.8 MB disowned)
  disown $! 2>/dev/null
  echo "spawned $rid $!"
done`;

/** Words for a launcher job, NUL-separated in a file (its shell reads them with `mapfile -d ''`). */
function writeWords(path: string, words: string[]): void {
  const bad = words.find((w) => w.includes('\0'));
  if (bad !== undefined) throw new RuntimeError(`launcher argument has a NUL: ${JSON.stringify(bad)}`, {});
  writeFileSync(path, `${words.join('\0')}\0`);
}

/** A container folder's overlay folders (the shim mounts `rootfs` from `upper` and `work`). */
export const OVERLAY_DIRS = ['rootfs', 'upper', 'work'] as const;

/** A pooled shim: its pid, its FIFO and, when it holds one ready, its rootfs folder. */
export interface PooledShim {
  pid: number;
  fifo: string;
  root?: { dir: string; lowerDir: string; identity: string };
}

/** Which folder a path is (its inode and birth time), or undefined when there is none. */
function folderIdentity(path: string): string | undefined {
  try {
    const st = statSync(path);
    return st.isDirectory() ? `${st.dev}:${st.ino}:${st.birthtimeMs}` : undefined;
  } catch {
    return undefined;
  }
}

/** Removes a file or folder, saying nothing when it cannot (one still mounted stays). */
function rmQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // (a mount point: its shim unmounts it when it ends, the next fill removes it)
  }
}

/** A pooled shim's FIFO and pid file, once it is no longer waiting. */
function removeShimFiles(fifo: string): void {
  rmSync(fifo, { force: true });
  rmSync(fifo.replace(/\.fifo$/, '.pid'), { force: true });
}

/**
 * Writes one line to a FIFO that has a reader, without blocking: false when there is none (its
 * process is gone) or the FIFO is.
 */
function writeFifo(path: string, line: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    return writeSync(fd, line) === Buffer.byteLength(line);
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/** A word for the launcher's shell: single-quoted. */
function quote(arg: string): string {
  if (/[\n\0]/.test(arg)) throw new RuntimeError(`launcher argument has a newline or NUL: ${JSON.stringify(arg)}`, {});
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

const REPLY_TIMEOUT_MS = 30_000;

interface Pending {
  kind: 'spawn' | 'sandbox' | 'run';
  /** The launcher it was sent to. */
  child: ChildProcess;
  spawned: Promise<number>;
  done?: Promise<boolean>;
  /** A sandbox: resolves true once its namespaces exist (`ns`), false if it failed first. */
  ns?: Promise<boolean>;
  onNs?: (ok: boolean) => void;
  exit?: Promise<number>;
  childPid?: number;
  /** The pid a `ready` line gave (a sandbox's, a pooled shim's). */
  readyPid?: number;
  onSpawned: (pid: number) => void;
  onFail: (err: Error) => void;
  onDone?: (ok: boolean) => void;
  onExit?: (code: number) => void;
}

export interface LaunchedSandbox {
  pid: number;
  /** Resolves true once it said `ready`, false when it failed. */
  ready: Promise<boolean>;
  /** Resolves true once its namespaces exist (before it is ready), false when it failed first. */
  ns: Promise<boolean>;
}

export class Launcher {
  private child?: ChildProcess;
  private rid = 0;
  private runs = 0;
  /** Requests waiting for their replies, by request id. */
  private readonly replies = new Map<string, Pending>();
  private readonly exitWaiters = new Map<string, (code: number) => void>();
  /** Pooled shims ready for a container (see SHIM), oldest first, and how many are on their way. */
  private idle: PooledShim[] = [];
  /** The rootfs folders of pooled shims on their way (those ready are in `idle`). */
  private readonly rootsComing = new Set<string>();
  /** Pooled shims told to quit that held a rootfs (they unmount it as they end). */
  private quitting: PooledShim[] = [];
  private idleComing = 0;
  /** Pooled shims given a container that waits for `go`, by container id: their FIFOs. */
  private readonly waiting = new Map<string, string>();
  private shimSeq = 0;

  /** `prefix` puts the launcher (and so every shim) where crun can work (see namespacePrefix). */
  constructor(
    private readonly prefix: string[] = [],
    private readonly env: NodeJS.ProcessEnv = {},
    /** busybox (static) for the short-lived steps, when installed; '' for util-linux's programs. */
    busybox?: string,
  ) {
    this.busybox = busybox ?? (existsSync('/bin/busybox') ? '/bin/busybox' : '');
  }

  private readonly busybox: string;

  /** Calls back once with the exit code the shim of container `id` reports. */
  onExit(id: string, cb: (code: number) => void): void {
    this.exitWaiters.set(id, cb);
  }

  forgetExit(id: string): void {
    this.exitWaiters.delete(id);
  }

  /**
   * Starts a shim for container `id`; resolves with its pid. With `waitForGo`, the shim prepares
   * (loggers, rootfs) and then waits for a `go` file in `dir` before it runs crun (an `abort` file,
   * or the folder gone, ends it with status 91 instead).
   */
  async shim(id: string, dir: string, lowerDir: string, logBase: string, argv: string[], waitForGo = false, claimed?: PooledShim): Promise<number> {
    writeWords(join(dir, 'shim.args'), [lowerDir, logBase, ...argv]);
    const words = [id, dir, waitForGo ? 'wait' : ''];
    // one whose rootfs the container took (see premounted) is told so; another is given a container
    if (claimed) words.push('premounted');
    const pooled = claimed ? (writeFifo(claimed.fifo, `${words.map(quote).join(' ')}\n`) ? claimed : undefined) : this.takeShim(words);
    // (a fresh one for a rootfs a shim held and could not be given, killed meanwhile, runs on that
    // mount and unmounts it when it ends, as that shim would have)
    if (!pooled) return this.request('shim', words).spawned;
    if (waitForGo) this.waiting.set(id, pooled.fifo);
    else removeShimFiles(pooled.fifo);
    return pooled.pid;
  }

  /**
   * Tells container `id`'s shim, when it is a pooled one, that `go` or `abort` is now in its
   * folder (a fresh shim looks every millisecond).
   */
  wake(id: string): void {
    const fifo = this.waiting.get(id);
    if (!fifo) return;
    this.waiting.delete(id);
    writeFifo(fifo, 'go\n');
    removeShimFiles(fifo);
  }

  /** Pooled shims ready now. */
  get idleShims(): number {
    return this.idle.length;
  }

  /**
   * A pooled shim holding the rootfs of `lowerDir` mounted, taken for a container, or undefined.
   * Its folder (`root`: rootfs, upper, work) becomes the container's (renamed: the mount goes
   * with it); then shim() gets it as `claimed`. Put back with unclaim() if the folder cannot be
   * taken. The image folder must be the one mounted: a name made again (the image removed and
   * pulled back) is another folder.
   */
  premounted(lowerDir: string): PooledShim | undefined {
    const now = folderIdentity(lowerDir);
    if (!now) return undefined;
    const i = this.idle.findIndex((s) => s.root?.lowerDir === lowerDir && s.root.identity === now && running(s.pid));
    if (i < 0) return undefined;
    return this.idle.splice(i, 1)[0]!;
  }

  /**
   * Ends the pooled shims now and waits (up to `ms`) for those holding a rootfs to unmount it
   * (they end after), then removes their folders: what stops a node (a mount left behind would
   * keep its folder on tmpfs busy).
   */
  async drainShims(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    const pause = () => new Promise((r) => setTimeout(r, 5));
    while (this.idleComing > 0 && Date.now() < deadline) await pause();
    for (const s of this.idle.splice(0)) this.quit(s);
    for (const s of this.quitting.splice(0)) {
      while (running(s.pid) && Date.now() < deadline) await pause();
      rmQuietly(s.root!.dir);
    }
  }

  /** Gives back a shim premounted() took whose folder the container could not take. */
  unclaim(s: PooledShim): void {
    this.idle.unshift(s);
  }

  /**
   * Keeps `size` pooled shims ready (their files under `dir`, on tmpfs). Called when the node is
   * quiet: making one forks four processes (the shim, its loggers, its runner) and runs mkfifo,
   * which a start under way would wait for.
   */
  fillShims(dir: string, size: number, lowerDir?: string): void {
    // one holding an image folder that is gone or was made again (the image removed) quits and
    // unmounts it, so that the removed image's space is not held
    const stale = this.idle.filter((s) => s.root && folderIdentity(s.root.lowerDir) !== s.root.identity);
    if (stale.length) {
      this.idle = this.idle.filter((s) => !stale.includes(s));
      for (const s of stale) this.quit(s);
    }
    // (those that ended have unmounted: their folders go below; the others' stay until they have)
    this.quitting = this.quitting.filter((s) => running(s.pid));
    // (the folders of shims ready, on their way or still quitting)
    const kept = new Set([...this.rootsComing, ...[...this.idle, ...this.quitting].flatMap((s) => (s.root ? [s.root.dir] : []))]);
    if (this.idle.length + this.idleComing >= size) return;
    const mine = `shim-${process.pid}-`;
    for (const f of readdirIf(dir)) {
      // those a killed agent's launcher left (they quit by themselves: their launcher is gone, and
      // their mounts went with its mount namespace), and the rootfs folders of this one's shims
      // given a container of another image (unmounted then)
      if (f.startsWith(mine) ? f.endsWith('.root') && !kept.has(join(dir, f)) : this.shimSeq === 0) rmQuietly(join(dir, f));
    }
    mkdirSync(dir, { recursive: true });
    const identity = lowerDir ? folderIdentity(lowerDir) : undefined;
    while (this.idle.length + this.idleComing < size) {
      const base = join(dir, `${mine}${++this.shimSeq}`);
      let root: PooledShim['root'];
      if (lowerDir && identity) {
        root = { dir: `${base}.root`, lowerDir, identity };
        for (const sub of OVERLAY_DIRS) mkdirSync(join(root.dir, sub), { recursive: true });
        this.rootsComing.add(root.dir);
      }
      const r = this.request('pooled', root ? [base, lowerDir!] : [base], 'sandbox');
      this.idleComing++;
      void r.done!.then((ok) => {
        this.idleComing--;
        if (root) this.rootsComing.delete(root.dir);
        if (ok && this.child === r.child) {
          this.idle.push({ pid: r.readyPid!, fifo: `${base}.fifo`, ...(root ? { root } : {}) });
          return;
        }
        // (one of a launcher that has ended since quits by itself, and unmounts what it holds)
        if (ok) removeShimFiles(`${base}.fifo`);
        // (a failed one mounted nothing)
        if (root && !ok) rmQuietly(root.dir);
      });
    }
  }

  /**
   * Hands a container to a pooled shim: its words in one write to the shim's FIFO (atomic: far
   * below PIPE_BUF). Returns the shim, or undefined when none is ready (or none took it: one whose
   * FIFO has no reader any more is gone).
   */
  private takeShim(words: string[]): { pid: number; fifo: string } | undefined {
    const line = `${words.map(quote).join(' ')}\n`;
    for (let s = this.idle.shift(); s; s = this.idle.shift()) {
      // (one killed meanwhile, a zombie until its launcher reaps it: its runner, which reads the
      // FIFO, leaves within a second; killed between this look and the write, its container is
      // lost to the start's deadline)
      if (running(s.pid) && writeFifo(s.fifo, line)) return s;
      removeShimFiles(s.fifo);
    }
    return undefined;
  }

  /** Starts a pod sandbox; resolves with its pid once spawned (then `ready` tells how it went). */
  async sandbox(hostname: string, pidFile: string, errFile: string): Promise<LaunchedSandbox> {
    const r = this.request('sandbox', [hostname, pidFile, errFile], 'sandbox');
    return { pid: await r.spawned, ready: r.done!, ns: r.ns! };
  }

  /**
   * Runs a short command as a job of the launcher (no fork of this process): `input` goes in
   * through a file, stdout and stderr come back through files, all under `scratchDir` (tmpfs).
   * Past `timeoutMs` the command is killed (SIGKILL) and its exit code is then 137.
   */
  async exec(argv: string[], opts: { scratchDir: string; input?: string; env?: Record<string, string>; timeoutMs?: number }): Promise<{ stdout: string; stderr: string; exitCode: number }> {
    // the files are on tmpfs (the runtime's scratch folder): written and read synchronously, and
    // the command line goes in a file too (bash reads a pipe one byte per call)
    mkdirSync(opts.scratchDir, { recursive: true });
    const base = join(opts.scratchDir, `run-${process.pid}-${++this.runs}`);
    const files = { args: `${base}.args`, in: `${base}.in`, out: `${base}.out`, err: `${base}.err` };
    try {
      const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
      writeWords(files.args, [...env, '--', ...argv]);
      if (opts.input !== undefined) writeFileSync(files.in, opts.input);
      const r = this.request('run', [base], 'run', (opts.timeoutMs ?? REPLY_TIMEOUT_MS) + 5_000);
      await r.spawned;
      let timer: NodeJS.Timeout | undefined;
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const pid = r.childPid;
          if (pid) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // ended just now
            }
          }
        }, opts.timeoutMs);
      }
      const exitCode = await r.exit!;
      clearTimeout(timer);
      return { stdout: readIf(files.out), stderr: readIf(files.err), exitCode };
    } finally {
      for (const f of Object.values(files)) rmSync(f, { force: true });
    }
  }

  /** The launcher's pid, for tests. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Ends the launcher (its shims and sandboxes live on). */
  close(): void {
    // the pooled shims quit now (rather than at their next look at the launcher)
    for (const s of this.idle.splice(0)) this.quit(s);
    this.child?.stdin?.end();
    this.child = undefined;
  }

  /** Tells a pooled shim taken out of `idle` to quit; one holding a rootfs unmounts it as it ends (see drainShims). */
  private quit(s: PooledShim): void {
    writeFifo(s.fifo, 'quit\n');
    removeShimFiles(s.fifo);
    if (s.root) this.quitting.push(s);
  }

  /**
   * Sends one request. `spawned` resolves with the job's pid; for a sandbox, `done` with whether it
   * said `ready`; for a command, `exit` with its status and `childPid` holds its pid meanwhile. Every
   * request has a deadline, which also keeps this process alive while it waits (the launcher
   * does not).
   */
  private request(verb: string, args: string[], kind: 'spawn' | 'sandbox' | 'run' = 'spawn', deadlineMs = REPLY_TIMEOUT_MS): Pending {
    const child = this.ensure();
    const rid = String(++this.rid);
    let timer: NodeJS.Timeout | undefined;
    const settle = () => clearTimeout(timer);
    const p: Pending = { kind, child } as Pending;
    p.spawned = new Promise<number>((resolve, reject) => {
      p.onSpawned = (pid) => {
        if (kind === 'spawn') settle();
        resolve(pid);
      };
      p.onFail = (err) => {
        settle();
        reject(err);
        p.onDone?.(false);
        p.onExit?.(-1);
      };
    });
    // a failure before the job ran is the caller's through `spawned`; after, through done/exit
    p.spawned.catch(() => undefined);
    if (kind === 'sandbox') {
      p.ns = new Promise<boolean>((resolve) => (p.onNs = resolve));
      p.done = new Promise<boolean>((resolve) => {
        p.onDone = (ok) => {
          settle();
          p.onNs!(ok);
          resolve(ok);
        };
      });
    }
    if (kind === 'run') {
      p.exit = new Promise<number>((resolve) => {
        p.onExit = (code) => {
          settle();
          resolve(code);
        };
      });
    }
    timer = setTimeout(() => {
      if (!this.replies.delete(rid)) return;
      p.onFail(new RuntimeError(`the launcher did not answer ${verb} within ${deadlineMs / 1000} s`, {}));
    }, deadlineMs);
    this.replies.set(rid, p);
    child.stdin!.write(`${[verb, rid, ...args].map(quote).join(' ')}\n`);
    return p;
  }

  private ensure(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    const argv = [...this.prefix, '/bin/bash', '--norc', '--noprofile', '-c', SCRIPT, 'troupe-launcher'];
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['pipe', 'pipe', 'ignore'], env: { ...process.env, ...this.env, BB: this.busybox } });
    this.child = child;
    child.stdin!.on('error', () => undefined);
    createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line));
    const gone = (why: string) => {
      if (this.child === child) {
        this.child = undefined;
        // its pooled shims quit by themselves once they see it gone
        this.idle = [];
      }
      for (const [rid, e] of this.replies) {
        // (a launcher closed earlier ends after its successor has taken requests)
        if (e.child !== child) continue;
        this.replies.delete(rid);
        e.onFail(new RuntimeError(`the launcher ended (${why}) before it answered`, {}));
      }
    };
    child.once('exit', (code, signal) => gone(signal ?? `exit ${code}`));
    child.once('error', (err) => gone(err.message));
    // the launcher never keeps the agent alive: what waits on it has its own timers
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    return child;
  }

  private onLine(line: string): void {
    const [verb, key, value] = line.split(' ');
    if (!verb || key === undefined) return;
    if (verb === 'exit') {
      const cb = this.exitWaiters.get(key);
      this.exitWaiters.delete(key);
      cb?.(Number(value));
      return;
    }
    const p = this.replies.get(key);
    if (!p) return;
    const n = Number(value);
    switch (verb) {
      case 'spawned':
        p.onSpawned(n);
        if (p.kind === 'spawn') this.replies.delete(key);
        break;
      case 'child':
        p.childPid = n;
        break;
      case 'ns':
        p.onNs?.(true);
        break;
      case 'done':
        // (a short command may end before the launcher has said it spawned it: its `spawned` line
        // then finds no request, and what waits on `spawned` would wait for ever; for a command
        // only its settling counts, not the pid)
        this.replies.delete(key);
        p.onSpawned(p.childPid ?? 0);
        p.onExit?.(n);
        break;
      case 'ready':
      case 'failed':
        // (a sandbox may say so before the launcher said it spawned it)
        this.replies.delete(key);
        if (verb === 'failed' && p.kind !== 'sandbox') p.onFail(new RuntimeError(`the launcher could not start it (${value})`, {}));
        if (verb === 'ready') p.readyPid = n;
        p.onSpawned(verb === 'ready' ? n : 0);
        p.onDone?.(verb === 'ready');
        break;
    }
  }
}
