/**
 * The resource actor kinds the control plane hosts: one per stored kind (pod, deployment,
 * replicaset, service, namespace, node), each the resource machine bound to its kind.
 */
import type { SnapshotFrom } from 'xstate';
import { KINDS, type KObject } from '../protocol/index.js';
import { defineKind, Persist } from './actor-kind.js';
import { decisionFor, resourceCommands, resourceMachine, type Admission, type ResourceCommand } from './resource-machine.js';

/**
 * What a resource actor's event carries (`data`): the object's identity and where it stands, not
 * the object. Whoever wants the object reads it where every reader does, from the store (a watch
 * gets each version with its resourceVersion); the event says that it changed and why (`cause`).
 * Publishing the whole object with every transition cost a tenth of a busy control plane.
 */
export interface ResourceSummary {
  uid?: string;
  generation?: number;
  /** status.phase, for kinds that have one (Pod, Namespace). */
  phase?: string;
  /** metadata.deletionTimestamp: being deleted (a pod terminating on its node). */
  deletionTimestamp?: string;
  /** spec.nodeName: the node a pod is bound to. */
  nodeName?: string;
}

export function summaryOf(obj: KObject | undefined): ResourceSummary | null {
  if (!obj) return null;
  const out: ResourceSummary = {};
  if (obj.metadata.uid !== undefined) out.uid = obj.metadata.uid;
  if (obj.metadata.generation !== undefined) out.generation = obj.metadata.generation;
  const phase = obj.status?.phase;
  if (typeof phase === 'string') out.phase = phase;
  if (obj.metadata.deletionTimestamp !== undefined) out.deletionTimestamp = obj.metadata.deletionTimestamp;
  const node = obj.spec?.nodeName;
  if (typeof node === 'string') out.nodeName = node;
  return out;
}

export interface ResourceReply {
  /** The object as the command left it; not for a `status` command (its reply is empty). */
  object?: KObject;
  /** True when the command removed the object. */
  deleted?: boolean;
}

function resourceKind(info: (typeof KINDS)[number], admit?: Admission) {
  const machine = resourceMachine(info, admit);
  return defineKind({
    kind: info.token,
    machine,
    events: resourceCommands as never,
    input: (key) => ({ namespace: key.namespace, name: key.name }),
    // what the machine starts in (a test holds the two together), for the one actor per object
    initialSnapshot: (key) => ({ status: 'active', output: undefined, error: undefined, value: 'live', historyValue: {}, context: { kind: info.token, namespace: key.namespace, name: key.name }, children: {} }) as never,
    reply: (snapshot: SnapshotFrom<typeof machine>, event: ResourceCommand): ResourceReply => {
      const d = decisionFor(event);
      if (d?.type === 'error') throw d.error;
      if (d?.type === 'remove') return { deleted: true };
      // who reports a status (a node agent, a controller) has no use for the object back: it is
      // in the store and on every watch (a pod's status report answered with the whole pod was a
      // kilobyte to encode, send and decode for nothing)
      if (event.type === 'status') return {};
      return { object: snapshot.context.object };
    },
    publish: (snapshot: SnapshotFrom<typeof machine>) => summaryOf(snapshot.context.object),
    persist: Persist.Durable,
    deleteWhenDone: true,
    // the object and the key: plain data
    plainContext: true,
  });
}

/** Every resource kind, as the control plane hosts them; `admission` by Kind ("Service"). */
export function resourceKinds(admission: Record<string, Admission> = {}) {
  return KINDS.map((k) => resourceKind(k, admission[k.kind]));
}
