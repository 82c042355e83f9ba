/**
 * Graceful removal as the node network does it: a pod leaving a Service is held until every
 * node's load balancer has applied the store revision without it. The node's own load balancer
 * is real (nftables, in this machine's namespace, on a bridge and table of a node name only this
 * test uses); the second node is its report on the bus, published by the test.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { Bus, ControlPlane, Informer, KvStore, Resources } from '../../actors/index.js';
import { NodeNetwork, bridgeName, proxyTable, readNetworkConfig } from '../../node-agent/index.js';
import { PROXY_SYNCED_TYPE, kindInfo, normalize, proxySyncedBody } from '../../protocol/index.js';
import { removeBridge } from '../helpers/agent.js';
import { quiet } from '../helpers/cluster.js';
import { waitFor, withNats } from '../helpers/nats.js';

const run = promisify(execFile);
const POD = kindInfo('Pod')!;
const NODE = `nn-${process.pid}`;

t.test('a pod leaving a Service is held until every load balancer has dropped it', async (t) => {
  const nats = await withNats(t);
  const bus = await Bus.connect({ servers: nats.url, logger: quiet });
  t.teardown(() => bus.close());
  const cp = await ControlPlane.start({ bus, logger: quiet, clusterCidr: '10.243.0.0/16', serviceCidr: '10.95.0.0/16' });
  t.teardown(() => cp.stop());
  const kv = await KvStore.open(bus, bus.subjects.stateBucket);
  const res = await Resources.open(bus);
  const config = await readNetworkConfig(kv);
  t.same(config, { clusterCIDR: '10.243.0.0/16', serviceCIDR: '10.95.0.0/16', clusterDomain: 'cluster.local' }, 'the control plane publishes the cluster network');
  t.teardown(() => removeBridge(NODE));
  const net = await NodeNetwork.start({ bus, node: NODE, podCidr: '10.243.7.0/24', bridge: bridgeName(NODE), nodeIp: '127.0.0.1', config, logger: quiet, dns: false, drainMs: 10 });
  t.teardown(() => net.stop());

  // two ready pods behind a Service (objects only: no container needs to run for the rules)
  const ips = ['10.243.7.20', '10.243.7.21'];
  const uids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await res.send(POD, 'default', `web-${i}`, { type: 'apply', object: normalize({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `web-${i}`, labels: { app: 'web' } }, spec: { nodeName: NODE, containers: [{ name: 'c', image: 'none' }] } }) });
    uids.push(r.object!.metadata.uid!);
  }
  const status = (i: number, ready: boolean) =>
    res.send(POD, 'default', `web-${i}`, { type: 'status', uid: uids[i], status: { phase: 'Running', podIP: ips[i], podIPs: [{ ip: ips[i] }], conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } });
  await status(0, true);
  await status(1, true);
  await res.apply(normalize({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } }));
  const table = async () => (await run('nft', ['list', 'table', 'ip', proxyTable(NODE)])).stdout;
  await waitFor(async () => (await table()).includes(`dnat to ${ips[1]}:8080`) && (await table()).includes(`dnat to ${ips[0]}:8080`), 'both pods in the load balancer');

  // a second node's load balancer, reporting a revision from before the pod left
  if (!bus.codec.types.has(PROXY_SYNCED_TYPE)) bus.codec.types.register(PROXY_SYNCED_TYPE, proxySyncedBody);
  const endpoints = new Informer(bus, kv, kindInfo('Endpoints')!);
  await endpoints.start();
  t.teardown(() => endpoints.stop());
  let otherRevision = endpoints.revision;
  let reports = 0;
  const report = () => {
    bus.publish(bus.subjects.nodeProxy('other-node'), PROXY_SYNCED_TYPE, { node: 'other-node', revision: otherRevision });
    reports++;
  };
  report();
  const timer = setInterval(report, 20);
  t.teardown(() => clearInterval(timer));

  // an address that served nothing is not held
  await net.drain('10.243.7.99', 10_000);
  t.pass('a pod that was in no Service is stopped at once');

  // pod 1 leaves (unready); its drain waits for the other node
  let drained = false;
  const draining = net.drain(ips[1], 20_000).then(() => (drained = true));
  await status(1, false);
  await waitFor(async () => !(await table()).includes(ips[1]!), "this node's load balancer drops the pod");
  const seen = reports;
  await waitFor(() => reports >= seen + 5, 'the other node reports (still behind) a few more times');
  t.notOk(drained, 'not drained while another load balancer may still send it traffic');
  t.match(await table(), `dnat to ${ips[0]}:8080`, 'the other pod still serves');
  await waitFor(() => !JSON.stringify(endpoints.get('default', 'web')).includes(`"${ips[1]}"`) || JSON.stringify(endpoints.get('default', 'web')).includes('notReadyAddresses'), 'the Endpoints without the pod as ready');
  otherRevision = endpoints.revision;
  await draining;
  t.ok(drained, 'drained once every load balancer has the revision without it');
});
