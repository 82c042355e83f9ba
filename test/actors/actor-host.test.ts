import t from 'tap';
import { ActorClient, ActorDoneError, ActorFailedError, ActorHost, KvStore, MessageType, ensureEventStream, packValue, type ActorHostOptions, type EventBody, type StoredActor } from '../../index.js';
import { counter } from '../fixtures/counter.js';
import { onSocketWrite, withBus, withNats, waitFor, type Teardown } from '../helpers/nats.js';

const storedN = (s: StoredActor | undefined) => (s?.snapshot as unknown as { context: { n: number } }).context.n;

async function cluster(t: Teardown, opts: Omit<ActorHostOptions, 'kinds'> = {}) {
  const nats = await withNats(t);
  const hostBus = await withBus(t, nats.url, { name: 'host' });
  const host = await ActorHost.start(hostBus, { kinds: [counter], ...opts });
  t.teardown(() => host.stop());
  const bus = await withBus(t, nats.url, { name: 'client' });
  return { nats, hostBus, host, bus, client: new ActorClient(bus, counter) };
}

async function collect(it: AsyncIterable<EventBody>, n: number, out: EventBody[] = []): Promise<EventBody[]> {
  for await (const e of it) {
    out.push(e);
    if (out.length >= n) break;
  }
  return out;
}

t.test('request/reply: a command is applied and answered from the snapshot', async (t) => {
  const { client } = await cluster(t);
  t.same(await client.send('default', 'c1', { type: 'inc', by: 5 }), { n: 5, state: 'running' });
  t.same(await client.send('default', 'c1', { type: 'get' }), { n: 5, state: 'running' });
  t.same(await client.send('default', 'other', { type: 'get' }), { n: 0, state: 'running' }, 'actors are independent, started on first message');
});

t.test('one event per transition, in order, before the reply', async (t) => {
  const { client } = await cluster(t);
  const events = client.watch('default', 'c2');
  await client.ready();
  const got = collect(events, 4);
  await client.send('default', 'c2', { type: 'inc', by: 1 }); // init + inc
  await client.send('default', 'c2', { type: 'get' }); // no transition: no event
  await client.send('default', 'c2', { type: 'pause' });
  await client.send('default', 'c2', { type: 'inc', by: 1 }); // ignored while paused: no event
  await client.send('default', 'c2', { type: 'resume' });
  const evs = await got;
  t.same(
    evs.map((e) => [e.seq, e.cause, e.value, (e.data as { n: number }).n]),
    [
      [1, 'xstate.init', 'running', 0],
      [2, 'inc', 'running', 1],
      [3, 'pause', 'paused', 1],
      [4, 'resume', 'running', 1],
    ],
    'init, inc, pause, resume',
  );
});

t.test('1,000 concurrent increments to one counter end at exactly 1,000', async (t) => {
  const { client, hostBus } = await cluster(t);
  const replies = await Promise.all(Array.from({ length: 1000 }, () => client.send('default', 'hot', { type: 'inc', by: 1 })));
  t.equal(Math.max(...replies.map((r) => r.n)), 1000);
  t.equal(new Set(replies.map((r) => r.n)).size, 1000, 'every reply saw a distinct count: commands were serialized');
  t.same(await client.send('default', 'hot', { type: 'get' }), { n: 1000, state: 'running' });
  const stored = await client.stored('default', 'hot');
  t.equal(storedN(stored), 1000, 'the persisted snapshot holds all 1,000');
  const writes = hostBus.metrics.get('snapshot_writes_total');
  t.ok(writes < 1000, `snapshot writes were coalesced (${writes} writes for 1,000 commands)`);
});

