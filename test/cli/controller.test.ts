/**
 * `troupe controller` as real processes: one leads, one stands by; kill -9 of the leader in the
 * middle of a scale-up, and the standby finishes it with exactly the desired count.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import t from 'tap';
import { kindInfo } from '../../protocol/index.js';
import { cli } from '../helpers/agent.js';
import { deployment, hollowCluster, isReadyPod } from '../helpers/cluster.js';
import { waitFor, type Teardown } from '../helpers/nats.js';

function controller(t: Teardown, url: string): { child: ChildProcess; leading: Promise<void> } {
  const child = spawn(process.execPath, [cli, 'controller', '--server', url, '--lease-ms', '1000', '--log-level', process.env.TROUPE_TEST_LOG ?? 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  const leading = new Promise<void>((resolve) => createInterface({ input: child.stdout! }).on('line', (l) => l.includes('is leading') && resolve()));
  return { child, leading };
}

t.test('kill -9 of the leading controller during a scale-up: the standby converges to exactly the desired count', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2'], { controlPlane: false, hollow: { heartbeatMs: 250 } });
  const a = controller(t, c.url);
  await a.leading;
  const b = controller(t, c.url);
  await waitFor(async () => (await c.res.list(kindInfo('Node')!)).every((n) => n.status?.conditions?.some((x: { type: string; status: string }) => x.type === 'Ready' && x.status === 'True')) , 'nodes Ready');
  const names = new Set<string>();
  c.pods.on((type, p) => type === 'add' && names.add(p.metadata.name));
  await c.res.apply(deployment('burst', { replicas: 1 }));
  await waitFor(() => c.activePods('burst').filter(isReadyPod).length === 1, 'one pod');
  // enough pods that the kill comes while they are being made (40 were all made before a watcher saw 5)
  const N = 200;
  await c.res.send(kindInfo('Deployment')!, 'default', 'burst', { type: 'patch', spec: { replicas: N } });
  await waitFor(() => c.activePods('burst').length >= 5, 'the scale-up under way', 10_000, 1);
  const seenAtKill = c.activePods('burst').length;
  a.child.kill('SIGKILL');
  const killedAt = Date.now();
  let bLeads = false;
  void b.leading.then(() => (bLeads = true));
  await waitFor(() => c.activePods('burst').filter(isReadyPod).length === N, `${N} ready pods`, 20_000);
  t.ok(bLeads, 'the standby took the lead');
  t.ok(Date.now() - killedAt < 15_000, `converged ${Date.now() - killedAt} ms after the kill`);
  t.ok(seenAtKill < N, `the kill came mid-way (${seenAtKill} pods then)`);
  t.equal(names.size, N, `no pod was created twice: ${N} pod names ever, for ${N} replicas`);
  const d = await waitFor(async () => {
    const d = await c.res.get(kindInfo('Deployment')!, 'default', 'burst');
    return d?.status?.availableReplicas === N ? d : undefined;
  }, `status ${N} available`);
  t.equal(d.status.replicas, N);
});
