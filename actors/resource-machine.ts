/**
 * A resource actor: the single writer of one stored object (a Deployment, a Pod, a Node, …).
 *
 * Every command names what should be true of the object (apply this manifest, bind to that node,
 * this is the status now, delete it); `decide` compares it with the object as it is and answers
 * with the next object, "nothing to do", or a typed error. A command that changes nothing makes
 * no transition, so it publishes no event, writes nothing and makes no new revision. A rejected
 * command leaves the object as it was and its error goes back to the sender.
 *
 * The object is the actor's context; the actor host persists it (durably) as the resource's
 * entry in KV, whose revision is the object's resourceVersion. When the object is removed the
 * machine ends and the host deletes the entry.
 */
import { randomUUID } from 'node:crypto';
import { assign, setup } from 'xstate';
import {
  ConflictError,
  NotFoundError,
  TroupeError,
  ValidationError,
  KINDS,
  normalize,
  copyJson,
  s,
  sameJson,
  toTroupeError,
  type KObject,
  type KindInfo,
} from '../protocol/index.js';

export const resourceCommands = s.union('type', {
  /** Create or update from a manifest; with `create`, an existing object is an error. */
  apply: s.object({ object: s.any(), create: s.optional(s.bool()) }),
  /** JSON merge patch (RFC 7386) of labels/annotations, spec and status; `create` is the object to start from when absent. */
  patch: s.object({ metadata: s.optional(s.object({ labels: s.optional(s.any()), annotations: s.optional(s.any()) })), spec: s.optional(s.any()), status: s.optional(s.any()), create: s.optional(s.any()) }),
  /**
   * Replaces the status (controllers, node agents). With `uid`, only that instance. `annotations`
   * are merged into the object's (as Kubernetes' status update lets them through): what a
   * controller records beside the status in the same write (a Deployment's revision).
   */
  status: s.object({ status: s.any(), uid: s.optional(s.string({ max: 64 })), observedGeneration: s.optional(s.int({ min: 0 })), annotations: s.optional(s.record(s.string({ max: 65536 }))) }),
  /** Binds a pod to a node (the scheduler). */
  bind: s.object({ node: s.string({ min: 1, max: 253 }), uid: s.optional(s.string({ max: 64 })) }),
  /** Deletes; a pod on a node first terminates there (graceful) unless `force`. */
  delete: s.object({ uid: s.optional(s.string({ max: 64 })), force: s.optional(s.bool()), gracePeriodSeconds: s.optional(s.int({ min: 0, max: 86400 })) }),
  /** The node agent has stopped everything of this pod: the object goes. */
  finalize: s.object({ uid: s.string({ max: 64 }) }),
  get: s.object({}),
});

export type ResourceCommand =
  | { type: 'apply'; object: unknown; create?: boolean }
  | { type: 'patch'; metadata?: { labels?: unknown; annotations?: unknown }; spec?: unknown; status?: unknown; create?: unknown }
  | { type: 'status'; status: unknown; uid?: string; observedGeneration?: number; annotations?: Record<string, string> }
  | { type: 'bind'; node: string; uid?: string }
  | { type: 'delete'; uid?: string; force?: boolean; gracePeriodSeconds?: number }
  | { type: 'finalize'; uid: string }
  | { type: 'get' };

export interface ResourceContext {
  /** The kind's token ("deployment"); kept small, as it is persisted with every object. */
  kind: string;
  namespace: string;
  name: string;
  object?: KObject;
}

export type Decision = { type: 'change'; object: KObject } | { type: 'remove' } | { type: 'noop' } | { type: 'error'; error: TroupeError };

/** Annotations the system writes; an apply that does not mention them keeps them. */
const SYSTEM_ANNOTATION = /^(deployment\.kubernetes\.io\/|troupe\.dev\/)/;

// Decisions are made once per command (in the guard) and read by the action and the reply.
const decisions = new WeakMap<object, Decision>();

export function decisionFor(event: object): Decision | undefined {
  return decisions.get(event);
}

/** What a command does to the object (pure apart from new uids and the clock). */
/**
 * Admission: a check of a whole object against the rest of the cluster (a Service's node port
 * taken by another), run on every create and update; it answers with a problem or nothing.
 */
export type Admission = (obj: KObject, current: KObject | undefined) => { path: string; message: string } | undefined;

