/**
 * Cluster images: `troupe image import` once, any node runs it (fetched from JetStream's object
 * store into the node's own store); ls, tag, rm; a bad archive changes nothing.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ActorClient, ClusterImages, Crun, ImageStore, type PodStatus } from '../../index.js';
import { tempDir, waitFor, withBus, withNats } from '../helpers/nats.js';
import { runCli, startAgent, waitNodeEmpty } from '../helpers/agent.js';
import { busyboxRootfs, makeTar, tarDir } from '../helpers/tar.js';

t.test('import once through the CLI; a node without the image fetches it and runs the pod', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const env = { ...process.env, TROUPE_SERVER: nats.url, TROUPE_HOME: tempDir(t, 'troupe-home-') };
  const src = tempDir(t, 'troupe-src-');
  const tarball = tarDir(busyboxRootfs(join(src, 'root')), join(src, 'rootfs.tar'));

  const imp = await runCli(env, ['image', 'import', tarball, 'myapp:1.0', '--change', 'CMD ["/bin/sh", "-c", "echo from-image; exec sleep 300"]', '--change', 'ENV WHO=cluster']);
  t.equal(imp.code, 0, imp.stderr);
  t.match(imp.stdout, /^myapp:1\.0 sha256:[a-f0-9]{64}\n$/);
  t.equal((await runCli(env, ['image', 'tag', 'myapp:1.0', 'myapp:latest'])).code, 0);
  const ls = await runCli(env, ['image', 'ls']);
  t.match(ls.stdout, /^IMAGE\s+ARCHIVE\s+SIZE\s+CREATED\nmyapp:1\.0\s+[a-f0-9]{12}\s+[\d.]+MiB\s+\S+\nmyapp:latest\s+/);

  // a bad archive: a clear error, the cluster's images unchanged
  const bad = join(src, 'bad.tar');
  writeFileSync(bad, makeTar([{ path: '../escape', content: 'x' }]));
  const before = await (await ClusterImages.open(bus)).list();
  const r = await runCli(env, ['image', 'import', bad, 'evil:1']);
  t.equal(r.code, 1);
  t.match(r.stderr, /climbs out of the rootfs \('\.\.'\): refused \(TRP_ERR_UNSAFE_ARCHIVE\)/);
  t.same(await (await ClusterImages.open(bus)).list(), before, 'nothing was added');

  // a node whose own store is empty runs a pod of that image
  const dir = tempDir(t, 'troupe-agent-');
  await startAgent(t, nats.url, 'fresh', dir);
  const pods = new ActorClient(bus, 'pod', 'node.fresh');
  await pods.send('default', 'app', { type: 'run', uid: 'uid-app', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image: 'myapp:latest' }] } });
  await waitFor(async () => ((await pods.send('default', 'app', { type: 'get' })) as unknown as PodStatus).phase === 'Running', 'the pod Running', 20_000);
  t.same((await new ImageStore(join(dir, 'images')).list()).map((i) => i.ref), ['myapp:latest'], 'fetched into the node’s store');
  await waitFor(async () => (await runCli(env, ['logs', 'app'])).stdout === 'from-image\n', 'the image’s CMD ran');

  t.equal((await runCli(env, ['image', 'rm', 'myapp:1.0'])).stdout, 'Untagged: myapp:1.0\n');
  const missing = await runCli(env, ['image', 'rm', 'myapp:1.0']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /image "myapp:1\.0" is not in the cluster/);
  await pods.send('default', 'app', { type: 'delete' });
  await waitNodeEmpty(dir, 'fresh');
});

t.test('troupe image load: a docker-save archive (made by skopeo) runs on a node that never saw it', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const env = { ...process.env, TROUPE_SERVER: nats.url, TROUPE_HOME: tempDir(t, 'troupe-home-') };
  const { busyboxArchives } = await import('../helpers/tar.js');
  const { docker } = busyboxArchives(join(tempDir(t, 'troupe-build-'), 'b'), ['/bin/sh', '-c', 'echo hello-from-load; exec sleep 300']);
  const r = await runCli(env, ['image', 'load', '-i', docker]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'Loaded image: loaded:2.0\n');
  t.match((await runCli(env, ['image', 'ls'])).stdout, /\nloaded:2\.0\s+[a-f0-9]{12}/);
  t.equal((await runCli(env, ['image', 'load'])).code, 2, 'usage: -i FILE is required');
  const dir = tempDir(t, 'troupe-agent-');
  await startAgent(t, nats.url, 'loader', dir);
  const pods = new ActorClient(bus, 'pod', 'node.loader');
  await pods.send('default', 'l', { type: 'run', uid: 'uid-l', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: 'loaded:2.0' }] } });
  await waitFor(async () => (await runCli(env, ['logs', 'l'])).stdout === 'hello-from-load\n', 'the loaded image ran', 20_000);
  await pods.send('default', 'l', { type: 'delete' });
  await waitNodeEmpty(dir, 'loader');
});

t.test('troupe image pull from a registry (pushed by skopeo): digests verified, usable on a node; errors are clear', async (t) => {
  const { withRegistry } = await import('../helpers/registry.js');
  const { execFileSync } = await import('node:child_process');
  const registry = await withRegistry(t);
  const build = tempDir(t, 'troupe-build-');
  const { busyboxArchives } = await import('../helpers/tar.js');
  busyboxArchives(join(build, 'b'), ['/bin/sh', '-c', 'echo hello-from-registry; exec sleep 300']);
  execFileSync('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${join(build, 'b', 'layout')}:1.0`, `docker://${registry}/team/myapp:1.0`]);
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const env = { ...process.env, TROUPE_SERVER: nats.url, TROUPE_HOME: tempDir(t, 'troupe-home-') };

  const noFlag = await runCli(env, ['image', 'pull', `${registry}/team/myapp:1.0`]);
  t.equal(noFlag.code, 1);
  t.match(noFlag.stderr, /cannot be reached: .* \(a plain-http registry needs --insecure\)/);
  const r = await runCli(env, ['image', 'pull', `${registry}/team/myapp:1.0`, '--insecure']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, new RegExp(`^${registry.replace('.', '\\.')}/team/myapp:1\\.0 sha256:[a-f0-9]{64}\\n$`));
  t.match(r.stderr, /pulling 100%/, 'progress is shown');
  const missing = await runCli(env, ['image', 'pull', `${registry}/team/myapp:9.9`, '--insecure']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /is not in registry 127\.0\.0\.1:\d+ \(manifest unknown\)/);
  const wrongDigest = await runCli(env, ['image', 'pull', `${registry}/team/myapp@sha256:${'a'.repeat(64)}`, '--insecure']);
  t.equal(wrongDigest.code, 1, 'a digest the registry does not have is refused');

  const dir = tempDir(t, 'troupe-agent-');
  await startAgent(t, nats.url, 'puller', dir);
  const pods = new ActorClient(bus, 'pod', 'node.puller');
  await pods.send('default', 'r', { type: 'run', uid: 'uid-r', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: `${registry}/team/myapp:1.0` }] } });
  await waitFor(async () => (await runCli(env, ['logs', 'r'])).stdout === 'hello-from-registry\n', 'the pulled image ran', 20_000);
  await pods.send('default', 'r', { type: 'delete' });
  await waitNodeEmpty(dir, 'puller');
});
