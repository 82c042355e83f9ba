import t from 'tap';
import { Informer, KvStore, packValue, type KObject } from '../../index.js';
import { kindInfo } from '../../protocol/index.js';
import { waitFor, withBus, withNats } from '../helpers/nats.js';

const pod = (name: string, uid: string, rv?: number): KObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', uid, ...(rv !== undefined ? { resourceVersion: String(rv) } : {}) },
  spec: { containers: [{ name: 'c', image: 'x:1' }] },
});
const stored = (obj: KObject) => packValue({ owner: 'test', seq: 1, snapshot: { status: 'active', value: 'live', context: { kind: 'pod', namespace: 'default', name: obj.metadata.name, object: obj } } });

t.test('feed: a write told in-process comes first, and its copy from the watch is not told again', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, bus.subjects.stateBucket);
  const inf = new Informer(bus, kv, kindInfo('Pod')!);
  const heard: string[] = [];
  inf.on((type, p, old) => heard.push(`${type} ${p.metadata.name} ${p.metadata.uid} rv${p.metadata.resourceVersion}${old ? ` (was rv${old.metadata.resourceVersion})` : ''}`));
  const key = (n: string) => bus.subjects.stateKey('pod', 'default', n);
  inf.feed(pod('early', 'u0', 1));
  t.same(heard, [], 'nothing is taken before the first list');
  await inf.start();
  t.teardown(() => inf.stop());

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
