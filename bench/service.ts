/**
 * `npm run bench -- service`: the Service data path and how fast it follows the endpoints.
 *
 * The bench runs in a network namespace of its own (everything it creates goes with it): a node's
 * pod bridge with three "pods" (network namespaces with a small Node HTTP server each), a real
 * nats-server and control plane, and the node's NodeNetwork (nftables load balancer) as the agent
 * runs it.
 *
 * - directRps: HTTP requests/s from the node to the pods' IPs (round robin over the three), a new
 *   connection per request (the cost a load balancer adds is per connection).
 * - serviceRps: the same client, same concurrency, to the Service's cluster IP. ratio = service / direct.
 * - userspaceRps: the same through a userspace TCP proxy in Node (what kube-proxy's old userspace
 *   mode did), measured for the choice of data path; userspaceRatio = userspace / direct.
 * - endpointUpdateP50Ms / P99Ms: a pod's Ready condition written to the store → the load balancers
 *   of all three nodes (three NodeNetworks) have applied rules with (or without) that pod.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Bus, ControlPlane, Informer, KvStore, Resources, startNatsServer } from '../actors/index.js';
import { NodeNetwork, bridgeName, readNetworkConfig, type ServicePortRule } from '../node-agent/index.js';
import { kindInfo, normalize, type KObject } from '../protocol/index.js';
import { percentile, round1, round2 } from './stats.js';

const main = fileURLToPath(new URL('./main.js', import.meta.url));
const POD = kindInfo('Pod')!;

const SERVER = `const http = require('node:http');
http.createServer((req, res) => res.end('ok')).listen(8080, '0.0.0.0', () => console.log('ready'));`;

const CLIENT = `const http = require('node:http');
const urls = JSON.parse(process.argv[1]); const conc = Number(process.argv[2]); const ms = Number(process.argv[3]);
let ok = 0, fail = 0, i = 0; const end = Date.now() + ms; const t0 = Date.now();
function one() {
  if (Date.now() >= end) return Promise.resolve();
  const u = urls[i++ % urls.length];
  return new Promise((r) => {
    // a new connection per request, closed by the client (its TIME_WAIT stays here, where ports are reused)
    const q = http.get(u, { agent: false, headers: { connection: 'keep-alive' } }, (res) => { res.resume(); res.on('end', () => { res.statusCode === 200 ? ok++ : fail++; q.destroy(); r(); }); });
    q.on('error', () => { fail++; r(); });
  }).then(one);
}
Promise.all(Array.from({ length: conc }, one)).then(() => console.log(JSON.stringify({ rps: ok / ((Date.now() - t0) / 1000), fail })));`;

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

async function load(urls: string[], conc = 32, ms = 3000): Promise<{ rps: number; fail: number }> {
  const c = spawn(process.execPath, ['-e', CLIENT, JSON.stringify(urls), String(conc), String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  c.stdout.on('data', (d) => (out += d));
  await new Promise((r) => c.once('exit', r));
  return JSON.parse(out.trim().split('\n').pop()!) as { rps: number; fail: number };
}

/** A userspace proxy: each accepted connection piped to the next pod, round robin. */
function userspaceProxy(targets: string[]): Promise<Server> {
  let i = 0;
  const srv = createServer((client) => {
    const up = connect(8080, targets[i++ % targets.length]!);
    client.pipe(up).pipe(client);
    const close = () => {
      client.destroy();
      up.destroy();
    };
    client.on('error', close);
    up.on('error', close);
  });
  return new Promise((r) => srv.listen(18080, '127.0.0.1', () => r(srv)));
}

