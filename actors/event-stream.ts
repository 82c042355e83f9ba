/**
 * The events stream: every actor event published on `troupe.<c>.evt.>` is also recorded by a
 * JetStream stream with bounded retention, so a watcher can replay and then follow.
 */
import { DeliverPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy } from '@nats-io/jetstream';
import type { Envelope } from '../protocol/index.js';
import type { Bus } from './bus.js';
import { readStream } from './stream-tail.js';
import { kvError } from './kv-store.js';

export interface EventStreamOptions {
  maxMsgs?: number;
  maxBytes?: number;
  maxAgeMs?: number;
  replicas?: number;
}

/** Creates (or updates the limits of) the cluster's events stream. */
export async function ensureEventStream(bus: Bus, opts: EventStreamOptions = {}): Promise<void> {
  const name = bus.subjects.eventStream;
  const config = {
    name,
    subjects: [`${bus.subjects.root}.evt.>`, `${bus.subjects.root}.node.*.evt.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_msgs: opts.maxMsgs ?? 100_000,
    max_bytes: opts.maxBytes ?? 256 * 1024 * 1024,
    max_age: (opts.maxAgeMs ?? 24 * 3600_000) * 1_000_000,
    num_replicas: opts.replicas ?? 1,
  };
  await ensureStream(bus, config, 'events stream');
}

/** Creates a JetStream stream, or updates its limits when it exists. */
export async function ensureStream(bus: Bus, config: { name: string } & Record<string, unknown>, what: string): Promise<void> {
  const jsm = await jetstreamManager(bus.nc);
  try {
    await jsm.streams.info(config.name);
    await jsm.streams.update(config.name, config as never);
  } catch (err) {
    if (err instanceof Error && /not found/i.test(err.message)) {
      try {
        await jsm.streams.add(config as never);
        return;
      } catch (e) {
        throw kvError(e, `create ${what} ${config.name}`);
      }
    }
    throw kvError(err, `${what} ${config.name}`);
  }
}

export interface RecordedEvent<B = unknown> {
  seq: number;
  subject: string;
  env: Envelope<B>;
}

export interface ReplayOptions {
  /** Subject filter (default: every event of the cluster). */
  filter?: string;
  /** Start at this stream sequence. */
  fromSeq?: number;
  /** Start at this time. */
  since?: Date;
  /** Keep following new events after the replay (until the signal aborts). */
  follow?: boolean;
  signal?: AbortSignal;
}

/** Replays recorded events (and optionally follows), decoded and validated. Undecodable records are skipped and counted. */
export async function* replayEvents<B = unknown>(bus: Bus, opts: ReplayOptions = {}): AsyncGenerator<RecordedEvent<B>> {
  const js = jetstream(bus.nc);
  const filter = opts.filter ?? `${bus.subjects.root}.evt.>`;
  const consumer = await js.consumers.get(bus.subjects.eventStream, {
    filter_subjects: filter,
    ...(opts.fromSeq !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.fromSeq }
      : opts.since
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.since.toISOString() }
        : { deliver_policy: DeliverPolicy.All }),
  });
  for await (const m of readStream(js, consumer, bus.subjects.eventStream, filter, opts)) {
    try {
      yield { seq: m.seq, subject: m.subject, env: bus.codec.decode<B>(m.data) };
    } catch {
      bus.metrics.inc('events_undecodable_total');
    }
  }
}
