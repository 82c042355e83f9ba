/**
 * Unpacks image layers into a rootfs folder, safely: entries are written only below the root,
 * never through a symlink, and an entry that tries otherwise (`..`, a relative symlink climbing
 * out, a hard link to outside) refuses the whole layer. OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`)
 * delete what lower layers put there, so layers applied in order give the image's filesystem.
 */
import { constants } from 'node:fs';
import { chmod, chown, link, lstat, lutimes, mkdir, open, readdir, rm, symlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { readTar, type TarEntry } from './tar-reader.js';
import { UnsafeArchiveError } from './errors.js';

export interface ExtractStats {
  entries: number;
  files: number;
  bytes: number;
  whiteouts: number;
  /** Device nodes and FIFOs are not created from images (the runtime provides /dev). */
  skipped: number;
}

/** Normalizes an entry path to a relative path below the root, or refuses it. */
export function safeRelative(path: string, what = 'entry'): string {
  const trimmed = path.replace(/^(\.\/)+/, '').replace(/^\/+/, '');
  if (trimmed === '' || trimmed === '.') return '';
  const parts = trimmed.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnsafeArchiveError(`archive ${what} ${JSON.stringify(path)} climbs out of the rootfs ('..'): refused`, { path });
  return parts.join('/');
}

/** Whether a relative symlink at `at` pointing to `target` stays inside the root. */
export function symlinkStaysInside(at: string, target: string): boolean {
  if (target.startsWith('/')) return true; // absolute: resolved against the container's root
  let depth = at.split('/').length - 1; // the directory the link sits in
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      depth--;
      if (depth < 0) return false;
    } else depth++;
  }
  return true;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

export class RootfsWriter {
  readonly stats: ExtractStats = { entries: 0, files: 0, bytes: 0, whiteouts: 0, skipped: 0 };
  private readonly dirsOk = new Set<string>(['']);

  constructor(readonly root: string) {}

  /** Makes sure every parent of `rel` is a real directory (not a symlink), creating missing ones. */
  private async parents(rel: string, path: string): Promise<void> {
    const parts = rel.split('/');
    parts.pop();
    let cur = '';
    for (const p of parts) {
      cur = cur ? `${cur}/${p}` : p;
      if (this.dirsOk.has(cur)) continue;
      const abs = posix.join(this.root, cur);
      try {
        const st = await lstat(abs);
        if (st.isSymbolicLink()) throw new UnsafeArchiveError(`archive entry ${JSON.stringify(path)} would be written through the symlink ${JSON.stringify(cur)}: refused`, { path });
        if (!st.isDirectory()) await rm(abs, { force: true });
        else {
          this.dirsOk.add(cur);
          continue;
        }
      } catch (err) {
        if (err instanceof UnsafeArchiveError) throw err;
      }
      await mkdir(abs, { mode: 0o755 });
      this.dirsOk.add(cur);
    }
  }

  private async clear(abs: string, keepDir: boolean): Promise<void> {
    try {
      const st = await lstat(abs);
      if (st.isDirectory() && keepDir) return;
      await rm(abs, { recursive: true, force: true });
    } catch {
      // nothing there
    }
  }

  async entry(e: TarEntry, body: { pipe(sink: (chunk: Buffer) => Promise<void> | void): Promise<void> }): Promise<void> {
    this.stats.entries++;
    const rel = safeRelative(e.path);
    if (rel === '') return; // the root itself
    const base = posix.basename(rel);
    const dir = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
    if (base.startsWith('.wh.')) {
      await this.parents(rel, e.path);
      this.stats.whiteouts++;
      if (base === '.wh..wh..opq') {
        const abs = posix.join(this.root, dir);
        if (await isDir(abs)) for (const child of await readdir(abs)) await rm(posix.join(abs, child), { recursive: true, force: true });
      } else {
        await rm(posix.join(this.root, dir, base.slice(4)), { recursive: true, force: true });
        this.dirsOk.clear();
        this.dirsOk.add('');
      }
      return;
    }
    await this.parents(rel, e.path);
    const abs = posix.join(this.root, rel);
    switch (e.type) {
      case 'dir':
        await this.clear(abs, true);
        await mkdir(abs, { recursive: true });
        await chmod(abs, e.mode);
        this.dirsOk.add(rel);
        break;
      case 'file': {
        await this.clear(abs, false);
        const fh = await open(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, e.mode);
        try {
          await body.pipe(async (chunk) => {
            this.stats.bytes += chunk.length;
            let off = 0;
            while (off < chunk.length) off += (await fh.write(chunk, off)).bytesWritten;
          });
        } finally {
          await fh.close();
        }
        await chmod(abs, e.mode);
        this.stats.files++;
        break;
      }
      case 'symlink':
        if (!symlinkStaysInside(rel, e.linkname)) {
          throw new UnsafeArchiveError(`archive symlink ${JSON.stringify(e.path)} -> ${JSON.stringify(e.linkname)} points outside the rootfs: refused`, { path: e.path, target: e.linkname });
        }
        await this.clear(abs, false);
        await symlink(e.linkname, abs);
        break;
      case 'hardlink': {
        const target = safeRelative(e.linkname, 'hard link target');
        await this.parents(target, e.linkname);
        const tabs = posix.join(this.root, target);
        const st = await lstat(tabs).catch(() => undefined);
        if (!st || st.isDirectory()) throw new UnsafeArchiveError(`archive hard link ${JSON.stringify(e.path)} -> ${JSON.stringify(e.linkname)}: the target is not a file in this rootfs`, { path: e.path });
        await this.clear(abs, false);
        await link(tabs, abs);
        return; // a hard link shares its target's owner and times
      }
      default:
        this.stats.skipped++;
        return;
    }
    await chown(abs, e.uid, e.gid).catch(() => undefined);
    if (e.type !== 'symlink') await lutimes(abs, e.mtime, e.mtime).catch(() => undefined);
  }
}

/** Applies one layer (a tar stream) on top of `root`. */
export async function extractLayer(root: string, source: AsyncIterable<Buffer | Uint8Array | string>, writer = new RootfsWriter(root)): Promise<ExtractStats> {
  await mkdir(root, { recursive: true });
  await readTar(source, (e, body) => writer.entry(e, body));
  return writer.stats;
}

