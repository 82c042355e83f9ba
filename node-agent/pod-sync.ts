/**
 * The agent's side of the control plane (the kubelet's sync loop and status manager): it
 * registers the Node, follows the pods bound to this node in the store, has the node's pod
 * actors run or delete them, and reports each pod's status back to its resource actor.
 *
 * Level-based both ways: a pod in the store bound here and not running here is started; a pod
 * running here that the store no longer has — deleted, replaced while this node was away — is
 * stopped; a pod the store marks for deletion is stopped gracefully and then finalized, which
 * removes it from the store. Status goes out coalesced: one send in flight per pod, the newest
 * pending one replacing older ones.
 */
import { Informer, KvStore, Resources, objectInSnapshot, type Bus, type StoredActor } from '../actors/index.js';
import type { Subscription } from '@nats-io/transport-node';
import { MessageType, POD_INTENT_TYPE, POD_STORED_TYPE, kindInfo, podIntentBody, podIntentPod, podStoredBody, serviceEnv, stableJson, unpackValue, validate, type EventBody, type KObject } from '../protocol/index.js';
import { backoff, sleep, systemClock, type Logger } from '../supervisor/index.js';
import type { PodRunSpec, PodStatus } from './pod-machine.js';
import { RuntimeError } from './errors.js';
import { isGoneOrConflict, untilAnswered } from './retry.js';
import type { NodeInfo } from './agent.js';

/**
 * A status that says the pod is still starting (phase Pending) waits this long before it is
 * written, and is dropped if a newer one comes meanwhile; any other phase is written at once. A
 * pod that starts in milliseconds so goes from nothing straight to Running in the store, instead
 * of a write (and its informers' and controllers' work) per step while its container starts: on a
 * small node that work took the CPU from crun. A slow start (an image pull) shows as before, this
 * much later.
 */
const PENDING_HOLD_MS = 50;

/**
 * A pod the control plane said is on its way (see intent) and the store does not have this long
 * after: what was made for it goes (its write failed; the store is the truth). A write that lands
 * later still runs the pod, as any pod the store shows.
 */
const INTENT_WAIT_MS = 10_000;
/** Pods told of ahead and not yet in the store, at most (more are started when the store has them). */
const MAX_TENTATIVE = 64;

const POD = kindInfo('Pod')!;
const NODE = kindInfo('Node')!;
const SERVICE = kindInfo('Service')!;

interface Local {
  uid: string;
  /** What was last asked of the pod actor. */
  want: 'run' | 'delete';
  phase?: string;
  /** The object's deletion was seen: finalize once the pod is gone here. */
  finalize: boolean;
  readySince?: string;
  startTime?: string;
  podIP?: string;
  /** The last status queued for the store (stable JSON), once one was. */
  queued?: string;
  /**
   * Told of ahead (intent) and not seen in the store yet: its containers started ahead and held,
   * its actor not asked yet. The timer that gives it up and the spec its actor gets once the
   * store has the pod; once given up (`abandoned`), what was started goes.
   */
  tentative?: { timer?: NodeJS.Timeout; spec?: PodRunSpec; abandoned?: boolean };
}

/**
 * The pod of an intent's bytes (the store entry being written: see POD_INTENT_TYPE), checked
 * (podIntentPod); a ValidationError says what is wrong.
 */
export function intentPod(bytes: Uint8Array): KObject {
  const stored = unpackValue<StoredActor | undefined>(bytes, 'pod intent');
  const snapshot = stored && typeof stored === 'object' ? stored.snapshot : undefined;
  const obj = snapshot && typeof snapshot === 'object' ? objectInSnapshot(stored!) : undefined;
  return validate(podIntentPod, obj, 'pod intent') as unknown as KObject;
}

export class PodSync {
  private readonly local = new Map<string, Local>();
  private informer?: Informer;
  private services?: Informer;
  /** Stops following the pod actors' transitions. */
  private stopEvents?: () => void;
  private stopped = false;
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly pendingStatus = new Map<string, { uid: string; status: unknown }>();
  /** Pending-phase statuses held back (pendingHoldMs), by pod: the timer, and the actor's last. */
  private readonly held = new Map<string, NodeJS.Timeout>();
  private readonly heldStatus = new Map<string, { st: PodStatus; at: string }>();
  private registerLoop?: Promise<void>;
  private res?: Resources;
  /** How many pods are tentative (see intent). */
  private tentatives = 0;

