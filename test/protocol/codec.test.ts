import t from 'tap';
import {
  Codec,
  DecodeError,
  MessageType,
  PayloadTooLargeError,
  PROTOCOL_VERSION,
  SHARED_STRUCTURES,
  TroupeError,
  UnknownTypeError,
  ValidationError,
  VersionError,
  builtinMessageTypes,
  s,
} from '../../protocol/index.js';
import { Packr } from 'msgpackr';
import { randomValue, rng } from '../helpers/random.js';

const from = 'test/1';

/** Buffers and Uint8Arrays compare as plain arrays. */
function norm(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: [...v] };
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}

t.test('round-trips random bodies (property)', async (t) => {
  const codec = new Codec();
  const seed = 1234;
  const r = rng(seed);
  for (let i = 0; i < 2000; i++) {
    const body = randomValue(r);
    const bytes = codec.encode(MessageType.Reply, body, { from, cid: i % 2 ? 'c' : null });
    const env = codec.decode(bytes);
    if (JSON.stringify(norm(env.body)) !== JSON.stringify(norm(body))) {
      t.fail(`seed ${seed} case ${i}: body changed in the round trip`);
      return;
    }
    if (env.t !== MessageType.Reply || env.from !== from) {
      t.fail(`case ${i}: envelope fields changed`);
      return;
    }
  }
  t.pass('2000 random bodies round-tripped');
});

t.test('round-trips the encoding boundaries exactly', async (t) => {
  const codec = new Codec();
  const ints = [0, 1, 31, 32, 63, 64, 65, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -31, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53) + 1];
  const floats = [0.5, -0.5, 1e-300, 1.7976931348623157e308, Math.PI];
  const strings = [0, 1, 31, 32, 255, 256, 65535, 65536].map((n) => 'x'.repeat(n)).concat(['é', 'ж'.repeat(20), '😀'.repeat(10), 'a\u0000b']);
  const arrays = [0, 15, 16, 65535, 65536].map((n) => Array.from({ length: n }, (_, i) => i % 200));
  const maps = [0, 15, 16, 300].map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])));
  const shaped = [{ v: 1, t: 'x' }, { code: 'c', message: 'm' }, { kind: 'k', other: 1 }, { nested: { v: 2 } }];
  const bytes = [0, 255, 256, 70_000].map((n) => new Uint8Array(n).fill(7));
  const values: unknown[] = [...ints, ...floats, ...strings, ...arrays, ...maps, ...shaped, ...bytes, null, true, false, [], {}, { a: [1, { b: null }] }];
  for (const body of values) {
    for (const type of [MessageType.Reply, MessageType.Event]) {
      const b = type === MessageType.Event ? { kind: 'k', namespace: 'n', name: 'x', seq: 70, cause: 'c', value: body, status: 'active', data: body } : body;
      const env = codec.decode(codec.encode(type, b, { from, cid: 'c-1' }));
      const got = type === MessageType.Event ? (env.body as { value: unknown; data: unknown }).data : env.body;
      if (JSON.stringify(norm(got)) !== JSON.stringify(norm(body))) {
        t.fail(`${type}: ${JSON.stringify(norm(body)).slice(0, 80)} came back as ${JSON.stringify(norm(got)).slice(0, 80)}`);
        return;
      }
    }
  }
  t.pass(`${values.length} boundary values round-tripped as reply and as event`);
});

t.test('encoded messages stay intact while later ones are written (views are never reused)', async (t) => {
  const codec = new Codec();
  const kept = Array.from({ length: 5000 }, (_, i) => [i, codec.encode(MessageType.Reply, { i, pad: 'p'.repeat(i % 300) }, { from })] as const);
  for (const [i, bytes] of kept) {
    if ((codec.decode<{ i: number }>(bytes).body.i) !== i) {
      t.fail(`message ${i} was overwritten`);
      return;
    }
  }
  t.pass('5000 messages across several chunks intact');
});

t.test('a second codec instance (another process) decodes the first one’s messages', async (t) => {
  const a = new Codec();
  const b = new Codec();
  const body = { kind: 'counter', namespace: 'default', name: 'c1', seq: 1, cause: 'inc', value: 'idle', status: 'active', data: { n: 1, nested: { x: [1, 2] } } };
  const env = b.decode(a.encode(MessageType.Event, body, { from }));
  t.same(env.body, body);
  // and a message packed with the same table stays small: the envelope keys are not repeated
  const bytes = a.encode(MessageType.Command, { type: 'inc', by: 1 }, { from });
  t.ok(bytes.length < 60, `command packs to ${bytes.length} bytes`);
});

t.test('the shared structure table is pinned for protocol major 1', async (t) => {
  t.same(SHARED_STRUCTURES, [
    ['v', 't', 'id', 'cid', 'from', 'ts', 'body'],
    ['code', 'message', 'details'],
    ['kind', 'namespace', 'name', 'seq', 'cause', 'value', 'status', 'data'],
  ]);
  t.equal(PROTOCOL_VERSION, 1000);
});

function expectTyped(t: { fail(message: string): unknown }, fn: () => unknown, cls?: new (...a: never[]) => TroupeError): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof TroupeError)) {
      t.fail(`threw a non-troupe error: ${String(err)}`);
      return;
    }
    if (cls && !(err instanceof cls)) t.fail(`expected ${cls.name}, got ${(err as Error).name}: ${(err as Error).message}`);
    return;
  }
  if (cls) t.fail(`expected ${cls.name}, nothing was thrown`);
}