export function decide(ctx: ResourceContext, ev: ResourceCommand, now: Date = new Date(), admit?: Admission): Decision {
  try {
    const d = decideInner(ctx, ev, now);
    if (admit && d.type === 'change' && (ev.type === 'apply' || ev.type === 'patch')) {
      const problem = admit(d.object, ctx.object);
      if (problem) return { type: 'error', error: new ValidationError(`${what(ctx)}: ${problem.path}: ${problem.message}`, { issues: [problem] }) };
    }
    return d;
  } catch (err) {
    return { type: 'error', error: toTroupeError(err) };
  }
}

function what(ctx: ResourceContext): string {
  return `${infoOf(ctx).kind.toLowerCase()} ${infoOf(ctx).namespaced ? `${ctx.namespace}/` : ''}${ctx.name}`;
}

function decideInner(ctx: ResourceContext, ev: ResourceCommand, now: Date): Decision {
  const cur = ctx.object;
  const notFound = () => ({ type: 'error' as const, error: new NotFoundError(`${what(ctx)} not found`, { kind: infoOf(ctx).kind, name: ctx.name }) });
  const uidMismatch = (uid: string) => ({ type: 'error' as const, error: new ConflictError(`${what(ctx)}: precondition failed: uid is ${cur?.metadata.uid}, not ${uid}`) });
  switch (ev.type) {
    case 'get':
      return cur ? { type: 'noop' } : notFound();
    case 'apply': {
      const obj = normalize(ev.object, what(ctx));
      checkKey(ctx, obj);
      if (!cur) return { type: 'change', object: created(obj, now) };
      if (ev.create) return { type: 'error', error: new ConflictError(`${what(ctx)} already exists`, { reason: 'AlreadyExists' }) };
      if (cur.metadata.deletionTimestamp) return { type: 'error', error: new ConflictError(`${what(ctx)} is being deleted; wait until it is gone`) };
      return updated(ctx, cur, obj);
    }
    case 'patch': {
      let base = cur;
      let fresh = false;
      if (!base) {
        if (ev.create === undefined) return notFound();
        const obj = normalize(ev.create, what(ctx));
        checkKey(ctx, obj);
        base = created(obj, now);
        fresh = true;
      }
      const next: KObject = copyJson(base);
      if (ev.metadata?.labels !== undefined) next.metadata.labels = mergePatch(next.metadata.labels ?? {}, ev.metadata.labels) as Record<string, string>;
      if (ev.metadata?.annotations !== undefined) next.metadata.annotations = mergePatch(next.metadata.annotations ?? {}, ev.metadata.annotations) as Record<string, string>;
      if (ev.spec !== undefined) next.spec = mergePatch(next.spec ?? {}, ev.spec);
      if (ev.status !== undefined) next.status = mergePatch(next.status ?? {}, ev.status);
      // the result must still be a valid object of its kind
      const { status, ...rest } = next;
      const checked = normalize(rest, what(ctx));
      checked.status = status;
      checked.metadata = { ...next.metadata, ...(checked.metadata.namespace ? { namespace: checked.metadata.namespace } : {}) };
      if (infoOf(ctx).kind === 'Pod' && cur && !sameJson(checked.spec, cur.spec)) {
        return { type: 'error', error: new ValidationError(`${what(ctx)}: spec: a pod's spec cannot change; delete the pod and create it again`) };
      }
      if (!fresh && sameJson(checked, base)) return { type: 'noop' };
      if (!fresh && !sameJson(checked.spec, base.spec)) checked.metadata.generation = (base.metadata.generation ?? 1) + 1;
      return { type: 'change', object: checked };
    }
    case 'status': {
      if (!cur) return notFound();
      if (ev.uid && ev.uid !== cur.metadata.uid) return uidMismatch(ev.uid);
      const status = ev.observedGeneration !== undefined ? { ...(ev.status as object), observedGeneration: ev.observedGeneration } : ev.status;
      const annotate = ev.annotations && Object.entries(ev.annotations).some(([k, v]) => cur.metadata.annotations?.[k] !== v);
      if (!annotate) return sameJson(status, cur.status) ? { type: 'noop' } : { type: 'change', object: { ...cur, status } };
      // the annotations must leave a valid object (their keys and sizes checked as a manifest's)
      const { status: _old, ...rest } = cur;
      const checked = normalize({ ...rest, metadata: { ...cur.metadata, annotations: { ...cur.metadata.annotations, ...ev.annotations } } }, what(ctx));
      return { type: 'change', object: { ...cur, metadata: { ...cur.metadata, annotations: checked.metadata.annotations }, status } };
    }
    case 'bind': {
      if (infoOf(ctx).kind !== 'Pod') return { type: 'error', error: new ValidationError(`${what(ctx)}: only pods are bound to nodes`) };
      if (!cur) return notFound();
      if (ev.uid && ev.uid !== cur.metadata.uid) return uidMismatch(ev.uid);
      if (cur.metadata.deletionTimestamp) return { type: 'error', error: new ConflictError(`${what(ctx)} is being deleted`) };
      if (cur.spec.nodeName === ev.node) return { type: 'noop' };
      if (cur.spec.nodeName) return { type: 'error', error: new ConflictError(`${what(ctx)} is already bound to node ${cur.spec.nodeName}`) };
      const conditions = [...((cur.status?.conditions as { type: string }[] | undefined) ?? []).filter((c) => c.type !== 'PodScheduled'), { type: 'PodScheduled', status: 'True', lastTransitionTime: now.toISOString() }];
      return { type: 'change', object: { ...cur, spec: { ...cur.spec, nodeName: ev.node }, status: { ...cur.status, conditions } } };
    }
    case 'delete': {
      if (!cur) return notFound();
      if (ev.uid && ev.uid !== cur.metadata.uid) return uidMismatch(ev.uid);
      // a pod on a node terminates there first; the agent finalizes it when it is gone
      if (infoOf(ctx).kind === 'Pod' && cur.spec.nodeName && !ev.force) {
        if (cur.metadata.deletionTimestamp) return { type: 'noop' };
        const grace = ev.gracePeriodSeconds ?? cur.spec.terminationGracePeriodSeconds ?? 30;
        return { type: 'change', object: { ...cur, metadata: { ...cur.metadata, deletionTimestamp: now.toISOString(), deletionGracePeriodSeconds: grace } } };
      }
      return { type: 'remove' };
    }
    case 'finalize': {
      if (!cur) return { type: 'noop' };
      if (ev.uid !== cur.metadata.uid) return uidMismatch(ev.uid);
      if (!cur.metadata.deletionTimestamp) return { type: 'error', error: new ConflictError(`${what(ctx)} is not being deleted`) };
      return { type: 'remove' };
    }
  }
}

