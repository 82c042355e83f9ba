/**
 * A small msgpack writer for the fixed, hot shapes: the envelope header and the actor event body.
 * Both are records of the shared structure table (see codec.ts): one byte naming the record, then
 * the values in table order. Primitives are written here directly into one reusable buffer; any
 * other value (a snapshot's value or data) is packed by msgpackr and appended. The result decodes
 * with the same msgpackr unpacker as everything else (a property test holds the two together).
 */
import type { Packr } from 'msgpackr';

const CHUNK = 64 * 1024;

/**
 * Messages are written one after another into a chunk and handed out as views of it (no copy, no
 * ArrayBuffer per message: allocating those costs more than the encoding). Bytes handed out are
 * never written again; a full chunk is left to the views that still use it and a new one begins.
 */
export class MsgpackWriter {
  private buf = Buffer.allocUnsafeSlow(CHUNK);
  /** The same memory as a plain Uint8Array: slicing a Buffer goes through its species, which is slow. */
  private u8 = new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  private view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  /** Where the message being written starts. */
  private start = 0;
  private pos = 0;
  /** In a frame (beginFrame): where its payload starts, counted from `start`; else -1. */
  private payloadOffset = -1;

  constructor(
    private readonly packr: Packr,
    /** First keys of the shared-structure shapes (see codec.ts). */
    private readonly recordFirstKeys: ReadonlySet<string> = new Set(),
  ) {}

  /** Begins a message (dropping an unfinished one). */
  reset(): this {
    this.pos = this.start;
    this.payloadOffset = -1;
    return this;
  }

  /**
   * Begins a message that will go out as one NATS PUB frame (see frame()): room for the frame's
   * head is kept before the payload, so the frame needs no second buffer and no copy.
   */
  beginFrame(prefix: Uint8Array | string): this {
    this.reset();
    // the prefix, up to 10 length digits and CRLF
    const head = prefix.length + 12;
    this.room(head);
    this.pos += head;
    this.payloadOffset = head;
    return this;
  }

  /** Bytes of payload written since beginFrame(). */
  payloadSize(): number {
    return this.pos - this.start - this.payloadOffset;
  }

  /**
   * Ends the frame begun by beginFrame(): `<prefix><payload length>\r\n<payload>\r\n`, as a view
   * that stays valid (the unused part of the kept room is left behind in the chunk). A prefix given
   * as text is ASCII (one byte per character): the caller checked.
   */
  frame(prefix: Uint8Array | string): Uint8Array {
    const size = this.payloadSize();
    const len = String(size);
    this.room(2);
    this.buf[this.pos++] = 13;
    this.buf[this.pos++] = 10;
    const payload = this.start + this.payloadOffset;
    const begin = payload - 2 - len.length - prefix.length;
    let o = begin;
    if (typeof prefix === 'string') for (let i = 0; i < prefix.length; i++) this.buf[o++] = prefix.charCodeAt(i);
    else {
      this.u8.set(prefix, begin);
      o += prefix.length;
    }
    for (let i = 0; i < len.length; i++) this.buf[o++] = len.charCodeAt(i);
    this.buf[o++] = 13;
    this.buf[o] = 10;
    const out = this.u8.subarray(begin, this.pos);
    this.start = this.pos;
    this.payloadOffset = -1;
    return out;
  }

  /** The message written since reset(), as a view that stays valid. */
  done(): Uint8Array {
    const out = this.u8.subarray(this.start, this.pos);
    this.start = this.pos;
    return out;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const used = this.pos - this.start;
    const next = Buffer.allocUnsafeSlow(Math.max(CHUNK, (used + n) * 2));
    this.buf.copy(next, 0, this.start, this.pos);
    this.buf = next;
    this.u8 = new Uint8Array(next.buffer, next.byteOffset, next.byteLength);
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
    this.start = 0;
    this.pos = used;
  }

  byte(b: number): this {
    this.room(1);
    this.buf[this.pos++] = b;
    return this;
  }

  nil(): this {
    return this.byte(0xc0);
  }

  bool(b: boolean): this {
    return this.byte(b ? 0xc3 : 0xc2);
  }

