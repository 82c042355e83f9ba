/**
 * A busybox image in a fresh store, for container tests.
 */
import { join } from 'node:path';
import { ContainerRuntime, ImageStore, type ResolvedImage } from '../../node-agent/index.js';
import { tempDir, type Teardown } from './nats.js';
import { busyboxRootfs, tarDir } from './tar.js';

export async function busyboxImage(t: Teardown, changes: string[] = []): Promise<{ store: ImageStore; dir: string; lowerDir: string; image: ResolvedImage }> {
  const dir = tempDir(t, 'troupe-img-');
  const tarball = tarDir(busyboxRootfs(join(dir, 'src')), join(dir, 'rootfs.tar'));
  const store = new ImageStore(join(dir, 'store'));
  await store.importRootfs(tarball, 'busybox:test', { changes });
  const { path, image } = await store.rootfs('busybox:test');
  return { store, dir, lowerDir: path, image };
}

/** A runtime whose every container is removed when the test ends, even when it fails. */
export function testRuntime(t: Teardown, dir: string, node = 'tn', opts: { busybox?: string; startConcurrency?: number } = {}): ContainerRuntime & { track(podUid: string, name: string): void } {
  const rt = new ContainerRuntime({ dataDir: join(dir, `agent-${node}`), node, ...opts }) as ContainerRuntime & { track(podUid: string, name: string): void };
  const started: [string, string][] = [];
  rt.track = (podUid, name) => started.push([podUid, name]);
  t.teardown(async () => {
    // (a pool only if the test asked for one)
    await rt.drainPool();
    for (const [u, n] of started) await rt.remove(u, n).catch(() => undefined);
    // and the pods' sandboxes, for the tests that made them
    for (const u of new Set(started.map(([u]) => u))) await rt.removeSandbox(u).catch(() => undefined);
    rt.release();
  });
  return rt;
}
