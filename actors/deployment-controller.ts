/**
 * The Deployment controller: one ReplicaSet per pod template (named by the template's hash),
 * rolled from old to new by RollingUpdate (maxSurge, maxUnavailable, counted on available pods,
 * so minReadySeconds and readiness hold the pace) or Recreate; revisions numbered on the
 * ReplicaSets (`deployment.kubernetes.io/revision`), a rollback being the old template coming
 * back with a new number; old ReplicaSets beyond revisionHistoryLimit removed; conditions
 * Available and Progressing, with ProgressDeadlineExceeded when a rollout stops moving.
 */
import { HASH_LABEL, REVISION, replicaSetOf, sameJson, templateHash, type KObject } from '../protocol/index.js';
import type { Logger } from '../supervisor/index.js';
import type { EventRecorder } from './event-recorder.js';
import { objectKey, type Informer } from './informer.js';
import { condition, controllerRef } from './pod-util.js';
import type { Resources } from './resources.js';
import { WorkQueue } from './work-queue.js';
import { kindOf } from './resource-machine.js';

const RS = kindOf('replicaset');
const DEPLOY = kindOf('deployment');
export { HASH_LABEL, REVISION };

/** maxSurge / maxUnavailable as a number of pods (surge rounds up, unavailable down). */
export function resolveIntOrPercent(v: number | string | undefined, total: number, roundUp: boolean): number {
  if (v === undefined) return 0;
  if (typeof v === 'number') return v;
  const pct = (Number(v.slice(0, -1)) * total) / 100;
  return roundUp ? Math.ceil(pct) : Math.floor(pct);
}

export function revisionOf(rs: KObject): number {
  return Number(rs.metadata.annotations?.[REVISION] ?? 0) || 0;
}

/** How long a Deployment's status waits for its new ReplicaSet's first sync (see syncStatus). */
const STATUS_HOLD_MS = 1000;
/** New Deployments whose first ReplicaSet is made ahead at once (see creating), at most. */
const EARLY_MAX = 4;

export class DeploymentController {
  readonly queue: WorkQueue;
  private readonly ownedRs = new Map<string, Map<string, KObject>>();
  /** Deployments whose status waits for a new ReplicaSet's first sync: since when (ms). */
  private readonly statusHeld = new Map<string, number>();
  /** Deployments whose first ReplicaSet is being made as they are (see creating): key → the Deployment's uid. */
  private readonly early = new Map<string, string>();
  private started = false;

  constructor(
    private readonly res: Resources,
    private readonly deployments: Informer,
    rss: Informer,
    private readonly recorder: EventRecorder,
    private readonly logger: Logger,
  ) {
    this.queue = new WorkQueue((key) => this.reconcile(key), { concurrency: 4, onError: (key, err) => this.logger.warn({ err, deployment: key }, 'deployment sync failed; retrying') });
    deployments.on((_t, d) => this.queue.add(objectKey(d)));
    rss.on((type, rs) => {
      const ref = controllerRef(rs);
      if (!ref || ref.kind !== 'Deployment') return;
      const set = this.ownedRs.get(ref.uid) ?? new Map<string, KObject>();
      this.ownedRs.set(ref.uid, set);
      if (type === 'delete') set.delete(rs.metadata.name);
      else set.set(rs.metadata.name, rs);
      this.queue.add(`${rs.metadata.namespace}/${ref.name}`);
    });
  }

  start(): void {
    for (const d of this.deployments.list()) this.queue.add(objectKey(d));
    this.queue.resume();
    this.started = true;
  }

  /**
   * A Deployment whose creation is on its way to the store (ActorHost.onCreating): its first
   * ReplicaSet is made at once, its write right behind the Deployment's, rather than once the
   * store has the Deployment and the informer has brought it here (a round trip, and the
   * ReplicaSet's own after it, before the first pod could be made). What the reconcile would
   * make of a new Deployment is decided by the Deployment alone: no ReplicaSet can be its yet.
   * Should the Deployment's write fail after all, the ReplicaSet names an owner the store never
   * had, and the garbage collector, which asks the store, removes it with its pods.
   */
  creating(d: KObject): void {
    if (!this.started || d.spec.paused || !d.metadata.uid) return;
    const key = objectKey(d);
    // (a burst of them is left to the queue, which paces it: only what a lone apply waits for goes ahead)
    if (this.early.size >= EARLY_MAX) return;
    if (this.early.has(key) || this.deployments.get(d.metadata.namespace, d.metadata.name) || this.ownedRs.get(d.metadata.uid)?.size) return;
    this.early.set(key, d.metadata.uid);
    this.createRs(d, templateHash(d.spec.template), 1, [])
      .catch((err: unknown) => this.logger.warn({ err, deployment: key }, 'first replicaset not made ahead; the sync makes it'))
      .finally(() => {
        if (this.early.get(key) === d.metadata.uid) this.early.delete(key);
        this.queue.add(key);
      });
  }