  number(n: number): this {
    this.room(9);
    if (Number.isInteger(n) && n >= 0 && n <= 0xffffffff) {
      // 0x40–0x7f are record references when records are on: small ints stop at 0x3f (as msgpackr's)
      if (n < 0x40) this.buf[this.pos++] = n;
      else if (n < 0x100) {
        this.buf[this.pos++] = 0xcc;
        this.buf[this.pos++] = n;
      } else if (n < 0x10000) {
        this.buf[this.pos++] = 0xcd;
        this.view.setUint16(this.pos, n);
        this.pos += 2;
      } else {
        this.buf[this.pos++] = 0xce;
        this.view.setUint32(this.pos, n);
        this.pos += 4;
      }
    } else if (Number.isInteger(n) && n < 0 && n >= -0x80000000) {
      if (n >= -32) this.buf[this.pos++] = n & 0xff;
      else {
        this.buf[this.pos++] = 0xd2;
        this.view.setInt32(this.pos, n);
        this.pos += 4;
      }
    } else {
      this.buf[this.pos++] = 0xcb;
      this.view.setFloat64(this.pos, n);
      this.pos += 8;
    }
    return this;
  }

  string(s: string): this {
    const n = s.length;
    // ASCII fast path: one byte per character
    if (n < 32) {
      let ascii = true;
      for (let i = 0; i < n; i++) {
        if (s.charCodeAt(i) > 0x7f) {
          ascii = false;
          break;
        }
      }
      if (ascii) {
        this.room(n + 1);
        this.buf[this.pos++] = 0xa0 | n;
        for (let i = 0; i < n; i++) this.buf[this.pos++] = s.charCodeAt(i);
        return this;
      }
    }
    const bytes = Buffer.byteLength(s, 'utf8');
    this.room(bytes + 5);
    if (bytes < 32) this.buf[this.pos++] = 0xa0 | bytes;
    else this.sized(bytes, 0xd9, 0xda, 0xdb);
    this.pos += this.buf.write(s, this.pos, 'utf8');
    return this;
  }

  /** A length in 1, 2 or 4 bytes after its type byte (str8/16/32, bin8/16/32); room is made by the caller. */
  private sized(n: number, c8: number, c16: number, c32: number): void {
    if (n < 0x100) {
      this.buf[this.pos++] = c8;
      this.buf[this.pos++] = n;
    } else if (n < 0x10000) {
      this.buf[this.pos++] = c16;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = c32;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
  }

  private header(n: number, fix: number, b16: number, b32: number): void {
    this.room(5);
    if (n < 16) this.buf[this.pos++] = fix | n;
    else if (n < 0x10000) {
      this.buf[this.pos++] = b16;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = b32;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
  }

  /** Writes the string `prefix + n.toString(36)` (prefix ASCII, shorter than 20) without building it. */
  id(prefix: string, n: number): this {
    let digits = 1;
    for (let x = n; x >= 36; x = Math.floor(x / 36)) digits++;
    const len = prefix.length + digits;
    this.room(len + 1);
    this.buf[this.pos++] = 0xa0 | len;
    for (let i = 0; i < prefix.length; i++) this.buf[this.pos++] = prefix.charCodeAt(i);
    let x = n;
    for (let i = digits - 1; i >= 0; i--) {
      const d = x % 36;
      this.buf[this.pos + i] = d < 10 ? 48 + d : 87 + d;
      x = Math.floor(x / 36);
    }
    this.pos += digits;
    return this;
  }

  /**
   * Any value: primitives, plain objects, arrays and bytes directly; anything else (undefined,
   * dates, maps, bigints, class instances) through msgpackr.
   */
  value(v: unknown, depth = 0): this {
    switch (typeof v) {
      case 'string':
        return this.string(v);
      case 'number':
        return this.number(v);
      case 'boolean':
        return this.bool(v);
      case 'object':
        if (v === null) return this.nil();
        if (depth < 32) {
          if (Array.isArray(v)) {
            this.header(v.length, 0x90, 0xdc, 0xdd);
            for (let i = 0; i < v.length; i++) this.value(v[i], depth + 1);
            return this;
          }
          const proto = Object.getPrototypeOf(v);
          if (proto === Object.prototype || proto === null) {
            const o = v as Record<string, unknown>;
            const keys = Object.keys(o);
            // an object shaped like a shared record is left to msgpackr, which writes it as that record
            if (keys.length > 0 && this.recordFirstKeys.has(keys[0]!)) break;
            this.header(keys.length, 0x80, 0xde, 0xdf);
            for (const k of keys) {
              this.string(k);
              this.value(o[k], depth + 1);
            }
            return this;
          }
          if (v instanceof Uint8Array) {
            const n = v.length;
            this.room(n + 5);
            this.sized(n, 0xc4, 0xc5, 0xc6);
            this.buf.set(v, this.pos);
            this.pos += n;
            return this;
          }
        }
        break;
      default:
    }
    const packed = this.packr.pack(v);
    this.room(packed.length);
    this.buf.set(packed, this.pos);
    this.pos += packed.length;
    return this;
  }
}
