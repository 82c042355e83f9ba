/**
 * One container's life on the node, as Kubernetes tells it: waiting (ErrImagePull,
 * ImagePullBackOff, ContainerCreating, CrashLoopBackOff) → running → terminated (Completed, Error,
 * OOMKilled, ContainerCannotRun), restarted by the pod's restartPolicy with exponential backoff
 * (Kubernetes: 10 s doubling to 300 s; base and cap are the node's to choose), reset after the
 * container has run long enough.
 *
 * Every effect is an actor named in setup (ensureImage, runContainer, waitExit, stopContainer,
 * removeContainer), so tests provide their own and the agent provides crun's. A `delete` wins
 * over anything pending: it always ends in stopping → removing → removed.
 */
import { assign, enqueueActions, fromCallback, fromPromise, sendParent, setup } from 'xstate';
import type { Container } from '../protocol/index.js';
import type { ImageRuntimeConfig } from './image-config.js';

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

export type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: { exitCode: number; signal?: string; reason: string; message?: string; startedAt?: string; finishedAt: string } };

export interface ContainerInput {
  podUid: string;
  podName: string;
  namespace: string;
  container: Container;
  restartPolicy: RestartPolicy;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** A container that ran this long has its backoff reset (Kubernetes: 10 minutes). */
  backoffResetMs: number;
  graceMs: number;
  /** The agent restarted: first look at what the runtime has for this container. */
  adopt?: boolean;
  /** Restarts so far (kept across an agent restart). */
  restartCount?: number;
  /** The pod's spec, recorded with the container for adoption. */
  podSpec?: unknown;
}

export interface PreparedImage {
  config: ImageRuntimeConfig;
  lowerDir: string;
}

export interface ContainerContext extends ContainerInput {
  restartCount: number;
  /** Failures in a row, for the backoff (reset after a long enough run). */
  backoffStep: number;
  pullFailures: number;
  image?: PreparedImage;
  state: ContainerState;
  lastState?: ContainerState;
  startedAtMs?: number;
  /** The container's first process (for probes from inside its network namespace). */
  pid?: number;
  /** Readiness: true once its readiness probe (if any) passes. */
  ready: boolean;
  /** Why the agent killed it (a failed liveness or startup probe), for its terminated state. */
  probeFailure?: string;
}

export interface ExitInfo {
  exitCode: number;
  signal?: string;
  reason: string;
  message?: string;
  finishedAt: string;
}

export type ContainerEvent =
  | { type: 'delete' }
  | { type: 'get' }
  | { type: 'probe.ready'; ready: boolean }
  | { type: 'probe.failed'; probe: 'liveness' | 'startup'; message: string };

/** What an adopting agent finds of a container. */
export type InspectResult = { state: 'running'; startedAt: string; pid: number } | { state: 'exited'; exit: ExitInfo } | { state: 'absent' };

/** The delay before restart number `step` (0-based): base · 2^step, capped. */
export function restartDelay(step: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.min(step, 30));
}

