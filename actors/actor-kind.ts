/**
 * An actor kind: one xstate machine, the schema of the commands it accepts, and how its
 * snapshots are answered, published and persisted.
 */
import type { AnyStateMachine, EventFromLogic, InputFrom, Snapshot, SnapshotFrom } from 'xstate';
import { token, type Schema } from '../protocol/index.js';

export const Persist = {
  /** A command that changes state is answered only once its snapshot is in KV (group commit). */
  Durable: 'durable',
  /** Snapshots are written behind, coalesced; answers do not wait. */
  Async: 'async',
  /** Never persisted, nor read: the actor starts fresh, first and after every restart. */
  None: 'none',
} as const;
export type Persist = (typeof Persist)[keyof typeof Persist];

export interface ActorKey {
  namespace: string;
  name: string;
}

export interface ActorKind<M extends AnyStateMachine = AnyStateMachine, R = unknown> {
  /** Kind name: one subject token, e.g. "counter". */
  kind: string;
  machine: M;
  /** Every command is validated against this before the actor sees it (a union on `type`). */
  events: Schema<EventFromLogic<M>>;
  /** The answer to a command, from the snapshot after it. Default: `{ value, context }`. */
  reply?: (snapshot: SnapshotFrom<M>, event: EventFromLogic<M>) => R;
  /** What each published event carries of the snapshot (`data`). Default: the context. */
  publish?: (snapshot: SnapshotFrom<M>) => unknown;
  persist?: Persist;
  /**
   * When the actor reaches its final state its snapshot is deleted (fenced) and the actor is
   * forgotten: the next command to the same key starts a new one. Resources use this: a deleted
   * object is gone from the store, and the name can be used again.
   */
  deleteWhenDone?: boolean;
  /** Input of a new actor, from its key. */
  input?: (key: ActorKey) => InputFrom<M>;
  /**
   * The snapshot a new actor (nothing stored for it) starts from, in xstate's persisted form,
   * instead of the machine working out its initial state: for a kind started tens of thousands of
   * times (one actor per pod). Working it out allocated 14 KB and took 5 µs even for a two-state
   * machine; starting from a snapshot allocates half and takes half the time. It must be exactly
   * what the machine makes (`createActor(machine, { input }).start().getPersistedSnapshot()`); the
   * actor still counts as new (its first event says `xstate.init`).
   */
  initialSnapshot?: (key: ActorKey) => Snapshot<unknown>;
  /**
   * The context is plain data, with no actor references anywhere in it: its snapshot is persisted
   * with the context as it is, instead of xstate walking all of it for references to replace (for
   * a resource, every field of its object, on every write).
   */
  plainContext?: boolean;
}

/** The default reply shape. */
export interface SnapshotReply<C = unknown> {
  value: unknown;
  context: C;
}

export type ReplyOf<K> = K extends ActorKind<infer M, infer R> ? (unknown extends R ? SnapshotReply<SnapshotFrom<M> extends { context: infer C } ? C : unknown> : R) : unknown;
export type CommandOf<K> = K extends ActorKind<infer M, unknown> ? EventFromLogic<M> : never;

/** Declares a kind (checks its name; keeps its types). */
export function defineKind<M extends AnyStateMachine, R = unknown>(kind: ActorKind<M, R>): ActorKind<M, R> {
  token(kind.kind, 'kind');
  return kind;
}
