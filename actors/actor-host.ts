/**
 * The actor host: xstate machines as addressable actors on the bus.
 *
 * All actors of one kind sit behind one wildcard subscription (`troupe.<c>.cmd.<kind>.*.*`); an
 * actor is started on its first message, from its persisted snapshot if it has one, and routed by
 * key. Each actor has a serial mailbox: xstate transitions are synchronous, so commands are applied
 * in arrival order; while an actor is (re)starting, its commands wait in the mailbox.
 *
 * Request → transition → event → reply. Every snapshot change publishes one event on the actor's
 * event subject. Snapshots are written to KV coalesced (one write in flight per actor, carrying all
 * changes since the last); with durable persistence a command that changed state is answered only
 * after the write that holds it succeeded (group commit), so anything acknowledged survives a crash.
 * Writes use the expected revision: a host that lost an actor to another host finds out and lets go.
 *
 * The actors are children of a dynamic supervisor: an actor whose machine throws is restarted from
 * its last persisted snapshot; too many failures and the host itself fails, for its parent to decide.
 */
import type { Msg, Subscription } from '@nats-io/transport-node';
import type { Actor, AnyStateMachine, Snapshot } from 'xstate';
import {
  ConflictError,
  MessageType,
  PROTOCOL_VERSION,
  TimeoutError,
  UnavailableError,
  ValidationError,
  formatIssues,
  packValue,
  toTroupeError,
  unpackValue,
  type CommandBody,
  type Envelope,
  type EventBody,
  type Issue,
  type Subjects,
  type TroupeError,
} from '../protocol/index.js';
import { Supervisor, backoff, sleep, systemClock, type Clock, type ExitReason, type Logger } from '../supervisor/index.js';
import { actorChild } from './actor-child.js';
import { Persist, type ActorKey, type ActorKind } from './actor-kind.js';
import type { Bus } from './bus.js';
import { ActorDoneError, ActorFailedError, PersistError } from './errors.js';
import { KvStore } from './kv-store.js';

export interface ActorHostOptions {
  kinds: ActorKind<AnyStateMachine, unknown>[];
  /** Where snapshots go (default: the cluster's state bucket). */
  store?: KvStore;
  logger?: Logger;
  clock?: Clock;
  /** Hosts the kinds below a subject scope (e.g. `node.n1` for a node agent's actors). */
  scope?: string;
  /**
   * Passivation: an actor that took no command for this long (ms) is stopped and dropped from
   * memory; its snapshot is in KV, and its next command starts it again from there. Only for
   * persisted kinds. Default: never.
   */
  idleMs?: number;
  /**
   * At most this many actors of persisted kinds stay in memory: past it, the ones longest without
   * a command (and at least a second idle, with nothing unwritten) are passivated, oldest first,
   * down to nine tenths of it. A burst (a control plane creating thousands of pods a second)
   * otherwise keeps every actor of the last idleMs in memory. Default: no cap.
   */
  maxResident?: number;
  /** A NATS queue group for the kind subscriptions (only with partitioned ownership). */
  queue?: string;
  /** How long a snapshot write may keep retrying before the commands waiting on it fail (ms). */
  persistTimeout?: number;
  /**
   * Asked before every store write: a reason this host must not write now (the control plane:
   * its lease is not known to be held), or undefined. A refused write is retried like one the
   * store did not take, until it may go or persistTimeout has passed.
   */
  fence?: () => string | undefined;
  /** With `persist: 'async'`, how long changes gather before one snapshot write (ms). */
  asyncPersistDelay?: number;
  /** Actor restarts allowed per period before the host gives up. */
  intensity?: number;
  period?: number;
  /**
   * Says that an actor about to start for `command` has no stored snapshot (the control plane
   * asks its informers). Such an actor of a durable kind starts without reading the store, and
   * its first write creates the entry; its events wait for that write. Should an entry be there
   * after all, the actor is dropped unheard and its commands go again to one loaded from it.
   */
  fresh?: (kind: string, key: ActorKey, command: CommandBody) => boolean;
}

/** A snapshot write or deletion that landed (see ActorHost.onStored). */
export interface StoredWrite {
  kind: string;
  namespace: string;
  name: string;
  /** The store key written. */
  key: string;
  /** Its new revision (of a deletion: the deletion's). */
  revision: number;
  /** What was written; undefined when the entry was deleted. */
  stored: StoredActor | undefined;
  /** Its bytes as the store has them (packValue of `stored`): told to onCreating followers. */
  bytes?: Uint8Array;
  /** True when this write made the entry (told to onStored followers; see onCreating). */
  created?: boolean;
}

/** What is stored per actor in KV. */
export interface StoredActor {
  /** The host instance that wrote it. */
  owner: string;
  /** Sequence of the last event published. */
  seq: number;
  snapshot: Snapshot<unknown>;
}

