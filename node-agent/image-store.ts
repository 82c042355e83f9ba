/**
 * The node's image store: an OCI image layout (blobs by sha256, index.json naming the tags) and,
 * beside it, each image's layers unpacked once into a rootfs that containers mount as the lower
 * layer of an overlay.
 *
 * An import is checked whole before anything lands: the archive is hashed, stored and unpacked
 * into a private temporary folder, and only a complete, safe archive is moved into the store
 * and named in the index (written atomically). A corrupt or unsafe archive leaves the store as
 * it was.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFoundError } from '../protocol/index.js';
import { applyChanges, type ImageConfig } from './image-config.js';
import { familiarName, parseImageRef } from './image-ref.js';
import { ImageFormatError, ImageNotFoundError } from './errors.js';
import { RootfsWriter, extractLayer, safeRelative } from './rootfs-extract.js';
import { createGunzip, gunzipSync } from 'node:zlib';

const REF_ANNOTATION = 'org.opencontainers.image.ref.name';
export const MediaType = {
  Manifest: 'application/vnd.oci.image.manifest.v1+json',
  Config: 'application/vnd.oci.image.config.v1+json',
  Layer: 'application/vnd.oci.image.layer.v1.tar',
  LayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** Layer media types this store unpacks (OCI's and Docker's, plain and gzip). */
const LAYER_TYPES = new Set<string>([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
]);

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

interface Manifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

interface Index {
  schemaVersion: 2;
  manifests: Descriptor[];
}

export interface ImageInfo {
  /** The name as people write it (myapp:1.0). */
  ref: string;
  /** docker.io/library/myapp:1.0 */
  canonical: string;
  /** Manifest digest: the image id. */
  digest: string;
  /** Bytes of its layers. */
  size: number;
  created?: string;
}

export interface ResolvedImage extends ImageInfo {
  config: ImageConfig;
  manifest: Manifest;
}

function arch(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch;
}

export class ImageStore {
  private queue: Promise<unknown> = Promise.resolve();
  /** Unpacked images by reference, valid while the index file is unchanged (checked by its mtime). */
  private readonly ready = new Map<string, { indexMtime: number; path: string; image: ResolvedImage }>();

  constructor(readonly root: string) {}

  private blob(digest: string): string {
    return join(this.root, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
  }

  /** Where an image's unpacked filesystem lives. */
  rootfsPath(digest: string): string {
    return join(this.root, 'rootfs', digest.replace(/^sha256:/, ''));
  }

  async init(): Promise<void> {
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true });
    await mkdir(join(this.root, 'rootfs'), { recursive: true });
    await mkdir(join(this.root, 'tmp'), { recursive: true });
    if (!existsSync(join(this.root, 'oci-layout'))) await writeFile(join(this.root, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}\n');
    if (!existsSync(join(this.root, 'index.json'))) await this.writeIndex({ schemaVersion: 2, manifests: [] });
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async readIndex(): Promise<Index> {
    try {
      return JSON.parse(await readFile(join(this.root, 'index.json'), 'utf8')) as Index;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { schemaVersion: 2, manifests: [] };
      throw new ImageFormatError(`image store index ${join(this.root, 'index.json')} is unreadable: ${(err as Error).message}`);
    }
  }

  private async writeIndex(index: Index): Promise<void> {
    const tmp = join(this.root, `index.json.${randomBytes(4).toString('hex')}`);
    await writeFile(tmp, `${JSON.stringify(index, null, 1)}\n`);
    await rename(tmp, join(this.root, 'index.json'));
  }

  /** Stores bytes as a blob; returns its descriptor. */
  private async putBlob(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const path = this.blob(digest);
    if (!existsSync(path)) {
      const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
      await writeFile(tmp, bytes);
      await rename(tmp, path);
    }
    return { mediaType, digest, size: bytes.length };
  }

  private async readJsonBlob<T>(digest: string): Promise<T> {
    const bytes = await readFile(this.blob(digest));
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== digest) throw new ImageFormatError(`blob ${digest} is corrupt: its content hashes to ${actual}`, { digest });
    return JSON.parse(bytes.toString('utf8')) as T;
  }

