import t from 'tap';
import { ConflictError, KvStore, type WatchEvent } from '../../index.js';
import { withBus, withNats } from '../helpers/nats.js';

const b = (...x: number[]) => Uint8Array.from(x);

t.test('create, expected-revision update, put, delete, list', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, 'kvtest');
  const r1 = await kv.create('pod.default.a', b(1));
  await t.rejects(kv.create('pod.default.a', b(9)), ConflictError, 'create of an existing key conflicts');
  const r2 = await kv.update('pod.default.a', b(2), r1);
  t.ok(r2 > r1, 'the revision rises');
  await t.rejects(kv.update('pod.default.a', b(3), r1), { name: 'ConflictError', message: /changed since it was read/ }, 'a stale revision loses the race');
  t.same([...(await kv.get('pod.default.a'))!.value], [2], 'the losing write left nothing');
  await kv.put('pod.default.b', b(4));
  await kv.put('pod.other.c', b(5));
  await kv.put('svc.default.d', b(6));
  t.same((await kv.list('pod.default.*')).map((e) => e.key).sort(), ['pod.default.a', 'pod.default.b']);
  t.same((await kv.list('pod.>')).length, 3);
  t.same(await kv.list('nothing.>'), [], 'an empty list, not a hang');
  t.same((await kv.keys('svc.>')).sort(), ['svc.default.d']);
  const rb = (await kv.get('pod.default.b'))!.revision;
  await t.rejects(kv.delete('pod.default.b', rb - 1), ConflictError, 'a fenced delete at the wrong revision is refused');
  await kv.delete('pod.default.b', rb);
  t.equal(await kv.get('pod.default.b'), undefined);
  t.same((await kv.list('pod.default.*')).map((e) => e.key), ['pod.default.a'], 'deleted keys are not listed');
});

t.test('watch from a revision sees the later changes in order, then live ones', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, 'kvwatch');
  const r1 = await kv.put('a', b(1));
  await kv.put('b', b(2));
  await kv.put('a', b(3));
  await kv.delete('b');
  const ac = new AbortController();
  const it = await kv.watch({ fromRevision: r1, signal: ac.signal });
  const seen: WatchEvent[] = [];
  let wroteLive = false;
  for await (const e of it) {
    seen.push(e);
    if (!wroteLive && seen.length === 2) {
      wroteLive = true;
      await kv.put('c', b(7));
    }
    if (seen.length === 3) break;
  }
  ac.abort();
  // history 1 keeps one value per key (etcd-style compaction): b's PUT at revision 2 was superseded
  // by its delete, so a watcher resuming after revision 1 sees each key's newest change.
  t.same(
    seen.map((e) => [e.key, e.op, e.revision]),
    [
      ['a', 'PUT', 3],
      ['b', 'DEL', 4],
      ['c', 'PUT', 5],
    ],
  );
  t.same([...seen[2]!.value], [7]);
});

t.test('a list while the keys are being written: every key once, each at least as new as when the list began', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, 'kvchurn');
  const keys = Array.from({ length: 300 }, (_, i) => `pod.default.p${i}`);
  for (const k of keys) await kv.put(k, b(0));
  await kv.put('node.n1', b(1)); // outside the filter, newer than every pod
  let writing = true;
  let writes = 0;
  const writer = (async () => {
    // rewrites keys in a scattered order, and deletes and restores one, for as long as the lists run
    for (let n = 0; writing; n++) {
      const k = keys[(n * 37) % keys.length]!;
      if (n % 50 === 7) {
        await kv.delete('pod.default.p299');
        await kv.put('pod.default.p299', b(2));
      } else await kv.put(k, b(n & 255));
      writes++;
    }
  })();
  try {
    for (let i = 0; i < 25; i++) {
      const before = new Map((await kv.list('pod.default.*')).map((e) => [e.key, e.revision]));
      const listed = await kv.list('pod.default.*');
      const names = listed.map((e) => e.key);
      // p299 may be caught between its delete and its restore
      const expected = keys.filter((k) => k !== 'pod.default.p299' || names.includes(k));
      if (names.length !== new Set(names).size || names.length !== expected.length || !expected.every((k) => names.includes(k))) {
        t.fail(`list ${i}: ${names.length} entries, ${new Set(names).size} distinct, ${expected.length} expected`);
        return;
      }
      const stale = listed.filter((e) => e.revision < (before.get(e.key) ?? 0));
      if (stale.length > 0) {
        t.fail(`list ${i}: ${stale.length} entries older than a list made before it (${stale[0]!.key})`);
        return;
      }
    }
    t.pass('25 lists under writes: each key once, none older than before');
  } finally {
    writing = false;
    await writer;
  }
  t.ok(writes > 0, `the keys were rewritten while the lists ran (${writes} writes)`);
});

