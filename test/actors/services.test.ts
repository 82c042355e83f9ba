/**
 * Services on the control plane, with hollow nodes: cluster IPs and node ports allocated, the
 * Endpoints following pods as they become ready, unready or go, and bad Services rejected with
 * their field path.
 */
import { join } from 'node:path';
import t from 'tap';
import { kindInfo, normalize, type KObject } from '../../protocol/index.js';
import { runCli } from '../helpers/agent.js';
import { deployment, hollowCluster, isReadyPod } from '../helpers/cluster.js';
import { tempDir, waitFor } from '../helpers/nats.js';

const SVC = kindInfo('Service')!;
const EP = kindInfo('Endpoints')!;

function service(name: string, spec: Record<string, unknown>): KObject {
  return normalize({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec });
}

const ips = (ep: KObject | undefined, field: 'addresses' | 'notReadyAddresses' = 'addresses') =>
  ((ep as { subsets?: Record<string, { ip: string }[] | undefined>[] } | undefined)?.subsets ?? []).flatMap((s) => (s[field] ?? []).map((a) => a.ip)).sort();

t.test('a ClusterIP service gets an address; its Endpoints list the Ready pods and follow them', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2']);
  await c.res.apply(deployment('web', { replicas: 3, port: 8080 }));
  await waitFor(() => c.activePods('web').filter(isReadyPod).length === 3, '3 ready');
  await c.res.apply(service('web', { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] }));
  const svc = await waitFor(async () => (await c.res.get(SVC, 'default', 'web'))?.spec.clusterIP, 'a cluster IP');
  t.match(svc, /^10\.96\.\d+\.\d+$/);
  const podIps = c.activePods('web').map((p) => p.status.podIP).sort();
  const ep = await waitFor(async () => {
    const e = await c.res.get(EP, 'default', 'web');
    return ips(e).length === 3 ? e : undefined;
  }, 'three endpoints');
  t.same(ips(ep), podIps);
  t.match((ep as unknown as { subsets: unknown[] }).subsets, [{ ports: [{ port: 8080, protocol: 'TCP' }] }]);
  // re-applying the manifest (without the address) keeps the address
  await c.res.apply(service('web', { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] }));
  t.equal((await c.res.get(SVC, 'default', 'web'))?.spec.clusterIP, svc, 'the cluster IP stays');
  // a pod that stops being Ready leaves the addresses at once; one that is deleted, altogether
  const [first, second] = c.activePods('web');
  await c.res.send(kindInfo('Pod')!, 'default', first!.metadata.name, { type: 'status', uid: first!.metadata.uid, status: { ...first!.status, conditions: [{ type: 'Ready', status: 'False' }] } });
  await waitFor(async () => ips(await c.res.get(EP, 'default', 'web')).length === 2, 'one endpoint less');
  t.same(ips(await c.res.get(EP, 'default', 'web'), 'notReadyAddresses'), [first!.status.podIP]);
  await c.res.send(kindInfo('Pod')!, 'default', second!.metadata.name, { type: 'delete' });
  await waitFor(async () => !ips(await c.res.get(EP, 'default', 'web')).includes(second!.status.podIP), 'the deleted pod leaves');
  // deleting the Service removes its Endpoints
  await c.res.send(SVC, 'default', 'web', { type: 'delete' });
  await waitFor(async () => !(await c.res.get(EP, 'default', 'web')), 'endpoints gone with the service');
});

t.test('NodePort and headless services; bad ones rejected with their field path; get svc, get ep, expose', async (t) => {
  const c = await hollowCluster(t, ['n1']);
  const dir = tempDir(t);
  const env = { ...process.env, TROUPE_SERVER: c.url, TROUPE_HOME: join(dir, 'home') };
  await c.res.apply(deployment('app', { replicas: 2, port: 8080 }));
  await waitFor(() => c.activePods('app').filter(isReadyPod).length === 2, '2 ready');
  const expose = await runCli(env, ['expose', 'deployment', 'app', '--port', '80', '--target-port', '8080', '--type', 'NodePort']);
  t.equal(expose.stdout, 'service/app exposed\n', expose.stderr);
  const np = await waitFor(async () => {
    const s = await c.res.get(SVC, 'default', 'app');
    return s?.spec.clusterIP && s.spec.ports[0].nodePort ? s : undefined;
  }, 'address and node port');
  t.ok(np.spec.ports[0].nodePort >= 30000 && np.spec.ports[0].nodePort <= 32767);
  t.same(np.spec.selector, { app: 'app' });
  await c.res.apply(service('headless', { clusterIP: 'None', selector: { app: 'app' }, ports: [{ port: 80, targetPort: 8080 }] }));
  await waitFor(async () => ips(await c.res.get(EP, 'default', 'headless')).length === 2, 'headless endpoints');
  t.equal((await c.res.get(SVC, 'default', 'headless'))?.spec.clusterIP, 'None');
  const svcTable = (await runCli(env, ['get', 'svc'])).stdout;
  t.match(svcTable, /^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE\n/);
  t.match(svcTable, new RegExp(`app\\s+NodePort\\s+${np.spec.clusterIP.replaceAll('.', '\\.')}\\s+<none>\\s+80:${np.spec.ports[0].nodePort}/TCP`));
  t.match(svcTable, /headless\s+ClusterIP\s+None\s+<none>\s+80\/TCP/);
  const epTable = (await runCli(env, ['get', 'ep', 'app'])).stdout;
  t.match(epTable, /^NAME\s+ENDPOINTS\s+AGE\napp\s+10\.200\.\d+\.\d+:8080,10\.200\.\d+\.\d+:8080\s+/);
  t.match((await runCli(env, ['describe', 'svc', 'app'])).stdout, /Endpoints:\s+10\.200\.\d+\.\d+:8080,10\.200/);

  const bad: [Record<string, unknown>, RegExp][] = [
    [{ selector: { app: 'app' }, ports: [{ port: 80, targetPort: 'http' }] }, /spec\.ports\[0\]\.targetPort: no container port is named "http" in the 2 pod\(s\) the selector picks/],
    [{ type: 'NodePort', ports: [{ port: 80, nodePort: 80 }] }, /spec\.ports\[0\]\.nodePort: expected an integer from 30000 to 32767, got 80/],
    [{ type: 'NodePort', ports: [{ port: 81, nodePort: np.spec.ports[0].nodePort }] }, new RegExp(`spec\\.ports\\[0\\]\\.nodePort: ${np.spec.ports[0].nodePort} is already allocated to service default/app`)],
    [{ clusterIP: '192.168.1.10', ports: [{ port: 80 }] }, /spec\.clusterIP: 192\.168\.1\.10 is not in the service range 10\.96\.0\.0\/16/],
    [{ clusterIP: np.spec.clusterIP, ports: [{ port: 80 }] }, /spec\.clusterIP: .* is already allocated to another service/],
  ];
  for (const [i, [spec, expected]] of bad.entries()) {
    // sent raw: the Service actor itself validates (what any client on the bus gets)
    const raw = { apiVersion: 'v1', kind: 'Service', metadata: { name: `bad-${i}`, namespace: 'default' }, spec };
    const err = await c.res.send(SVC, 'default', `bad-${i}`, { type: 'apply', object: raw }).then(
      () => undefined,
      (e: Error) => e,
    );
    t.match(err?.message, expected);
    t.equal(await c.res.get(SVC, 'default', `bad-${i}`), undefined, 'nothing written');
  }
});
