/**
 * Pulls an image from an OCI distribution registry into a node's image store: the manifest (an
 * index or manifest list resolved to this platform), the config and the layers, each verified by
 * its sha256 digest. Bearer-token auth as registries answer it (401 + WWW-Authenticate); plain
 * HTTP only with `insecure` (a loopback test registry).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageFormatError, ImageNotFoundError } from './errors.js';
import { parseImageRef, type ImageRef } from './image-ref.js';
import { MediaType, type ImageInfo, type ImageStore } from './image-store.js';
import { UnavailableError } from '../protocol/index.js';

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

export interface PullOptions {
  insecure?: boolean;
  /** Bytes of layers received so far, of the total. */
  onProgress?: (received: number, total: number) => void;
  timeoutMs?: number;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string };
}

function host(ref: ImageRef): string {
  return ref.registry === 'docker.io' ? 'registry-1.docker.io' : ref.registry;
}

function sha256(b: Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

class RegistryClient {
  private token?: string;
  readonly base: string;

  constructor(
    readonly ref: ImageRef,
    private readonly opts: PullOptions,
  ) {
    this.base = `${opts.insecure ? 'http' : 'https'}://${host(ref)}/v2/${ref.repository}`;
  }

  async get(path: string, accept?: string): Promise<Response> {
    const send = () =>
      fetch(`${this.base}${path}`, {
        headers: { ...(accept ? { Accept: accept } : {}), ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}) },
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 60_000),
        redirect: 'follow',
      });
    let res: Response;
    try {
      res = await send();
      if (res.status === 401 && !this.token) {
        await this.authenticate(res.headers.get('www-authenticate') ?? '');
        res = await send();
      }
    } catch (err) {
      throw new UnavailableError(`registry ${host(this.ref)} cannot be reached: ${(err as Error).message}${this.opts.insecure ? '' : ' (a plain-http registry needs --insecure)'}`, { registry: host(this.ref) }, { cause: err });
    }
    return res;
  }

  /** The Bearer flow: ask the realm for a pull token for this repository. */
  private async authenticate(challenge: string): Promise<void> {
    const m = /^Bearer\s+(.*)$/i.exec(challenge);
    if (!m) throw new UnavailableError(`registry ${host(this.ref)} asks for authentication this client does not speak (${challenge || 'no challenge'})`);
    const params = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (!params.realm) throw new UnavailableError(`registry ${host(this.ref)}: the Bearer challenge names no realm`);
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set('service', params.service);
    url.searchParams.set('scope', params.scope ?? `repository:${this.ref.repository}:pull`);
    const res = await fetch(url, { signal: AbortSignal.timeout(this.opts.timeoutMs ?? 60_000) });
    if (!res.ok) throw new UnavailableError(`registry ${host(this.ref)}: the token service answered ${res.status}`);
    const body = (await res.json()) as { token?: string; access_token?: string };
    this.token = body.token ?? body.access_token;
    if (!this.token) throw new UnavailableError(`registry ${host(this.ref)}: the token service gave no token`);
  }

  async manifest(reference: string): Promise<{ bytes: Uint8Array; mediaType: string; digest: string }> {
    const res = await this.get(`/manifests/${reference}`, ACCEPT);
    if (res.status === 404) throw new ImageNotFoundError(`image ${this.ref.canonical} is not in registry ${host(this.ref)} (manifest unknown)`, { ref: this.ref.canonical });
    if (!res.ok) throw new UnavailableError(`registry ${host(this.ref)} answered ${res.status} for the manifest of ${this.ref.canonical}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const digest = sha256(bytes);
    const claimed = reference.startsWith('sha256:') ? reference : res.headers.get('docker-content-digest');
    if (claimed && claimed !== digest) throw new ImageFormatError(`the manifest of ${this.ref.canonical} hashes to ${digest}, not ${claimed}`, { ref: this.ref.canonical });
    return { bytes, mediaType: (res.headers.get('content-type') ?? '').split(';')[0]!.trim(), digest };
  }

  /** Downloads a blob to a file, verifying its digest. */
  async blobToFile(desc: Descriptor, file: string, progress: (n: number) => void): Promise<void> {
    const res = await this.get(`/blobs/${desc.digest}`);
    if (!res.ok || !res.body) throw new UnavailableError(`registry ${host(this.ref)} answered ${res.status} for blob ${desc.digest}`);
    const hash = createHash('sha256');
    const out = createWriteStream(file);
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      progress(chunk.length);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== desc.digest) throw new ImageFormatError(`blob ${desc.digest} of ${this.ref.canonical} is corrupt: it hashes to ${actual}`, { digest: desc.digest });
  }
}

/** Pulls `refInput` into `store`; returns what was stored. */
export async function pullImage(refInput: string, store: ImageStore, opts: PullOptions = {}): Promise<ImageInfo> {
  const ref = parseImageRef(refInput);
  const client = new RegistryClient(ref, opts);
  let m = await client.manifest(ref.digest ?? ref.tag ?? 'latest');
  let parsed = JSON.parse(Buffer.from(m.bytes).toString('utf8')) as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[]; mediaType?: string };
  if (parsed.manifests) {
    const arch = process.arch === 'x64' ? 'amd64' : process.arch;
    const pick = parsed.manifests.find((d) => (d.platform?.os ?? 'linux') === 'linux' && (d.platform?.architecture ?? arch) === arch);
    if (!pick) throw new ImageNotFoundError(`image ${ref.canonical} has no linux/${arch} variant`, { ref: ref.canonical });
    m = await client.manifest(pick.digest);
    parsed = JSON.parse(Buffer.from(m.bytes).toString('utf8')) as typeof parsed;
  }
  if (!parsed.config || !parsed.layers) throw new ImageFormatError(`the manifest of ${ref.canonical} has no config or layers (media type ${m.mediaType || parsed.mediaType})`, { ref: ref.canonical });
  await store.init();
  const tmp = join(store.root, 'tmp', `pull-${randomBytes(6).toString('hex')}`);
  await mkdir(tmp, { recursive: true });
  try {
    const total = parsed.layers.reduce((a, l) => a + l.size, 0);
    let received = 0;
    const files: { desc: Descriptor; file: string }[] = [];
    const configFile = join(tmp, 'config');
    await client.blobToFile(parsed.config, configFile, () => undefined);
    for (const [i, l] of parsed.layers.entries()) {
      const file = join(tmp, `layer${i}`);
      await client.blobToFile(l, file, (n) => {
        received += n;
        opts.onProgress?.(received, total);
      });
      files.push({ desc: l, file });
    }
    return await store.addPulled(ref.canonical, { bytes: m.bytes, mediaType: m.mediaType || MediaType.Manifest }, { desc: parsed.config, file: configFile }, files);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
