/**
 * The cluster's images, in JetStream: an image imported once is usable on every node, with no
 * external registry. Each archive is one object (named by its sha256) in the object store
 * `troupe-<c>-images`; each name is a record in the state bucket (`image.<name>`) pointing at the
 * object with its --change instructions. A node that lacks an image fetches the object and
 * imports it into its own store (validated again there).
 *
 * An import is validated in full (a throwaway local store, the same checks as a node's) before
 * anything is uploaded: a corrupt or unsafe archive leaves the cluster's images as they were.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { KvStore, type Bus } from '../actors/index.js';
import { NotFoundError, packValue, unpackValue } from '../protocol/index.js';
import { ImageNotFoundError } from './errors.js';
import { applyChanges } from './image-config.js';
import { familiarName, parseImageRef } from './image-ref.js';
import { ImageStore, type ImageInfo } from './image-store.js';
import { pullImage, type PullOptions } from './registry.js';
import { execa } from 'execa';

export interface ClusterImageRecord {
  /** Canonical reference. */
  ref: string;
  /** Object name: the archive's sha256 (hex). */
  object: string;
  /** rootfs: a `docker import` tarball (with its changes); archive: a docker-save or OCI archive. */
  kind: 'rootfs' | 'archive';
  changes: string[];
  size: number;
  created: string;
}

const keyOf = (canonical: string) => `image.${Buffer.from(canonical).toString('base64url')}`;

export class ClusterImages {
  private constructor(
    private readonly kv: KvStore,
    private readonly objects: ObjectStore,
  ) {}

  static async open(bus: Bus): Promise<ClusterImages> {
    const kv = await KvStore.open(bus, bus.subjects.stateBucket);
    const objm = new Objm(bus.nc);
    const objects = await objm.create(`${bus.subjects.stateBucket.replace(/-state$/, '')}-images`, { storage: 'file' as never });
    return new ClusterImages(kv, objects);
  }

