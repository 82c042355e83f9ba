/**
 * The typed client: sends commands to actors of one kind and follows their events, from any
 * process on the bus.
 */
import { MessageType, unpackValue, type EventBody, type Subjects } from '../protocol/index.js';
import type { ActorKind, CommandOf, ReplyOf } from './actor-kind.js';
import { AsyncQueue } from './async-queue.js';
import type { Bus, RequestOptions } from './bus.js';
import { replayEvents, type ReplayOptions } from './event-stream.js';
import type { StoredActor } from './actor-host.js';
import { KvStore } from './kv-store.js';

export interface WatchOptions {
  signal?: AbortSignal;
  /** Events kept for a slow reader before the oldest are dropped. */
  buffer?: number;
}

export class ActorClient<K extends ActorKind = ActorKind> {
  readonly kind: string;
  private readonly subjects: Subjects;

  constructor(
    readonly bus: Bus,
    kind: K | string,
    /** The scope the actors are hosted under (e.g. `node.n1`), if any. */
    scope?: string,
  ) {
    this.kind = typeof kind === 'string' ? kind : kind.kind;
    this.subjects = scope ? bus.subjects.scoped(scope) : bus.subjects;
  }

  /** Sends one command; resolves with the actor's reply, or throws its typed error. */
  async send(namespace: string, name: string, event: CommandOf<K>, opts: RequestOptions = {}): Promise<ReplyOf<K>> {
    const env = await this.bus.request<ReplyOf<K>>(this.subjects.cmd(this.kind, namespace, name), MessageType.Command, event, opts);
    return env.body;
  }

  /** Follows live events of one actor, or of all in a namespace, or of the whole kind. */
  watch(namespace?: string, name?: string, opts: WatchOptions = {}): AsyncIterable<EventBody> {
    const q = new AsyncQueue<EventBody>(opts.buffer ?? 10_000, () => sub.unsubscribe());
    const sub = this.bus.subscribe<EventBody>(this.subjects.evtFilter(this.kind, namespace, name), (env) => q.push(env.body), {
      accept: [MessageType.Event],
    });
    opts.signal?.addEventListener('abort', () => q.close(), { once: true });
    return q;
  }

  /** Waits until the subscription of a watch is registered with the server. */
  ready(): Promise<void> {
    return this.bus.flush();
  }

  /** Replays recorded events of this kind (optionally one actor), then optionally follows. */
  async *history(namespace?: string, name?: string, opts: Omit<ReplayOptions, 'filter'> = {}): AsyncGenerator<EventBody & { streamSeq: number }> {
    for await (const e of replayEvents<EventBody>(this.bus, { ...opts, filter: this.subjects.evtFilter(this.kind, namespace, name) })) {
      yield { ...e.env.body, streamSeq: e.seq };
    }
  }

  /** The actor's persisted state straight from KV (no actor is started), or undefined. */
  async stored(namespace: string, name: string, store?: KvStore): Promise<(StoredActor & { revision: number }) | undefined> {
    const kv = store ?? (await KvStore.open(this.bus, this.subjects.stateBucket));
    const entry = await kv.get(this.subjects.stateKey(this.kind, namespace, name));
    if (!entry) return undefined;
    return { ...unpackValue<StoredActor>(entry.value), revision: entry.revision };
  }
}