function checkKey(ctx: ResourceContext, obj: KObject): void {
  if (obj.kind !== infoOf(ctx).kind) throw new ValidationError(`${what(ctx)}: kind: expected ${infoOf(ctx).kind}, got ${obj.kind}`);
  if (obj.metadata.name !== ctx.name) throw new ValidationError(`${what(ctx)}: metadata.name: expected ${JSON.stringify(ctx.name)} (the name it is addressed by), got ${JSON.stringify(obj.metadata.name)}`);
  if (infoOf(ctx).namespaced && obj.metadata.namespace !== ctx.namespace) {
    throw new ValidationError(`${what(ctx)}: metadata.namespace: expected ${JSON.stringify(ctx.namespace)}, got ${JSON.stringify(obj.metadata.namespace)}`);
  }
}

/** Metadata the server owns: what a client gives of it is replaced on creation. */
const SERVER_METADATA = new Set(['resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'uid', 'generation', 'creationTimestamp']);

/** A new object: the server-owned metadata filled in, any given by the client replaced. */
function created(obj: KObject, now: Date): KObject {
  // (copied key by key: a rest-destructured copy spread again took 2 µs, half of a creation)
  const meta: Record<string, unknown> = {};
  const given = obj.metadata as unknown as Record<string, unknown>;
  for (const k in given) if (Object.hasOwn(given, k) && !SERVER_METADATA.has(k)) meta[k] = given[k];
  const at = now.toISOString();
  meta.uid = randomUUID();
  meta.generation = 1;
  meta.creationTimestamp = at;
  const out: KObject = { ...obj, metadata: meta as KObject['metadata'] };
  out.status = obj.kind === 'Pod' ? { phase: 'Pending' } : obj.kind === 'Namespace' ? { phase: 'Active' } : {};
  // a pod made bound (placed at creation, or named to a node by its author) is scheduled as of now
  if (obj.kind === 'Pod' && obj.spec?.nodeName) out.status.conditions = [{ type: 'PodScheduled', status: 'True', lastTransitionTime: at }];
  return out;
}

/** What the server set in a spec that a manifest applied again does not repeat: kept. */
function keepAssigned(kind: string, cur: KObject, spec: any): any {
  if (kind === 'Pod') return { ...spec, ...(cur.spec.nodeName && !spec.nodeName ? { nodeName: cur.spec.nodeName } : {}) };
  if (kind === 'Service') {
    const out = { ...spec };
    if (!out.clusterIP && cur.spec.clusterIP) out.clusterIP = cur.spec.clusterIP;
    if (out.ports && out.type === 'NodePort') {
      out.ports = out.ports.map((p: { port: number; name?: string; nodePort?: number }) => {
        const was = (cur.spec.ports ?? []).find((q: { port: number; name?: string }) => q.port === p.port && q.name === p.name);
        return p.nodePort || !was?.nodePort ? p : { ...p, nodePort: was.nodePort };
      });
    }
    return out;
  }
  return spec;
}

function updated(ctx: ResourceContext, cur: KObject, obj: KObject): Decision {
  const spec = keepAssigned(infoOf(ctx).kind, cur, obj.spec);
  if (infoOf(ctx).kind === 'Pod' && !sameJson(spec, cur.spec)) {
    return { type: 'error', error: new ValidationError(`${what(ctx)}: spec: a pod's spec cannot change; delete the pod and create it again`) };
  }
  const annotations = { ...obj.metadata.annotations };
  for (const [k, v] of Object.entries(cur.metadata.annotations ?? {})) if (SYSTEM_ANNOTATION.test(k) && !(k in annotations)) annotations[k] = v;
  const meta = {
    ...cur.metadata,
    labels: obj.metadata.labels,
    annotations: Object.keys(annotations).length ? annotations : undefined,
    ownerReferences: obj.metadata.ownerReferences ?? cur.metadata.ownerReferences,
  };
  for (const k of ['labels', 'annotations', 'ownerReferences'] as const) if (meta[k] === undefined) delete meta[k];
  const specChanged = !sameJson(spec, cur.spec);
  // kinds without a spec keep their content at the top (Endpoints' subsets)
  const { apiVersion: _a, kind: _k, metadata: _m, spec: _s, status: _st, ...body } = obj;
  const { apiVersion: _a2, kind: _k2, metadata: _m2, spec: _s2, status: _st2, ...curBody } = cur;
  const bodyChanged = !sameJson(body, curBody);
  if (!specChanged && !bodyChanged && sameJson(meta, cur.metadata)) return { type: 'noop' };
  const next: KObject = { apiVersion: cur.apiVersion, kind: cur.kind, metadata: { ...meta, generation: (cur.metadata.generation ?? 1) + (specChanged ? 1 : 0) }, ...body, ...(spec !== undefined ? { spec } : {}), ...(cur.status !== undefined ? { status: cur.status } : {}) };
  return { type: 'change', object: next };
}

/** RFC 7386 JSON merge patch: objects merge, null removes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

export function resourceMachine(info: KindInfo, admit?: Admission) {
  return setup({
    types: {} as { context: ResourceContext; events: ResourceCommand; input: { namespace: string; name: string } },
    guards: {
      removes: ({ context, event }) => decideOnce(context, event, admit).type === 'remove',
      changes: ({ context, event }) => decideOnce(context, event, admit).type === 'change',
    },
    actions: {
      commit: assign({
        object: ({ event }) => {
          const d = decisions.get(event);
          return d?.type === 'change' ? d.object : undefined;
        },
      }),
    },
  }).createMachine({
    id: info.token,
    context: ({ input }) => ({ kind: info.token, namespace: input.namespace, name: input.name }),
    initial: 'live',
    states: {
      live: {
        on: {
          '*': [
            { guard: 'removes', target: 'gone', actions: 'commit' },
            { guard: 'changes', actions: 'commit' },
          ],
        },
      },
      gone: { type: 'final' },
    },
  });
}

function decideOnce(ctx: ResourceContext, event: ResourceCommand, admit?: Admission): Decision {
  let d = decisions.get(event);
  if (!d) {
    d = decide(ctx, event, new Date(), admit);
    decisions.set(event, d);
  }
  return d;
}

const byToken = new Map(KINDS.map((k) => [k.token, k]));

export function kindOf(token: string): KindInfo {
  const info = byToken.get(token);
  if (!info) throw new Error(`no resource kind ${token}`);
  return info;
}

function infoOf(ctx: ResourceContext): KindInfo {
  return kindOf(ctx.kind);
}
