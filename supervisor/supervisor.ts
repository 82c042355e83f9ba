/**
 * A supervisor in the Erlang/OTP tradition.
 *
 * Children start in order and stop in reverse order. When one exits, its restart type decides
 * whether it comes back and the strategy decides who comes back with it. Restarts are counted in
 * a sliding window; one more than the intensity allows and the supervisor stops every child and
 * exits with RestartIntensityError, leaving its parent to decide.
 *
 * Every operation (a child's exit, startChild, terminateChild, stop) runs through one serial
 * queue, so a restart never interleaves with a shutdown.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import {
  isAbnormal,
  Strategy,
  validateChildSpec,
  validateSupervisorSpec,
  type ChildHandle,
  type ChildSpec,
  type ExitReason,
  type SupervisorSpec,
} from './child-spec.js';
import { ChildIdError, ChildStartError, RestartIntensityError, SupervisorStoppedError } from './errors.js';
import { RestartIntensity } from './restart-intensity.js';
import { silentLogger } from './logger.js';

export type ReportContext = 'child_terminated' | 'start_error' | 'shutdown_error' | 'reached_max_restart_intensity' | 'shutdown';

/** What a supervisor tells its observers, as OTP's supervisor reports. */
export interface SupervisorReport {
  supervisor: string;
  context: ReportContext;
  reason: ExitReason | { type: 'error'; error: unknown };
  offender?: { id: string; restart: string; shutdown: string | number };
}

export interface SupervisorOptions {
  clock?: Clock;
  logger?: Logger;
  onReport?: (report: SupervisorReport) => void;
}

export interface ChildInfo {
  id: string;
  running: boolean;
  restart: string;
  type: 'worker' | 'supervisor';
  value: unknown;
}

interface Child {
  spec: ChildSpec;
  handle: ChildHandle | undefined;
  /** Set while the supervisor itself stops this child, so the exit is not a failure. */
  stopping: boolean;
}

const DEFAULT_SHUTDOWN = 5000;

export class Supervisor {
  readonly name: string;
  readonly strategy: Strategy;
  /** Settles when the supervisor has stopped: shutdown when asked, error when it gave up. */
  readonly exited: Promise<ExitReason>;

  /** The children by id; a Map keeps them in the order they were added (start order). */
  private readonly byId = new Map<string, Child>();
  private readonly intensity: RestartIntensity;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly onReport: ((r: SupervisorReport) => void) | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private state: 'starting' | 'running' | 'stopping' | 'stopped' = 'starting';
  private resolveExit!: (r: ExitReason) => void;

  private constructor(spec: ReturnType<typeof validateSupervisorSpec>, opts: SupervisorOptions) {
    this.name = spec.name;
    this.strategy = spec.strategy;
    this.clock = opts.clock ?? systemClock;
    this.logger = (opts.logger ?? silentLogger()).child({ supervisor: spec.name });
    this.onReport = opts.onReport;
    this.intensity = new RestartIntensity(spec.intensity, spec.period, this.clock);
    this.exited = new Promise((r) => (this.resolveExit = r));
    for (const c of spec.children) this.add(c);
  }

  /** Validates the spec, then starts its children in order. A child that fails to start stops the ones before it. */
  static async start(spec: SupervisorSpec, opts: SupervisorOptions = {}): Promise<Supervisor> {
    const sup = new Supervisor(validateSupervisorSpec(spec), opts);
    for (const child of sup.children) {
      try {
        await sup.startOne(child);
      } catch (err) {
        await sup.stopAll();
        sup.state = 'stopped';
        sup.resolveExit({ type: 'error', error: err });
        throw err;
      }
    }
    sup.state = 'running';
    return sup;
  }

  /** Adds and starts a child; for a 'dynamic' supervisor this is how every child arrives. */
  startChild<V>(spec: ChildSpec<V>): Promise<ChildHandle<V>> {
    return this.serial(async () => {
      this.assertRunning();
      const checked = validateChildSpec(spec);
      if (this.byId.has(checked.id)) throw new ChildIdError(`supervisor ${this.name}: a child with id ${JSON.stringify(checked.id)} exists already`, { id: checked.id });
      const child = this.add(checked);
      try {
        await this.startOne(child);
      } catch (err) {
        this.remove(child);
        throw err;
      }
      return child.handle as ChildHandle<V>;
    });
  }

