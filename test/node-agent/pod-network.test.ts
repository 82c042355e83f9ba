/**
 * The pod network with the real CNI plugins: the control plane gives the node a pod CIDR, each
 * pod gets its own address on the node's bridge (reported as status.podIP), pods reach each
 * other and the node reaches them; when the pods go, so do their veths and IPAM allocations.
 * The node keeps two sandboxes ready on its network (its pool): pods take those, and the pool goes
 * when the agent stops.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ControlPlane, Resources } from '../../actors/index.js';
import { ClusterImages, Cni, bridgeName } from '../../node-agent/index.js';
import { kindInfo, normalize, type KObject } from '../../protocol/index.js';
import { runCli, startAgent, waitNodeEmpty } from '../helpers/agent.js';
import { deployment, quiet } from '../helpers/cluster.js';
import { tempDir, waitFor, withBus, withNats } from '../helpers/nats.js';
import { busyboxRootfs, tarDir } from '../helpers/tar.js';

t.setTimeout(120_000);

const NODE = 'pn-node';

function links(master: string): string[] {
  try {
    return execFileSync('ip', ['-o', 'link', 'show', 'master', master], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** A runtime's pooled sandboxes, ready ones: their addresses and pids. */
function pool(dir: string): { ips: string[]; pids: number[] } {
  const d = join(dir, 'runtime', 'pool');
  let files: string[];
  try {
    files = readdirSync(d);
  } catch {
    files = [];
  }
  const read = (f: string) => readFileSync(join(d, f), 'utf8').trim();
  return { ips: files.filter((f) => f.endsWith('.ip')).map(read), pids: files.filter((f) => f.endsWith('.pid')).map((f) => Number(read(f))) };
}