/**
 * A command's caller in this process (see deliver): answered by settling its promise, with the
 * same bodies and errors a caller on the bus would get (not copies: neither side changes them).
 */
class LocalCall {
  /** Always set: a local caller always waits for its answer. */
  readonly reply = 'local';
  constructor(
    readonly subject: string,
    readonly resolve: (body: unknown) => void,
    readonly reject: (err: TroupeError) => void,
  ) {}
}

/** Where a command came from and its answer goes: a request on the bus, or a local caller. */
type Origin = Msg | LocalCall;

interface Waiter {
  msg: Origin;
  cid: string;
  body: unknown;
}

interface Cell {
  /** The command subject it is routed by (its key in the host's map). */
  subject: string;
  kind: ActorKind<AnyStateMachine, unknown>;
  namespace: string;
  name: string;
  storeKey: string;
  evtSubject: string;
  actor: Actor<AnyStateMachine> | undefined;
  /** Commands waiting while the actor (re)starts. */
  mailbox: { env: Envelope<CommandBody>; msg: Origin }[];
  starting: boolean;
  last: unknown;
  seq: number;
  cause: string;
  revision: number;
  dirty: boolean;
  writing: boolean;
  scheduled: boolean;
  waiters: Waiter[];
  /** When it last took a command (clock ms), for passivation. */
  active: number;
  /**
   * Started without reading the store (the `fresh` hint) and not yet written: its events are
   * held, and the commands it took kept, until its first write (a create) lands.
   */
  unwritten?: { events: EventBody[]; commands: { env: Envelope<CommandBody>; msg: Origin }[] };
}

/** A fresh actor's first write found an entry there (see ActorHostOptions.fresh). */
class NotFresh extends Error {}

export class ActorHost {
  readonly exited: Promise<ExitReason>;
  private readonly kinds = new Map<string, ActorKind<AnyStateMachine, unknown>>();
  private readonly cells = new Map<string, Cell>();
  private readonly subs: Subscription[] = [];
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly persistTimeout: number;
  private stopped = false;
  /** Reused issue list for the validation fast path (empty unless a check fails). */
  private readonly scratch: Issue[] = [];
  private readonly commands;
  private readonly subjects: Subjects;
  /** In-process followers of every transition (see onTransition). */
  private readonly followers = new Set<(e: EventBody) => void>();
  /** In-process followers of every snapshot write that landed (see onStored). */
  private readonly storedFollowers = new Set<(w: StoredWrite) => void>();
  private readonly creatingFollowers = new Set<(w: StoredWrite) => boolean | void>();

  private constructor(
    readonly bus: Bus,
    readonly store: KvStore,
    private readonly supervisor: Supervisor,
    private readonly opts: ActorHostOptions,
  ) {
    this.logger = (opts.logger ?? bus.logger).child({ component: 'actor-host' });
    this.clock = opts.clock ?? systemClock;
    this.persistTimeout = opts.persistTimeout ?? 10_000;
    for (const k of opts.kinds) {
      if (this.kinds.has(k.kind)) throw new Error(`actor kind ${k.kind} is hosted twice`);
      this.kinds.set(k.kind, k);
    }
    this.exited = supervisor.exited;
    this.commands = bus.metrics.counter('actor_commands_total');
    this.subjects = opts.scope ? bus.subjects.scoped(opts.scope) : bus.subjects;
  }

  static async start(bus: Bus, opts: ActorHostOptions): Promise<ActorHost> {
    const store = opts.store ?? (await KvStore.open(bus, bus.subjects.stateBucket));
    const supervisor = await Supervisor.start(
      { name: `actors/${bus.id}`, strategy: 'dynamic', intensity: opts.intensity ?? 100, period: opts.period ?? 1000 },
      { clock: opts.clock, logger: opts.logger ?? bus.logger },
    );
    const host = new ActorHost(bus, store, supervisor, opts);
    for (const kind of host.kinds.values()) {
      host.subs.push(
        bus.subscribe<CommandBody>(host.subjects.cmdAll(kind.kind), (env, msg) => host.onCommand(kind, env, msg), {
          accept: [MessageType.Command],
          queue: opts.queue,
        }),
      );
    }
    await bus.flush();
    if (opts.idleMs) host.schedulePassivation(opts.idleMs);
    return host;
  }

  private passivation?: { id: number };

  private schedulePassivation(idleMs: number): void {
    if (this.stopped) return;
    this.passivation = this.clock.setTimeout(() => {
      this.passivateIdle(idleMs);
      this.schedulePassivation(idleMs);
    }, Math.max(50, idleMs / 2));
  }

