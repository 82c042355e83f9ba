import t from 'tap';
import { createActor } from 'xstate';
import { decide, kindOf, mergePatch, resourceMachine, summaryOf, type ResourceContext } from '../../actors/index.js';
import { ConflictError, NotFoundError, ValidationError, type KObject } from '../../protocol/index.js';

const deploy = (replicas = 3, image = 'myapp:1.0'): KObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', labels: { app: 'web' } },
  spec: { replicas, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image }] } } },
});
const pod = (): KObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p1', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'busybox:1' }] } });
const ctx = (token: string, object?: KObject): ResourceContext => ({ kind: kindOf(token).token, namespace: 'default', name: object?.metadata.name ?? 'web', object });

function changed(d: ReturnType<typeof decide>): KObject {
  if (d.type !== 'change') throw new Error(`expected a change, got ${d.type}${d.type === 'error' ? `: ${d.error.message}` : ''}`);
  return d.object;
}

t.test('apply creates with server-owned metadata, defaults, and generation 1', async (t) => {
  const obj = changed(decide(ctx('deployment'), { type: 'apply', object: { ...deploy(), metadata: { ...deploy().metadata, uid: 'client-made', resourceVersion: '7' } } }));
  t.match(obj.metadata.uid, /^[0-9a-f-]{36}$/);
  t.not(obj.metadata.uid, 'client-made', 'the client does not pick the uid');
  t.equal(obj.metadata.resourceVersion, undefined, 'resourceVersion is the store revision, not stored');
  t.equal(obj.metadata.generation, 1);
  t.equal(obj.metadata.namespace, 'default');
  t.ok(obj.metadata.creationTimestamp);
  t.equal(obj.spec.strategy.type, 'RollingUpdate');
});

t.test('re-applying the same manifest changes nothing; a spec change raises the generation', async (t) => {
  const cur = changed(decide(ctx('deployment'), { type: 'apply', object: deploy() }));
  t.same(decide(ctx('deployment', cur), { type: 'apply', object: deploy() }), { type: 'noop' });
  const scaled = changed(decide(ctx('deployment', cur), { type: 'apply', object: deploy(5) }));
  t.equal(scaled.metadata.generation, 2);
  t.equal(scaled.metadata.uid, cur.metadata.uid);
  const relabeled = changed(decide(ctx('deployment', cur), { type: 'apply', object: { ...deploy(), metadata: { name: 'web', labels: { app: 'web', tier: 'x' } } } }));
  t.equal(relabeled.metadata.generation, 1, 'metadata alone is not a new generation');
  // the controller's revision annotation survives an apply that does not mention it
  const annotated = { ...cur, metadata: { ...cur.metadata, annotations: { 'deployment.kubernetes.io/revision': '4' } } };
  t.same(decide(ctx('deployment', annotated), { type: 'apply', object: deploy() }), { type: 'noop' });
});

t.test('create on an existing object, wrong names and bad objects are errors that change nothing', async (t) => {
  const cur = changed(decide(ctx('deployment'), { type: 'apply', object: deploy() }));
  const exists = decide(ctx('deployment', cur), { type: 'apply', object: deploy(), create: true });
  t.equal(exists.type, 'error');
  t.type(exists.type === 'error' && exists.error, ConflictError);
  t.match(exists.type === 'error' && exists.error.details, { reason: 'AlreadyExists' });
  const wrongName = decide({ ...ctx('deployment'), name: 'other' }, { type: 'apply', object: deploy() });
  t.match(wrongName.type === 'error' && wrongName.error.message, /metadata\.name: expected "other"/);
  const bad = decide(ctx('deployment'), { type: 'apply', object: deploy(-2) });
  t.type(bad.type === 'error' && bad.error, ValidationError);
  t.match(bad.type === 'error' && bad.error.message, /spec\.replicas/);
  const notFound = decide(ctx('deployment'), { type: 'status', status: {} });
  t.type(notFound.type === 'error' && notFound.error, NotFoundError);
});

t.test('patch merges, re-validates, and bumps the generation only for spec changes', async (t) => {
  const cur = changed(decide(ctx('deployment'), { type: 'apply', object: deploy() }));
  const scaled = changed(decide(ctx('deployment', cur), { type: 'patch', spec: { replicas: 10 } }));
  t.equal(scaled.spec.replicas, 10);
  t.equal(scaled.metadata.generation, 2);
  const bad = decide(ctx('deployment', cur), { type: 'patch', spec: { replicas: 'ten' } });
  t.match(bad.type === 'error' && bad.error.message, /spec\.replicas: expected an integer/);
  const paused = changed(decide(ctx('deployment', cur), { type: 'patch', spec: { paused: true } }));
  t.equal(changed(decide(ctx('deployment', paused), { type: 'patch', spec: { paused: null } })).spec.paused, undefined, 'null removes a field');
  const ann = changed(decide(ctx('deployment', cur), { type: 'patch', metadata: { annotations: { a: 'b' } } }));
  t.equal(ann.metadata.generation, 1);
  t.same(mergePatch({ a: { b: 1, c: 2 }, d: [1] }, { a: { b: null, e: 3 }, d: [2] }), { a: { c: 2, e: 3 }, d: [2] });
});

