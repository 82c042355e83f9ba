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
  private readonly abort = new AbortController();
  private done: Promise<void> = Promise.resolve();
  /** The highest store revision seen. */
  revision = 0;
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
    return this.objects.get(`${this.info.namespaced ? (namespace ?? 'default') : ''}/${name}`);
  }

  list(): IterableIterator<KObject> {
    return this.objects.values();
  }

  /** Lists, then follows. Resolves once the list is loaded. */
  async start(): Promise<void> {
    const filter = this.bus.subjects.stateKeyFilter(this.info.token, this.info.namespaced ? this.namespace : nsToken(this.info));
    for (const e of await this.kv.list(filter)) {
      this.revision = Math.max(this.revision, e.revision);
      const obj = objectOf(e);
      if (obj) this.upsert(obj);
    }
    const it = await this.kv.watch({ filter, fromRevision: this.revision, signal: this.abort.signal });
    this.synced = true;
    this.done = (async () => {
      try {
        for await (const ev of it) {
          if (ev.revision <= this.revision) continue;
          this.revision = ev.revision;
          const parts = ev.key.split('.');
          const key = `${this.info.namespaced ? untoken(parts[1]!) : ''}/${untoken(parts[2]!)}`;
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
        if (!this.abort.signal.aborted) this.logger?.error({ err, kind: this.info.kind }, 'informer watch ended');
      }
    })();
  }

  /**
   * An object written to the store by this process, with its resourceVersion, before the watch
   * brings it back (see ActorHost.onStored); the watch's own copy is then skipped. Handlers hear
   * it as they would from the watch; only what is newer than what is held is taken.
   */
  feed(obj: KObject): void {
    if (!this.synced || this.abort.signal.aborted) return;
    if (this.namespace !== undefined && this.info.namespaced && obj.metadata.namespace !== this.namespace) return;
    this.upsert(obj);
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
    this.abort.abort();
    await this.done;
  }
}
