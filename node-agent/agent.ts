/**
 * The node agent: registers its node (capacity, allocatable, labels), heartbeats, and hosts the
 * pod actors of its node under `troupe.<c>.node.<name>.…`. Two agents with different names share
 * a machine without touching each other's containers, cgroups, folders or subjects.
 */
import { cpus, hostname, networkInterfaces, totalmem } from 'node:os';
import { join } from 'node:path';
import { ActorHost, KvStore, type Bus } from '../actors/index.js';
import { MessageType, heartbeatBody, packValue, s, token } from '../protocol/index.js';
import type { Logger } from '../supervisor/index.js';
import { ContainerRuntime } from './container-runtime.js';
import { ImageStore } from './image-store.js';
import { DEFAULT_TUNING, podKind, startPodAhead } from './pod-runtime.js';
import { serveNode } from './node-service.js';
import { ClusterImages } from './cluster-images.js';
import type { Subscription } from '@nats-io/transport-node';
import type { NodeTuning } from './pod-machine.js';
import { PodSync } from './pod-sync.js';
import { Cni, bridgeName } from './cni.js';
import { NodeNetwork, readNetworkConfig } from './node-network.js';

export { heartbeatBody };

export const statsBody = s.object({
  node: s.string({ min: 1, max: 253 }),
  at: s.string({ max: 64 }),
  containers: s.array(
    s.object({
      namespace: s.string({ max: 253 }),
      pod: s.string({ max: 253 }),
      container: s.string({ max: 63 }),
      cpuUsageNs: s.number({ min: 0 }),
      /** CPU used since the previous sample, in millicores (as `kubectl top`). */
      cpuMillicores: s.number({ min: 0 }),
      memoryBytes: s.number({ min: 0 }),
      pids: s.int({ min: 0 }),
    }),
    { max: 10_000 },
  ),
});

export interface NodeInfo {
  name: string;
  labels: Record<string, string>;
  capacity: { cpu: string; memory: string; pods: string };
  allocatable: { cpu: string; memory: string; pods: string };
  cgroupLayout: string;
  startedAt: string;
  agentId: string;
}

export interface AgentOptions {
  bus: Bus;
  nodeName: string;
  dataDir: string;
  logger?: Logger;
  tuning?: Partial<NodeTuning>;
  heartbeatMs?: number;
  /** How long a pod the control plane said is on its way waits for the store (see PodSync.intent; tests). */
  intentWaitMs?: number;
  /** How often container usage is published (ms). */
  statsMs?: number;
  maxPods?: number;
  /** Follow the control plane's pods bound to this node (default true). */
  controlPlane?: boolean;
  /** Put pods on the pod network with CNI once the node has a pod CIDR (default true). */
  network?: boolean;
  /** The node's InternalIP, on the link to the other nodes (default: the first non-loopback IPv4 address). */
  nodeIp?: string;
  /** Load-balance Services on this node with nftables (default true when `network` is). */
  serviceProxy?: boolean;
  /** Serve the cluster DNS on the pod gateway (default true when `network` is; a port for tests). */
  dns?: boolean | { port: number };
  /** How long a pod that left every load balancer keeps serving before it is stopped (ms, default 500). */
  drainMs?: number;
}

export class Agent {
  readonly images: ImageStore;
  readonly runtime: ContainerRuntime;
  readonly scope: string;
  private host?: ActorHost;
  private timer?: NodeJS.Timeout;
  private statsTimer?: NodeJS.Timeout;
  private sweepTimer?: NodeJS.Timeout;
  private sweeping?: Promise<unknown>;
  private readonly lastCpu = new Map<string, { ns: number; at: number }>();
  private stopping = false;
  private statsRun: Promise<void> = Promise.resolve();
  private nodeSub?: Subscription;
  private intentSub?: Subscription;
  private seq = 0;
  private podSync?: PodSync;
  /** The node's network (bridge, routes, Service load balancer, DNS), once it has a pod CIDR. */
  net?: NodeNetwork;

  constructor(readonly opts: AgentOptions) {
    token(opts.nodeName, 'node name');
    this.scope = `node.${opts.nodeName}`;
    this.images = new ImageStore(join(opts.dataDir, 'images'));
    this.runtime = new ContainerRuntime({ dataDir: join(opts.dataDir, 'runtime'), node: opts.nodeName });
  }

  get nodeIp(): string {
    return this.opts.nodeIp ?? hostAddress();
  }