t.test('new actors read their snapshots at once, not one after another', async (t) => {
  const nats = await withNats(t);
  const hostBus = await withBus(t, nats.url, { name: 'host' });
  const store = await KvStore.open(hostBus, hostBus.subjects.stateBucket);
  // the real store, with each read held a little and the reads under way at once counted
  let inFlight = 0;
  let most = 0;
  const get = store.get.bind(store);
  store.get = async (key: string) => {
    most = Math.max(most, ++inFlight);
    await new Promise((r) => setTimeout(r, 50));
    try {
      return await get(key);
    } finally {
      inFlight--;
    }
  };
  const host = await ActorHost.start(hostBus, { kinds: [counter], store });
  t.teardown(() => host.stop());
  const client = new ActorClient(await withBus(t, nats.url, { name: 'client' }), counter);
  const replies = await Promise.all(Array.from({ length: 5 }, (_, i) => client.send('default', `fresh-${i}`, { type: 'inc', by: i + 1 })));
  t.same(replies.map((r) => r.n), [1, 2, 3, 4, 5], 'each started and answered');
  t.equal(most, 5, 'all five reads were under way together');
});

t.test('an actor that throws answers with a typed error and restarts from its last snapshot', async (t) => {
  const { client, hostBus } = await cluster(t);
  await client.send('default', 'c3', { type: 'inc', by: 7 });
  await t.rejects(client.send('default', 'c3', { type: 'boom' }), ActorFailedError);
  t.same(await client.send('default', 'c3', { type: 'get' }), { n: 7, state: 'running' }, 'back, with its state');
  t.equal(hostBus.metrics.get('actor_failures_total', { kind: 'counter' }), 1);
});

t.test('an actor in its final state refuses further commands', async (t) => {
  const { client } = await cluster(t);
  t.same(await client.send('default', 'c4', { type: 'finish' }), { n: 0, state: 'finished' });
  await t.rejects(client.send('default', 'c4', { type: 'inc', by: 1 }), ActorDoneError);
});

t.test('a second host started on the same store resumes the actor from its snapshot', async (t) => {
  const { nats, host, client, hostBus } = await cluster(t);
  await ensureEventStream(hostBus);
  await client.send('default', 'c5', { type: 'inc', by: 3 });
  await host.stop();
  const bus2 = await withBus(t, nats.url, { name: 'host2' });
  const host2 = await ActorHost.start(bus2, { kinds: [counter] });
  t.teardown(() => host2.stop());
  t.same(await client.send('default', 'c5', { type: 'inc', by: 1 }), { n: 4, state: 'running' });
  // the events stream recorded both hosts' events, and the sequence continued across them
  const hist: [number, string][] = [];
  for await (const e of client.history('default', 'c5')) hist.push([e.seq, e.cause]);
  t.same(hist, [
    [1, 'xstate.init'],
    [2, 'inc'],
    [3, 'inc'],
  ]);
});

t.test('fresh: an actor said to be new starts without a store read; its events wait for its first write, then come before the answer', async (t) => {
  const nats = await withNats(t);
  const hostBus = await withBus(t, nats.url, { name: 'host' });
  const store = await KvStore.open(hostBus, hostBus.subjects.stateBucket);
  let reads = 0;
  const get = store.get.bind(store);
  store.get = (key: string) => {
    reads++;
    return get(key);
  };
  const asked: string[] = [];
  const host = await ActorHost.start(hostBus, {
    kinds: [counter],
    store,
    fresh: (kind, key, command) => {
      asked.push(`${kind} ${key.namespace}/${key.name} ${command.type}`);
      return key.name.startsWith('new-');
    },
  });
  t.teardown(() => host.stop());
  const bus = await withBus(t, nats.url, { name: 'client' });
  const client = new ActorClient(bus, counter);
  // the order the host sent them in: callbacks on one connection run in the order its messages
  // arrive, which is the order the host published them (promises would add their own hops)
  const order: string[] = [];
  const seen: EventBody[] = [];
  bus.nc.subscribe(bus.subjects.evt('counter', 'default', 'new-1'), {
    callback: (_e, m) => {
      order.push('event');
      seen.push(bus.codec.decode<EventBody>(m.data).body);
    },
  });
  bus.nc.subscribe('test.fresh.reply', {
    callback: (_e, m) => {
      order.push('reply');
      replied(bus.codec.decode(m.data).body);
    },
  });
  let replied!: (body: unknown) => void;
  const reply = new Promise((r) => (replied = r));
  await bus.flush();
  bus.nc.publish(bus.subjects.cmd('counter', 'default', 'new-1'), bus.codec.encode('cmd', { type: 'inc', by: 2 }, { from: bus.from }), { reply: 'test.fresh.reply' });
  t.same(await reply, { n: 2, state: 'running' });
  t.same(seen.map((e) => [e.seq, e.cause, (e.data as { n: number }).n]), [
    [1, 'xstate.init', 0],
    [2, 'inc', 2],
  ]);
  t.same(order, ['event', 'event', 'reply'], 'the held events went out before the answer');
  t.equal(reads, 0, 'no store read');
  t.equal(storedN(await client.stored('default', 'new-1')), 2, 'its first write created the entry');
  t.same(await client.send('default', 'new-1', { type: 'inc', by: 1 }), { n: 3, state: 'running' }, 'and it goes on as any actor');
  t.same(asked, ['counter default/new-1 inc'], 'asked once, for the actor started');
  await client.send('default', 'old-1', { type: 'inc', by: 1 });
  t.equal(reads, 1, 'an actor not said to be new is read');
});

