/**
 * The node's load balancer for Services (kube-proxy's job), in nftables.
 *
 * Every cluster IP is bound on the node's service interface (`ts-<hash>`, a dummy device, or a
 * bridge with no port where the kernel has no dummy driver), as kube-proxy's IPVS mode does: the
 * address is local, so traffic aimed at it never leaves the node even when a rule is missing, and
 * an input filter rejects what no rule translated (a Service without ready endpoints answers
 * "connection refused" at once, and never reaches a host daemon on the same port).
 *
 * One table per node (`troupe_<hash>`), written as one nft transaction per sync:
 *  - `services` (from prerouting and output): `daddr . proto . dport` → the service port's chain
 *    through a verdict map; node ports through a second map on local addresses.
 *  - `svc-*`: picks an endpoint uniformly (`numgen random`), or the client's previous one while its
 *    ClientIP affinity entry lives (one timed set per endpoint, refreshed by each new connection).
 *  - `sep-*`: DNAT to the endpoint. Traffic from outside the cluster CIDR (the host itself, a
 *    node port), and a pod reaching itself through its Service (hairpin), is marked and leaves
 *    with the node's pod gateway as source, so that replies come back through this node's
 *    conntrack (that address is routable from every pod and node, unlike the node's own IP).
 *  - `filter-forward`: pods reach pods, Services and nodes; a new connection from a pod to any
 *    other address is refused (no egress NAT: nothing a pod sends leaves the cluster).
 * Chains and maps are flushed and refilled in place, so the affinity sets of endpoints that stay
 * keep their entries across syncs; chains and sets no longer wanted are deleted in the same
 * transaction. Existing connections keep their conntrack entry when their endpoint leaves.
 */
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import type { KObject } from '../protocol/index.js';
import type { Logger } from '../supervisor/index.js';
import { RuntimeError } from './errors.js';

export const MASQ_MARK = 0x4000;

export interface ProxyConfig {
  /** Pods' addresses (all nodes): traffic from elsewhere is masqueraded. */
  clusterCidr: string;
  serviceCidr: string;
  /**
   * The node's pod gateway: masqueraded traffic leaves with this source, an address of the
   * cluster CIDR that every pod and node routes back to this node.
   */
  gateway: string;
}

export interface Endpoint {
  ip: string;
  port: number;
}

/** One service port as the data path sees it. */
export interface ServicePortRule {
  /** namespace/name:port-name (or the port number when it has no name). */
  id: string;
  clusterIP: string;
  protocol: 'tcp' | 'udp' | 'sctp';
  port: number;
  nodePort?: number;
  /** ClientIP affinity timeout in seconds (absent: none). */
  affinitySeconds?: number;
  endpoints: Endpoint[];
}

function h(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}

export function nodeHash(node: string): string {
  return createHash('sha256').update(node).digest('hex').slice(0, 8);
}

/** The node's nft table and service interface (at most 15 characters, as Linux wants). */
export function proxyTable(node: string): string {
  return `troupe_${nodeHash(node)}`;
}
export function serviceInterface(node: string): string {
  return `ts-${nodeHash(node)}`;
}

/**
 * What the Services and their Endpoints ask of the data path: one rule per port of each Service
 * that has a cluster IP (headless ones have none: DNS answers for them), with the Ready
 * addresses of the Endpoints subset whose port has the same name.
 */
export function serviceRules(services: Iterable<KObject>, endpointsOf: (ns: string, name: string) => KObject | undefined): ServicePortRule[] {
  const out: ServicePortRule[] = [];
  for (const svc of services) {
    const ip = svc.spec?.clusterIP as string | undefined;
    if (!ip || ip === 'None') continue;
    const ep = endpointsOf(svc.metadata.namespace!, svc.metadata.name);
    const affinity = svc.spec.sessionAffinity === 'ClientIP' ? ((svc.spec.sessionAffinityConfig?.clientIP?.timeoutSeconds as number | undefined) ?? 10_800) : undefined;
    const ports = (svc.spec.ports ?? []) as { name?: string; port: number; protocol?: string; nodePort?: number }[];
    for (const p of ports) {
      const endpoints: Endpoint[] = [];
      for (const subset of ((ep as { subsets?: unknown[] } | undefined)?.subsets ?? []) as { addresses?: { ip: string }[]; ports?: { name?: string; port: number; protocol?: string }[] }[]) {
        const sp = (subset.ports ?? []).find((x) => (x.name ?? '') === (p.name ?? '') && (x.protocol ?? 'TCP') === (p.protocol ?? 'TCP'));
        if (!sp) continue;
        for (const a of subset.addresses ?? []) endpoints.push({ ip: a.ip, port: sp.port });
      }
      endpoints.sort((a, b) => (a.ip === b.ip ? a.port - b.port : a.ip < b.ip ? -1 : 1));
      out.push({
        id: `${svc.metadata.namespace}/${svc.metadata.name}:${p.name ?? p.port}`,
        clusterIP: ip,
        protocol: (p.protocol ?? 'TCP').toLowerCase() as ServicePortRule['protocol'],
        port: p.port,
        ...(svc.spec.type === 'NodePort' && p.nodePort ? { nodePort: p.nodePort } : {}),
        ...(affinity !== undefined ? { affinitySeconds: affinity } : {}),
        endpoints,
      });
    }
  }
  return out;
}