  private async reconcile(key: string): Promise<void> {
    const [ns, name] = key.split('/') as [string, string];
    const d = this.deployments.get(ns, name);
    if (!d) {
      this.statusHeld.delete(key);
      return;
    }
    // its first ReplicaSet is on its way (see creating): it brings the Deployment back here
    if (this.early.get(key) === d.metadata.uid) return;
    const rss = [...(this.ownedRs.get(d.metadata.uid!)?.values() ?? [])];
    const hash = templateHash(d.spec.template);
    let newRs = rss.find((rs) => rs.metadata.labels?.[HASH_LABEL] === hash);
    const olds = rss.filter((rs) => rs !== newRs);
    const maxRevision = Math.max(0, ...rss.map(revisionOf));
    const replicas = d.spec.replicas as number;
    if (d.spec.paused) return this.syncStatus(d, newRs, rss, hash);

    // the revision the Deployment is at: its newest ReplicaSet's (recorded with its status, as
    // Kubernetes' status update does, rather than in a write of its own between the ReplicaSet
    // and its first pods)
    let revision: number;
    if (!newRs) {
      newRs = await this.createRs(d, hash, maxRevision + 1, olds);
      if (!newRs) return;
      revision = maxRevision + 1;
    } else if (revisionOf(newRs) < maxRevision) {
      // an older template is back (rollback): it becomes the newest revision
      await this.patchRs(newRs, { metadata: { annotations: { [REVISION]: String(maxRevision + 1) } } });
      this.recorder.record(d, 'Normal', 'DeploymentRollback', `Rolled back deployment "${d.metadata.name}" to revision ${revisionOf(newRs)}`);
      revision = maxRevision + 1;
    } else revision = revisionOf(newRs);

    const activeOlds = olds.filter((rs) => (rs.spec.replicas ?? 0) > 0 || (rs.status?.replicas ?? 0) > 0);
    if (d.spec.strategy.type === 'Recreate') {
      for (const rs of olds) if ((rs.spec.replicas ?? 0) > 0) await this.scale(d, rs, 0);
      // every old pod gone, not only asked to go: their status is current and counts none left
      const oldPodsLeft = olds.some((rs) => (rs.spec.replicas ?? 0) > 0 || (rs.status?.replicas ?? 0) > 0 || (rs.status?.terminatingReplicas ?? 0) > 0 || (rs.status?.observedGeneration ?? 0) < (rs.metadata.generation ?? 1));
      if (!oldPodsLeft && newRs.spec.replicas !== replicas) await this.scale(d, newRs, replicas);
    } else if (activeOlds.length === 0) {
      // not a rollout: the new ReplicaSet simply follows spec.replicas
      if (newRs.spec.replicas !== replicas) await this.scale(d, newRs, replicas);
    } else {
      await this.rollingStep(d, newRs, olds);
    }
    await this.cleanup(d, olds);
    await this.syncStatus(d, newRs, rss, hash, revision);
  }

  private async rollingStep(d: KObject, newRs: KObject, olds: KObject[]): Promise<void> {
    const replicas = d.spec.replicas as number;
    const ru = d.spec.strategy.rollingUpdate ?? {};
    const maxSurge = resolveIntOrPercent(ru.maxSurge, replicas, true);
    let maxUnavailable = resolveIntOrPercent(ru.maxUnavailable, replicas, false);
    if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
    const all = [newRs, ...olds];
    const specTotal = all.reduce((n, rs) => n + (rs.spec.replicas ?? 0), 0);
    // scale up the new ReplicaSet within the surge: counted on what the ReplicaSets have, not only
    // on what they are asked for, since an old one scaled down still has its pods until its
    // controller has deleted them (its status says when): counted on specs alone, a step could
    // make the new pods before the old ones were going, one pod past the surge for a moment
    const newSpec = newRs.spec.replicas ?? 0;
    const podTotal = all.reduce((n, rs) => n + Math.max(rs.spec.replicas ?? 0, rs.status?.replicas ?? 0), 0);
    if (newSpec < replicas && podTotal < replicas + maxSurge) {
      const up = Math.min(replicas - newSpec, replicas + maxSurge - podTotal);
      await this.scale(d, newRs, newSpec + up);
      return;
    }
    if (newSpec > replicas) {
      await this.scale(d, newRs, replicas);
      return;
    }
    // scale old ReplicaSets down while enough pods stay available
    const minAvailable = replicas - maxUnavailable;
    // A ReplicaSet's status may lag its spec: once scaled down to N it will have at most N pods,
    // whatever its last status said. Counting more would scale down twice for the same pods.
    // `scaled` holds what this step has already scaled each old one to (cached objects stay as read).
    const scaled = new Map<KObject, number>();
    const specOf = (rs: KObject) => scaled.get(rs) ?? rs.spec.replicas ?? 0;
    const availableOf = (rs: KObject) => Math.min(rs.status?.availableReplicas ?? 0, specOf(rs));
    const newUnavailable = Math.max(0, newSpec - availableOf(newRs));
    let budget = specTotal - minAvailable - newUnavailable;
    // first the old pods that are not available anyway
    const sorted = [...olds].sort((a, b) => revisionOf(a) - revisionOf(b));
    for (const rs of sorted) {
      if (budget <= 0) break;
      const spec = specOf(rs);
      const unhealthy = Math.max(0, spec - availableOf(rs));
      const cut = Math.min(unhealthy, budget, spec);
      if (cut > 0) {
        await this.scale(d, rs, spec - cut);
        scaled.set(rs, spec - cut);
        budget -= cut;
      }
    }
    const available = all.reduce((n, rs) => n + availableOf(rs), 0);
    let down = available - minAvailable;
    for (const rs of sorted) {
      if (down <= 0) break;
      const spec = specOf(rs);
      const cut = Math.min(spec, down);
      if (cut > 0) {
        await this.scale(d, rs, spec - cut, spec);
        down -= cut;
      }
    }
  }