t.test('fresh, wrongly: an actor said to be new whose key has an entry is dropped unheard, and its commands go to one loaded from the store', async (t) => {
  const nats = await withNats(t);
  // a first host leaves the counter at 5
  const bus1 = await withBus(t, nats.url, { name: 'host1' });
  const host1 = await ActorHost.start(bus1, { kinds: [counter] });
  const bus = await withBus(t, nats.url, { name: 'client' });
  const client = new ActorClient(bus, counter);
  await client.send('default', 'c', { type: 'inc', by: 5 });
  await host1.stop();
  // the next one is told (wrongly) that it is new
  const bus2 = await withBus(t, nats.url, { name: 'host2' });
  const host2 = await ActorHost.start(bus2, { kinds: [counter], fresh: () => true });
  t.teardown(() => host2.stop());
  const events: EventBody[] = [];
  const watching = collect(client.watch('default', 'c'), 2, events);
  await client.ready();
  const replies = await Promise.all([client.send('default', 'c', { type: 'inc', by: 1 }), client.send('default', 'c', { type: 'inc', by: 10 })]);
  t.same(replies.map((r) => r.n), [6, 16], 'both answered from the stored state, in order');
  await watching;
  await client.send('default', 'c', { type: 'get' });
  t.same(
    events.map((e) => [e.seq, (e.data as { n: number }).n]),
    [
      [3, 6],
      [4, 16],
    ],
    'no event of the unheard actor went out: the sequence goes on from the stored one',
  );
  t.equal(storedN(await client.stored('default', 'c')), 16);
  t.equal(bus2.metrics.get('actor_fresh_conflicts_total', { kind: 'counter' }), 1);
});

t.test('a host that lost an actor to another writer lets it go (fenced by revision)', async (t) => {
  const { client, hostBus, host } = await cluster(t);
  await client.send('default', 'c6', { type: 'inc', by: 1 });
  // another writer (a second host that took the actor over) stores its own state for it
  const stored = (await client.stored('default', 'c6'))!;
  const snapshot = stored.snapshot as unknown as { context: { n: number } };
  snapshot.context.n = 100;
  await host.store.update('counter.default.c6', packValue({ owner: 'another-host', seq: stored.seq + 1, snapshot }), stored.revision);
  // this host's next write is fenced off: the command fails with a conflict, the host lets go
  await t.rejects(client.send('default', 'c6', { type: 'inc', by: 1 }), { name: 'ConflictError', message: /another host wrote this actor/ });
  t.equal(hostBus.metrics.get('snapshot_conflicts_total'), 1);
  // the next command loads the actor afresh, from the other writer's state
  t.same(await client.send('default', 'c6', { type: 'inc', by: 1 }), { n: 101, state: 'running' });
});

