/**
 * Publishing without nats.js's per-message string work.
 *
 * nats.js builds each PUB line as a string and runs it through a TextEncoder, then queues the
 * line, the payload and a CRLF as three buffers. For the host's event stream (one event per
 * transition) that was about a tenth of a host's CPU. Here the line's `PUB <subject> ` part is
 * encoded once per subject and one buffer carries the whole frame into the connection's own
 * outbound queue, which flushes, buffers across reconnects and counts it as nats.js would.
 *
 * It reaches into the connection's protocol handler (`sendCommand`); when that is not there (a
 * nats.js that changed), when the connection is closed or draining, or when a payload is past the
 * server's limit, it hands the message to `nc.publish`, which then does the same or throws its
 * own error.
 */
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';

interface ProtocolInternals {
  sendCommand(cmd: Uint8Array, ...payloads: Uint8Array[]): void;
  noMorePublishing?: boolean;
  info?: { max_payload?: number };
  outBytes: number;
  outMsgs: number;
}

/** Subjects whose PUB prefix is kept; past this the cache starts again. */
const MAX_PREFIXES = 8192;
const WHITESPACE = /\s/;

export class FastPublisher {
  private readonly proto: ProtocolInternals | undefined;
  private readonly prefixes = new Map<string, Buffer>();

  constructor(private readonly nc: NatsConnection) {
    const p = (nc as unknown as { protocol?: Partial<ProtocolInternals> }).protocol;
    this.proto =
      p && typeof p.sendCommand === 'function' && typeof p.outBytes === 'number' && typeof p.outMsgs === 'number' ? (p as ProtocolInternals) : undefined;
  }

  /** True when frames go straight to the protocol handler (false: through nc.publish). */
  get direct(): boolean {
    return this.proto !== undefined;
  }

  publish(subject: string, data: Uint8Array): void {
    const p = this.proto;
    const max = p?.info?.max_payload;
    if (!p || p.noMorePublishing || this.nc.isClosed() || (max !== undefined && data.length > max)) {
      this.nc.publish(subject, data);
      return;
    }
    const prefix = this.prefix(subject);
    if (!prefix) {
      this.nc.publish(subject, data); // nats.js's InvalidSubjectError
      return;
    }
    this.send(p, frameOf(prefix, `${data.length}\r\n`, data), data.length);
  }

  /**
   * The `PUB <subject> ` prefix for a caller that builds whole frames itself (Codec.encodeFrame),
   * or undefined when frames cannot go straight to the connection now (then: publish()). With
   * `once` (a reply's inbox, used for one message) the prefix is not kept: for a printable ASCII
   * subject (every inbox) it is the text itself, which the frame's writer copies in as it goes, so
   * a reply allocates no buffer for it.
   */
  framePrefix(subject: string, once = false): Uint8Array | string | undefined {
    const p = this.proto;
    if (!p || p.noMorePublishing || this.nc.isClosed()) return undefined;
    if (!once) return this.prefix(subject);
    return printableAscii(subject) ? `PUB ${subject} ` : newPrefix(subject);
  }

  /**
   * Sends a whole frame built on a framePrefix(); size is its payload's. A payload past the
   * server's limit is handed to nc.publish instead, which refuses it with its own error.
   */
  publishFrame(subject: string, frame: Uint8Array, size: number): void {
    const p = this.proto!;
    const max = p.info?.max_payload;
    if (max !== undefined && size > max) {
      this.nc.publish(subject, frame.subarray(frame.length - 2 - size, frame.length - 2));
      return;
    }
    this.send(p, frame, size);
  }