export async function benchService(): Promise<Record<string, number>> {
  if (process.env.TROUPE_BENCH_NETNS !== '1') {
    // everything runs in a network namespace of its own, which goes when the run ends
    const c = spawn('unshare', ['--net', '--', process.execPath, main, 'service'], { env: { ...process.env, TROUPE_BENCH_NETNS: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: string[] = [];
    createInterface({ input: c.stdout! }).on('line', (l) => lines.push(l));
    const code = await new Promise<number | null>((r) => c.once('exit', r));
    if (code !== 0) throw new Error(`the service bench exited ${code}`);
    const { bench: _bench, ...figures } = JSON.parse(lines[lines.length - 1]!) as Record<string, number>;
    return figures;
  }
  sh('ip', ['link', 'set', 'lo', 'up']);
  // many short connections in a row: reuse TIME_WAIT ports (this namespace only)
  writeFileSync('/proc/sys/net/ipv4/tcp_tw_reuse', '1\n');
  writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', '1024 65000\n');
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-svc-'));
  const tag = `tbs${process.pid}`;
  const podNs = [1, 2, 3].map((i) => `${tag}-p${i}`);
  const servers: ChildProcess[] = [];
  const nets: NodeNetwork[] = [];
  const quiet = pino({ level: 'silent' });
  const srv = await startNatsServer({ dataDir: join(dir, 'nats') });
  const bus = await Bus.connect({ servers: srv.url, logger: quiet });
  let cp: ControlPlane | undefined;
  let proxy: Server | undefined;
  try {
    cp = await ControlPlane.start({ bus, logger: quiet });
    const kv = await KvStore.open(bus, bus.subjects.stateBucket);
    const config = await readNetworkConfig(kv);
    const res = await Resources.open(bus);
    const start = (node: string, podCidr: string) => NodeNetwork.start({ bus, node, podCidr, bridge: bridgeName(node), nodeIp: '127.0.0.1', config, logger: quiet, dns: false });
    const a = await start('bench-a', '10.244.0.0/24');
    nets.push(a);
    // three pods on node a's bridge, each serving HTTP
    const podIps = podNs.map((_, i) => `10.244.0.${11 + i}`);
    for (let i = 0; i < 3; i++) {
      const ns = podNs[i]!;
      sh('ip', ['netns', 'add', ns]);
      sh('ip', ['link', 'add', `${tag}v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      sh('ip', ['link', 'set', `${tag}v${i}`, 'master', bridgeName('bench-a'), 'up']);
      sh('ip', ['-n', ns, 'addr', 'add', `${podIps[i]}/24`, 'dev', 'eth0']);
      sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', a.gateway]);
      const s = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
      servers.push(s);
      await new Promise<void>((r) => createInterface({ input: s.stdout! }).once('line', () => r()));
    }
    // the pods in the store, Ready, and a Service in front of them
    const uids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const pod = normalize({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `web-${i}`, labels: { app: 'web' } }, spec: { nodeName: 'bench-a', containers: [{ name: 'c', image: 'none' }] } });
      const r = await res.send(POD, 'default', pod.metadata.name, { type: 'apply', object: pod });
      uids.push(r.object!.metadata.uid!);
    }
    const setReady = (i: number, ready: boolean) =>
      res.send(POD, 'default', `web-${i}`, {
        type: 'status',
        uid: uids[i],
        status: { phase: 'Running', podIP: podIps[i], podIPs: [{ ip: podIps[i] }], conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
      });
    for (let i = 0; i < 3; i++) await setReady(i, true);
    await res.apply(normalize({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } }));
    const services = new Informer(bus, kv, kindInfo('Service')!);
    await services.start();
    const deadline = Date.now() + 15_000;
    let applied: ServicePortRule[] = [];
    a.proxy!.onApplied = (rules) => (applied = rules);
    while (!(applied.find((r) => r.id === 'default/web:80')?.endpoints.length === 3)) {
      if (Date.now() > deadline) throw new Error('the Service never reached the load balancer');
      await new Promise((r) => setTimeout(r, 10));
    }
    const clusterIP = services.get('default', 'web')!.spec.clusterIP as string;
    await services.stop();

    // throughput: direct, through the Service, through a userspace proxy; five rounds, interleaved; the median of each
    proxy = await userspaceProxy(podIps);
    const direct: number[] = [];
    const service: number[] = [];
    const userspace: number[] = [];
    let failures = 0;
    await load([`http://${clusterIP}/`], 8, 500); // warm-up
    for (let round = 0; round < 5; round++) {
      for (const [urls, into] of [
        [podIps.map((ip) => `http://${ip}:8080/`), direct],
        [[`http://${clusterIP}/`], service],
        [['http://127.0.0.1:18080/'], userspace],
      ] as [string[], number[]][]) {
        const r = await load(urls);
        into.push(r.rps);
        failures += r.fail;
      }
    }
    const best = (xs: number[]) => percentile(xs, 50);

    // endpoint updates: two more nodes' load balancers, then pod 2 goes unready and ready again
    nets.push(await start('bench-b', '10.244.1.0/24'), await start('bench-c', '10.244.2.0/24'));
    const seen = nets.map(() => ({ has: true, at: 0 }));
    nets.forEach((n, k) => {
      n.proxy!.onApplied = (rules) => {
        const has = rules.find((r) => r.id === 'default/web:80')?.endpoints.some((e) => e.ip === podIps[2]) ?? false;
        if (has !== seen[k]!.has) seen[k] = { has, at: performance.now() };
      };
    });
    for (const n of nets) await n.proxy!.synced();
    await new Promise((r) => setTimeout(r, 200));
    for (const s of seen) s.has = true;
    const updates: number[] = [];
    for (let i = 0; i < 40; i++) {
      const ready = i % 2 === 1;
      const t0 = performance.now();
      await setReady(2, ready);
      const until = Date.now() + 10_000;
      while (!seen.every((s) => s.has === ready && s.at >= t0)) {
        if (Date.now() > until) throw new Error(`the load balancers did not follow pod web-2 (ready=${ready})`);
        await new Promise((r) => setTimeout(r, 1));
      }
      updates.push(Math.max(...seen.map((s) => s.at)) - t0);
    }
    return {
      directRps: Math.round(best(direct)),
      serviceRps: Math.round(best(service)),
      ratio: round2(best(service) / best(direct)),
      userspaceRps: Math.round(best(userspace)),
      userspaceRatio: round2(best(userspace) / best(direct)),
      failedRequests: failures,
      endpointUpdateP50Ms: round1(percentile(updates, 50)),
      endpointUpdateP99Ms: round1(percentile(updates, 99)),
    };
  } finally {
    proxy?.close();
    for (const n of nets) await n.stop().catch(() => undefined);
    await cp?.stop().catch(() => undefined);
    await bus.close().catch(() => undefined);
    await srv.stop();
    for (const s of servers) s.kill('SIGKILL');
    for (const ns of podNs) {
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        // not made
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