export const containerMachine = setup({
  types: {} as { context: ContainerContext; input: ContainerInput; events: ContainerEvent },
  actors: {
    ensureImage: fromPromise<PreparedImage, { image: string; ctx?: ContainerContext }>(async () => {
      throw new Error('ensureImage not provided');
    }),
    runContainer: fromPromise<{ startedAt: string; pid: number }, { ctx: ContainerContext }>(async () => {
      throw new Error('runContainer not provided');
    }),
    waitExit: fromPromise<ExitInfo, { ctx: ContainerContext }>(async () => {
      throw new Error('waitExit not provided');
    }),
    stopContainer: fromPromise<void, { ctx: ContainerContext }>(async () => undefined),
    removeContainer: fromPromise<void, { ctx: ContainerContext }>(async () => undefined),
    inspectContainer: fromPromise<InspectResult, { ctx: ContainerContext }>(async () => ({ state: 'absent' })),
    /** Runs the container's probes; sends probe.ready and probe.failed. */
    probes: fromCallback<ContainerEvent, { ctx: ContainerContext }>(() => () => undefined),
    /** Kills the container (a failed liveness or startup probe); waitExit then sees it exit. */
    killContainer: fromPromise<void, { ctx: ContainerContext }>(async () => undefined),
  },
  actions: {
    /** Tells the pod that this container changed, so the pod publishes it. */
    notify: sendParent({ type: 'container.changed' }),
    /** Takes the image the node has at hand (see imageAtHand) as the pull's result. */
    takeImage: () => undefined,
  },
  guards: {
    /**
     * The node has the image unpacked and can say so at once: the container starts without the
     * pull step (an invoked actor and its answer, a third of a millisecond of a pod's start).
     */
    imageAtHand: () => false,
    shouldRestart: ({ context }) => {
      const t = context.state;
      if (!('terminated' in t)) return false;
      if (context.restartPolicy === 'Always') return true;
      if (context.restartPolicy === 'OnFailure') return t.terminated.exitCode !== 0 || t.terminated.reason === 'ContainerCannotRun';
      return false;
    },
  },
  delays: {
    pullDelay: ({ context }) => restartDelay(Math.max(0, context.pullFailures - 1), context.backoffBaseMs, context.backoffCapMs),
    restartDelay: ({ context }) => restartDelay(context.backoffStep, context.backoffBaseMs, context.backoffCapMs),
  },
}).createMachine({
  id: 'container',
  context: ({ input }) => ({ ...input, restartCount: input.restartCount ?? 0, backoffStep: 0, pullFailures: 0, ready: false, state: { waiting: { reason: 'ContainerCreating' } } }),
  initial: 'init',
  on: { delete: '.stopping' },
  states: {
    init: {
      always: [{ guard: ({ context }) => context.adopt === true, target: 'adopting' }, { guard: 'imageAtHand', target: 'starting', actions: 'takeImage' }, { target: 'pulling' }],
    },
    adopting: {
      invoke: {
        src: 'inspectContainer',
        input: ({ context }) => ({ ctx: context }),
        onDone: [
          {
            guard: ({ event }) => event.output.state === 'running',
            target: 'running',
            actions: assign(({ event }) => {
              const o = event.output as { startedAt: string; pid: number };
              return { state: { running: { startedAt: o.startedAt } }, startedAtMs: Date.parse(o.startedAt), pid: o.pid };
            }),
          },
          {
            guard: ({ event }) => event.output.state === 'exited',
            target: 'exited',
            actions: assign({ state: ({ event }) => ({ terminated: { ...(event.output as { exit: ExitInfo }).exit } }) }),
          },
          { target: 'pulling' },
        ],
        onError: 'pulling',
      },
    },
    pulling: {
      // nothing the pod shows changes here (a restart's count is told with ContainerCreating, in
      // starting): no notice, so no event on the bus
      invoke: {
        src: 'ensureImage',
        input: ({ context }) => ({ image: context.container.image, ctx: context }),
        onDone: { target: 'starting', actions: assign({ image: ({ event }) => event.output, pullFailures: 0 }) },
        onError: {
          target: 'pullBackoff',
          actions: assign({
            pullFailures: ({ context }) => context.pullFailures + 1,
            state: ({ event }) => ({ waiting: { reason: 'ErrImagePull', message: (event.error as Error)?.message ?? String(event.error) } }),
          }),
        },
      },
    },
    pullBackoff: {
      entry: 'notify',
      after: {
        pullDelay: 'pulling',
      },
      // Kubernetes shows ErrImagePull for the failure itself, then ImagePullBackOff while it waits
      initial: 'failed',
      states: {
        failed: { after: { 1: { target: 'backingOff', actions: [assign({ state: ({ context }) => ({ waiting: { reason: 'ImagePullBackOff', message: 'waiting' in context.state ? context.state.waiting.message : undefined } }) }), 'notify'] } } },
        backingOff: {},
      },
    },
    starting: {
      // ContainerCreating since the pull began, unless a failed pull said otherwise meanwhile: told
      // only when it changes (each notice is an event on the bus)
      entry: enqueueActions(({ context, enqueue }) => {
        const s = context.state;
        if ('waiting' in s && s.waiting.reason === 'ContainerCreating' && s.waiting.message === undefined) return;
        enqueue.assign({ state: { waiting: { reason: 'ContainerCreating' } } });
        enqueue('notify');
      }),
      invoke: {
        src: 'runContainer',
        input: ({ context }) => ({ ctx: context }),
        onDone: {
          target: 'running',
          actions: assign({
            state: ({ event }) => ({ running: { startedAt: event.output.startedAt } }),
            startedAtMs: ({ event }) => Date.parse(event.output.startedAt),
            pid: ({ event }) => event.output.pid,
            probeFailure: undefined,
            // with neither a readiness nor a startup probe a running container is ready, as the
            // kubelet has it: said in the same event as Running
            ready: ({ context }) => !context.container.readinessProbe && !context.container.startupProbe,
          }),
        },
        onError: {
          target: 'exited',
          actions: assign({
            state: ({ event }) => ({
              terminated: { exitCode: 128, reason: 'ContainerCannotRun', message: (event.error as Error)?.message ?? String(event.error), finishedAt: new Date().toISOString() },
            }),
          }),
        },
      },
    },
    running: {
      entry: 'notify',
      on: {
        'probe.ready': { guard: ({ context, event }) => event.ready !== context.ready, actions: [assign({ ready: ({ event }) => event.ready }), 'notify'] },
        'probe.failed': { target: '.killing', actions: assign({ probeFailure: ({ event }) => event.message }) },
      },
      invoke: [
        {
          src: 'waitExit',
          input: ({ context }) => ({ ctx: context }),
          onDone: {
            target: 'exited',
            actions: assign({
              state: ({ context, event }) => ({
                terminated: {
                  ...event.output,
                  ...(context.probeFailure ? { message: context.probeFailure } : {}),
                  startedAt: 'running' in context.state ? context.state.running.startedAt : undefined,
                },
              }),
              backoffStep: ({ context, event }) =>
                context.startedAtMs !== undefined && Date.parse(event.output.finishedAt) - context.startedAtMs >= context.backoffResetMs ? 0 : context.backoffStep,
            }),
          },
          onError: {
            target: 'exited',
            actions: assign({ state: ({ event }) => ({ terminated: { exitCode: 255, reason: 'Error', message: String((event.error as Error)?.message ?? event.error), finishedAt: new Date().toISOString() } }) }),
          },
        },
        { src: 'probes', input: ({ context }) => ({ ctx: context }) },
      ],
      initial: 'up',
      states: {
        up: {},
        killing: { invoke: { src: 'killContainer', input: ({ context }) => ({ ctx: context }) } },
      },
    },
    exited: {
      entry: [assign({ lastState: ({ context }) => context.state, ready: false }), 'notify'],
      always: [{ guard: 'shouldRestart', target: 'crashBackoff' }, { target: 'terminated' }],
    },
    crashBackoff: {
      entry: [assign({ state: ({ context }) => ({ waiting: { reason: 'CrashLoopBackOff', message: `back-off restarting failed container ${context.container.name}` } }) }), 'notify'],
      after: {
        restartDelay: {
          target: 'pulling',
          actions: assign({ restartCount: ({ context }) => context.restartCount + 1, backoffStep: ({ context }) => context.backoffStep + 1 }),
        },
      },
    },
    terminated: { entry: 'notify' },
    stopping: {
      entry: 'notify',
      on: { delete: {} },
      invoke: {
        src: 'stopContainer',
        input: ({ context }) => ({ ctx: context }),
        onDone: 'removing',
        onError: 'removing',
      },
    },
    removing: {
      on: { delete: {} },
      invoke: {
        src: 'removeContainer',
        input: ({ context }) => ({ ctx: context }),
        onDone: 'removed',
        onError: 'removed',
      },
    },
    removed: { type: 'final', entry: 'notify', on: { delete: {} } },
  },
});