  /** Drops from memory the actors idle for idleMs whose state is all in KV. Returns how many. */
  passivateIdle(idleMs: number): number {
    const now = this.clock.now();
    let n = 0;
    for (const cell of [...this.cells.values()]) {
      if (now - cell.active < idleMs || !this.passivable(cell)) continue;
      this.evict(cell);
      n++;
    }
    if (n) this.bus.metrics.inc('actors_passivated_total', {}, n);
    return n;
  }

  private trimming = false;

  /** Passivates down to the cap (maxResident) once the commands of this turn are in. */
  private trimSoon(): void {
    if (this.trimming) return;
    this.trimming = true;
    setImmediate(() => {
      this.trimming = false;
      const max = this.opts.maxResident!;
      if (this.cells.size <= max) return;
      const now = this.clock.now();
      const target = Math.floor(max * 0.9);
      let n = 0;
      // the map keeps the order actors were started in: close to the order they went quiet
      for (const cell of this.cells.values()) {
        if (this.cells.size <= target) break;
        if (now - cell.active < MIN_IDLE_BEFORE_TRIM_MS || !this.passivable(cell)) continue;
        this.evict(cell);
        n++;
      }
      if (n) this.bus.metrics.inc('actors_passivated_total', {}, n);
    });
  }

  /** In memory, started, with nothing unwritten or waiting, and kept in the store. */
  private passivable(cell: Cell): boolean {
    if (!cell.actor || cell.starting || cell.unwritten) return false;
    if (cell.dirty || cell.writing || cell.scheduled || cell.waiters.length > 0 || cell.mailbox.length > 0) return false;
    return persistOf(cell.kind) !== Persist.None;
  }

  /** Actors currently in memory. */
  actorCount(): number {
    return this.cells.size;
  }

  /**
   * Calls `follower` with every transition's event, in this process, as it is published: what
   * lives beside the host (the node's pod sync beside its pod actors) learns of a change without
   * the round trip through the server. The body is the published one: not to be changed. Returns
   * the way to stop.
   */
  onTransition(follower: (e: EventBody) => void): () => void {
    this.followers.add(follower);
    return () => this.followers.delete(follower);
  }

  /**
   * Calls `follower` with every snapshot write of this host once the store has it, with its new
   * revision: what mirrors the store in this process (the control plane's informers) has it without
   * waiting for the store's watch to bring it back. The snapshot is the one written: not to be
   * changed. A deletion is told with `stored` undefined. Returns the way to stop.
   */
  onStored(follower: (w: StoredWrite) => void): () => void {
    this.storedFollowers.add(follower);
    return () => this.storedFollowers.delete(follower);
  }

  /**
   * Follows the creations of actors' entries in the store as they go out, before the store has
   * them (`revision` 0): what is told here may yet fail to be written (onStored says when it was).
   * For those who can start on what is coming, and check it against the store later (a node
   * preparing a pod bound to it: see PodSync.intent). A follower that returns true has published
   * what someone acts on at once: it goes out with the write, at once when such creations of
   * that kind are not a stream (see Bus.flushIfQuiet). Returns the way to stop.
   */
  onCreating(follower: (w: StoredWrite) => boolean | void): () => void {
    this.creatingFollowers.add(follower);
    return () => this.creatingFollowers.delete(follower);
  }

  /** Stops taking commands, lets pending snapshot writes finish, and stops every actor. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.passivation) this.clock.clearTimeout(this.passivation);
    for (const s of this.subs) s.unsubscribe();
    const deadline = this.clock.now() + this.persistTimeout;
    while ([...this.cells.values()].some((c) => c.writing || c.scheduled) && this.clock.now() < deadline) {
      await sleep(this.clock, 5);
    }
    await this.supervisor.stop();
  }

  private localSeq = 0;

  /**
   * Delivers a command to one of this host's actors from this process, without the bus: what a
   * controller beside its resource actors sends (a request and its answer over the server, both
   * encoded and decoded, cost it a fifth of its CPU). Same validation, mailbox, persistence and
   * answer as a command from the bus; resolves with the reply body, rejects with the TroupeError a
   * bus caller would get. `namespace` is the subject's namespace token.
   */
  deliver(kind: string, namespace: string, name: string, body: CommandBody, timeout = 15_000): Promise<unknown> {
    const k = this.kinds.get(kind);
    if (!k) return Promise.reject(new UnavailableError(`this host has no actor kind ${kind}`, { kind }));
    if (this.stopped) return Promise.reject(new UnavailableError(`the actor host is stopped`, { kind }));
    const subject = this.subjects.cmd(kind, namespace, name);
    return new Promise((resolve, reject) => {
      // as a bus caller's deadline: an actor that can never start again must not hold its callers
      const timer = setTimeout(() => reject(new TimeoutError(`no reply on ${subject} within ${timeout} ms`, { subject, timeout })), timeout);
      const settle =
        <T>(f: (v: T) => void) =>
        (v: T) => {
          clearTimeout(timer);
          f(v);
        };
      const env: Envelope<CommandBody> = { v: PROTOCOL_VERSION, t: MessageType.Command, id: `local-${(this.localSeq++).toString(36)}`, cid: null, from: this.bus.from, ts: Date.now(), body };
      this.onCommand(k, env, new LocalCall(subject, settle(resolve), settle(reject)));
    });
  }

