/**
 * The agent end to end: a real nats-server, real `troupe agent` processes, real crun. Pods are run
 * and deleted through the bus (the typed client on the node's subjects); two agents share the
 * machine without touching each other; nothing is left afterwards.
 */
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ActorClient, Crun, ImageStore, heartbeatBody, statsBody, type EventBody, type PodStatus } from '../../index.js';
import { tempDir, waitFor, withBus, withNats, type Teardown } from '../helpers/nats.js';
import { busyboxRootfs, tarDir } from '../helpers/tar.js';
import { podCgroupsLeft, runCli as runCliIn, startAgent as startAgentProcess, waitNodeEmpty } from '../helpers/agent.js';

const startAgent = (t: Teardown, url: string, node: string, dataDir: string) => startAgentProcess(t, url, node, dataDir, ['--backoff-base', '100', '--backoff-cap', '400', '--stats-interval', '300']);

async function withImage(t: Teardown, dataDir: string): Promise<void> {
  const src = tempDir(t, 'troupe-src-');
  const store = new ImageStore(join(dataDir, 'images'));
  await store.importRootfs(tarDir(busyboxRootfs(join(src, 'root')), join(src, 'rootfs.tar')), 'busybox:test');
}

/** A nats-server, a bus to it, and an agent folder whose store holds busybox:test. */
async function withNode(t: Teardown) {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const dir = tempDir(t, 'troupe-agent-');
  await withImage(t, dir);
  return { nats, bus, dir };
}

function phases(events: EventBody[]): string[] {
  return events.map((e) => (e.data as PodStatus).phase).filter((p, i, a) => a[i - 1] !== p);
}

