/**
 * The launcher starts shims and sandboxes for the runtime (real crun, as root): the agent's own
 * process forks nothing per container, the state folder is on tmpfs, output stays on disk, and a
 * launcher that dies loses no exit status.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, statfsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import t from 'tap';
import { running } from '../../node-agent/files.js';
import { isSpareCgroup } from '../../node-agent/cgroups.js';
import { netProbe } from '../../node-agent/probes.js';
import type { CommandRunner } from '../../node-agent/crun.js';
import type { Cni } from '../../node-agent/cni.js';
import type { Container, Probe } from '../../protocol/index.js';
import { busyboxImage, testRuntime } from '../helpers/images.js';
import { waitFor } from '../helpers/nats.js';

const TMPFS = 0x01021994;
let seq = 0;

async function run(rt: ReturnType<typeof testRuntime>, img: Awaited<ReturnType<typeof busyboxImage>>, container: Partial<Container>, sandbox = false) {
  const podUid = `luid${++seq}`;
  const podName = `pod-${seq}`;
  const c = { name: 'main', image: 'busybox:test', ...container } as Container;
  rt.track(podUid, c.name);
  const sb = sandbox ? rt.ensureSandbox(podUid, podName, 'default') : undefined;
  const started = await rt.run({ podUid, podName, namespace: 'default', container: c, image: img.image.config.config, lowerDir: img.lowerDir, sandbox: sb });
  return { podUid, podName, name: c.name, started };
}

function readIfExists(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

t.test('containers and sandboxes are jobs of the launcher: the runtime’s process forks none of them', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'launch-node');
  const pods = await Promise.all([0, 1, 2].map(() => run(rt, img, { command: ['/bin/sleep', '60'] }, true)));
  t.teardown(async () => {
    for (const p of pods) await rt.removeSandbox(p.podUid).catch(() => undefined);
  });
  const launcher = rt.launcher().pid!;
  t.ok(launcher > 0, 'a launcher runs');
  // this process's children: the launcher, and none of the shims or sandboxes
  const mine = children(process.pid);
  const shims = pods.map((p) => Number(readFileSync(join(rt.dir(rt.containerId(p.podUid, p.name)), 'shim.pid'), 'utf8')));
  for (const s of shims) {
    t.notOk(mine.includes(s), `shim ${s} is not a child of the runtime's process`);
    t.ok(children(launcher).includes(s), `shim ${s} is a job of the launcher`);
  }
  const sandboxes = await Promise.all(pods.map((p) => rt.ensureSandbox(p.podUid, 'x', 'default')));
  for (const { pid } of sandboxes) t.ok(children(launcher).includes(pid), `sandbox ${pid} is a job of the launcher`);
  // the pod's hostname is set in its sandbox, which the container shares
  const r = await rt.exec(pods[0]!.podUid, 'main', ['/bin/hostname']);
  t.equal(r.stdout.trim(), pods[0]!.podName, 'hostname is the pod name');
});

t.test('the state folder is on tmpfs, the output on disk; a silent container writes no log file', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'tmpfs-node');
  const state = join(img.dir, 'agent-tmpfs-node');
  const onTmpfs = ['/dev/shm', '/run'].some((p) => {
    try {
      return statfsSync(p).type === TMPFS;
    } catch {
      return false;
    }
  });
  if (onTmpfs) {
    t.ok(lstatSync(state).isSymbolicLink(), 'the state folder is a link');
    t.equal(statfsSync(state).type, TMPFS, 'it leads to tmpfs (crun’s state and the bundles)');
  }
  const quiet = await run(rt, img, { command: ['/bin/true'] });
  const loud = await run(rt, img, { command: ['/bin/sh', '-c', 'echo out; echo err >&2'] });
  await rt.wait(quiet.podUid, 'main');
  await rt.wait(loud.podUid, 'main');
  if (onTmpfs) t.equal(statfsSync(rt.dir(rt.containerId(loud.podUid, 'main'))).type, TMPFS, 'the bundle is on tmpfs');
  t.not(statfsSync(rt.logDir).type, TMPFS, 'the output folder is not tmpfs');
  t.same((await rt.logs(loud.podUid, 'main')), { stdout: 'out\n', stderr: 'err\n' });
  const quietId = rt.containerId(quiet.podUid, 'main');
  t.same(readdirSync(rt.logDir).filter((f) => f.startsWith(quietId)), [], 'no log file for a container that said nothing');
  t.same(readdirSync(rt.logDir).filter((f) => f.startsWith(rt.containerId(loud.podUid, 'main'))).sort(), ['.stderr.log', '.stdout.log'].map((f) => rt.containerId(loud.podUid, 'main') + f));
  await rt.remove(quiet.podUid, 'main');
  await rt.remove(loud.podUid, 'main');
  t.same(readdirSync(rt.logDir), [], 'removal takes the output too');
  const target = onTmpfs ? (await import('node:fs')).realpathSync(state) : state;
  t.ok(rt.release() === onTmpfs, 'release removes the tmpfs folder');
  if (onTmpfs) {
    t.notOk(existsSync(target), 'the tmpfs folder is gone');
    t.notOk(existsSync(state), 'and the link');
  }
});

t.test('a launcher that dies loses no exit status, and the next start gets a new launcher', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'relaunch-node');
  const a = await run(rt, img, { command: ['/bin/sh', '-c', 'sleep 1; exit 7'] });
  const first = rt.launcher().pid!;
  process.kill(first, 'SIGKILL');
  const e = await rt.wait(a.podUid, 'main');
  t.equal(e.exitCode, 7, 'the status from the shim’s file');
  t.equal(e.reason, 'Error');
  const b = await run(rt, img, { command: ['/bin/true'] });
  t.not(rt.launcher().pid, first, 'a new launcher');
  t.equal((await rt.wait(b.podUid, 'main')).exitCode, 0);
});

/** The pids of a runtime's shims made ahead and waiting (their pid files). */
function idleShims(rt: ReturnType<typeof testRuntime>): number[] {
  const dir = join(rt.opts.dataDir, 'shims');
  return (existsSync(dir) ? readdirSync(dir) : []).filter((f) => f.endsWith('.pid')).map((f) => Number(readFileSync(join(dir, f), 'utf8')));
}

