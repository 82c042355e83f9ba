/**
 * What node agents publish: heartbeats (the control plane's node lifecycle reads them).
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
