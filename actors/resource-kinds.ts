/**
 * The resource actor kinds the control plane hosts: one per stored kind (pod, deployment,
 * replicaset, service, namespace, node), each the resource machine bound to its kind.
 */
import type { SnapshotFrom } from 'xstate';
import { KINDS, type KObject } from '../protocol/index.js';
import { defineKind, Persist } from './actor-kind.js';
import { decisionFor, resourceCommands, resourceMachine, type Admission, type ResourceCommand } from './resource-machine.js';

export interface ResourceReply {
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
    reply: (snapshot: SnapshotFrom<typeof machine>, event: ResourceCommand): ResourceReply => {
      const d = decisionFor(event);
      if (d?.type === 'error') throw d.error;
      if (d?.type === 'remove') return { deleted: true };
      return { object: snapshot.context.object };
    },
    publish: (snapshot: SnapshotFrom<typeof machine>) => snapshot.context.object ?? null,
    persist: Persist.Durable,
    deleteWhenDone: true,
  });
}

/** Every resource kind, as the control plane hosts them; `admission` by Kind ("Service"). */
export function resourceKinds(admission: Record<string, Admission> = {}) {
  return KINDS.map((k) => resourceKind(k, admission[k.kind]));
}
