import t from 'tap';
import { Informer, KvStore, packValue, type KObject } from '../../index.js';
import { kindInfo } from '../../protocol/index.js';
import { waitFor, withBus, withNats, type Teardown } from '../helpers/nats.js';

const pod = (name: string, uid: string, rv?: number): KObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', uid, ...(rv !== undefined ? { resourceVersion: String(rv) } : {}) },
  spec: { containers: [{ name: 'c', image: 'x:1' }] },
});
const stored = (obj: KObject) => packValue({ owner: 'test', seq: 1, snapshot: { status: 'active', value: 'live', context: { kind: 'pod', namespace: 'default', name: obj.metadata.name, object: obj } } });

/** A pod informer (not started) on a fresh nats-server, its bus and store, and the keys of pods. */
async function podInformer(t: Teardown) {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, bus.subjects.stateBucket);
  const inf = new Informer(bus, kv, kindInfo('Pod')!);
  t.teardown(() => inf.stop());
  return { bus, kv, inf, heard: [] as string[], key: (n: string) => bus.subjects.stateKey('pod', 'default', n) };
}

t.test('feed: a write told in-process comes first, and its copy from the watch is not told again', async (t) => {
  const { kv, inf, heard, key } = await podInformer(t);
  inf.on((type, p, old) => heard.push(`${type} ${p.metadata.name} ${p.metadata.uid} rv${p.metadata.resourceVersion}${old ? ` (was rv${old.metadata.resourceVersion})` : ''}`));
  inf.feed(pod('early', 'u0', 1));
  t.same(heard, [], 'nothing is taken before the first list');
  await inf.start();

  const r1 = await kv.create(key('p1'), stored(pod('p1', 'u1')));
  await waitFor(() => heard.length === 1, 'p1 from the watch');
  // the next write's revision is known (nothing else writes): told first, then written
  const r2 = r1 + 1;
  inf.feed(pod('p1', 'u1', r2));
  t.equal(await kv.update(key('p1'), stored(pod('p1', 'u1')), r1), r2);
  inf.feed(pod('p1', 'u1', r1));
  // another key after it: once it is heard, the watch has passed p1's second revision
  await kv.create(key('marker'), stored(pod('marker', 'm')));
  await waitFor(() => heard.some((h) => h.startsWith('add marker')), 'the marker from the watch');
  t.same(heard.filter((h) => h.includes(' p1 ')), [`add p1 u1 rv${r1}`, `update p1 u1 rv${r2} (was rv${r1})`], 'the fed revision once; the watch’s copy and an older one not again');
  t.equal(inf.get('default', 'p1')!.metadata.resourceVersion, String(r2));

  // the same name, another uid (deleted and made again): told as one going and one coming
  heard.length = 0;
  inf.feed(pod('p1', 'u2', r2 + 10));
  t.same(heard, [`delete p1 u1 rv${r2}`, `add p1 u2 rv${r2 + 10}`]);
  // a deletion on the watch older than what is held is not applied
  heard.length = 0;
  await kv.delete(key('p1'));
  await kv.create(key('marker2'), stored(pod('marker2', 'm2')));
  await waitFor(() => heard.some((h) => h.startsWith('add marker2')), 'the second marker');
  t.same(heard, [`add marker2 m2 rv${r2 + 3}`], 'the older deletion is skipped');
  t.ok(inf.get('default', 'p1'), 'p1 (the newer) is still held');
});

t.test('feedDelete: told at once, and the older versions the watch still brings do not bring it back', async (t) => {
  const { kv, inf, heard, key } = await podInformer(t);
  inf.on((type, p) => heard.push(`${type} ${p.metadata.name} rv${p.metadata.resourceVersion}`));
  await inf.start();
  t.ok(inf.watchingStore);
  // written and deleted before the watch has brought either: the host tells both at once
  const r1 = await kv.create(key('p1'), stored(pod('p1', 'u1')));
  inf.feed(pod('p1', 'u1', r1));
  const r2 = await kv.delete(key('p1'), r1);
  t.equal(r2, r1 + 1, "the deletion's revision");
  inf.feedDelete('default', 'p1', r2!);
  t.same(heard, [`add p1 rv${r1}`, `delete p1 rv${r1}`]);
  t.equal(inf.get('default', 'p1'), undefined);
  inf.feedDelete('default', 'p1', r2!);
  inf.feedDelete('default', 'never', r2! + 5);
  t.equal(heard.length, 2, 'a deletion of what is not held tells nothing');
  await kv.create(key('marker'), stored(pod('marker', 'm')));
  await waitFor(() => heard.some((h) => h.startsWith('add marker')), 'the marker from the watch');
  t.same(heard, [`add p1 rv${r1}`, `delete p1 rv${r1}`, `add marker rv${r2! + 1}`], "the watch's copies of p1 (its write, its deletion) change nothing");
  // made again after its deletion: taken from the watch as new
  const r4 = await kv.create(key('p1'), stored(pod('p1', 'u2')));
  await waitFor(() => inf.get('default', 'p1')?.metadata.uid === 'u2', 'p1 made again');
  t.equal(heard.at(-1), `add p1 rv${r4}`);
});

t.test('unwatch: then only what is told changes it; resync takes what reached the store behind its back', async (t) => {
  const { kv, inf, heard, key } = await podInformer(t);
  inf.on((type, p) => heard.push(`${type} ${p.metadata.name} ${p.metadata.uid}`));
  const ra = await kv.create(key('a'), stored(pod('a', 'ua')));
  const rb = await kv.create(key('b'), stored(pod('b', 'ub')));
  await inf.start();
  t.same(heard, ['add a ua', 'add b ub']);
  await inf.unwatch();
  t.notOk(inf.watchingStore);

  // behind its back: a changed, b deleted, c made
  await kv.update(key('a'), stored(pod('a', 'ua2')), ra);
  await kv.delete(key('b'), rb);
  await kv.create(key('c'), stored(pod('c', 'uc')));
  // told: d made (by "this process")
  const rd = await kv.create(key('d'), stored(pod('d', 'ud')));
  inf.feed(pod('d', 'ud', rd));
  await new Promise((r) => setTimeout(r, 300));
  t.same(heard, ['add a ua', 'add b ub', 'add d ud'], 'unwatched: only what it is told');

  // a write told while the list runs (after it began) is not taken for deleted
  heard.length = 0;
  const listing = inf.resync();
  const re = await kv.create(key('e'), stored(pod('e', 'ue')));
  inf.feed(pod('e', 'ue', re));
  const changed = await listing;
  t.same(heard.filter((h) => !h.endsWith(' e ue')).sort(), ['add c uc', 'delete a ua', 'add a ua2', 'delete b ub'].sort(), 'the changes made behind its back');
  t.equal(changed, 3, 'a, b and c changed');
  t.same([...inf.list()].map((p) => p.metadata.name).sort(), ['a', 'c', 'd', 'e']);
  t.equal(inf.get('default', 'a')!.metadata.uid, 'ua2');
  t.equal(await inf.resync(), 0, 'a second resync finds nothing');
});