  /** The pod network: CNI on the node's bridge, then routes, Service load balancing and DNS. */
  private async startNetwork(podCidr: string, kv: KvStore): Promise<void> {
    if (this.opts.network === false) return;
    const config = await readNetworkConfig(kv);
    const cni = new Cni({ node: this.opts.nodeName, podCidr, dataDir: join(this.opts.dataDir, 'cni'), routes: ['0.0.0.0/0'], runner: (argv, o) => this.runtime.runCommand(argv, o) });
    try {
      this.net = await NodeNetwork.start({
        bus: this.opts.bus,
        node: this.opts.nodeName,
        podCidr,
        bridge: bridgeName(this.opts.nodeName),
        nodeIp: this.nodeIp,
        config,
        logger: (this.opts.logger ?? this.opts.bus.logger).child({ component: 'network' }),
        services: this.podSync?.serviceInformer,
        serviceProxy: this.opts.serviceProxy,
        dns: this.opts.dns,
        drainMs: this.opts.drainMs,
      });
      if (this.net.dns) this.runtime.dns = { nameserver: this.net.gateway, domain: config.clusterDomain };
    } catch (err) {
      (this.opts.logger ?? this.opts.bus.logger).error({ err }, 'Services and DNS are not served on this node');
    }
    this.runtime.network = cni;
    this.runtime.fillPool();
  }

  nodeInfo(): NodeInfo {
    const cpu = String(cpus().length);
    const memory = `${Math.floor(totalmem() / 1024 / 1024)}Mi`;
    const pods = String(this.opts.maxPods ?? 110);
    return {
      name: this.opts.nodeName,
      labels: {
        'kubernetes.io/hostname': this.opts.nodeName,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': process.arch === 'x64' ? 'amd64' : process.arch,
        'troupe.dev/machine': hostname(),
      },
      capacity: { cpu, memory, pods },
      allocatable: { cpu, memory, pods },
      cgroupLayout: this.runtime.cgroups.layout,
      startedAt: new Date().toISOString(),
      agentId: this.opts.bus.id,
    };
  }

  async start(): Promise<void> {
    const { bus } = this.opts;
    await this.images.init();
    if (!bus.codec.types.has('hb')) bus.codec.types.register('hb', heartbeatBody);
    if (!bus.codec.types.has('stats')) bus.codec.types.register('stats', statsBody);
    const kv = await KvStore.open(bus, bus.subjects.stateBucket);
    await kv.put(`nodeinfo.${this.opts.nodeName}`, packValue(this.nodeInfo()));
    this.host = await ActorHost.start(bus, {
      kinds: [podKind(this.runtime, this.images, { ...DEFAULT_TUNING, ...this.opts.tuning }, await ClusterImages.open(bus))],
      scope: this.scope,
      store: kv,
      logger: this.opts.logger,
    });
    this.nodeSub = serveNode(bus, this.opts.nodeName, this.runtime);
    const adopted = await this.adopt();
    if (this.opts.controlPlane !== false) {
      this.podSync = new PodSync(bus, this.opts.nodeName, this.scope, (this.opts.logger ?? bus.logger).child({ component: 'pod-sync' }), {
        onPodCidr: (podCidr) => this.startNetwork(podCidr, kv),
        podIp: (uid) => this.runtime.sandboxIp(uid),
        hostIp: this.nodeIp,
        beforeStop: (podIp, maxMs) => this.net?.drain(podIp, maxMs) ?? Promise.resolve(),
        podEvents: (follower) => this.host!.onTransition(follower),
        podCommand: (namespace, name, body, timeoutMs) => this.host!.deliver('pod', namespace, name, body as never, timeoutMs),
        holdStarts: (uid) => this.runtime.holdStarts(uid),
        startAhead: (pod, spec) => startPodAhead(this.runtime, this.images, pod, spec),
        dropAhead: (uid) => this.runtime.dropAhead(uid),
        releaseStarts: (uid) => this.runtime.releaseStarts(uid),
        refuseStarts: (uid, err) => this.runtime.refuseStarts(uid, err),
        forgetStarts: (uid) => this.runtime.forgetStarts(uid),
        intentWaitMs: this.opts.intentWaitMs,
      });
      await this.podSync.start({ ...this.nodeInfo(), nodeIp: this.nodeIp }, adopted);
      // the pods on their way here, told as their writes go out (see PodSync.intent)
      this.intentSub = this.podSync.followIntents();
    }
    const beat = () => {
      try {
        bus.publish(bus.subjects.nodeHb(this.opts.nodeName), 'hb', { node: this.opts.nodeName, seq: this.seq++, pods: this.host?.actorCount() ?? 0 });
      } catch (err) {
        this.opts.logger?.warn({ err }, 'heartbeat not sent');
      }
    };
    beat();
    this.timer = setInterval(beat, this.opts.heartbeatMs ?? 1000);
    this.statsTimer = setInterval(() => {
      this.statsRun = this.publishStats();
    }, this.opts.statsMs ?? 10_000);
    // housekeeping: cgroups of pods that are gone (a removal cut short) do not stay
    this.sweepTimer = setInterval(() => {
      if (this.stopping || this.sweeping) return;
      this.sweeping = this.runtime
        .sweepCgroups()
        .then((gone) => gone.length && this.opts.logger?.info({ cgroups: gone.length }, 'removed the cgroups of pods that are gone'))
        .catch((err) => this.opts.logger?.warn({ err }, 'cgroup sweep failed'))
        .finally(() => (this.sweeping = undefined));
    }, 5000);
    // sandboxes kept ready (see ContainerRuntime.fillPool): on the pod network once it is known
    this.runtime.fillPool();
    this.opts.logger?.info({ node: this.opts.nodeName, cgroups: this.runtime.cgroups.layout }, 'node agent ready');
  }

