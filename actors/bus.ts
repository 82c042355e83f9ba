/**
 * The bus: one NATS connection with troupe's envelope on every message.
 *
 * Connects with reconnect, backoff and jitter and reports its status as events; requests carry
 * deadlines and rebuild typed remote errors; every message received is decoded and validated
 * before a handler sees it, and one that fails gets a typed error reply (when it was a request),
 * a counter and a rate-limited log line. It knows nothing of pods.
 */
import { EventEmitter } from 'node:events';
import { connect, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  Codec,
  MessageType,
  UnknownTypeError,
  errorFromWire,
  newInstanceId,
  subjects as makeSubjects,
  toTroupeError,
  type Envelope,
  type ErrorBody,
  type Subjects,
} from '../protocol/index.js';
import { backoff, silentLogger, type Logger } from '../supervisor/index.js';
import { BusConnectError } from './errors.js';
import { FastPublisher, coalesceFlushes, settleRequestsCheaply } from './fast-publish.js';
import { Metrics, RateLimit } from './metrics.js';
import { Requester } from './requester.js';

export interface BusOptions {
  /** NATS server URL(s), e.g. nats://127.0.0.1:4222. */
  servers: string | string[];
  /** Cluster name: the second token of every subject. */
  cluster?: string;
  /** Who this is, for the envelope's `from` and the connection name. */
  name?: string;
  logger?: Logger;
  codec?: Codec;
  /** Default request deadline (ms). */
  requestTimeout?: number;
  /** How long the first connection may take, retrying with backoff (ms). */
  connectTimeout?: number;
  /** Reconnect wait and jitter (ms). */
  reconnectWait?: number;
  reconnectJitter?: number;
  /**
   * Socket writes gathered per turn of the event loop (see coalesceFlushes); default true. False
   * keeps nats.js's own per-microtask writes.
   */
  coalesceWrites?: boolean;
}

export type BusStatus =
  | { type: 'disconnect'; server: string }
  | { type: 'reconnecting' }
  | { type: 'reconnect'; server: string }
  | { type: 'error'; error: unknown }
  | { type: 'close' };

export interface RequestOptions {
  timeout?: number;
  /** Correlation id to carry (default: none). */
  cid?: string;
  /**
   * Written to the socket once the microtasks under way have run, as a reply is, rather than at
   * the end of the event loop's turn (see coalesceFlushes): for a request on someone's critical
   * path that the rest of the turn's work would hold back.
   */
  soon?: boolean;
  /**
   * The request's stream of urgent messages (see Bus.flushIfQuiet): written at once when none of
   * that stream came lately, else as `soon`.
   */
  urgent?: string;
}

/**
 * How long a stream of urgent messages goes without one before the next is written at once (at 5
 * ms, the gaps in a busy control plane's streams were enough to cost it 6% of its throughput in
 * extra writes).
 */
const QUIET_MS = 20;

export type Handler<B> = (env: Envelope<B>, msg: Msg) => void;

export interface SubscribeOptions {
  queue?: string;
  /** Envelope types this subscription accepts; another type is refused as unknown here. */
  accept?: readonly string[];
}

export class Bus extends EventEmitter {
  readonly nc: NatsConnection;
  readonly codec: Codec;
  readonly subjects: Subjects;
  readonly id: string;
  readonly from: string;
  readonly metrics = new Metrics();
  readonly logger: Logger;
  readonly requestTimeout: number;
  private readonly rejectLog = new RateLimit(20);
  private readonly publisher: FastPublisher;
  private readonly requester: Requester;
  /** Set when writes are gathered: a reply asks for its write sooner (see coalesceFlushes). */
  private readonly flushes?: { soon(): void; now(): void };
  /** When flushIfQuiet() was last asked, per stream (performance.now()). */
  private readonly lastUrgent = new Map<string, number>();