  /** `docker import` into the cluster: validated locally, uploaded once, named. */
  async importRootfs(file: string, refInput: string, opts: { changes?: string[]; onProgress?: (sent: number, total: number) => void } = {}): Promise<ImageInfo> {
    const ref = parseImageRef(refInput);
    const changes = opts.changes ?? [];
    applyChanges({}, changes);
    const scratch = await mkdtemp(join(tmpdir(), 'troupe-import-'));
    let info: ImageInfo;
    let diffId: string;
    try {
      const local = new ImageStore(scratch);
      info = await local.importRootfs(file, ref.canonical, { changes });
      // the tarball is the image's one layer: its diff_id is the sha256 the object is named by
      diffId = (await local.resolve(ref.canonical)).config.rootfs.diff_ids[0]!;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    const total = (await stat(file)).size;
    const object = await this.upload(file, opts.onProgress, diffId.replace(/^sha256:/, ''));
    const record: ClusterImageRecord = { ref: ref.canonical, object, kind: 'rootfs', changes, size: total, created: new Date().toISOString() };
    await this.kv.put(keyOf(ref.canonical), packValue(record));
    return { ...info, ref: familiarName(ref) };
  }

  /** `docker load` into the cluster: every name in a docker-save or OCI archive, validated locally first. */
  async load(file: string, opts: { onProgress?: (sent: number, total: number) => void } = {}): Promise<ImageInfo[]> {
    const scratch = await mkdtemp(join(tmpdir(), 'troupe-load-'));
    let infos: ImageInfo[];
    try {
      infos = await new ImageStore(scratch).load(file);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    const object = await this.upload(file, opts.onProgress);
    const total = (await stat(file)).size;
    for (const info of infos) {
      const record: ClusterImageRecord = { ref: info.canonical, object, kind: 'archive', changes: [], size: total, created: new Date().toISOString() };
      await this.kv.put(keyOf(info.canonical), packValue(record));
    }
    return infos;
  }

  /**
   * `docker pull` into the cluster: pulled (and verified) into a scratch OCI layout, which is then
   * stored as an OCI archive like `load`, so every node can use it without the registry.
   */
  async pull(refInput: string, opts: PullOptions = {}): Promise<ImageInfo> {
    const scratch = await mkdtemp(join(tmpdir(), 'troupe-pull-'));
    try {
      const store = new ImageStore(join(scratch, 'layout'));
      const info = await pullImage(refInput, store, opts);
      const archive = join(scratch, 'image.tar');
      await execa('tar', ['-C', store.root, '-cf', archive, 'oci-layout', 'index.json', 'blobs']);
      const [loaded] = await this.load(archive);
      return loaded ?? info;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /** Stores a file as an object named by its sha256 (once; `sha256` when already known); returns the name. */
  private async upload(file: string, onProgress?: (sent: number, total: number) => void, sha256?: string): Promise<string> {
    const total = (await stat(file)).size;
    let object = sha256;
    if (!object) {
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
      object = hash.digest('hex');
    }
    if (!(await this.objects.info(object))) {
      let sent = 0;
      const source = createReadStream(file, { highWaterMark: 128 * 1024 });
      source.on('data', (c) => {
        sent += (c as Buffer).length;
        onProgress?.(sent, total);
      });
      await this.objects.put({ name: object }, Readable.toWeb(source) as ReadableStream<Uint8Array>);
    } else onProgress?.(total, total);
    return object;
  }

  async list(): Promise<ClusterImageRecord[]> {
    return (await this.kv.list('image.*')).map((e) => unpackValue<ClusterImageRecord>(e.value)).sort((a, b) => a.ref.localeCompare(b.ref));
  }

  async record(refInput: string): Promise<ClusterImageRecord | undefined> {
    const e = await this.kv.get(keyOf(parseImageRef(refInput).canonical));
    return e ? unpackValue<ClusterImageRecord>(e.value) : undefined;
  }

  async tag(srcInput: string, dstInput: string): Promise<ClusterImageRecord> {
    const src = await this.record(srcInput);
    if (!src) throw new NotFoundError(`image ${JSON.stringify(srcInput)} is not in the cluster; import it with \`troupe image import\``, { ref: srcInput });
    const dst = parseImageRef(dstInput);
    const rec = { ...src, ref: dst.canonical, created: new Date().toISOString() };
    await this.kv.put(keyOf(dst.canonical), packValue(rec));
    return rec;
  }

  /** Removes a name; its archive goes when no name is left for it. */
  async remove(refInput: string): Promise<{ untagged: string; deletedObject: boolean }> {
    const ref = parseImageRef(refInput);
    const rec = await this.record(ref.canonical);
    if (!rec) throw new NotFoundError(`image ${JSON.stringify(refInput)} is not in the cluster`, { ref: refInput });
    await this.kv.delete(keyOf(ref.canonical));
    const stillUsed = (await this.list()).some((r) => r.object === rec.object);
    if (!stillUsed) await this.objects.delete(rec.object);
    return { untagged: familiarName(ref), deletedObject: !stillUsed };
  }

  /** Brings a cluster image into a node's store (download, then a validated local import). */
  async fetchInto(refInput: string, store: ImageStore): Promise<void> {
    const rec = await this.record(refInput);
    if (!rec) {
      throw new ImageNotFoundError(`image ${JSON.stringify(refInput)} is neither on this node nor in the cluster; import it with \`troupe image import\``, { ref: refInput });
    }
    const got = await this.objects.get(rec.object);
    if (!got) throw new ImageNotFoundError(`image ${JSON.stringify(refInput)}: its archive ${rec.object} is missing from the cluster's object store`, { ref: refInput });
    const dir = await mkdtemp(join(tmpdir(), 'troupe-fetch-'));
    try {
      const file = join(dir, 'rootfs.tar');
      await pipeline(Readable.fromWeb(got.data as never), createWriteStream(file));
      const err = await got.error;
      if (err) throw err;
      if (rec.kind === 'archive') await store.load(file);
      else await store.importRootfs(file, rec.ref, { changes: rec.changes });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
