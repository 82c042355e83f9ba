/**
 * Services end to end on two "machines": two network-namespace hosts on a lab switch, each
 * running `troupe agent` (real crun, real CNI bridge, host-gw routes, nftables load balancing,
 * the node's DNS), with the control plane and nats-server on the test's side of the link.
 *
 * The web pods (busybox httpd serving its pod's name) all run on host 2; the client pod and the
 * first host's own requests come from host 1, so every request to the Service crosses nodes.
 * Traffic goes only to addresses inside the lab's namespaces.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { Bus, ControlPlane, Informer, KvStore, startNatsServer } from '../../actors/index.js';
import { bridgeName, proxyTable, serviceInterface } from '../../node-agent/index.js';
import { readdirIf } from '../../node-agent/files.js';
import { kindInfo, type KObject } from '../../protocol/index.js';
import { runCli, startAgent } from '../helpers/agent.js';
import { quiet } from '../helpers/cluster.js';
import { linkExists, makeLab, netnsExists } from '../helpers/lab.js';
import { tempDir, waitFor } from '../helpers/nats.js';

t.setTimeout(280_000);

const examples = fileURLToPath(new URL('../../../examples/', import.meta.url));
const LAB = 7;

t.test('ClusterIP, NodePort, DNS, affinity, readiness and graceful removal across two nodes', async (t) => {
  const dir = tempDir(t);
  const lab = await makeLab(t, LAB, 2);
  const [h1, h2] = lab.hosts as [(typeof lab.hosts)[0], (typeof lab.hosts)[0]];
  const nats = await startNatsServer({ dataDir: join(dir, 'nats'), port: 0, host: lab.gatewayIp });
  t.teardown(() => nats.stop());
  const bus = await Bus.connect({ servers: nats.url, logger: quiet });
  t.teardown(() => bus.close());
  const cp = await ControlPlane.start({ bus, logger: quiet, clusterCidr: '10.248.0.0/16', serviceCidr: '10.97.0.0/16' });
  t.teardown(() => cp.stop());
  const home = join(dir, 'home');
  const env = { ...process.env, TROUPE_HOME: home, TROUPE_SERVER: nats.url };
  const troupe = async (...args: string[]) => {
    const r = await runCli(env, args);
    if (r.code !== 0) throw new Error(`troupe ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  for (const h of lab.hosts) await startAgent(t, nats.url, h.name, join(dir, h.name), ['--node-ip', h.ip, '--drain', '200'], ['nsenter', `--net=/run/netns/${h.netns}`]);
  await promisify(execFile)('bash', [join(examples, 'build-myapp.sh')], { env });

  const kv = await KvStore.open(bus, bus.subjects.stateBucket);
  const pods = new Informer(bus, kv, kindInfo('Pod')!);
  const endpoints = new Informer(bus, kv, kindInfo('Endpoints')!);
  const services = new Informer(bus, kv, kindInfo('Service')!);
  for (const i of [pods, endpoints, services]) await i.start();
  t.teardown(() => Promise.all([pods.stop(), endpoints.stop(), services.stop()]));
  const readyIps = (name: string) => ((endpoints.get('default', name) as { subsets?: { addresses?: { ip: string }[] }[] } | undefined)?.subsets ?? []).flatMap((s) => (s.addresses ?? []).map((a) => a.ip)).sort();
  const webPods = () => [...pods.list()].filter((p) => p.metadata.labels?.app === 'web' && !p.metadata.deletionTimestamp);
  const readyWeb = () => webPods().filter((p) => p.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True'));

  // the nodes route to each other's pods (host-gw)
  await waitFor(async () => (await h1.exec(['ip', 'route', 'show', 'proto', '222'])).stdout.includes(`via ${h2.ip}`), "host 1's route to host 2's pods");
  await waitFor(async () => (await h2.exec(['ip', 'route', 'show', 'proto', '222'])).stdout.includes(`via ${h1.ip}`), "host 2's route to host 1's pods");

  const manifest = (name: string, text: string) => {
    const f = join(dir, `${name}.yaml`);
    writeFileSync(f, text);
    return f;
  };
  const web = (version: string, replicas: number) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {kubernetes.io/hostname: ${h2.name}}
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: myapp:1.0
        command: ["/bin/sh", "-c", "echo \\"$(hostname)\\" > /www/index.html; touch /www/ready; httpd -f -p 8080 -h /www & trap \\"kill $!; exit 0\\" TERM; wait"]
        env: [{name: VERSION, value: "${version}"}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1, failureThreshold: 1}
`;
  await troupe('apply', '-f', manifest('web', web('1', 3)));
  await troupe(
    'apply',
    '-f',
    manifest(
      'svc',
      `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: hostport}
spec:
  nodeSelector: {kubernetes.io/hostname: ${h2.name}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: myapp:1.0
    ports: [{containerPort: 8080, hostPort: 8088}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeSelector: {kubernetes.io/hostname: ${h1.name}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: myapp:1.0
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
`,
    ),
  );
  await waitFor(() => readyWeb().length === 3 && readyIps('web').length === 3, '3 web pods ready and in the endpoints', 60_000);
  await waitFor(() => [...pods.list()].some((p) => p.metadata.name === 'client' && p.status?.phase === 'Running'), 'the client pod running', 30_000);
  const svc = services.get('default', 'web')!;
  const clusterIP = svc.spec.clusterIP as string;
  const nodePort = svc.spec.ports[0].nodePort as number;
  t.match(clusterIP, /^10\.97\./, 'a cluster IP from the service CIDR');
  t.ok(nodePort >= 30000 && nodePort <= 32767, 'a node port from the range');
  const names = webPods().map((p) => p.metadata.name).sort();
  t.ok(webPods().every((p) => p.spec.nodeName === h2.name), 'every web pod is on host 2');

  const tally = (out: string) => {
    const m = new Map<string, number>();
    for (const l of out.split('\n').map((x) => x.trim()).filter(Boolean)) m.set(l, (m.get(l) ?? 0) + 1);
    return m;
  };
  const loop = (url: string, n = 60) => `i=0; while [ $i -lt ${n} ]; do timeout 5 wget -q -O - ${url} || echo FAILED; i=$((i+1)); done`;
  // the host's own requests: node's http client, a new connection each (busybox wget is for pods)
  const httpLoop = `const http = require('node:http'); const [url, n] = process.argv.slice(1);
(async () => { for (let i = 0; i < Number(n); i++) await new Promise((done) => {
  const req = http.get(url, { agent: false, timeout: 3000 }, (res) => { let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => { console.log(res.statusCode === 200 ? b.trim() : 'FAILED'); done(); }); });
  req.on('timeout', () => req.destroy(new Error('timeout'))); req.on('error', () => { console.log('FAILED'); done(); }); }); })();`;
  const fromHost = async (h: typeof h1, url: string, n = 60) => tally((await h.exec([process.execPath, '-e', httpLoop, url, String(n)], 60_000)).stdout);
  const fromPod = async (pod: string, url: string, n = 60) => tally(await troupe('exec', pod, '--', 'sh', '-c', loop(url, n)));
  const reachesAll = (m: Map<string, number>, what: string) => {
    t.same([...m.keys()].sort(), names, `${what}: the 3 replicas, no failure`);
    t.equal([...m.values()].reduce((a, b) => a + b, 0), 60, `${what}: 60 answers`);
  };

  // the pod bridge keeps one MAC while pods come and go (pods' ARP entries for their gateway stay good)
  const bridgeMacOf = async (h: typeof h1) => (JSON.parse((await h.exec(['ip', '-j', 'link', 'show', 'dev', bridgeName(h.name)])).stdout) as { address: string }[])[0]!.address;
  const macBefore = await bridgeMacOf(h2);

  // the cluster IP is bound on each node's service interface
  for (const h of lab.hosts) t.match((await h.exec(['ip', '-4', 'addr', 'show', 'dev', serviceInterface(h.name)])).stdout, `inet ${clusterIP}/32`, `${h.name} holds the cluster IP locally`);

  reachesAll(await fromHost(h1, `http://${clusterIP}/`), 'from host 1 (no local endpoint) to the cluster IP');
  reachesAll(await fromHost(h2, `http://${clusterIP}/`), 'from host 2 to the cluster IP');
  reachesAll(await fromPod('client', `http://${clusterIP}/`), 'from a pod on host 1 to the cluster IP');
  reachesAll(await fromPod('client', 'http://web/'), 'from the pod through the short DNS name');
  reachesAll(await fromPod('client', 'http://web.default.svc.cluster.local/'), 'from the pod through the full DNS name');
  reachesAll(await fromHost(h1, `http://${h1.ip}:${nodePort}/`), 'to host 1 node port (pods elsewhere)');
  reachesAll(await fromHost(h2, `http://${h2.ip}:${nodePort}/`), 'to host 2 node port');
  reachesAll(await fromPod('client', `http://${h2.ip}:${nodePort}/`), 'from the pod to host 2 node port');

  // hostPort (CNI portmap, chained after the bridge): the node's address and port reach the pod
  await waitFor(() => [...pods.list()].some((p) => p.metadata.name === 'hostport' && p.status?.phase === 'Running'), 'the hostPort pod running', 30_000);
  const viaHostPort = await fromHost(h1, `http://${h2.ip}:8088/`, 10);
  t.same([...viaHostPort.entries()], [['hello from hostport', 10]], "host 1 reaches the pod through host 2's port 8088");
  t.match((await h2.exec(['iptables', '-t', 'nat', '-S'])).stdout, /--dport 8088/, "portmap's rule is on host 2 while the pod runs");

  // DNS: A records, headless → pod IPs, unknown → NXDOMAIN, outside the cluster → refused
  const ns = await troupe('exec', 'client', '--', 'nslookup', 'web-headless.default.svc.cluster.local');
  const podIps = webPods().map((p) => p.status.podIP as string).sort();
  t.same([...ns.matchAll(/Address: (10\.248\.\d+\.\d+)/g)].map((m) => m[1]).sort(), podIps, 'the headless service resolves to the 3 pod IPs');
  const a = await troupe('exec', 'client', '--', 'nslookup', 'web.default.svc.cluster.local');
  t.match(a, `Address: ${clusterIP}`, 'the service name resolves to its cluster IP');
  const missing = await runCli(env, ['exec', 'client', '--', 'nslookup', 'nope.default.svc.cluster.local']);
  t.match(missing.stdout + missing.stderr, /NXDOMAIN/, 'a service that does not exist: NXDOMAIN');
  const resolv = await troupe('exec', 'client', '--', 'cat', '/etc/resolv.conf');
  t.match(resolv, /^nameserver 10\.248\.\d+\.1$/m, "the pod's nameserver is its node's gateway");
  t.match(resolv, /^search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local$/m, 'the Kubernetes search path');

  // sessionAffinity: ClientIP → one client, one replica
  const stickyIp = services.get('default', 'sticky')!.spec.clusterIP as string;
  const sticky = await fromPod('client', `http://${stickyIp}/`, 30);
  t.equal(sticky.size, 1, 'every request of one client reaches the same replica');
  t.ok(names.includes([...sticky.keys()][0]!), 'and it is a replica');

  // readiness: a pod failing its probe leaves the rotation and comes back when it passes
  const [out, ...rest] = names as [string, ...string[]];
  await troupe('exec', out, '--', 'rm', '/www/ready');
  await waitFor(() => readyIps('web').length === 2, 'the unready pod out of the endpoints', 15_000);
  const without = await fromPod('client', `http://${clusterIP}/`);
  t.same([...without.keys()].sort(), rest.sort(), 'the unready pod gets no request');
  await troupe('exec', out, '--', 'touch', '/www/ready');
  await waitFor(() => readyIps('web').length === 3, 'the pod back in the endpoints', 15_000);
  reachesAll(await fromPod('client', `http://${clusterIP}/`), 'back in rotation');

  // under a steady request loop: scale 3 → 1, then a rolling update; no request fails
  const steady = async (change: () => Promise<void>, what: string) => {
    await troupe('exec', 'client', '--', 'rm', '-f', '/tmp/stop');
    const loopRun = runCli(env, ['exec', 'client', '--', 'sh', '-c', `ok=0; bad=0; while [ ! -f /tmp/stop ]; do if timeout 5 wget -q -O /dev/null http://${clusterIP}/; then ok=$((ok+1)); else bad=$((bad+1)); echo "failed after $ok at $(date +%T)"; fi; done; echo "ok=$ok bad=$bad"`]);
    await change();
    await troupe('exec', 'client', '--', 'touch', '/tmp/stop');
    const r = await loopRun;
    const m = /ok=(\d+) bad=(\d+)/.exec(r.stdout);
    t.ok(m, `${what}: the loop reported (${r.stdout.trim()} ${r.stderr.trim()})`);
    t.ok(Number(m?.[1]) > 20, `${what}: requests flowed throughout (${m?.[1]})`);
    t.equal(Number(m?.[2]), 0, `${what}: no request failed`);
  };
  await steady(async () => {
    await troupe('scale', 'deploy', 'web', '--replicas', '1');
    await waitFor(() => [...pods.list()].filter((p) => p.metadata.labels?.app === 'web').length === 1 && readyIps('web').length === 1, 'one web pod left', 60_000);
  }, 'scale 3 → 1');
  await steady(async () => {
    await troupe('apply', '-f', manifest('web', web('2', 1)));
    await waitFor(
      () => {
        const all = [...pods.list()].filter((p) => p.metadata.labels?.app === 'web');
        return all.length === 1 && all[0]!.spec.containers[0].env.some((e: { value: string }) => e.value === '2') && readyIps('web').length === 1;
      },
      'the rolling update done',
      60_000,
    );
  }, 'rolling update');

  t.equal(await bridgeMacOf(h2), macBefore, "host 2's bridge has the same MAC after pods came and went");

  // everything deleted: endpoints, rules, addresses and IPAM allocations go
  await troupe('delete', 'svc', 'web', 'sticky', 'web-headless');
  await troupe('delete', 'deploy', 'web');
  await troupe('delete', 'pod', 'client', 'hostport');
  await waitFor(() => [...pods.list()].length === 0, 'no pod left', 60_000);
  for (const h of lab.hosts) {
    await waitFor(async () => !(await h.exec(['ip', '-4', 'addr', 'show', 'dev', serviceInterface(h.name)])).stdout.includes('inet '), `${h.name}: no cluster IP left on its service interface`);
    const table = (await h.exec(['nft', 'list', 'table', 'ip', proxyTable(h.name)])).stdout;
    t.notMatch(table, /chain (svc|sep|np)-/, `${h.name}: no service chain left`);
    t.notMatch(table, /set aff-/, `${h.name}: no affinity set left`);
    // (the node's pool of ready sandboxes keeps its own: exactly those are left)
    const allocated = () => readdirIf(join(dir, h.name, 'cni', `troupe-${h.name}`)).filter((f) => /^\d+\./.test(f)).sort().join(' ');
    const pooled = () => readdirIf(join(dir, h.name, 'runtime', 'pool')).filter((f) => f.endsWith('.ip')).map((f) => readFileSync(join(dir, h.name, 'runtime', 'pool', f), 'utf8').trim()).sort().join(' ');
    await waitFor(() => allocated() === pooled(), `${h.name}: every pod address given back (${allocated()} held, the pool has ${pooled()})`).catch(() => undefined);
    t.equal(allocated(), pooled(), `${h.name}: every pod address given back`);
    t.notMatch((await h.exec(['iptables', '-t', 'nat', '-S'])).stdout, /8088/, `${h.name}: no host port rule left`);
  }
  // the lab goes (agents, namespaces with their bridges, routes and tables, the veth)
  await lab.destroy();
  for (const n of lab.netnsNames) t.notOk(await netnsExists(n), `netns ${n} is gone`);
  t.notOk(await linkExists(lab.hostVeth), `link ${lab.hostVeth} is gone`);
});