  /**
   * Publishes `data` with a reply subject: `PUB <subject> <reply> <size>`, one frame; with
   * `headers` (NATS headers: names and values without CR or LF), `HPUB <subject> <reply> <header
   * size> <total size>`. Falls back to nc.publish (which then throws its own error) when frames
   * cannot go straight to the connection.
   */
  publishWithReply(subject: string, reply: string, data: Uint8Array, headers?: Record<string, string>): void {
    const p = this.proto;
    const block = headers ? headerBlock(headers) : '';
    const hlen = Buffer.byteLength(block);
    const max = p?.info?.max_payload;
    const direct = p && !p.noMorePublishing && !this.nc.isClosed() && (max === undefined || hlen + data.length <= max) && !WHITESPACE.test(reply);
    const prefix = direct ? (headers ? newPrefix(subject, 'HPUB') : this.prefix(subject)) : undefined;
    if (!p || !prefix) {
      this.nc.publish(subject, data, { reply, ...(headers ? { headers: natsHeadersOf(headers) } : {}) });
      return;
    }
    const head = headers ? `${reply} ${hlen} ${hlen + data.length}\r\n${block}` : `${reply} ${data.length}\r\n`;
    this.send(p, frameOf(prefix, head, data), hlen + data.length);
  }

  private prefix(subject: string): Buffer | undefined {
    let prefix = this.prefixes.get(subject);
    if (!prefix) {
      prefix = newPrefix(subject);
      if (!prefix) return undefined;
      if (this.prefixes.size >= MAX_PREFIXES) this.prefixes.clear();
      this.prefixes.set(subject, prefix);
    }
    return prefix;
  }

  private send(p: ProtocolInternals, frame: Uint8Array, size: number): void {
    p.outBytes += size;
    p.outMsgs++;
    p.sendCommand(frame);
  }
}

/** True for a non-empty subject of printable ASCII only (no space, no control character). */
function printableAscii(subject: string): boolean {
  if (subject.length === 0) return false;
  for (let i = 0; i < subject.length; i++) {
    const c = subject.charCodeAt(i);
    if (c <= 32 || c >= 127) return false;
  }
  return true;
}

/** `PUB <subject> ` (or `HPUB`), or undefined for a subject NATS refuses (empty, or with whitespace). */
function newPrefix(subject: string, op: 'PUB' | 'HPUB' = 'PUB'): Buffer | undefined {
  return subject.length === 0 || WHITESPACE.test(subject) ? undefined : Buffer.from(`${op} ${subject} `, 'utf8');
}

/** A NATS header block: the version line, one line per header, an empty line. */
function headerBlock(headers: Record<string, string>): string {
  let out = 'NATS/1.0\r\n';
  for (const [k, v] of Object.entries(headers)) {
    if (/[\r\n:]/.test(k) || /[\r\n]/.test(v)) throw new Error(`invalid header ${JSON.stringify(k)}`);
    out += `${k}: ${v}\r\n`;
  }
  return `${out}\r\n`;
}

/** The same headers as nats.js's object, for nc.publish. */
function natsHeadersOf(headers: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(headers)) h.set(k, v);
  return h;
}

/** One frame: the prefix, the rest of the line (ending in CRLF; for HPUB the header block too), the payload and a CRLF. */
function frameOf(prefix: Buffer, head: string, data: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(prefix.length + Buffer.byteLength(head) + data.length + 2);
  prefix.copy(frame, 0);
  let o = prefix.length + frame.write(head, prefix.length);
  frame.set(data, o);
  o += data.length;
  frame[o++] = 13;
  frame[o] = 10;
  return frame;
}

interface FlushInternals {
  flushPending(): void;
  close(err?: Error): Promise<void>;
  outbound: { size(): number };
  pendingLimit: number;
}

/**
 * How much a busy turn gathers before it writes anyway: 256 KB (nats.js's own limit is 32 KB). A
 * write wakes nats-server, which reads and handles what came; fewer, larger writes wake it less
 * and it handles more per read. Measured on the control-plane bench, alternated, three runs each:
 * at 32 KB 3,105-3,193 pods/s, 0.32-0.34 ms of controller CPU and 0.10 ms of nats-server CPU per
 * pod; at 256 KB 3,353-3,403 pods/s, 0.32-0.33 and 0.07-0.08 ms. At 1 MB it was faster still
 * (3,558-3,632 pods/s) but a pod's p99 creation-to-Running rose from about 215 to 275 ms: a
 * message waits longer for the write.
 */
export const FLUSH_AT = 256 * 1024;

