/**
 * An informer: a local, always-current copy of every object of one kind, kept by listing the
 * store and then following its changes from that revision (as client-go's list-watch). Handlers
 * hear each add, update and delete, in store order.
 */
import { untoken, type KObject, type KindInfo } from '../protocol/index.js';
import type { Bus } from './bus.js';
import type { KvStore } from './kv-store.js';
import { objectOf, nsToken } from './resources.js';
import type { Logger } from '../supervisor/index.js';

export type InformerHandler = (type: 'add' | 'update' | 'delete', obj: KObject, old?: KObject) => void;

function revisionOf(obj: KObject): number {
  return Number(obj.metadata.resourceVersion ?? 0);
}

export function objectKey(obj: KObject): string {
  return `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
}

export class Informer {
  /** `namespace/name` → object. */
  readonly objects = new Map<string, KObject>();
  private readonly handlers: InformerHandler[] = [];
  /** Ends the store's watch (unwatch, stop). */
  private readonly watching = new AbortController();
  private stopped = false;
  private done: Promise<void> = Promise.resolve();
  /** The highest store revision seen on the list and the watch. */
  revision = 0;
  /** The highest revision told (feed, feedDelete) or found again (resync). */
  private told = 0;
  /** Objects deleted as told while the watch runs: key → the deletion's revision. */
  private readonly tombstones = new Map<string, number>();
  /** True once the first list is loaded (start() resolved): from then on it follows the store. */
  synced = false;

  constructor(
    readonly bus: Bus,
    readonly kv: KvStore,
    readonly info: KindInfo,
    private readonly logger?: Logger,
    /** Only this namespace (namespaced kinds); default every one. */
    readonly namespace?: string,
  ) {}

  on(handler: InformerHandler): void {
    this.handlers.push(handler);
  }

  get(namespace: string | undefined, name: string): KObject | undefined {
    return this.objects.get(this.keyOf(namespace, name));
  }

  /** The `namespace/name` an object is held under (no namespace for cluster-scoped kinds). */
  private keyOf(namespace: string | undefined, name: string): string {
    return `${this.info.namespaced ? (namespace ?? 'default') : ''}/${name}`;
  }

  list(): IterableIterator<KObject> {
    return this.objects.values();
  }

  /** Lists, then follows. Resolves once the list is loaded. */
  async start(): Promise<void> {
    const filter = this.filter();
    for (const e of await this.kv.list(filter)) {
      this.revision = Math.max(this.revision, e.revision);
      const obj = objectOf(e);
      if (obj) this.upsert(obj);
    }
    const it = await this.kv.watch({ filter, fromRevision: this.revision, signal: this.watching.signal });
    this.synced = true;
    this.done = (async () => {
      try {
        for await (const ev of it) {
          if (ev.revision <= this.revision) continue;
          this.revision = ev.revision;
          const parts = ev.key.split('.');
          const key = `${this.info.namespaced ? untoken(parts[1]!) : ''}/${untoken(parts[2]!)}`;
          const dead = this.tombstones.get(key);
          if (dead !== undefined) {
            // deleted as told (feedDelete): what the watch has of it up to that deletion is past
            if (ev.revision >= dead) this.tombstones.delete(key);
            if (ev.revision <= dead) continue;
          }
          const have = this.objects.get(key);
          // already here, or something newer (told in-process, see feed): nothing to decode
          if (have && revisionOf(have) >= ev.revision) continue;
          if (ev.op !== 'PUT') {
            if (have) {
              this.objects.delete(key);
              this.emit('delete', have);
            }
            continue;
          }
          let obj: KObject | undefined;
          try {
            obj = objectOf({ key: ev.key, value: ev.value, revision: ev.revision, created: new Date() });
          } catch (err) {
            this.logger?.warn({ err, key: ev.key }, 'unreadable object in the store');
            continue;
          }
          if (obj) this.upsert(obj);
        }
      } catch (err) {
        if (!this.watching.signal.aborted) this.logger?.error({ err, kind: this.info.kind }, 'informer watch ended');
      }
    })();
  }

  private filter(): string {
    return this.bus.subjects.stateKeyFilter(this.info.token, this.info.namespaced ? this.namespace : nsToken(this.info));
  }

  /** True while the store's watch is followed (from start() until unwatch() or stop()). */
  get watchingStore(): boolean {
    return this.synced && !this.watching.signal.aborted;
  }

  /**
   * Stops following the store's watch: from now on the informer changes only by what it is told
   * (feed, feedDelete) and by resync(). For the process that makes every write of this kind (the
   * leading control plane), whose writes the watch would only bring back a second time.
   */
  async unwatch(): Promise<void> {
    this.watching.abort();
    await this.done;
    this.tombstones.clear();
  }

  /**
   * Lists the store again and takes what differs: newer objects, and the deletion of those held
   * that the store no longer has (unless told of them after the list began). What an informer
   * that no longer watches (unwatch) does now and then, in case a write reached the store that it
   * was not told of. Returns how many objects changed.
   */
  async resync(): Promise<number> {
    if (!this.synced || this.stopped) return 0;
    // an object held at a revision known before the list began was in the store then: it is in
    // the list unless it has been deleted
    const before = Math.max(this.revision, this.told);
    const listed = new Set<string>();
    let changed = 0;
    for (const e of await this.kv.list(this.filter())) {
      if (this.stopped) return changed;
      let obj: KObject | undefined;
      try {
        obj = objectOf(e);
      } catch (err) {
        this.logger?.warn({ err, key: e.key }, 'unreadable object in the store');
        continue;
      }
      if (!obj) continue;
      const key = objectKey(obj);
      listed.add(key);
      const have = this.objects.get(key);
      if (have && revisionOf(have) >= e.revision) continue;
      this.told = Math.max(this.told, e.revision);
      this.upsert(obj);
      changed++;
    }
    for (const [key, have] of [...this.objects]) {
      if (listed.has(key) || revisionOf(have) > before) continue;
      this.objects.delete(key);
      this.emit('delete', have);
      changed++;
    }
    return changed;
  }

  /**
   * An object written to the store by this process, with its resourceVersion, before the watch
   * brings it back (see ActorHost.onStored); the watch's own copy is then skipped. Handlers hear
   * it as they would from the watch; only what is newer than what is held is taken.
   */
  feed(obj: KObject): void {
    if (!this.synced || this.stopped) return;
    if (this.namespace !== undefined && this.info.namespaced && obj.metadata.namespace !== this.namespace) return;
    this.told = Math.max(this.told, revisionOf(obj));
    this.upsert(obj);
  }

  /**
   * An object this process deleted from the store (at `revision`), told before the watch brings
   * the deletion (or instead of it, once unwatched). Only what is older than the deletion goes.
   */
  feedDelete(namespace: string | undefined, name: string, revision: number): void {
    if (!this.synced || this.stopped) return;
    if (this.namespace !== undefined && this.info.namespaced && namespace !== this.namespace) return;
    this.told = Math.max(this.told, revision);
    const key = this.keyOf(namespace, name);
    const have = this.objects.get(key);
    if (!have || revisionOf(have) >= revision) return;
    // the watch may yet bring older versions of it: they are not taken for it coming back
    if (this.watchingStore) this.tombstones.set(key, revision);
    this.objects.delete(key);
    this.emit('delete', have);
  }

  private upsert(obj: KObject): void {
    const key = objectKey(obj);
    const old = this.objects.get(key);
    if (old && revisionOf(old) >= revisionOf(obj)) return;
    this.objects.set(key, obj);
    if (old && old.metadata.uid !== obj.metadata.uid) {
      // another object of the same name (deleted and made again, the deletion not yet seen on
      // the watch when it was fed): handlers hear the one go and the other come
      this.emit('delete', old);
      this.emit('add', obj);
      return;
    }
    this.emit(old ? 'update' : 'add', obj, old);
  }

  private emit(type: 'add' | 'update' | 'delete', obj: KObject, old?: KObject): void {
    for (const h of this.handlers) {
      try {
        h(type, obj, old);
      } catch (err) {
        this.logger?.error({ err }, 'informer handler failed');
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watching.abort();
    await this.done;
  }
}
