/**
 * The user's story end to end, with real crun containers: `troupe up`, the example image built by
 * examples/build-myapp.sh, the seed's Deployment applied unchanged, then scale, a rolling update
 * watched at every step, rollback, kill -9 of the whole cluster and back, delete.
 */
import { execFile } from 'node:child_process';
import { readlinkSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { Bus, Informer, KvStore } from '../../actors/index.js';
import { Crun } from '../../node-agent/index.js';
import { kindInfo, type KObject } from '../../protocol/index.js';
import { killNodeLeftovers, removeBridge, runCli, waitNodeEmpty } from '../helpers/agent.js';
import { quiet } from '../helpers/cluster.js';
import { tempDir, waitFor } from '../helpers/nats.js';
import { startUp } from '../helpers/up.js';

t.setTimeout(300_000);

const examples = fileURLToPath(new URL('../../../examples/', import.meta.url));
const NODE = 'walk-node';

function readySet(pods: Iterable<KObject>): KObject[] {
  return [...pods].filter((p) => !p.metadata.deletionTimestamp && p.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True'));
}

t.test('apply the seed Deployment → isolated pods; scale, roll, undo, survive kill -9, delete', async (t) => {
  const dir = tempDir(t);
  const env = { ...process.env, TROUPE_HOME: join(dir, 'home') };
  const data = join(dir, 'data');
  const crun = new Crun(join(data, 'node', 'runtime', 'crun'));
  let up = await startUp(t, dir, ['--log-level', 'warn', '--cluster-cidr', '10.252.0.0/16'], NODE);
  t.teardown(async () => {
    // whatever happened, no container, sandbox, mount or cgroup of this node is left
    if (up.child.exitCode === null && up.child.signalCode === null) {
      up.child.kill('SIGTERM');
      await new Promise((r) => up.child.once('exit', r));
    }
    for (const c of await crun.list()) await crun.kill(c.id, 'SIGKILL').catch(() => undefined);
    await killNodeLeftovers(join(data, 'node', 'runtime'));
    await removeBridge(NODE);
  });
  const troupe = async (...args: string[]) => {
    const r = await runCli(env, args);
    if (r.code !== 0) throw new Error(`troupe ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const pods = async () => JSON.parse(await troupe('get', 'pods', '-o', 'json')).items as KObject[];

  await promisify(execFile)('bash', [join(examples, 'build-myapp.sh')], { env });
  await promisify(execFile)('bash', [join(examples, 'build-myapp.sh'), 'myapp:2.0'], { env });
  t.equal(await troupe('apply', '-f', join(examples, 'deployment.yaml')), 'deployment.apps/myapp-deployment created\n');
  await waitFor(async () => readySet(await pods()).length === 3, '3 pods Running and Ready', 30_000);
  t.equal(await troupe('apply', '-f', join(examples, 'deployment.yaml')), 'deployment.apps/myapp-deployment unchanged\n');

  // each pod is its own crun container with its own pid namespace, and serves its own name
  const containers = (await crun.list()).filter((c) => c.status === 'running');
  t.equal(containers.length, 3, 'three crun containers');
  const pidNs = new Set(containers.map((c) => readlinkSync(`/proc/${c.pid}/ns/pid`)));
  t.equal(pidNs.size, 3, 'three pid namespaces');
  t.notOk(pidNs.has(readlinkSync('/proc/self/ns/pid')), "none is the host's");
  const list = await pods();
  for (const p of list) {
    const r = await runCli(env, ['exec', p.metadata.name, '--', 'wget', '-qO-', 'http://127.0.0.1:8080/']);
    t.equal(r.stdout.trim(), `hello from ${p.metadata.name}`, `${p.metadata.name} serves its own hostname`);
    const ps = await runCli(env, ['exec', p.metadata.name, '--', 'ps', '-o', 'pid']);
    t.ok(ps.stdout.split('\n').some((l) => l.trim() === '1'), 'its processes start at pid 1');
  }
  const table = await troupe('get', 'pods');
  t.match(table, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\n/);
  t.match(table, /myapp-deployment-[a-z0-9]+-[a-z0-9]{5}\s+1\/1\s+Running\s+0\s+/);
  t.match(await troupe('get', 'deploy'), /myapp-deployment\s+3\/3\s+3\s+3\s+/);

  // scale 3 → 10 → 1: converges and leaves nothing behind
  t.equal(await troupe('scale', 'deploy', 'myapp-deployment', '--replicas', '10'), 'deployment.apps/myapp-deployment scaled\n');
  await waitFor(async () => readySet(await pods()).length === 10, '10 pods', 60_000);
  t.equal((await crun.list()).length, 10);
  await troupe('scale', 'deploy', 'myapp-deployment', '--replicas', '1');
  await waitFor(async () => (await pods()).length === 1 && (await crun.list()).length === 1 && readdirSync(join(data, 'node', 'runtime', 'sandboxes')).filter((f) => f.endsWith('.pid')).length === 1, 'one pod, one container, one sandbox', 60_000);
  t.equal(readdirSync(join(data, 'node', 'runtime', 'containers')).length, 1, 'the other containers’ folders are gone');

  // a rolling update, watched at every step: never fewer than replicas − maxUnavailable Ready
  await troupe('scale', 'deploy', 'myapp-deployment', '--replicas', '4');
  await waitFor(async () => readySet(await pods()).length === 4, '4 pods', 30_000);
  const bus = await Bus.connect({ servers: JSON.parse(readFileSync(join(dir, 'home', 'context.json'), 'utf8')).server, logger: quiet });
  const watch = new Informer(bus, await KvStore.open(bus, bus.subjects.stateBucket), kindInfo('Pod')!, quiet);
  let minReady = Infinity;
  let loaded = false;
  watch.on(() => {
    if (loaded) minReady = Math.min(minReady, readySet(watch.list()).length);
  });
  await watch.start();
  loaded = true;
  t.teardown(async () => {
    await watch.stop().catch(() => undefined);
    await bus.close().catch(() => undefined);
  });
  const v2 = join(dir, 'v2.yaml');
  writeFileSync(v2, readFileSync(join(examples, 'deployment.yaml'), 'utf8').replace('replicas: 3', 'replicas: 4').replace('myapp:1.0', 'myapp:2.0'));
  t.equal(await troupe('apply', '-f', v2), 'deployment.apps/myapp-deployment configured\n');
  const status = await runCli(env, ['rollout', 'status', 'deployment/myapp-deployment', '--timeout', '90s']);
  t.equal(status.code, 0, status.stderr);
  t.match(status.stdout, /deployment "myapp-deployment" successfully rolled out\n$/);
  t.ok(minReady >= 3, `at least 3 of 4 Ready throughout the rollout (min ${minReady})`);
  await watch.stop();
  await bus.close();
  t.ok((await pods()).every((p) => p.spec.containers[0].image === 'myapp:2.0'));
  t.match(await troupe('rollout', 'history', 'deployment/myapp-deployment'), /REVISION\s+CHANGE-CAUSE\n1\s+<none>\n2\s+<none>\n/);

  // undo: the previous template again
  t.equal(await troupe('rollout', 'undo', 'deployment/myapp-deployment'), 'deployment.apps/myapp-deployment rolled back\n');
  await waitFor(async () => {
    const ps = await pods();
    return ps.length === 4 && readySet(ps).length === 4 && ps.every((p) => p.spec.containers[0].image === 'myapp:1.0');
  }, 'pods back on myapp:1.0', 60_000);
  const d = JSON.parse(await troupe('get', 'deploy', 'myapp-deployment', '-o', 'json'));
  t.equal(d.metadata.annotations['deployment.kubernetes.io/revision'], '3');
  const described = await troupe('describe', 'deploy', 'myapp-deployment');
  t.match(described, /Replicas:\s+4 desired \| 4 updated \| 4 total \| 4 available \| 0 unavailable/);
  t.match(described, /DeploymentRollback/);

  // kill -9 of the whole cluster; started again on the same data dir, the same pods are back
  const before = (await pods()).map((p) => `${p.metadata.name}/${p.metadata.uid}`).sort();
  up.child.kill('SIGKILL');
  await new Promise((r) => up.child.once('exit', r));
  up = await startUp(t, dir, ['--log-level', 'warn', '--cluster-cidr', '10.252.0.0/16'], NODE);
  await waitFor(async () => readySet(await pods()).length === 4, 'pods Ready again', 30_000);
  t.same((await pods()).map((p) => `${p.metadata.name}/${p.metadata.uid}`).sort(), before, 'the same pods, adopted rather than replaced');
  t.equal((await crun.list()).length, 4, 'and no container twice');

  // deleting the Deployment removes its ReplicaSets, pods and containers
  t.equal(await troupe('delete', 'deployment', 'myapp-deployment'), 'deployment.apps "myapp-deployment" deleted\n');
  await waitFor(async () => (await pods()).length === 0, 'pods gone', 60_000);
  const rs = await runCli(env, ['get', 'rs']);
  t.equal(rs.stdout, '');
  t.equal(rs.stderr, 'No resources found in default namespace.\n');
  await waitNodeEmpty(join(data, 'node'), NODE).catch((err) => { process.stderr.write(up.err.filter((l) => /"level":[45]0/.test(l)).join('\n').slice(0, 5000)); throw err; });
});
