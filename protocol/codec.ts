/**
 * The msgpack codec for envelopes.
 *
 * msgpackr's records mode with a shared structure table packs small and decodes fast, but only
 * while every process agrees on the table. So the table is fixed in code and frozen for a
 * protocol major version: the envelope and the hottest bodies. Any other shape is written as an
 * inline record definition inside the message itself, so it never depends on shared state.
 *
 * Decoding never throws anything but a TroupeError: size, msgpack, envelope shape, version,
 * type and body schema each have their own typed error.
 */
import { Packr } from 'msgpackr';
import { DecodeError, PayloadTooLargeError, TroupeError, UnknownTypeError, ValidationError } from './errors.js';
import { ENVELOPE_KEYS, ID_PREFIX, nextIdCounter, type Envelope } from './envelope.js';
import { builtinMessageTypes, MessageType, type EventBody, type MessageTypes } from './messages.js';
import { MsgpackWriter } from './msgpack-writer.js';
import { formatIssues, type Issue } from './schema.js';
import { checkVersion, PROTOCOL_VERSION } from './version.js';

/** NATS's own default max_payload. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * Shared structures, frozen for protocol major 1. Append-only is NOT safe (an older process would
 * misread a newer id): changing this table requires a new major version. A test pins it.
 */
export const SHARED_STRUCTURES: readonly (readonly string[])[] = Object.freeze([
  ENVELOPE_KEYS,
  ['code', 'message', 'details'],
  ['kind', 'namespace', 'name', 'seq', 'cause', 'value', 'status', 'data'],
]);

export interface CodecOptions {
  maxPayload?: number;
  types?: MessageTypes;
}

export interface EncodeOptions {
  from: string;
  cid?: string | null;
  id?: string;
  ts?: number;
}

/** First keys of the shared shapes: only objects that start like one are written as records. */
const RECORD_FIRST_KEYS = new Set(SHARED_STRUCTURES.map((s) => s[0]!));

function newPackr(): Packr {
  const structures = SHARED_STRUCTURES.map((s) => [...s]);
  return new Packr({
    structures,
    maxSharedStructures: structures.length,
    // A full shared table never changes: any save would be a bug.
    saveStructures: () => {
      throw new Error('msgpack shared structures are frozen');
    },
    // Other objects are plain maps: an inline record definition costs more than it saves for a
    // shape that appears once per message.
    useRecords: (o: unknown) => {
      for (const k in o as object) return RECORD_FIRST_KEYS.has(k);
      return false;
    },
    moreTypes: false,
    mapsAsObjects: true,
  });
}

export class Codec {
  readonly maxPayload: number;
  readonly types: MessageTypes;
  private readonly packr = newPackr();
  private readonly writer = new MsgpackWriter(this.packr, RECORD_FIRST_KEYS);

  constructor(opts: CodecOptions = {}) {
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.types = opts.types ?? builtinMessageTypes();
  }

  /**
   * Packs one message; refuses bodies past maxPayload. The envelope header (and an event body)
   * is written by hand, the rest by msgpackr: the bytes are the same records either way.
   */
  encode<B>(type: string, body: B, opts: EncodeOptions): Uint8Array {
    let bytes: Uint8Array;
    try {
      this.writeEnvelope(this.writer.reset(), type, body, opts);
      bytes = this.writer.done();
    } catch (err) {
      throw encodeError(type, err);
    }
    this.checkSize(bytes.length, type);
    return bytes;
  }

  /**
   * Packs one message straight into a NATS PUB frame, `<prefix><size>\r\n<message>\r\n`, where
   * prefix is `PUB <subject> ` (its bytes, or its text when that is ASCII: see FastPublisher).
   * Same bytes and limits as encode(); returns the frame and the message's size.
   */
  encodeFrame<B>(prefix: Uint8Array | string, type: string, body: B, opts: EncodeOptions): { frame: Uint8Array; size: number } {
    const w = this.writer;
    let size: number;
    try {
      this.writeEnvelope(w.beginFrame(prefix), type, body, opts);
      size = w.payloadSize();
    } catch (err) {
      w.reset();
      throw encodeError(type, err);
    }
    if (size > this.maxPayload) {
      w.reset();
      this.checkSize(size, type);
    }
    return { frame: w.frame(prefix), size };
  }

