import t from 'tap';
import { jetstream } from '@nats-io/jetstream';
import { KvStore } from '../../index.js';
import { StreamTail } from '../../actors/stream-tail.js';
import { waitFor, withBus, withNats } from '../helpers/nats.js';

t.test('a read ends once it has reached the newest message under its filter, not before', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, 'tail');
  const first = await kv.put('pod.default.a', Uint8Array.of(1));
  const last = await kv.put('pod.default.b', Uint8Array.of(2));
  await kv.put('node.n1', Uint8Array.of(3)); // newer, but outside the filter
  const js = jetstream(bus.nc);
  let ended = 0;
  const tail = new StreamTail(js, 'KV_tail', '$KV.tail.pod.>', () => ended++, 10);
  t.teardown(() => tail.stop());
  tail.seen(first);
  // a pause with a message still to come: the guard asks, and keeps waiting
  await new Promise((r) => setTimeout(r, 100));
  t.equal(ended, 0, 'not at the end while a newer message under the filter exists');
  tail.seen(last);
  await waitFor(() => ended === 1, 'the end of the read');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(ended, 1, 'ended once');
});

t.test('an empty filter is at its end at once; a stopped guard never calls back', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  await KvStore.open(bus, 'tail2');
  const js = jetstream(bus.nc);
  let ended = 0;
  const empty = new StreamTail(js, 'KV_tail2', '$KV.tail2.svc.>', () => ended++, 5);
  empty.arm();
  await waitFor(() => ended === 1, 'an empty read ended');
  let stoppedCalls = 0;
  const stopped = new StreamTail(js, 'KV_tail2', '$KV.tail2.svc.>', () => stoppedCalls++, 5);
  stopped.arm();
  stopped.stop();
  await new Promise((r) => setTimeout(r, 60));
  t.equal(stoppedCalls, 0);
});

t.test('a fixed end: the read ends at the newest message when it began, however many follow', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const kv = await KvStore.open(bus, 'tail3');
  const js = jetstream(bus.nc);
  let ended = 0;
  const empty = new StreamTail(js, 'KV_tail3', '$KV.tail3.pod.>', () => ended++, 1000);
  t.equal(await empty.fixEnd(), 0, 'nothing under the filter: the end is 0');
  const a = await kv.put('pod.default.a', Uint8Array.of(1));
  const b = await kv.put('pod.default.b', Uint8Array.of(2));
  const tail = new StreamTail(js, 'KV_tail3', '$KV.tail3.pod.>', () => ended++, 1000);
  t.teardown(() => tail.stop());
  t.equal(await tail.fixEnd(), b, 'the end is the newest message under the filter');
  await kv.put('pod.default.c', Uint8Array.of(3)); // after the read began
  t.equal(tail.seen(a), false, 'not at the end before it');
  t.equal(tail.seen(b), true, 'at the end on reaching it');
  // the end's message replaced before the read reached it: the guard ends the read at the newest one left
  const g = new StreamTail(js, 'KV_tail3', '$KV.tail3.pod.>', () => ended++, 10);
  t.teardown(() => g.stop());
  const end = await g.fixEnd();
  await kv.put('pod.default.c', Uint8Array.of(4)); // replaces the end's message
  t.equal(g.seen(end - 1), false);
  await new Promise((r) => setTimeout(r, 100)); // several pauses: the guard asks each time
  t.equal(ended, 0, 'a newer message exists: still waiting for it');
  t.equal(g.seen(end + 1), true, 'the replacement ends the read');
});