t.test('ActorClient watch of a whole kind sees every actor', async (t) => {
  const { client } = await cluster(t);
  const events = client.watch();
  await client.ready();
  const got = collect(events, 4);
  await client.send('ns-a', 'x', { type: 'inc', by: 1 });
  await client.send('ns-b', 'y', { type: 'inc', by: 1 });
  const evs = await got;
  t.same(new Set(evs.map((e) => `${e.namespace}/${e.name}`)), new Set(['ns-a/x', 'ns-b/y']));
});


t.test("persist 'async': answers at once, writes coalesced behind, flushed on stop", async (t) => {
  const nats = await withNats(t);
  const hostBus = await withBus(t, nats.url);
  const kind = { ...counter, kind: 'acounter', persist: 'async' as const };
  const host = await ActorHost.start(hostBus, { kinds: [kind], asyncPersistDelay: 50 });
  const client = new ActorClient(await withBus(t, nats.url), kind);
  for (let i = 1; i <= 50; i++) t.equal((await client.send('default', 'a', { type: 'inc', by: 1 })).n, i, `reply ${i}`);
  const writes = hostBus.metrics.get('snapshot_writes_total');
  t.ok(writes < 25, `50 sequential commands made ${writes} writes`);
  await host.stop();
  t.equal(storedN(await client.stored('default', 'a')), 50, 'stop flushed the last changes');
});

t.test('onTransition: followers in the process get each event as published, and one that throws harms nothing', async (t) => {
  const { host, client } = await cluster(t);
  const direct: EventBody[] = [];
  const stop = host.onTransition((e) => direct.push(e));
  host.onTransition(() => {
    throw new Error('a follower that fails');
  });
  const onBus = client.watch('default', 'f1');
  await client.ready();
  await client.send('default', 'f1', { type: 'inc', by: 1 });
  await client.send('default', 'f1', { type: 'inc', by: 2 });
  const published = await collect(onBus, 3);
  t.same(direct, published, 'the same events, in the same order, as on the bus');
  t.same(direct.map((e) => (e.data as { n: number }).n), [0, 1, 3]);
  stop();
  await client.send('default', 'f1', { type: 'inc', by: 4 });
  t.equal(direct.length, 3, 'none after it stopped');
  t.same(await client.send('default', 'f1', { type: 'get' }), { n: 7, state: 'running' }, 'the actor kept serving');
});

t.test("persist 'none': an actor starts without reading the store, and nothing is written for it", async (t) => {
  const nats = await withNats(t);
  const hostBus = await withBus(t, nats.url);
  const kind = { ...counter, kind: 'ncounter', persist: 'none' as const };
  // bytes at its key that no snapshot decodes to: a host that read them could not start the actor
  const store = await KvStore.open(hostBus, hostBus.subjects.stateBucket);
  const key = hostBus.subjects.stateKey('ncounter', 'default', 'n1');
  const garbage = Uint8Array.of(0xc1, 0xc1, 0xc1);
  await store.put(key, garbage);
  const host = await ActorHost.start(hostBus, { kinds: [kind] });
  t.teardown(() => host.stop());
  const client = new ActorClient(await withBus(t, nats.url), kind);
  t.same(await client.send('default', 'n1', { type: 'inc', by: 2 }), { n: 2, state: 'running' }, 'started fresh');
  t.same(await client.send('default', 'n1', { type: 'inc', by: 3 }), { n: 5, state: 'running' });
  t.same((await store.get(key))?.value, garbage, 'the entry is as it was');
  t.equal(hostBus.metrics.get('snapshot_writes_total'), 0, 'no snapshot written');
});