t.test('pods over the bus: run, crash-loop with backoff, delete; two agents side by side; nothing left', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  bus.codec.types.register('hb', heartbeatBody);
  const dirs = { n1: tempDir(t, 'troupe-agent-'), n2: tempDir(t, 'troupe-agent-') };
  await withImage(t, dirs.n1);
  await withImage(t, dirs.n2);
  const beats: string[] = [];
  const hb = bus.subscribe<{ node: string }>(bus.subjects.nodeHbAll(), (env) => beats.push(env.body.node));
  t.teardown(() => hb.unsubscribe());
  const a1 = await startAgent(t, nats.url, 'n1', dirs.n1);
  await startAgent(t, nats.url, 'n2', dirs.n2);
  await waitFor(() => beats.includes('n1') && beats.includes('n2'), 'heartbeats from both nodes');

  const n1 = new ActorClient(bus, 'pod', 'node.n1');
  const n2 = new ActorClient(bus, 'pod', 'node.n2');
  const events: EventBody[] = [];
  const stopWatch = new AbortController();
  void (async () => {
    for await (const e of n1.watch('default', undefined, { signal: stopWatch.signal })) events.push(e);
  })();
  t.teardown(() => stopWatch.abort());
  await n1.ready();

  const web = { terminationGracePeriodSeconds: 1, containers: [{ name: 'web', image: 'busybox:test', command: ['/bin/sh', '-c', 'echo serving; exec sleep 300'] }] };
  const first = (await n1.send('default', 'web', { type: 'run', uid: 'uid-web', spec: web })) as unknown as PodStatus;
  t.ok(['Pending', 'Running'].includes(first.phase), `the reply carries the status (${first.phase})`);
  await waitFor(() => events.some((e) => e.name === 'web' && (e.data as PodStatus).phase === 'Running'), 'web Running');
  // the same pod name on the other node is another pod: no collision of ids, cgroups or folders
  await n2.send('default', 'web', { type: 'run', uid: 'uid-web', spec: web });
  await waitFor(async () => ((await n2.send('default', 'web', { type: 'get' })) as unknown as PodStatus).phase === 'Running', 'web Running on n2 too');

  const crash = { restartPolicy: 'Always', containers: [{ name: 'c', image: 'busybox:test', command: ['/bin/sh', '-c', 'exit 3'] }] };
  await n1.send('default', 'crasher', { type: 'run', uid: 'uid-crash', spec: crash });
  const looping = await waitFor(async () => {
    const st = (await n1.send('default', 'crasher', { type: 'get' })) as unknown as PodStatus;
    return st.containerStatuses[0]!.restartCount >= 2 ? st : undefined;
  }, 'two restarts');
  t.match(looping.containerStatuses[0]!.lastState, { terminated: { exitCode: 3, reason: 'Error' } }, 'the last termination is kept, with its exit code');
  t.ok(
    events.some((e) => e.name === 'crasher' && (e.data as PodStatus).containerStatuses[0]?.state && 'waiting' in (e.data as PodStatus).containerStatuses[0]!.state && ((e.data as PodStatus).containerStatuses[0]!.state as { waiting: { reason: string } }).waiting.reason === 'CrashLoopBackOff'),
    'CrashLoopBackOff was published',
  );

  const missing = { containers: [{ name: 'x', image: 'nope:1' }] };
  await n1.send('default', 'missing', { type: 'run', uid: 'uid-missing', spec: missing });
  const pullErr = await waitFor(async () => {
    const st = (await n1.send('default', 'missing', { type: 'get' })) as unknown as PodStatus;
    const s = st.containerStatuses[0]!.state;
    return 'waiting' in s && ['ErrImagePull', 'ImagePullBackOff'].includes(s.waiting.reason) ? s : undefined;
  }, 'ErrImagePull');
  t.match(pullErr, { waiting: { message: /image "nope:1" is neither on this node nor in the cluster; import it with `troupe image import`/ } });
  t.same(await n1.send('default', 'web', { type: 'get' }).then((s) => (s as unknown as PodStatus).phase), 'Running', 'the agent kept serving');

  for (const [client, name] of [[n1, 'web'], [n1, 'crasher'], [n1, 'missing'], [n2, 'web']] as const) await client.send('default', name, { type: 'delete' });
  await waitFor(() => events.some((e) => e.name === 'web' && e.status === 'done'), 'web deleted on n1');
  t.same(phases(events.filter((e) => e.name === 'web')).slice(-3), ['Running', 'Terminating', 'Deleted']);
  for (const [node, dir] of Object.entries(dirs)) {
    const crun = new Crun(join(dir, 'runtime', 'crun'));
    await waitFor(async () => (await crun.list()).length === 0, `no crun container on ${node}`);
    await waitFor(async () => (await podCgroupsLeft(node)).length === 0, `no pod cgroup of ${node} in any hierarchy`);
    t.same(readdirSync(join(dir, 'runtime', 'containers')), [], `no container folder on ${node}`);
  }
  t.equal(a1.exitCode, null, 'agent n1 still running');
});

