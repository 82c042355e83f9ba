/**
 * The scheduler: binds each pending pod to a node. Filters (Ready and schedulable, taints and
 * tolerations, nodeSelector, required node affinity, requests against allocatable, pod count,
 * host ports) then scores (least allocated, and fewest pods of the same owner: replicas spread).
 * A pod no node fits stays Pending with a PodScheduled=False condition and a FailedScheduling
 * event that says why, node by node ("0/2 nodes are available: 2 Insufficient memory."), and is
 * tried again when nodes or pods change. Bindings are assumed at once in the scheduler's own
 * accounting, so a burst of pods does not pile onto one node before the store catches up.
 *
 * Placement at creation (`place`): a controller in the same process that is about to create a pod
 * asks first, and creates the pod already bound (spec.nodeName) to the node the same filters and
 * scores chose, counted here as a binding is. A pod so placed costs one write, not two (created,
 * then bound), and starts a store round trip sooner; one that fits nowhere, or is asked about
 * before the scheduler has its caches, is created unbound and goes through the queue above, which
 * says why it waits. Kubernetes separates the two (the scheduler is another process); Borg and
 * Nomad place before they create.
 */
import { milliCpu, parseQuantity, sameJson, type KObject, type Toleration } from '../protocol/index.js';
import type { Logger } from '../supervisor/index.js';
import type { EventRecorder } from './event-recorder.js';
import { objectKey, type Informer } from './informer.js';
import { condition, controllerRef, hostPorts, isActive, podRequests } from './pod-util.js';
import type { Resources } from './resources.js';
import { WorkQueue } from './work-queue.js';
import { kindOf } from './resource-machine.js';

const POD = kindOf('pod');
/** Bindings in flight at once. */
const MAX_BINDING = 256;

interface NodeUse {
  milliCpu: number;
  memory: number;
  pods: number;
  ports: Set<number>;
  /** Pods per owner uid, for spreading. */
  owners: Map<string, number>;
}

export class Scheduler {
  readonly queue: WorkQueue;
  /** Pod key → node of a binding sent but not yet seen in the store. */
  private readonly assumed = new Map<string, string>();
  private readonly unschedulable = new Set<string>();
  private binding = 0;
  private facts?: NodeFacts[];
  /** Where the next search over the nodes begins. */
  private cursor = 0;
  /** A small generator's state for breaking ties (Math.random's doubles were a tenth of the scheduler's garbage). */
  private seed = (Math.random() * 0x3fffffff) | 0;
  private readonly bindWaiters: (() => void)[] = [];
  private readonly use = new Map<string, NodeUse>();
  /** Pod key → node it is counted on. */
  private readonly counted = new Map<string, { node: string; cpu: number; mem: number; ports: number[]; owner?: string }>();
  /** Its caches are synced and it decides (start). */
  private started = false;

  constructor(
    private readonly res: Resources,
    private readonly pods: Informer,
    private readonly nodes: Informer,
    private readonly recorder: EventRecorder,
    private readonly logger: Logger,
  ) {
    this.queue = new WorkQueue((key) => this.schedule(key), { concurrency: 1, onError: (key, err) => this.logger.warn({ err, pod: key }, 'scheduling failed; retrying') });
    pods.on((type, pod) => {
      const key = objectKey(pod);
      if (type === 'delete') {
        this.uncount(key);
        this.assumed.delete(key);
        this.unschedulable.delete(key);
        this.retryUnschedulable();
        return;
      }
      if (pod.spec.nodeName) {
        this.assumed.delete(key);
        if (isActive(pod)) this.count(key, pod, pod.spec.nodeName);
        else {
          this.uncount(key);
          this.retryUnschedulable();
        }
      } else if (!pod.metadata.deletionTimestamp && !this.assumed.has(key)) this.queue.add(key);
    });
    nodes.on((type, node, old) => {
      this.facts = undefined;
      if (type === 'delete' || !old || !sameJson(old.spec, node.spec) || !sameJson(old.status?.conditions, node.status?.conditions) || !sameJson(old.status?.allocatable, node.status?.allocatable)) {
        this.retryUnschedulable();
      }
    });
  }