export interface Ruleset {
  /** The nft script (one transaction). */
  script: string;
  chains: Set<string>;
  sets: Set<string>;
}

/**
 * The nft transaction that brings `table` to the rules, given the chains and sets it holds now
 * (those not wanted any more are deleted).
 */
export function buildRuleset(table: string, cfg: ProxyConfig, rules: ServicePortRule[], existing: { chains: Set<string>; sets: Set<string> }, nodeIps: string[] = []): Ruleset {
  const T = `ip ${table}`;
  // declarations first (a rule may only name a chain, map or set that exists), then contents
  const decls: string[] = [`add table ${T}`];
  const lines: string[] = [];
  const chains = new Set<string>();
  const sets = new Set<string>();
  const chain = (name: string, body: string[], base?: string) => {
    chains.add(name);
    decls.push(`add chain ${T} ${name}${base ? ` { ${base}; }` : ''}`, `flush chain ${T} ${name}`);
    for (const r of body) lines.push(`add rule ${T} ${name} ${r}`);
  };
  const mark = `meta mark set meta mark | ${MASQ_MARK}`;
  chain('prerouting', ['jump services'], 'type nat hook prerouting priority -100; policy accept');
  chain('output', ['jump services'], 'type nat hook output priority -100; policy accept');
  chain('postrouting', [`meta mark & ${MASQ_MARK} == ${MASQ_MARK} meta mark set meta mark & ${~MASQ_MARK >>> 0} snat to ${cfg.gateway} fully-random`], 'type nat hook postrouting priority 100; policy accept');
  // a new connection to a service address that no rule translated (no ready endpoint, a port
  // it does not have) is refused; replies to the node's own connections pass
  const reject = [`ct state new ip daddr ${cfg.serviceCidr} meta l4proto tcp reject with tcp reset`, `ct state new ip daddr ${cfg.serviceCidr} reject`];
  chain('filter-input', reject, 'type filter hook input priority -1; policy accept');
  chain('filter-output', reject, 'type filter hook output priority -1; policy accept');
  // pods reach the cluster (pods, services, nodes), never the outside: no egress leaves a node
  chain('filter-forward', [`ct state new ip saddr ${cfg.clusterCidr} ip daddr != { ${cfg.clusterCidr}, ${cfg.serviceCidr} } ip daddr != @node-ips reject with icmp type admin-prohibited`], 'type filter hook forward priority -1; policy accept');
  chain('services', [
    'ip daddr . meta l4proto . th dport vmap @service-ips',
    `fib daddr type local ip daddr != { 127.0.0.0/8, ${cfg.serviceCidr} } meta l4proto . th dport vmap @service-nodeports`,
  ]);
  const ipElems: string[] = [];
  const npElems: string[] = [];
  for (const r of rules) {
    const svc = `svc-${h(r.id)}`;
    const seps = r.endpoints.map((e) => ({ ...e, chain: `sep-${h(`${r.id}|${e.ip}:${e.port}`)}`, set: `aff-${h(`${r.id}|${e.ip}:${e.port}`)}` }));
    const body = [`ip saddr != ${cfg.clusterCidr} ${mark}`];
    if (r.affinitySeconds !== undefined) for (const s of seps) body.push(`ip saddr @${s.set} goto ${s.chain}`);
    if (seps.length > 0) body.push(`numgen random mod ${seps.length} vmap { ${seps.map((s, i) => `${i} : goto ${s.chain}`).join(', ')} }`);
    for (const s of seps) {
      if (r.affinitySeconds !== undefined && !sets.has(s.set)) {
        sets.add(s.set);
        decls.push(`add set ${T} ${s.set} { type ipv4_addr; flags dynamic,timeout; timeout ${r.affinitySeconds}s; }`);
      }
    }
    chain(svc, body);
    for (const s of seps) {
      chain(s.chain, [
        `ip saddr ${s.ip} ${mark}`,
        ...(r.affinitySeconds !== undefined ? [`update @${s.set} { ip saddr }`] : []),
        `meta l4proto ${r.protocol} dnat to ${s.ip}:${s.port}`,
      ]);
    }
    ipElems.push(`${r.clusterIP} . ${r.protocol} . ${r.port} : goto ${svc}`);
    if (r.nodePort) {
      const np = `np-${h(r.id)}`;
      chain(np, [mark, `goto ${svc}`]);
      npElems.push(`${r.protocol} . ${r.nodePort} : goto ${np}`);
    }
  }
  // maps are flushed before the chains their old elements name are deleted
  const map = (name: string, type: string, elems: string[]) => {
    decls.splice(1, 0, `add map ${T} ${name} { type ${type} : verdict; }`, `flush map ${T} ${name}`);
    if (elems.length) lines.push(`add element ${T} ${name} { ${elems.join(', ')} }`);
  };
  map('service-ips', 'ipv4_addr . inet_proto . inet_service', ipElems);
  map('service-nodeports', 'inet_proto . inet_service', npElems);
  decls.splice(1, 0, `add set ${T} node-ips { type ipv4_addr; }`, `flush set ${T} node-ips`);
  if (nodeIps.length) lines.push(`add element ${T} node-ips { ${nodeIps.join(', ')} }`);
  sets.add('node-ips');
  // chains first (rules that name the sets go with them), then sets
  for (const c of existing.chains) if (!chains.has(c)) lines.push(`flush chain ${T} ${c}`);
  for (const c of existing.chains) if (!chains.has(c)) lines.push(`delete chain ${T} ${c}`);
  for (const s of existing.sets) if (!sets.has(s)) lines.push(`delete set ${T} ${s}`);
  return { script: `${[...decls, ...lines].join('\n')}\n`, chains, sets };
}

