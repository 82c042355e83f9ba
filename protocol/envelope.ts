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

/** Message ids: a random per-process prefix (12 hex characters) and a rising counter in base 36. */
export const ID_PREFIX = randomBytes(6).toString('hex');
let counter = 0;

/** The next counter value, for writers that spell the id themselves (see MsgpackWriter.id). */
export function nextIdCounter(): number {
  counter = counter >= Number.MAX_SAFE_INTEGER ? 1 : counter + 1;
  return counter;
}

/** A process-unique, cluster-unique-enough message id (random prefix + counter). */
export function newId(): string {
  return `${ID_PREFIX}${nextIdCounter().toString(36)}`;
}

/** A random instance id for a process or component. */
export function newInstanceId(): string {
  return randomBytes(8).toString('hex');
}