  /** True when this host serves actors of `kind` (and takes commands). */
  serves(kind: string): boolean {
    return !this.stopped && this.kinds.has(kind);
  }

  /** Answers a command: on the bus, or by settling a local caller's promise. */
  private respond(to: Origin, body: unknown, cid: string): void {
    if (to instanceof LocalCall) to.resolve(body);
    else this.bus.respond(to, body, cid);
  }

  private respondError(to: Origin, err: unknown, cid: string): void {
    if (to instanceof LocalCall) to.reject(toTroupeError(err));
    else this.bus.respondError(to, err, cid);
  }

  /** A command refused before any actor saw it (counted and logged as the bus does). */
  private reject(to: Origin, err: unknown, cid: string): void {
    if (to instanceof LocalCall) to.reject(toTroupeError(err));
    else this.bus.reject(to, err, cid);
  }

  private onCommand(kind: ActorKind<AnyStateMachine, unknown>, env: Envelope<CommandBody>, msg: Origin, load = false): void {
    // Cells are found by the command subject itself: no key is rebuilt or re-validated per message.
    const subject = msg.subject;
    let cell = this.cells.get(subject);
    if (!cell) {
      const key = this.subjects.parseCmd(subject);
      if (!key) return this.reject(msg, new ValidationError(`subject ${subject} names no actor`), env.id);
      cell = {
        subject,
        kind,
        namespace: key.namespace,
        name: key.name,
        storeKey: this.subjects.stateKey(kind.kind, key.namespace, key.name),
        evtSubject: this.subjects.evt(kind.kind, key.namespace, key.name),
        actor: undefined,
        mailbox: [],
        starting: false,
        last: undefined,
        seq: 0,
        cause: 'xstate.init',
        revision: 0,
        dirty: false,
        writing: false,
        scheduled: false,
        waiters: [],
        active: this.clock.now(),
      };
      this.cells.set(subject, cell);
      if (this.opts.maxResident && this.cells.size > this.opts.maxResident) this.trimSoon();
      if (!load && persistOf(kind) === Persist.Durable && this.opts.fresh?.(kind.kind, key, env.body)) cell.unwritten = { events: [], commands: [] };
    }
    if (!kind.events.check(env.body, 'body', this.scratch)) {
      const issues = this.scratch.splice(0);
      return this.reject(msg, new ValidationError(formatIssues(`${kind.kind} ${cell.namespace}/${cell.name}`, issues), { issues }), env.id);
    }
    if (!cell.actor) {
      cell.mailbox.push({ env, msg });
      if (!cell.starting) void this.startActor(cell);
      return;
    }
    this.apply(cell, env, msg);
  }

  private async startActor(cell: Cell): Promise<void> {
    cell.starting = true;
    const id = `${cell.kind.kind}/${cell.namespace}/${cell.name}`;
    try {
      // The first snapshot is read before the supervisor takes the start: its operations run one
      // at a time, so a read inside it (a store round trip) made every actor start on this host
      // wait for the reads of all the starts before it. A restart reads again, from inside.
      let first: { snapshot: Snapshot<unknown> | undefined } | undefined = { snapshot: cell.unwritten ? this.nothingStored(cell) : await this.load(cell) };
      const key = { namespace: cell.namespace, name: cell.name };
      // a new actor of a kind that says its initial snapshot starts from it, and is still new
      let fresh = false;
      if (first.snapshot === undefined && cell.kind.initialSnapshot) {
        first.snapshot = cell.kind.initialSnapshot(key);
        fresh = true;
      }
      await this.supervisor.startChild(
        actorChild({
          id,
          machine: cell.kind.machine,
          input: cell.kind.input?.(key),
          restart: 'transient',
          load: () => {
            if (!first) {
              fresh = false;
              return this.load(cell);
            }
            const { snapshot } = first;
            first = undefined;
            return snapshot;
          },
          onStart: (actor, restored) => this.attach(cell, actor, restored && !fresh),
        }),
      );
    } catch (err) {
      cell.starting = false;
      this.forget(cell);
      const e = err instanceof Error ? err : new Error(String(err));
      for (const { env, msg } of cell.mailbox.splice(0)) {
        this.respondError(msg, new ActorFailedError(`${id} could not start: ${e.message}`, { actor: id }), env.id);
      }
    }
  }