/** Runs a command; a non-zero exit is a RuntimeError with its output. */
export async function run(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await execa(cmd, args, { input, reject: false, timeout: 15_000 });
  if (r.exitCode !== 0) throw new RuntimeError(`${cmd} ${args.join(' ')} failed: ${(r.stderr || r.stdout || `exit ${r.exitCode}`).trim().slice(0, 2000)}`, { cmd, args });
  return r.stdout;
}

/** The chains and sets a table holds now (empty when there is no such table). */
export async function tableContents(table: string): Promise<{ chains: Set<string>; sets: Set<string> }> {
  const r = await execa('nft', ['-j', 'list', 'table', 'ip', table], { reject: false });
  const chains = new Set<string>();
  const sets = new Set<string>();
  if (r.exitCode !== 0) return { chains, sets };
  for (const item of (JSON.parse(r.stdout) as { nftables: Record<string, { name?: string; table?: string }>[] }).nftables) {
    if (item.chain?.name) chains.add(item.chain.name);
    if (item.set?.name) sets.add(item.set.name);
  }
  return { chains, sets };
}

/** Local addresses on an interface (empty when it does not exist). */
async function addressesOn(dev: string): Promise<Set<string>> {
  const r = await execa('ip', ['-j', '-4', 'addr', 'show', 'dev', dev], { reject: false });
  const out = new Set<string>();
  if (r.exitCode !== 0) return out;
  for (const l of JSON.parse(r.stdout || '[]') as { addr_info?: { local: string }[] }[]) for (const a of l.addr_info ?? []) out.add(a.local);
  return out;
}

/** Creates a link that is up and carries nothing: dummy where the kernel has it, else a bridge without ports. */
export async function ensureLocalInterface(dev: string): Promise<void> {
  const exists = await execa('ip', ['link', 'show', 'dev', dev], { reject: false });
  if (exists.exitCode !== 0) {
    const dummy = await execa('ip', ['link', 'add', dev, 'type', 'dummy'], { reject: false });
    if (dummy.exitCode !== 0) await run('ip', ['link', 'add', dev, 'type', 'bridge']);
  }
  await run('ip', ['link', 'set', dev, 'up']);
}