  /**
   * Takes back the pods whose containers this node still has (an agent restarted, even after
   * kill -9): running containers are adopted, not started again; those that exited meanwhile are
   * reported with their real exit status, and the restart policy goes on from there.
   */
  async adopt(): Promise<{ namespace: string; pod: string; uid: string; managed: boolean }[]> {
    const pods = new Map<string, { namespace: string; pod: string; uid: string; spec: unknown; restartCounts: Record<string, number> }>();
    for (const c of await this.runtime.containers()) {
      if (c.podSpec === undefined) continue;
      const key = `${c.namespace}/${c.pod}/${c.podUid}`;
      const p = pods.get(key) ?? { namespace: c.namespace, pod: c.pod, uid: c.podUid, spec: c.podSpec, restartCounts: {} };
      p.restartCounts[c.container] = c.restartCount ?? 0;
      pods.set(key, p);
    }
    const subjects = this.opts.bus.subjects.scoped(this.scope);
    for (const p of pods.values()) {
      try {
        await this.opts.bus.request(subjects.cmd('pod', p.namespace, p.pod), MessageType.Command, { type: 'run', uid: p.uid, spec: p.spec, adopt: true, restartCounts: p.restartCounts });
      } catch (err) {
        this.opts.logger?.warn({ err, pod: `${p.namespace}/${p.pod}` }, 'pod not adopted');
      }
    }
    if (pods.size > 0) this.opts.logger?.info({ pods: pods.size }, 'adopted pods');
    return [...pods.values()].map((p) => ({ namespace: p.namespace, pod: p.pod, uid: p.uid, managed: (p.spec as { managedBy?: string }).managedBy === 'control-plane' }));
  }

  /** Reads every container's cgroup usage and publishes it on the node's stats subject. */
  async publishStats(): Promise<void> {
    if (this.stopping) return;
    try {
      const now = Date.now();
      const containers = [];
      for (const c of await this.runtime.containers()) {
        const st = await this.runtime.stats(c.podUid, c.container);
        const prev = this.lastCpu.get(c.id);
        const cpuMillicores = prev && now > prev.at ? Math.max(0, Math.round(((st.cpuUsageNs - prev.ns) / 1e6 / (now - prev.at)) * 1000)) : 0;
        this.lastCpu.set(c.id, { ns: st.cpuUsageNs, at: now });
        containers.push({ namespace: c.namespace, pod: c.pod, container: c.container, cpuUsageNs: st.cpuUsageNs, cpuMillicores, memoryBytes: st.memoryBytes, pids: st.pids });
      }
      if (this.stopping) return;
      this.opts.bus.publish(this.opts.bus.subjects.nodeStats(this.opts.nodeName), 'stats', { node: this.opts.nodeName, at: new Date(now).toISOString(), containers });
    } catch (err) {
      this.opts.logger?.warn({ err }, 'stats not published');
    }
  }

  /** Stops serving; containers keep running (a restarted agent adopts them). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    if (this.statsTimer) clearInterval(this.statsTimer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.statsRun;
    await this.sweeping;
    try {
      this.nodeSub?.unsubscribe();
      this.intentSub?.unsubscribe();
      await this.podSync?.stop();
      await this.net?.stop();
      await this.host?.stop();
    } finally {
      // (whatever failed before: what the node keeps ready, its sandboxes, shims and spare
      // cgroups, is not left behind)
      await this.runtime.drainPool();
      this.runtime.abandonStarting();
      // nothing left running: the state folder on tmpfs goes too
      this.runtime.release();
    }
  }
}


/** This machine's first external IPv4 address (the node's InternalIP), or loopback. */
export function hostAddress(): string {
  for (const [name, list] of Object.entries(networkInterfaces())) {
    if (/^(tb-|ts-|veth|troupe)/.test(name)) continue; // pod bridges, their links and the service interface are not the node
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}