/** A runtime whose pool is full: two sandboxes and two shims made ahead. */
async function pooledRuntime(t: Parameters<typeof testRuntime>[0], node: string) {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, node);
  rt.fillPool();
  const launcher = rt.launcher();
  await waitFor(() => launcher.idleShims === 2, 'two shims ready');
  return { img, rt, launcher };
}

t.test('spare cgroups made ahead: a pod\'s first container takes one (renamed into place), the node makes it again, and drainPool removes them', async (t) => {
  const { img, rt } = await pooledRuntime(t, 'sparecg-node');
  const info = rt.cgroups;
  const root = join(info.layout === 'v2' ? info.unified! : info.v1.memory!, 'troupe-sparecg-node');
  const spares = () => (existsSync(root) ? readdirSync(root, { withFileTypes: true }) : []).filter((e) => e.isDirectory() && isSpareCgroup(e.name)).map((e) => e.name);
  const before = spares();
  t.equal(before.length, 2, 'as many spares as the pool holds');
  const a = await run(rt, img, { command: ['/bin/sleep', '30'] }, true);
  const now = spares();
  t.equal(now.filter((s) => before.includes(s)).length, 1, 'one of them was taken');
  t.ok(existsSync(join(root, a.podUid, 'main', 'ctr')), 'the pod\'s container runs in the cgroup made from it');
  t.notOk(existsSync(join(root, a.podUid, 'c')), 'the spare\'s leaf became the container\'s');
  await waitFor(() => spares().length === 2, 'the spares made again once the node is quiet');
  await rt.drainPool();
  t.same(spares(), [], 'drainPool removes the spares');
  await rt.remove(a.podUid, 'main');
  await rt.removeSandbox(a.podUid);
  t.notOk(existsSync(root), 'and with the last pod gone, the node\'s folder');
});

