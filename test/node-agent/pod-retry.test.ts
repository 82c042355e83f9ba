/**
 * A node that could not hand a pod to its pod actor (the actor failed to start) sends the run
 * again with backoff for as long as it wants that pod, and the pod runs once the actor can start.
 */
import { join } from 'node:path';
import t from 'tap';
import { ControlPlane, KvStore, Resources } from '../../actors/index.js';
import { ClusterImages, Crun } from '../../node-agent/index.js';
import { kindInfo, normalize } from '../../protocol/index.js';
import { startAgent, waitNodeEmpty } from '../helpers/agent.js';
import { quiet } from '../helpers/cluster.js';
import { tempDir, waitFor, withBus, withNats } from '../helpers/nats.js';
import { busyboxRootfs, tarDir } from '../helpers/tar.js';

t.setTimeout(120_000);

t.test('a run the pod actor could not take is sent again: the pod runs once its actor can start', async (t) => {
  const srv = await withNats(t);
  const bus = await withBus(t, srv.url, { logger: quiet });
  const cp = await ControlPlane.start({ bus: await withBus(t, srv.url, { logger: quiet }), logger: quiet, clusterCidr: '10.246.0.0/16' });
  t.teardown(() => cp.stop());
  const src = tempDir(t);
  const images = await ClusterImages.open(bus);
  await images.importRootfs(tarDir(busyboxRootfs(join(src, 'root')), join(src, 'rootfs.tar')), 'busybox:retry');
  // where the node's actor for pod default/fragile keeps its state: bytes no one can read, so the
  // actor fails to start and the node's run fails (ActorFailedError)
  const state = await KvStore.open(bus, bus.subjects.stateBucket);
  const key = bus.subjects.scoped('node.rt1').stateKey('pod', 'default', 'fragile');
  await state.put(key, Uint8Array.of(0xc1, 0xc1, 0xc1));
  const dir = tempDir(t, 'troupe-rt-');
  await startAgent(t, srv.url, 'rt1', dir);
  const res = await Resources.open(bus);
  const POD = kindInfo('Pod')!;
  const NODE = kindInfo('Node')!;
  await waitFor(async () => (await res.get(NODE, undefined, 'rt1'))?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True'), 'rt1 Ready', 15_000);
  await res.apply(
    normalize({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'fragile' },
      spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image: 'busybox:retry', command: ['/bin/sleep', '300'] }] },
    }),
  );
  await waitFor(async () => (await res.get(POD, 'default', 'fragile'))?.spec.nodeName === 'rt1', 'the pod bound to rt1', 15_000);
  // a few tries go by (200, 400, 800 ms apart): none can start the actor
  await new Promise((r) => setTimeout(r, 1500));
  const crun = new Crun(join(dir, 'runtime', 'crun'));
  t.equal((await crun.list()).length, 0, 'no container while the actor cannot start');
  t.not((await res.get(POD, 'default', 'fragile'))?.status?.phase, 'Running');

  await state.delete(key);
  await waitFor(async () => (await res.get(POD, 'default', 'fragile'))?.status?.phase === 'Running', 'the pod Running after a later try', 20_000);
  t.equal((await crun.list()).length, 1, 'one container');

  await res.send(POD, 'default', 'fragile', { type: 'delete' });
  await waitNodeEmpty(dir, 'rt1');
});
