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
  const latest = await waitFor(async () => {
    const byName = new Map<string, KubeEvent>();
    for await (const e of recordedEvents(bus, { namespace: 'default' })) byName.set(e.metadata.name, e);
    return byName.size === 3 ? byName : undefined;
  }, 'three Events');
  const all = [...latest.values()];
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
