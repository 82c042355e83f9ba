/**
 * Every NATS subject and JetStream name troupe uses is built here, and only here.
 *
 * Layout, so that a node's credentials can be limited to `troupe.<cluster>.node.<node>.>`:
 *   troupe.<cluster>.cmd.<kind>.<namespace>.<name>   request/reply to one resource actor
 *   troupe.<cluster>.evt.<kind>.<namespace>.<name>   events an actor publishes on each transition
 *   troupe.<cluster>.node.<node>.cmd | .hb           commands to a node agent, its heartbeats
 *   troupe.<cluster>.node.<node>.intent              pods on their way to the node (being written)
 *   troupe.<cluster>.node.<node>.proxy               the store revision its load balancer has applied
 *
 * Names may be DNS-1123 subdomains, which contain '.', NATS's token separator; a '.' inside one
 * token is written '_' (not a DNS character, so the mapping is reversible).
 */
import { SubjectError } from './errors.js';

const TOKEN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Encodes one name as a single subject/KV token. */
export function token(value: string, what = 'name'): string {
  if (typeof value !== 'string' || !TOKEN.test(value) || value.length > 253) {
    throw new SubjectError(`${what}: expected a DNS-1123 name usable as a subject token, got ${JSON.stringify(value)}`, { what, value });
  }
  return value.includes('.') ? value.replaceAll('.', '_') : value;
}

/** Decodes a token written by `token`. */
export function untoken(value: string): string {
  return value.includes('_') ? value.replaceAll('_', '.') : value;
}

const PARSE_CACHE_SIZE = 50_000;

export interface ResourceKey {
  kind: string;
  namespace: string;
  name: string;
}

export interface Subjects {
  readonly cluster: string;
  readonly root: string;
  cmd(kind: string, namespace: string, name: string): string;
  /** One wildcard for every actor of a kind: `troupe.<c>.cmd.<kind>.*.*`. */
  cmdAll(kind: string): string;
  /** Parses a command subject back into its key; undefined when it is not one. */
  parseCmd(subject: string): ResourceKey | undefined;
  evt(kind: string, namespace: string, name: string): string;
  /** Events filtered by kind/namespace/name; omitted parts are wildcards. */
  evtFilter(kind?: string, namespace?: string, name?: string): string;
  parseEvt(subject: string): ResourceKey | undefined;
  nodeCmd(node: string): string;
  /** Pods bound to a node as their resource actor writes them (see POD_INTENT_TYPE). */
  nodeIntent(node: string): string;
  nodeHb(node: string): string;
  /** Every node's heartbeats. */
  nodeHbAll(): string;
  /** A node's container resource usage, published periodically. */
  nodeStats(node: string): string;
  /** The store revision a node's Service load balancer has applied. */
  nodeProxy(node: string): string;
  nodeProxyAll(): string;
  /** Everything of one node: the scope to grant that node's credentials. */
  nodeScope(node: string): string;
  /** Kubernetes-style Events (reason, message, involvedObject) recorded in one namespace. */
  recordedEvent(namespace: string): string;
  /** Recorded Events of one namespace, or of all. */
  recordedEventFilter(namespace?: string): string;
  /** JetStream stream holding recorded Events. */
  readonly recordedEventStream: string;
  /** KV bucket holding actor snapshots and desired state. */
  readonly stateBucket: string;
  /** JetStream stream recording events. */
  readonly eventStream: string;
  /** KV key of one actor's snapshot. */
  stateKey(kind: string, namespace: string, name: string): string;
  /** KV key filter for every actor of a kind. */
  stateKeyFilter(kind: string, namespace?: string): string;
  /**
   * The same layout below a scope: `scoped('node.n1').cmd(…)` is `troupe.<c>.node.n1.cmd.…`,
   * and its state keys start with `node.n1.`: all of a node's actors sit under its nodeScope.
   */
  scoped(scope: string): Subjects;
  /** The scope of these subjects ('' at the cluster level). */
  readonly scope: string;
}

export function subjects(cluster: string, scope = ''): Subjects {
  const c = token(cluster, 'cluster');
  const scopeParts = scope ? scope.split('.').map((p) => token(p, 'scope')) : [];
  const root = ['troupe', c, ...scopeParts].join('.');
  const clusterRoot = `troupe.${c}`;
  const keyPrefix = scopeParts.length ? `${scopeParts.join('.')}.` : '';
  const cmdPrefix = `${root}.cmd.`;
  const evtPrefix = `${root}.evt.`;
  // Subjects repeat (one per actor): parsed keys are cached, boundedly.
  const cache = new Map<string, ResourceKey | undefined>();
  const parse = (prefix: string, subject: string): ResourceKey | undefined => {
    const hit = cache.get(subject);
    if (hit !== undefined || cache.has(subject)) return hit;
    let key: ResourceKey | undefined;
    if (subject.startsWith(prefix)) {
      const parts = subject.slice(prefix.length).split('.');
      if (parts.length === 3) key = Object.freeze({ kind: parts[0]!, namespace: untoken(parts[1]!), name: untoken(parts[2]!) });
    }
    if (cache.size >= PARSE_CACHE_SIZE) cache.clear();
    cache.set(subject, key);
    return key;
  };
  const key3 = (kind: string, namespace: string, name: string) =>
    `${token(kind, 'kind')}.${token(namespace, 'namespace')}.${token(name, 'name')}`;
  return {
    cluster,
    root,
    cmd: (kind, namespace, name) => cmdPrefix + key3(kind, namespace, name),
    cmdAll: (kind) => `${cmdPrefix}${token(kind, 'kind')}.*.*`,
    parseCmd: (subject) => parse(cmdPrefix, subject),
    evt: (kind, namespace, name) => evtPrefix + key3(kind, namespace, name),
    evtFilter: (kind, namespace, name) =>
      `${evtPrefix}${kind ? token(kind, 'kind') : '*'}.${namespace ? token(namespace, 'namespace') : '*'}.${name ? token(name, 'name') : '*'}`,
    parseEvt: (subject) => parse(evtPrefix, subject),
    nodeCmd: (node) => `${clusterRoot}.node.${token(node, 'node')}.cmd`,
    nodeIntent: (node) => `${clusterRoot}.node.${token(node, 'node')}.intent`,
    nodeHb: (node) => `${clusterRoot}.node.${token(node, 'node')}.hb`,
    nodeHbAll: () => `${clusterRoot}.node.*.hb`,
    nodeStats: (node) => `${clusterRoot}.node.${token(node, 'node')}.stats`,
    nodeProxy: (node) => `${clusterRoot}.node.${token(node, 'node')}.proxy`,
    nodeProxyAll: () => `${clusterRoot}.node.*.proxy`,
    nodeScope: (node) => `${clusterRoot}.node.${token(node, 'node')}.>`,
    recordedEvent: (namespace) => `${clusterRoot}.event.${token(namespace, 'namespace')}`,
    recordedEventFilter: (namespace) => `${clusterRoot}.event.${namespace ? token(namespace, 'namespace') : '*'}`,
    recordedEventStream: `troupe-${c.replaceAll('.', '_')}-recorded-events`,
    stateBucket: `troupe-${c.replaceAll('.', '_')}-state`,
    eventStream: `troupe-${c.replaceAll('.', '_')}-events`,
    stateKey: (kind, namespace, name) => keyPrefix + key3(kind, namespace, name),
    stateKeyFilter: (kind, namespace) => `${keyPrefix}${token(kind, 'kind')}.${namespace ? token(namespace, 'namespace') : '*'}.*`,
    scoped: (sc) => subjects(cluster, scope ? `${scope}.${sc}` : sc),
    scope,
  };
}