t.test("persist 'async': under a steady stream of commands, one write per delay at most", async (t) => {
  const nats = await withNats(t);
  const hostBus = await withBus(t, nats.url);
  const kind = { ...counter, kind: 'scounter', persist: 'async' as const };
  const host = await ActorHost.start(hostBus, { kinds: [kind], asyncPersistDelay: 100 });
  t.teardown(() => host.stop());
  const client = new ActorClient(await withBus(t, nats.url), kind);
  // commands one after the other for ~1 s, each answered at once: the actor is dirty the whole time
  const t0 = Date.now();
  let n = 0;
  while (Date.now() - t0 < 1000) {
    await client.send('default', 's', { type: 'inc', by: 1 });
    n++;
  }
  const elapsed = Date.now() - t0;
  const writes = hostBus.metrics.get('snapshot_writes_total');
  // one write per 100 ms, plus the first and the one in flight; without the wait between writes
  // it writes back to back, one per store round trip
  t.ok(writes <= Math.ceil(elapsed / 100) + 2, `${n} commands in ${elapsed} ms made ${writes} writes`);
  await waitFor(async () => storedN(await client.stored('default', 's')) === n, 'the last change written behind');
});

t.test('maxResident: past the cap the quietest actors leave memory, never one busy within the last second', async (t) => {
  const { host, hostBus, client } = await cluster(t, { maxResident: 5 });
  for (let i = 0; i < 5; i++) await client.send('default', `old${i}`, { type: 'inc', by: i + 1 });
  // over the cap at once, but every actor was busy within the second: all stay
  await client.send('default', 'early', { type: 'inc', by: 1 });
  await new Promise((r) => setImmediate(r));
  t.equal(host.actorCount(), 6, 'none idle for a second yet: none leaves');
  await new Promise((r) => setTimeout(r, 1100));
  await client.send('default', 'old4', { type: 'inc', by: 10 });
  for (let i = 0; i < 3; i++) await client.send('default', `new${i}`, { type: 'inc', by: 1 });
  await new Promise((r) => setImmediate(r));
  // started order: old0..old4, early, new0..; old4 just took a command and every new one is new
  t.equal(host.actorCount(), 4, 'down to nine tenths of the cap');
  t.ok(hostBus.metrics.get('actors_passivated_total') >= 5, 'counted as passivated');
  const r = await client.send('default', 'old0', { type: 'inc', by: 1 });
  t.equal(r.n, 2, 'a passivated actor resumes from its snapshot');
  t.equal((await client.send('default', 'old4', { type: 'get' })).n, 15, 'the busy one kept its state');
});

t.test('passivation: an idle actor leaves memory and comes back from its snapshot on its next command', async (t) => {
  const { host, client } = await cluster(t, { idleMs: 60_000 });
  await client.send('default', 'idle', { type: 'inc', by: 5 });
  await client.send('default', 'busy', { type: 'inc', by: 1 });
  t.equal(host.actorCount(), 2);
  t.equal(host.passivateIdle(60_000), 0, 'nothing is idle yet');
  t.equal(host.passivateIdle(0), 2, 'both are idle for 0 ms');
  t.equal(host.actorCount(), 0, 'gone from memory');
  const r = await client.send('default', 'idle', { type: 'inc', by: 2 });
  t.equal(r.n, 7, 'resumed from its snapshot');
  t.equal(host.actorCount(), 1);
});

t.test('deliver: a command from this process gets the answer a bus caller gets, without crossing the bus', async (t) => {
  const { host, hostBus, client } = await cluster(t);
  const seen: string[] = [];
  hostBus.nc.subscribe(hostBus.subjects.cmdAll('counter'), { callback: (_e, m) => void seen.push(m.subject) });
  await hostBus.flush();
  t.same(await host.deliver('counter', 'default', 'd1', { type: 'inc', by: 3 } as never), { n: 3, state: 'running' });
  t.same(await client.send('default', 'd1', { type: 'get' }), { n: 3, state: 'running' }, 'the same actor as on the bus');
  t.same(await host.deliver('counter', 'default', 'd1', { type: 'get' }), { n: 3, state: 'running' });
  t.equal(storedN(await client.stored('default', 'd1')), 3, 'persisted before the answer');
  await t.rejects(host.deliver('counter', 'default', 'd1', { type: 'inc', by: 0 } as never), { name: 'ValidationError', message: /by/ }, 'validated as a bus command is');
  await t.rejects(host.deliver('nothing', 'default', 'd1', { type: 'get' }), { name: 'UnavailableError', message: /no actor kind nothing/ });
  t.same(seen, ['troupe.default.cmd.counter.default.d1'], 'only the bus caller’s command went through the server');
  await host.stop();
  await t.rejects(host.deliver('counter', 'default', 'd1', { type: 'get' }), { name: 'UnavailableError', message: /stopped/ });
});

