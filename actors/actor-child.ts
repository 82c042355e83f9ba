/**
 * An xstate actor as a supervisor child. xstate never restarts an actor, and an actor with no
 * error observer throws in Node; this child always observes errors, reports them as an abnormal
 * exit, and on restart starts again from the snapshot `load` returns (the last persisted one).
 */
import { createActor, type Actor, type AnyStateMachine, type InputFrom, type Snapshot } from 'xstate';
import type { ChildHandle, ChildSpec, ExitReason, Restart } from '../supervisor/index.js';

export interface ActorChildOptions<M extends AnyStateMachine> {
  id: string;
  machine: M;
  /** The snapshot to start from (undefined: a fresh actor). Called on every (re)start. */
  load?: () => Promise<Snapshot<unknown> | undefined> | Snapshot<unknown> | undefined;
  input?: InputFrom<M>;
  /** Called with each started actor, before any event reaches it. */
  onStart?: (actor: Actor<M>, restored: boolean) => void;
  restart?: Restart;
}

export function actorChild<M extends AnyStateMachine>(opts: ActorChildOptions<M>): ChildSpec<Actor<M>> {
  return {
    id: opts.id,
    restart: opts.restart ?? 'transient',
    shutdown: 'brutal',
    start: async () => {
      const snapshot = opts.load ? await opts.load() : undefined;
      const actor = createActor(opts.machine, { ...(snapshot ? { snapshot } : {}), ...(opts.input !== undefined ? { input: opts.input } : {}) } as never) as Actor<M>;
      let resolveExit!: (r: ExitReason) => void;
      const exited = new Promise<ExitReason>((r) => (resolveExit = r));
      let stopping = false;
      actor.subscribe({
        error: (error) => resolveExit({ type: 'error', error }),
        complete: () => resolveExit(stopping ? { type: 'shutdown' } : { type: 'normal' }),
      });
      opts.onStart?.(actor, snapshot !== undefined);
      actor.start();
      const started = actor.getSnapshot() as { status: string; error?: unknown };
      if (started.status === 'error') throw started.error ?? new Error(`actor ${opts.id} failed to start`);
      const stop = () => {
        stopping = true;
        actor.stop();
        resolveExit({ type: 'shutdown' });
      };
      return { exited, stop, kill: stop, value: actor } satisfies ChildHandle<Actor<M>>;
    },
  };
}