t.test('shims made ahead: a container takes a ready one, which runs it as a fresh one would; the node makes it again', async (t) => {
  const { img, rt, launcher } = await pooledRuntime(t, 'shimpool-node');
  const ready = idleShims(rt);
  t.equal(ready.length, 2, 'each has its pid file');
  for (const pid of ready) {
    t.ok(children(launcher.pid!).includes(pid), `shim ${pid} is a job of the launcher`);
    // its two loggers and the job that becomes crun are there already
    t.equal(children(pid).length, 3, `shim ${pid} has forked its loggers and its runner`);
  }

  const a = await run(rt, img, { command: ['/bin/sh', '-c', 'echo out; echo err >&2; echo "$HOSTNAME"; exit 3'] }, true);
  const shimOf = (p: { podUid: string; name: string }) => Number(readFileSync(join(rt.dir(rt.containerId(p.podUid, p.name)), 'shim.pid'), 'utf8'));
  t.ok(ready.includes(shimOf(a)), 'the container’s shim is one of those made ahead');
  t.ok(a.started.pid > 0, 'it ran');
  const e = await rt.wait(a.podUid, 'main');
  t.equal(e.exitCode, 3, 'its status comes back');
  t.equal(e.reason, 'Error');
  t.same(await rt.logs(a.podUid, 'main'), { stdout: `out\n${a.podName}\n`, stderr: 'err\n' }, 'its output reached the logs, in the pod’s sandbox');
  t.notOk(idleShims(rt).includes(shimOf(a)), 'a taken shim leaves the pool’s files');

  // the node makes one again once nothing is starting
  await waitFor(() => launcher.idleShims === 2, 'the pool full again');
  t.equal(idleShims(rt).length, 2);

  // one that died waiting is passed over: the container gets another (or a fresh one)
  const dead = idleShims(rt);
  for (const pid of dead) process.kill(pid, 'SIGKILL');
  await waitFor(() => dead.every((pid) => !running(pid)), 'the shims gone');
  const b = await run(rt, img, { command: ['/bin/sh', '-c', 'echo again'] }, true);
  t.notOk(dead.includes(shimOf(b)), 'not a dead shim');
  t.equal((await rt.wait(b.podUid, 'main')).exitCode, 0);
  t.equal((await rt.logs(b.podUid, 'main')).stdout, 'again\n');
  t.same(idleShims(rt).filter((pid) => dead.includes(pid)), [], 'the dead ones’ files are gone');
});

