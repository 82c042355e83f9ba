/**
 * The end of a one-shot read of a JetStream stream (a KV list, a replay of events).
 *
 * Such a read ends when a message says that nothing is pending after it. But a pending count can
 * name a message that is gone by the time it would be delivered (a KV value replaced, an old event
 * discarded by the stream's limits), and the read would then wait for it: a fetch until its expiry,
 * a consume for ever. The guard watches for a pause in delivery; after one, it asks the stream for
 * its newest message under the read's filter, and if the read has reached it, ends the read.
 */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';

export class StreamTail {
  private timer: NodeJS.Timeout | undefined;
  private newest = 0;
  private stopped = false;
  private jsm?: Promise<JetStreamManager>;

  constructor(
    private readonly js: JetStreamClient,
    private readonly stream: string,
    /** The read's subject filter (wildcards allowed). */
    private readonly subject: string,
    /** Called once, when the read has every message there is. */
    private readonly atTail: () => void,
    private readonly idleMs = 25,
  ) {}

  /** A message was delivered: the read has reached `seq`. */
  seen(seq: number): void {
    if (seq > this.newest) this.newest = seq;
    this.arm();
  }

  /** Starts (or restarts) the wait for a pause. */
  arm(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.check(), this.idleMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async check(): Promise<void> {
    try {
      this.jsm ??= this.js.jetstreamManager(false);
      const last = await (await this.jsm).streams.getMessage(this.stream, { last_by_subj: this.subject });
      if (this.stopped) return;
      if ((last?.seq ?? 0) <= this.newest) {
        this.stop();
        this.atTail();
        return;
      }
    } catch {
      // asked again after the next pause
    }
    this.arm();
  }
}