  start(): void {
    for (const pod of this.pods.list()) if (!pod.spec.nodeName && !pod.metadata.deletionTimestamp) this.queue.add(objectKey(pod));
    this.started = true;
    this.queue.resume();
  }

  /**
   * Placement at creation: the node for a pod about to be created, counted at once as a binding
   * is, or undefined (no node fits, the scheduler not started, or a pod of that name already
   * known): the pod is then created unbound and scheduled from the queue. Whoever asked says how
   * the creation went: `placed` once the pod is stored, `unplaced` if it was not.
   */
  place(pod: KObject): string | undefined {
    if (!this.started || pod.spec.nodeName) return undefined;
    const key = objectKey(pod);
    if (this.counted.has(key) || this.assumed.has(key) || this.pods.get(pod.metadata.namespace, pod.metadata.name)) return undefined;
    const { node } = this.pick(pod);
    if (!node) return undefined;
    this.assumed.set(key, node);
    this.count(key, pod, node);
    return node;
  }

  /** A pod bound (or placed at creation and stored): its Scheduled event. */
  placed(pod: KObject, node: string): void {
    const { namespace: ns, name } = pod.metadata as { namespace: string; name: string };
    this.recorder.record(pod, 'Normal', 'Scheduled', `Successfully assigned ${ns}/${name} to ${node}`);
  }

  /** A pod placed at creation was not created: its node's share is given back. */
  unplaced(pod: KObject, node: string): void {
    const key = objectKey(pod);
    if (this.assumed.get(key) !== node) return;
    this.assumed.delete(key);
    if (this.counted.get(key)?.node === node && !this.pods.get(pod.metadata.namespace, pod.metadata.name)) {
      this.uncount(key);
      this.retryUnschedulable();
    }
  }

  private retryUnschedulable(): void {
    for (const k of this.unschedulable) this.queue.add(k);
  }

  private usage(node: string): NodeUse {
    let u = this.use.get(node);
    if (!u) {
      u = { milliCpu: 0, memory: 0, pods: 0, ports: new Set(), owners: new Map() };
      this.use.set(node, u);
    }
    return u;
  }

  private count(key: string, pod: KObject, node: string): void {
    const prev = this.counted.get(key);
    if (prev?.node === node) return;
    if (prev) this.uncount(key);
    const r = podRequests(pod);
    const owner = controllerRef(pod)?.uid;
    const ports = hostPorts(pod);
    const u = this.usage(node);
    u.milliCpu += r.milliCpu;
    u.memory += r.memory;
    u.pods++;
    for (const p of ports) u.ports.add(p);
    if (owner) u.owners.set(owner, (u.owners.get(owner) ?? 0) + 1);
    this.counted.set(key, { node, cpu: r.milliCpu, mem: r.memory, ports, owner });
  }

  private uncount(key: string): void {
    const c = this.counted.get(key);
    if (!c) return;
    this.counted.delete(key);
    const u = this.usage(c.node);
    u.milliCpu -= c.cpu;
    u.memory -= c.mem;
    u.pods--;
    for (const p of c.ports) u.ports.delete(p);
    if (c.owner) {
      const n = (u.owners.get(c.owner) ?? 1) - 1;
      if (n <= 0) u.owners.delete(c.owner);
      else u.owners.set(c.owner, n);
    }
  }