t.test('shims made ahead hold the last image’s rootfs mounted: a container of it takes the folder, one of another image gets its own mount', async (t) => {
  const { img, rt, launcher } = await pooledRuntime(t, 'premount-node');
  const shimsDir = join(rt.opts.dataDir, 'shims');
  const roots = () => readdirSync(shimsDir).filter((f) => f.endsWith('.root'));
  const mounted = (path: string) => mountedFor(launcher.pid!, realpathSync(dirname(path)) + '/' + basename(path));
  t.same(roots(), [], 'before any container, no image to hold');
  // the first container of the image: the node learns which image it runs
  const a = await run(rt, img, { command: ['/bin/true'] }, true);
  t.equal((await rt.wait(a.podUid, 'main')).exitCode, 0);
  await waitFor(() => launcher.idleShims === 2 && roots().length === 1, 'the pool full again, one shim holding the image');
  const held = roots()[0]!;
  t.ok(mounted(join(shimsDir, held, 'rootfs')), 'its rootfs mounted in the pool');
  // a container of that image takes it: the folder is the container's, its mount with it
  const b = await run(rt, img, { command: ['/bin/sh', '-c', 'echo hi > /made; cat /etc/hostname; sleep 60'] }, true);
  t.teardown(() => rt.removeSandbox(b.podUid).catch(() => undefined));
  const d = rt.dir(rt.containerId(b.podUid, 'main'));
  t.notOk(existsSync(join(shimsDir, held)), 'the held folder left the pool');
  t.ok(mounted(join(d, 'rootfs')), 'the container’s rootfs is the mount it held');
  await waitFor(() => existsSync(join(d, 'upper', 'made')), 'the container writes into its own upper folder');
  // (its output reaches the log through the shim's logger: looked at until it is there)
  const out = await waitFor(async () => ((await rt.logs(b.podUid, 'main')).stdout.includes('\n') ? (await rt.logs(b.podUid, 'main')).stdout : undefined), 'its output');
  t.equal(out, `${b.podName}\n`, 'it runs as any container');
  await rt.stop(b.podUid, 'main', 1);
  await rt.wait(b.podUid, 'main');
  t.notOk(mounted(join(d, 'rootfs')), 'unmounted when it ended');
  // another image: a shim that holds this one unmounts it and mounts the other
  await waitFor(() => launcher.idleShims === 2 && roots().length >= 1, 'the pool full again');
  const other = join(img.dir, 'other-image');
  execFileSync('cp', ['-a', img.lowerDir, other]);
  t.teardown(() => execFileSync('rm', ['-rf', other]));
  const podUid = 'premount-other';
  rt.track(podUid, 'main');
  const sb = rt.ensureSandbox(podUid, 'pod-other', 'default');
  t.teardown(() => rt.removeSandbox(podUid).catch(() => undefined));
  const c = { name: 'main', image: 'busybox:other', command: ['/bin/sh', '-c', 'echo other'] } as Container;
  await rt.run({ podUid, podName: 'pod-other', namespace: 'default', container: c, image: img.image.config.config, lowerDir: other, sandbox: sb });
  t.equal((await rt.wait(podUid, 'main')).exitCode, 0, 'the other image runs');
  t.equal((await rt.logs(podUid, 'main')).stdout, 'other\n');
  // the pool's folders that lost their mount are removed at the next fill
  await waitFor(() => launcher.idleShims === 2, 'the pool full again');
  for (const r of roots()) t.ok(mounted(join(shimsDir, r, 'rootfs')), `${r}: every folder left in the pool holds a mount`);
  // an image folder made again under the same name is not the one held
  execFileSync('rm', ['-rf', other]);
  execFileSync('cp', ['-a', img.lowerDir, other]);
  t.notOk(launcher.premounted(other), 'a held mount of a folder since replaced is not handed out');
  // the next fill ends the shims that held it (they unmount it) and makes new ones of the folder as it is now
  rt.fillPool();
  await waitFor(() => launcher.idleShims === 2, 'the pool full again');
  const fresh = await waitFor(() => launcher.premounted(other), 'a shim holding the new folder');
  launcher.unclaim(fresh);
  const heldMounts = () => readFileSync(`/proc/${launcher.pid}/mountinfo`, 'utf8').split('\n').filter((l) => l.includes(realpathSync(shimsDir))).length;
  t.equal(await waitFor(() => (heldMounts() === 2 ? 2 : 0), 'the old shims’ mounts gone'), 2, 'two mounts held in the pool, none left of the replaced folder');
});

/** True when `path` is a mount point where the launcher (and so crun) lives: its own mount namespace. */
function mountedFor(launcherPid: number, path: string): boolean {
  return readFileSync(`/proc/${launcherPid}/mountinfo`, 'utf8').split('\n').some((l) => l.split(' ')[4] === path);
}

t.test('a pooled sandbox that fails (its network, here) is made again a while later: the pool does not stay short', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'poolretry-node');
  // the node's network, as the pool logic above it sees it: its first two answers are failures
  // (a CNI call refused on a busy node), then addresses
  let adds = 0;
  const given = new Set<string>();
  rt.network = {
    add: async (id: string) => {
      if (++adds <= 2) throw new Error('CNI: resource temporarily unavailable');
      given.add(id);
      return { ip: `10.250.0.${adds}`, cidr: `10.250.0.${adds}/24` };
    },
    del: async (id: string) => void given.delete(id),
  } as unknown as Cni;
  const poolDir = join(rt.opts.dataDir, 'pool');
  const files = (ext: string) => (existsSync(poolDir) ? readdirSync(poolDir) : []).filter((f) => f.endsWith(ext));
  rt.fillPool();
  await waitFor(() => adds >= 2, 'the two first attempts made');
  await waitFor(() => files('.ip').length === 2, 'two pooled sandboxes on the network, made again after the failures', 15_000);
  t.equal(adds, 4, 'two failed, two made after them');
  const pids = files('.pid').map((f) => Number(readFileSync(join(poolDir, f), 'utf8')));
  t.equal(pids.length, 2, 'two sandboxes in the pool, no more');
  t.ok(pids.every(running), 'both running');
  t.same(files('.ip').map((f) => readFileSync(join(poolDir, f), 'utf8').trim()).sort(), ['10.250.0.3', '10.250.0.4'], 'with the addresses of the later attempts');
  await rt.drainPool();
  t.equal(given.size, 0, 'drained: their addresses given back');
  t.ok(pids.every((p) => !running(p)), 'and the sandboxes gone');
});

