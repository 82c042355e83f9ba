/**
 * The node's part of the cluster network, set up once the control plane has given the node its
 * pod CIDR:
 *
 *  - the pod bridge with the CIDR's first address (the pods' gateway), made before any pod so
 *    that the DNS server can listen on it; IP forwarding, and bridged traffic through netfilter
 *    (so that a Service's reply from a pod on the same bridge is un-NATed);
 *  - routes to the other nodes' pod CIDRs through their InternalIP, as flannel's host-gw backend
 *    does: nodes on one link route pods' packets to each other unencapsulated (proto 222 marks
 *    ours);
 *  - the Service load balancer (service-proxy.ts), fed by Services and Endpoints;
 *  - the cluster DNS (dns.ts) on the gateway address.
 *
 * A pod being deleted leaves the load balancers before it is stopped (`drain`).
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { Informer, KvStore, formatIp, inCidr, parseCidr, type Bus } from '../actors/index.js';
import { PROXY_SYNCED_TYPE, kindInfo, proxySyncedBody, unpackValue, type KObject } from '../protocol/index.js';
import type { Subscription } from '@nats-io/transport-node';
import { sleep, systemClock, type Logger } from '../supervisor/index.js';
import { DnsServer, clusterLookup } from './dns.js';
import { ServiceProxy, run, serviceRules, type ProxyConfig } from './service-proxy.js';
import { RuntimeError } from './errors.js';

export const NETWORK_CONFIG_KEY = 'config.network';
export const ROUTE_PROTO = '222';

export interface NetworkConfig {
  clusterCIDR: string;
  serviceCIDR: string;
  clusterDomain: string;
}

export const DEFAULT_NETWORK: NetworkConfig = { clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/16', clusterDomain: 'cluster.local' };

/** The cluster's network settings as the control plane published them (defaults before it has). */
export async function readNetworkConfig(kv: KvStore): Promise<NetworkConfig> {
  const e = await kv.get(NETWORK_CONFIG_KEY).catch(() => undefined);
  return e ? { ...DEFAULT_NETWORK, ...unpackValue<Partial<NetworkConfig>>(e.value, NETWORK_CONFIG_KEY) } : DEFAULT_NETWORK;
}

