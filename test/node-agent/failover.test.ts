/**
 * Two real node agents with crun under one control plane: kill -9 one, its pods run on the other
 * within 5 s; it comes back, stops the pods that were replaced, and no pod runs twice.
 */
import { join } from 'node:path';
import t from 'tap';
import { ControlPlane, Resources } from '../../actors/index.js';
import { ClusterImages, Crun } from '../../node-agent/index.js';
import { kindInfo, type KObject } from '../../protocol/index.js';
import { startAgent, waitNodeEmpty } from '../helpers/agent.js';
import { deployment, quiet } from '../helpers/cluster.js';
import { tempDir, waitFor, withBus, withNats } from '../helpers/nats.js';
import { busyboxRootfs, tarDir } from '../helpers/tar.js';

t.setTimeout(180_000);

const running = (pods: KObject[], node?: string) =>
  pods.filter((p) => !p.metadata.deletionTimestamp && p.status?.phase === 'Running' && p.status.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True') && (!node || p.spec.nodeName === node));

t.test('kill -9 of an agent: its pods run on the other node within 5 s; back, it runs none twice', async (t) => {
  const srv = await withNats(t);
  const bus = await withBus(t, srv.url, { logger: quiet });
  const cp = await ControlPlane.start({ bus: await withBus(t, srv.url, { logger: quiet }), logger: quiet, clusterCidr: '10.253.0.0/16' });
  t.teardown(() => cp.stop());
  const src = tempDir(t);
  const images = await ClusterImages.open(bus);
  await images.importRootfs(tarDir(busyboxRootfs(join(src, 'root')), join(src, 'rootfs.tar')), 'busybox:failover');
  const dirA = tempDir(t, 'troupe-fa-');
  const dirB = tempDir(t, 'troupe-fb-');
  let a = await startAgent(t, srv.url, 'fa', dirA);
  await startAgent(t, srv.url, 'fb', dirB);
  const res = await Resources.open(bus);
  const POD = kindInfo('Pod')!;
  const NODE = kindInfo('Node')!;
  await waitFor(async () => (await res.list(NODE)).filter((n) => n.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True')).length === 2, 'both nodes Ready', 15_000);
  await res.apply(deployment('sleepers', { replicas: 2, image: 'busybox:failover', grace: 2, command: ['/bin/sh', '-c', "trap 'exit 0' TERM; sleep 3600 & wait"] }));

  await waitFor(async () => running(await res.list(POD), 'fa').length === 1 && running(await res.list(POD), 'fb').length === 1, 'one pod Running on each node', 30_000);
  const crunA = new Crun(join(dirA, 'runtime', 'crun'));
  const crunB = new Crun(join(dirB, 'runtime', 'crun'));
  t.equal((await crunA.list()).length, 1);

  a.kill('SIGKILL');
  const killedAt = Date.now();
  await waitFor(async () => running(await res.list(POD), 'fb').length === 2, 'both pods Running on fb', 10_000);
  const replacedMs = Date.now() - killedAt;
  t.ok(replacedMs <= 5000, `the lost pod runs on fb ${replacedMs} ms after the kill`);
  t.equal((await crunB.list()).filter((c) => c.status === 'running').length, 2, 'fb runs two containers');
  t.equal((await crunA.list()).length, 1, "fa's container outlived its agent (as with a dead kubelet)");

  // fa comes back: the pod replaced elsewhere is stopped there, and fa runs nothing
  a = await startAgent(t, srv.url, 'fa', dirA);
  await waitNodeEmpty(dirA, 'fa');
  t.equal((await crunB.list()).filter((c) => c.status === 'running').length, 2);
  const pods = await res.list(POD);
  t.equal(pods.length, 2, 'two pods in the store');
  t.equal(running(pods, 'fb').length, 2);
  await waitFor(async () => (await res.get(NODE, undefined, 'fa'))?.status?.conditions?.find((c: { type: string }) => c.type === 'Ready')?.status === 'True', 'fa Ready again', 15_000);

  await res.send(kindInfo('Deployment')!, 'default', 'sleepers', { type: 'delete' });
  await waitNodeEmpty(dirB, 'fb');
  // the node removes the containers, then tells the store: the objects go a moment later
  await waitFor(async () => (await res.list(POD)).length === 0, 'no pod left in the store', 15_000);
  t.same(await res.list(POD), []);
});