  private writeEnvelope(w: MsgpackWriter, type: string, body: unknown, opts: EncodeOptions): void {
    w.byte(RECORD_ENVELOPE).number(PROTOCOL_VERSION).string(type);
    if (opts.id) w.string(opts.id);
    else w.id(ID_PREFIX, nextIdCounter());
    if (opts.cid) w.string(opts.cid);
    else w.nil();
    w.string(opts.from).number(opts.ts ?? Date.now());
    if (type === MessageType.Event) writeEvent(w, body as EventBody);
    else w.value(body);
  }

  private checkSize(size: number, type: string): void {
    if (size > this.maxPayload) {
      throw new PayloadTooLargeError(`message of type ${JSON.stringify(type)} is ${size} bytes, over the ${this.maxPayload}-byte limit`, {
        size,
        limit: this.maxPayload,
        type,
      });
    }
  }

  /** Packs a prepared envelope (its keys in ENVELOPE_KEYS order) with msgpackr alone. */
  pack(env: Envelope): Uint8Array {
    let bytes: Uint8Array;
    try {
      bytes = this.packr.pack(env);
    } catch (err) {
      throw encodeError(env.t, err);
    }
    this.checkSize(bytes.length, env.t);
    return bytes;
  }

  /** Unpacks and validates one message: size, msgpack, envelope, version, type, body. */
  decode<B = unknown>(bytes: Uint8Array): Envelope<B> {
    if (bytes.length > this.maxPayload) {
      throw new PayloadTooLargeError(`message is ${bytes.length} bytes, over the ${this.maxPayload}-byte limit`, { size: bytes.length, limit: this.maxPayload });
    }
    if (bytes.length === 0) throw new DecodeError('message is empty', {});
    let raw: unknown;
    try {
      raw = this.packr.unpack(bytes);
    } catch (err) {
      throw new DecodeError(`message is not valid msgpack: ${err instanceof Error ? err.message : String(err)}`, { size: bytes.length });
    }
    const env = checkEnvelope(raw);
    checkVersion(env.v);
    const schema = this.types.get(env.t);
    if (!schema) {
      throw new UnknownTypeError(`unknown message type ${JSON.stringify(env.t)}`, { type: env.t, known: this.types.types() });
    }
    const issues: Issue[] = [];
    if (!schema.check(env.body, 'body', issues)) {
      throw new ValidationError(formatIssues(`message ${JSON.stringify(env.t)}`, issues), { type: env.t, issues });
    }
    return env as Envelope<B>;
  }
}

function encodeError(type: string, err: unknown): DecodeError {
  return new DecodeError(`message of type ${JSON.stringify(type)} cannot be encoded: ${(err as Error).message}`, { type }, { cause: err });
}

/** Record ids of the shared structures: msgpackr numbers them from 0x40 in table order. */
const RECORD_ENVELOPE = 0x40;
const RECORD_EVENT = 0x42;

function writeEvent(w: MsgpackWriter, b: EventBody): void {
  w.byte(RECORD_EVENT).string(b.kind).string(b.namespace).string(b.name).number(b.seq).string(b.cause).value(b.value).string(b.status).value(b.data);
}

function checkEnvelope(raw: unknown): Envelope {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new DecodeError(`message is not an envelope: expected an object, got ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}`, {});
  }
  const e = raw as Record<string, unknown>;
  const bad = (field: string, expected: string): never => {
    throw new DecodeError(`message envelope: ${field}: expected ${expected}`, { field });
  };
  if (typeof e.v !== 'number' || !Number.isInteger(e.v) || e.v < 0) bad('v', 'a protocol version number');
  if (typeof e.t !== 'string' || e.t.length === 0 || e.t.length > 64) bad('t', 'a message type');
  if (typeof e.id !== 'string' || e.id.length === 0 || e.id.length > 128) bad('id', 'a message id');
  if (e.cid !== null && (typeof e.cid !== 'string' || e.cid.length > 128)) bad('cid', 'a correlation id or null');
  if (typeof e.from !== 'string' || e.from.length > 256) bad('from', 'a sender');
  if (typeof e.ts !== 'number' || !Number.isFinite(e.ts)) bad('ts', 'a timestamp');
  if (!('body' in e)) bad('body', 'a body');
  for (const k in e) {
    if (!(ENVELOPE_KEYS as readonly string[]).includes(k)) bad(k, 'no such field (unknown envelope field)');
  }
  return e as unknown as Envelope;
}

export function isTroupeError(err: unknown): err is TroupeError {
  return err instanceof TroupeError;
}
