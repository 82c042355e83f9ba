/**
 * The control plane: the resource actors (single writers of every stored object) and the
 * controllers that drive them — ReplicaSet, Deployment, scheduler, node lifecycle, garbage
 * collector — over informers that mirror the store.
 *
 * Several may run; one leads. Leadership is a lease in KV renewed every second with an expected
 * revision update: a standby that sees the lease's revision unchanged for `leaseMs` (by its own
 * clock, so clocks need not agree) takes it over, and a leader whose renewal loses the race
 * stops at once. The new leader loads every object from the store and carries on: the work is
 * level-based, so nothing the old one had in memory is needed, and no pod is made twice.
 *
 * A leader writes only while its lease is surely its own: no store write goes out once its last
 * renewal was sent leaseMs − renewMs ago (the fence), so by the time a standby has seen the lease
 * still for leaseMs, the old leader has stopped writing. The leader's resource actors are then
 * the only writers of resource objects, and its informers hear each write in-process as it lands
 * (ActorHost.onStored): they follow the store's watch only for a while after taking the lead
 * (writes of a previous leader still on their way), then stop, so that the leader does not
 * receive every one of its writes a second time (a tenth of its CPU under load). They list the
 * store again every resyncMs, in case a write reached it that they were not told of.
 */
import { ConflictError, kindInfo, packValue, unpackValue, type KObject } from '../protocol/index.js';
import { sleep, systemClock, type Clock, type Logger } from '../supervisor/index.js';
import { ActorHost, type ActorHostOptions, type StoredWrite } from './actor-host.js';
import type { Bus } from './bus.js';
import { DeploymentController } from './deployment-controller.js';
import { EventRecorder, ensureRecordedEventStream } from './event-recorder.js';
import { GarbageCollector } from './garbage-collector.js';
import { Informer } from './informer.js';
import { KvStore } from './kv-store.js';
import { NodeLifecycle, type NodeLifecycleOptions } from './node-lifecycle.js';
import { NodeIpam } from './node-ipam.js';
import { ServiceController } from './service-controller.js';
import { ReplicaSetController } from './replicaset-controller.js';
import { resourceKinds } from './resource-kinds.js';
import { Resources, objectInSnapshot, storedObject } from './resources.js';
import { Scheduler } from './scheduler.js';
import { HEARTBEAT_TYPE, POD_INTENT_TYPE, POD_STORED_TYPE, heartbeatBody, podIntentBody, podStoredBody } from '../protocol/index.js';

const POD_TOKEN = kindInfo('Pod')!.token;
const DEPLOY_TOKEN = kindInfo('Deployment')!.token;
const RS_TOKEN = kindInfo('ReplicaSet')!.token;

/** The pod a write of the store holds, when it is one bound to a node (its intent and notice go there). */
function boundPod(w: StoredWrite): KObject | undefined {
  if (w.kind !== POD_TOKEN || !w.stored) return undefined;
  const pod = objectInSnapshot(w.stored);
  return typeof pod?.spec?.nodeName === 'string' && pod.spec.nodeName ? pod : undefined;
}

export const LEASE_KEY = 'lease.controller';

/** How long a stopping control plane lets the work it has begun finish (ms). */
const STOP_GRACE_MS = 2000;

export interface ControlPlaneOptions {
  bus: Bus;
  logger?: Logger;
  lifecycle?: NodeLifecycleOptions;
  /** A standby takes over after the lease has not moved for this long (ms); default 3,000. */
  leaseMs?: number;
  /** How often the leader renews its lease (ms); default a third of leaseMs, at most 1,000. */
  renewMs?: number;
  /**
   * How long after taking the lead the informers also follow the store's watch (ms); default
   * twice leaseMs. Infinity: always.
   */
  informerWatchMs?: number;
  /** How often the informers list the store again once they no longer watch it (ms); default 10 min. */
  resyncMs?: number;
  clock?: Clock;
  signal?: AbortSignal;
  /**
   * Who holds the lease (default: this bus connection). `troupe up` passes one stable across its
   * restarts, so a cluster started again on the same data dir takes its lease back at once.
   */
  identity?: string;
  /** The range of Services' cluster IPs (default 10.96.0.0/16). */
  serviceCidr?: string;
  /**
   * Resource actors idle this long leave memory (their object stays in KV, and in the informers).
   * Default 10 s: past a pod's first burst of commands (create, bind, the first statuses); each
   * actor in memory costs about 22 KB here (measured: 15 s kept some 4,000 more at 400 pods/s,
   * 87 MB).
   */
  idleMs?: number;
  /**
   * At most this many resource actors in memory (see ActorHostOptions.maxResident); default
   * 4,000 (some 90 MB of them). Past it the quietest leave first. Measured with 30,000 pods
   * created at 1,000/s: no cap 564 MB of controller, 10,000 514 MB, 5,000 452 MB, 2,000 403 MB
   * (and no slower: a smaller heap to collect).
   */
  maxResident?: number;
  /** The range pods' addresses come from; each node gets a /24 of it (default 10.244.0.0/16). */
  clusterCidr?: string;
  /**
   * How long a ReplicaSet's status waits after a change (ms; default 5): the changes meanwhile go
   * in one write (see ReplicaSetController.updateStatus).
   */
  statusSettleMs?: number;
}