t.test('logs and exec over the bus and through the CLI; --previous after a restart', async (t) => {
  const { nats, bus, dir } = await withNode(t);
  await startAgent(t, nats.url, 'n1', dir);
  const pods = new ActorClient(bus, 'pod', 'node.n1');
  const cliEnv = { ...process.env, TROUPE_SERVER: nats.url, TROUPE_HOME: tempDir(t, 'troupe-home-') };
  const runCli = (args: string[]) => runCliIn(cliEnv, args);

  // a container that prints, stays up 5 s and exits 1, again and again: this agent's backoff is
  // 100–400 ms, so each restart moves the output to --previous and starts it afresh; the checks
  // below are made within the second run's 5 s, while nothing moves
  const script = 'echo "run $(cat /tmp/runs 2>/dev/null)"; echo oops >&2; for i in 1 2 3; do echo line-$i; done; sleep 5; exit 1';
  await pods.send('default', 'talker', { type: 'run', uid: 'uid-talker', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image: 'busybox:test', command: ['/bin/sh', '-c', script] }] } });
  await waitFor(
    async () => {
      const c = ((await pods.send('default', 'talker', { type: 'get' })) as unknown as PodStatus).containerStatuses[0]!;
      return c.restartCount >= 1 && 'running' in c.state;
    },
    'the second run',
    30_000,
    5,
  );
  // once the second run has said all it says, its last two lines are known
  await waitFor(async () => (await runCli(['logs', 'talker'])).stdout === 'run \nline-1\nline-2\nline-3\n', "the second run's output, whole", 10_000, 20);
  const tail = await runCli(['logs', 'talker', '--tail', '2']);
  t.equal(tail.code, 0, tail.stderr);
  t.equal(tail.stdout, 'line-2\nline-3\n', '--tail 2 gives the last lines');
  const prev = await runCli(['logs', 'talker', '--previous']);
  t.equal(prev.stdout, 'run \nline-1\nline-2\nline-3\n', 'the previous instance’s output is kept');
  t.equal(prev.stderr, 'oops\n');
  const stamped = await runCli(['logs', 'talker', '--previous', '--timestamps', '--tail', '2']);
  t.match(stamped.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line-2\n\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line-3\n$/, '--timestamps prefixes RFC 3339 times');

  await pods.send('default', 'shell', { type: 'run', uid: 'uid-shell', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'sh', image: 'busybox:test', command: ['/bin/sh', '-c', 'echo hello > /tmp/greeting; exec sleep 300'] }] } });
  await waitFor(async () => ((await pods.send('default', 'shell', { type: 'get' })) as unknown as PodStatus).phase === 'Running', 'shell Running');
  await waitFor(async () => (await runCli(['exec', 'shell', '--', 'cat', '/tmp/greeting'])).stdout === 'hello\n', 'exec sees the container’s files');
  // usage stats from the cgroups, published by the node
  bus.codec.types.register('stats', statsBody);
  const stats: { containers: { pod: string; memoryBytes: number; cpuUsageNs: number; pids: number }[] }[] = [];
  const sub = bus.subscribe<(typeof stats)[number]>(bus.subjects.nodeStats('n1'), (env) => stats.push(env.body));
  t.teardown(() => sub.unsubscribe());
  const shellStats = await waitFor(() => stats.flatMap((s) => s.containers).find((c) => c.pod === 'shell'), 'stats for the shell pod');
  t.ok(shellStats.memoryBytes > 0 && shellStats.cpuUsageNs > 0 && shellStats.pids >= 1, `usage read from the cgroups (${shellStats.memoryBytes} bytes, ${shellStats.cpuUsageNs} ns, ${shellStats.pids} pids)`);
  const ex = await runCli(['exec', 'shell', '--', '/bin/sh', '-c', 'echo out; echo err >&2; hostname; exit 7']);
  t.equal(ex.code, 7, 'exec exits with the command’s exit code');
  t.equal(ex.stdout, 'out\nshell\n');
  t.equal(ex.stderr, 'err\n');
  const missing = await runCli(['logs', 'nosuchpod']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /pod default\/nosuchpod was not found on any node \(n1\)/);
  const wrongC = await runCli(['exec', 'shell', '-c', 'nope', '--', 'true']);
  t.match(wrongC.stderr, /container "nope" is not valid for pod default\/shell; choose one of: sh/);
  const usage = await runCli(['exec', 'shell']);
  t.equal(usage.code, 2);
  for (const name of ['talker', 'shell']) await pods.send('default', name, { type: 'delete' });
  await waitNodeEmpty(dir, 'n1');
});