  /** Pods that wait for the node's pod network (its pod CIDR not known yet). */
  private readonly deferred = new Set<string>();
  private networkReady = false;
  private networkLoop?: Promise<void>;

  constructor(
    private readonly bus: Bus,
    private readonly nodeName: string,
    private readonly scope: string,
    private readonly logger: Logger,
    private readonly hooks: {
      /** Called once the control plane has given the node its pod CIDR; pods start after it. */
      onPodCidr?: (cidr: string) => void | Promise<void>;
      /** Before a pod being deleted is stopped (it leaves the Services' endpoints); at most `maxMs`. */
      beforeStop?: (podIp: string | undefined, maxMs: number) => Promise<void>;
      /** A pod's address on the pod network. */
      podIp?: (uid: string) => string | undefined;
      hostIp?: string;
      /**
       * The pod actors' transitions from where they are hosted, in this process (ActorHost's
       * onTransition); without it they are followed on the bus.
       */
      podEvents?: (follower: (e: EventBody) => void) => () => void;
      /**
       * Delivers a command to a pod actor hosted in this process (ActorHost's deliver), resolving
       * or rejecting as a request's answer would; without it commands go as requests on the bus
       * (to this very process, through the server and back: two hops on each pod's start path).
       */
      podCommand?: (namespace: string, name: string, body: Record<string, unknown>, timeoutMs: number) => Promise<unknown>;
      /** How long a Pending status waits before it is written (default PENDING_HOLD_MS). */
      pendingHoldMs?: number;
      /**
       * The runtime's hold on a pod's container starts (ContainerRuntime.holdStarts and the rest):
       * a pod told of ahead is prepared and run only once the store has it. Without them intents
       * are ignored.
       */
      holdStarts?: (uid: string) => void;
      /**
       * Starts a pod told of ahead before its actor is asked (startPodAhead: held, everything but
       * crun); its actor takes those starts over once asked to run it with `spec`. dropAhead
       * undoes them (the pod given up, its starts refused).
       */
      startAhead?: (pod: { uid: string; name: string; namespace: string }, spec: PodRunSpec) => void;
      dropAhead?: (uid: string) => Promise<void>;
      releaseStarts?: (uid: string) => void;
      refuseStarts?: (uid: string, err: Error) => void;
      forgetStarts?: (uid: string) => void;
      /** How long a pod told of ahead waits for the store (default INTENT_WAIT_MS). */
      intentWaitMs?: number;
    } = {},
  ) {
    if (!hooks.onPodCidr) this.networkReady = true;
  }

  /** The Services informer (started by `start`), for others on this node to share. */
  get serviceInformer(): Informer | undefined {
    return this.services;
  }

  async start(info: NodeInfo & { nodeIp?: string }, adopted: { namespace: string; pod: string; uid: string; managed: boolean }[]): Promise<void> {
    const kv = await KvStore.open(this.bus, this.bus.subjects.stateBucket);
    this.res = await Resources.open(this.bus);
    for (const p of adopted) if (p.managed) this.local.set(`${p.namespace}/${p.pod}`, { uid: p.uid, want: 'run', finalize: false });
    const subjects = this.bus.subjects.scoped(this.scope);
    if (this.hooks.podEvents) this.stopEvents = this.hooks.podEvents((e) => e.kind === 'pod' && this.onRuntimeEvent(e));
    else {
      const sub = this.bus.subscribe<EventBody>(subjects.evtFilter('pod'), (env) => this.onRuntimeEvent(env.body), { accept: [MessageType.Event] });
      this.stopEvents = () => sub.unsubscribe();
    }
    this.informer = new Informer(this.bus, kv, POD, this.logger);
    this.informer.on((type, pod) => {
      if (type === 'delete') this.sync(`${pod.metadata.namespace}/${pod.metadata.name}`, undefined);
      else if (pod.spec.nodeName === this.nodeName) this.sync(`${pod.metadata.namespace}/${pod.metadata.name}`, pod);
    });
    this.services = new Informer(this.bus, kv, SERVICE, this.logger);
    await this.services.start();
    await this.informer.start();
    // what runs here and the store no longer wants (replaced while this node was away) stops now
    for (const key of [...this.local.keys()]) {
      const [ns, name] = key.split('/') as [string, string];
      this.sync(key, this.informer.get(ns, name));
    }
    this.registerLoop = this.register(info);
    if (!this.networkReady) this.networkLoop = this.awaitPodCidr();
  }