  /** Stops a child (with its shutdown rule) and forgets it. */
  terminateChild(id: string): Promise<void> {
    return this.serial(async () => {
      const child = this.byId.get(id);
      if (!child) throw new ChildIdError(`supervisor ${this.name}: no child ${JSON.stringify(id)}`, { id });
      await this.shutdownOne(child);
      this.remove(child);
    });
  }

  /** Stops and starts one child again (counted like any restart). */
  restartChild(id: string): Promise<void> {
    return this.serial(async () => {
      this.assertRunning();
      const child = this.byId.get(id);
      if (!child) throw new ChildIdError(`supervisor ${this.name}: no child ${JSON.stringify(id)}`, { id });
      await this.shutdownOne(child);
      await this.startOne(child);
    });
  }

  /** The children, in start order. */
  whichChildren(): ChildInfo[] {
    return this.children.map((c) => ({
      id: c.spec.id,
      running: c.handle !== undefined,
      restart: c.spec.restart ?? 'permanent',
      type: c.spec.type ?? 'worker',
      value: c.handle?.value,
    }));
  }

  /** The value a running child offers, by id. */
  valueOf<V = unknown>(id: string): V | undefined {
    return this.byId.get(id)?.handle?.value as V | undefined;
  }

  /** Stops every child in reverse start order, then settles `exited` with shutdown. */
  stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return this.exited.then(() => undefined);
    this.state = 'stopping';
    return this.serial(async () => {
      await this.stopAll();
      this.state = 'stopped';
      this.report('shutdown', { type: 'shutdown' });
      this.resolveExit({ type: 'shutdown' });
    }).then(() => undefined);
  }

  /** This supervisor as a handle, so that it can be a child of another. */
  asHandle(): ChildHandle<Supervisor> {
    return {
      exited: this.exited,
      stop: () => this.stop(),
      kill: () => {
        void this.stop();
      },
      value: this,
    };
  }

  /**
   * The children in start order, as a new array. (An array kept beside the map made each removal
   * a search through it: a dynamic supervisor of thousands of actors spent 1% of a control plane
   * there.)
   */
  private get children(): Child[] {
    return [...this.byId.values()];
  }

  private add(spec: ChildSpec): Child {
    const child: Child = { spec, handle: undefined, stopping: false };
    this.byId.set(spec.id, child);
    return child;
  }

  private remove(child: Child): void {
    if (this.byId.get(child.spec.id) === child) this.byId.delete(child.spec.id);
  }

  private assertRunning(): void {
    if (this.state === 'stopping' || this.state === 'stopped') {
      throw new SupervisorStoppedError(`supervisor ${this.name} is ${this.state}`, { supervisor: this.name });
    }
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async startOne(child: Child): Promise<void> {
    let handle: ChildHandle;
    try {
      handle = await child.spec.start({ clock: this.clock, logger: this.logger, valueOf: (id) => this.valueOf(id) });
    } catch (err) {
      const error = new ChildStartError(`supervisor ${this.name}: child ${JSON.stringify(child.spec.id)} failed to start: ${(err as Error)?.message ?? String(err)}`, { id: child.spec.id }, { cause: err });
      this.report('start_error', { type: 'error', error }, child);
      throw error;
    }
    child.handle = handle;
    child.stopping = false;
    handle.exited.then(
      (reason) => this.onChildExit(child, handle, reason),
      (error) => this.onChildExit(child, handle, { type: 'error', error }),
    );
  }

  private onChildExit(child: Child, handle: ChildHandle, reason: ExitReason): void {
    if (child.handle !== handle || child.stopping) return;
    child.handle = undefined;
    void this.serial(() => this.handleExit(child, reason));
  }

  private async handleExit(child: Child, reason: ExitReason): Promise<void> {
    if (this.state !== 'running' || !this.byId.has(child.spec.id)) return;
    if (isAbnormal(reason)) this.report('child_terminated', reason, child);
    else this.logger.debug({ child: child.spec.id, reason: reason.type }, 'child exited');
    const restart = child.spec.restart ?? 'permanent';
    if (restart === 'temporary') {
      this.remove(child);
      return;
    }
    if (restart === 'transient' && !isAbnormal(reason)) return;

    if (!this.intensity.add()) {
      const error = new RestartIntensityError(
        `supervisor ${this.name}: more than ${this.intensity.intensity} restart(s) within ${this.intensity.period} ms (last: ${JSON.stringify(child.spec.id)})`,
        { supervisor: this.name, intensity: this.intensity.intensity, period: this.intensity.period, offender: child.spec.id },
      );
      this.report('reached_max_restart_intensity', { type: 'error', error }, child);
      this.state = 'stopping';
      await this.stopAll();
      this.state = 'stopped';
      this.resolveExit({ type: 'error', error });
      return;
    }

    let toRestart: Child[];
    switch (this.strategy) {
      case Strategy.OneForAll:
        toRestart = [...this.children];
        break;
      case Strategy.RestForOne:
        toRestart = this.children.slice(this.children.indexOf(child));
        break;
      default:
        toRestart = [child];
    }
    // Stop the siblings that go down with it, in reverse order; temporary ones are not restarted.
    for (const c of [...toRestart].reverse()) if (c !== child) await this.shutdownOne(c);
    for (const c of toRestart) {
      if (c !== child && (c.spec.restart ?? 'permanent') === 'temporary') this.remove(c);
    }
    for (const c of toRestart) {
      if (!this.byId.has(c.spec.id) || c.handle) continue;
      try {
        await this.startOne(c);
      } catch (error) {
        // A failed restart counts as another failure of that child (OTP retries through the intensity).
        void this.serial(() => this.handleExit(c, { type: 'error', error }));
        return;
      }
    }
  }

  private async stopAll(): Promise<void> {
    if (this.strategy === Strategy.Dynamic) {
      await Promise.all(this.children.map((c) => this.shutdownOne(c)));
      return;
    }
    for (const c of [...this.children].reverse()) await this.shutdownOne(c);
  }

  private async shutdownOne(child: Child): Promise<void> {
    const handle = child.handle;
    if (!handle) return;
    child.stopping = true;
    const rule = child.spec.shutdown ?? (child.spec.type === 'supervisor' ? 'infinity' : DEFAULT_SHUTDOWN);
    let timer: TimerHandle | undefined;
    let killed = false;
    if (rule === 'brutal') {
      killed = true;
      safely(() => handle.kill());
    } else {
      if (rule !== 'infinity') {
        timer = this.clock.setTimeout(() => {
          killed = true;
          safely(() => handle.kill());
        }, rule);
      }
      try {
        await handle.stop();
      } catch (error) {
        this.report('shutdown_error', { type: 'error', error }, child);
        if (timer) this.clock.clearTimeout(timer);
        timer = undefined;
        killed = true;
        safely(() => handle.kill());
      }
    }
    await handle.exited;
    if (timer) this.clock.clearTimeout(timer);
    if (killed && rule !== 'brutal') {
      this.report('shutdown_error', { type: 'error', error: new Error(`killed after ${String(rule)} ms shutdown timeout`) }, child);
    }
    child.handle = undefined;
    child.stopping = false;
  }

  private report(context: ReportContext, reason: SupervisorReport['reason'], child?: Child): void {
    const report: SupervisorReport = { supervisor: this.name, context, reason };
    if (child) {
      report.offender = { id: child.spec.id, restart: child.spec.restart ?? 'permanent', shutdown: child.spec.shutdown ?? DEFAULT_SHUTDOWN };
    }
    const err = reason.type === 'error' ? reason.error : undefined;
    const level = context === 'shutdown' ? 'debug' : context === 'reached_max_restart_intensity' ? 'error' : 'warn';
    this.logger[level]({ context, child: child?.spec.id, err }, `supervisor report: ${context}`);
    try {
      this.onReport?.(report);
    } catch {
      // an observer's failure is not the supervisor's
    }
  }
}

function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // kill is best effort; exited still settles
  }
}

/** A supervisor as a child spec of another supervisor. */
export function supervisorChild(spec: SupervisorSpec, opts: Omit<SupervisorOptions, 'clock' | 'logger'> & { restart?: ChildSpec['restart'] } = {}): ChildSpec<Supervisor> {
  return {
    id: spec.name,
    type: 'supervisor',
    restart: opts.restart ?? 'permanent',
    shutdown: 'infinity',
    start: async (ctx) => (await Supervisor.start(spec, { clock: ctx.clock, logger: ctx.logger, onReport: opts.onReport })).asHandle(),
  };
}
