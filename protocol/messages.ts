/**
 * The message-type registry: each envelope type names the schema its body must satisfy.
 * The codec refuses a type it does not know; every body is validated before anyone sees it.
 */
import { s, type Schema, type Infer } from './schema.js';

export const MessageType = {
  /** A command to a resource actor: the body is the xstate event. */
  Command: 'cmd',
  /** A successful answer to a request. */
  Reply: 'reply',
  /** A typed error answer: `{ code, message, details }`. */
  Error: 'error',
  /** A transition an actor went through, published on its event subject. */
  Event: 'evt',
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

const MAX_EVENT_TYPE = 128;

export const commandBody = s.object({ type: s.string({ min: 1, max: MAX_EVENT_TYPE }) }, { unknown: 'allow' });
export type CommandBody = Infer<typeof commandBody>;

export const errorBody = s.object({
  code: s.string({ min: 1, max: 64 }),
  message: s.string({ max: 65536 }),
  details: s.optional(s.record(s.any())),
});
export type ErrorBody = Infer<typeof errorBody>;

export const eventBody = s.object({
  kind: s.string({ min: 1, max: 63 }),
  namespace: s.string({ min: 1, max: 253 }),
  name: s.string({ min: 1, max: 253 }),
  /** Per-actor sequence number of the transition, rising by one. */
  seq: s.int({ min: 0 }),
  /** Type of the event that caused the transition. */
  cause: s.string({ max: MAX_EVENT_TYPE }),
  /** The machine's state value after the transition. */
  value: s.any(),
  /** The actor's status: active, done, error or stopped. */
  status: s.string({ max: 16 }),
  /** What the actor kind chooses to publish of its context. */
  data: s.any(),
});
export type EventBody = Infer<typeof eventBody>;

export class MessageTypes {
  private readonly schemas = new Map<string, Schema<unknown>>();

  constructor(init?: Iterable<[string, Schema<unknown>]>) {
    if (init) for (const [t, sch] of init) this.register(t, sch);
  }

  register(type: string, schema: Schema<unknown>): this {
    if (this.schemas.has(type)) throw new Error(`message type ${JSON.stringify(type)} is registered twice`);
    this.schemas.set(type, schema);
    return this;
  }

  get(type: string): Schema<unknown> | undefined {
    return this.schemas.get(type);
  }

  has(type: string): boolean {
    return this.schemas.has(type);
  }

  types(): string[] {
    return [...this.schemas.keys()];
  }

  /** A copy holding the same types, to extend without touching this one. */
  clone(): MessageTypes {
    return new MessageTypes(this.schemas);
  }
}

/** The built-in types every troupe process understands. */
export function builtinMessageTypes(): MessageTypes {
  return new MessageTypes([
    [MessageType.Command, commandBody],
    [MessageType.Reply, s.any()],
    [MessageType.Error, errorBody],
    [MessageType.Event, eventBody],
  ]);
}