/**
 * One socket write per turn of the event loop instead of one per burst of microtasks.
 *
 * nats.js writes its outbound buffer in a microtask queued by the first message after the last
 * write, so a process whose messages come from many promise continuations (a controller: store
 * writes, replies, events, each after its own await) makes a write syscall for every few
 * messages: a fifth of a 10,000-pod control-plane run was spent in them. Here the write waits for
 * setImmediate, after everything the current turn queues; a buffer past FLUSH_AT is still written
 * at once, and closing the connection writes what is pending first.
 *
 * A reply is the exception (soon()): someone waits on it, and a turn's tail (timers, immediates,
 * other callbacks of the same poll) can be long, so a reply goes out at the end of the burst of
 * microtasks it was queued in, with whatever else is pending by then. At most one write per burst
 * that holds replies: on a busy connection they still share their writes.
 *
 * Returns undefined (and changes nothing) when the connection's internals are not the expected ones.
 */
export function coalesceFlushes(nc: NatsConnection): { soon(): void; now(): void } | undefined {
  const p = (nc as unknown as { protocol?: Partial<FlushInternals> }).protocol;
  if (!p || typeof p.flushPending !== 'function' || typeof p.close !== 'function' || typeof p.outbound?.size !== 'function' || typeof p.pendingLimit !== 'number') return undefined;
  const proto = p as FlushInternals;
  const flushNow = proto.flushPending.bind(proto);
  const close = proto.close.bind(proto);
  let scheduled = false;
  proto.flushPending = () => {
    if (proto.outbound.size() >= Math.max(FLUSH_AT, proto.pendingLimit)) return flushNow();
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushNow();
    });
  };
  proto.close = (err?: Error) => {
    flushNow();
    return close(err);
  };
  let soon = false;
  const flushSoon = () => {
    soon = false;
    if (proto.outbound.size() > 0) flushNow();
  };
  return {
    soon: () => {
      if (soon) return;
      soon = true;
      queueMicrotask(flushSoon);
    },
    now: () => {
      if (proto.outbound.size() > 0) flushNow();
    },
  };
}

interface RequestInternals {
  resolver(err: Error | null, msg: unknown): void;
  cancel(err?: Error): void;
  timer?: { cancel(): void };
  mux: { cancel(r: unknown): void };
}

const SETTLED = Symbol('troupe.settled');
const patchedRequestClasses = new WeakSet<object>();

/**
 * No Error built for a request that is already answered.
 *
 * nats.js (3.4) ends every request, answered or not, with `cancel()`, which rejects its promise
 * with a new RequestError: for an answered request the rejection changes nothing, but building the
 * Error (its stack) was 4% of a control plane's CPU, one per store write. Here `cancel()` after
 * the answer only does the rest of its work (the timer, the subscription's entry); a cancel before
 * any answer (a timeout, a closed connection) is nats.js's own.
 *
 * The class changed is the one the connection's first single-answer request is made of (the
 * process may hold more than one copy of nats.js's modules), once per class. Returns false (and
 * changes nothing) when the connection's internals are not the expected ones.
 */
export function settleRequestsCheaply(nc: NatsConnection): boolean {
  const mux = (nc as unknown as { protocol?: { muxSubscriptions?: { add?: (r: unknown) => unknown } } }).protocol?.muxSubscriptions;
  const add = mux?.add;
  if (!mux || typeof add !== 'function') return false;
  mux.add = function (this: unknown, r: unknown) {
    const proto = Object.getPrototypeOf(r) as Partial<RequestInternals> & { constructor?: { name?: string } };
    if (proto?.constructor?.name === 'RequestOne') {
      mux.add = add;
      patchRequestClass(proto);
    }
    return add.call(this, r);
  };
  return true;
}

function patchRequestClass(proto: Partial<RequestInternals>): void {
  if (patchedRequestClasses.has(proto) || typeof proto.resolver !== 'function' || typeof proto.cancel !== 'function') return;
  patchedRequestClasses.add(proto);
  const resolver = proto.resolver;
  const cancel = proto.cancel;
  proto.resolver = function (this: RequestInternals & { [SETTLED]?: boolean }, err, msg) {
    this[SETTLED] = true;
    resolver.call(this, err, msg);
  };
  proto.cancel = function (this: RequestInternals & { [SETTLED]?: boolean }, err?: Error) {
    if (err !== undefined || !this[SETTLED]) return cancel.call(this, err);
    this.timer?.cancel();
    this.mux.cancel(this);
  };
}