  private async createRs(d: KObject, hash: string, revision: number, olds: KObject[]): Promise<KObject | undefined> {
    const replicas = d.spec.strategy.type === 'Recreate' || olds.some((rs) => (rs.spec.replicas ?? 0) > 0) ? 0 : d.spec.replicas;
    // (built already normalized from the stored Deployment: see replicaSetOf)
    const rs = replicaSetOf(d, hash, revision, replicas);
    try {
      const reply = await this.res.send(RS, rs.metadata.namespace, rs.metadata.name, { type: 'apply', object: rs, create: true });
      if (replicas > 0) this.recorder.record(d, 'Normal', 'ScalingReplicaSet', `Scaled up replica set ${rs.metadata.name} to ${replicas}`);
      return reply.object;
    } catch (err) {
      if ((err as { details?: { reason?: string } }).details?.reason === 'AlreadyExists') return undefined; // seen on the next pass
      throw err;
    }
  }

  private async scale(d: KObject, rs: KObject, replicas: number, from: number = rs.spec.replicas ?? 0): Promise<void> {
    if (from === replicas) return;
    await this.patchRs(rs, { spec: { replicas }, metadata: { annotations: { 'deployment.kubernetes.io/desired-replicas': String(d.spec.replicas) } } });
    this.recorder.record(d, 'Normal', 'ScalingReplicaSet', `Scaled ${replicas > from ? 'up' : 'down'} replica set ${rs.metadata.name} from ${from} to ${replicas}`);
  }

  private async patchRs(rs: KObject, patch: { spec?: unknown; metadata?: { annotations?: unknown } }): Promise<void> {
    await this.res.send(RS, rs.metadata.namespace, rs.metadata.name, { type: 'patch', ...patch });
  }

  /** Old ReplicaSets with no pods, beyond revisionHistoryLimit, oldest first. */
  private async cleanup(d: KObject, olds: KObject[]): Promise<void> {
    const limit = d.spec.revisionHistoryLimit ?? 10;
    const idle = olds.filter((rs) => (rs.spec.replicas ?? 0) === 0 && (rs.status?.replicas ?? 0) === 0).sort((a, b) => revisionOf(a) - revisionOf(b));
    for (const rs of idle.slice(0, Math.max(0, idle.length - limit))) {
      await this.res.send(RS, rs.metadata.namespace, rs.metadata.name, { type: 'delete', uid: rs.metadata.uid }).catch(() => undefined);
    }
  }