t.test('a pool drained while its sandboxes are being made leaves none running: each is ended as it becomes ready (its exec of sleep under way)', async (t) => {
  const img = await busyboxImage(t);
  const poolPids = (rt: ReturnType<typeof testRuntime>) => {
    const d = join(rt.opts.dataDir, 'pool');
    return (existsSync(d) ? readdirSync(d) : []).filter((f) => f.endsWith('.pid'));
  };
  // every process of these runtimes' launchers (sandboxes inherit its TICK, a file in the runtime's folder)
  const ours = () =>
    readdirSync('/proc')
      .filter((f) => /^\d+$/.test(f))
      .map(Number)
      .filter((pid) => running(pid) && readIfExists(`/proc/${pid}/environ`).split('\0').some((e) => e.startsWith('TICK=') && e.includes(`${img.dir}/agent-pooldrain`)));
  t.teardown(() => {
    for (const p of ours()) process.kill(p, 'SIGKILL');
  });
  for (let i = 0; i < 12; i++) {
    const rt = testRuntime(t, img.dir, `pooldrain${i}-node`);
    rt.fillPool();
    // drained as soon as a sandbox has written its pid file: it says ready and execs sleep next
    await waitFor(() => poolPids(rt).length > 0, 'a pooled sandbox on its way', 10_000, 0);
    await rt.drainPool();
    rt.release();
  }
  // (given a moment: a kill takes effect, a launcher told to close has ended its shims)
  const left = await waitFor(() => {
    const l = ours();
    return l.length === 0 ? [] : undefined;
  }, 'every sandbox of the drained pools ended', 3000).catch(() => ours());
  t.same(left.map((p) => readIfExists(`/proc/${p}/cmdline`).split('\0').join(' ').trim()), [], 'no process of theirs left');
});

t.test('a rootfs that cannot be mounted: the container cannot run, with the mount’s own words, from a fresh shim and from one made ahead', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'nomount-node');
  for (const pooled of [false, true]) {
    if (pooled) {
      rt.fillPool();
      await waitFor(() => rt.launcher().idleShims === 2, 'two shims ready');
    }
    const ready = idleShims(rt);
    const podUid = `nomount${pooled ? 'p' : 'f'}`;
    rt.track(podUid, 'main');
    const sb = rt.ensureSandbox(podUid, `pod-${podUid}`, 'default');
    t.teardown(() => rt.removeSandbox(podUid).catch(() => undefined));
    const c = { name: 'main', image: 'busybox:test', command: ['/bin/true'] } as Container;
    const start = rt.run({ podUid, podName: `pod-${podUid}`, namespace: 'default', container: c, image: img.image.config.config, lowerDir: join(img.dir, 'no-such-image'), sandbox: sb });
    await t.rejects(start, /mount/, `${pooled ? 'made ahead' : 'fresh'}: the start fails with the mount’s message`);
    const e = await rt.wait(podUid, 'main');
    t.equal(e.reason, 'ContainerCannotRun');
    t.equal(readFileSync(join(rt.dir(rt.containerId(podUid, 'main')), 'exitcode'), 'utf8').trim(), '90', 'the shim says the mount failed (not crun’s status)');
    t.notOk(existsSync(join(rt.dir(rt.containerId(podUid, 'main')), 'pid')), 'crun never ran');
    const shim = Number(readFileSync(join(rt.dir(rt.containerId(podUid, 'main')), 'shim.pid'), 'utf8'));
    t.equal(ready.includes(shim), pooled, pooled ? 'its shim was one made ahead' : 'its shim was a fresh one');
  }
});

