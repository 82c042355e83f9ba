import { existsSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ImageStore, parseImageRef, safeRelative, symlinkStaysInside } from '../../node-agent/index.js';
import { tempDir } from '../helpers/nats.js';
import { busyboxRootfs, makeTar, tarDir } from '../helpers/tar.js';

function snapshotTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      out.push(`${rel}${n}`);
      if (statSync(p, { throwIfNoEntry: false })?.isDirectory() && !n.endsWith('.tmp')) walk(p, `${rel}${n}/`);
    }
  };
  if (existsSync(dir)) walk(dir, '');
  return out;
}

t.test('image references normalize as Docker does', async (t) => {
  t.equal(parseImageRef('myapp:1.0').canonical, 'docker.io/library/myapp:1.0');
  t.equal(parseImageRef('busybox').canonical, 'docker.io/library/busybox:latest');
  t.equal(parseImageRef('127.0.0.1:5000/team/app:v2').canonical, '127.0.0.1:5000/team/app:v2');
  t.equal(parseImageRef(`app@sha256:${'a'.repeat(64)}`).digest, `sha256:${'a'.repeat(64)}`);
  for (const bad of ['', 'UPPER:1', 'a:b:c', 'app@md5:00', 'a//b', 'app:-x']) t.throws(() => parseImageRef(bad), { name: 'ImageRefError' }, JSON.stringify(bad));
});

t.test('path safety rules', async (t) => {
  t.equal(safeRelative('./usr/bin/x'), 'usr/bin/x');
  t.equal(safeRelative('/etc/passwd'), 'etc/passwd', 'absolute entry paths land below the root');
  t.throws(() => safeRelative('../etc/passwd'), { name: 'UnsafeArchiveError' });
  t.throws(() => safeRelative('a/../../b'), { name: 'UnsafeArchiveError' });
  t.ok(symlinkStaysInside('bin/sh', 'busybox'));
  t.ok(symlinkStaysInside('usr/bin/x', '../../bin/busybox'));
  t.ok(symlinkStaysInside('lib', '/usr/lib'), 'absolute targets resolve in the container root');
  t.notOk(symlinkStaysInside('usr/x', '../../../etc/shadow'));
});

t.test('import a busybox rootfs: content-addressed, OCI layout, config from --change, unpacked once', async (t) => {
  const dir = tempDir(t);
  const tarball = tarDir(busyboxRootfs(join(dir, 'src')), join(dir, 'rootfs.tar'));
  const store = new ImageStore(join(dir, 'store'));
  const info = await store.importRootfs(tarball, 'myapp:1.0', {
    changes: ['CMD ["httpd", "-f", "-p", "8080"]', 'ENV GREETING=hello', 'WORKDIR /var/www', 'EXPOSE 8080', 'USER root'],
  });
  t.equal(info.ref, 'myapp:1.0');
  t.match(info.digest, /^sha256:[a-f0-9]{64}$/);
  t.ok(existsSync(join(dir, 'store', 'oci-layout')));
  const index = JSON.parse(readFileSync(join(dir, 'store', 'index.json'), 'utf8'));
  t.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], 'docker.io/library/myapp:1.0');
  const img = await store.resolve('docker.io/library/myapp:1.0');
  t.same(img.config.config.Cmd, ['httpd', '-f', '-p', '8080']);
  t.same(img.config.config.Env, ['GREETING=hello']);
  t.equal(img.config.config.WorkingDir, '/var/www');
  t.same(img.config.config.ExposedPorts, { '8080/tcp': {} });
  t.equal(img.config.rootfs.diff_ids.length, 1);
  // the layer blob is the tarball itself, verified by digest
  t.equal(img.config.rootfs.diff_ids[0], `sha256:${(await import('node:crypto')).createHash('sha256').update(readFileSync(tarball)).digest('hex')}`);
  t.equal(store.rootfsAtHand('myapp:1.0'), undefined, 'not at hand before the store has resolved and unpacked it');
  const { path } = await store.rootfs('myapp:1.0');
  t.equal(store.rootfsAtHand('myapp:1.0')?.path, path, 'at hand once rootfs() has it');
  t.equal(readlinkSync(join(path, 'bin', 'sh')), 'busybox');
  t.ok(statSync(join(path, 'bin', 'busybox')).mode & 0o111, 'executable bit kept');
  const again = await store.rootfs('myapp:1.0');
  t.equal(again.path, path, 'unpacked once');

  await store.tag('myapp:1.0', 'myapp:latest');
  t.equal(store.rootfsAtHand('myapp:1.0'), undefined, 'not at hand once the index changed (rootfs() looks again)');
  t.equal((await store.rootfs('myapp:1.0')).path, path);
  t.same((await store.list()).map((i) => i.ref), ['myapp:1.0', 'myapp:latest']);
  await store.remove('myapp:1.0');
  t.ok(existsSync(path), 'still named by myapp:latest: kept');
  const { deleted } = await store.remove('myapp:latest');
  t.equal(deleted.length, 3, 'manifest, config and layer blobs removed with the last name');
  t.notOk(existsSync(path), 'rootfs removed');
  await t.rejects(store.resolve('myapp:1.0'), { name: 'ImageNotFoundError', message: /not in this node's store; import, load or pull it first/ });
});

t.test('whiteouts remove what lower layers put there', async (t) => {
  const dir = tempDir(t);
  const root = join(dir, 'root');
  const { extractLayer } = await import('../../node-agent/index.js');
  const gen = async function* (b: Buffer) {
    yield b;
  };
  await extractLayer(root, gen(makeTar([{ path: 'a/', type: 'dir' }, { path: 'a/keep', content: '1' }, { path: 'a/gone', content: '2' }, { path: 'b/', type: 'dir' }, { path: 'b/x', content: '3' }])));
  const stats = await extractLayer(root, gen(makeTar([{ path: 'a/.wh.gone' }, { path: 'b/.wh..wh..opq' }, { path: 'b/new', content: '4' }])));
  t.equal(stats.whiteouts, 2);
  t.same(snapshotTree(root), ['a', 'a/keep', 'b', 'b/new']);
});

