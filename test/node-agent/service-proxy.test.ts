/**
 * The load balancer's rules: what Services and Endpoints turn into, and the nft transactions
 * applied for real in a network namespace this test creates (and deletes).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { buildRuleset, serviceRules, type ServicePortRule } from '../../node-agent/index.js';
import type { KObject } from '../../protocol/index.js';

const run = promisify(execFile);
const cfg = { clusterCidr: '10.244.0.0/16', serviceCidr: '10.96.0.0/16', gateway: '10.244.0.1' };

function svc(name: string, spec: Record<string, unknown>): KObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec } as KObject;
}

t.test('serviceRules: named ports, ready addresses only, headless skipped, affinity, node ports', async (t) => {
  const services = [
    svc('web', { clusterIP: '10.96.0.5', type: 'NodePort', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, ports: [{ name: 'http', port: 80, nodePort: 30080 }, { name: 'metrics', port: 9090 }] }),
    svc('db', { clusterIP: 'None', ports: [{ port: 5432 }] }),
    svc('empty', { clusterIP: '10.96.0.6', ports: [{ port: 53, protocol: 'UDP' }] }),
  ];
  const endpoints: Record<string, unknown> = {
    web: {
      subsets: [
        { addresses: [{ ip: '10.244.1.7' }, { ip: '10.244.1.3' }], notReadyAddresses: [{ ip: '10.244.1.9' }], ports: [{ name: 'http', port: 8080 }, { name: 'metrics', port: 9100 }] },
        { addresses: [{ ip: '10.244.2.4' }], ports: [{ name: 'http', port: 8081 }] },
      ],
    },
  };
  const rules = serviceRules(services, (_ns, name) => endpoints[name] as KObject | undefined);
  t.same(
    rules.map((r) => [r.id, r.clusterIP, r.protocol, r.port, r.nodePort, r.affinitySeconds, r.endpoints.map((e) => `${e.ip}:${e.port}`)]),
    [
      ['default/web:http', '10.96.0.5', 'tcp', 80, 30080, 60, ['10.244.1.3:8080', '10.244.1.7:8080', '10.244.2.4:8081']],
      ['default/web:metrics', '10.96.0.5', 'tcp', 9090, undefined, 60, ['10.244.1.3:9100', '10.244.1.7:9100']],
      ['default/empty:53', '10.96.0.6', 'udp', 53, undefined, undefined, []],
    ],
  );
});

t.test('the nft transaction: applied, re-applied, shrunk; affinity entries survive a sync', async (t) => {
  const ns = `tsp${process.pid}`;
  await run('ip', ['netns', 'add', ns]);
  t.teardown(() => run('ip', ['netns', 'del', ns]).catch(() => undefined));
  const nft = async (args: string[], input?: string) => {
    const p = run('ip', ['netns', 'exec', ns, 'nft', ...args]);
    if (input !== undefined) p.child.stdin!.end(input);
    return (await p).stdout;
  };
  const table = 'troupe_test';
  const web: ServicePortRule = {
    id: 'default/web:80',
    clusterIP: '10.96.0.5',
    protocol: 'tcp',
    port: 80,
    nodePort: 30080,
    affinitySeconds: 100,
    endpoints: [
      { ip: '10.244.1.5', port: 8080 },
      { ip: '10.244.1.6', port: 8080 },
    ],
  };
  const other: ServicePortRule = { id: 'default/other:53', clusterIP: '10.96.0.6', protocol: 'udp', port: 53, endpoints: [{ ip: '10.244.2.2', port: 5353 }] };
  const first = buildRuleset(table, cfg, [web, other], { chains: new Set(), sets: new Set() }, ['192.0.2.10']);
  await nft(['-f', '-'], first.script);
  let listed = await nft(['list', 'table', 'ip', table]);
  t.match(listed, /10\.96\.0\.5 \. tcp \. 80 : goto svc-/, 'the cluster IP in the service map');
  t.match(listed, /tcp \. 30080 : goto np-/, 'the node port in its map');
  t.match(listed, /numgen random mod 2 vmap/, 'two endpoints, picked at random');
  t.match(listed, /dnat to 10\.244\.1\.5:8080/);
  t.match(listed, /dnat to 10\.244\.2\.2:5353/);
  t.match(listed, /update @aff-\w+ \{ ip saddr \}/, 'affinity entries refreshed per connection');
  t.match(listed, /snat to 10\.244\.0\.1/, 'marked traffic leaves from the pod gateway');
  t.match(listed, /elements = \{ 192\.0\.2\.10 \}/, 'the nodes pods may reach');
  const aff = [...first.sets].find((s) => s.startsWith('aff-'))!;
  await nft(['add', 'element', 'ip', table, aff, '{ 10.244.9.9 }']);

  // the same rules again: idempotent, and the client's affinity entry is still there
  const again = buildRuleset(table, cfg, [web, other], { chains: first.chains, sets: first.sets }, ['192.0.2.10']);
  await nft(['-f', '-'], again.script);
  t.match(await nft(['list', 'set', 'ip', table, aff]), /10\.244\.9\.9/, 'affinity entries survive a sync');
  t.same([...again.chains].sort(), [...first.chains].sort(), 'the same chains');
  t.equal([...(await nft(['list', 'table', 'ip', table])).matchAll(/dnat to/g)].length, 3, 'no rule doubled');

  // one endpoint and the other service gone: their chains and sets go in the same transaction
  const shrunk = buildRuleset(table, cfg, [{ ...web, endpoints: [web.endpoints[1]!] }], { chains: again.chains, sets: again.sets });
  await nft(['-f', '-'], shrunk.script);
  listed = await nft(['list', 'table', 'ip', table]);
  t.notMatch(listed, /10\.244\.1\.5/, 'the removed endpoint has no rule left');
  t.notMatch(listed, /10\.96\.0\.6/, 'the removed service has no rule left');
  t.notMatch(listed, new RegExp(`set ${aff} `), "the removed endpoint's affinity set is gone");
  t.match(listed, /goto sep-\w+ \}|vmap \{ 0 : goto sep-/, 'the remaining endpoint is still picked');
  const chains = [...listed.matchAll(/chain ((?:svc|sep|np)-\w+)/g)].map((m) => m[1]).sort();
  t.same(chains, [...shrunk.chains].filter((c) => /^(svc|sep|np)-/.test(c)).sort(), 'exactly the wanted chains exist');

  // nothing wanted: an empty data path, still refusing new connections to the service range
  const none = buildRuleset(table, cfg, [], { chains: shrunk.chains, sets: shrunk.sets });
  await nft(['-f', '-'], none.script);
  listed = await nft(['list', 'table', 'ip', table]);
  t.notMatch(listed, /chain (svc|sep|np)-/);
  t.match(listed, /ct state new ip daddr 10\.96\.0\.0\/16 reject/);
});