t.test('each pod has its own address on the node bridge, from a sandbox the node had ready; pods and the node reach it; nothing leaks', async (t) => {
  const bridge = bridgeName(NODE);
  t.teardown(() => {
    try {
      execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    } catch {
      // not there
    }
  });
  const srv = await withNats(t);
  const bus = await withBus(t, srv.url, { logger: quiet });
  const cp = await ControlPlane.start({ bus: await withBus(t, srv.url, { logger: quiet }), logger: quiet, clusterCidr: '10.251.0.0/16' });
  t.teardown(() => cp.stop());
  const src = tempDir(t);
  await (await ClusterImages.open(bus)).importRootfs(tarDir(busyboxRootfs(join(src, 'root')), join(src, 'rootfs.tar')), 'busybox:net');
  const dir = tempDir(t, 'troupe-pn-');
  const agent = await startAgent(t, srv.url, NODE, dir);
  const res = await Resources.open(bus);
  const node = await waitFor(async () => {
    const n = await res.get(kindInfo('Node')!, undefined, NODE);
    return n?.spec?.podCIDR ? n : undefined;
  }, 'a pod CIDR for the node');
  t.equal(node.spec.podCIDR, '10.251.1.0/24', 'the first /24 of the cluster CIDR');
  // the node readies two sandboxes on its network once it has one (given 30 s: on a CI run with
  // the other test files beside it, this once took more than the default 10)
  const ready = await waitFor(() => (pool(dir).ips.length === 2 ? pool(dir) : undefined), 'two pooled sandboxes ready', 30_000);

  // a Service that exists before the pods start: its address reaches them as environment variables
  await res.apply(normalize({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web-front' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } }));
  const svcIp = await waitFor(async () => (await res.get(kindInfo('Service')!, 'default', 'web-front'))?.spec.clusterIP as string | undefined, 'a cluster IP');
  await res.apply(deployment('web', { replicas: 2, image: 'busybox:net', port: 8080, grace: 2, command: ['/bin/sh', '-c', 'hostname > /tmp/index.html; httpd -f -p 8080 -h /tmp & trap "kill $!; exit 0" TERM; wait'] }));

  const pods = await waitFor(async () => {
    const ps = (await res.list(kindInfo('Pod')!)).filter((p: KObject) => p.status?.phase === 'Running' && p.status.podIP);
    return ps.length === 2 ? ps : undefined;
  }, 'two Running pods with addresses', 30_000);
  const [a, b] = pods as [KObject, KObject];
  t.match(a.status.podIP, /^10\.251\.1\.\d+$/);
  t.match(b.status.podIP, /^10\.251\.1\.\d+$/);
  t.not(a.status.podIP, b.status.podIP, 'each pod its own address');
  t.same(a.status.podIPs, [{ ip: a.status.podIP }]);
  t.same([a.status.podIP, b.status.podIP].sort(), ready.ips.sort(), 'the pods took the sandboxes the pool had ready');
  for (const p of [a, b]) t.match(readFileSync(join(dir, 'runtime', 'sandboxes', `${p.metadata.uid}.cni`), 'utf8'), /^pool-[0-9a-f]+\n$/, 'known to CNI by its pool name');
  // and the pool is full again, with other sandboxes
  const refilled = await waitFor(() => (pool(dir).ips.length === 2 ? pool(dir) : undefined), 'the pool refilled');
  t.same(refilled.ips.filter((ip) => ip === a.status.podIP || ip === b.status.podIP), [], 'new addresses');
  t.ok(a.status.hostIP, 'hostIP reported');
  const envCli = { ...process.env, TROUPE_SERVER: srv.url, TROUPE_HOME: join(dir, 'home') };
  // pod → pod, by address
  const r = await runCli(envCli, ['exec', a.metadata.name, '--', 'wget', '-qO-', `http://${b.status.podIP}:8080/`]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), b.metadata.name, 'pod a reaches pod b on its address');
  const env = await runCli(envCli, ['exec', a.metadata.name, '--', 'env']);
  for (const line of [`WEB_FRONT_SERVICE_HOST=${svcIp}`, 'WEB_FRONT_SERVICE_PORT=80', 'WEB_FRONT_SERVICE_PORT_HTTP=80', `WEB_FRONT_PORT=tcp://${svcIp}:80`, `WEB_FRONT_PORT_80_TCP_ADDR=${svcIp}`, 'WEB_FRONT_PORT_80_TCP_PROTO=tcp']) {
    t.ok(env.stdout.split('\n').includes(line), `the pod has ${line}`);
  }
  // the pod's own interface carries that address
  const ifc = await runCli(envCli, ['exec', b.metadata.name, '--', 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
  t.match(ifc.stdout, new RegExp(`inet ${b.status.podIP.replaceAll('.', '\\.')}/24`));
  // node → pod (an address inside a namespace this test's agent made)
  const body = await (await fetch(`http://${a.status.podIP}:8080/`)).text();
  t.equal(body.trim(), a.metadata.name, 'the node reaches pod a');
  t.equal(links(bridge).length, 4, 'four veths on the node bridge: the pods’ and the pool’s');
  const cni = new Cni({ node: NODE, podCidr: node.spec.podCIDR, dataDir: join(dir, 'cni') });
  t.same(cni.allocations().sort(), [a.status.podIP, b.status.podIP, ...refilled.ips].sort(), 'host-local holds exactly their two addresses and the pool’s two');

  // killed while its pods run, the agent leaves them and its pool behind: the next agent adopts
  // the pods (their sandboxes came from the pool), removes the old pool and makes its own
  agent.kill('SIGKILL');
  await new Promise((r) => agent.once('exit', r));
  t.same(pool(dir).ips.sort(), refilled.ips.sort(), 'the killed agent’s pool is left');
  const next = await startAgent(t, srv.url, NODE, dir);
  const fresh = await waitFor(() => {
    const p = pool(dir);
    return p.ips.length === 2 && p.pids.every((pid) => !refilled.pids.includes(pid)) ? p : undefined;
  }, 'a new pool');
  for (const pid of refilled.pids) await waitFor(() => !existsSync(`/proc/${pid}`), `the old pooled sandbox ${pid} to end`);
  // the pods come back Running (adopted, or replaced while the node was silent: either way the
  // addresses held are exactly the running pods' and the pool's; a replaced pod's went back)
  const steady = await waitFor(async () => {
    const ps = (await res.list(kindInfo('Pod')!)).filter((p: KObject) => p.status?.phase === 'Running' && p.status.podIP && !p.metadata.deletionTimestamp);
    const held = [...ps.map((p: KObject) => p.status.podIP as string), ...pool(dir).ips].sort().join(' ');
    return ps.length === 2 && pool(dir).ips.length === 2 && cni.allocations().sort().join(' ') === held ? held : undefined;
  }, 'two pods Running under the new agent, host-local holding exactly their addresses and the pool’s', 30_000);
  t.ok(steady, `addresses held: ${steady}`);

  // the pods go: their addresses (known to CNI by their pool names) are given back
  await res.send(kindInfo('Deployment')!, 'default', 'web', { type: 'delete' });
  await waitNodeEmpty(dir, NODE);
  const left = await waitFor(() => (links(bridge).length === 2 && cni.allocations().sort().join(' ') === pool(dir).ips.sort().join(' ') ? pool(dir) : undefined), 'the pods’ veths and addresses released');
  t.equal(left.ips.length, 2, 'only the pool’s two addresses are held');

  // the agent stops: the pool leaves the network and its sandboxes end
  next.kill('SIGTERM');
  await new Promise((r) => next.once('exit', r));
  t.equal(links(bridge).length, 0, 'no veth left');
  t.same(cni.allocations(), [], 'no address left');
  t.same(pool(dir).pids, [], 'no pooled sandbox file left');
  for (const pid of left.pids) t.notOk(existsSync(`/proc/${pid}`), `pooled sandbox ${pid} ended`);
});