  /**
   * `docker import`: one rootfs tarball becomes a one-layer image named `ref`, with `changes`
   * (CMD, ENTRYPOINT, ENV, WORKDIR, EXPOSE, USER, LABEL, STOPSIGNAL) as its config.
   */
  async importRootfs(source: string | AsyncIterable<Buffer | Uint8Array>, refInput: string, opts: { changes?: string[] } = {}): Promise<ImageInfo> {
    const ref = parseImageRef(refInput);
    const runtimeConfig = applyChanges({}, opts.changes ?? []);
    await this.init();
    const tmp = join(this.root, 'tmp', randomBytes(8).toString('hex'));
    await mkdir(tmp, { recursive: true });
    try {
      const layerTmp = join(tmp, 'layer.tar');
      const rootfsTmp = join(tmp, 'rootfs');
      const hash = createHash('sha256');
      const fh = await open(layerTmp, 'w');
      let size = 0;
      const input = typeof source === 'string' ? createReadStream(source) : source;
      async function* tee(): AsyncGenerator<Buffer> {
        for await (const chunk of input as AsyncIterable<Buffer>) {
          const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
          hash.update(b);
          size += b.length;
          await fh.write(b);
          yield b;
        }
      }
      const stream = tee();
      try {
        await extractLayer(rootfsTmp, stream, new RootfsWriter(rootfsTmp));
        for await (const _ of stream) void _; // the rest after the end-of-archive blocks
      } finally {
        await fh.close();
      }
      const diffId = `sha256:${hash.digest('hex')}`;
      const layerPath = this.blob(diffId);
      if (!existsSync(layerPath)) await rename(layerTmp, layerPath);
      const created = new Date().toISOString();
      const config: ImageConfig = {
        created,
        architecture: arch(),
        os: 'linux',
        config: runtimeConfig,
        rootfs: { type: 'layers', diff_ids: [diffId] },
        history: [{ created, created_by: 'troupe image import', comment: (opts.changes ?? []).join('; ') }],
      };
      const configDesc = await this.putBlob(Buffer.from(JSON.stringify(config)), MediaType.Config);
      const manifest: Manifest = { schemaVersion: 2, mediaType: MediaType.Manifest, config: configDesc, layers: [{ mediaType: MediaType.Layer, digest: diffId, size }] };
      const manifestDesc = await this.putBlob(Buffer.from(JSON.stringify(manifest)), MediaType.Manifest);
      const target = this.rootfsPath(manifestDesc.digest);
      if (!existsSync(`${target}.complete`)) {
        await rm(target, { recursive: true, force: true });
        await rename(rootfsTmp, target);
        await writeFile(`${target}.complete`, `${diffId}\n`);
      }
      await this.serial(async () => {
        const index = await this.readIndex();
        index.manifests = index.manifests.filter((m) => m.annotations?.[REF_ANNOTATION] !== ref.canonical);
        index.manifests.push({ ...manifestDesc, annotations: { [REF_ANNOTATION]: ref.canonical } });
        await this.writeIndex(index);
      });
      return { ref: familiarName(ref), canonical: ref.canonical, digest: manifestDesc.digest, size, created };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async list(): Promise<ImageInfo[]> {
    const index = await this.readIndex();
    const out: ImageInfo[] = [];
    for (const m of index.manifests) {
      const canonical = m.annotations?.[REF_ANNOTATION];
      if (!canonical) continue;
      const manifest = await this.readJsonBlob<Manifest>(m.digest).catch(() => undefined);
      const config = manifest ? await this.readJsonBlob<ImageConfig>(manifest.config.digest).catch(() => undefined) : undefined;
      out.push({
        ref: familiarName(parseImageRef(canonical)),
        canonical,
        digest: m.digest,
        size: manifest ? manifest.layers.reduce((a, l) => a + l.size, 0) : 0,
        created: config?.created,
      });
    }
    return out.sort((a, b) => a.ref.localeCompare(b.ref));
  }

  /** Finds an image by reference (or by digest); ImageNotFoundError when it is not here. */
  async resolve(refInput: string): Promise<ResolvedImage> {
    const index = await this.readIndex();
    let entry: Descriptor | undefined;
    if (/^sha256:[a-f0-9]{64}$/.test(refInput)) entry = index.manifests.find((m) => m.digest === refInput);
    else {
      const ref = parseImageRef(refInput);
      entry = index.manifests.find((m) => m.annotations?.[REF_ANNOTATION] === ref.canonical);
    }
    if (!entry) throw new ImageNotFoundError(`image ${JSON.stringify(refInput)} is not in this node's store; import, load or pull it first`, { ref: refInput });
    const manifest = await this.readJsonBlob<Manifest>(entry.digest);
    const config = await this.readJsonBlob<ImageConfig>(manifest.config.digest);
    const canonical = entry.annotations?.[REF_ANNOTATION] ?? entry.digest;
    return {
      ref: canonical === entry.digest ? entry.digest : familiarName(parseImageRef(canonical)),
      canonical,
      digest: entry.digest,
      size: manifest.layers.reduce((a, l) => a + l.size, 0),
      created: config.created,
      config,
      manifest,
    };
  }

  /**
   * `docker load`: a docker-save archive (manifest.json) or an OCI image archive (index.json),
   * every name in it. The archive is unpacked with the same safe extraction as a layer, every
   * digest is checked, and nothing is named before all of it is stored.
   */
  async load(file: string): Promise<ImageInfo[]> {
    await this.init();
    const tmp = join(this.root, 'tmp', randomBytes(8).toString('hex'));
    try {
      const x = join(tmp, 'archive');
      await extractLayer(x, createReadStream(file), new RootfsWriter(x));
      const named: { canonical: string; manifest: Manifest; size: number }[] = [];
      if (existsSync(join(x, 'manifest.json'))) {
        const entries = JSON.parse(await readFile(join(x, 'manifest.json'), 'utf8')) as { Config: string; RepoTags?: string[]; Layers: string[] }[];
        if (!Array.isArray(entries)) throw new ImageFormatError('docker archive: manifest.json is not a list');
        for (const e of entries) {
          const configBytes = await readFile(join(x, safeRelative(e.Config, 'config path')));
          const config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
          const layers: Descriptor[] = [];
          for (const [i, layerPath] of e.Layers.entries()) {
            const bytes = await readFile(join(x, safeRelative(layerPath, 'layer path')));
            const gz = bytes[0] === 0x1f && bytes[1] === 0x8b;
            const raw = gz ? gunzipSync(bytes) : bytes;
            const diffId = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
            if (config.rootfs?.diff_ids?.[i] !== diffId) {
              throw new ImageFormatError(`docker archive: layer ${layerPath} hashes to ${diffId}, but the image config expects ${config.rootfs?.diff_ids?.[i] ?? 'nothing'}`, { layer: layerPath });
            }
            layers.push(await this.putBlob(bytes, gz ? MediaType.LayerGzip : MediaType.Layer));
          }
          const configDesc = await this.putBlob(configBytes, MediaType.Config);
          const manifest: Manifest = { schemaVersion: 2, mediaType: MediaType.Manifest, config: configDesc, layers };
          for (const tag of e.RepoTags ?? []) named.push({ canonical: parseImageRef(tag).canonical, manifest, size: layers.reduce((a, l) => a + l.size, 0) });
        }
      } else if (existsSync(join(x, 'index.json')) && existsSync(join(x, 'oci-layout'))) {
        const index = JSON.parse(await readFile(join(x, 'index.json'), 'utf8')) as Index;
        const blob = async (digest: string) => {
          if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw new ImageFormatError(`OCI archive: digest ${JSON.stringify(digest)} is not sha256`);
          const bytes = await readFile(join(x, 'blobs', 'sha256', digest.slice(7))).catch(() => {
            throw new ImageFormatError(`OCI archive: blob ${digest} is missing`, { digest });
          });
          const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
          if (actual !== digest) throw new ImageFormatError(`OCI archive: blob ${digest} is corrupt (its content hashes to ${actual})`, { digest });
          return bytes;
        };
        for (const m of index.manifests ?? []) {
          const name = m.annotations?.[REF_ANNOTATION];
          if (!name) continue;
          const manifestBytes = await blob(m.digest);
          const manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest;
          await this.putBlob(await blob(manifest.config.digest), MediaType.Config);
          for (const l of manifest.layers) {
            if (!LAYER_TYPES.has(l.mediaType)) throw new ImageFormatError(`OCI archive: layer media type ${l.mediaType} is not supported`, { digest: l.digest });
            await this.putBlob(await blob(l.digest), l.mediaType);
          }
          named.push({ canonical: parseImageRef(name).canonical, manifest, size: manifest.layers.reduce((a, l) => a + l.size, 0) });
        }
      } else {
        throw new ImageFormatError(`${file} is neither a docker-save archive (manifest.json) nor an OCI image archive (index.json + oci-layout)`, { file });
      }
      if (named.length === 0) throw new ImageFormatError(`${file} names no image (no RepoTags, no org.opencontainers.image.ref.name)`, { file });
      const out: ImageInfo[] = [];
      const descs: (Descriptor & { annotations: Record<string, string> })[] = [];
      for (const n of named) {
        const d = await this.putBlob(Buffer.from(JSON.stringify(n.manifest)), MediaType.Manifest);
        descs.push({ ...d, annotations: { [REF_ANNOTATION]: n.canonical } });
        out.push({ ref: familiarName(parseImageRef(n.canonical)), canonical: n.canonical, digest: d.digest, size: n.size });
      }
      await this.serial(async () => {
        const index = await this.readIndex();
        const names = new Set(descs.map((d) => d.annotations[REF_ANNOTATION]));
        index.manifests = index.manifests.filter((m) => !names.has(m.annotations?.[REF_ANNOTATION] ?? '')).concat(descs);
        await this.writeIndex(index);
      });
      return out;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * Stores what a registry pull downloaded (each file already verified against its digest) and
   * names it. The manifest is kept byte for byte, so its digest is the registry's.
   */
  async addPulled(canonical: string, manifest: { bytes: Uint8Array; mediaType: string }, config: { desc: Descriptor; file: string }, layers: { desc: Descriptor; file: string }[]): Promise<ImageInfo> {
    for (const l of [config, ...layers]) {
      const path = this.blob(l.desc.digest);
      if (!existsSync(path)) await rename(l.file, path);
    }
    const desc = await this.putBlob(Buffer.from(manifest.bytes), MediaType.Manifest);
    await this.serial(async () => {
      const index = await this.readIndex();
      index.manifests = index.manifests.filter((m) => m.annotations?.[REF_ANNOTATION] !== canonical);
      index.manifests.push({ ...desc, annotations: { [REF_ANNOTATION]: canonical } });
      await this.writeIndex(index);
    });
    return { ref: familiarName(parseImageRef(canonical)), canonical, digest: desc.digest, size: layers.reduce((a, l) => a + l.desc.size, 0) };
  }

  /** The unpacked rootfs of an image, unpacking its layers (once) if needed. */
  /**
   * What rootfs() answers when it needs no wait: an image this store has resolved and unpacked,
   * its index unchanged since; undefined otherwise.
   */
  rootfsAtHand(refInput: string): { path: string; image: ResolvedImage } | undefined {
    return this.readyHit(refInput, this.indexMtime());
  }

  /** The index's mtime, or -1 without one (one stat, synchronous: see rootfs). */
  private indexMtime(): number {
    try {
      return statSync(join(this.root, 'index.json')).mtimeMs;
    } catch {
      return -1;
    }
  }

  private readyHit(refInput: string, indexMtime: number): { path: string; image: ResolvedImage } | undefined {
    const hit = this.ready.get(refInput);
    return hit && hit.indexMtime === indexMtime && existsSync(`${hit.path}.complete`) ? { path: hit.path, image: hit.image } : undefined;
  }

  async rootfs(refInput: string): Promise<{ path: string; image: ResolvedImage }> {
    // (one stat, synchronous: the index's inode is in the cache, and a thread-pool round trip per
    // container start cost more than the call)
    const indexMtime = this.indexMtime();
    const hit = this.readyHit(refInput, indexMtime);
    if (hit) return hit;
    const image = await this.resolve(refInput);
    const path = this.rootfsPath(image.digest);
    if (!existsSync(`${path}.complete`)) {
      await this.serial(async () => {
        if (existsSync(`${path}.complete`)) return;
        const tmp = join(this.root, 'tmp', randomBytes(8).toString('hex'));
        try {
          const writer = new RootfsWriter(tmp);
          for (const layer of image.manifest.layers) {
            const gzip = layer.mediaType === MediaType.LayerGzip || layer.mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip';
            if (!gzip && layer.mediaType !== MediaType.Layer && layer.mediaType !== 'application/vnd.docker.image.rootfs.diff.tar') {
              throw new ImageFormatError(`layer ${layer.digest} has media type ${layer.mediaType}, which this store does not unpack`, { digest: layer.digest });
            }
            const source = createReadStream(this.blob(layer.digest));
            await extractLayer(tmp, gzip ? source.pipe(createGunzip()) : source, writer);
          }
          await rm(path, { recursive: true, force: true });
          await rename(tmp, path);
          await writeFile(`${path}.complete`, '');
        } finally {
          await rm(tmp, { recursive: true, force: true });
        }
      });
    }
    this.ready.set(refInput, { indexMtime, path, image });
    return { path, image };
  }

  /** Gives an image a second name. */
  async tag(srcInput: string, dstInput: string): Promise<ImageInfo> {
    const src = await this.resolve(srcInput);
    const dst = parseImageRef(dstInput);
    await this.serial(async () => {
      const index = await this.readIndex();
      index.manifests = index.manifests.filter((m) => m.annotations?.[REF_ANNOTATION] !== dst.canonical);
      index.manifests.push({ mediaType: MediaType.Manifest, digest: src.digest, size: (await stat(this.blob(src.digest))).size, annotations: { [REF_ANNOTATION]: dst.canonical } });
      await this.writeIndex(index);
    });
    return { ...src, ref: familiarName(dst), canonical: dst.canonical };
  }

  /** Removes a name; the image's blobs and rootfs go when no name is left for them. */
  async remove(refInput: string): Promise<{ untagged: string; deleted: string[] }> {
    const ref = parseImageRef(refInput);
    return this.serial(async () => {
      const index = await this.readIndex();
      const entry = index.manifests.find((m) => m.annotations?.[REF_ANNOTATION] === ref.canonical);
      if (!entry) throw new NotFoundError(`image ${JSON.stringify(refInput)} is not in this node's store`, { ref: refInput });
      index.manifests = index.manifests.filter((m) => m !== entry);
      await this.writeIndex(index);
      const deleted = await this.collect(index);
      return { untagged: familiarName(ref), deleted };
    });
  }

  /** Deletes blobs and rootfs folders no named manifest reaches. */
  private async collect(index: Index): Promise<string[]> {
    const live = new Set<string>();
    for (const m of index.manifests) {
      live.add(m.digest);
      const manifest = await this.readJsonBlob<Manifest>(m.digest).catch(() => undefined);
      if (!manifest) continue;
      live.add(manifest.config.digest);
      for (const l of manifest.layers) live.add(l.digest);
    }
    const deleted: string[] = [];
    for (const hex of await readdir(join(this.root, 'blobs', 'sha256'))) {
      const digest = `sha256:${hex}`;
      if (!live.has(digest) && /^[a-f0-9]{64}$/.test(hex)) {
        await rm(this.blob(digest), { force: true });
        deleted.push(digest);
      }
    }
    for (const name of await readdir(join(this.root, 'rootfs'))) {
      const hex = name.replace(/\.complete$/, '');
      if (!live.has(`sha256:${hex}`)) await rm(join(this.root, 'rootfs', name), { recursive: true, force: true });
    }
    return deleted;
  }
}
