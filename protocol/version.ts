/**
 * Protocol version rule: a message of the same major version is accepted whatever its minor;
 * another major is refused with a VersionError. On the wire the version is one number,
 * major * 1000 + minor.
 */
import { VersionError } from './errors.js';

export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_MINOR = 0;
export const PROTOCOL_VERSION = PROTOCOL_MAJOR * 1000 + PROTOCOL_MINOR;

export function formatVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${v % 1000}`;
}

export function checkVersion(v: number): void {
  if (Math.floor(v / 1000) !== PROTOCOL_MAJOR) {
    throw new VersionError(
      `protocol version ${formatVersion(v)} is not supported: this side speaks ${formatVersion(PROTOCOL_VERSION)} (same major version required)`,
      { received: formatVersion(v), supported: formatVersion(PROTOCOL_VERSION) },
    );
  }
}
