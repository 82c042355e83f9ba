/**
 * The one envelope every bus message travels in.
 */
import { randomBytes } from 'node:crypto';

export interface Envelope<B = unknown> {
  /** Protocol version, major * 1000 + minor. */
  v: number;
  /** Message type, a key of the message-type registry. */
  t: string;
  /** Unique message id. */
  id: string;
  /** Correlation id: the id of the message this one answers or follows from, else null. */
  cid: string | null;
  /** Sender: component and instance, e.g. "host/3f9a…". */
  from: string;
  /** Sender's clock, milliseconds since the epoch. */
  ts: number;
  body: B;
}

/** Key order of the envelope; fixed because the codec's shared structures depend on it. */
export const ENVELOPE_KEYS = ['v', 't', 'id', 'cid', 'from', 'ts', 'body'] as const;

const prefix = randomBytes(6).toString('hex');
let counter = 0;

/** A process-unique, cluster-unique-enough message id (random prefix + counter). */
export function newId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${prefix}${counter.toString(36)}`;
}

/** A random instance id for a process or component. */
export function newInstanceId(): string {
  return randomBytes(8).toString('hex');
}