t.test('bad archives: a clear error and the store unchanged', async (t) => {
  const dir = tempDir(t);
  const store = new ImageStore(join(dir, 'store'));
  await store.init();
  const good = tarDir(busyboxRootfs(join(dir, 'src')), join(dir, 'ok.tar'));
  await store.importRootfs(good, 'base:1');
  const before = snapshotTree(join(dir, 'store'));
  const indexBefore = readFileSync(join(dir, 'store', 'index.json'), 'utf8');

  const cases: [string, Buffer, RegExp][] = [
    ['not a tar', Buffer.from('this is not an archive at all, just some text that is long enough'.repeat(20)), /corrupt \(bad checksum\)/],
    ['empty', Buffer.alloc(0), /archive is empty/],
    ['truncated', readFileSync(good).subarray(0, 5000), /truncated/],
    ['dot-dot path', makeTar([{ path: '../../etc/evil', content: 'x' }]), /climbs out of the rootfs/],
    ['escaping symlink', makeTar([{ path: 'etc/', type: 'dir' }, { path: 'etc/link', type: 'symlink', linkname: '../../../../etc/shadow' }]), /points outside the rootfs/],
    ['write through a symlink', makeTar([{ path: 'lnk', type: 'symlink', linkname: '/tmp' }, { path: 'lnk/owned', content: 'x' }]), /through the symlink "lnk"/],
    ['hard link outside', makeTar([{ path: 'h', type: 'hardlink', linkname: '../../etc/passwd' }]), /climbs out/],
  ];
  for (const [what, bytes, re] of cases) {
    const f = join(dir, `${what.replaceAll(' ', '-')}.tar`);
    writeFileSync(f, bytes);
    await t.rejects(store.importRootfs(f, `bad:${what.replaceAll(' ', '-')}`), { message: re }, what);
  }
  t.equal(readFileSync(join(dir, 'store', 'index.json'), 'utf8'), indexBefore, 'index unchanged');
  t.same(snapshotTree(join(dir, 'store')), before, 'no blob, rootfs or temporary file left');
  t.notOk(existsSync('/tmp/owned'), 'nothing was written outside');
});

t.test('--change errors name the instruction', async (t) => {
  const dir = tempDir(t);
  const store = new ImageStore(join(dir, 'store'));
  const tarball = join(dir, 't.tar');
  writeFileSync(tarball, makeTar([{ path: 'f', content: 'x' }]));
  await t.rejects(store.importRootfs(tarball, 'x:1', { changes: ['RUN make'] }), { name: 'ValidationError', message: /--change\[0\] "RUN make": unsupported instruction RUN/ });
  await t.rejects(store.importRootfs(tarball, 'x:1', { changes: ['CMD ["a", 1]'] }), { message: /expected a JSON array of strings/ });
  await t.rejects(store.importRootfs(tarball, 'x:1', { changes: ['EXPOSE 99999'] }), { message: /expected PORT/ });
  await t.rejects(store.importRootfs(tarball, 'Bad Name', {}), { name: 'ImageRefError' });
});

t.test('load: docker-save and OCI archives made by umoci and skopeo; digests checked; bad archives refused', async (t) => {
  const dir = tempDir(t);
  const { busyboxArchives } = await import('../helpers/tar.js');
  const { docker, oci } = busyboxArchives(join(dir, 'build'), ['/bin/echo', 'hello-from-load']);
  const store = new ImageStore(join(dir, 'store'));
  t.same((await store.load(docker)).map((i) => i.ref), ['loaded:2.0'], 'docker-save: names from RepoTags');
  t.same((await store.load(oci)).map((i) => i.ref), ['loaded:3.0'], 'OCI archive: names from the ref annotation');
  for (const ref of ['loaded:2.0', 'loaded:3.0']) {
    const { path, image } = await store.rootfs(ref);
    t.same(image.config.config.Cmd, ['/bin/echo', 'hello-from-load'], `${ref}: the image config`);
    t.ok(statSync(join(path, 'bin', 'busybox')).isFile(), `${ref}: layers unpacked (gzip too)`);
  }
  const before = readFileSync(join(dir, 'store', 'index.json'), 'utf8');
  const notArchive = join(dir, 'plain.tar');
  writeFileSync(notArchive, makeTar([{ path: 'hello.txt', content: 'hi' }]));
  await t.rejects(store.load(notArchive), { name: 'ImageFormatError', message: /neither a docker-save archive \(manifest\.json\) nor an OCI image archive/ });
  // a docker archive whose layer does not match the config's diff_ids
  const tampered = join(dir, 'tampered.tar');
  const cfg = JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${'0'.repeat(64)}`] } });
  writeFileSync(tampered, makeTar([{ path: 'manifest.json', content: JSON.stringify([{ Config: 'c.json', RepoTags: ['evil:1'], Layers: ['l.tar'] }]) }, { path: 'c.json', content: cfg }, { path: 'l.tar', content: makeTar([{ path: 'x', content: 'y' }]) }]));
  await t.rejects(store.load(tampered), { name: 'ImageFormatError', message: /layer l\.tar hashes to sha256:[a-f0-9]{64}, but the image config expects sha256:0{64}/ });
  t.equal(readFileSync(join(dir, 'store', 'index.json'), 'utf8'), before, 'the index is unchanged by the bad archives');
});
