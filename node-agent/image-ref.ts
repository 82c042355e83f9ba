/**
 * Image references, normalized as Docker and Kubernetes do: `myapp:1.0` is
 * `docker.io/library/myapp:1.0`; no tag means `latest`; `name@sha256:…` pins a digest.
 */
import { ImageRefError } from './errors.js';

export interface ImageRef {
  /** Registry host (and port). */
  registry: string;
  /** Repository path, e.g. library/myapp. */
  repository: string;
  tag?: string;
  digest?: string;
  /** The canonical string: registry/repository[:tag][@digest]. */
  canonical: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
export const DEFAULT_REGISTRY = 'docker.io';

export function parseImageRef(input: string): ImageRef {
  const bad = (why: string): never => {
    throw new ImageRefError(`image reference ${JSON.stringify(input)} is invalid: ${why}`, { ref: input });
  };
  if (typeof input !== 'string' || input.length === 0 || input.length > 512) bad('expected a non-empty string of at most 512 characters');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) bad('the digest must be sha256: followed by 64 hex digits');
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad(`the tag ${JSON.stringify(tag)} is not valid (letters, digits, '_', '.', '-', at most 128)`);
  }
  const parts = rest.split('/');
  let registry = DEFAULT_REGISTRY;
  if (parts.length > 1 && (parts[0]!.includes('.') || parts[0]!.includes(':') || parts[0] === 'localhost')) {
    registry = parts.shift()!;
    if (!/^[a-zA-Z0-9.-]+(:\d{1,5})?$/.test(registry)) bad(`the registry ${JSON.stringify(registry)} is not a host[:port]`);
  }
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) bad('the repository must be lower-case letters, digits and separators (. _ __ -), in /-separated parts');
  if (registry === DEFAULT_REGISTRY && parts.length === 1) parts.unshift('library');
  const repository = parts.join('/');
  if (!tag && !digest) tag = 'latest';
  const canonical = `${registry}/${repository}${tag ? `:${tag}` : ''}${digest ? `@${digest}` : ''}`;
  return { registry, repository, tag, digest, canonical };
}

/** The short form people type: docker.io/library/ is left out. */
export function familiarName(ref: ImageRef): string {
  const name = ref.registry === DEFAULT_REGISTRY ? ref.repository.replace(/^library\//, '') : `${ref.registry}/${ref.repository}`;
  return `${name}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}