export class ControlPlane {
  /** Resolves when this control plane stops leading (stopped, or the lease was lost). */
  readonly done: Promise<{ lost: boolean }>;
  private resolveDone!: (r: { lost: boolean }) => void;
  private host?: ActorHost;
  private informers: Informer[] = [];
  private lifecycle?: NodeLifecycle;
  private queues: { stop(): void; idle(): Promise<void> }[] = [];
  private stopped = false;
  private renewTimer?: NodeJS.Timeout;
  private watchTimer?: ReturnType<Clock['setTimeout']>;
  private resyncTimer?: ReturnType<Clock['setTimeout']>;
  private readonly clock: Clock;
  private readonly leaseMs: number;
  private readonly renewMs: number;
  readonly logger: Logger;
  scheduler?: Scheduler;
  /** The Deployment controller, once leading. */
  deploymentController?: DeploymentController;

  private constructor(
    readonly opts: ControlPlaneOptions,
    readonly kv: KvStore,
    private leaseRevision: number,
    /** When the last lease write the store took was sent (clock ms). */
    private renewedAt: number,
  ) {
    this.logger = (opts.logger ?? opts.bus.logger).child({ component: 'control-plane' });
    this.done = new Promise((r) => (this.resolveDone = r));
    this.clock = opts.clock ?? systemClock;
    this.leaseMs = leaseMsOf(opts);
    this.renewMs = renewMsOf(opts);
  }

  /** Waits until this process holds the lease, then starts everything. */
  static async start(opts: ControlPlaneOptions): Promise<ControlPlane> {
    const { bus } = opts;
    const kv = await KvStore.open(bus, bus.subjects.stateBucket);
    const { revision, sentAt } = await acquireLease(bus, kv, opts);
    const cp = new ControlPlane(opts, kv, revision, sentAt);
    try {
      await cp.run();
    } catch (err) {
      await cp.stop();
      throw err;
    }
    return cp;
  }