  private async schedule(key: string): Promise<void> {
    const [ns, name] = key.split('/') as [string, string];
    const pod = this.pods.get(ns, name);
    if (!pod || pod.spec.nodeName || pod.metadata.deletionTimestamp || this.assumed.has(key)) {
      this.unschedulable.delete(key);
      return;
    }
    const { node, reasons, total } = this.pick(pod);
    if (!node) {
      this.unschedulable.add(key);
      const counts = new Map<string, number>();
      for (const r of reasons) counts.set(r, (counts.get(r) ?? 0) + 1);
      const detail = [...counts].sort((a, b) => a[0].localeCompare(b[0])).map(([r, n]) => `${n} ${r}`).join(', ');
      const message = `0/${total} nodes are available${detail ? `: ${detail}` : ''}.`;
      const prev = condition(pod, 'PodScheduled');
      if (prev?.message !== message) {
        this.recorder.record(pod, 'Warning', 'FailedScheduling', message);
        const conditions = [...((pod.status?.conditions as { type: string }[] | undefined) ?? []).filter((c) => c.type !== 'PodScheduled'), { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message, lastTransitionTime: new Date().toISOString() }];
        await this.res.send(POD, ns, name, { type: 'status', uid: pod.metadata.uid, status: { ...pod.status, conditions } }).catch(() => undefined);
      }
      // nodes and pods changing bring it back; this is the slow safety net
      this.queue.addAfter(key, 10_000);
      return;
    }
    this.unschedulable.delete(key);
    this.assumed.set(key, node);
    this.count(key, pod, node);
    // The decision is made and counted; the binding goes out while the next pod is decided
    // (kube-scheduler binds asynchronously too). A bounded number are in flight.
    while (this.binding >= MAX_BINDING) await new Promise<void>((r) => this.bindWaiters.push(r));
    this.binding++;
    void this.bind(pod, key, node).finally(() => {
      this.binding--;
      this.bindWaiters.shift()?.();
    });
  }

  private async bind(pod: KObject, key: string, node: string): Promise<void> {
    const { namespace: ns, name } = pod.metadata as { namespace: string; name: string };
    try {
      await this.res.send(POD, ns, name, { type: 'bind', node, uid: pod.metadata.uid });
      this.placed(pod, node);
    } catch (err) {
      this.assumed.delete(key);
      this.uncount(key);
      const code = (err as { code?: string }).code;
      if (code === 'TRP_ERR_NOT_FOUND' || code === 'TRP_ERR_CONFLICT') return;
      this.logger.warn({ err, pod: key }, 'binding failed; scheduling again');
      this.queue.addAfter(key, 200);
    }
  }

  /** The nodes, with their allocatable parsed once per change (rebuilt lazily). */
  private nodeFacts(): NodeFacts[] {
    if (this.facts) return this.facts;
    this.facts = [...this.nodes.list()].map((node) => {
      const alloc = node.status?.allocatable ?? {};
      const cpu = alloc.cpu !== undefined ? (milliCpu(alloc.cpu) ?? 0) : Infinity;
      const memory = alloc.memory !== undefined ? (parseQuantity(alloc.memory) ?? 0) : Infinity;
      return {
        node,
        name: node.metadata.name,
        cpu,
        memory,
        scoreCpu: Number.isFinite(cpu) && cpu > 0 ? cpu : 1,
        scoreMemory: Number.isFinite(memory) && memory > 0 ? memory : 1,
        pods: Number(alloc.pods ?? 110),
        ready: condition(node, 'Ready')?.status === 'True',
        taints: ((node.spec?.taints ?? []) as { key: string; value?: string; effect: string }[]).filter((t) => t.effect !== 'PreferNoSchedule'),
        use: this.usage(node.metadata.name),
      };
    });
    return this.facts;
  }

  /**
   * The best node for a pod, or why none fits. On big clusters, as kube-scheduler does, the
   * search stops once enough feasible nodes are found (at least 100, or 10% of the nodes),
   * starting where the previous search stopped, so every node gets its turn.
   */
  pick(pod: KObject): { node?: string; reasons: string[]; total: number } {
    const reasons: string[] = [];
    const req = podRequests(pod);
    const ports = hostPorts(pod);
    const owner = controllerRef(pod)?.uid;
    const facts = this.nodeFacts();
    const total = facts.length;
    const enough = total <= 100 ? total : Math.max(100, Math.ceil(total / 10));
    let best: string | undefined;
    let bestScore = -Infinity;
    /** Nodes found with the best score so far: each is kept with an equal chance (reservoir sampling, as kube-scheduler's selectHost). */
    let ties = 0;
    let feasible = 0;
    for (let i = 0; i < total && feasible < enough; i++) {
      const f = facts[(this.cursor + i) % total]!;
      const why = this.filter(pod, f, req, ports);
      if (why) {
        reasons.push(why);
        continue;
      }
      feasible++;
      const score = this.score(f, req, owner);
      if (score > bestScore) {
        bestScore = score;
        best = f.name;
        ties = 1;
      } else if (score === bestScore && this.random() % ++ties === 0) best = f.name;
      if (feasible === enough) this.cursor = (this.cursor + i + 1) % total;
    }
    return { node: best, reasons, total };
  }

