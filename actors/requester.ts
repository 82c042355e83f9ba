/**
 * Request/reply for the bus: one inbox subscription for all of a connection's requests, each
 * request one frame written straight to the connection (see FastPublisher), each answer routed by
 * the last token of its subject.
 *
 * nats.js's own request builds, per call, a request object with a random token, a deferred, a
 * timer with a second deferred, a race of the two and the PUB line as a string; on a control plane
 * that was a tenth of the CPU (every store command is a request), and on a lone request it is
 * work done with cold caches on the path being waited on. Here a request is a map entry, a
 * promise and a timer.
 *
 * Errors are troupe's: no reply in time is a TimeoutError; nothing subscribed (the server's 503
 * status answer) and a connection that closed with the request pending are UnavailableErrors.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { TimeoutError, UnavailableError, type TroupeError } from '../protocol/index.js';
import type { FastPublisher } from './fast-publish.js';

interface Pending {
  subject: string;
  resolve(data: Uint8Array): void;
  reject(err: TroupeError): void;
  timer: NodeJS.Timeout;
}

export class Requester {
  /** `_INBOX.<unique>.`: each request's reply subject is this and its token. */
  readonly inbox: string;
  private readonly pending = new Map<string, Pending>();
  private seq = 0;
  private closed = false;
  private readonly sub: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    private readonly publisher: FastPublisher,
  ) {
    this.inbox = `${createInbox()}.`;
    this.sub = nc.subscribe(`${this.inbox}*`, { callback: (err, msg) => this.answer(err, msg) });
    void nc.closed().then(() => this.close());
  }

  /** Requests in flight. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Sends `data` to `subject`; resolves with the answer's bytes. `headers` go with it as NATS
   * headers (names and values without CR or LF).
   */
  request(subject: string, data: Uint8Array, timeout: number, headers?: Record<string, string>): Promise<Uint8Array> {
    if (this.closed || this.nc.isClosed()) return Promise.reject(closedError(subject));
    const token = (this.seq++).toString(36);
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(token)) reject(new TimeoutError(`no reply on ${subject} within ${timeout} ms`, { subject, timeout }));
      }, timeout);
      this.pending.set(token, { subject, resolve, reject, timer });
      try {
        this.publisher.publishWithReply(subject, this.inbox + token, data, headers);
      } catch (err) {
        this.pending.delete(token);
        clearTimeout(timer);
        reject(new UnavailableError(`request on ${subject} failed: ${(err as Error).message}`, { subject }, { cause: err }));
      }
    });
  }

  private answer(err: Error | null, msg: Msg): void {
    if (err) {
      // the inbox subscription itself failed (a permissions error): nothing pending can be answered
      this.failAll((subject) => new UnavailableError(`request on ${subject} failed: ${err.message}`, { subject }, { cause: err }));
      return;
    }
    const token = msg.subject.slice(this.inbox.length);
    const p = this.pending.get(token);
    if (!p) return; // answered already, or timed out
    this.pending.delete(token);
    clearTimeout(p.timer);
    if (msg.data.length === 0 && msg.headers?.code === 503) p.reject(new UnavailableError(`nothing is serving ${p.subject} (no responders)`, { subject: p.subject, noResponders: true }));
    else p.resolve(msg.data);
  }

  private failAll(error: (subject: string) => TroupeError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      clearTimeout(p.timer);
      p.reject(error(p.subject));
    }
  }

  /** Fails what is pending (the connection closed) and takes no more requests. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(closedError);
    if (!this.nc.isClosed()) this.sub.unsubscribe();
  }
}

function closedError(subject: string): UnavailableError {
  return new UnavailableError('the bus connection is closed', { subject });
}
