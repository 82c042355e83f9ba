import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { FastPublisher } from '../../actors/fast-publish.js';
import { Requester } from '../../actors/requester.js';
import { withNats, type Teardown } from '../helpers/nats.js';

async function setup(t: Teardown) {
  const nats = await withNats(t);
  const nc = await connect({ servers: nats.url, noAsyncTraces: true });
  t.teardown(() => nc.close().catch(() => undefined));
  const responder = await connect({ servers: nats.url, noAsyncTraces: true });
  t.teardown(() => responder.close().catch(() => undefined));
  return { nats, nc, responder, requester: new Requester(nc, new FastPublisher(nc)) };
}

t.test('answers find their own requests, many in flight, out of order', async (t) => {
  const { responder, requester } = await setup(t);
  // answers the odd ones at once and the even ones later: replies come back out of order
  responder.subscribe('echo', {
    callback: (_e, m) => {
      if (m.data[0]! % 2 === 1) m.respond(m.data);
      else setTimeout(() => m.respond(m.data), 5);
    },
  });
  await responder.flush();
  const got = await Promise.all(Array.from({ length: 200 }, (_, i) => requester.request('echo', Uint8Array.of(i % 256, i >> 8), 5000)));
  t.same(
    got.map((d) => d[0]! + (d[1]! << 8)),
    Array.from({ length: 200 }, (_, i) => i),
    'each request got its own answer',
  );
  t.equal(requester.size, 0, 'nothing left pending');
});

t.test('nobody subscribed, no answer in time, a late answer, a closed connection', async (t) => {
  const { nc, responder, requester } = await setup(t);
  await t.rejects(requester.request('nobody.here', Uint8Array.of(1), 5000), { name: 'UnavailableError', message: 'nothing is serving nobody.here (no responders)', details: { subject: 'nobody.here', noResponders: true } });
  // answers after 300 ms: past a 100 ms deadline
  responder.subscribe('slow', { callback: (_e, m) => void setTimeout(() => m.respond(Uint8Array.of(9)), 300) });
  await responder.flush();
  const t0 = Date.now();
  await t.rejects(requester.request('slow', Uint8Array.of(1), 100), { name: 'TimeoutError', message: 'no reply on slow within 100 ms', code: 'TRP_ERR_TIMEOUT' });
  t.ok(Date.now() - t0 < 290, 'the deadline, not the answer, ended it');
  t.equal(requester.size, 0, 'the timed-out request is gone');
  await new Promise((r) => setTimeout(r, 300));
  t.same(await requester.request('slow', Uint8Array.of(2), 5000), Uint8Array.of(9), 'the late answer to the first was ignored; the second got its own');
  // pending when the connection closes: failed, not left hanging
  const pending = requester.request('slow', Uint8Array.of(3), 5000);
  await nc.close();
  await t.rejects(pending, { name: 'UnavailableError', message: 'the bus connection is closed' });
  await t.rejects(requester.request('slow', Uint8Array.of(4), 5000), { name: 'UnavailableError', message: 'the bus connection is closed' }, 'and a request after it fails at once');
});

t.test('a subject with whitespace is refused by nats.js, as a failed request', async (t) => {
  const { requester } = await setup(t);
  await t.rejects(requester.request('bad subject', Uint8Array.of(1), 1000), { name: 'UnavailableError', message: /request on bad subject failed/ });
  t.equal(requester.size, 0);
});