t.test('status replaces the status and merges the annotations it carries, checked as a manifest\'s; the same again changes nothing', async (t) => {
  const cur = changed(decide(ctx('deployment'), { type: 'apply', object: { ...deploy(), metadata: { ...deploy().metadata, annotations: { keep: 'me' } } } }));
  const st = { observedGeneration: 1, replicas: 3 };
  const both = changed(decide(ctx('deployment', cur), { type: 'status', status: st, annotations: { 'deployment.kubernetes.io/revision': '1' } }));
  t.same(both.status, st);
  t.same(both.metadata.annotations, { keep: 'me', 'deployment.kubernetes.io/revision': '1' }, 'merged into those there');
  t.equal(both.metadata.generation, 1, 'not a new generation');
  t.same(both.spec, cur.spec);
  t.same(decide(ctx('deployment', both), { type: 'status', status: st, annotations: { 'deployment.kubernetes.io/revision': '1' } }), { type: 'noop' }, 'nothing new: no change');
  t.same(changed(decide(ctx('deployment', both), { type: 'status', status: { ...st, replicas: 4 }, annotations: { 'deployment.kubernetes.io/revision': '1' } })).status.replicas, 4, 'a new status alone');
  const bad = decide(ctx('deployment', cur), { type: 'status', status: st, annotations: { 'not a key!': 'x' } });
  t.equal(bad.type, 'error', 'an annotation key a manifest could not have is refused');
  t.match(bad.type === 'error' && bad.error.message, /metadata\.annotations/);
});

