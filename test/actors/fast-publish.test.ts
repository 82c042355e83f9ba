import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { FLUSH_AT, FastPublisher, settleRequestsCheaply } from '../../actors/fast-publish.js';
import { Bus } from '../../actors/bus.js';
import { startNatsServer } from '../../actors/nats-server.js';
import { Codec, MessageType } from '../../protocol/index.js';
import { onSocketWrite, tempDir, waitFor, withBus, withNats } from '../helpers/nats.js';

t.test('frames go straight to the connection and arrive byte for byte, in order', async (t) => {
  const nats = await withNats(t);
  const pubNc = await connect({ servers: nats.url });
  const subNc = await connect({ servers: nats.url });
  t.teardown(async () => {
    await pubNc.close();
    await subNc.close();
  });
  const got: { subject: string; data: Uint8Array }[] = [];
  subNc.subscribe('fp.>', {
    callback: (_e, m) => {
      got.push({ subject: m.subject, data: m.data });
    },
  });
  await subNc.flush();
  const p = new FastPublisher(pubNc);
  t.ok(p.direct, 'this nats.js exposes its protocol handler');
  const sent: { subject: string; data: Uint8Array }[] = [];
  for (let i = 0; i < 500; i++) {
    // sizes across the digit boundaries of the length field, empty included, and a utf-8 subject
    const data = Uint8Array.from({ length: (i * 37) % 1200 }, (_, j) => (i + j) & 255);
    const subject = i % 7 === 0 ? `fp.é.${i}` : `fp.a.${i % 13}`;
    p.publish(subject, data);
    sent.push({ subject, data });
  }
  await pubNc.flush();
  await waitFor(() => got.length === sent.length, 'every message');
  const mismatch = sent.findIndex((s, i) => s.subject !== got[i]!.subject || Buffer.compare(Buffer.from(s.data), Buffer.from(got[i]!.data)) !== 0);
  t.equal(mismatch, -1, 'same subjects and payloads, same order');
  t.equal(pubNc.stats().outMsgs, 500, 'counted as nats.js counts');
});

t.test('what nats.js refuses is still refused, with its own errors', async (t) => {
  const nats = await withNats(t);
  const nc = await connect({ servers: nats.url });
  const p = new FastPublisher(nc);
  t.throws(() => p.publish('has space', Uint8Array.of(1)), { name: 'InvalidSubjectError' }, 'a subject with whitespace');
  t.throws(() => p.publish('', Uint8Array.of(1)), { name: 'InvalidSubjectError' }, 'an empty subject');
  const max = nc.info!.max_payload;
  t.throws(() => p.publish('fp.big', new Uint8Array(max + 1)), /max_payload/, 'a payload past the server limit');
  await nc.close();
  t.throws(() => p.publish('fp.closed', Uint8Array.of(1)), { name: 'ClosedConnectionError' }, 'a closed connection');
});

t.test('messages packed straight into their frames (Bus.publish) arrive whole, in order, and as the codec reads them', async (t) => {
  const nats = await withNats(t);
  const pub = await withBus(t, nats.url, { name: 'frames' });
  const sub = await withBus(t, nats.url);
  const got: { subject: string; body: unknown; from: string }[] = [];
  sub.subscribe('fr.>', (env, msg) => void got.push({ subject: msg.subject, body: env.body, from: env.from }), { accept: [MessageType.Event, MessageType.Reply] });
  await sub.flush();
  const sent: { subject: string; body: unknown }[] = [];
  for (let i = 0; i < 400; i++) {
    const subject = i % 5 === 0 ? `fr.é.${i}` : `fr.a.${i % 11}`;
    // events (written by hand) and replies (any value) of sizes across the length field's digits
    const body =
      i % 2 === 0
        ? { kind: 'k', namespace: 'default', name: `n${i}`, seq: i, cause: 'go', value: 'x'.repeat((i * 53) % 3000), status: 'active', data: { i, list: [i, -i, i / 3] } }
        : { text: 'é'.repeat((i * 31) % 700), n: i };
    pub.publish(subject, i % 2 === 0 ? MessageType.Event : MessageType.Reply, body);
    sent.push({ subject, body });
  }
  await pub.flush();
  await waitFor(() => got.length === sent.length, 'every message');
  t.same(
    got.map((g) => [g.subject, g.body]),
    sent.map((s) => [s.subject, s.body]),
    'same subjects and bodies, same order',
  );
  t.ok(got.every((g) => g.from === pub.from), 'sender in every envelope');
  t.equal(pub.nc.stats().outMsgs, 400, 'counted as nats.js counts');
});