t.test('shims made ahead end with their launcher: told to when it closes, by themselves when it dies', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'shimquit-node');
  rt.fillPool();
  await waitFor(() => rt.launcher().idleShims === 2, 'two shims ready');
  const first = idleShims(rt);
  const family = (pids: number[]) => pids.flatMap((p) => [p, ...children(p)]);
  const firstAll = family(first);
  t.equal(firstAll.length, 8, 'two shims, each with two loggers and a runner');
  rt.launcher().close();
  await waitFor(() => firstAll.every((pid) => !running(pid)), 'told to quit: shims, loggers and runners gone', 5000);
  t.same(idleShims(rt), [], 'their files removed');

  // a new launcher with new shims; then it is killed: they see it gone within about a second
  rt.fillPool();
  await waitFor(() => rt.launcher().idleShims === 2, 'two new shims ready');
  const second = family(idleShims(rt));
  process.kill(rt.launcher().pid!, 'SIGKILL');
  await waitFor(() => second.every((pid) => !running(pid)), 'they quit by themselves', 5000);
});

t.test('without busybox the shims and sandboxes use util-linux and the same steps', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'nobb-node', { busybox: '' });
  const p = await run(rt, img, { command: ['/bin/sh', '-c', 'echo hello; hostname'] }, true);
  t.teardown(() => rt.removeSandbox(p.podUid));
  t.equal((await rt.wait(p.podUid, 'main')).exitCode, 0);
  t.equal((await rt.logs(p.podUid, 'main')).stdout, `hello\n${p.podName}\n`);
  const { pid } = await rt.ensureSandbox(p.podUid, 'x', 'default');
  t.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /^sleep\0/, 'the sandbox is util-linux sleep');
  await waitFor(() => existsSync(`/proc/${pid}`), 'sandbox alive');
});

t.test('short commands run as launcher jobs: input, env, output, status, a deadline; crun exec goes that way', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'cmd-node');
  const r = await rt.runCommand(['/bin/sh', '-c', 'cat; echo "$FOO" >&2; exit 3'], { input: 'from stdin', env: { FOO: 'bar' } });
  t.same(r, { stdout: 'from stdin', stderr: 'bar\n', exitCode: 3 });
  const t0 = Date.now();
  const killed = await rt.runCommand(['/bin/sleep', '30'], { timeoutMs: 300 });
  t.equal(killed.exitCode, 137, 'killed at its deadline');
  t.ok(Date.now() - t0 < 10_000, 'long before the command would have ended');
  t.same(readdirSync(join(img.dir, 'agent-cmd-node', 'tmp')), [], 'its files are gone');

  const p = await run(rt, img, { command: ['/bin/sleep', '60'] });
  const exec = rt.exec(p.podUid, 'main', ['/bin/sh', '-c', 'sleep 0.5; echo inside; exit 4']);
  await new Promise((r) => setTimeout(r, 200));
  t.same(children(process.pid), [rt.launcher().pid], 'while crun exec runs, the only child of this process is the launcher');
  t.same(await exec, { stdout: 'inside\n', stderr: '', exitCode: 4 });
});

t.test('a command that ends before the launcher has said it started it is answered all the same', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'race-node');
  // hundreds of instant commands at once: some end, and say so, before the launcher's own
  // `spawned` line for them (before the fix, 2–3% of them were never answered)
  const n = 400;
  let answered = 0;
  const all = Promise.all(Array.from({ length: n }, () => rt.runCommand(['/bin/true']).then((r) => (answered++, r.exitCode))));
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), 20_000)));
  const codes = await Promise.race([all, late]);
  clearTimeout(timer);
  t.not(codes, 'late', `every command answered (${answered} of ${n} within 20 s)`);
  if (codes !== 'late') t.ok(codes.every((c) => c === 0), 'each with its status');
  t.same(readdirSync(join(img.dir, 'agent-race-node', 'tmp')), [], 'their files are gone');
});