  private nothingStored(cell: Cell): undefined {
    cell.revision = 0;
    cell.seq = 0;
    return undefined;
  }

  /** The actor's stored snapshot, if any. A kind that never persists has none: nothing is read. */
  private async load(cell: Cell): Promise<Snapshot<unknown> | undefined> {
    // (a store round trip saved on every start of such an actor: a millisecond of each pod start)
    const entry = persistOf(cell.kind) === Persist.None ? undefined : await this.store.get(cell.storeKey);
    if (!entry) return this.nothingStored(cell);
    const stored = unpackValue<StoredActor>(entry.value, `snapshot of ${cell.storeKey}`);
    cell.revision = entry.revision;
    cell.seq = stored.seq;
    return stored.snapshot;
  }

  /** Wires a (re)started actor to its cell: events on every transition, persistence, the mailbox. */
  private attach(cell: Cell, actor: Actor<AnyStateMachine>, restored: boolean): void {
    let started = false;
    actor.subscribe({
      next: (snapshot) => {
        if (!started || snapshot === cell.last) return;
        cell.last = snapshot;
        this.transitioned(cell, snapshot as Snapshot<unknown>);
      },
      error: (error) => {
        this.logger.warn({ actor: `${cell.kind.kind}/${cell.namespace}/${cell.name}`, err: error }, 'actor failed; restarting from its last snapshot');
        this.bus.metrics.inc('actor_failures_total', { kind: cell.kind.kind });
        if (cell.actor === actor) {
          cell.actor = undefined;
          cell.starting = true;
          // it restarts from the store (load): what it held is dropped with what it was
          cell.unwritten = undefined;
        }
      },
    });
    queueMicrotask(() => {
      // runs after actor.start() (see actorChild): only then is the actor live
      if ((actor.getSnapshot() as Snapshot<unknown>).status === 'error') return;
      started = true;
      cell.actor = actor;
      cell.starting = false;
      cell.last = actor.getSnapshot();
      if (!restored) {
        cell.cause = 'xstate.init';
        this.transitioned(cell, cell.last as Snapshot<unknown>);
      }
      for (const { env, msg } of cell.mailbox.splice(0)) {
        if (cell.actor !== actor) {
          cell.mailbox.push({ env, msg });
          continue;
        }
        this.apply(cell, env, msg);
      }
    });
  }

  private transitioned(cell: Cell, snapshot: Snapshot<unknown>): void {
    cell.seq++;
    const snap = snapshot as Snapshot<unknown> & { value?: unknown; context?: unknown };
    const body: EventBody = {
      kind: cell.kind.kind,
      namespace: cell.namespace,
      name: cell.name,
      seq: cell.seq,
      cause: cell.cause,
      value: snap.value ?? null,
      status: snap.status,
      data: cell.kind.publish ? cell.kind.publish(snapshot as never) : (snap.context ?? null),
    };
    if (cell.unwritten) cell.unwritten.events.push(body);
    else this.announce(cell, body);
    const persist = persistOf(cell.kind);
    if (snapshot.status !== 'error' && persist !== Persist.None) this.markDirty(cell);
    else if (snapshot.status === 'done' && cell.kind.deleteWhenDone) queueMicrotask(() => this.evict(cell));
  }

  private tellStored(cell: Cell, stored: StoredActor | undefined, revision = cell.revision, created = false): void {
    const w: StoredWrite = { kind: cell.kind.kind, namespace: cell.namespace, name: cell.name, key: cell.storeKey, revision, stored, created };
    for (const f of this.storedFollowers) {
      try {
        f(w);
      } catch (err) {
        this.logger.error({ err, actor: cell.storeKey }, 'a store follower failed');
      }
    }
  }

  /** Tells the creation followers; true when one published what is acted on at once. */
  private tellCreating(cell: Cell, stored: StoredActor, bytes: Uint8Array): boolean {
    const w: StoredWrite = { kind: cell.kind.kind, namespace: cell.namespace, name: cell.name, key: cell.storeKey, revision: 0, stored, bytes };
    let urgent = false;
    for (const f of this.creatingFollowers) {
      try {
        if (f(w) === true) urgent = true;
      } catch (err) {
        this.logger.error({ err, actor: cell.storeKey }, 'a creation follower failed');
      }
    }
    return urgent;
  }