t.test('a framed message past the limits is refused and nothing is sent; a bad subject gets nats.js error', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url, { codec: new Codec({ maxPayload: 64 * 1024 }) });
  const before = bus.nc.stats().outMsgs;
  t.throws(() => bus.publish('fr.big', MessageType.Reply, { blob: 'y'.repeat(70 * 1024) }), { code: 'TRP_ERR_PAYLOAD_TOO_LARGE' }, 'past our own limit');
  t.throws(() => bus.publish('has space', MessageType.Reply, { a: 1 }), { name: 'InvalidSubjectError' }, 'whitespace in the subject');
  t.equal(bus.nc.stats().outMsgs, before, 'nothing went out');
  // the writer is still sound after a refused frame: the next message is whole
  const got: unknown[] = [];
  const sub = await withBus(t, nats.url);
  sub.subscribe('fr.ok', (env) => void got.push(env.body), { accept: [MessageType.Reply] });
  await sub.flush();
  bus.publish('fr.ok', MessageType.Reply, { a: 1 });
  await bus.flush();
  await waitFor(() => got.length === 1, 'the next message');
  t.same(got, [{ a: 1 }]);

  // a server limit under ours: the frame is not sent straight; nats.js refuses it with its error
  const small = await startNatsServer({ dataDir: tempDir(t), maxPayload: 4096 });
  t.teardown(() => small.stop());
  const b2 = await withBus(t, small.url);
  t.throws(() => b2.publish('fr.big', MessageType.Reply, { blob: 'z'.repeat(8000) }), /max_payload/, 'past the server limit');
});

t.test('writes gather per turn of the event loop: fewer socket writes, the same messages, nothing lost on close', async (t) => {
  const nats = await withNats(t);
  const sub = await withBus(t, nats.url);
  const got: number[] = [];
  sub.subscribe('co.>', (env) => void got.push((env.body as { i: number }).i), { accept: [MessageType.Reply] });
  await sub.flush();
  const writesOf = async (coalesceWrites: boolean, base: number) => {
    const bus = await withBus(t, nats.url, { coalesceWrites });
    let writes = 0;
    onSocketWrite(bus, () => writes++);
    // 200 messages, each from its own promise continuation (as a controller's replies and writes are)
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        for (let k = 0; k < i % 5; k++) await Promise.resolve();
        bus.publish(`co.${i % 3}`, MessageType.Reply, { i: base + i });
      }),
    );
    await bus.flush();
    return writes;
  };
  const gathered = await writesOf(true, 0);
  const plain = await writesOf(false, 1000);
  await waitFor(() => got.length === 400, 'all 400 messages');
  t.same(got.filter((i) => i < 1000).sort((a, b) => a - b), Array.from({ length: 200 }, (_, i) => i), 'every gathered message arrived');
  t.ok(gathered <= 3, `gathered: ${gathered} socket writes for 200 messages and a flush`);
  t.ok(plain >= 5, `nats.js's own: ${plain} socket writes`);

  // published, then the connection closed at once: the pending write goes out first
  const last = await Bus.connect({ servers: nats.url });
  last.publish('co.last', MessageType.Reply, { i: 5000 });
  await last.nc.close();
  await waitFor(() => got.includes(5000), 'the message published just before close');
});

t.test('a turn that gathers past FLUSH_AT writes then, not at nats.js\'s 32 KB, and not only at its end', async (t) => {
  const nats = await withNats(t);
  const sub = await withBus(t, nats.url);
  let got = 0;
  sub.subscribe('big.>', () => void got++, { accept: [MessageType.Reply] });
  await sub.flush();
  const bus = await withBus(t, nats.url);
  const sizes: number[] = [];
  onSocketWrite(bus, (b) => sizes.push(b.length));
  const blob = 'x'.repeat(10_000);
  // one synchronous burst: ~10 KB a message
  const firstWriteAt: number[] = [];
  for (let i = 0; i < 60; i++) {
    bus.publish(`big.${i % 4}`, MessageType.Reply, { i, blob });
    if (sizes.length > firstWriteAt.length) firstWriteAt.push(i);
  }
  const inTurn = sizes.length;
  t.ok(firstWriteAt.length >= 1, 'written within the turn once past the threshold');
  t.ok(sizes[0]! >= FLUSH_AT, `the first write held ${sizes[0]} bytes (at least ${FLUSH_AT})`);
  t.ok(firstWriteAt[0]! >= Math.floor(FLUSH_AT / 10_100) - 1, `first written after message ${firstWriteAt[0]}, not after ~3 (32 KB)`);
  t.ok(inTurn <= 3, `${inTurn} writes in the turn for ~600 KB`);
  await bus.flush();
  await waitFor(() => got === 60, 'all 60 messages');
});

