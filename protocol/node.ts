/**
 * What node agents publish: heartbeats (the control plane's node lifecycle reads them). And what
 * the control plane tells a node ahead: the pods on their way to it.
 */
import { s } from './schema.js';

export const HEARTBEAT_TYPE = 'hb';

export const heartbeatBody = s.object({
  node: s.string({ min: 1, max: 253 }),
  seq: s.int({ min: 0 }),
  pods: s.int({ min: 0 }),
});

export const PROXY_SYNCED_TYPE = 'proxy-synced';

/** A node's Service load balancer has applied the store up to `revision`. */
export const proxySyncedBody = s.object({
  node: s.string({ min: 1, max: 253 }),
  revision: s.int({ min: 0 }),
});

export const POD_INTENT_TYPE = 'pod-intent';

/**
 * A pod bound to a node, as its resource actor writes it to the store: published on the node's
 * intent subject as the write goes out, before the store has it. `stored` is the entry's bytes as
 * written (the actor's packed snapshot: its writer does not pack the pod twice); the pod in it is
 * checked with podIntentPod once unpacked. The node prepares the pod and runs it once the store has
 * it (its uid): an intent alone never runs anything.
 */
export const podIntentBody = s.object({
  stored: s.bytes({ max: 8 * 1024 * 1024 }),
});

export const POD_STORED_TYPE = 'pod-stored';

/**
 * A pod told of ahead (POD_INTENT_TYPE) is in the store: its write was acknowledged, at
 * `revision`. Published on the same subject, after the intent, by the writer that has the
 * acknowledgement: the node lets the pod run at once instead of waiting for the store's watch to
 * bring it (a millisecond or so later on a busy node). The watch's copy still comes, and rules.
 */
export const podStoredBody = s.object({
  namespace: s.string({ min: 1, max: 63 }),
  name: s.string({ min: 1, max: 253 }),
  uid: s.string({ min: 1, max: 64 }),
  revision: s.int({ min: 1 }),
});

/**
 * The pod of an intent: what the node needs to know it by. The object is the one its writer
 * checked (normalize), the rest passes; its containers are checked as any pod's when its pod
 * actor gets them.
 */
export const podIntentPod = s.object(
  {
    apiVersion: s.literal('v1'),
    kind: s.literal('Pod'),
    metadata: s.object({ name: s.string({ min: 1, max: 253 }), namespace: s.string({ min: 1, max: 63 }), uid: s.string({ min: 1, max: 64 }) }, { unknown: 'allow' }),
    spec: s.object({ nodeName: s.string({ min: 1, max: 253 }), containers: s.array(s.any(), { min: 1, max: 64 }) }, { unknown: 'allow' }),
  },
  { unknown: 'allow' },
);