  /** Publishes a transition's event and tells the followers in this process. */
  private announce(cell: Cell, body: EventBody): void {
    try {
      this.bus.publish(cell.evtSubject, MessageType.Event, body);
    } catch (err) {
      this.logger.warn({ err, actor: cell.storeKey }, 'event not published');
      this.bus.metrics.inc('events_unpublished_total', { kind: cell.kind.kind });
    }
    for (const f of this.followers) {
      try {
        f(body);
      } catch (err) {
        this.logger.error({ err, actor: cell.storeKey }, 'a transition follower failed');
      }
    }
  }

  private apply(cell: Cell, env: Envelope<CommandBody>, msg: Origin): void {
    const actor = cell.actor!;
    cell.active = this.clock.now();
    const before = actor.getSnapshot() as Snapshot<unknown>;
    if (before.status === 'done') {
      const id = describe(cell);
      return this.respondError(msg, new ActorDoneError(`${id} has finished (final state) and takes no more commands`, { actor: id }), env.id);
    }
    cell.cause = env.body.type;
    cell.unwritten?.commands.push({ env, msg });
    if (!this.changesNothing(cell.kind, before, env.body)) actor.send(env.body as never);
    this.commands.inc();
    const after = actor.getSnapshot() as Snapshot<unknown> & { error?: unknown; value?: unknown; context?: unknown };
    if (after.status === 'error') {
      const id = describe(cell);
      const message = after.error instanceof Error ? after.error.message : String(after.error);
      return this.respondError(
        msg,
        new ActorFailedError(`${id} failed on ${JSON.stringify(env.body.type)}: ${message}; it restarts from its last snapshot`, { actor: id, event: env.body.type }),
        env.id,
      );
    }
    if (!msg.reply) return;
    let body: unknown;
    try {
      body = cell.kind.reply ? cell.kind.reply(after as never, env.body as never) : { value: after.value, context: after.context };
    } catch (err) {
      return this.respondError(msg, err, env.id);
    }
    const durable = persistOf(cell.kind) === Persist.Durable;
    if (durable && (cell.dirty || cell.writing || cell.scheduled)) cell.waiters.push({ msg, cid: env.id, body });
    else this.respond(msg, body, env.id);
  }

  /** Per kind, the command types that were seen to change something: those are sent without asking. */
  private readonly changing = new Map<string, Set<string>>();

  /**
   * True when sending `event` would change nothing (see changesNothing). Asked only of command
   * types not yet seen to change something in this kind: a kind's queries keep their short way
   * and its updates (most of a control plane's commands) are not checked twice.
   */
  private changesNothing(kind: ActorKind<AnyStateMachine, unknown>, before: Snapshot<unknown>, event: CommandBody): boolean {
    let seen = this.changing.get(kind.kind);
    if (!seen) this.changing.set(kind.kind, (seen = new Set()));
    if (seen.has(event.type)) return false;
    if (changesNothing(kind.machine, before, event)) return true;
    seen.add(event.type);
    return false;
  }

  private markDirty(cell: Cell): void {
    cell.dirty = true;
    if (cell.writing || cell.scheduled) return;
    cell.scheduled = true;
    if (persistOf(cell.kind) === Persist.Async) {
      // nobody waits on an async write: let changes gather a little longer
      this.clock.setTimeout(() => void this.writeLoop(cell), this.opts.asyncPersistDelay ?? 20);
      return;
    }
    // Let every command of the same batch land first: one write carries them all.
    queueMicrotask(() => void this.writeLoop(cell));
  }

  private async writeLoop(cell: Cell): Promise<void> {
    cell.scheduled = false;
    if (cell.writing) return;
    cell.writing = true;
    try {
      while (cell.dirty || cell.waiters.length > 0) {
        const waiters = cell.waiters;
        cell.waiters = [];
        if (cell.dirty && cell.actor && cell.kind.deleteWhenDone && (cell.actor.getSnapshot() as Snapshot<unknown>).status === 'done') {
          cell.dirty = false;
          try {
            await this.remove(cell);
          } catch (err) {
            for (const w of waiters) this.respondError(w.msg, err, w.cid);
            this.evict(cell);
            continue;
          }
          for (const w of waiters) this.respond(w.msg, w.body, w.cid);
          this.evict(cell);
          continue;
        }
        if (cell.dirty && cell.actor) {
          cell.dirty = false;
          const stored: StoredActor = { owner: this.bus.id, seq: cell.seq, snapshot: persistedSnapshot(cell.kind, cell.actor) };
          try {
            const bytes = packValue(stored);
            const creating = cell.revision === 0;
            const told = creating && this.creatingFollowers.size > 0 && this.tellCreating(cell, stored, bytes);
            const written = this.persist(cell, bytes);
            // (queued by now) a write that a caller on the bus waits for, a node's status above all,
            // or a creation told ahead (what was told, then the write, in one): on its way at once
            // when that kind's such writes are not a stream (see Bus.flushIfQuiet)
            if (told) this.bus.flushIfQuiet(`told-create:${cell.kind.kind}`);
            else if (waiters.some((w) => !(w.msg instanceof LocalCall))) this.bus.flushIfQuiet(`awaited-write:${cell.kind.kind}`);
            await written;
            if (this.storedFollowers.size) this.tellStored(cell, stored, cell.revision, creating);
          } catch (err) {
            if (err instanceof NotFresh) {
              this.loadInstead(cell);
              return;
            }
            const e = err as TroupeError;
            for (const w of waiters) this.respondError(w.msg, e, w.cid);
            if (e instanceof ConflictError) this.evict(cell);
            continue;
          }
          const held = cell.unwritten;
          if (held) {
            // created: what it held goes out now, before the answers
            cell.unwritten = undefined;
            for (const body of held.events) this.announce(cell, body);
          }
        }
        for (const w of waiters) this.respond(w.msg, w.body, w.cid);
        if (cell.dirty && cell.waiters.length === 0 && persistOf(cell.kind) === Persist.Async) {
          // an async actor that changed again meanwhile waits again before its next write: one
          // write per delay at most, however fast the commands come (nobody waits on it)
          cell.scheduled = true;
          this.clock.setTimeout(() => void this.writeLoop(cell), this.opts.asyncPersistDelay ?? 20);
          break;
        }
      }
    } finally {
      cell.writing = false;
    }
  }