  /** A pseudo-random whole number below 2^20 (the high bits of a 30-bit linear congruential generator; only for ties). */
  private random(): number {
    this.seed = (Math.imul(this.seed, 1103515245) + 12345) & 0x3fffffff;
    return this.seed >>> 10;
  }

  private filter(pod: KObject, f: NodeFacts, req: { milliCpu: number; memory: number }, ports: number[]): string | undefined {
    const node = f.node;
    if (!f.ready) return "node(s) had untolerated taint {node.kubernetes.io/not-ready: }";
    if (node.spec?.unschedulable && !tolerates(pod.spec.tolerations, { key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' })) return 'node(s) were unschedulable';
    for (const t of f.taints) {
      if (!tolerates(pod.spec.tolerations, t)) return `node(s) had untolerated taint {${t.key}: ${t.value ?? ''}}`;
    }
    if (pod.spec.nodeSelector || pod.spec.affinity) {
      const labels = node.metadata.labels ?? {};
      if (pod.spec.nodeSelector) for (const [k, v] of Object.entries(pod.spec.nodeSelector)) if (labels[k] !== v) return "node(s) didn't match Pod's node affinity/selector";
      const terms = pod.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
      if (terms && !terms.some((t: { matchExpressions?: NodeReq[] }) => (t.matchExpressions ?? []).every((e) => nodeMatches(e, labels)))) return "node(s) didn't match Pod's node affinity/selector";
    }
    const u = f.use;
    if (u.pods + 1 > f.pods) return 'Too many pods';
    if (req.milliCpu > 0 && u.milliCpu + req.milliCpu > f.cpu) return 'Insufficient cpu';
    if (req.memory > 0 && u.memory + req.memory > f.memory) return 'Insufficient memory';
    for (const p of ports) if (u.ports.has(p)) return "node(s) didn't have free ports for the requested pod ports";
    return undefined;
  }

  private score(f: NodeFacts, req: { milliCpu: number; memory: number }, owner: string | undefined): number {
    const u = f.use;
    // least allocated: the share left free after this pod, 0..100
    const free = (1 - (u.milliCpu + req.milliCpu) / f.scoreCpu + (1 - (u.memory + req.memory) / f.scoreMemory)) * 50;
    // spread: each pod of the same owner already there costs more than any difference in free share
    const same = owner ? (u.owners.get(owner) ?? 0) : 0;
    return Math.max(0, free) - same * 200 - u.pods * 0.001;
  }
}

interface NodeFacts {
  node: KObject;
  name: string;
  cpu: number;
  memory: number;
  /** cpu and memory as the score divides by (1 when unknown or infinite). */
  scoreCpu: number;
  scoreMemory: number;
  pods: number;
  ready: boolean;
  /** Its taints that filter (PreferNoSchedule ones only score). */
  taints: { key: string; value?: string; effect: string }[];
  /** Its entry in the scheduler's accounting (kept for the scheduler's life). */
  use: NodeUse;
}

type NodeReq = { key: string; operator: string; values?: string[] };

function nodeMatches(e: NodeReq, labels: Record<string, string>): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, e.key);
  const v = labels[e.key];
  switch (e.operator) {
    case 'In':
      return has && e.values!.includes(v!);
    case 'NotIn':
      return !has || !e.values!.includes(v!);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
      return has && /^-?\d+$/.test(v!) && Number(v) > Number(e.values![0]);
    case 'Lt':
      return has && /^-?\d+$/.test(v!) && Number(v) < Number(e.values![0]);
    default:
      return false;
  }
}

/** Does one of the tolerations tolerate the taint? */
export function tolerates(tolerations: Toleration[] | undefined, taint: { key: string; value?: string; effect: string }): Toleration | undefined {
  return (tolerations ?? []).find((t) => {
    if (t.effect && t.effect !== taint.effect) return false;
    if (!t.key) return t.operator === 'Exists';
    if (t.key !== taint.key) return false;
    return t.operator === 'Exists' || (t.value ?? '') === (taint.value ?? '');
  });
}
