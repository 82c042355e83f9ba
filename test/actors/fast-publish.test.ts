import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { FastPublisher } from '../../actors/fast-publish.js';
import { waitFor, withNats } from '../helpers/nats.js';

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
