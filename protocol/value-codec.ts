/**
 * msgpack for stored values (KV entries, snapshots): self-describing, no shared structures,
 * so a value written by any version can be read by any other.
 */
import { Packr } from 'msgpackr';
import { DecodeError } from './errors.js';

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

export function packValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function unpackValue<T = unknown>(bytes: Uint8Array, what = 'stored value'): T {
  try {
    return packr.unpack(bytes) as T;
  } catch (err) {
    throw new DecodeError(`${what} is not valid msgpack: ${(err as Error).message}`, { size: bytes.length });
  }
}