t.test('tcpSocket and httpGet probes run as launcher jobs, inside the pod’s network namespace', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'probe-node');
  const web = await run(rt, img, { command: ['/bin/sh', '-c', 'mkdir -p /www && echo hi > /www/ok && exec httpd -f -p 8080 -h /www'] }, true);
  // a listener that takes the connection and never answers: the probe's own timeout ends it
  const mute = await run(rt, img, { command: ['/bin/sh', '-c', 'sleep 3600 | nc -l -p 9000'] }, true);
  t.teardown(async () => {
    for (const p of [web, mute]) await rt.removeSandbox(p.podUid).catch(() => undefined);
  });
  const ran: string[][] = [];
  const runner: CommandRunner = (argv, o) => {
    ran.push(argv);
    return rt.runCommand(argv, o);
  };
  const webPid = (await rt.ensureSandbox(web.podUid, web.podName, 'default')).pid;
  const mutePid = (await rt.ensureSandbox(mute.podUid, mute.podName, 'default')).pid;
  const c = { name: 'main', image: 'busybox:test', ports: [{ name: 'http', containerPort: 8080 }] } as Container;
  const probe = (pid: number, p: Probe) => netProbe(pid, c, p, 1000, runner);
  await waitFor(async () => (await probe(webPid, { tcpSocket: { port: 8080 } })).ok, 'httpd listening');
  t.same(await probe(webPid, { tcpSocket: { port: 'http' } }), { ok: true }, 'tcpSocket to a named port');
  t.same(await probe(webPid, { tcpSocket: { port: 8081 } }), { ok: false, message: 'dial tcp 127.0.0.1:8081: connection refused' });
  t.same(await probe(webPid, { httpGet: { path: '/ok', port: 8080 } }), { ok: true }, 'httpGet 200');
  t.same(await probe(webPid, { httpGet: { path: '/missing', port: 8080 } }), { ok: false, message: 'HTTP probe failed with statuscode: 404' });
  t.same(await probe(mutePid, { tcpSocket: { port: 8080 } }), { ok: false, message: 'dial tcp 127.0.0.1:8080: connection refused' }, 'each pod has its own network: 8080 is not open in the other one');

  // nc takes one connection only: wait for its listening socket (port 0x2328, state 0A) instead of probing it
  await waitFor(() => /:2328 [0-9A-F]+:0000 0A /.test(readFileSync(`/proc/${mutePid}/net/tcp`, 'utf8') + readFileSync(`/proc/${mutePid}/net/tcp6`, 'utf8')), 'nc listening');
  const slow = probe(mutePid, { httpGet: { path: '/', port: 9000 } });
  await new Promise((r) => setTimeout(r, 300));
  t.same(children(process.pid), [rt.launcher().pid], 'while a probe waits, the only child of this process is the launcher');
  t.same(await slow, { ok: false, message: 'Get "http://127.0.0.1:9000/": timeout' }, 'no answer within timeoutSeconds');
  t.ok(ran.length >= 7 && ran.every((a) => a[0] === 'nsenter'), 'every probe went through the runner');
});

t.test('crun runs from a read-only binding of itself, made once in the launcher’s own mount namespace, not the host’s', async (t) => {
  const img = await busyboxImage(t);
  const rt = testRuntime(t, img.dir, 'ro-node');
  const a = await run(rt, img, { command: ['/bin/sleep', '60'] }, true);
  const launcher = rt.launcher().pid!;
  const crunPath = rt.crun.binary;
  const roMount = (pid: number | 'self') =>
    readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
      .split('\n')
      .find((l) => l.split(' ')[4] === crunPath);
  const inLauncher = roMount(launcher);
  t.ok(inLauncher, 'crun’s path is a mount point in the launcher’s namespace');
  t.match(inLauncher!.split(' ')[5], /^ro\b/, 'mounted read-only');
  t.notOk(roMount('self'), 'the host’s (this process’s) mount table is untouched');
  t.equal((await rt.runCommand(['/bin/sh', '-c', 'echo "$_LIBCONTAINER_CLONED_BINARY"'])).stdout.trim(), '1', 'crun is told it runs from its read-only copy');
  // what the protection is for: nothing run there can change crun's binary (a chmod to the mode it
  // has already, so that nothing changes should the test fail)
  const mode = (statSync(crunPath).mode & 0o7777).toString(8);
  const w = await rt.runCommand(['chmod', mode, crunPath]);
  t.not(w.exitCode, 0, 'crun’s binary cannot be changed where it runs');
  t.match(w.stderr, /Read-only file system/);
  // containers start and stop as before, and a second launcher does not stack another mount
  await rt.stop(a.podUid, a.name, 100);
  const b = await run(rt, img, { command: ['/bin/sh', '-c', 'echo from-b'] }, true);
  t.equal((await rt.wait(b.podUid, b.name)).exitCode, 0);
  t.equal(readFileSync(`/proc/${launcher}/mountinfo`, 'utf8').split('\n').filter((l) => l.split(' ')[4] === crunPath).length, 1, 'one binding');
});