  private async run(): Promise<void> {
    const { bus } = this.opts;
    if (!bus.codec.types.has(HEARTBEAT_TYPE)) bus.codec.types.register(HEARTBEAT_TYPE, heartbeatBody);
    this.startRenewing();
    await ensureRecordedEventStream(bus);
    // an object nobody has touched for a while lives only in KV until its next command
    const res = await Resources.open(bus);
    const recorder = new EventRecorder(bus, 'troupe-controller');
    const inf = (kind: string) => new Informer(bus, this.kv, kindInfo(kind)!, this.logger);
    const [namespaces, nodes, deployments, rss, pods, services, endpoints] = ['Namespace', 'Node', 'Deployment', 'ReplicaSet', 'Pod', 'Service', 'Endpoints'].map(inf) as [Informer, Informer, Informer, Informer, Informer, Informer, Informer];
    this.informers = [namespaces, nodes, deployments, rss, pods, services, endpoints];
    const svc = new ServiceController(res, services, pods, this.logger, this.opts.serviceCidr);
    // an object the informers do not have is new: its actor starts without a store read (a
    // round trip per created object; should the informer lag, its first write finds out)
    const byToken = new Map(this.informers.map((i) => [i.info.token, i]));
    const fresh: ActorHostOptions['fresh'] = (kind, key, command: { type: string; create?: unknown }) => {
      if (command.type !== 'apply' && !(command.type === 'patch' && command.create)) return false;
      const informer = byToken.get(kind);
      return !!informer?.synced && !informer.get(key.namespace, key.name);
    };
    this.host = await ActorHost.start(bus, {
      kinds: resourceKinds({ Service: svc.admit }),
      store: this.kv,
      logger: this.logger,
      clock: this.opts.clock,
      idleMs: this.opts.idleMs ?? 10_000,
      maxResident: this.opts.maxResident ?? 4000,
      fresh,
      fence: () => this.fence(),
    });
    // the controllers below command the actors of this host in this process, and the informers
    // have each write of theirs as soon as it lands (the watch's copy then skipped)
    res.local = this.host;
    // a pod made bound to a node: the node hears of it as its write goes out, and prepares it
    // meanwhile (it runs it once the store has it: see PodSync.intent)
    if (!bus.codec.types.has(POD_INTENT_TYPE)) bus.codec.types.register(POD_INTENT_TYPE, podIntentBody);
    this.host.onCreating((w) => {
      const node = w.bytes ? boundPod(w)?.spec.nodeName : undefined;
      if (!node) return;
      try {
        // (the bytes being written, as they are: the pod is not packed again; a pod made alone
        // has its intent and its write go out at once, together)
        bus.publish(bus.subjects.nodeIntent(node), POD_INTENT_TYPE, { stored: w.bytes });
        return true;
      } catch (err) {
        this.logger.warn({ err, pod: `${w.namespace}/${w.name}` }, 'pod intent not published');
      }
    });
    // and once the store has it (the write acknowledged), the node hears that too: it need not
    // wait for the store's watch to bring the pod before it runs it
    if (!bus.codec.types.has(POD_STORED_TYPE)) bus.codec.types.register(POD_STORED_TYPE, podStoredBody);
    this.host.onStored((w) => {
      const pod = w.created ? boundPod(w) : undefined;
      if (!pod?.metadata.uid) return;
      try {
        bus.publish(bus.subjects.nodeIntent(pod.spec.nodeName), POD_STORED_TYPE, { namespace: w.namespace, name: w.name, uid: pod.metadata.uid, revision: w.revision });
        bus.flushIfQuiet('pod-stored');
      } catch (err) {
        this.logger.warn({ err, pod: `${w.namespace}/${w.name}` }, 'pod stored notice not published');
      }
    });
    this.host.onStored((w) => {
      const informer = byToken.get(w.kind);
      if (!informer) return;
      if (!w.stored) return informer.feedDelete(w.namespace, w.name, w.revision);
      const obj = storedObject(w.stored, w.revision);
      if (obj) informer.feed(obj);
    });
    const sched = new Scheduler(res, pods, nodes, recorder, this.logger);
    // the ReplicaSet controller creates its pods already placed (Scheduler.place)
    const rsc = new ReplicaSetController(res, rss, pods, recorder, this.logger, sched, this.opts.statusSettleMs);
    const dc = new DeploymentController(res, deployments, rss, recorder, this.logger);
    // a Deployment or ReplicaSet being created has what it makes made at once, its writes right
    // behind its own: a new Deployment's first pods go out with it, not two store round trips later
    this.host.onCreating((w) => {
      if (w.kind !== DEPLOY_TOKEN && w.kind !== RS_TOKEN) return;
      const obj = w.stored && objectInSnapshot(w.stored);
      if (!obj) return;
      if (w.kind === DEPLOY_TOKEN) dc.creating(obj);
      else rsc.creating(obj);
    });
    const gc = new GarbageCollector(res, this.informers, this.logger);
    const ipam = new NodeIpam(res, nodes, this.logger, this.opts.clusterCidr);
    this.scheduler = sched;
    this.deploymentController = dc;
    this.queues = [rsc.queue, dc.queue, sched.queue, gc.queue, ipam.queue, svc.queue];
    // what every node needs to know of the cluster's network (its agents read it)
    await this.kv.put(
      'config.network',
      packValue({ clusterCIDR: this.opts.clusterCidr ?? '10.244.0.0/16', serviceCIDR: this.opts.serviceCidr ?? '10.96.0.0/16', clusterDomain: 'cluster.local' }),
    );
    for (const i of this.informers) await i.start();
    this.followOwnWrites();
    if (!namespaces.get(undefined, 'default')) {
      await res.send(kindInfo('Namespace')!, undefined, 'default', { type: 'apply', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } } satisfies KObject });
      // wait until the informer has it, so that nothing in it looks orphaned
      while (!namespaces.get(undefined, 'default') && !this.stopped) await sleep(systemClock, 5);
    }
    this.lifecycle = new NodeLifecycle(bus, res, nodes, pods, recorder, this.logger, this.opts.lifecycle);
    this.lifecycle.start();
    // the scheduler first: the ReplicaSet controller's first pods are placed as they are made
    sched.start();
    rsc.start();
    dc.start();
    gc.start();
    ipam.start();
    svc.start();
    this.logger.info('control plane leading');
  }

  /** Why this control plane must not write now (its lease not known to be held), or undefined. */
  private fence(): string | undefined {
    const age = this.clock.now() - this.renewedAt;
    if (age < this.leaseMs - this.renewMs) return undefined;
    return `this control plane's lease was last renewed ${age} ms ago; it may no longer lead`;
  }

  /**
   * Once no earlier leader's write can still be on its way, the informers stop following the
   * store's watch and hear only this process's writes (see the top of this file); they list the
   * store again every resyncMs.
   */
  private followOwnWrites(): void {
    const watchMs = this.opts.informerWatchMs ?? 2 * this.leaseMs;
    if (!Number.isFinite(watchMs)) return;
    this.watchTimer = this.clock.setTimeout(() => {
      if (this.stopped) return;
      void Promise.all(this.informers.map((i) => i.unwatch())).then(() => this.scheduleResync());
    }, watchMs);
  }

  private scheduleResync(): void {
    if (this.stopped) return;
    this.resyncTimer = this.clock.setTimeout(() => {
      void (async () => {
        for (const i of this.informers) {
          if (this.stopped) return;
          try {
            const changed = await i.resync();
            if (changed) this.logger.warn({ kind: i.info.kind, changed }, 'the store had changes this control plane was not told of; taken');
          } catch (err) {
            this.logger.warn({ err, kind: i.info.kind }, 'informer resync failed; trying again later');
          }
        }
      })().finally(() => this.scheduleResync());
    }, this.opts.resyncMs ?? 600_000);
  }

  private startRenewing(): void {
    const { bus } = this.opts;
    let renewing = false;
    this.renewTimer = setInterval(() => {
      if (renewing || this.stopped) return;
      renewing = true;
      const sentAt = this.clock.now();
      this.kv
        .update(LEASE_KEY, packValue({ holder: this.opts.identity ?? bus.id, renewedAt: Date.now() }), this.leaseRevision)
        .then((rev) => {
          this.leaseRevision = rev;
          this.renewedAt = sentAt;
        })
        .catch((err) => {
          if (err instanceof ConflictError) {
            this.logger.error('lost the control-plane lease to another controller; stopping');
            void this.stop(true);
          } else this.logger.warn({ err }, 'lease not renewed; trying again');
        })
        .finally(() => {
          renewing = false;
        });
    }, this.renewMs);
  }

  /** Waits until every controller's queue is empty (tests, benchmarks). */
  async idle(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.idle()));
  }

  async stop(lost = false): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.renewTimer) clearInterval(this.renewTimer);
    if (this.watchTimer) this.clock.clearTimeout(this.watchTimer);
    if (this.resyncTimer) this.clock.clearTimeout(this.resyncTimer);
    this.lifecycle?.stop();
    for (const q of this.queues) q.stop();
    // work already begun finishes while the actors still answer (bounded: a command stuck on an
    // unavailable store must not hold the stop)
    const clock = this.opts.clock ?? systemClock;
    let grace: ReturnType<Clock['setTimeout']> | undefined;
    await Promise.race([Promise.all(this.queues.map((q) => q.idle())), new Promise<void>((r) => (grace = clock.setTimeout(r, STOP_GRACE_MS)))]);
    if (grace) clock.clearTimeout(grace);
    await Promise.all(this.informers.map((i) => i.stop()));
    await this.host?.stop();
    if (!lost) {
      // hand over at once: a standby need not wait out the lease
      await this.kv.delete(LEASE_KEY, this.leaseRevision).catch(() => undefined);
    }
    this.resolveDone({ lost });
  }
}

