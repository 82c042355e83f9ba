/**
 * Kubernetes-style Events: what happened to an object, why, how often. Each is published on
 * `troupe.<c>.event.<namespace>` and kept by a JetStream stream with bounded retention, so
 * `troupe events` replays and then follows.
 *
 * The recorder correlates as client-go's EventCorrelator does, with its defaults:
 * - repeats of the same (object, type, reason, message) within ten minutes are counted on one
 *   Event (count, firstTimestamp, lastTimestamp);
 * - once ten different messages of the same (object, type, reason) came within ten minutes, the
 *   next ones are counted on one Event whose message is the latest, prefixed "(combined from
 *   similar events): " (a ReplicaSet that creates 500 pods has nine "Created pod: …" Events and a
 *   combined one, not 500);
 * - each object may have 25 Events sent at once from this recorder, then one per five minutes
 *   (a token bucket per object, as client-go's spam filter): past that an Event is dropped, still
 *   counted where it would have gone (the next one sent carries the count), and
 *   `events_filtered_total` says how many.
 */
import { randomBytes } from 'node:crypto';
import { RetentionPolicy, StorageType, DiscardPolicy, DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { s, type KObject } from '../protocol/index.js';
import type { Bus } from './bus.js';
import { readStream } from './stream-tail.js';
import { ensureStream } from './event-stream.js';

export const RECORDED_EVENT_TYPE = 'kevent';

export const recordedEventSchema = s.object({
  apiVersion: s.literal('v1'),
  kind: s.literal('Event'),
  metadata: s.object({ name: s.string({ max: 300 }), namespace: s.string({ max: 63 }) }),
  involvedObject: s.object({ kind: s.string({ max: 64 }), name: s.string({ max: 253 }), namespace: s.optional(s.string({ max: 63 })), uid: s.optional(s.string({ max: 64 })) }),
  reason: s.string({ max: 128 }),
  message: s.string({ max: 4096 }),
  type: s.oneOf(['Normal', 'Warning'] as const),
  count: s.int({ min: 1 }),
  firstTimestamp: s.string({ max: 64 }),
  lastTimestamp: s.string({ max: 64 }),
  source: s.object({ component: s.string({ max: 64 }), host: s.optional(s.string({ max: 253 })) }),
});
export type RecordedEvent = ReturnType<typeof toEvent>;

function toEvent(e: {
  name: string;
  namespace: string;
  involved: { kind: string; name: string; namespace?: string; uid?: string };
  reason: string;
  message: string;
  type: 'Normal' | 'Warning';
  count: number;
  first: string;
  last: string;
  component: string;
}) {
  return {
    apiVersion: 'v1' as const,
    kind: 'Event' as const,
    metadata: { name: e.name, namespace: e.namespace },
    involvedObject: e.involved,
    reason: e.reason,
    message: e.message,
    type: e.type,
    count: e.count,
    firstTimestamp: e.first,
    lastTimestamp: e.last,
    source: { component: e.component },
  };
}

export function registerRecordedEvents(bus: Bus): void {
  if (!bus.codec.types.has(RECORDED_EVENT_TYPE)) bus.codec.types.register(RECORDED_EVENT_TYPE, recordedEventSchema);
}

/** Creates (or updates) the stream that keeps recorded Events. */
export async function ensureRecordedEventStream(bus: Bus, opts: { maxMsgs?: number; maxAgeMs?: number } = {}): Promise<void> {
  const name = bus.subjects.recordedEventStream;
  const config = {
    name,
    subjects: [bus.subjects.recordedEventFilter()],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_msgs: opts.maxMsgs ?? 50_000,
    max_age: (opts.maxAgeMs ?? 3600_000) * 1_000_000,
    num_replicas: 1,
  };
  await ensureStream(bus, config, 'recorded events stream');
}

/** client-go's defaults (tools/record/events_cache.go). */
const AGGREGATE_MS = 10 * 60_000;
const AGGREGATE_MAX_MESSAGES = 10;
const SPAM_BURST = 25;
const SPAM_REFILL_MS = 5 * 60_000;
/** Entries each of the recorder's caches keeps (least recently used dropped first). */
const CACHE_MAX = 4096;
const COMBINED_PREFIX = '(combined from similar events): ';

/** A Map that keeps its last `max` entries by use (get moves an entry to the end). */
class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}

  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, v: V): void {
    this.map.delete(key);
    this.map.set(key, v);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }
}

export interface EventRecorderOptions {
  /** The clock, in ms (tests). */
  now?: () => number;
  /** Events sent at once per object (25) and the time that gives one more (5 min). */
  spamBurst?: number;
  spamRefillMs?: number;
}

export class EventRecorder {
  /** Events sent, by (object, type, reason, message) or, once combined, by (object, type, reason). */
  private readonly observed = new Lru<{ name: string; count: number; first: string; at: number }>(CACHE_MAX);
  /** The different messages seen lately per (object, type, reason). */
  private readonly similar = new Lru<{ messages: Set<string>; at: number }>(CACHE_MAX);
  /** Each object's token bucket. */
  private readonly budget = new Lru<{ tokens: number; at: number }>(CACHE_MAX);
  private readonly now: () => number;
  private readonly burst: number;
  private readonly refillMs: number;