  /** One snapshot write, fenced by the expected revision, retried while the store is unavailable. */
  private async persist(cell: Cell, bytes: Uint8Array): Promise<void> {
    const deadline = this.clock.now() + this.persistTimeout;
    for (let attempt = 0; ; attempt++) {
      try {
        this.checkFence(cell);
        cell.revision = cell.revision === 0 ? await this.store.create(cell.storeKey, bytes) : await this.store.update(cell.storeKey, bytes, cell.revision);
        this.bus.metrics.inc('snapshot_writes_total');
        return;
      } catch (err) {
        // a fresh actor's first create finding an entry: it was not fresh
        if (err instanceof ConflictError && cell.unwritten && attempt === 0) throw new NotFresh();
        if (err instanceof ConflictError) {
          // Our own earlier write may have landed without our hearing back: then the entry is ours.
          const entry = await this.store.get(cell.storeKey).catch(() => undefined);
          const mine = entry && unpackValue<StoredActor>(entry.value).owner === this.bus.id;
          if (entry && mine && entry.revision !== cell.revision) {
            cell.revision = entry.revision;
            continue;
          }
          if (cell.unwritten) throw new NotFresh();
          this.bus.metrics.inc('snapshot_conflicts_total');
          throw new ConflictError(`${cell.storeKey}: another host wrote this actor; this host let it go`, { key: cell.storeKey }, { cause: err });
        }
        const retriable = err instanceof TimeoutError || err instanceof UnavailableError;
        if (!retriable || this.clock.now() >= deadline || this.stopped) {
          this.bus.metrics.inc('snapshot_write_failures_total');
          throw new PersistError(`${cell.storeKey}: snapshot not persisted: ${(err as Error).message}`, { key: cell.storeKey }, { cause: err });
        }
        await sleep(this.clock, backoff(attempt, 50, 1000));
      }
    }
  }

  /** Throws (retriable) while the host's fence says it must not write. */
  private checkFence(cell: Cell): void {
    const reason = this.opts.fence?.();
    if (reason === undefined) return;
    this.bus.metrics.inc('snapshot_writes_fenced_total');
    throw new UnavailableError(`${cell.storeKey}: not written: ${reason}`, { key: cell.storeKey });
  }

  /** Deletes a finished actor's snapshot, fenced by its revision, retried while the store is unavailable. */
  private async remove(cell: Cell): Promise<void> {
    if (cell.revision === 0) return;
    const deadline = this.clock.now() + this.persistTimeout;
    for (let attempt = 0; ; attempt++) {
      try {
        this.checkFence(cell);
        const revision = await this.store.delete(cell.storeKey, cell.revision);
        this.bus.metrics.inc('snapshot_deletes_total');
        if (revision !== undefined && this.storedFollowers.size) this.tellStored(cell, undefined, revision);
        return;
      } catch (err) {
        const retriable = err instanceof TimeoutError || err instanceof UnavailableError;
        if (!retriable || this.clock.now() >= deadline || this.stopped) throw new PersistError(`${cell.storeKey}: not deleted: ${(err as Error).message}`, { key: cell.storeKey }, { cause: err });
        await sleep(this.clock, backoff(attempt, 50, 1000));
      }
    }
  }

