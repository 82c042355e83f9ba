/**
 * The end of a one-shot read of a JetStream stream (a KV list, a replay of events).
 *
 * Such a read ends when a message says that nothing is pending after it. But a pending count can
 * name a message that is gone by the time it would be delivered (a KV value replaced, an old event
 * discarded by the stream's limits), and the read would then wait for it: a fetch until its expiry,
 * a consume for ever. The guard watches for a pause in delivery; after one, it asks the stream for
 * its newest message under the read's filter, and if the read has reached it, ends the read.
 *
 * A read that is a snapshot (a KV list, a replay that does not follow) fixes its end first
 * (`fixEnd`): the newest message under the filter when the read began. Messages written after it do
 * not hold the read, which would otherwise chase a stream that is written to without pause.
 */
import type { Consumer, ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';

export class StreamTail {
  private timer: NodeJS.Timeout | undefined;
  private newest = 0;
  private stopped = false;
  private jsm?: Promise<JetStreamManager>;
  private end: number | undefined;

  constructor(
    private readonly js: JetStreamClient,
    private readonly stream: string,
    /** The read's subject filter (wildcards allowed). */
    private readonly subject: string,
    /** Called once, when the read has every message there is. */
    private readonly atTail: () => void,
    private readonly idleMs = 25,
  ) {}

  /**
   * Fixes the read's end at the newest message under the filter now; 0 when there is none (the
   * read can then return at once).
   */
  async fixEnd(): Promise<number> {
    this.end = await this.newestSeq();
    return this.end;
  }

  /** A message was delivered: the read has reached `seq`. True when that is the read's fixed end. */
  seen(seq: number): boolean {
    if (seq > this.newest) this.newest = seq;
    if (this.end !== undefined && seq >= this.end) {
      this.stop();
      return true;
    }
    this.arm();
    return false;
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
      const last = await this.newestSeq();
      if (this.stopped) return;
      // a fixed end whose message is gone (replaced, discarded) ends the read at the newest one left
      if (Math.min(last, this.end ?? last) <= this.newest) {
        this.stop();
        this.atTail();
        return;
      }
    } catch {
      // asked again after the next pause
    }
    this.arm();
  }

  private async newestSeq(): Promise<number> {
    this.jsm ??= this.js.jetstreamManager(false);
    const last = await (await this.jsm).streams.getMessage(this.stream, { last_by_subj: this.subject });
    return last?.seq ?? 0;
  }
}

/**
 * The messages of a consumer on `stream` (filtered by `filter`). With `follow`, every one and then
 * each new one until the signal aborts; without, the stream as it was when the read began: up to
 * the newest message under the filter then (nothing at all when there is none or none is pending),
 * even when a pending count names a message the stream has dropped meanwhile.
 */
export async function* readStream(
  js: JetStreamClient,
  consumer: Consumer,
  stream: string,
  filter: string,
  opts: { follow?: boolean; signal?: AbortSignal } = {},
): AsyncGenerator<JsMsg> {
  let msgs: ConsumerMessages | undefined;
  const tail = opts.follow ? undefined : new StreamTail(js, stream, filter, () => void msgs?.close());
  if (tail && ((await tail.fixEnd()) === 0 || (await consumer.info(true)).num_pending === 0)) return;
  const messages = await consumer.consume();
  msgs = messages;
  const stop = () => void messages.close();
  opts.signal?.addEventListener('abort', stop, { once: true });
  tail?.arm();
  try {
    for await (const m of messages) {
      const atEnd = tail?.seen(m.seq);
      yield m;
      if (atEnd || (tail && m.info.pending === 0)) break;
    }
  } finally {
    tail?.stop();
    opts.signal?.removeEventListener('abort', stop);
    await messages.close();
  }
}
