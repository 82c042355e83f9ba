import t from 'tap';
import { EventRecorder, ensureRecordedEventStream, recordedEvents, type KubeEvent } from '../../actors/index.js';
import type { KObject } from '../../protocol/index.js';
import { waitFor, withBus, withNats } from '../helpers/nats.js';

const pod = (name: string, uid: string): Pick<KObject, 'kind' | 'metadata'> => ({ kind: 'Pod', metadata: { name, namespace: 'default', uid } });

t.test('Events: a repeat of the same (object, reason, message) is counted on one Event, with its first and last time', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  await ensureRecordedEventStream(bus);
  const rec = new EventRecorder(bus, 'test-component');
  const started = Date.now();
  rec.record(pod('p1', 'u1'), 'Warning', 'BackOff', 'Back-off restarting failed container');
  await new Promise((r) => setTimeout(r, 20));
  rec.record(pod('p1', 'u1'), 'Warning', 'BackOff', 'Back-off restarting failed container');
  rec.record(pod('p1', 'u1'), 'Normal', 'Pulled', 'Container image already present');
  rec.record(pod('p2', 'u2'), 'Warning', 'BackOff', 'Back-off restarting failed container');
  await bus.flush();
  const all = await latestEvents(bus, 3);
  const backoff = all.find((e) => e.involvedObject.name === 'p1' && e.reason === 'BackOff')!;
  t.match(backoff, { type: 'Warning', count: 2, involvedObject: { kind: 'Pod', name: 'p1', namespace: 'default', uid: 'u1' }, source: { component: 'test-component' } });
  t.match(backoff.metadata.name, /^p1\.[0-9a-f]{16}$/);
  const first = Date.parse(backoff.firstTimestamp);
  const last = Date.parse(backoff.lastTimestamp);
  t.ok(first >= started - 1 && last - first >= 15, `first ${backoff.firstTimestamp}, last ${backoff.lastTimestamp}: the repeat moved the last time only`);
  t.match(all.find((e) => e.reason === 'Pulled'), { count: 1, type: 'Normal' }, 'another reason: its own Event');
  const other = all.find((e) => e.involvedObject.name === 'p2')!;
  t.equal(other.count, 1, 'another object: its own Event');
  t.not(other.metadata.name, backoff.metadata.name);
});

/** The latest version of each recorded Event once `count` Events are there. */
async function latestEvents(bus: Parameters<typeof recordedEvents>[0], count: number): Promise<KubeEvent[]> {
  return waitFor(async () => {
    const byName = new Map<string, KubeEvent>();
    for await (const e of recordedEvents(bus, { namespace: 'default' })) byName.set(e.metadata.name, e);
    return byName.size === count ? [...byName.values()] : undefined;
  }, `${count} Events`);
}

t.test('Events: past ten different messages of one (object, type, reason), the rest are combined on one Event, as client-go does', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  await ensureRecordedEventStream(bus);
  const rec = new EventRecorder(bus, 'test-component');
  const rs: Pick<KObject, 'kind' | 'metadata'> = { kind: 'ReplicaSet', metadata: { name: 'web-abc', namespace: 'default', uid: 'rs1' } };
  for (let i = 1; i <= 12; i++) rec.record(rs, 'Normal', 'SuccessfulCreate', `Created pod: web-abc-${i}`);
  rec.record(rs, 'Normal', 'SuccessfulDelete', 'Deleted pod: web-abc-1');
  rec.record(rs, 'Normal', 'SuccessfulCreate', 'Created pod: web-abc-3');
  await bus.flush();
  const all = await latestEvents(bus, 11);
  const creates = all.filter((e) => e.reason === 'SuccessfulCreate');
  const single = creates.filter((e) => !e.message.startsWith('(combined'));
  t.same(
    single.map((e) => e.message),
    Array.from({ length: 9 }, (_, i) => `Created pod: web-abc-${i + 1}`),
    'the first nine messages each have their own Event',
  );
  t.ok(single.every((e) => e.count === 1), 'each counted once');
  const combined = creates.filter((e) => e.message.startsWith('(combined'));
  t.equal(combined.length, 1, 'one combined Event');
  // the 10th, 11th and 12th messages, then web-abc-3 again (its own key was pushed out of the recent set)
  t.match(combined[0], { count: 4, message: '(combined from similar events): Created pod: web-abc-3', involvedObject: { kind: 'ReplicaSet', name: 'web-abc', uid: 'rs1' } });
  t.match(
    all.find((e) => e.reason === 'SuccessfulDelete'),
    { count: 1, message: 'Deleted pod: web-abc-1' },
    'another reason is not combined with them',
  );
});

t.test('Events: 25 per object at once, then one per five minutes; the dropped ones are counted and the next sent carries the count', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  await ensureRecordedEventStream(bus);
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const rec = new EventRecorder(bus, 'test-component', { now: () => clock });
  const sent: KubeEvent[] = [];
  const sub = bus.subscribe<KubeEvent>(bus.subjects.recordedEvent('default'), (env) => void sent.push(env.body), { accept: ['kevent'] });
  t.teardown(() => sub.unsubscribe());
  await bus.flush();
  for (let i = 0; i < 30; i++) {
    rec.record(pod('p1', 'u1'), 'Warning', 'BackOff', 'Back-off restarting failed container');
    clock += 1000;
  }
  rec.record(pod('p2', 'u2'), 'Warning', 'BackOff', 'Back-off restarting failed container');
  await bus.flush();
  await waitFor(() => sent.length === 26 || undefined, '26 Events sent');
  t.equal(bus.metrics.get('events_filtered_total', { reason: 'BackOff' }), 5, 'five dropped, counted');
  t.same(
    sent.filter((e) => e.involvedObject.name === 'p1').map((e) => e.count),
    Array.from({ length: 25 }, (_, i) => i + 1),
    'the first 25 about p1 sent',
  );
  t.equal(sent.filter((e) => e.involvedObject.name === 'p2').length, 1, 'another object has its own budget');
  // less than five minutes after the first token went: still none
  clock = Date.parse('2026-01-01T00:04:59Z');
  rec.record(pod('p1', 'u1'), 'Warning', 'BackOff', 'Back-off restarting failed container');
  clock = Date.parse('2026-01-01T00:05:01Z');
  rec.record(pod('p1', 'u1'), 'Warning', 'BackOff', 'Back-off restarting failed container');
  await bus.flush();
  await waitFor(() => sent.length === 27 || undefined, 'one more sent');
  t.match(sent[26], { count: 32, involvedObject: { name: 'p1' }, lastTimestamp: '2026-01-01T00:05:01.000Z', firstTimestamp: '2026-01-01T00:00:00.000Z' }, 'the count includes the dropped ones');
  t.equal(bus.metrics.get('events_filtered_total', { reason: 'BackOff' }), 6);
});
