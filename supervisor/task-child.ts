/**
 * An async service as a supervisor child: `run(signal)` is the service; it exits normally when
 * `run` resolves, abnormally when it rejects, and is asked to stop by aborting `signal`.
 */
import type { ChildContext, ChildHandle, ChildSpec, ExitReason, Restart, Shutdown } from './child-spec.js';

export interface TaskChildOptions<V> {
  id: string;
  /** Starts the service. Resolve `ready` with what siblings may use; the promise returned is its whole life. */
  run: (signal: AbortSignal, ctx: ChildContext & { ready: (value?: V) => void }) => Promise<void>;
  restart?: Restart;
  shutdown?: Shutdown;
  /** When false (default), the child counts as started as soon as run() is called; when true, once it calls ready(). */
  waitReady?: boolean;
}

export function taskChild<V = undefined>(opts: TaskChildOptions<V>): ChildSpec<V> {
  return {
    id: opts.id,
    restart: opts.restart,
    shutdown: opts.shutdown,
    start: (ctx) =>
      new Promise<ChildHandle<V>>((resolveStart, rejectStart) => {
        const ac = new AbortController();
        let started = false;
        let value: V | undefined;
        let resolveExit!: (r: ExitReason) => void;
        const exited = new Promise<ExitReason>((r) => (resolveExit = r));
        const handle = (): ChildHandle<V> => ({
          exited,
          stop: () => ac.abort(new Error('shutdown')),
          kill: () => ac.abort(new Error('killed')),
          value,
        });
        const ready = (v?: V) => {
          if (started) return;
          started = true;
          value = v;
          resolveStart(handle());
        };
        let running: Promise<void>;
        try {
          running = opts.run(ac.signal, { ...ctx, ready });
        } catch (err) {
          running = Promise.reject(err);
        }
        running.then(
          () => {
            if (!started) return rejectStart(new Error(`task ${opts.id} finished before it was ready`));
            resolveExit(ac.signal.aborted ? { type: 'shutdown' } : { type: 'normal' });
          },
          (error) => {
            if (!started) return rejectStart(error);
            resolveExit(ac.signal.aborted ? { type: 'shutdown' } : { type: 'error', error });
          },
        );
        if (!opts.waitReady) ready();
      }),
  };
}
