/**
 * Garbage collection by ownerReferences, and namespace deletion: an object whose controlling
 * owner is gone is deleted (background propagation: deleting a Deployment removes its
 * ReplicaSets, then their pods); deleting a Namespace deletes everything in it.
 * Before deleting, the owner is looked up in the store itself, not only in a cache, so an owner
 * created a moment ago is never mistaken for a missing one.
 */
import type { KObject } from '../protocol/index.js';
import type { Logger } from '../supervisor/index.js';
import { objectKey, type Informer } from './informer.js';
import { controllerRef } from './pod-util.js';
import type { Resources } from './resources.js';
import { WorkQueue } from './work-queue.js';
import { kindOf } from './resource-machine.js';

export class GarbageCollector {
  readonly queue: WorkQueue;
  private readonly byKind: Map<string, Informer>;
  /** Owner uid → keys of the objects it controls, kept from the informers' events. */
  private readonly byOwner = new Map<string, Set<string>>();

  constructor(
    private readonly res: Resources,
    /** Informers of every kind, by Kind ("Pod"). */
    informers: Informer[],
    private readonly logger: Logger,
  ) {
    this.byKind = new Map(informers.map((i) => [i.info.kind, i]));
    this.queue = new WorkQueue((key) => this.collect(key), { concurrency: 8, onError: (key, err) => this.logger.warn({ err, object: key }, 'garbage collection failed; retrying') });
    for (const inf of informers) {
      inf.on((type, obj, old) => {
        this.index(type, obj, old);
        if (type === 'delete') {
          // its dependents may now be orphans
          for (const dep of this.byOwner.get(obj.metadata.uid!) ?? []) this.queue.add(dep);
          if (obj.kind === 'Namespace') for (const o of this.inNamespace(obj.metadata.name)) this.queue.add(this.key(o));
        } else if (type === 'update' && old && controllerRef(old)?.uid === controllerRef(obj)?.uid && (!obj.metadata.namespace || this.namespaceExists(obj.metadata.namespace))) {
          // the same owner as before, in a namespace that is there: checked when it came (or
          // when its owner changed), and checked again when its owner or namespace goes
          return;
        } else if (controllerRef(obj) || (obj.metadata.namespace && !this.namespaceExists(obj.metadata.namespace))) {
          this.queue.add(this.key(obj));
        }
      });
    }
  }

  start(): void {
    for (const inf of this.byKind.values()) for (const obj of inf.list()) if (controllerRef(obj) || obj.metadata.namespace) this.queue.add(this.key(obj));
    this.queue.resume();
  }

  private key(obj: KObject): string {
    return `${obj.kind}|${objectKey(obj)}`;
  }

  private index(type: 'add' | 'update' | 'delete', obj: KObject, old?: KObject): void {
    const key = this.key(obj);
    const before = old ? controllerRef(old)?.uid : undefined;
    const after = type === 'delete' ? undefined : controllerRef(obj)?.uid;
    const drop = type === 'delete' ? controllerRef(obj)?.uid : before;
    if (drop && drop !== after) {
      const set = this.byOwner.get(drop);
      set?.delete(key);
      if (set?.size === 0) this.byOwner.delete(drop);
    }
    if (after) {
      const set = this.byOwner.get(after) ?? new Set<string>();
      set.add(key);
      this.byOwner.set(after, set);
    }
  }

  private *inNamespace(ns: string): Iterable<KObject> {
    for (const inf of this.byKind.values()) if (inf.info.namespaced) for (const o of inf.list()) if (o.metadata.namespace === ns) yield o;
  }

  private namespaceExists(ns: string): boolean {
    return this.byKind.get('Namespace')?.get(undefined, ns) !== undefined;
  }

  private async collect(key: string): Promise<void> {
    const [kind, rest] = key.split('|') as [string, string];
    const [ns, name] = rest.split('/') as [string, string];
    const inf = this.byKind.get(kind);
    const obj = inf?.get(ns || undefined, name);
    if (!obj || !inf) return;
    let reason: string | undefined;
    const ref = controllerRef(obj);
    if (ref) {
      const ownerInf = this.byKind.get(ref.kind);
      const cached = ownerInf?.get(obj.metadata.namespace, ref.name);
      if (!cached || cached.metadata.uid !== ref.uid) {
        const stored = ownerInf ? await this.res.get(ownerInf.info, obj.metadata.namespace, ref.name) : undefined;
        if (!stored || stored.metadata.uid !== ref.uid) reason = `its owner ${ref.kind.toLowerCase()} ${ref.name} is gone`;
      }
    }
    if (!reason && inf.info.namespaced && obj.metadata.namespace && !this.namespaceExists(obj.metadata.namespace)) {
      const stored = await this.res.get(kindOf('namespace'), undefined, obj.metadata.namespace);
      if (!stored) reason = `its namespace ${obj.metadata.namespace} is gone`;
    }
    if (!reason) return;
    this.logger.debug({ object: key, reason }, 'garbage collecting');
    try {
      await this.res.send(inf.info, obj.metadata.namespace, name, { type: 'delete', uid: obj.metadata.uid });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'TRP_ERR_NOT_FOUND' || code === 'TRP_ERR_CONFLICT') return;
      throw err;
    }
  }
}
