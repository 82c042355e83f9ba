/**
 * JetStream KV, the etcd of troupe. The KV revision is the object's resourceVersion; writes that
 * race use the expected-revision update and lose with a ConflictError.
 */
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import { DeliverPolicy, JetStreamApiError, JetStreamError, jetstream, type ConsumerMessages, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { errors as natsErrors } from '@nats-io/nats-core';
import { ConflictError, TimeoutError, UnavailableError, toTroupeError, type TroupeError } from '../protocol/index.js';
import type { Bus } from './bus.js';
import { StreamTail } from './stream-tail.js';

const WRONG_LAST_SEQUENCE = 10071;
const WRONG_LAST_SEQUENCE_UNKNOWN = 10164;

export interface Entry {
  key: string;
  value: Uint8Array;
  revision: number;
  created: Date;
}

export interface WatchEvent {
  key: string;
  /** PUT, or DEL/PURGE (value empty). */
  op: 'PUT' | 'DEL' | 'PURGE';
  value: Uint8Array;
  revision: number;
}

export interface KvOpenOptions {
  /** Values kept per key (1 = latest only). */
  history?: number;
  /** JetStream replicas (3 on a NATS cluster). */
  replicas?: number;
  storage?: 'file' | 'memory';
  /** Largest value (bytes). */
  maxValueSize?: number;
}

function toEntry(e: KvEntry): Entry {
  return { key: e.key, value: e.value, revision: e.revision, created: e.created };
}

/** A JetStream API error (its err_code, status and description) as troupe's typed error. */
function apiError(what: string, apiCode: number | undefined, status: number | undefined, description: string, cause?: unknown): TroupeError {
  if (apiCode === WRONG_LAST_SEQUENCE || apiCode === WRONG_LAST_SEQUENCE_UNKNOWN) {
    return new ConflictError(`${what}: the object changed since it was read (revision mismatch)`, { apiCode }, { cause });
  }
  if (status === 503) return new UnavailableError(`${what}: JetStream is not available`, {}, { cause });
  return new UnavailableError(`${what}: ${description}`, { apiCode }, { cause });
}

/** Maps NATS/JetStream errors to troupe's typed errors. */
export function kvError(err: unknown, what: string): TroupeError {
  if (err instanceof JetStreamApiError) return apiError(what, err.code, err.status, err.message, err);
  if (err instanceof natsErrors.TimeoutError) return new TimeoutError(`${what}: timed out`, {}, { cause: err });
  if (err instanceof natsErrors.NoRespondersError || (err instanceof natsErrors.RequestError && err.isNoResponders())) {
    return new UnavailableError(`${what}: JetStream is not available (no responders)`, {}, { cause: err });
  }
  if (err instanceof natsErrors.ClosedConnectionError || err instanceof natsErrors.RequestError || err instanceof JetStreamError) {
    return new UnavailableError(`${what}: ${(err as Error).message}`, {}, { cause: err });
  }
  if (err instanceof Error && /wrong last sequence/i.test(err.message)) {
    return new ConflictError(`${what}: the object changed since it was read (revision mismatch)`, {}, { cause: err });
  }
  return toTroupeError(err);
}

/** How long a write waits for JetStream's answer (nats.js's JetStream default). */
const WRITE_TIMEOUT_MS = 5000;
const VALID_KEY = /^[-/=.\w]+$/;
const utf8 = new TextDecoder();

/** A key whose subject needs no checking by nats.js: its characters, and no empty token. */
function plainKey(k: string): boolean {
  return VALID_KEY.test(k) && !k.startsWith('.') && !k.endsWith('.') && !k.includes('..');
}

/** nats.js's KV internals the fast write path uses (see KvStore.write). */
interface KvInternals {
  encodeKey(key: string): string;
  subjectForKey(key: string, edit?: boolean): string;
}

export class KvStore {
  /** Writes go as one HPUB frame through the bus's own requests (see write), when the KV allows. */
  private readonly fast: KvInternals | undefined;

  /**
   * The subjects' common head (`$KV.<bucket>.`) when nats.js leaves keys as they are (no key
   * codec): a valid key's subject is then this and the key, without nats.js's per-key split,
   * encode and join (a percent of a busy control plane's CPU).
   */
  private readonly plainHead: string | undefined;

  private constructor(
    readonly bucket: string,
    private readonly kv: KV,
    private readonly js: JetStreamClient,
    private readonly bus?: Bus,
  ) {
    const k = kv as unknown as Partial<KvInternals>;
    this.fast = bus && typeof k.encodeKey === 'function' && typeof k.subjectForKey === 'function' ? (k as KvInternals) : undefined;
    const sample = 'a-b/c=d_e.F9';
    const sampleSubject = this.fast && this.fast.encodeKey(sample) === sample ? this.fast.subjectForKey(sample, true) : undefined;
    this.plainHead = sampleSubject?.endsWith(`.${sample}`) ? sampleSubject.slice(0, -sample.length) : undefined;
  }

  /**
   * A write: the value published to the key's subject with the expected revision as a header
   * (none: unconditional), JetStream's answer read for the new revision. nats.js's put builds, per
   * write, a headers object, a JetStream publish with its options and retry loop and a request
   * object (a tenth of a busy control plane's CPU, most of a write's cost on our side); this is a
   * frame and a map entry. A key nats.js would refuse, or a connection that cannot take frames
   * straight now, goes through nats.js's put, with its own errors.
   */
  private async write(key: string, value: Uint8Array, what: string, expected?: number): Promise<number> {
    const fast = this.fastKey(key);
    if (fast === undefined) {
      try {
        return await this.kv.put(key, value, expected === undefined ? undefined : { previousSeq: expected });
      } catch (err) {
        throw kvError(err, what);
      }
    }
    return this.send(fast, value, what, expected === undefined ? undefined : { 'Nats-Expected-Last-Subject-Sequence': String(expected) });
  }

  /** The key's subject for a write straight to JetStream, or undefined when nats.js must do it. */
  private fastKey(key: string): string | undefined {
    // keys left as they are: the encoded key is the key, and its subject the head and the key
    if (this.plainHead !== undefined) return plainKey(key) ? this.plainHead + key : undefined;
    const ek = this.fast?.encodeKey(key);
    return ek && plainKey(ek) ? this.fast!.subjectForKey(ek, true) : undefined;
  }

  /** Publishes to a key's subject through the bus's requests; resolves with the new revision. */
  private async send(subject: string, value: Uint8Array, what: string, headers?: Record<string, string>): Promise<number> {
    let answer: Uint8Array;
    try {
      answer = await this.bus!.requestRaw(subject, value, { timeout: WRITE_TIMEOUT_MS, ...(headers ? { headers } : {}) });
    } catch (err) {
      if (err instanceof TimeoutError) throw new TimeoutError(`${what}: timed out`, {}, { cause: err });
      if (err instanceof UnavailableError && err.details.noResponders === true) throw new UnavailableError(`${what}: JetStream is not available (no responders)`, {}, { cause: err });
      throw err instanceof UnavailableError ? new UnavailableError(`${what}: ${err.message}`, {}, { cause: err }) : toTroupeError(err);
    }
    let ack: { stream?: string; seq?: number; error?: { code?: number; err_code?: number; description?: string } };
    try {
      ack = JSON.parse(utf8.decode(answer));
    } catch {
      throw new UnavailableError(`${what}: JetStream's answer is not JSON`, { size: answer.length });
    }
    if (ack.error) throw apiError(what, ack.error.err_code, ack.error.code, ack.error.description ?? 'JetStream refused the write');
    if (!ack.stream || typeof ack.seq !== 'number') throw new UnavailableError(`${what}: invalid ack response`);
    return ack.seq;
  }

  private jsm?: Promise<JetStreamManager>;

  /** Opens a bucket, creating it when missing. */
  static async open(bus: Bus, bucket: string, opts: KvOpenOptions = {}): Promise<KvStore> {
    try {
      const kvm = new Kvm(bus.nc);
      const kv = await kvm.create(bucket, {
        history: opts.history ?? 1,
        replicas: opts.replicas ?? 1,
        storage: opts.storage === 'memory' ? 'memory' : 'file',
        maxValueSize: opts.maxValueSize ?? bus.codec.maxPayload,
      } as never);
      return new KvStore(bucket, kv, jetstream(bus.nc), bus);
    } catch (err) {
      throw kvError(err, `open KV bucket ${bucket}`);
    }
  }

  async get(key: string): Promise<Entry | undefined> {
    try {
      const e = await this.kv.get(key);
      if (!e || e.operation !== 'PUT') return undefined;
      return toEntry(e);
    } catch (err) {
      throw kvError(err, `get ${key}`);
    }
  }

  /** Creates a key that must not exist yet; returns its revision. */
  async create(key: string, value: Uint8Array): Promise<number> {
    try {
      return await this.write(key, value, `create ${key}`, 0);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
    // the key has a revision: a value (it exists), or a delete marker, over which nats.js's
    // create writes (it reads the marker's revision first)
    try {
      return await this.kv.create(key, value);
    } catch (err) {
      const e = kvError(err, `create ${key}`);
      if (e instanceof ConflictError) throw new ConflictError(`create ${key}: it exists already`, { key }, { cause: err });
      throw e;
    }
  }

  /** Writes a key only if its current revision is `revision`; returns the new revision. */
  update(key: string, value: Uint8Array, revision: number): Promise<number> {
    return this.write(key, value, `update ${key}`, revision);
  }

  /** Writes a key unconditionally; returns the new revision. */
  put(key: string, value: Uint8Array): Promise<number> {
    return this.write(key, value, `put ${key}`);
  }

  /**
   * Deletes a key (a delete marker, as nats.js's delete), fenced by its revision when given.
   * Resolves with the deletion's revision, or undefined when nats.js made it (it does not say).
   */
  async delete(key: string, revision?: number): Promise<number | undefined> {
    const fast = this.fastKey(key);
    if (fast !== undefined) {
      return this.send(fast, new Uint8Array(0), `delete ${key}`, {
        'KV-Operation': 'DEL',
        ...(revision === undefined ? {} : { 'Nats-Expected-Last-Subject-Sequence': String(revision) }),
      });
    }
    try {
      await this.kv.delete(key, revision === undefined ? undefined : { previousSeq: revision });
      return undefined;
    } catch (err) {
      throw kvError(err, `delete ${key}`);
    }
  }

  /** Keys matching a filter (NATS wildcards: `pod.default.*`, `pod.>`). */
  async keys(filter = '>'): Promise<string[]> {
    try {
      const it = await this.kv.keys(filter);
      const out: string[] = [];
      for await (const k of it) out.push(k);
      return out;
    } catch (err) {
      throw kvError(err, `list keys ${filter}`);
    }
  }

  /** Every live entry matching a filter, read through one ordered consumer (last value per key). */
  async list(filter = '>'): Promise<Entry[]> {
    const out: Entry[] = [];
    try {
      const prefix = `$KV.${this.bucket}.`;
      const stream = `KV_${this.bucket}`;
      // Every message under the filter, oldest first: with one revision kept per key that is the
      // last value of each key. (Last-per-subject delivery could lose a key rewritten while the
      // consumer was being made: nats-server then counted its new value as pending but never
      // delivered it.)
      //
      // The read ends at a message with nothing pending after it: then it has seen the newest
      // value of every key. Under writes that never pause, nothing is ever "not pending", so the
      // read also ends at the newest message there was when it began (its fixed end), and then
      // asks the stream which keys exist and reads the last value of any it did not see (a key
      // rewritten while the read went on, whose earlier value went before the read got to it).
      // A pending count naming a value replaced meanwhile does not hold the read either: the
      // tail guard ends it at the newest message left.
      let atTail = false;
      let complete = false;
      let batch: ConsumerMessages | undefined;
      const tail = new StreamTail(this.js, stream, prefix + filter, () => {
        atTail = true;
        batch?.stop();
      });
      const [end, consumer] = await Promise.all([
        tail.fixEnd(),
        this.js.consumers.get(stream, { filter_subjects: prefix + filter, deliver_policy: DeliverPolicy.All }),
      ]);
      const seen = new Map<string, { revision: number; entry?: Entry }>();
      try {
        if (end === 0) return out;
        while (!atTail) {
          batch = await consumer.fetch({ max_messages: 2000, expires: 2000 });
          tail.arm();
          let got = 0;
          for await (const m of batch) {
            got++;
            const op = m.headers?.get('KV-Operation');
            const key = m.subject.slice(prefix.length);
            // a key written or deleted again while we read appears again: its last message wins
            if ((seen.get(key)?.revision ?? -1) < m.seq) {
              seen.set(key, op === 'DEL' || op === 'PURGE' ? { revision: m.seq } : { revision: m.seq, entry: { key, value: m.data, revision: m.seq, created: new Date(Math.floor(m.info.timestampNanos / 1e6)) } });
            }
            complete = m.info.pending === 0;
            if (tail.seen(m.seq) || complete) {
              atTail = true;
              break;
            }
          }
          if (got === 0) break;
        }
      } finally {
        tail.stop();
      }
      if (!complete) {
        this.jsm ??= this.js.jetstreamManager(false);
        const info = await (await this.jsm).streams.info(stream, { subjects_filter: prefix + filter });
        const missed = Object.keys(info.state.subjects ?? {})
          .map((subject) => subject.slice(prefix.length))
          .filter((key) => !seen.has(key));
        const entries = await Promise.all(missed.map((key) => this.get(key)));
        for (const e of entries) if (e) seen.set(e.key, { revision: e.revision, entry: e });
      }
      for (const v of seen.values()) if (v.entry) out.push(v.entry);
      return out;
    } catch (err) {
      throw kvError(err, `list ${filter}`);
    }
  }

  /**
   * Follows changes. Without `fromRevision` it first replays the latest value of each key, then
   * updates; with it, every change after that revision.
   */
  async watch(opts: { filter?: string; fromRevision?: number; signal?: AbortSignal } = {}): Promise<AsyncIterable<WatchEvent>> {
    let it: Awaited<ReturnType<KV['watch']>>;
    try {
      it = await this.kv.watch({
        key: opts.filter ?? '>',
        ...(opts.fromRevision !== undefined ? { resumeFromRevision: opts.fromRevision + 1, include: 'history' as never } : {}),
      });
    } catch (err) {
      throw kvError(err, `watch ${opts.filter ?? '>'}`);
    }
    opts.signal?.addEventListener('abort', () => it.stop(), { once: true });
    return (async function* () {
      for await (const e of it) {
        yield { key: e.key, op: e.operation, value: e.value, revision: e.revision } as WatchEvent;
      }
    })();
  }

  async status(): Promise<{ values: number; bytes: number }> {
    const st = await this.kv.status();
    return { values: st.values, bytes: st.size };
  }
}
