/**
 * Hollow nodes (Kubernetes' kubemark): node agents that speak the real bus protocol — register
 * their Node, heartbeat, follow the pods bound to them, report status, finalize deletions — but
 * simulate containers. The control plane takes no shortcut for them. One fleet serves many
 * nodes over one watch, so a thousand of them fit in one process.
 */
import { HEARTBEAT_TYPE, heartbeatBody, kindInfo, type KObject } from '../protocol/index.js';
import { Informer, KvStore, Resources, type Bus } from '../actors/index.js';
import type { Logger } from '../supervisor/index.js';
import { codeOf, isGoneOrConflict, untilAnswered } from './retry.js';

const POD = kindInfo('Pod')!;
const NODE = kindInfo('Node')!;

export interface HollowOptions {
  heartbeatMs?: number;
  capacity?: { cpu: string; memory: string; pods: string };
  labels?: Record<string, string>;
  /** How long a pod takes to become Ready (ms); default 0. */
  readyAfterMs?: number | ((pod: KObject) => number);
  /** How long a pod takes to stop (ms); default 0. */
  stopAfterMs?: number;
  logger?: Logger;
}

export class HollowFleet {
  private readonly alive = new Set<string>();
  /** The fleet's node names (the array is what the caller gave; this answers "is it ours" at once). */
  private readonly names: Set<string>;
  private readonly running = new Map<string, string>();
  private informer?: Informer;
  private timer?: NodeJS.Timeout;
  private res?: Resources;
  private seq = 0;
  private addresses = 0;
  private stopped = false;
  /** Pod key → time it was reported Running (ms), for measurements. */
  readonly runningAt = new Map<string, number>();

  constructor(
    readonly bus: Bus,
    readonly nodes: string[],
    readonly opts: HollowOptions = {},
  ) {
    for (const n of nodes) this.alive.add(n);
    this.names = new Set(nodes);
  }

  /**
   * The fleet's pod informer (every pod, from the store), once started: what else in the process
   * watches pods can follow this one instead of decoding every pod change a second time.
   */
  get pods(): Informer | undefined {
    return this.informer;
  }

  async start(): Promise<void> {
    const { bus } = this;
    if (!bus.codec.types.has(HEARTBEAT_TYPE)) bus.codec.types.register(HEARTBEAT_TYPE, heartbeatBody);
    this.res = await Resources.open(bus);
    this.beat();
    this.timer = setInterval(() => this.beat(), this.opts.heartbeatMs ?? 1000);
    const cap = this.opts.capacity ?? { cpu: '4', memory: '16Gi', pods: '110' };
    // registered like a real agent: retried until a control plane answers
    this.registered = Promise.all(this.nodes.map((name) => this.register(name, cap)));
    const kv = await KvStore.open(bus, bus.subjects.stateBucket);
    this.informer = new Informer(bus, kv, POD, this.opts.logger);
    this.informer.on((type, pod) => {
      if (type !== 'delete') this.sync(pod);
      else this.running.delete(`${pod.metadata.namespace}/${pod.metadata.name}`);
    });
    await this.informer.start();
  }

  /** Resolves once every node is registered. */
  registered: Promise<unknown> = Promise.resolve();

  private async register(name: string, cap: { cpu: string; memory: string; pods: string }): Promise<void> {
    await untilAnswered(
      () =>
        this.res!.send(NODE, undefined, name, {
          type: 'patch',
          create: { apiVersion: 'v1', kind: 'Node', metadata: { name } },
          metadata: { labels: { 'kubernetes.io/hostname': name, 'troupe.dev/hollow': 'true', ...this.opts.labels } },
          status: { capacity: cap, allocatable: cap, nodeInfo: { kubeletVersion: 'troupe-hollow', containerRuntimeVersion: 'hollow' } },
        }, { timeout: 5000 }),
      { stopped: () => this.stopped, baseMs: 50, capMs: 1000 },
    );
  }

  /** Stops one node's heartbeats and pod handling, as if its machine died. */
  kill(node: string): void {
    this.alive.delete(node);
  }

  revive(node: string): void {
    this.alive.add(node);
    for (const p of this.informer?.list() ?? []) if (p.spec.nodeName === node) this.sync(p);
  }