function leaseMsOf(opts: ControlPlaneOptions): number {
  return opts.leaseMs ?? 3000;
}

function renewMsOf(opts: ControlPlaneOptions): number {
  return opts.renewMs ?? Math.min(1000, Math.floor(leaseMsOf(opts) / 3));
}

/**
 * Takes the lease when it is free or has not moved for leaseMs; resolves with its revision and
 * when the write that took it was sent (clock ms).
 */
async function acquireLease(bus: Bus, kv: KvStore, opts: ControlPlaneOptions): Promise<{ revision: number; sentAt: number }> {
  const leaseMs = leaseMsOf(opts);
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? bus.logger;
  let seenRevision = -1;
  let seenAt = clock.now();
  let told = false;
  for (;;) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('aborted');
    const me = opts.identity ?? bus.id;
    const value = packValue({ holder: me, renewedAt: Date.now() });
    const entry = await kv.get(LEASE_KEY);
    const sentAt = clock.now();
    try {
      if (!entry) return { revision: await kv.create(LEASE_KEY, value), sentAt };
      const lease = unpackValue<{ holder: string }>(entry.value);
      if (lease.holder === me) return { revision: await kv.update(LEASE_KEY, value, entry.revision), sentAt };
      if (entry.revision !== seenRevision) {
        seenRevision = entry.revision;
        seenAt = clock.now();
        if (!told) logger.info({ holder: lease.holder }, 'another controller leads; standing by');
        told = true;
      } else if (clock.now() - seenAt >= leaseMs) {
        logger.warn({ holder: lease.holder }, 'the leading controller stopped renewing its lease; taking over');
        return { revision: await kv.update(LEASE_KEY, value, entry.revision), sentAt };
      }
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
    await sleep(clock, Math.min(250, leaseMs / 4), opts.signal);
  }
}