/** A locally administered unicast MAC for a bridge, stable for its name. */
export function bridgeMac(bridge: string): string {
  const h = createHash('sha256').update(bridge).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** The pod bridge with the gateway address and a fixed MAC, up (idempotent). */
export async function ensureBridge(bridge: string, podCidr: string): Promise<string> {
  const { base, bits } = parseCidr(podCidr);
  const gateway = formatIp(base + 1);
  if ((await execa('ip', ['link', 'show', 'dev', bridge], { reject: false })).exitCode !== 0) {
    const r = await execa('ip', ['link', 'add', bridge, 'type', 'bridge'], { reject: false });
    if (r.exitCode !== 0 && !/exists/i.test(r.stderr)) throw new RuntimeError(`bridge ${bridge} not created: ${r.stderr.trim()}`, { bridge });
  }
  const has = await execa('ip', ['-j', '-4', 'addr', 'show', 'dev', bridge], { reject: false });
  if (!has.stdout.includes(`"${gateway}"`)) {
    const r = await execa('ip', ['addr', 'add', `${gateway}/${bits}`, 'dev', bridge], { reject: false });
    if (r.exitCode !== 0 && !/exists/i.test(r.stderr)) throw new RuntimeError(`gateway ${gateway} not set on ${bridge}: ${r.stderr.trim()}`, { bridge });
  }
  // a fixed MAC: a bridge left to itself takes its lowest port's, which changes as pods come and
  // go, and every pod's ARP entry for the gateway goes stale (seconds of lost packets)
  const mac = bridgeMac(bridge);
  const link = await execa('ip', ['-j', 'link', 'show', 'dev', bridge], { reject: false });
  if (!link.stdout.includes(`"address":"${mac}"`)) await run('ip', ['link', 'set', 'dev', bridge, 'address', mac]);
  await run('ip', ['link', 'set', bridge, 'up']);
  return gateway;
}

export interface NodeNetworkOptions {
  bus: Bus;
  node: string;
  podCidr: string;
  bridge: string;
  /** This node's address on the link to the other nodes. */
  nodeIp: string;
  config: NetworkConfig;
  logger: Logger;
  /** Load balancing for Services (default true). */
  serviceProxy?: boolean;
  /** A started Service informer to share (its owner stops it); else the network has its own. */
  services?: Informer;
  /** DNS on the gateway address (default true; port 53). */
  dns?: boolean | { port: number };
  /**
   * After every node's load balancer has dropped a pod being deleted: how long it keeps
   * serving the requests already sent to it before it is stopped (default 500 ms).
   */
  drainMs?: number;
}

/** Load balancers not heard from for this long are not waited for. */
const PROXY_STALE_MS = 5000;
const PROXY_REPORT_MS = 2000;

export class NodeNetwork {
  readonly gateway: string;
  readonly proxy?: ServiceProxy;
  dns?: DnsServer;
  private services?: Informer;
  private endpoints?: Informer;
  private nodes?: Informer;
  private namespaces?: Informer;
  private resyncQueued = false;
  private routesRunning?: Promise<void>;
  private routesAgain = false;
  private readonly routes = new Map<string, string>();
  private readonly endpointWaiters = new Set<() => void>();
  private stopped = false;
  /** Each node's load balancer: the store revision it has applied, and when it said so. */
  private readonly proxies = new Map<string, { revision: number; at: number }>();
  private readonly proxyWaiters = new Set<() => void>();
  private proxySub?: Subscription;
  private reportTimer?: NodeJS.Timeout;
  private appliedRevision = 0;

  private constructor(
    readonly opts: NodeNetworkOptions,
    gateway: string,
  ) {
    this.gateway = gateway;
    if (opts.serviceProxy !== false) {
      const cfg: ProxyConfig = { clusterCidr: opts.config.clusterCIDR, serviceCidr: opts.config.serviceCIDR, gateway };
      this.proxy = new ServiceProxy({ node: opts.node, config: cfg, logger: opts.logger });
    }
  }

  static async start(opts: NodeNetworkOptions): Promise<NodeNetwork> {
    const gateway = await ensureBridge(opts.bridge, opts.podCidr);
    const net = new NodeNetwork(opts, gateway);
    try {
      await net.run();
    } catch (err) {
      await net.stop();
      throw err;
    }
    return net;
  }

  private async run(): Promise<void> {
    const { bus, logger } = this.opts;
    if (this.proxy) {
      // a node forwards pods' packets, and bridged packets pass netfilter (un-NAT of replies)
      await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
      if (existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables')) await writeFile('/proc/sys/net/bridge/bridge-nf-call-iptables', '1\n');
    }
    const kv = await KvStore.open(bus, bus.subjects.stateBucket);
    const inf = (kind: string) => new Informer(bus, kv, kindInfo(kind)!, logger);
    this.services = this.opts.services ?? inf('Service');
    this.endpoints = inf('Endpoints');
    this.nodes = inf('Node');
    this.namespaces = inf('Namespace');
    if (this.proxy) {
      if (!bus.codec.types.has(PROXY_SYNCED_TYPE)) bus.codec.types.register(PROXY_SYNCED_TYPE, proxySyncedBody);
      this.proxySub = bus.subscribe<{ node: string; revision: number }>(bus.subjects.nodeProxyAll(), (env) => {
        const prev = this.proxies.get(env.body.node);
        this.proxies.set(env.body.node, { revision: Math.max(prev?.revision ?? 0, env.body.revision), at: Date.now() });
        for (const w of [...this.proxyWaiters]) w();
      }, { accept: [PROXY_SYNCED_TYPE] });
      // said again now and then, so that a node that joins later knows who balances
      this.reportTimer = setInterval(() => this.report(), PROXY_REPORT_MS);
    }
    const changed = () => {
      this.queueResync();
      for (const w of [...this.endpointWaiters]) w();
    };
    this.services.on(changed);
    this.endpoints.on(changed);
    this.nodes.on(() => {
      this.syncRoutes();
      this.queueResync();
    });
    await Promise.all([this.opts.services ? undefined : this.services.start(), this.endpoints.start(), this.nodes.start(), this.namespaces.start()]);
    this.resync();
    this.syncRoutes();
    if (this.opts.dns !== false) {
      const domain = this.opts.config.clusterDomain;
      const lookup = clusterLookup(
        domain,
        (ns, name) => this.services!.get(ns, name)?.spec,
        (ns, name) => readyIps(this.endpoints!.get(ns, name)),
        (ns) => this.namespaces!.get(undefined, ns) !== undefined,
      );
      this.dns = new DnsServer(this.gateway, lookup, domain, logger, typeof this.opts.dns === 'object' ? this.opts.dns.port : 53);
      await this.dns.start();
    }
    await this.proxy?.synced();
    logger.info({ gateway: this.gateway, dns: this.dns ? `${this.gateway}:${this.dns.port}` : 'off', serviceProxy: this.proxy ? this.proxy.table : 'off' }, 'node network ready');
  }

  private queueResync(): void {
    if (this.resyncQueued || !this.proxy) return;
    this.resyncQueued = true;
    setImmediate(() => this.resync());
  }

  /** Gives the load balancer the rules of the Services and Endpoints as they are now. */
  private resync(): void {
    this.resyncQueued = false;
    if (!this.proxy || this.stopped) return;
    const nodeIps = [...new Set([...this.nodes!.list()].map(internalIp).filter((a): a is string => !!a))].sort();
    const revision = this.storeRevision();
    this.proxy.update(serviceRules(this.services!.list(), (ns, name) => this.endpoints!.get(ns, name)), nodeIps);
    // only rules really in place are reported: a drain elsewhere trusts this
    void this.proxy.synced().then((ok) => {
      if (!ok || revision <= this.appliedRevision) return;
      this.appliedRevision = revision;
      this.report();
    });
  }

  /**
   * How far this node has read the Endpoints: the store revision of the last one its informer
   * took in. A drain compares nodes by it. (Not the Services' revision as well: that watch runs
   * on its own, and a node whose Services were newer than the Endpoints change a drain waits for
   * would have looked as if it had applied that change.)
   */
  private storeRevision(): number {
    return this.endpoints!.revision;
  }

  /** Resolves at the next wake-up of `waiters`, or after `ms`. */
  private nextWake(waiters: Set<() => void>, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        waiters.delete(done);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, Math.max(1, ms));
      waiters.add(done);
    });
  }

  /** Tells every node the store revision this node's load balancer has applied. */
  private report(): void {
    if (this.stopped || this.appliedRevision === 0) return;
    try {
      this.opts.bus.publish(this.opts.bus.subjects.nodeProxy(this.opts.node), PROXY_SYNCED_TYPE, { node: this.opts.node, revision: this.appliedRevision });
    } catch (err) {
      this.opts.logger.debug({ err }, 'load balancer revision not reported');
    }
  }

  /**
   * Waits until every load balancer heard from lately (this node's too) has applied `revision`,
   * or `deadline`; returns those still behind then (`node@revision`).
   */
  private async proxiesAt(revision: number, deadline: number): Promise<string[]> {
    const behind = () => [
      ...(this.appliedRevision < revision ? [`${this.opts.node}@${this.appliedRevision}`] : []),
      ...[...this.proxies.entries()].filter(([n, p]) => n !== this.opts.node && p.revision < revision && Date.now() - p.at < PROXY_STALE_MS).map(([n, p]) => `${n}@${p.revision}`),
    ];
    while (!this.stopped && Date.now() < deadline && behind().length > 0) await this.nextWake(this.proxyWaiters, Math.min(100, deadline - Date.now()));
    return behind();
  }

  /** Whether any Endpoints object offers this address as ready. */
  private offered(ip: string): boolean {
    for (const ep of this.endpoints?.list() ?? []) if (readyIps(ep).includes(ip)) return true;
    return false;
  }

  /**
   * Before a pod is stopped: waits until no Endpoints offer its address and every node's load
   * balancer (each reports the store revision it has applied) has dropped it, then `drainMs`
   * more for the requests already sent to it. A pod that served no Service lately is not held.
   * Bounded by `maxMs`.
   */
  async drain(podIp: string | undefined, maxMs: number): Promise<void> {
    if (!podIp || !this.proxy || this.stopped) return;
    if (!this.offered(podIp) && !this.proxy.servedRecently(podIp, 30_000)) return;
    const deadline = Date.now() + maxMs;
    while (this.offered(podIp) && Date.now() < deadline && !this.stopped) await this.nextWake(this.endpointWaiters, deadline - Date.now());
    const began = Date.now();
    this.resync();
    const revision = this.storeRevision();
    const behind = await this.proxiesAt(revision, deadline);
    if (behind.length > 0 && !this.stopped) {
      this.opts.logger.warn({ podIP: podIp, revision, behind, offered: this.offered(podIp) }, 'pod stopped before every load balancer dropped it (drain deadline)');
    } else {
      this.opts.logger.debug({ podIP: podIp, revision, waitedMs: Date.now() - began }, 'every load balancer dropped the pod');
    }
    const rest = Math.min(this.opts.drainMs ?? 500, deadline - Date.now());
    if (rest > 0) await sleep(systemClock, rest).catch(() => undefined);
  }

  /** host-gw: a route to each other node's pod CIDR through its InternalIP. */
  private syncRoutes(): void {
    if (this.routesRunning) {
      this.routesAgain = true;
      return;
    }
    this.routesRunning = (async () => {
      do {
        this.routesAgain = false;
        const want = new Map<string, string>();
        for (const n of this.nodes?.list() ?? []) {
          if (n.metadata.name === this.opts.node) continue;
          const cidr = n.spec?.podCIDR as string | undefined;
          const via = internalIp(n);
          // another agent on this same machine: its bridge is a connected route already
          if (cidr && via && via !== this.opts.nodeIp && inCidr(cidr, this.opts.config.clusterCIDR)) want.set(cidr, via);
        }
        for (const [cidr, via] of want) {
          if (this.routes.get(cidr) === via) continue;
          const r = await execa('ip', ['route', 'replace', cidr, 'via', via, 'proto', ROUTE_PROTO], { reject: false });
          if (r.exitCode === 0) this.routes.set(cidr, via);
          else this.opts.logger.warn({ podCIDR: cidr, via, err: r.stderr.trim() }, 'no route to a node\'s pods (is it on this link?)');
        }
        for (const cidr of [...this.routes.keys()]) {
          if (want.has(cidr)) continue;
          await execa('ip', ['route', 'del', cidr, 'proto', ROUTE_PROTO], { reject: false });
          this.routes.delete(cidr);
        }
      } while (this.routesAgain && !this.stopped);
    })()
      .catch((err) => this.opts.logger.warn({ err }, 'node routes not synced'))
      .finally(() => (this.routesRunning = undefined));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reportTimer) clearInterval(this.reportTimer);
    this.proxySub?.unsubscribe();
    for (const w of [...this.endpointWaiters, ...this.proxyWaiters]) w();
    await Promise.all([this.opts.services ? undefined : this.services?.stop(), this.endpoints?.stop(), this.nodes?.stop(), this.namespaces?.stop()]);
    await this.routesRunning;
    await this.proxy?.stop();
    await this.dns?.stop();
  }
}

function readyIps(ep: KObject | undefined): string[] {
  const out: string[] = [];
  for (const s of ((ep as { subsets?: { addresses?: { ip: string }[] }[] } | undefined)?.subsets ?? [])) for (const a of s.addresses ?? []) out.push(a.ip);
  return out;
}

function internalIp(node: KObject): string | undefined {
  return ((node.status?.addresses ?? []) as { type: string; address: string }[]).find((a) => a.type === 'InternalIP')?.address;
}