t.test('fence: while it names a reason no write goes out (retried, then a typed error); onStored tells writes and deletions', async (t) => {
  let fenced: string | undefined;
  const told: string[] = [];
  const { host, client, hostBus } = await cluster(t, { fence: () => fenced, persistTimeout: 1500 });
  const ending = await ActorHost.start(hostBus, { kinds: [{ ...counter, kind: 'ending', deleteWhenDone: true }], fence: () => fenced, scope: 'x' });
  t.teardown(() => ending.stop());
  for (const h of [host, ending]) h.onStored((w) => told.push(`${w.kind} ${w.namespace}/${w.name} ${w.stored ? `n=${storedN(w.stored)}` : 'deleted'} rv${w.revision}`));
  t.same(await client.send('default', 'f1', { type: 'inc', by: 1 }), { n: 1, state: 'running' });
  t.match(told, [/^counter default\/f1 n=1 rv\d+$/]);

  fenced = 'not leading';
  const refused = hostBus.metrics.get('snapshot_writes_fenced_total');
  const held = client.send('default', 'f1', { type: 'inc', by: 1 });
  await waitFor(() => hostBus.metrics.get('snapshot_writes_fenced_total') > refused + 1, 'the write refused, and tried again');
  t.equal(told.length, 1, 'nothing written while fenced');
  fenced = undefined;
  t.same(await held, { n: 2, state: 'running' }, 'written once the fence lifts, then answered');
  t.match(told[1], /^counter default\/f1 n=2 rv\d+$/);

  fenced = 'not leading';
  await t.rejects(client.send('default', 'f1', { type: 'inc', by: 1 }), { code: 'TRP_ERR_PERSIST', message: /not written: not leading/ }, 'past persistTimeout: a typed error');
  fenced = undefined;

  // a kind whose actors are deleted when done: the deletion is told, with its revision
  const ec = new ActorClient(client.bus, { ...counter, kind: 'ending' }, 'x');
  await ec.send('default', 'e1', { type: 'inc', by: 3 });
  await ec.send('default', 'e1', { type: 'finish' }).catch(() => undefined);
  await waitFor(() => told.some((l) => l.startsWith('ending default/e1 deleted')), 'the deletion told');
  const [made, gone] = told.filter((l) => l.startsWith('ending')).map((l) => Number(l.split(' rv')[1]));
  t.ok(gone! > made!, 'the deletion has its own, later revision');
});