  /** Pods this fleet runs, per node. */
  podsOn(node: string): string[] {
    return [...this.running].filter(([, n]) => n === node).map(([k]) => k);
  }

  private beat(): void {
    for (const node of this.alive) {
      try {
        this.bus.publish(this.bus.subjects.nodeHb(node), HEARTBEAT_TYPE, { node, seq: this.seq, pods: 0 });
      } catch {
        // a heartbeat lost is the same as a late one
      }
    }
    this.seq++;
  }

  private sync(pod: KObject): void {
    const node = pod.spec.nodeName;
    if (!node || !this.alive.has(node) || this.stopped) return;
    if (!this.names.has(node)) return;
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    const uid = pod.metadata.uid!;
    if (pod.metadata.deletionTimestamp) {
      // a pod is bound to one node: stopped here, then finalized (again, harmlessly, on a later update)
      this.running.delete(key);
      this.later(() => void this.send(pod, { type: 'finalize', uid }), this.opts.stopAfterMs ?? 0);
      return;
    }
    if (this.running.has(key)) return;
    this.running.set(key, node);
    // a simulated address, unique in this fleet
    const n = ++this.addresses;
    const podIP = `10.200.${(n >> 8) & 255}.${n & 255}`;
    const now = new Date().toISOString();
    const containerStatuses = (ready: boolean) =>
      pod.spec.containers.map((c: { name: string; image: string }) => ({ name: c.name, image: c.image, state: { running: { startedAt: now } }, ready, restartCount: 0, started: true }));
    const ra = typeof this.opts.readyAfterMs === 'function' ? this.opts.readyAfterMs(pod) : (this.opts.readyAfterMs ?? 0);
    const ready = () => {
      if (!this.alive.has(node) || this.running.get(key) !== node) return;
      const t = new Date().toISOString();
      void this.send(pod, {
        type: 'status',
        uid,
        status: {
          phase: 'Running',
          hostIP: '127.0.0.1',
          podIP,
          podIPs: [{ ip: podIP }],
          startTime: now,
          conditions: [
            { type: 'Initialized', status: 'True' },
            { type: 'Ready', status: 'True', lastTransitionTime: t },
            { type: 'ContainersReady', status: 'True', lastTransitionTime: t },
            scheduledCondition(pod),
          ],
          containerStatuses: containerStatuses(true),
        },
      }).then(() => this.runningAt.set(key, Date.now()));
    };
    if (ra > 0) {
      void this.send(pod, {
        type: 'status',
        uid,
        status: { phase: 'Running', hostIP: '127.0.0.1', podIP, podIPs: [{ ip: podIP }], startTime: now, conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: now }, scheduledCondition(pod)], containerStatuses: containerStatuses(false) },
      });
      this.later(ready, ra);
    } else ready();
  }

  /** Sends a pod command, retried while the control plane is away (as a real agent does). */
  private async send(pod: KObject, cmd: Parameters<Resources['send']>[3]): Promise<void> {
    try {
      await untilAnswered(() => this.res!.send(POD, pod.metadata.namespace, pod.metadata.name, cmd, { timeout: 5000 }), {
        stopped: () => this.stopped,
        baseMs: 50,
        capMs: 2000,
        retry: (err) => codeOf(err) === 'TRP_ERR_TIMEOUT' || codeOf(err) === 'TRP_ERR_UNAVAILABLE',
      });
    } catch (err) {
      if (!isGoneOrConflict(err)) this.opts.logger?.warn({ err }, 'hollow node: command failed');
    }
  }

  private readonly timers = new Set<NodeJS.Timeout>();

  /** A simulated delay, cancelled when the fleet stops. */
  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.timer) clearInterval(this.timer);
    await this.informer?.stop();
    await this.registered;
  }
}


/** The PodScheduled condition as the scheduler set it (its time kept). */
function scheduledCondition(pod: KObject | undefined): Record<string, unknown> {
  const c = (pod?.status?.conditions as { type: string; status: string; lastTransitionTime?: string }[] | undefined)?.find((x) => x.type === 'PodScheduled' && x.status === 'True');
  return { type: 'PodScheduled', status: 'True', ...(c?.lastTransitionTime ? { lastTransitionTime: c.lastTransitionTime } : {}) };
}