t.test('a reply goes out at the end of its burst of microtasks, with what is pending; its inbox may be any subject', async (t) => {
  const nats = await withNats(t);
  const sub = await withBus(t, nats.url);
  const got: { subject: string; body: unknown }[] = [];
  sub.subscribe('rp.>', (env, msg) => void got.push({ subject: msg.subject, body: env.body }), { accept: [MessageType.Reply, MessageType.Error] });
  await sub.flush();
  const bus = await withBus(t, nats.url);
  const writes: string[] = [];
  onSocketWrite(bus, (b) => writes.push(Buffer.from(b).toString('latin1')));
  const drain = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  // a plain message waits for the turn's end
  bus.publish('rp.event', MessageType.Reply, { n: 1 });
  await drain();
  t.equal(writes.length, 0, 'a published message is still gathered after the microtasks');
  // a reply takes it along at the end of this burst
  bus.respond({ reply: 'rp.inbox.1' } as never, { n: 2 }, 'cid-1');
  t.equal(writes.length, 0, 'not written inside the call');
  await drain();
  t.equal(writes.length, 1, 'one write once the microtasks ran');
  t.match(writes[0], /PUB rp\.event \d+\r\n[\s\S]*PUB rp\.inbox\.1 \d+\r\n/, 'the pending message and the reply, in order, in that write');
  // inboxes that are not plain ASCII take the byte path; an error reply goes out as soon
  bus.respond({ reply: 'rp.ïnbox.2' } as never, { n: 3 }, 'cid-2');
  bus.respondError({ reply: 'rp.inbox.3' } as never, new Error('nope'), 'cid-3');
  await drain();
  t.equal(writes.length, 2, 'both replies in one more write');
  await waitFor(() => got.length === 4, 'all four messages');
  t.same(
    got.map((g) => g.subject),
    ['rp.event', 'rp.inbox.1', 'rp.ïnbox.2', 'rp.inbox.3'],
    'subjects byte for byte, in order',
  );
  t.same(got[2]!.body, { n: 3 }, 'the reply to a utf-8 inbox whole');
  t.match(got[3]!.body, { code: 'TRP_ERR_INTERNAL', message: /nope/ }, 'the error reply');
  // an error past the payload limit is sent short, still as soon
  const small = await withBus(t, nats.url, { codec: new Codec({ maxPayload: 8 * 1024 }) });
  small.respondError({ reply: 'rp.inbox.4' } as never, new Error('x'.repeat(20_000)), 'cid-4');
  await waitFor(() => got.length === 5, 'the short error');
  t.match(got[4]!.body, { code: 'TRP_ERR_INTERNAL' }, 'same code');
  t.equal((got[4]!.body as { message: string }).message.length, 1000, 'its message cut to 1,000 characters');
});

t.test('a request asked `soon` goes out at the end of its burst of microtasks; another waits for the turn\'s end', async (t) => {
  const nats = await withNats(t);
  const server = await withBus(t, nats.url);
  server.serve('rq.echo', (env) => env.body, { accept: [MessageType.Command] });
  await server.flush();
  const bus = await withBus(t, nats.url);
  // (the bus's first request sets up its reply subscription: done before the writes are counted)
  await bus.request('rq.echo', MessageType.Command, { type: 'warm' });
  const writes: string[] = [];
  onSocketWrite(bus, (b) => writes.push(Buffer.from(b).toString('latin1')));
  const drain = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  const plain = bus.request('rq.echo', MessageType.Command, { type: 'plain' });
  await drain();
  t.equal(writes.length, 0, 'a request is gathered until the turn ends');
  const soon = bus.request('rq.echo', MessageType.Command, { type: 'soon' }, { soon: true });
  t.equal(writes.length, 0, 'not written inside the call');
  await drain();
  t.equal(writes.length, 1, 'one write once the microtasks ran');
  t.match(writes[0], /PUB rq\.echo [^\r]+\r\n[\s\S]*PUB rq\.echo [^\r]+\r\n/, 'the pending request and the soon one, in order, in that write');
  t.match((await plain).body, { type: 'plain' });
  t.match((await soon).body, { type: 'soon' }, 'both answered');
});