  constructor(
    readonly bus: Bus,
    readonly component: string,
    opts: EventRecorderOptions = {},
  ) {
    registerRecordedEvents(bus);
    this.now = opts.now ?? Date.now;
    this.burst = opts.spamBurst ?? SPAM_BURST;
    this.refillMs = opts.spamRefillMs ?? SPAM_REFILL_MS;
  }

  /** This recorder's random part of Event names, then a counter (a random read per Event was 1% of a busy controller). */
  private readonly prefix = randomBytes(4).toString('hex');
  private counter = 0;

  /** 16 hex characters unique to this recorder and Event: its prefix and a counter. */
  private nextSuffix(): string {
    return this.prefix + (this.counter++).toString(16).padStart(8, '0');
  }

  private isoMs = -1;
  private iso = '';

  /** The time as ISO 8601, made once per millisecond (a busy controller records several per ms). */
  private isoAt(ms: number): string {
    if (ms !== this.isoMs) {
      this.isoMs = ms;
      this.iso = new Date(ms).toISOString();
    }
    return this.iso;
  }

  /**
   * Records one Event about an object (correlated: see the top of this file). Never throws: an
   * Event lost is logged, not fatal.
   */
  record(obj: Pick<KObject, 'kind' | 'metadata'>, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const namespace = obj.metadata.namespace ?? 'default';
    const objectKey = obj.metadata.uid ?? `${obj.kind}/${namespace}/${obj.metadata.name}`;
    const now = this.now();
    const iso = this.isoAt(now);
    const text = message.slice(0, 4096);
    // similar Events: ten different messages lately, and the rest are combined on one Event
    const similarKey = `${objectKey}|${type}|${reason}`;
    let sim = this.similar.get(similarKey);
    if (!sim || now - sim.at > AGGREGATE_MS) {
      sim = { messages: new Set(), at: now };
      this.similar.set(similarKey, sim);
    }
    sim.at = now;
    sim.messages.add(text);
    let key = `${similarKey}|${text}`;
    let shown = text;
    if (sim.messages.size >= AGGREGATE_MAX_MESSAGES) {
      // (the set stays at its limit: one message out for the one that came in)
      sim.messages.delete(sim.messages.values().next().value!);
      key = similarKey;
      shown = (COMBINED_PREFIX + text).slice(0, 4096);
    }
    let seen = this.observed.get(key);
    if (!seen || now - seen.at > AGGREGATE_MS) {
      seen = { name: `${obj.metadata.name}.${this.nextSuffix()}`, count: 0, first: iso, at: now };
      this.observed.set(key, seen);
    }
    seen.count++;
    seen.at = now;
    if (!this.allowed(objectKey, now)) {
      this.bus.metrics.inc('events_filtered_total', { reason });
      return;
    }
    const event = toEvent({
      name: seen.name,
      namespace,
      involved: { kind: obj.kind, name: obj.metadata.name, ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}), ...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}) },
      reason,
      message: shown,
      type,
      count: seen.count,
      first: seen.first,
      last: iso,
      component: this.component,
    });
    try {
      this.bus.publish(this.bus.subjects.recordedEvent(namespace), RECORDED_EVENT_TYPE, event);
    } catch (err) {
      this.bus.logger.warn({ err, reason }, 'event not recorded');
    }
  }

  /** Takes a token from the object's bucket; false when it has none. */
  private allowed(objectKey: string, now: number): boolean {
    let b = this.budget.get(objectKey);
    if (!b) {
      b = { tokens: this.burst, at: now };
      this.budget.set(objectKey, b);
    } else if (b.tokens < this.burst) {
      const earned = Math.floor((now - b.at) / this.refillMs);
      if (earned > 0) {
        b.tokens = Math.min(this.burst, b.tokens + earned);
        b.at += earned * this.refillMs;
      }
    }
    if (b.tokens === 0) return false;
    if (b.tokens === this.burst) b.at = now;
    b.tokens--;
    return true;
  }
}

/** Recorded Events (latest version of each), oldest first; then, with `follow`, each new one. */
export async function* recordedEvents(bus: Bus, opts: { namespace?: string; follow?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<RecordedEvent> {
  registerRecordedEvents(bus);
  const js = jetstream(bus.nc);
  const filter = bus.subjects.recordedEventFilter(opts.namespace);
  const consumer = await js.consumers.get(bus.subjects.recordedEventStream, { filter_subjects: filter, deliver_policy: DeliverPolicy.All });
  for await (const m of readStream(js, consumer, bus.subjects.recordedEventStream, filter, opts)) {
    let ev: RecordedEvent | undefined;
    try {
      ev = bus.codec.decode<RecordedEvent>(m.data).body;
    } catch {
      ev = undefined;
    }
    if (ev) yield ev;
  }
}
