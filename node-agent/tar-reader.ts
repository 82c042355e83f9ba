/**
 * A streaming tar reader (ustar, GNU long names, pax headers), so that every entry can be
 * checked before anything is written. Headers are verified by checksum; a truncated or corrupt
 * archive is an ImageFormatError naming the offset.
 */
import { ImageFormatError } from './errors.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarEntry {
  path: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
}

const BLOCK = 512;

/** Pulls exact byte counts out of an async stream of chunks. */
export class ByteReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private done = false;
  offset = 0;
  private readonly it: AsyncIterator<Buffer | Uint8Array | string>;

  constructor(source: AsyncIterable<Buffer | Uint8Array | string>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<void> {
    while (this.have < n && !this.done) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        break;
      }
      const b = typeof r.value === 'string' ? Buffer.from(r.value) : Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      if (b.length === 0) continue;
      this.chunks.push(b);
      this.have += b.length;
    }
  }

  /** Up to n bytes (fewer only at the end of the stream). */
  async read(n: number): Promise<Buffer> {
    await this.fill(n);
    const take = Math.min(n, this.have);
    let out: Buffer;
    if (this.chunks.length > 0 && this.chunks[0]!.length >= take) {
      const first = this.chunks[0]!;
      out = first.subarray(0, take);
      if (first.length === take) this.chunks.shift();
      else this.chunks[0] = first.subarray(take);
    } else {
      out = Buffer.allocUnsafe(take);
      let at = 0;
      while (at < take) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, take - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.have -= take;
    this.offset += take;
    return out;
  }

  /** Streams exactly n bytes to `sink` in chunks. */
  async pipe(n: number, sink: (chunk: Buffer) => Promise<void> | void): Promise<void> {
    let left = n;
    while (left > 0) {
      await this.fill(1);
      if (this.have === 0) throw new ImageFormatError(`archive is truncated at byte ${this.offset} (${left} bytes of an entry missing)`, { offset: this.offset });
      const b = await this.read(Math.min(left, this.chunks[0]!.length));
      left -= b.length;
      await sink(b);
    }
  }

  async skip(n: number): Promise<void> {
    await this.pipe(n, () => undefined);
  }
}

function cstr(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString('utf8', start, end >= 0 && end < start + len ? end : start + len);
}

function octal(b: Buffer, start: number, len: number, what: string, offset: number): number {
  if (b[start]! & 0x80) {
    // base-256 (GNU) for large values
    let v = 0;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + b[i]!;
    return v;
  }
  const s = cstr(b, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new ImageFormatError(`archive header at byte ${offset}: ${what} is not an octal number (${JSON.stringify(s)})`, { offset });
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = cstr(h, 148, 8).trim();
  if (!/^[0-7]+$/.test(stored)) return false;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  return sum === parseInt(stored, 8);
}

function parsePax(data: string, offset: number): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(' ', i);
    const len = parseInt(data.slice(i, sp), 10);
    if (sp < 0 || !Number.isFinite(len) || len <= 0) throw new ImageFormatError(`archive: malformed pax header near byte ${offset}`, { offset });
    const rec = data.slice(sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

const TYPES: Record<string, EntryType> = { '0': 'file', '\0': 'file', '7': 'file', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo' };

/**
 * Reads entries one by one; for each, `onEntry` must consume the entry's data through `body`
 * (or leave it, and it is skipped).
 */
export async function readTar(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  onEntry: (entry: TarEntry, body: { pipe(sink: (chunk: Buffer) => Promise<void> | void): Promise<void> }) => Promise<void>,
): Promise<number> {
  const r = new ByteReader(source);
  let count = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Record<string, string> = {};
  for (;;) {
    const at = r.offset;
    const h = await r.read(BLOCK);
    if (h.length === 0) {
      if (count === 0) throw new ImageFormatError('archive is empty: not a tar file', { offset: at });
      throw new ImageFormatError(`archive is truncated at byte ${at}: the end-of-archive blocks are missing`, { offset: at });
    }
    if (h.length < BLOCK) throw new ImageFormatError(`archive is truncated at byte ${at}`, { offset: at });
    if (h.every((x) => x === 0)) return count;
    if (!checksumOk(h)) throw new ImageFormatError(`archive header at byte ${at} is corrupt (bad checksum): not a tar file, or damaged`, { offset: at });
    const flag = String.fromCharCode(h[156]!);
    const size = octal(h, 124, 12, 'size', at);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (flag === 'L' || flag === 'K' || flag === 'x' || flag === 'g') {
      const data = (await r.read(padded)).subarray(0, size);
      if (data.length < size) throw new ImageFormatError(`archive is truncated at byte ${r.offset}`, { offset: r.offset });
      if (flag === 'L') longName = cstr(data, 0, data.length);
      else if (flag === 'K') longLink = cstr(data, 0, data.length);
      else if (flag === 'x') pax = { ...pax, ...parsePax(data.toString('utf8'), at) };
      continue;
    }
    const type = TYPES[flag];
    const magic = h.toString('latin1', 257, 262);
    const prefix = magic === 'ustar' ? cstr(h, 345, 155) : '';
    const name = pax.path ?? longName ?? (prefix ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
    const entry: TarEntry = {
      path: name,
      type: type ?? 'file',
      mode: octal(h, 100, 8, 'mode', at) & 0o7777,
      uid: pax.uid !== undefined ? Number(pax.uid) : octal(h, 108, 8, 'uid', at),
      gid: pax.gid !== undefined ? Number(pax.gid) : octal(h, 116, 8, 'gid', at),
      size: pax.size !== undefined ? Number(pax.size) : size,
      mtime: octal(h, 136, 12, 'mtime', at),
      linkname: pax.linkpath ?? longLink ?? cstr(h, 157, 100),
    };
    longName = longLink = undefined;
    pax = {};
    if (!type) throw new ImageFormatError(`archive entry ${JSON.stringify(name)} has an unknown type ${JSON.stringify(flag)}`, { offset: at, path: name });
    const dataSize = entry.type === 'file' ? entry.size : 0;
    let consumed = false;
    await onEntry(entry, {
      pipe: async (sink) => {
        consumed = true;
        await r.pipe(dataSize, sink);
      },
    });
    if (!consumed) await r.skip(dataSize);
    const pad = Math.ceil(dataSize / BLOCK) * BLOCK - dataSize;
    if (pad > 0) await r.skip(pad);
    count++;
  }
}