t.test('flushIfQuiet: a lone urgent message is written at once with what is pending; in a stream, each waits for the turn\'s one write', async (t) => {
  const nats = await withNats(t);
  const sub = await withBus(t, nats.url);
  const got: string[] = [];
  sub.subscribe('uq.>', (_env, msg) => void got.push(msg.subject), { accept: [MessageType.Reply] });
  await sub.flush();
  const bus = await withBus(t, nats.url);
  const writes: string[] = [];
  onSocketWrite(bus, (b) => writes.push(Buffer.from(b).toString('latin1')));
  const turn = () => new Promise((r) => setImmediate(r));
  bus.publish('uq.plain', MessageType.Reply, { n: 1 });
  bus.publish('uq.first', MessageType.Reply, { n: 2 });
  bus.flushIfQuiet('s1');
  t.equal(writes.length, 1, 'the first of its stream: written inside the call');
  t.match(writes[0], /PUB uq\.plain \d+\r\n[\s\S]*PUB uq\.first \d+\r\n/, 'with what was pending, in order');
  // the next ones of that stream, within QUIET_MS: the turn's write
  bus.publish('uq.second', MessageType.Reply, { n: 3 });
  bus.flushIfQuiet('s1');
  bus.publish('uq.third', MessageType.Reply, { n: 4 });
  bus.flushIfQuiet('s1');
  t.equal(writes.length, 1, 'in a stream: not written in the call');
  // another stream is quiet: at once
  bus.publish('uq.other', MessageType.Reply, { n: 5 });
  bus.flushIfQuiet('s2');
  t.equal(writes.length, 2, 'another stream\'s first: at once, the pending ones with it');
  bus.publish('uq.fourth', MessageType.Reply, { n: 6 });
  bus.flushIfQuiet('s1');
  await turn();
  t.equal(writes.length, 3, 'the stream\'s next: one write at the turn\'s end');
  // quiet again past QUIET_MS (20 ms)
  await new Promise((r) => setTimeout(r, 40));
  bus.publish('uq.later', MessageType.Reply, { n: 7 });
  bus.flushIfQuiet('s1');
  t.equal(writes.length, 4, 'after a quiet spell: at once again');
  await waitFor(() => got.length === 7, 'all seven messages');
  t.same(got, ['uq.plain', 'uq.first', 'uq.second', 'uq.third', 'uq.other', 'uq.fourth', 'uq.later'], 'in order');
  // a request marked urgent: the same, then answered (on a subject of its own: the subscriber of
  // uq.> above would answer it with a refusal)
  const server = await withBus(t, nats.url);
  server.serve('urgent-echo', (env) => env.body, { accept: [MessageType.Command] });
  await server.flush();
  await bus.request('urgent-echo', MessageType.Command, { type: 'warm' });
  await new Promise((r) => setTimeout(r, 40));
  const before = writes.length;
  const urgent = bus.request('urgent-echo', MessageType.Command, { type: 'urgent' }, { urgent: 'requests' });
  t.equal(writes.length, before + 1, 'an urgent request of a quiet stream: written inside the call');
  t.match((await urgent).body, { type: 'urgent' }, 'answered');
});

t.test('an answered request builds no Error; unanswered ones still fail as nats.js says; nothing stays registered', async (t) => {
  const nats = await withNats(t);
  // a Bus applies the change to the request class its connection uses, at its first request
  const bus = await withBus(t, nats.url);
  const nc = bus.nc;
  nc.subscribe('cheap.echo', { callback: (_e, m) => void m.respond(m.data) });
  await nc.flush();
  await nc.request('cheap.echo', Uint8Array.of(0), { timeout: 5000 });
  // that class, from the next request
  type Proto = { resolver(this: { deferred: { reject(e: unknown): void } }, err: unknown, msg: unknown): void };
  const mux = (nc as unknown as { protocol: { muxSubscriptions: { add(r: unknown): unknown; size(): number } } }).protocol.muxSubscriptions;
  const add = mux.add;
  let proto: Proto | undefined;
  mux.add = function (r: unknown) {
    proto = Object.getPrototypeOf(r) as Proto;
    mux.add = add;
    return add.call(this, r);
  };
  await nc.request('cheap.echo', Uint8Array.of(0), { timeout: 5000 });
  t.ok(proto, 'the request class seen');
  // what an answered request is rejected with afterwards (nats.js 3.4 alone: a new RequestError each)
  const resolver = proto!.resolver;
  let built = 0;
  proto!.resolver = function (err, msg) {
    const reject = this.deferred.reject;
    this.deferred.reject = (e: unknown) => {
      if (e instanceof Error) built++;
      reject(e);
    };
    resolver.call(this, err, msg);
  };
  t.teardown(() => {
    proto!.resolver = resolver;
  });
  for (let i = 0; i < 50; i++) t.same((await nc.request('cheap.echo', Uint8Array.of(i), { timeout: 5000 })).data, Uint8Array.of(i));
  t.equal(built, 0, 'fifty answered requests, no Error built');
  await t.rejects(nc.request('cheap.nobody', Uint8Array.of(1), { timeout: 5000 }), { name: 'RequestError', message: /no responders/ }, 'no responders: nats.js’s error');
  nc.subscribe('cheap.silent', { callback: () => undefined });
  await nc.flush();
  await t.rejects(nc.request('cheap.silent', Uint8Array.of(1), { timeout: 100 }), { name: 'TimeoutError' }, 'no answer in time: nats.js’s timeout');
  t.equal(mux.size(), 0, 'no request left registered');
  t.equal(settleRequestsCheaply({} as never), false, 'a connection without the expected internals is left alone');
});