  /**
   * A fresh actor whose first write found an entry: it is dropped unheard (no event went out, no
   * answer), and its commands go, in order, to one loaded from the store.
   */
  private loadInstead(cell: Cell): void {
    const commands = cell.unwritten?.commands ?? [];
    cell.unwritten = undefined;
    cell.waiters = [];
    cell.dirty = false;
    this.bus.metrics.inc('actor_fresh_conflicts_total', { kind: cell.kind.kind });
    this.evict(cell);
    for (const { env, msg } of commands) this.onCommand(cell.kind, env, msg, true);
  }

  /** Drops an actor this host no longer owns; its next command loads it afresh. */
  private forget(cell: Cell): void {
    if (this.cells.get(cell.subject) === cell) this.cells.delete(cell.subject);
  }

  private evict(cell: Cell): void {
    this.forget(cell);
    const id = `${cell.kind.kind}/${cell.namespace}/${cell.name}`;
    cell.actor = undefined;
    void this.supervisor.terminateChild(id).catch(() => undefined);
  }
}

/**
 * The snapshot to persist, as xstate makes it; for a kind whose context is plain data
 * (plainContext), xstate makes it without the context, which is then put back as it is.
 */
export function persistedSnapshot(kind: ActorKind<AnyStateMachine, unknown>, actor: Actor<AnyStateMachine>): Snapshot<unknown> {
  if (!kind.plainContext) return actor.getPersistedSnapshot() as Snapshot<unknown>;
  const snapshot = actor.getSnapshot() as unknown as Record<string, unknown>;
  if (isEmpty(snapshot.children) && isEmpty(snapshot.historyValue)) {
    // what xstate's getPersistedSnapshot makes of a machine snapshot with no child actors and no
    // history (a test holds the two together), without its copying through rest objects (a third
    // of a resource write's own cost): every field but the live ones, the context as it is
    const out: Record<string, unknown> = {};
    for (const k in snapshot) if (Object.hasOwn(snapshot, k) && !LIVE_SNAPSHOT_FIELDS.has(k)) out[k] = snapshot[k];
    out.context = snapshot.context;
    out.children = {};
    out.historyValue = {};
    return out as unknown as Snapshot<unknown>;
  }
  const persisted = actor.logic.getPersistedSnapshot({ ...snapshot, context: {} } as never) as Snapshot<unknown> & { context?: unknown };
  persisted.context = snapshot.context;
  return persisted;
}

/** A machine snapshot's fields that xstate leaves out of a persisted one (or replaces: context, children). */
const LIVE_SNAPSHOT_FIELDS = new Set(['_nodes', 'tags', 'machine', 'children', 'context', 'can', 'hasTag', 'matches', 'getMeta', 'toJSON']);

function isEmpty(o: unknown): boolean {
  if (o === undefined || o === null) return true;
  if (typeof o !== 'object') return false;
  for (const k in o) if (Object.hasOwn(o, k)) return false;
  return true;
}

/** An actor is passivated to keep under maxResident only once it has been idle this long (ms). */
const MIN_IDLE_BEFORE_TRIM_MS = 1000;

const withoutEventless = new WeakMap<AnyStateMachine, boolean>();

/** True when no state of the machine, at any depth, has eventless (`always`) transitions. */
function eventlessFree(machine: AnyStateMachine): boolean {
  let known = withoutEventless.get(machine);
  if (known === undefined) {
    const walk = (node: { always?: unknown; states?: Record<string, unknown> } | undefined): boolean =>
      !node || (node.always === undefined && Object.values(node.states ?? {}).every((c) => walk(c as never)));
    known = walk(machine.config as never);
    withoutEventless.set(machine, known);
  }
  return known;
}

/**
 * True when sending `event` would change nothing: the machine has no eventless transitions (xstate
 * looks for those after every event) and, in the state it is in, the event selects no transition
 * with a target or actions (`snapshot.can`, which runs the guards as a send would). A query (`get`)
 * is then answered from the snapshot without xstate's step, which builds its sets and a new
 * snapshot to end where it began: 14 µs of the 47 µs a host spent on each query it answered.
 * When in doubt (a guard throws), the event is sent, and xstate handles what happens.
 */
function changesNothing(machine: AnyStateMachine, before: Snapshot<unknown>, event: CommandBody): boolean {
  if (before.status !== 'active' || !eventlessFree(machine)) return false;
  try {
    return !(before as unknown as { can(e: unknown): boolean }).can(event);
  } catch {
    return false;
  }
}

/** How a kind's snapshots are kept (durable unless it says otherwise). */
function persistOf(kind: ActorKind<AnyStateMachine, unknown>): Persist {
  return kind.persist ?? Persist.Durable;
}

function describe(cell: Cell): string {
  return `${cell.kind.kind} ${cell.namespace}/${cell.name}`;
}
