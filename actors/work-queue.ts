/**
 * A controller's work queue (controller-runtime's): keys, not events. A key queued while it waits
 * is queued once; a key being worked on is not worked on twice at a time, and is worked on again
 * if it was queued meanwhile. Failures come back after a backoff with jitter.
 */
import { backoff, systemClock, type Clock, type TimerHandle } from '../supervisor/index.js';

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly active = new Set<string>();
  private readonly again = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, TimerHandle>();
  private running = 0;
  private stopped = false;
  /** Keys gather but are not worked on until `resume` (a controller waits for its caches). */
  private paused = true;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly work: (key: string) => Promise<void>,
    private readonly opts: { concurrency?: number; clock?: Clock; onError?: (key: string, err: unknown) => void } = {},
  ) {}

  add(key: string): void {
    if (this.stopped) return;
    if (this.active.has(key)) {
      this.again.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Queues a key after a delay (a later check, e.g. a deadline). */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    const clock = this.opts.clock ?? systemClock;
    const prev = this.timers.get(key);
    if (prev) clock.clearTimeout(prev);
    const t = clock.setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    this.timers.set(key, t);
  }

  get length(): number {
    return this.queue.length + this.running;
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  resume(): void {
    this.paused = false;
    this.pump();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) (this.opts.clock ?? systemClock).clearTimeout(t);
    this.timers.clear();
    this.queue.length = 0;
    this.queued.clear();
  }

  private pump(): void {
    if (this.paused) return;
    const max = this.opts.concurrency ?? 1;
    while (this.running < max && this.queue.length > 0) {
      const key = this.queue.shift()!;
      this.queued.delete(key);
      this.active.add(key);
      this.running++;
      void this.run(key);
    }
    if (this.length === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async run(key: string): Promise<void> {
    try {
      await this.work(key);
      this.failures.delete(key);
    } catch (err) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      // a queue stopped meanwhile drops the key: a failure then is the shutdown's, not news
      if (!this.stopped) {
        this.opts.onError?.(key, err);
        this.addAfter(key, backoff(n - 1, 50, 5000));
      }
    } finally {
      this.active.delete(key);
      this.running--;
      if (this.again.delete(key)) this.add(key);
      this.pump();
    }
  }
}
