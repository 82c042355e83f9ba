/**
 * Node lifecycle: Ready ⇄ NotReady from heartbeats, and the replacement of a lost node's pods.
 *
 * A node whose agent has been silent for `notReadyAfterMs` (default 2 s) becomes Ready=Unknown
 * and is tainted `node.kubernetes.io/unreachable:NoExecute`; its pods are deleted (their
 * ReplicaSets make new ones, which the scheduler puts elsewhere) at once, or after the pod's own
 * `tolerationSeconds` for that taint. A node that comes back is Ready again only after its
 * heartbeats have been steady for a while that doubles with each recent flap (damping), so a
 * flapping link does not bounce pods around.
 */
import type { Bus } from './bus.js';
import { HEARTBEAT_TYPE, type KObject } from '../protocol/index.js';
import { systemClock, type Clock, type Logger, type TimerHandle } from '../supervisor/index.js';
import type { EventRecorder } from './event-recorder.js';
import type { Informer } from './informer.js';
import { condition } from './pod-util.js';
import type { Resources } from './resources.js';
import { kindOf } from './resource-machine.js';
import { tolerates } from './scheduler.js';
import type { Subscription } from '@nats-io/transport-node';

const NODE = kindOf('node');
const POD = kindOf('pod');
export const UNREACHABLE_TAINT = 'node.kubernetes.io/unreachable';

export interface NodeLifecycleOptions {
  /** Silence after which a node is NotReady (ms). */
  notReadyAfterMs?: number;
  /** Steady heartbeats needed before a returning node is Ready again (ms); doubles per recent flap. */
  readyAfterMs?: number;
  /** How far back flaps are counted (ms). */
  flapWindowMs?: number;
  tickMs?: number;
  clock?: Clock;
}

interface Seen {
  last: number;
  /** Start of the current unbroken run of heartbeats. */
  steadySince: number;
  flaps: number[];
  notReadySince?: number;
}

export class NodeLifecycle {
  private readonly seen = new Map<string, Seen>();
  private readonly clock: Clock;
  private readonly startedAt: number;
  private timer?: TimerHandle;
  private sub?: Subscription;
  private busy = false;
  private stopped = false;
  private readonly evicting = new Set<string>();
  private readonly opts: Required<Omit<NodeLifecycleOptions, 'clock'>>;

  constructor(
    private readonly bus: Bus,
    private readonly res: Resources,
    private readonly nodes: Informer,
    private readonly pods: Informer,
    private readonly recorder: EventRecorder,
    private readonly logger: Logger,
    opts: NodeLifecycleOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.startedAt = this.clock.now();
    this.opts = { notReadyAfterMs: opts.notReadyAfterMs ?? 2000, readyAfterMs: opts.readyAfterMs ?? 1000, flapWindowMs: opts.flapWindowMs ?? 300_000, tickMs: opts.tickMs ?? 200 };
  }

  start(): void {
    this.sub = this.bus.subscribe<{ node: string }>(this.bus.subjects.nodeHbAll(), (env) => this.beat(env.body.node), { accept: [HEARTBEAT_TYPE] });
    const tick = () => {
      if (this.stopped) return;
      this.timer = this.clock.setTimeout(() => {
        void this.check().finally(tick);
      }, this.opts.tickMs);
    };
    tick();
  }

  stop(): void {
    this.stopped = true;
    this.sub?.unsubscribe();
    if (this.timer) this.clock.clearTimeout(this.timer);
  }

  private beat(node: string): void {
    const now = this.clock.now();
    const s = this.seen.get(node);
    if (!s) {
      this.seen.set(node, { last: now, steadySince: now, flaps: [] });
      return;
    }
    if (now - s.last > this.opts.notReadyAfterMs) s.steadySince = now;
    s.last = now;
  }

  /** One pass over every node. */
  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const now = this.clock.now();
      for (const node of [...this.nodes.list()]) {
        const name = node.metadata.name;
        const s = this.seen.get(name) ?? { last: this.startedAt, steadySince: Infinity, flaps: [] };
        if (!this.seen.has(name)) this.seen.set(name, s);
        const ready = condition(node, 'Ready')?.status === 'True';
        const silent = now - s.last > this.opts.notReadyAfterMs;
        if (ready && silent) {
          s.flaps = [...s.flaps.filter((t) => now - t < this.opts.flapWindowMs), now];
          s.notReadySince = now;
          await this.setReady(node, false, `Kubelet stopped posting node status (silent for ${now - s.last} ms).`);
          this.recorder.record(node, 'Normal', 'NodeNotReady', `Node ${name} status is now: NodeNotReady`);
        } else if (!ready && !silent) {
          const damping = this.opts.readyAfterMs * 2 ** Math.max(0, s.flaps.filter((t) => now - t < this.opts.flapWindowMs).length - 1);
          const fresh = condition(node, 'Ready') === undefined;
          if (fresh || now - s.steadySince >= damping) {
            s.notReadySince = undefined;
            await this.setReady(node, true, 'troupe agent is posting ready status');
            this.recorder.record(node, 'Normal', 'NodeReady', `Node ${name} status is now: NodeReady`);
          }
        }
        if (!ready || silent) await this.evict(node, s.notReadySince ?? now, now);
      }
    } catch (err) {
      this.logger.warn({ err }, 'node lifecycle pass failed');
    } finally {
      this.busy = false;
    }
  }

  private async setReady(node: KObject, ready: boolean, message: string): Promise<void> {
    const at = new Date(this.clock.now()).toISOString();
    const others = ((node.status?.conditions as { type: string }[] | undefined) ?? []).filter((c) => c.type !== 'Ready');
    const conditions = [
      ...others,
      ready
        ? { type: 'Ready', status: 'True', reason: 'KubeletReady', message, lastHeartbeatTime: at, lastTransitionTime: at }
        : { type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message, lastHeartbeatTime: at, lastTransitionTime: at },
    ];
    const taints = ((node.spec?.taints as { key: string }[] | undefined) ?? []).filter((t) => t.key !== UNREACHABLE_TAINT);
    if (!ready) taints.push({ key: UNREACHABLE_TAINT, effect: 'NoExecute', timeAdded: at } as never);
    await this.res.send(NODE, undefined, node.metadata.name, { type: 'patch', status: { conditions }, spec: { taints: taints.length ? taints : null } });
  }

  /** Deletes the pods of an unreachable node whose toleration of that has run out. */
  private async evict(node: KObject, since: number, now: number): Promise<void> {
    const work: Promise<unknown>[] = [];
    for (const pod of this.pods.list()) {
      if (pod.spec.nodeName !== node.metadata.name) continue;
      const key = `${pod.metadata.namespace}/${pod.metadata.name}/${pod.metadata.uid}`;
      if (this.evicting.has(key)) continue;
      const t = tolerates(pod.spec.tolerations, { key: UNREACHABLE_TAINT, effect: 'NoExecute' });
      if (t && t.tolerationSeconds === undefined) continue; // tolerates it forever
      const waitMs = (t?.tolerationSeconds ?? 0) * 1000;
      if (now - since < waitMs) continue;
      this.evicting.add(key);
      this.recorder.record(pod, 'Normal', 'TaintManagerEviction', `Deleting pod ${pod.metadata.name}: node ${node.metadata.name} is unreachable`);
      work.push(
        this.res
          .send(POD, pod.metadata.namespace, pod.metadata.name, { type: 'delete', uid: pod.metadata.uid, force: true })
          .catch((err) => this.logger.warn({ err, pod: key }, 'eviction failed'))
          .finally(() => this.evicting.delete(key)),
      );
    }
    await Promise.all(work);
  }
}