  /** Waits for the Node's spec.podCIDR (the control plane's node IPAM), then lets pods start. */
  private async awaitPodCidr(): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      const node = await this.res!.get(NODE, undefined, this.nodeName).catch(() => undefined);
      const cidr = node?.spec?.podCIDR as string | undefined;
      if (cidr) {
        try {
          await this.hooks.onPodCidr!(cidr);
          this.logger.info({ podCIDR: cidr }, 'pod network ready');
        } catch (err) {
          this.logger.error({ err }, 'pod network not set up; pods run without one');
        }
        this.networkReady = true;
        for (const key of this.deferred) {
          const [ns, name] = key.split('/') as [string, string];
          this.sync(key, this.informer?.get(ns, name));
        }
        this.deferred.clear();
        return;
      }
      await sleep(systemClock, Math.min(500, 20 * 2 ** attempt)).catch(() => undefined);
    }
  }

  /** Registers (or refreshes) the Node object; retried until a control plane answers. */
  private async register(info: NodeInfo & { nodeIp?: string }): Promise<void> {
    await untilAnswered(
      () =>
        this.res!.send(NODE, undefined, this.nodeName, {
          type: 'patch',
          create: { apiVersion: 'v1', kind: 'Node', metadata: { name: this.nodeName } },
          metadata: { labels: info.labels },
          status: {
            capacity: info.capacity,
            allocatable: info.allocatable,
            addresses: [...(info.nodeIp ? [{ type: 'InternalIP', address: info.nodeIp }] : []), { type: 'Hostname', address: this.nodeName }],
            nodeInfo: { kubeletVersion: 'troupe', operatingSystem: 'linux', architecture: info.labels['kubernetes.io/arch'], containerRuntimeVersion: 'crun', cgroupLayout: info.cgroupLayout },
          },
        }, { timeout: 5000 }),
      {
        stopped: () => this.stopped,
        baseMs: 100,
        capMs: 2000,
        onRetry: (err, attempt) => attempt === 0 && this.logger.info({ err: (err as Error).message }, 'node not registered yet (no control plane?); retrying'),
      },
    );
    if (!this.stopped) this.logger.info({ node: this.nodeName }, 'node registered');
  }

  /** Brings one pod here in line with the store's object (undefined: the store has none here). */
  private sync(key: string, pod: KObject | undefined): void {
    if (this.stopped) return;
    const mine = pod && pod.spec.nodeName === this.nodeName ? pod : undefined;
    const cur = this.local.get(key);
    const [ns, name] = key.split('/') as [string, string];
    if (cur?.tentative && !cur.tentative.abandoned) {
      // told of ahead: the store has it now (it runs), or has another or none (it goes)
      if (mine && mine.metadata.uid === cur.uid) this.confirm(key, cur);
      else this.abandon(key, cur.uid, 'the store has another pod of that name, or none');
    }
    if (!mine) {
      if (cur && cur.want === 'run') {
        cur.want = 'delete';
        this.command(ns, name, { type: 'delete' });
      }
      return;
    }
    const uid = mine.metadata.uid!;
    if (cur && cur.uid !== uid) {
      // an older pod of the same name is still here: it goes first, the new one runs after
      if (cur.want === 'run') {
        cur.want = 'delete';
        this.command(ns, name, { type: 'delete' });
      }
      return;
    }
    if (mine.metadata.deletionTimestamp) {
      if (!cur) {
        void this.finalize(ns, name, uid);
        return;
      }
      cur.finalize = true;
      if (cur.want === 'run') {
        cur.want = 'delete';
        void this.drainThenDelete(ns, name, mine);
      }
      return;
    }
    if (!cur) {
      if (!this.networkReady) {
        this.deferred.add(key);
        return;
      }
      this.local.set(key, { uid, want: 'run', finalize: false });
      this.command(ns, name, { type: 'run', uid, spec: this.runSpec(ns, mine) });
    }
  }

  /** What the pod actor runs of a pod: its containers, with the namespace's Services in their environment. */
  private runSpec(ns: string, pod: KObject): PodRunSpec {
    // the Services of the namespace that exist now, as environment variables (user env wins)
    const svcEnv = serviceEnv([...(this.services?.list() ?? [])].filter((svc) => svc.metadata.namespace === ns));
    return {
      containers: svcEnv.length
        ? pod.spec.containers.map((c: { env?: { name: string }[] }) => {
            const own = new Set((c.env ?? []).map((e) => e.name));
            // names a shell can hold, and no more than a container takes (1,024 in all)
            const links = svcEnv.filter((e) => !own.has(e.name) && /^[_a-zA-Z][_a-zA-Z0-9]*$/.test(e.name)).slice(0, Math.max(0, 1024 - own.size));
            return { ...c, env: [...links, ...(c.env ?? [])] };
          })
        : pod.spec.containers,
      restartPolicy: pod.spec.restartPolicy,
      terminationGracePeriodSeconds: pod.spec.terminationGracePeriodSeconds,
      managedBy: 'control-plane',
    };
  }

  /**
   * A pod that its resource actor is writing to the store, bound to this node: the control plane
   * says so as the write goes out, a millisecond or so before the store (or the control plane's
   * notice: see stored) says it has it. Its containers are started ahead at once (startAhead:
   * sandbox, folder, cgroup, shim, config), held before crun; once the store has the pod (confirm)
   * they run and its actor is asked to run the pod, taking those starts over. Its actor's
   * bookkeeping so comes after crun is under way, not before: a pod runs here only when the store
   * says so, and nothing of it waits for more than that. If the store does not have it within
   * intentWaitMs (the write failed), what was started goes. Ignored when the pod is known
   * already (the store's copy came first), when another of that name is here, when the node's pod
   * network is not ready, or past MAX_TENTATIVE such pods: those start from the store, as any.
   */
  intent(pod: KObject): void {
    if (this.stopped || !this.networkReady || !this.hooks.holdStarts) return;
    if (pod.spec.nodeName !== this.nodeName || pod.metadata.deletionTimestamp || this.tentatives >= MAX_TENTATIVE) return;
    const ns = pod.metadata.namespace ?? 'default';
    const name = pod.metadata.name;
    const uid = pod.metadata.uid!;
    const key = `${ns}/${name}`;
    if (this.local.has(key) || this.informer?.get(ns, name)) return;
    this.hooks.holdStarts(uid);
    this.bus.metrics.inc('pods_prepared_ahead_total');
    const waitMs = this.hooks.intentWaitMs ?? INTENT_WAIT_MS;
    const timer = setTimeout(() => this.abandon(key, uid, `the store did not have it within ${waitMs} ms`), waitMs);
    timer.unref();
    this.tentatives++;
    const spec = this.runSpec(ns, pod);
    this.local.set(key, { uid, want: 'run', finalize: false, tentative: { timer, spec } });
    this.hooks.startAhead?.({ uid, name, namespace: ns }, spec);
  }

  /**
   * Follows what the control plane says on this node's intent subject: the pods on their way here
   * (see intent) and, once each is in the store, that it is (see stored). A malformed intent is
   * counted (intents_rejected_total), logged and does nothing; a malformed message of either
   * kind is refused by the bus with what is wrong. Returns the subscription.
   */
  followIntents(): Subscription {
    const types = this.bus.codec.types;
    if (!types.has(POD_INTENT_TYPE)) types.register(POD_INTENT_TYPE, podIntentBody);
    if (!types.has(POD_STORED_TYPE)) types.register(POD_STORED_TYPE, podStoredBody);
    return this.bus.subscribe<{ stored: Uint8Array } | { namespace: string; name: string; uid: string }>(
      this.bus.subjects.nodeIntent(this.nodeName),
      (env) => {
        if (env.t === POD_STORED_TYPE) {
          const b = env.body as { namespace: string; name: string; uid: string };
          return this.stored(b.namespace, b.name, b.uid);
        }
        let pod: KObject;
        try {
          pod = intentPod((env.body as { stored: Uint8Array }).stored);
        } catch (err) {
          this.bus.metrics.inc('intents_rejected_total');
          this.logger.warn({ err }, 'pod intent refused');
          return;
        }
        this.intent(pod);
      },
      { accept: [POD_INTENT_TYPE, POD_STORED_TYPE] },
    );
  }

  /**
   * The control plane's word that a pod told of ahead is in the store (its write acknowledged):
   * it runs now, as if the store's watch had brought it (which it still does, a little later).
   * Only for the very pod told of (its uid) and not yet given up.
   */
  stored(namespace: string, name: string, uid: string): void {
    const key = `${namespace}/${name}`;
    const cur = this.local.get(key);
    if (this.stopped || !cur?.tentative || cur.tentative.abandoned || cur.uid !== uid) return;
    this.bus.metrics.inc('pods_confirmed_by_notice_total');
    this.confirm(key, cur);
  }

  /**
   * A tentative pod is in the store: its containers run (told `go` in the release), then its
   * actor is asked to run it, and takes over the starts.
   */
  private confirm(key: string, cur: Local): void {
    const t = this.untentative(cur);
    if (!t) return;
    this.hooks.releaseStarts?.(cur.uid);
    const [ns, name] = key.split('/') as [string, string];
    if (cur.want === 'run') this.command(ns, name, { type: 'run', uid: cur.uid, spec: t.spec });
  }

  /**
   * A tentative pod the store does not have: its starts fail (its shims told to give up, crun
   * never run) and what was started ahead goes; no actor was asked, nothing is written. (Should
   * the store have it after all, it starts anew once this is gone, as any pod the store shows.)
   */
  private abandon(key: string, uid: string, why: string): void {
    const cur = this.local.get(key);
    if (!cur || cur.uid !== uid || !this.untentative(cur)) return;
    cur.tentative = { abandoned: true };
    cur.want = 'delete';
    this.bus.metrics.inc('pods_given_up_total');
    this.logger.info({ pod: key, uid }, `pod told of ahead given up: ${why}`);
    this.hooks.refuseStarts?.(uid, new RuntimeError(`pod ${key} was not started: ${why}`, { podUid: uid }));
    void (this.hooks.dropAhead?.(uid) ?? Promise.resolve())
      .catch((err: unknown) => this.logger.warn({ err, pod: key, uid }, 'what was started ahead of a pod given up was not all removed'))
      .finally(() => {
        this.hooks.forgetStarts?.(uid);
        if (this.local.get(key) !== cur) return;
        this.local.delete(key);
        const [ns, name] = key.split('/') as [string, string];
        const pod = this.informer?.get(ns, name);
        if (pod && !this.stopped) this.sync(key, pod);
      });
  }

  private untentative(cur: Local): Local['tentative'] {
    const t = cur.tentative;
    if (!t || t.abandoned) return undefined;
    clearTimeout(t.timer);
    cur.tentative = undefined;
    this.tentatives--;
    return t;
  }

  /**
   * A pod being deleted leaves the Services' endpoints (and every node's load balancer) before
   * its containers get SIGTERM, so no new request reaches a process that is stopping. The wait
   * is bounded by half the pod's grace period (at most 10 s).
   */
  private async drainThenDelete(ns: string, name: string, pod: KObject): Promise<void> {
    const grace = (pod.spec.terminationGracePeriodSeconds as number | undefined) ?? 30;
    try {
      await this.hooks.beforeStop?.(pod.status?.podIP as string | undefined, Math.min(10_000, grace * 500));
    } catch (err) {
      this.logger.warn({ err, pod: `${ns}/${name}` }, 'pod not drained before its stop');
    }
    if (!this.stopped) this.command(ns, name, { type: 'delete' });
  }

  /**
   * Sends a command to the pod actor. A `run` that failed for a passing reason (no reply, the bus or
   * store unavailable, the actor failing to load its snapshot) is sent again with backoff for as
   * long as this node still wants that pod run; `run` is idempotent (an active pod ignores it).
   */
  private command(ns: string, name: string, body: Record<string, unknown>, attempt = 0): void {
    const sent = this.hooks.podCommand
      ? this.hooks.podCommand(ns, name, body, 60_000)
      : this.bus.request(this.bus.subjects.scoped(this.scope).cmd('pod', ns, name), MessageType.Command, body, { timeout: 60_000 });
    sent.catch((err) => {
      const code = (err as { code?: string }).code;
      // a run its actor will not take (refused, or the actor done): what was started ahead for
      // the pod goes, rather than run with no actor to answer for it
      if (body.type === 'run' && !PASSING.has(code ?? '') && typeof body.uid === 'string') void this.hooks.dropAhead?.(body.uid).catch(() => undefined);
      if (code === 'TRP_ERR_ACTOR_DONE') return;
      this.logger.warn({ err, pod: `${ns}/${name}`, command: body.type, attempt }, 'pod command failed');
      if (body.type !== 'run' || !PASSING.has(code ?? '')) return;
      const key = `${ns}/${name}`;
      const wanted = () => !this.stopped && this.local.get(key)?.uid === body.uid && this.local.get(key)?.want === 'run';
      setTimeout(() => wanted() && this.command(ns, name, body, attempt + 1), backoff(attempt, 200, 5000)).unref();
    });
  }

  private onRuntimeEvent(e: EventBody): void {
    const key = `${e.namespace}/${e.name}`;
    const cur = this.local.get(key);
    const st = e.data as PodStatus | null;
    if (!cur || !st) return;
    if (st.uid && st.uid !== cur.uid) return;
    if (st.phase === 'Deleted' || e.status === 'done') {
      this.local.delete(key);
      this.untentative(cur);
      this.hooks.forgetStarts?.(cur.uid);
      if (cur.finalize) void this.finalize(e.namespace, e.name, cur.uid);
      // a newer pod of that name may be waiting for this one to go
      const pod = this.informer?.get(e.namespace, e.name);
      if (pod) this.sync(key, pod);
      return;
    }
    if (st.phase === 'Terminating') return;
    this.queueStatus(key, cur, st);
  }

  private queueStatus(key: string, cur: Local, st: PodStatus): void {
    // (not in the store: nothing of it is written)
    if (cur.tentative) return;
    const now = new Date().toISOString();
    const ready = st.conditions.find((c) => c.type === 'Ready')?.status === 'True';
    if (ready && !cur.readySince) cur.readySince = now;
    if (!ready) cur.readySince = undefined;
    cur.startTime ??= now;
    if (st.phase === 'Pending' && !this.inflight.has(key)) {
      // held (see PENDING_HOLD_MS), and only the last one held is made into a status: a pod
      // starting in milliseconds passes two on the way, each built and compared for nothing
      this.heldStatus.set(key, { st, at: now });
      if (!this.held.has(key)) {
        const t = setTimeout(() => {
          this.held.delete(key);
          const last = this.heldStatus.get(key);
          this.heldStatus.delete(key);
          if (this.stopped || !last || this.local.get(key) !== cur) return;
          this.buildStatus(key, cur, last.st, last.at);
          if (!this.inflight.has(key) && this.pendingStatus.has(key)) this.inflight.set(key, this.flushStatus(key));
        }, this.hooks.pendingHoldMs ?? PENDING_HOLD_MS);
        t.unref();
        this.held.set(key, t);
      }
      return;
    }
    this.heldStatus.delete(key);
    clearTimeout(this.held.get(key));
    this.held.delete(key);
    if (!this.buildStatus(key, cur, st, now) || this.inflight.has(key)) return;
    this.inflight.set(key, this.flushStatus(key));
  }

  /**
   * Makes the pod's status from its actor's (as of `now`) and queues it for the store
   * (pendingStatus); false when it says nothing new.
   */
  private buildStatus(key: string, cur: Local, st: PodStatus, now: string): boolean {
    const ready = st.conditions.find((c) => c.type === 'Ready')?.status === 'True';
    // the sandbox's address, read once it exists (it does not change for the pod's life)
    cur.podIP ??= this.hooks.podIp?.(cur.uid);
    const since = cur.readySince ?? now;
    const pod = this.informer?.get(...(key.split('/') as [string, string]));
    const prevReady = (pod?.status?.conditions as { type: string; status: string; lastTransitionTime?: string }[] | undefined)?.find((c) => c.type === 'Ready');
    const transition = prevReady && (prevReady.status === 'True') === ready ? prevReady.lastTransitionTime : since;
    const status = {
      phase: st.phase,
      conditions: [
        { type: 'Initialized', status: 'True' },
        { type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: transition },
        { type: 'ContainersReady', status: ready ? 'True' : 'False', lastTransitionTime: transition },
        scheduledCondition(pod),
      ],
      hostIP: this.hooks.hostIp ?? '127.0.0.1',
      ...(cur.podIP ? { podIP: cur.podIP, podIPs: [{ ip: cur.podIP }] } : {}),
      startTime: (pod?.status?.startTime as string | undefined) ?? cur.startTime,
      containerStatuses: st.containerStatuses.map((c) => ({
        name: c.name,
        image: c.image,
        state: c.state,
        ...(c.lastState ? { lastState: c.lastState } : {}),
        ready: c.ready,
        restartCount: c.restartCount,
        started: c.started,
      })),
    };
    // Nothing new to say: the same as the last status queued, or (none queued yet) as the store's.
    // Not the store's once one was queued: the informer may not have seen that write yet, and a
    // change back to what it shows would be lost (Ready False written, then Ready True skipped
    // because the informer still showed the Ready True of before an agent restart).
    const json = stableJson(status);
    if (cur.queued !== undefined ? cur.queued === json : pod && pod.metadata.uid === cur.uid && stableJson(pod.status) === json) return false;
    cur.queued = json;
    this.pendingStatus.set(key, { uid: cur.uid, status });
    return true;
  }

  private async flushStatus(key: string): Promise<void> {
    const [ns, name] = key.split('/') as [string, string];
    let attempt = 0;
    try {
      for (let next = this.pendingStatus.get(key); next && !this.stopped; next = this.pendingStatus.get(key)) {
        this.pendingStatus.delete(key);
        try {
          // (sent at once: a pod's watchers wait on it, Running above all)
          await this.res!.send(POD, ns, name, { type: 'status', uid: next.uid, status: next.status }, { timeout: 5000, urgent: 'pod-status' });
          attempt = 0;
        } catch (err) {
          if (isGoneOrConflict(err)) {
            // not written: the next status is compared with the store's again
            const cur = this.local.get(key);
            if (cur && cur.uid === next.uid && !this.pendingStatus.has(key)) cur.queued = undefined;
            continue;
          }
          // the control plane is away (restarting, failing over): the newest status goes again
          this.logger.debug({ err, pod: key }, 'pod status not reported; retrying');
          if (!this.pendingStatus.has(key)) this.pendingStatus.set(key, next);
          await sleep(systemClock, backoff(attempt++, 100, 5000)).catch(() => undefined);
        }
      }
    } finally {
      this.inflight.delete(key);
    }
  }

  private async finalize(ns: string, name: string, uid: string): Promise<void> {
    await untilAnswered(() => this.res!.send(POD, ns, name, { type: 'finalize', uid }, { timeout: 5000 }), {
      stopped: () => this.stopped,
      baseMs: 100,
      capMs: 5000,
      retry: (err) => !isGoneOrConflict(err),
      onRetry: (err, attempt) => attempt === 0 && this.logger.warn({ err, pod: `${ns}/${name}` }, 'pod not finalized yet; retrying'),
    }).catch(() => undefined); // gone already, or finalized by someone else: done either way
  }

  async stop(): Promise<void> {
    this.stopped = true;
    // (pods told of ahead and not in the store: their held shims give up, crun never runs)
    for (const cur of this.local.values()) if (this.untentative(cur)) this.hooks.refuseStarts?.(cur.uid, new RuntimeError('the node agent stopped before the store had the pod', { podUid: cur.uid }));
    for (const t of this.held.values()) clearTimeout(t);
    this.held.clear();
    this.heldStatus.clear();
    this.stopEvents?.();
    await this.informer?.stop();
    await this.services?.stop();
    await Promise.all(this.inflight.values());
    await this.registerLoop;
    await this.networkLoop;
  }
}

/** Failures after which a command may succeed when sent again. */
const PASSING = new Set(['TRP_ERR_TIMEOUT', 'TRP_ERR_UNAVAILABLE', 'TRP_ERR_ACTOR_FAILED', 'TRP_ERR_PERSIST']);

/** The PodScheduled condition as the scheduler set it (its time kept). */
function scheduledCondition(pod: KObject | undefined): Record<string, unknown> {
  const c = (pod?.status?.conditions as { type: string; status: string; lastTransitionTime?: string }[] | undefined)?.find((x) => x.type === 'PodScheduled' && x.status === 'True');
  return { type: 'PodScheduled', status: 'True', ...(c?.lastTransitionTime ? { lastTransitionTime: c.lastTransitionTime } : {}) };
}