t.test('random bytes always give a typed error (never another throw, never a hang)', async (t) => {
  const codec = new Codec();
  const r = rng(99);
  let ok = 0;
  for (let i = 0; i < 20_000; i++) {
    const bytes = new Uint8Array(Math.floor(r() * 64) + 1);
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(r() * 256);
    try {
      codec.decode(bytes);
      ok++;
    } catch (err) {
      if (!(err instanceof TroupeError)) {
        t.fail(`case ${i} (${Buffer.from(bytes).toString('hex')}) threw ${String(err)}`);
        return;
      }
    }
  }
  t.equal(ok, 0, 'no random byte string decoded as a valid envelope');
});

t.test('truncated and mutated messages give a typed error or a valid envelope', async (t) => {
  const codec = new Codec();
  const r = rng(7);
  const bytes = codec.encode(MessageType.Command, { type: 'inc', by: 3, note: 'hello' }, { from, cid: 'x' });
  for (let n = 0; n < bytes.length; n++) expectTyped(t, () => codec.decode(bytes.subarray(0, n)), n === 0 ? DecodeError : undefined);
  let rejected = 0;
  for (let i = 0; i < 20_000; i++) {
    const m = Uint8Array.from(bytes);
    const flips = 1 + Math.floor(r() * 3);
    for (let f = 0; f < flips; f++) m[Math.floor(r() * m.length)] = Math.floor(r() * 256);
    try {
      const env = codec.decode(m);
      // a mutation may still be a valid message: then it must satisfy the schema
      t.equal(typeof env.t, 'string');
    } catch (err) {
      if (!(err instanceof TroupeError)) {
        t.fail(`mutation ${i} threw ${String(err)}`);
        return;
      }
      rejected++;
    }
  }
  t.ok(rejected > 10_000, `${rejected} of 20000 mutations rejected with typed errors`);
});

t.test('hostile lengths and nesting are refused, not obeyed', async (t) => {
  const codec = new Codec();
  // array32 / map32 / str32 / bin32 headers claiming 4 GiB
  for (const head of [0xdd, 0xdf, 0xdb, 0xc6]) expectTyped(t, () => codec.decode(Uint8Array.from([head, 0xff, 0xff, 0xff, 0xff, 0x00])), DecodeError);
  // a million nested one-element arrays
  const deep = new Uint8Array(1_000_000).fill(0x91);
  expectTyped(t, () => codec.decode(deep), DecodeError);
});

t.test('oversized payloads are refused on send and on receive', async (t) => {
  const codec = new Codec({ maxPayload: 1024 });
  t.throws(() => codec.encode(MessageType.Reply, 'x'.repeat(2000), { from }), PayloadTooLargeError);
  const big = new Codec().encode(MessageType.Reply, 'x'.repeat(2000), { from });
  try {
    codec.decode(big);
    t.fail('decoded an oversized message');
  } catch (err) {
    t.type(err, PayloadTooLargeError);
    t.match((err as TroupeError).details, { size: big.length, limit: 1024 });
  }
  t.equal(new Codec().maxPayload, 1024 * 1024, 'default limit is NATS’s 1 MiB');
});

t.test('unknown version and unknown type', async (t) => {
  const codec = new Codec();
  const raw = new Packr({ structures: SHARED_STRUCTURES.map((x) => [...x]), maxSharedStructures: 3 });
  const env = (v: number, type: string) => raw.pack({ v, t: type, id: 'i', cid: null, from, ts: 1, body: { type: 'x' } });
  t.throws(() => codec.decode(env(2000, 'cmd')), VersionError, 'major 2 refused');
  t.throws(() => codec.decode(env(999, 'cmd')), VersionError, 'major 0 refused');
  t.doesNotThrow(() => codec.decode(env(1007, 'cmd')), 'a newer minor of the same major is accepted');
  t.throws(() => codec.decode(env(1000, 'nope')), UnknownTypeError);
  try {
    codec.decode(env(2001, 'cmd'));
  } catch (err) {
    t.match((err as Error).message, /protocol version 2\.1 is not supported: this side speaks 1\.0/);
  }
});

t.test('body validation names the field path', async (t) => {
  const types = builtinMessageTypes().register('hb', s.object({ node: s.string({ min: 1 }), cpu: s.int({ min: 0 }) }));
  const codec = new Codec({ types });
  const bytes = codec.encode('hb', { node: 'n1', cpu: -1, extra: true }, { from });
  try {
    codec.decode(bytes);
    t.fail('accepted');
  } catch (err) {
    t.type(err, ValidationError);
    t.match((err as Error).message, /body\.cpu: expected an integer ≥ 0, got -1/);
    t.match((err as Error).message, /body\.extra: unknown field/);
  }
});

t.test('envelope fields are checked', async (t) => {
  const codec = new Codec();
  const plain = new Packr({ useRecords: false });
  t.throws(() => codec.decode(plain.pack([1, 2, 3])), DecodeError, 'an array is no envelope');
  t.throws(() => codec.decode(plain.pack({ v: 1000, t: 'cmd', id: 'i', cid: null, from, ts: 1 })), /body/, 'missing body');
  t.throws(() => codec.decode(plain.pack({ v: 1000, t: 'cmd', id: 7, cid: null, from, ts: 1, body: {} })), /id: expected a message id/);
  t.throws(() => codec.decode(plain.pack({ v: 1000, t: 'cmd', id: 'i', cid: null, from, ts: 1, body: { type: 'x' }, evil: 1 })), /evil/);
  // a plain (non-records) encoding of a valid envelope is still valid msgpack and accepted
  t.equal(codec.decode(plain.pack({ v: 1000, t: 'cmd', id: 'i', cid: null, from, ts: 1, body: { type: 'x' } })).t, 'cmd');
});