  /** Writes the Deployment's status (and, when it changed, its revision annotation: see reconcile). */
  private async syncStatus(d: KObject, newRs: KObject | undefined, rss: KObject[], hash: string, revision?: number): Promise<void> {
    const now = new Date();
    const key = objectKey(d);
    // A new ReplicaSet its controller has not synced yet has the status it was made with: the
    // counts from it would be stale before they landed (a write, and the store's and every
    // watcher's work, while the first pods start). The status waits for that sync, whose own
    // status write brings the Deployment back here; STATUS_HOLD_MS at most.
    if (newRs && !d.spec.paused && newRs.status?.observedGeneration === undefined) {
      const since = this.statusHeld.get(key);
      if (since === undefined) {
        this.statusHeld.set(key, now.getTime());
        this.queue.addAfter(key, STATUS_HOLD_MS);
        return;
      }
      if (now.getTime() - since < STATUS_HOLD_MS) return;
    }
    this.statusHeld.delete(key);
    const replicas = d.spec.replicas as number;
    const sum = (f: (rs: KObject) => number) => rss.reduce((n, rs) => n + f(rs), 0);
    const total = sum((rs) => rs.status?.replicas ?? 0);
    const ready = sum((rs) => rs.status?.readyReplicas ?? 0);
    const available = sum((rs) => rs.status?.availableReplicas ?? 0);
    const updated = newRs?.metadata.labels?.[HASH_LABEL] === hash ? (newRs.status?.replicas ?? 0) : 0;
    const maxUnavailable = d.spec.strategy.type === 'RollingUpdate' ? resolveIntOrPercent(d.spec.strategy.rollingUpdate?.maxUnavailable, replicas, false) : 0;
    const oldPods = total - updated;
    const complete = updated === replicas && available >= replicas && oldPods === 0 && (newRs?.status?.observedGeneration ?? 0) >= (newRs?.metadata.generation ?? 1);

    const prevP = condition(d, 'Progressing');
    const prevA = condition(d, 'Available');
    const counts = { updated, ready, available, total };
    const moved = !sameJson(counts, { updated: d.status?.updatedReplicas ?? 0, ready: d.status?.readyReplicas ?? 0, available: d.status?.availableReplicas ?? 0, total: d.status?.replicas ?? 0 });
    const generationChanged = (d.status?.observedGeneration ?? 0) !== d.metadata.generation;
    let progressing: { status: string; reason: string; message: string };
    if (d.spec.paused) progressing = { status: 'Unknown', reason: 'DeploymentPaused', message: 'Deployment is paused' };
    else if (complete) progressing = { status: 'True', reason: 'NewReplicaSetAvailable', message: `ReplicaSet "${newRs?.metadata.name}" has successfully progressed.` };
    else {
      const since = prevP?.lastUpdateTime ? Date.parse(prevP.lastUpdateTime) : now.getTime();
      const deadline = (d.spec.progressDeadlineSeconds ?? 600) * 1000;
      const stalled = !moved && !generationChanged && prevP?.reason !== 'NewReplicaSetAvailable' && now.getTime() - since > deadline;
      if (stalled || (prevP?.reason === 'ProgressDeadlineExceeded' && !moved && !generationChanged)) {
        progressing = { status: 'False', reason: 'ProgressDeadlineExceeded', message: `ReplicaSet "${newRs?.metadata.name}" has timed out progressing.` };
      } else {
        progressing = { status: 'True', reason: 'ReplicaSetUpdated', message: `ReplicaSet "${newRs?.metadata.name}" is progressing.` };
        const left = (prevP?.reason === 'ReplicaSetUpdated' && !moved && !generationChanged ? since : now.getTime()) + deadline - now.getTime();
        this.queue.addAfter(key, Math.max(100, left + 50));
      }
    }
    const pUpdate = prevP && prevP.status === progressing.status && prevP.reason === progressing.reason && !moved && !generationChanged ? prevP.lastUpdateTime : now.toISOString();
    const pTransition = prevP && prevP.status === progressing.status ? prevP.lastTransitionTime : now.toISOString();
    const availableOk = available >= replicas - maxUnavailable;
    const aStatus = availableOk ? 'True' : 'False';
    const conditions = [
      {
        type: 'Available',
        status: aStatus,
        reason: availableOk ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable',
        message: availableOk ? 'Deployment has minimum availability.' : 'Deployment does not have minimum availability.',
        lastUpdateTime: prevA?.status === aStatus ? prevA.lastUpdateTime : now.toISOString(),
        lastTransitionTime: prevA?.status === aStatus ? prevA.lastTransitionTime : now.toISOString(),
      },
      { type: 'Progressing', ...progressing, lastUpdateTime: pUpdate, lastTransitionTime: pTransition },
    ];
    const status = {
      observedGeneration: d.metadata.generation,
      replicas: total,
      updatedReplicas: updated,
      readyReplicas: ready,
      availableReplicas: available,
      unavailableReplicas: Math.max(0, replicas - available),
      conditions,
    };
    const annotations = revision !== undefined && d.metadata.annotations?.[REVISION] !== String(revision) ? { [REVISION]: String(revision) } : undefined;
    if (!annotations && sameJson(status, d.status)) return;
    try {
      await this.res.send(DEPLOY, d.metadata.namespace, d.metadata.name, { type: 'status', status, uid: d.metadata.uid, ...(annotations ? { annotations } : {}) });
    } catch (err) {
      if ((err as { code?: string }).code === 'TRP_ERR_NOT_FOUND') return;
      throw err;
    }
    if (progressing.reason === 'ProgressDeadlineExceeded' && prevP?.reason !== 'ProgressDeadlineExceeded') {
      this.recorder.record(d, 'Warning', 'ProgressDeadlineExceeded', `Deployment "${d.metadata.name}" has exceeded its progress deadline`);
    }
  }
}
