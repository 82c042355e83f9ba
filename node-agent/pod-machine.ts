/**
 * A pod on the node (the kubelet's pod worker, as an actor): `run` gives it its spec and spawns
 * one container machine per container; `delete` stops and removes them all, then the pod ends.
 * Its status (phase and each container's state) is derived from its containers; every change of
 * a container is a transition of the pod, so the pod's event subject carries each of them.
 */
import { assign, fromPromise, setup, type ActorRefFrom, type Snapshot, type SnapshotFrom } from 'xstate';
import { container as containerSchema, s, type Infer } from '../protocol/index.js';
import { containerMachine, type ContainerContext, type ContainerState, type RestartPolicy } from './container-machine.js';

export const podSpecSchema = s.object({
  containers: s.array(containerSchema, { min: 1, max: 64 }),
  restartPolicy: s.optional(s.oneOf(['Always', 'OnFailure', 'Never'] as const)),
  terminationGracePeriodSeconds: s.optional(s.int({ min: 0, max: 86400 })),
  /** Who asked for the pod: "control-plane" pods go when the store no longer has them. */
  managedBy: s.optional(s.oneOf(['control-plane'] as const)),
});
export type PodRunSpec = Infer<typeof podSpecSchema>;

export const podEvents = s.union('type', {
  run: s.object({
    uid: s.string({ min: 1, max: 64, pattern: /^[a-z0-9-]+$/, patternName: 'a pod uid (lower-case letters, digits, -)' }),
    spec: podSpecSchema,
    /** Sent by a restarting agent: take over what the runtime still has instead of starting anew. */
    adopt: s.optional(s.bool()),
    restartCounts: s.optional(s.record(s.int({ min: 0 }))),
  }),
  delete: s.object({}),
  get: s.object({}),
});

export interface NodeTuning {
  backoffBaseMs: number;
  backoffCapMs: number;
  backoffResetMs: number;
}

export interface PodContext {
  namespace: string;
  name: string;
  uid?: string;
  spec?: PodRunSpec;
  tuning: NodeTuning;
  /** Bumped on every container change, so that each is a transition of the pod. */
  version: number;
  containers: ActorRefFrom<typeof containerMachine>[];
}

export type PodEvent =
  | { type: 'run'; uid: string; spec: PodRunSpec; adopt?: boolean; restartCounts?: Record<string, number> }
  | { type: 'delete' }
  | { type: 'get' }
  | { type: 'container.changed' };

export const podMachine = setup({
  types: {} as { context: PodContext; events: PodEvent; input: { namespace: string; name: string; tuning: NodeTuning } },
  actors: {
    container: containerMachine,
    /** Removes what the pod holds beyond its containers (its sandbox), once they are all gone. */
    removeSandbox: fromPromise<void, { uid?: string }>(async () => undefined),
  },
  guards: {
    allRemoved: ({ context }) => context.containers.every((c) => c.getSnapshot().status === 'done'),
  },
}).createMachine({
  id: 'pod',
  context: ({ input }) => ({ ...input, version: 0, containers: [] }),
  initial: 'idle',
  on: { 'container.changed': { actions: assign({ version: ({ context }) => context.version + 1 }) } },
  states: {
    idle: {
      on: {
        run: {
          target: 'active',
          actions: assign(({ context, event, spawn }) => ({
            uid: event.uid,
            spec: event.spec,
            containers: event.spec.containers.map((c) =>
              spawn('container', {
                id: c.name,
                input: {
                  podUid: event.uid,
                  podName: context.name,
                  namespace: context.namespace,
                  container: c,
                  restartPolicy: (event.spec.restartPolicy ?? 'Always') as RestartPolicy,
                  graceMs: (event.spec.terminationGracePeriodSeconds ?? 30) * 1000,
                  adopt: event.adopt === true,
                  restartCount: event.restartCounts?.[c.name] ?? 0,
                  podSpec: event.spec,
                  ...context.tuning,
                },
              }),
            ),
          })),
        },
        delete: 'deleted',
      },
    },
    active: {
      // a pod's spec does not change once it runs (as in Kubernetes): a second `run` is a no-op
      on: {
        delete: { target: 'deleting', actions: ({ context }) => context.containers.forEach((c) => c.send({ type: 'delete' })) },
      },
    },
    deleting: {
      always: { guard: 'allRemoved', target: 'cleaning' },
      on: { 'container.changed': { actions: assign({ version: ({ context }) => context.version + 1 }), target: 'deleting', reenter: true } },
    },
    cleaning: {
      invoke: { src: 'removeSandbox', input: ({ context }) => ({ uid: context.uid }), onDone: 'deleted', onError: 'deleted' },
    },
    deleted: { type: 'final' },
  },
});

/**
 * The persisted snapshot a new pod actor starts from (see ActorKind.initialSnapshot): what the
 * machine makes itself, without xstate working it out per pod on the pod's start path.
 */
export function podInitialSnapshot(key: { namespace: string; name: string }, tuning: NodeTuning): Snapshot<unknown> {
  return {
    status: 'active',
    output: undefined,
    error: undefined,
    value: 'idle',
    historyValue: {},
    context: { namespace: key.namespace, name: key.name, tuning, version: 0, containers: [] },
    children: {},
  } as unknown as Snapshot<unknown>;
}

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Terminating' | 'Deleted';

export interface ContainerStatus {
  name: string;
  image: string;
  state: ContainerState;
  lastState?: ContainerState;
  restartCount: number;
  started: boolean;
  ready: boolean;
}

export interface PodCondition {
  type: 'Ready' | 'ContainersReady';
  status: 'True' | 'False';
}

export interface PodStatus {
  uid?: string;
  phase: PodPhase;
  conditions: PodCondition[];
  containerStatuses: ContainerStatus[];
}

/** The pod's status, as Kubernetes derives its phase from its containers. */
export function podStatus(snapshot: SnapshotFrom<typeof podMachine>): PodStatus {
  const ctx = snapshot.context;
  const statuses: ContainerStatus[] = ctx.containers.map((ref) => {
    const c = ref.getSnapshot().context as ContainerContext;
    return {
      name: c.container.name,
      image: c.container.image,
      state: c.state,
      ...(c.lastState && c.lastState !== c.state ? { lastState: c.lastState } : {}),
      restartCount: c.restartCount,
      started: 'running' in c.state,
      ready: c.ready && 'running' in c.state,
    };
  });
  let phase: PodPhase;
  if (snapshot.status === 'done') phase = 'Deleted';
  else if (snapshot.matches('deleting') || snapshot.matches('cleaning')) phase = 'Terminating';
  else if (statuses.length === 0) phase = 'Pending';
  else if (statuses.some((c) => 'running' in c.state)) phase = 'Running';
  else if (statuses.every((c) => 'terminated' in c.state)) {
    phase = statuses.every((c) => 'terminated' in c.state && c.state.terminated.exitCode === 0) ? 'Succeeded' : 'Failed';
  } else if (statuses.some((c) => 'waiting' in c.state && c.state.waiting.reason === 'CrashLoopBackOff')) phase = 'Running';
  else phase = 'Pending';
  const allReady = statuses.length > 0 && statuses.every((c) => c.ready) && phase === 'Running';
  const cond = allReady ? 'True' : 'False';
  return { uid: ctx.uid, phase, conditions: [{ type: 'Ready', status: cond }, { type: 'ContainersReady', status: cond }], containerStatuses: statuses };
}