t.test('onCreating: a creation is told as its write goes out, with its bytes; what a follower publishes for it goes out with the write, at once when creations are not a stream; onStored then says it was created', async (t) => {
  const { host, hostBus } = await cluster(t);
  const creating: string[] = [];
  const stored: string[] = [];
  let urgent = true;
  const writes: string[] = [];
  onSocketWrite(hostBus, (b) => writes.push(Buffer.from(b).toString('latin1')));
  // whether the store write had gone out, with what was told, by the first microtask after it was queued
  const inTheCall: boolean[] = [];
  host.onCreating((w) => {
    creating.push(`${w.namespace}/${w.name} rv${w.revision} n=${storedN(w.stored!)} bytes=${w.bytes!.length}`);
    hostBus.publish(`told.${w.name}`, MessageType.Reply, { name: w.name });
    queueMicrotask(() => inTheCall.push(writes.some((b) => b.includes(`told.${w.name}`) && b.includes('$KV.'))));
    return urgent;
  });
  host.onStored((w) => stored.push(`${w.namespace}/${w.name} created=${w.created}`));

  // a caller in the process: no one on the bus waits for the write, only the follower makes it urgent
  const made = host.deliver('counter', 'default', 'c1', { type: 'inc', by: 2 } as { type: string });
  await waitFor(() => creating.length === 1 || undefined, 'the creation told');
  t.match(creating[0], /^default\/c1 rv0 n=2 bytes=\d+$/, 'before the store has it (revision 0), with its bytes');
  const first = writes.findIndex((w) => w.includes('told.c1'));
  t.ok(first >= 0, 'what the follower published went out');
  t.match(writes[first], /told\.c1[\s\S]*\$KV\./, 'in the same socket write as the store write, after it');
  t.same(inTheCall, [true], 'written at once, not at the end of the turn');
  await made;
  t.same(stored, ['default/c1 created=true'], 'stored: created');
  await host.deliver('counter', 'default', 'c1', { type: 'inc', by: 1 } as { type: string });
  t.same(stored, ['default/c1 created=true', 'default/c1 created=false'], 'an update is no creation');
  t.equal(creating.length, 1, 'nor told as one');
  // a follower with nothing urgent: the write waits for the end of the turn, as any
  urgent = false;
  writes.length = 0;
  const second = host.deliver('counter', 'default', 'c2', { type: 'inc', by: 1 } as { type: string });
  await waitFor(() => creating.length === 2 || undefined, 'the second creation told');
  await second;
  t.ok(writes.some((w) => w.includes('told.c2') && w.includes('$KV.')), 'still written together');
  t.same(inTheCall, [true, false], 'at the end of the turn');
});

t.test('a command that changes nothing is answered from the snapshot; a machine with eventless transitions still gets every command', async (t) => {
  const { assign, setup } = await import('xstate');
  const { defineKind, s } = await import('../../index.js');
  // `seen` is set by an eventless transition that looks at the event: only a real send sets it
  const machine = setup({ types: {} as { context: { seen: number; n: number }; events: { type: 'ping' } | { type: 'get' } | { type: 'inc' } } }).createMachine({
    context: { seen: 0, n: 0 },
    always: { guard: ({ context, event }) => event.type === 'ping' && context.seen === 0, actions: assign({ seen: 1 }) },
    on: { ping: {}, get: {}, inc: { actions: assign({ n: ({ context }) => context.n + 1 }) } },
  });
  const watcher = defineKind({ kind: 'watcher', machine, events: s.union('type', { ping: s.object({}), get: s.object({}), inc: s.object({}) }), reply: (snap) => snap.context, persist: 'none' });
  const plain = defineKind({ ...counter, kind: 'plaincounter', persist: 'none' });
  const nats = await withNats(t);
  const hostBus = await withBus(t, nats.url, { name: 'host' });
  const host = await ActorHost.start(hostBus, { kinds: [watcher, plain] });
  t.teardown(() => host.stop());
  const bus = await withBus(t, nats.url, { name: 'client' });
  const w = new ActorClient(bus, watcher);
  t.same(await w.send('default', 'w1', { type: 'ping' }), { seen: 1, n: 0 }, 'the eventless transition ran: the command was sent to the machine');
  t.same(await w.send('default', 'w1', { type: 'inc' }), { seen: 1, n: 1 });
  const c = new ActorClient(bus, plain);
  const events: EventBody[] = [];
  const it = c.watch('default', 'p1');
  await c.ready();
  const got = collect(it, 3, events);
  t.same(await c.send('default', 'p1', { type: 'inc', by: 2 }), { n: 2, state: 'running' });
  for (let i = 0; i < 5; i++) t.same(await c.send('default', 'p1', { type: 'get' }), { n: 2, state: 'running' }, 'a query answered from the snapshot');
  t.same(await c.send('default', 'p1', { type: 'inc', by: 1 }), { n: 3, state: 'running' }, 'an update after queries still changes it');
  t.same((await got).map((e) => e.cause), ['xstate.init', 'inc', 'inc'], 'and the queries made no event');
  t.equal(hostBus.metrics.get('actor_commands_total'), 9, 'every command counted');
});