t.test('a list ends while eight writers never pause: it is the bucket as it was when the list began', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, 'kvbusy');
  const keys = Array.from({ length: 500 }, (_, i) => `pod.default.p${i}`);
  await Promise.all(keys.map((k) => kv.put(k, b(0))));
  let writing = true;
  let writes = 0;
  const writers = Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      for (let n = w; writing; n += 8) {
        await kv.put(keys[(n * 37) % keys.length]!, b(n & 255));
        writes++;
      }
    }),
  );
  try {
    for (let i = 0; i < 20; i++) {
      const startWrites = writes;
      const listed = await Promise.race([
        kv.list('pod.default.*'),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000).unref()),
      ]);
      if (!listed) {
        t.fail(`list ${i} had not ended after 20 s (${writes - startWrites} writes meanwhile)`);
        return;
      }
      if (listed.length !== keys.length || new Set(listed.map((e) => e.key)).size !== keys.length) {
        t.fail(`list ${i}: ${listed.length} entries of ${keys.length}`);
        return;
      }
    }
    t.pass('20 lists ended under writes, each with every key once');
  } finally {
    writing = false;
    await writers;
  }
  t.ok(writes > 0, `the keys were rewritten while the lists ran (${writes} writes)`);
});

t.test("writes go as the bus's own requests; create over a deleted key, JetStream's refusals and its absence give troupe's errors", async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, 'kvfast', { maxValueSize: 1024 });
  // nats.js's put is not what writes (it is there only as the fallback)
  const inner = (kv as unknown as { kv: { put(...a: unknown[]): Promise<number> } }).kv;
  let viaNatsJs = 0;
  const put = inner.put.bind(inner);
  inner.put = (...a: unknown[]) => {
    viaNatsJs++;
    return put(...a);
  };
  const r1 = await kv.create('pod.default.x', b(1));
  const r2 = await kv.update('pod.default.x', b(2), r1);
  const r3 = await kv.put('pod.default.x', b(3));
  t.ok(r1 < r2 && r2 < r3, 'each write answers its new revision');
  t.equal(viaNatsJs, 0, 'no write went through nats.js');
  await t.rejects(kv.update('pod.default.x', b(4), r1), { name: 'ConflictError', message: 'update pod.default.x: the object changed since it was read (revision mismatch)' });
  await t.rejects(kv.create('pod.default.x', b(5)), { name: 'ConflictError', message: 'create pod.default.x: it exists already' });
  // a deleted key has a delete marker: created again over it
  await kv.delete('pod.default.x');
  const r4 = await kv.create('pod.default.x', b(6));
  t.ok(r4 > r3);
  t.same([...(await kv.get('pod.default.x'))!.value], [6], 'created again after its delete');
  // past the bucket's largest value: JetStream says no, nothing is written
  await t.rejects(kv.put('pod.default.x', new Uint8Array(2048)), { name: 'UnavailableError', message: /^put pod\.default\.x: .*(size|maximum)/i });
  t.same([...(await kv.get('pod.default.x'))!.value], [6], 'the refused write left nothing');
  // the bucket's stream gone: nobody answers the write
  const jsm = await (await import('@nats-io/jetstream')).jetstreamManager(bus.nc);
  await jsm.streams.delete('KV_kvfast');
  await t.rejects(kv.put('pod.default.y', b(7)), { name: 'UnavailableError', message: 'put pod.default.y: JetStream is not available (no responders)' });
});

t.test("a key's subject is made without nats.js, as nats.js makes it; keys it would refuse still go to nats.js", async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, 'kvkeys');
  const inner = (kv as unknown as { kv: { put(...a: unknown[]): Promise<number>; encodeKey(k: string): string; subjectForKey(k: string, edit?: boolean): string } }).kv;
  let viaNatsJs = 0;
  const put = inner.put.bind(inner);
  inner.put = (...a: unknown[]) => {
    viaNatsJs++;
    return put(...a);
  };
  const subjects: string[] = [];
  const sub = bus.nc.subscribe('$KV.kvkeys.>', { callback: (_e, m) => void subjects.push(m.subject) });
  const keys = ['pod.default.a', 'pod.kube-system.web-7d9f-x2k4z', 'config.network', 'a/b=c_d.E9-f', 'node.cluster.hollow-0'];
  for (const [i, key] of keys.entries()) await kv.put(key, b(i));
  await bus.nc.flush();
  t.equal(viaNatsJs, 0, 'none went through nats.js');
  t.same(subjects, keys.map((k) => inner.subjectForKey(inner.encodeKey(k), true)), "each on the subject nats.js would have used");
  for (const [i, key] of keys.entries()) t.same([...(await kv.get(key))!.value], [i], `${key} reads back`);
  // keys the fast path does not take: nats.js decides (and refuses)
  for (const bad of ['.lead', 'trail.', 'a..b', 'sp ace', 'star.*', 'gt.>']) {
    const before = viaNatsJs;
    await kv.put(bad, b(1)).then(
      () => t.fail(`${JSON.stringify(bad)} was written`),
      (err: Error) => t.ok(err instanceof Error, `${JSON.stringify(bad)} refused: ${err.message}`),
    );
    t.equal(viaNatsJs, before + 1, `${JSON.stringify(bad)} went to nats.js`);
  }
  sub.unsubscribe();
});
