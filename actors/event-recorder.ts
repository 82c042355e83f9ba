/**
 * Kubernetes-style Events: what happened to an object, why, how often. Each is published on
 * `troupe.<c>.event.<namespace>` and kept by a JetStream stream with bounded retention, so
 * `troupe events` replays and then follows. Repeats of the same (object, reason, message) within
 * ten minutes are counted on one Event (count, firstTimestamp, lastTimestamp), as Kubernetes does.
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

const AGGREGATE_MS = 10 * 60_000;

export class EventRecorder {
  private readonly seen = new Map<string, { name: string; count: number; first: string; at: number }>();

  constructor(
    readonly bus: Bus,
    readonly component: string,
  ) {
    registerRecordedEvents(bus);
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

  /** Records one Event about an object. Never throws: an Event lost is logged, not fatal. */
  record(obj: Pick<KObject, 'kind' | 'metadata'>, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const namespace = obj.metadata.namespace ?? 'default';
    const key = `${obj.metadata.uid ?? obj.metadata.name}|${reason}|${message}`;
    const now = Date.now();
    const iso = this.isoAt(now);
    let agg = this.seen.get(key);
    if (!agg || now - agg.at > AGGREGATE_MS) {
      agg = { name: `${obj.metadata.name}.${this.nextSuffix()}`, count: 0, first: iso, at: now };
      if (this.seen.size > 10_000) this.seen.clear();
      this.seen.set(key, agg);
    }
    agg.count++;
    agg.at = now;
    const event = toEvent({
      name: agg.name,
      namespace,
      involved: { kind: obj.kind, name: obj.metadata.name, ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}), ...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}) },
      reason,
      message: message.slice(0, 4096),
      type,
      count: agg.count,
      first: agg.first,
      last: iso,
      component: this.component,
    });
    try {
      this.bus.publish(this.bus.subjects.recordedEvent(namespace), RECORDED_EVENT_TYPE, event);
    } catch (err) {
      this.bus.logger.warn({ err, reason }, 'event not recorded');
    }
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
