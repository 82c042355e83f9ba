/**
 * Reading and writing resources from any process: commands go to the resource actors (their
 * single writers); reads come straight from KV, where each object's entry revision is its
 * resourceVersion.
 */
import {
  CLUSTER_SCOPE,
  MessageType,
  NotFoundError,
  kindInfo,
  matchesSelector,
  unpackValue,
  type KObject,
  type KindInfo,
  type LabelSelector,
} from '../protocol/index.js';
import type { Bus, RequestOptions } from './bus.js';
import { KvStore, type Entry } from './kv-store.js';
import type { ResourceCommand } from './resource-machine.js';
import type { ResourceReply } from './resource-kinds.js';
import type { ActorHost, StoredActor } from './actor-host.js';
import { ActorDoneError } from './errors.js';

/** The object held in a resource actor's stored snapshot, with its resourceVersion. */
export function objectOf(entry: Entry): KObject | undefined {
  return storedObject(unpackValue<StoredActor>(entry.value), entry.revision);
}

/** The object in a stored snapshot, as it is there (no resourceVersion: see storedObject). */
export function objectInSnapshot(stored: StoredActor): KObject | undefined {
  return (stored.snapshot as { context?: { object?: KObject } }).context?.object;
}

/** The object in a stored snapshot, with its resourceVersion (the entry's revision). */
export function storedObject(stored: StoredActor, revision: number): KObject | undefined {
  const obj = objectInSnapshot(stored);
  if (!obj) return undefined;
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(revision) } };
}

export function nsToken(info: KindInfo, namespace?: string): string {
  return info.namespaced ? (namespace ?? 'default') : CLUSTER_SCOPE;
}

export class Resources {
  /**
   * The resource actors' host when it lives in this process (the control plane's): commands go
   * to it directly instead of over the bus (see ActorHost.deliver).
   */
  local?: ActorHost;

  private constructor(
    readonly bus: Bus,
    readonly kv: KvStore,
  ) {}

  static async open(bus: Bus): Promise<Resources> {
    return new Resources(bus, await KvStore.open(bus, bus.subjects.stateBucket));
  }

  /** Sends one command to a resource actor. */
  async send(info: KindInfo, namespace: string | undefined, name: string, cmd: ResourceCommand, opts: RequestOptions = {}): Promise<ResourceReply> {
    try {
      if (this.local?.serves(info.token)) return (await this.local.deliver(info.token, nsToken(info, namespace), name, cmd as never, opts.timeout ?? 15_000)) as ResourceReply;
      const env = await this.bus.request<ResourceReply>(this.bus.subjects.cmd(info.token, nsToken(info, namespace), name), MessageType.Command, cmd, { timeout: 15_000, ...opts });
      return env.body;
    } catch (err) {
      // an actor in its final state is an object just removed: for its callers, not found
      if (err instanceof ActorDoneError) throw new NotFoundError(`${info.kind.toLowerCase()} ${info.namespaced ? `${namespace ?? 'default'}/` : ''}${name} not found (just deleted)`, { kind: info.kind, name }, { cause: err });
      throw err;
    }
  }

  /** Applies a (validated) object; resolves with the stored object. */
  async apply(obj: KObject, opts: { create?: boolean } = {}): Promise<ResourceReply> {
    const info = kindInfo(obj.kind)!;
    return this.send(info, obj.metadata.namespace, obj.metadata.name, { type: 'apply', object: obj, ...(opts.create ? { create: true } : {}) });
  }

  async get(info: KindInfo, namespace: string | undefined, name: string): Promise<KObject | undefined> {
    const entry = await this.kv.get(this.bus.subjects.stateKey(info.token, nsToken(info, namespace), name));
    return entry ? objectOf(entry) : undefined;
  }

  /** Objects of a kind, in one namespace or all (namespace undefined with `all`), optionally by selector. */
  async list(info: KindInfo, opts: { namespace?: string; all?: boolean; selector?: LabelSelector } = {}): Promise<KObject[]> {
    const ns = !info.namespaced ? CLUSTER_SCOPE : opts.all ? undefined : (opts.namespace ?? 'default');
    const entries = await this.kv.list(this.bus.subjects.stateKeyFilter(info.token, ns));
    const out: KObject[] = [];
    for (const e of entries) {
      const obj = objectOf(e);
      if (!obj) continue;
      if (opts.selector && !matchesSelector(opts.selector, obj.metadata.labels)) continue;
      out.push(obj);
    }
    return out.sort((a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || a.metadata.name.localeCompare(b.metadata.name));
  }
}