t.test('kill -9 of the agent: running containers are adopted (no duplicate), exits meanwhile reported with their real status', async (t) => {
  const { nats, bus, dir } = await withNode(t);
  const crun = new Crun(join(dir, 'runtime', 'crun'));
  const first = await startAgent(t, nats.url, 'n1', dir);
  const pods = new ActorClient(bus, 'pod', 'node.n1');
  const status = async (name: string) => (await pods.send('default', name, { type: 'get' })) as unknown as PodStatus;
  await pods.send('default', 'keeper', { type: 'run', uid: 'uid-keeper', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'k', image: 'busybox:test', command: ['/bin/sleep', '300'] }] } });
  await pods.send('default', 'ender', { type: 'run', uid: 'uid-ender', spec: { restartPolicy: 'Never', containers: [{ name: 'e', image: 'busybox:test', command: ['/bin/sh', '-c', 'sleep 2; exit 5'] }] } });
  await waitFor(async () => (await status('keeper')).phase === 'Running' && (await status('ender')).phase === 'Running', 'both Running');
  const isKeeper = (c: { id: string }) => c.id.includes('uid-keeper');
  const before = await crun.list();
  const keeperPid = before.find(isKeeper)!.pid;

  first.kill('SIGKILL');
  await new Promise((r) => first.once('exit', r));
  // the ender exits (code 5) while no agent runs
  await waitFor(() => existsSync(join(dir, 'runtime', 'containers', 'n1.uid-ender.e', 'exitcode')), 'the ender to exit while the agent is down');

  await startAgent(t, nats.url, 'n1', dir);
  const keeper = await waitFor(async () => {
    const st = await status('keeper');
    // (what it shows instead goes into the timeout's message)
    if (st.phase !== 'Running') throw new Error(`phase ${st.phase}, containers ${JSON.stringify(st.containerStatuses)}`);
    return st;
  }, 'keeper adopted');
  t.equal(keeper.containerStatuses[0]!.restartCount, 0, 'not restarted');
  const after = await crun.list();
  t.equal(after.filter(isKeeper).length, 1, 'no duplicate container');
  t.equal(after.find(isKeeper)!.pid, keeperPid, 'the same process kept running');
  const { readFileSync } = await import('node:fs');
  const sandboxPid = Number(readFileSync(join(dir, 'runtime', 'sandboxes', 'uid-keeper.pid'), 'utf8'));
  t.ok(existsSync(`/proc/${sandboxPid}`), 'the pod’s sandbox survived the agent and is reused');
  const ender = await waitFor(async () => {
    const st = await status('ender');
    return st.phase === 'Failed' ? st : undefined;
  }, 'ender reported');
  t.match(ender.containerStatuses[0]!.state, { terminated: { exitCode: 5, reason: 'Error' } }, 'the real exit status, collected while the agent was down');

  for (const name of ['keeper', 'ender']) await pods.send('default', name, { type: 'delete' });
  await waitNodeEmpty(dir, 'n1');
});

t.test('SIGTERM: the agent exits though its containers run on, and the next agent adopts them', async (t) => {
  const { nats, bus, dir } = await withNode(t);
  const crun = new Crun(join(dir, 'runtime', 'crun'));
  const first = await startAgent(t, nats.url, 'n1', dir);
  const pods = new ActorClient(bus, 'pod', 'node.n1');
  const status = async (name: string) => (await pods.send('default', name, { type: 'get' })) as unknown as PodStatus;
  await pods.send('default', 'stayer', { type: 'run', uid: 'uid-stayer', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 's', image: 'busybox:test', command: ['/bin/sleep', '300'] }] } });
  await waitFor(async () => (await status('stayer')).phase === 'Running', 'Running');
  const pid = (await crun.list()).find((c) => c.id.includes('uid-stayer'))!.pid;

  first.kill('SIGTERM');
  const code = await Promise.race([
    new Promise<number | null>((r) => first.once('exit', (c) => r(c))),
    new Promise<string>((r) => setTimeout(() => r('still running 20 s after SIGTERM'), 20_000).unref()),
  ]);
  t.equal(code, 0, 'the agent exited cleanly');
  t.equal((await crun.list()).find((c) => c.id.includes('uid-stayer'))?.pid, pid, 'the container runs on');

  await startAgent(t, nats.url, 'n1', dir);
  const st = await waitFor(async () => {
    const s = await status('stayer');
    return s.phase === 'Running' ? s : undefined;
  }, 'adopted');
  t.equal(st.containerStatuses[0]!.restartCount, 0, 'adopted, not restarted');
  t.equal((await crun.list()).filter((c) => c.id.includes('uid-stayer')).length, 1, 'no duplicate');
  await pods.send('default', 'stayer', { type: 'delete' });
  await waitNodeEmpty(dir, 'n1');
});

