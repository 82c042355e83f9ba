/**
 * Bad input on the bus: a raw NATS client (no troupe codec) sends garbage, wrong-schema, wrong
 * version, unknown-type and oversized messages to an actor's subject. Each gets a typed error
 * reply, the actor keeps serving, and a counter and a log line record it.
 */
import { connect } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import t from 'tap';
import { ActorClient, ActorHost, Bus, Codec, SHARED_STRUCTURES, errorFromWire, type ErrorBody } from '../../index.js';
import { counter } from '../fixtures/counter.js';
import { captureLogger, withBus, withNats } from '../helpers/nats.js';

t.test('garbage and wrong-schema messages get typed error replies; the actor keeps serving', async (t) => {
  const nats = await withNats(t);
  const { logger, lines } = captureLogger('warn');
  const hostBus = await withBus(t, nats.url, { name: 'host', logger, codec: new Codec({ maxPayload: 64 * 1024 }) });
  const host = await ActorHost.start(hostBus, { kinds: [counter], logger });
  t.teardown(() => host.stop());
  const client = new ActorClient(await withBus(t, nats.url), counter);
  await client.send('default', 'c1', { type: 'inc', by: 1 });

  const raw = await connect({ servers: nats.url });
  t.teardown(() => raw.close());
  const subject = hostBus.subjects.cmd('counter', 'default', 'c1');
  const records = new Packr({ structures: SHARED_STRUCTURES.map((s) => [...s]), maxSharedStructures: SHARED_STRUCTURES.length });
  const envelope = (over: Record<string, unknown>) => records.pack({ v: 1000, t: 'cmd', id: 'raw-1', cid: null, from: 'raw', ts: Date.now(), body: { type: 'inc', by: 1 }, ...over });
  const replyCodec = new Codec();
  const ask = async (data: Uint8Array) => {
    const m = await raw.request(subject, data, { timeout: 2000 });
    const env = replyCodec.decode<ErrorBody>(m.data);
    t.equal(env.t, 'error', 'an error envelope came back');
    return errorFromWire(env.body);
  };

  const cases: [string, Uint8Array, string, RegExp][] = [
    ['random bytes', Uint8Array.from([0xc1, 0x00, 0xff, 0x13, 0x37]), 'TRP_ERR_DECODE', /not valid msgpack|not an envelope/],
    ['text, not msgpack', new TextEncoder().encode('{"type":"inc"}'), 'TRP_ERR_DECODE', /./],
    ['empty', new Uint8Array(0), 'TRP_ERR_DECODE', /empty/],
    ['a msgpack number', records.pack(42), 'TRP_ERR_DECODE', /not an envelope: expected an object, got number/],
    ['wrong body field type', envelope({ body: { type: 'inc', by: 'three' } }), 'TRP_ERR_VALIDATION', /body\.by: expected an integer from 1 to 1000, got "three"/],
    ['unknown body field', envelope({ body: { type: 'inc', by: 1, evil: true } }), 'TRP_ERR_VALIDATION', /body\.evil: unknown field/],
    ['unknown command', envelope({ body: { type: 'explode-everything' } }), 'TRP_ERR_VALIDATION', /body\.type: expected one of "inc", "add"/],
    ['other major version', envelope({ v: 2000 }), 'TRP_ERR_VERSION', /protocol version 2\.0 is not supported/],
    ['unknown message type', envelope({ t: 'frobnicate' }), 'TRP_ERR_UNKNOWN_TYPE', /unknown message type "frobnicate"/],
    ['a reply sent as a command', envelope({ t: 'reply' }), 'TRP_ERR_UNKNOWN_TYPE', /"reply" is not accepted/],
    ['oversized', envelope({ body: { type: 'add', id: 'x'.repeat(100_000) } }), 'TRP_ERR_PAYLOAD_TOO_LARGE', /over the 65536-byte limit/],
  ];
  for (const [what, data, code, re] of cases) {
    const err = await ask(data);
    t.equal(err.code, code, `${what}: ${code}`);
    t.match(err.message, re, `${what}: message`);
  }
  // fire-and-forget garbage (no reply subject) is counted and logged, not answered
  raw.publish(subject, Uint8Array.from([1, 2, 3]));
  await raw.flush();

  t.same(await client.send('default', 'c1', { type: 'inc', by: 1 }), { n: 2, state: 'running' }, 'the actor kept serving, state untouched');
  const rejected = hostBus.metrics.total('bus_rejected_total');
  t.equal(rejected, cases.length + 1, 'every rejected message counted');
  t.equal(hostBus.metrics.get('bus_rejected_total', { code: 'TRP_ERR_DECODE' }), 5);
  const logged = lines().filter((l) => l.msg === 'rejected message');
  t.equal(logged.length, cases.length + 1, 'a log line for each');
  t.match(logged[0], { level: 40, subject, code: 'TRP_ERR_DECODE' });
});

t.test('requests from a troupe client get the same typed errors, rebuilt as classes', async (t) => {
  const nats = await withNats(t);
  const hostBus = await withBus(t, nats.url);
  const host = await ActorHost.start(hostBus, { kinds: [counter] });
  t.teardown(() => host.stop());
  const bus: Bus = await withBus(t, nats.url);
  await t.rejects(bus.request(hostBus.subjects.cmd('counter', 'default', 'a'), 'cmd', { type: 'inc', by: 0 }), { name: 'ValidationError', code: 'TRP_ERR_VALIDATION' });
  await t.rejects(bus.request(hostBus.subjects.cmd('nothing', 'default', 'a'), 'cmd', { type: 'x' }), { name: 'UnavailableError', message: /nothing is serving troupe\.default\.cmd\.nothing\.default\.a/ });
  const never = bus.subscribe('troupe.default.blackhole', () => undefined);
  t.teardown(() => never.unsubscribe());
  await t.rejects(bus.request('troupe.default.blackhole', 'cmd', { type: 'x' }, { timeout: 200 }), { name: 'TimeoutError', message: /no reply on troupe\.default\.blackhole within 200 ms/ });
  t.throws(() => bus.publish('troupe.default.x', 'reply', 'x'.repeat(2 * 1024 * 1024)), { name: 'PayloadTooLargeError' }, 'refused on send too');
});
