/**
 * Typed errors. Every error troupe raises on purpose is a TroupeError with a stable
 * `code`; on the wire it travels as `{ code, message, details }` and the receiving side
 * rebuilds the same class from the code (see `errorFromWire`).
 *
 * Codes are listed in protocol/ERRORS.md; a test pins the list.
 */

export type ErrorDetails = Record<string, unknown>;

export interface WireError {
  code: string;
  message: string;
  details?: ErrorDetails;
}

export class TroupeError extends Error {
  readonly code: string;
  readonly details: ErrorDetails;

  constructor(code: string, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.details = details;
    this.name = new.target.name;
  }

  toWire(): WireError {
    return { code: this.code, message: this.message, details: this.details };
  }
}

type ErrorClass = new (message: string, details?: ErrorDetails, options?: { cause?: unknown }) => TroupeError;

const registry = new Map<string, ErrorClass>();

/** Declares an error class bound to one stable code, and registers it for `errorFromWire`. */
export function defineError(code: string, name: string): ErrorClass & { readonly code: string } {
  if (registry.has(code)) throw new Error(`error code ${code} is defined twice`);
  const cls = class extends TroupeError {
    static readonly code = code;
    constructor(message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
      super(code, message, details, options);
      this.name = name;
    }
  };
  Object.defineProperty(cls, 'name', { value: name });
  registry.set(code, cls);
  return cls;
}

/** Every registered code, for documentation checks. */
export function registeredErrorCodes(): string[] {
  return [...registry.keys()].sort();
}

/** Rebuilds the typed error from its wire form; an unknown code becomes a plain TroupeError. */
export function errorFromWire(wire: WireError): TroupeError {
  const cls = registry.get(wire.code);
  const details = wire.details && typeof wire.details === 'object' ? wire.details : {};
  if (cls) return new cls(wire.message, details);
  return new TroupeError(wire.code, wire.message, details);
}

/** Wraps anything thrown into a TroupeError (unknown throws become TRP_ERR_INTERNAL). */
export function toTroupeError(err: unknown): TroupeError {
  if (err instanceof TroupeError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new InternalError(message, {}, { cause: err });
}

export const InternalError = defineError('TRP_ERR_INTERNAL', 'InternalError');
export type InternalError = InstanceType<typeof InternalError>;
export const DecodeError = defineError('TRP_ERR_DECODE', 'DecodeError');
export type DecodeError = InstanceType<typeof DecodeError>;
export const PayloadTooLargeError = defineError('TRP_ERR_PAYLOAD_TOO_LARGE', 'PayloadTooLargeError');
export type PayloadTooLargeError = InstanceType<typeof PayloadTooLargeError>;
export const VersionError = defineError('TRP_ERR_VERSION', 'VersionError');
export type VersionError = InstanceType<typeof VersionError>;
export const UnknownTypeError = defineError('TRP_ERR_UNKNOWN_TYPE', 'UnknownTypeError');
export type UnknownTypeError = InstanceType<typeof UnknownTypeError>;
export const ValidationError = defineError('TRP_ERR_VALIDATION', 'ValidationError');
export type ValidationError = InstanceType<typeof ValidationError>;
export const SubjectError = defineError('TRP_ERR_SUBJECT', 'SubjectError');
export type SubjectError = InstanceType<typeof SubjectError>;
export const TimeoutError = defineError('TRP_ERR_TIMEOUT', 'TimeoutError');
export type TimeoutError = InstanceType<typeof TimeoutError>;
export const NotFoundError = defineError('TRP_ERR_NOT_FOUND', 'NotFoundError');
export type NotFoundError = InstanceType<typeof NotFoundError>;
export const ConflictError = defineError('TRP_ERR_CONFLICT', 'ConflictError');
export type ConflictError = InstanceType<typeof ConflictError>;
export const UnavailableError = defineError('TRP_ERR_UNAVAILABLE', 'UnavailableError');
export type UnavailableError = InstanceType<typeof UnavailableError>;