t.test('containers of one pod share network, IPC and UTS namespaces (a sandbox holds them), not PID', async (t) => {
  const { nats, bus, dir } = await withNode(t);
  await startAgent(t, nats.url, 'n1', dir);
  const pods = new ActorClient(bus, 'pod', 'node.n1');
  await pods.send('default', 'duo', {
    type: 'run',
    uid: 'uid-duo',
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        { name: 'server', image: 'busybox:test', command: ['/bin/sh', '-c', 'mkdir -p /www && hostname > /www/name && exec httpd -f -p 127.0.0.1:8080 -h /www'] },
        { name: 'client', image: 'busybox:test', command: ['/bin/sh', '-c', 'while ! wget -q -O /tmp/got http://127.0.0.1:8080/name; do sleep 0.2; done; cat /tmp/got; exec sleep 300'] },
      ],
    },
  });
  const ns = async (container: string, kind: string) =>
    ((await bus.request<{ stdout: string }>(bus.subjects.nodeCmd('n1'), 'cmd', { type: 'exec', namespace: 'default', pod: 'duo', container, command: ['readlink', `/proc/self/ns/${kind}`] })).body.stdout).trim();
  await waitFor(async () => ((await pods.send('default', 'duo', { type: 'get' })) as unknown as PodStatus).containerStatuses.every((c) => c.started), 'both containers running');
  const logs = await waitFor(async () => {
    const r = await bus.request<{ stdout: string }>(bus.subjects.nodeCmd('n1'), 'cmd', { type: 'logs', namespace: 'default', pod: 'duo', container: 'client' });
    return r.body.stdout || undefined;
  }, 'the client to reach the server over 127.0.0.1');
  t.equal(logs, 'duo\n', 'the client reached the server on loopback, and both see the pod’s hostname');
  for (const kind of ['net', 'ipc', 'uts']) t.equal(await ns('server', kind), await ns('client', kind), `${kind} namespace shared`);
  t.not(await ns('server', 'pid'), await ns('client', 'pid'), 'pid namespaces stay apart');
  await pods.send('default', 'duo', { type: 'delete' });
  await waitFor(async () => (await new Crun(join(dir, 'runtime', 'crun')).list()).length === 0, 'containers and sandbox gone');
  await waitFor(() => readdirSync(join(dir, 'runtime', 'containers')).length === 0, 'no container folder left');
  await waitFor(() => readdirSync(join(dir, 'runtime', 'sandboxes')).length === 0, 'the sandbox gone with the pod');
});

t.test('a container whose shim was killed is still removed whole: its overlay unmounted in the agent’s namespace, its folder gone', async (t) => {
  const { nats, bus, dir } = await withNode(t);
  await startAgent(t, nats.url, 'n1', dir);
  const pods = new ActorClient(bus, 'pod', 'node.n1');
  const events: EventBody[] = [];
  const stopWatch = new AbortController();
  void (async () => {
    for await (const e of pods.watch('default', 'lone', { signal: stopWatch.signal })) events.push(e);
  })();
  t.teardown(() => stopWatch.abort());
  await pods.ready();
  await pods.send('default', 'lone', { type: 'run', uid: 'uid-lone', spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'c', image: 'busybox:test', command: ['/bin/sleep', '300'] }] } });
  await waitFor(() => events.some((e) => (e.data as PodStatus).phase === 'Running'), 'lone Running');
  const folder = join(dir, 'runtime', 'containers', 'n1.uid-lone.c');
  const rootfs = realpathSync(join(folder, 'rootfs'));
  const shim = Number(readFileSync(join(folder, 'shim.pid'), 'utf8'));
  // the shim is a job of the launcher, which lives in the agent's mount namespace
  const launcher = Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${shim}/status`, 'utf8'))![1]);
  const mounted = () => readFileSync(`/proc/${launcher}/mountinfo`, 'utf8').split('\n').some((l) => l.split(' ')[4] === rootfs);
  t.ok(mounted(), 'the overlay is mounted in the agent’s namespace while the container runs');
  process.kill(shim, 'SIGKILL');
  await pods.send('default', 'lone', { type: 'delete' });
  await waitFor(() => events.some((e) => e.status === 'done'), 'lone deleted', 30_000);
  t.notOk(mounted(), 'the removal unmounted what the killed shim could not');
  t.notOk(existsSync(folder), 'the container folder is gone');
  t.same(await new Crun(join(dir, 'runtime', 'crun')).list(), [], 'no crun container');
});