  private constructor(nc: NatsConnection, opts: BusOptions, id: string) {
    super();
    this.nc = nc;
    this.id = id;
    this.codec = opts.codec ?? new Codec();
    this.subjects = makeSubjects(opts.cluster ?? 'default');
    this.from = `${opts.name ?? 'troupe'}/${id}`;
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'bus' });
    this.requestTimeout = opts.requestTimeout ?? 5000;
    this.publisher = new FastPublisher(nc);
    if (opts.coalesceWrites !== false) this.flushes = coalesceFlushes(nc);
    settleRequestsCheaply(nc);
    this.requester = new Requester(nc, this.publisher);
    void this.watchStatus();
  }

  static async connect(opts: BusOptions): Promise<Bus> {
    const id = newInstanceId();
    const deadline = Date.now() + (opts.connectTimeout ?? 10_000);
    const logger = opts.logger ?? silentLogger();
    for (let attempt = 0; ; attempt++) {
      try {
        const nc = await connect({
          servers: opts.servers,
          name: `${opts.name ?? 'troupe'}/${id}`,
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: opts.reconnectWait ?? 250,
          reconnectJitter: opts.reconnectJitter ?? 100,
          pingInterval: 10_000,
          noAsyncTraces: true,
          timeout: 2000,
        });
        return new Bus(nc, opts, id);
      } catch (err) {
        if (Date.now() >= deadline) {
          throw new BusConnectError(`cannot connect to NATS at ${String(opts.servers)}: ${(err as Error).message}; is the cluster up (troupe up) and --server right?`, { servers: opts.servers }, { cause: err });
        }
        const wait = Math.min(backoff(attempt, 100, 2000), Math.max(0, deadline - Date.now()));
        logger.debug({ attempt, wait }, 'bus connect failed, retrying');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      let status: BusStatus | undefined;
      switch (s.type) {
        case 'disconnect':
          status = { type: 'disconnect', server: s.server };
          break;
        case 'reconnecting':
          status = { type: 'reconnecting' };
          break;
        case 'reconnect':
          status = { type: 'reconnect', server: s.server };
          break;
        case 'error':
          status = { type: 'error', error: s.error };
          break;
        case 'close':
          status = { type: 'close' };
          break;
        default:
          continue;
      }
      this.metrics.inc('bus_status_total', { type: status.type });
      if (status.type !== 'reconnecting') this.logger.info({ status: status.type }, `bus ${status.type}`);
      this.emit('status', status);
    }
  }

  /** Encodes and publishes one message. */
  publish<B>(subject: string, type: string, body: B, cid?: string | null): void {
    this.send(subject, type, body, cid ?? null, false);
  }

  /** publish(); `once` for a subject used for one message (a reply's inbox: see framePrefix). */
  private send(subject: string, type: string, body: unknown, cid: string | null, once: boolean): void {
    const opts = { from: this.from, cid };
    const prefix = this.publisher.framePrefix(subject, once);
    if (!prefix) {
      this.publisher.publish(subject, this.codec.encode(type, body, opts));
      return;
    }
    // the message is packed straight into its PUB frame
    const { frame, size } = this.codec.encodeFrame(prefix, type, body, opts);
    this.publisher.publishFrame(subject, frame, size);
  }

  /** Sends a request and waits for the reply; a typed error reply is thrown as its class. */
  async request<R = unknown, B = unknown>(subject: string, type: string, body: B, opts: RequestOptions = {}): Promise<Envelope<R>> {
    const timeout = opts.timeout ?? this.requestTimeout;
    const data = this.codec.encode(type, body, { from: this.from, cid: opts.cid ?? null });
    const answer = this.requester.request(subject, data, timeout);
    if (opts.urgent) this.flushIfQuiet(opts.urgent);
    if (opts.soon || opts.urgent) this.flushes?.soon();
    const env = this.codec.decode<R>(await answer);
    if (env.t === MessageType.Error) throw errorFromWire(env.body as unknown as ErrorBody);
    return env;
  }

  /**
   * A request of raw bytes (no envelope): what JetStream's API takes and answers. Resolves with the
   * answer's bytes; TimeoutError and UnavailableError as a request's.
   */
  requestRaw(subject: string, data: Uint8Array, opts: { timeout?: number; headers?: Record<string, string> } = {}): Promise<Uint8Array> {
    return this.requester.request(subject, data, opts.timeout ?? this.requestTimeout, opts.headers);
  }

  /**
   * For a message just queued that someone acts on at once (a pod's intent, a write someone waits
   * for): when none of its `stream` came in the last QUIET_MS, what is pending is written now
   * rather than at the end of the turn (see coalesceFlushes), a tenth of a millisecond or more of
   * a pod's start. In a stream of them they keep sharing the turn's one write: a write each cost a
   * quarter of a busy control plane's throughput.
   */
  flushIfQuiet(stream: string): void {
    const now = performance.now();
    const quiet = now - (this.lastUrgent.get(stream) ?? -Infinity) > QUIET_MS;
    this.lastUrgent.set(stream, now);
    if (quiet) this.flushes?.now();
  }

  /** Answers a request with a reply envelope. */
  respond<B>(msg: Msg, body: B, cid: string | null): void {
    if (!msg.reply) return;
    try {
      this.send(msg.reply, MessageType.Reply, body, cid, true);
      this.flushes?.soon();
    } catch (err) {
      this.respondError(msg, err, cid);
    }
  }

  /** Answers a request with a typed error envelope. */
  respondError(msg: Msg, err: unknown, cid: string | null): void {
    if (!msg.reply) return;
    const wire = toTroupeError(err).toWire();
    try {
      this.send(msg.reply, MessageType.Error, wire, cid, true);
    } catch {
      // the message itself was too large: send it short
      this.send(msg.reply, MessageType.Error, { code: wire.code, message: wire.message.slice(0, 1000) }, cid, true);
    }
    this.flushes?.soon();
  }

  /** Records a refused incoming message: a typed error reply when it was a request, a counter, a log line. */
  reject(msg: Msg, err: unknown, cid: string | null = null): void {
    const e = toTroupeError(err);
    this.metrics.inc('bus_rejected_total', { code: e.code });
    if (this.rejectLog.allow()) {
      this.logger.warn({ subject: msg.subject, code: e.code, err: e.message, suppressed: this.rejectLog.suppressed }, 'rejected message');
    }
    this.respondError(msg, e, cid);
  }

  /**
   * Subscribes with decode and validation. The handler sees only valid envelopes of the accepted
   * types; everything else is rejected (typed error reply, counter, log line).
   */
  subscribe<B = unknown>(subject: string, handler: Handler<B>, opts: SubscribeOptions = {}): Subscription {
    const accept = opts.accept ? new Set(opts.accept) : undefined;
    const received = this.metrics.counter('bus_received_total');
    return this.nc.subscribe(subject, {
      queue: opts.queue,
      callback: (err, msg) => {
        if (err) {
          this.logger.warn({ err, subject }, 'subscription error');
          return;
        }
        let env: Envelope<B>;
        try {
          env = this.codec.decode<B>(msg.data);
        } catch (e) {
          this.reject(msg, e);
          return;
        }
        if (accept && !accept.has(env.t)) {
          const accepted = [...accept];
          this.reject(
            msg,
            new UnknownTypeError(`message type ${JSON.stringify(env.t)} is not accepted on ${msg.subject} (expected ${accepted.map((t) => JSON.stringify(t)).join(' or ')})`, { type: env.t, accepted }),
            env.id,
          );
          return;
        }
        received.inc();
        try {
          handler(env, msg);
        } catch (e) {
          this.logger.error({ err: e, subject: msg.subject }, 'handler threw');
          this.metrics.inc('bus_handler_errors_total');
          this.respondError(msg, e, env.id);
        }
      },
    });
  }

  /** Serves requests: the handler's result (or throw) becomes the reply. */
  serve<B = unknown, R = unknown>(subject: string, handler: (env: Envelope<B>, msg: Msg) => R | Promise<R>, opts: SubscribeOptions = {}): Subscription {
    return this.subscribe<B>(
      subject,
      (env, msg) => {
        Promise.resolve()
          .then(() => handler(env, msg))
          .then(
            (r) => this.respond(msg, r, env.id),
            (e) => this.respondError(msg, e, env.id),
          );
      },
      opts,
    );
  }

  /** Waits until the server has seen everything published so far. */
  flush(): Promise<void> {
    return this.nc.flush();
  }

  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    try {
      await this.nc.drain();
    } catch {
      await this.nc.close().catch(() => undefined);
    }
  }
}