export interface ServiceProxyOptions {
  node: string;
  config: ProxyConfig;
  logger: Logger;
}

/**
 * Keeps the node's nft table and service interface in line with the rules it is given. Syncs
 * never overlap and coalesce: while one runs, later updates wait and only the newest is applied.
 */
export class ServiceProxy {
  readonly table: string;
  readonly device: string;
  private existing?: { chains: Set<string>; sets: Set<string> };
  private bound?: Set<string>;
  private pending?: { rules: ServicePortRule[]; nodeIps: string[] };
  private running?: Promise<void>;
  private generation = 0;
  private applied = 0;
  /** Whether the last sync tried was applied. */
  private ok = true;
  private readonly waiters: { generation: number; resolve: (ok: boolean) => void }[] = [];
  /** Endpoint addresses in the rules, and when they were last there. */
  private readonly served = new Map<string, number>();
  /** Called after each applied sync, with the rules it applied. */
  onApplied?: (rules: ServicePortRule[]) => void;

  constructor(readonly opts: ServiceProxyOptions) {
    this.table = proxyTable(opts.node);
    this.device = serviceInterface(opts.node);
  }

  /** Asks for these rules (and the nodes' addresses pods may reach); returns at once (see `synced`). */
  update(rules: ServicePortRule[], nodeIps: string[] = []): void {
    this.pending = { rules, nodeIps };
    this.generation++;
    if (!this.running) this.running = this.loop();
  }

  /**
   * Resolves once every update asked for so far has been tried: true when the rules in place
   * now are those of the last update, false when applying them failed (logged).
   */
  synced(): Promise<boolean> {
    if (this.applied >= this.generation) return Promise.resolve(this.ok);
    return new Promise((resolve) => this.waiters.push({ generation: this.generation, resolve }));
  }

  /** Whether the rules sent traffic to this address within the last `withinMs`. */
  servedRecently(ip: string, withinMs: number): boolean {
    const at = this.served.get(ip);
    return at !== undefined && Date.now() - at <= withinMs;
  }

  private async loop(): Promise<void> {
    try {
      while (this.pending) {
        const { rules, nodeIps } = this.pending;
        const generation = this.generation;
        this.pending = undefined;
        try {
          await this.apply(rules, nodeIps);
          const now = Date.now();
          for (const r of rules) for (const e of r.endpoints) this.served.set(e.ip, now);
          for (const [ip, at] of this.served) if (now - at > 60_000) this.served.delete(ip);
          this.onApplied?.(rules);
          this.ok = true;
        } catch (err) {
          this.ok = false;
          this.opts.logger.error({ err }, 'service rules not applied; rebuilding the table on the next sync');
          this.existing = undefined;
          this.bound = undefined;
        }
        this.applied = generation;
        for (let i = this.waiters.length - 1; i >= 0; i--) {
          if (this.waiters[i]!.generation <= generation) this.waiters.splice(i, 1)[0]!.resolve(this.ok);
        }
      }
    } finally {
      this.running = undefined;
    }
  }

  private async apply(rules: ServicePortRule[], nodeIps: string[]): Promise<void> {
    if (!this.existing) this.existing = await tableContents(this.table);
    const rs = buildRuleset(this.table, this.opts.config, rules, this.existing, nodeIps);
    await run('nft', ['-f', '-'], rs.script);
    this.existing = { chains: rs.chains, sets: rs.sets };
    // cluster IPs as local addresses of the service interface
    if (!this.bound) {
      await ensureLocalInterface(this.device);
      this.bound = await addressesOn(this.device);
    }
    const want = new Set(rules.map((r) => r.clusterIP));
    const batch: string[] = [];
    for (const ip of want) if (!this.bound.has(ip)) batch.push(`address add ${ip}/32 dev ${this.device}`);
    for (const ip of this.bound) if (!want.has(ip)) batch.push(`address del ${ip}/32 dev ${this.device}`);
    if (batch.length) {
      await run('ip', ['-batch', '-'], `${batch.join('\n')}\n`);
      this.bound = want;
    }
  }

  async stop(): Promise<void> {
    await this.running;
  }
}

/** Removes a node's table and service interface (a node taken down; tests). */
export async function removeServiceProxy(node: string): Promise<void> {
  await execa('nft', ['delete', 'table', 'ip', proxyTable(node)], { reject: false });
  await execa('ip', ['link', 'del', serviceInterface(node)], { reject: false });
}