t.test('pods: spec is immutable, bind once, delete of a bound pod waits for its node', async (t) => {
  const p = changed(decide(ctx('pod', pod()), { type: 'apply', object: pod() }).type === 'noop' ? { type: 'noop' } : decide({ ...ctx('pod'), name: 'p1' }, { type: 'apply', object: pod() }));
  t.same(p.status, { phase: 'Pending' });
  const c = { ...ctx('pod', p), name: 'p1' };
  const other = { ...pod(), spec: { containers: [{ name: 'c', image: 'busybox:2' }] } };
  t.match((decide(c, { type: 'apply', object: other }) as { error: Error }).error.message, /a pod's spec cannot change/);
  const bound = changed(decide(c, { type: 'bind', node: 'n1', uid: p.metadata.uid }));
  t.equal(bound.spec.nodeName, 'n1');
  t.match(bound.status.conditions, [{ type: 'PodScheduled', status: 'True' }]);
  const b = { ...c, object: bound };
  t.same(decide(b, { type: 'bind', node: 'n1' }), { type: 'noop' });
  t.type((decide(b, { type: 'bind', node: 'n2' }) as { error: Error }).error, ConflictError);
  t.same(decide(b, { type: 'apply', object: pod() }), { type: 'noop' }, 're-applying a bound pod keeps its node');
  t.type((decide(b, { type: 'delete', uid: 'someone-else' }) as { error: Error }).error, ConflictError, 'uid precondition');
  const terminating = changed(decide(b, { type: 'delete', gracePeriodSeconds: 5 }));
  t.ok(terminating.metadata.deletionTimestamp);
  t.equal(terminating.metadata.deletionGracePeriodSeconds, 5);
  const tc = { ...c, object: terminating };
  t.same(decide(tc, { type: 'delete' }), { type: 'noop' });
  t.type((decide(tc, { type: 'finalize', uid: 'x' }) as { error: Error }).error, ConflictError);
  t.same(decide(tc, { type: 'finalize', uid: p.metadata.uid! }), { type: 'remove' });
  t.same(decide(b, { type: 'delete', force: true }), { type: 'remove' }, 'force removes at once');
  t.same(decide(c, { type: 'delete' }), { type: 'remove' }, 'an unbound pod goes at once');
});

t.test('the machine: a rejected or no-op command makes no transition; removal ends the actor', async (t) => {
  const actor = createActor(resourceMachine(kindOf('deployment')), { input: { namespace: 'default', name: 'web' } });
  const seen: unknown[] = [];
  actor.subscribe((s) => seen.push(s));
  actor.start();
  const first = actor.getSnapshot();
  actor.send({ type: 'apply', object: deploy() });
  const created = actor.getSnapshot();
  t.not(created, first);
  t.equal(created.context.object?.metadata.name, 'web');
  actor.send({ type: 'apply', object: deploy() });
  t.equal(actor.getSnapshot(), created, 'no-op: the same snapshot');
  actor.send({ type: 'apply', object: deploy(-1) });
  t.equal(actor.getSnapshot(), created, 'rejected: the same snapshot');
  actor.send({ type: 'delete' });
  t.equal(actor.getSnapshot().status, 'done');
  t.equal(new Set(seen).size, 3, 'three distinct snapshots (initial, created, removed): what the host publishes and persists');
});

t.test("a resource actor's event carries a summary of its object", async (t) => {
  t.equal(summaryOf(undefined), null, 'no object yet: null');
  const made = changed(decide({ ...ctx('pod'), name: 'p1' }, { type: 'apply', object: pod() }));
  t.same(summaryOf(made), { uid: made.metadata.uid, generation: 1, phase: 'Pending' });
  const bound = changed(decide(ctx('pod', made), { type: 'bind', node: 'n1' }));
  const going = changed(decide(ctx('pod', bound), { type: 'delete' }));
  t.same(summaryOf(going), { uid: made.metadata.uid, generation: 1, phase: 'Pending', deletionTimestamp: going.metadata.deletionTimestamp, nodeName: 'n1' });
  const d = changed(decide(ctx('deployment'), { type: 'apply', object: deploy() }));
  t.same(summaryOf(d), { uid: d.metadata.uid, generation: 1 }, 'no phase, no node: left out');
});

t.test('plainContext: the persisted snapshot is the one xstate makes, with the context as it is', async (t) => {
  const { persistedSnapshot } = await import('../../actors/actor-host.js');
  const { resourceKinds } = await import('../../actors/index.js');
  const kind = resourceKinds().find((k) => k.kind === 'pod')!;
  t.equal(kind.plainContext, true);
  const actor = createActor(kind.machine, { input: { namespace: 'default', name: 'p1' } });
  actor.start();
  actor.send({ type: 'apply', object: pod() });
  actor.send({ type: 'bind', node: 'n1' });
  const ours = persistedSnapshot(kind, actor) as unknown as { context: unknown };
  t.strictSame(ours, actor.getPersistedSnapshot(), "the same as xstate's own");
  t.same(Object.keys(ours), Object.keys(actor.getPersistedSnapshot()), 'the same fields in the same order');
  t.equal(ours.context, actor.getSnapshot().context, 'the context itself, not a copy');
  const restored = createActor(kind.machine, { input: { namespace: 'default', name: 'p1' }, snapshot: ours as never });
  restored.start();
  t.equal(restored.getSnapshot().context.object?.spec.nodeName, 'n1', 'and it restores');
  t.equal(restored.getSnapshot().value, 'live');
});

t.test("initialSnapshot: each resource kind's new actor starts from exactly what its machine makes", async (t) => {
  const { resourceKinds } = await import('../../actors/index.js');
  for (const kind of resourceKinds()) {
    for (const key of [{ namespace: 'default', name: 'p1' }, { namespace: '_cluster', name: 'n-2.x' }]) {
      const made = createActor(kind.machine, { input: kind.input!(key) });
      made.start();
      const ours = kind.initialSnapshot!(key);
      t.strictSame(ours, made.getPersistedSnapshot(), `${kind.kind} ${key.name}: the same as the machine's own`);
      t.same(Object.keys(ours), Object.keys(made.getPersistedSnapshot()), `${kind.kind}: the same fields in the same order`);
      t.not(kind.initialSnapshot!(key), ours, 'a new object each time (an actor keeps it as its context)');
    }
  }
  // one started from it takes commands as one started the slow way
  const kind = resourceKinds().find((k) => k.kind === 'pod')!;
  const a = createActor(kind.machine, { input: { namespace: 'default', name: 'p1' }, snapshot: kind.initialSnapshot!({ namespace: 'default', name: 'p1' }) as never });
  const b = createActor(kind.machine, { input: { namespace: 'default', name: 'p1' } });
  for (const actor of [a, b]) {
    actor.start();
    actor.send({ type: 'apply', object: pod() });
    actor.send({ type: 'bind', node: 'n1' });
  }
  // (new uids and the clock's times aside)
  const strip = (s: unknown) => JSON.parse(JSON.stringify(s, (k, v) => (['uid', 'creationTimestamp', 'lastTransitionTime'].includes(k) ? 'x' : v)));
  t.strictSame(strip(a.getPersistedSnapshot() as never), strip(b.getPersistedSnapshot() as never), 'the same state after the same commands');
  t.equal(a.getSnapshot().context.object?.spec.nodeName, 'n1');
});
