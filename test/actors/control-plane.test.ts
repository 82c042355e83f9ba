import t from 'tap';
import { randomUUID } from 'node:crypto';
import { MessageType, kindInfo, packValue, type EventBody, type KObject } from '../../protocol/index.js';
import { connect } from '@nats-io/transport-node';
import { ControlPlane, Informer, KvStore, Resources, recordedEvents, revisionOf, type ResourceSummary } from '../../actors/index.js';
import { deployment, hollowCluster, isReadyPod, quiet } from '../helpers/cluster.js';
import { waitFor, withBus, withNats } from '../helpers/nats.js';

const DEPLOY = kindInfo('Deployment')!;
const RS = kindInfo('ReplicaSet')!;
const POD = kindInfo('Pod')!;

t.test('a Deployment gets its ReplicaSet and pods, spread over the nodes, and reports status', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2']);
  const reply = await c.res.apply(deployment('web', { replicas: 4 }));
  t.equal(reply.object?.metadata.generation, 1);
  const d = await waitFor(async () => {
    const d = await c.res.get(DEPLOY, 'default', 'web');
    return d?.status?.availableReplicas === 4 && d.status.observedGeneration === 1 ? d : undefined;
  }, 'deployment available');
  t.match(d.status.conditions, [{ type: 'Available', status: 'True' }, { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }]);
  t.equal(d.metadata.annotations?.['deployment.kubernetes.io/revision'], '1');
  const rss = await c.res.list(RS);
  t.equal(rss.length, 1);
  t.match(rss[0]!.metadata.name, /^web-[a-z0-9]+$/);
  t.equal(rss[0]!.metadata.ownerReferences?.[0]?.uid, d.metadata.uid);
  const pods = c.activePods('web');
  t.equal(pods.length, 4);
  t.same(pods.map((p) => p.spec.nodeName).sort(), ['n1', 'n1', 'n2', 'n2'], 'two replicas on each node');
  t.ok(pods.every((p) => p.metadata.ownerReferences?.[0]?.uid === rss[0]!.metadata.uid));
  t.ok(pods.every((p) => p.metadata.labels?.['pod-template-hash'] === rss[0]!.metadata.labels?.['pod-template-hash']));
  // apply again: nothing changes, no new generation, no new revision
  const before = await c.res.get(DEPLOY, 'default', 'web');
  await c.res.apply(deployment('web', { replicas: 4 }));
  const after = await c.res.get(DEPLOY, 'default', 'web');
  t.equal(after?.metadata.resourceVersion, before?.metadata.resourceVersion, 'unchanged manifest: no write');
  t.equal((await c.res.list(RS)).length, 1);
});

t.test('a new ReplicaSet\'s first status counts the pods it made, and the Deployment\'s first waits for it: no status of 0 written on the way', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2']);
  const kv = await KvStore.open(c.bus, c.bus.subjects.stateBucket);
  // every version of each, as the store's watch brings them
  const seen: Record<'rs' | 'deploy', Record<string, unknown>[]> = { rs: [], deploy: [] };
  for (const [info, into] of [[RS, seen.rs], [DEPLOY, seen.deploy]] as const) {
    const inf = new Informer(c.bus, kv, info, quiet);
    inf.on((type, o) => type !== 'delete' && o.metadata.name.startsWith('counted') && o.status?.observedGeneration !== undefined && into.push(o.status));
    await inf.start();
    t.teardown(() => inf.stop());
  }
  await c.res.apply(deployment('counted', { replicas: 3 }));
  await waitFor(async () => (await c.res.get(DEPLOY, 'default', 'counted'))?.status?.availableReplicas === 3, 'deployment available');
  await waitFor(() => seen.deploy.some((s) => s.availableReplicas === 3), 'the watch has caught up');
  t.match(seen.rs[0], { observedGeneration: 1, replicas: 3 }, 'the ReplicaSet\'s first status: its 3 pods');
  t.match(seen.deploy[0], { observedGeneration: 1, replicas: 3 }, 'the Deployment\'s first status: 3 replicas, from that ReplicaSet status');
  t.notOk([...seen.rs, ...seen.deploy].some((s) => s.replicas === 0), 'no status saying 0 replicas was written');
});

t.test("a ReplicaSet's status waits a while after a change: its pods becoming ready one after another go in one write", async (t) => {
  // the status waits 500 ms after a change; the pods are Ready 700, 750 and 800 ms after they
  // run, after the first status (which says 0 ready)
  let n = 0;
  const c = await hollowCluster(t, ['n1'], { hollow: { readyAfterMs: () => 700 + 50 * n++ }, controlPlane: { statusSettleMs: 500 } });
  const kv = await KvStore.open(c.bus, c.bus.subjects.stateBucket);
  const ready: number[] = [];
  const inf = new Informer(c.bus, kv, RS, quiet);
  inf.on((type, o) => type !== 'delete' && o.metadata.name.startsWith('settled') && o.status?.observedGeneration !== undefined && ready.push(o.status.readyReplicas));
  await inf.start();
  t.teardown(() => inf.stop());
  await c.res.apply(deployment('settled', { replicas: 3 }));
  await waitFor(() => ready.at(-1) === 3 || undefined, 'the ReplicaSet says 3 ready', 10_000);
  t.equal(ready[0], 0, 'the first status: none ready yet');
  t.notOk(ready.includes(1) || ready.includes(2), `no status of 1 or 2 ready on the way (${ready.join(', ')})`);
  t.equal(ready.filter((r) => r === 3).length, 1, 'the three in one write');
});

t.test("a ReplicaSet's pods are created already placed; a pod made by hand is bound from the queue", async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2']);
  // what each pod looked like the first time the store had it
  const first = new Map<string, KObject>();
  c.pods.on((type, p) => {
    if (type === 'add' && !first.has(p.metadata.name)) first.set(p.metadata.name, p);
  });
  await c.res.apply(deployment('placed', { replicas: 4 }));
  await waitFor(() => c.activePods('placed').filter((p) => p.status?.phase === 'Running').length === 4, '4 pods Running');
  const made = [...first.values()].filter((p) => p.metadata.labels?.app === 'placed');
  t.equal(made.length, 4);
  for (const p of made) {
    t.ok(p.spec.nodeName, `${p.metadata.name} was bound when it was created`);
    t.match(p.status?.conditions, [{ type: 'PodScheduled', status: 'True', lastTransitionTime: p.metadata.creationTimestamp }], 'scheduled as it was made');
  }
  t.same(made.map((p) => p.spec.nodeName).sort(), ['n1', 'n1', 'n2', 'n2'], 'spread as the scheduler spreads');
  const scheduled = await waitFor(async () => {
    const got = new Map<string, { message: string; uid?: string }>();
    for await (const e of recordedEvents(c.bus, { namespace: 'default' })) if (e.reason === 'Scheduled') got.set(e.involvedObject.name, { message: e.message, uid: e.involvedObject.uid });
    return made.every((p) => got.has(p.metadata.name)) ? got : undefined;
  }, 'a Scheduled event per pod');
  for (const p of made) t.same(scheduled.get(p.metadata.name), { message: `Successfully assigned default/${p.metadata.name} to ${p.spec.nodeName}`, uid: p.metadata.uid });

  // a pod of nobody's: created unbound, then bound by the scheduler's queue; its actor's events
  // say what changed in a summary (the object itself is read from the store)
  const looseEvents: EventBody[] = [];
  const sub = c.bus.subscribe<EventBody>(c.bus.subjects.evt('pod', 'default', 'loose'), (env) => void looseEvents.push(env.body), { accept: [MessageType.Event] });
  t.teardown(() => sub.unsubscribe());
  await c.bus.flush();
  await c.res.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'loose', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'busybox:1' }] } } as KObject);
  const loose = await waitFor(() => c.pods.get('default', 'loose')?.spec.nodeName, 'loose pod bound');
  t.ok(['n1', 'n2'].includes(loose));
  t.equal(first.get('loose')?.spec.nodeName, undefined, 'created unbound');
  const running = await waitFor(() => looseEvents.find((e) => (e.data as ResourceSummary | null)?.phase === 'Running'), 'a Running event for the loose pod');
  const stored = c.pods.get('default', 'loose')!;
  t.same(running.data, { uid: stored.metadata.uid, generation: 1, phase: 'Running', nodeName: loose }, 'the event carries the summary, not the object');
  t.same(
    looseEvents.map((e) => [e.cause, (e.data as ResourceSummary | null)?.phase ?? null, (e.data as ResourceSummary | null)?.nodeName ?? null]).slice(0, 3),
    [['xstate.init', null, null], ['apply', 'Pending', null], ['bind', 'Pending', loose]],
    'one event per transition: started, created, bound',
  );
});

t.test('scale 3 → 10 → 1 converges', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2']);
  await c.res.apply(deployment('s', { replicas: 3 }));
  await waitFor(() => c.activePods('s').filter(isReadyPod).length === 3, '3 pods');
  await c.res.send(DEPLOY, 'default', 's', { type: 'patch', spec: { replicas: 10 } });
  await waitFor(() => c.activePods('s').filter(isReadyPod).length === 10, '10 pods');
  await c.res.send(DEPLOY, 'default', 's', { type: 'patch', spec: { replicas: 1 } });
  await waitFor(() => [...c.pods.list()].filter((p) => p.metadata.labels?.app === 's').length === 1, 'one pod left, the others gone from the store');
  const d = await waitFor(async () => {
    const d = await c.res.get(DEPLOY, 'default', 's');
    return d?.status?.replicas === 1 && d.status.availableReplicas === 1 ? d : undefined;
  }, 'status 1/1');
  t.equal(d.metadata.generation, 3);
  t.equal(d.status.observedGeneration, 3);
  t.equal((await c.res.list(RS))[0]!.spec.replicas, 1);
});

t.test('a rolling update keeps replicas − maxUnavailable pods ready at every moment; undo brings the old template back', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2'], { hollow: { readyAfterMs: 150 } });
  await c.res.apply(deployment('roll', { replicas: 4 }));
  await waitFor(() => c.activePods('roll').filter(isReadyPod).length === 4, '4 ready');
  // watch every change the store sees
  let minReady = Infinity;
  let maxTotal = 0;
  c.pods.on(() => {
    const active = c.activePods('roll');
    minReady = Math.min(minReady, active.filter(isReadyPod).length);
    maxTotal = Math.max(maxTotal, active.length);
  });
  await c.res.apply(deployment('roll', { replicas: 4, image: 'myapp:2.0' }));
  await waitFor(async () => {
    const active = c.activePods('roll');
    return active.length === 4 && active.every((p) => p.spec.containers[0].image === 'myapp:2.0' && isReadyPod(p));
  }, 'all pods on myapp:2.0', 20_000);
  t.ok(minReady >= 3, `at least replicas − maxUnavailable (3) ready throughout (min seen ${minReady})`);
  t.ok(maxTotal <= 5, `at most replicas + maxSurge (5) pods at once (max seen ${maxTotal})`);
  const rss = (await c.res.list(RS)).sort((a, b) => revisionOf(a) - revisionOf(b));
  t.same(rss.map(revisionOf), [1, 2]);
  await waitFor(async () => (await c.res.list(RS)).find((r) => revisionOf(r) === 1)?.status?.replicas === 0, 'old replica set empty');
  // undo: revision 1's template comes back as revision 3
  const d = (await c.res.get(DEPLOY, 'default', 'roll'))!;
  const old = rss[0]!.spec.template;
  delete old.metadata.labels['pod-template-hash'];
  const { resourceVersion: _rv, ...meta } = d.metadata;
  await c.res.apply({ ...d, metadata: meta, spec: { ...d.spec, template: old } });
  await waitFor(async () => {
    const active = c.activePods('roll');
    return active.length === 4 && active.every((p) => p.spec.containers[0].image === 'myapp:1.0' && isReadyPod(p));
  }, 'all pods back on myapp:1.0', 20_000);
  const after = await c.res.list(RS);
  t.equal(after.length, 2, 'the old ReplicaSet is reused, not copied');
  t.same(after.map(revisionOf).sort(), [2, 3]);
  t.equal(after.find((r) => revisionOf(r) === 3)!.metadata.uid, rss[0]!.metadata.uid);
});

t.test('Recreate stops every old pod before a new one starts', async (t) => {
  const c = await hollowCluster(t, ['n1'], { hollow: { stopAfterMs: 100 } });
  await c.res.apply(deployment('rc', { replicas: 2, strategy: 'Recreate' }));
  await waitFor(() => c.activePods('rc').filter(isReadyPod).length === 2, '2 ready');
  let mixed = false;
  c.pods.on(() => {
    const images = new Set([...c.pods.list()].filter((p) => p.metadata.labels?.app === 'rc').map((p) => p.spec.containers[0].image));
    if (images.size > 1) mixed = true;
  });
  await c.res.apply(deployment('rc', { replicas: 2, strategy: 'Recreate', image: 'myapp:2.0' }));
  await waitFor(() => c.activePods('rc').filter((p) => p.spec.containers[0].image === 'myapp:2.0' && isReadyPod(p)).length === 2, 'new pods');
  t.notOk(mixed, 'old and new pods never existed together');
});

t.test('deleting a Deployment removes its ReplicaSets and pods', async (t) => {
  const c = await hollowCluster(t, ['n1']);
  await c.res.apply(deployment('gone', { replicas: 3 }));
  await waitFor(() => c.activePods('gone').filter(isReadyPod).length === 3, '3 ready');
  const r = await c.res.send(DEPLOY, 'default', 'gone', { type: 'delete' });
  t.same(r, { deleted: true });
  await waitFor(async () => (await c.res.list(RS)).length === 0 && (await c.res.list(POD)).length === 0, 'replica sets and pods gone');
  t.equal(await c.res.get(DEPLOY, 'default', 'gone'), undefined);
  // the name is free again
  const again = await c.res.apply(deployment('gone', { replicas: 1 }));
  t.equal(again.object?.metadata.generation, 1);
});

t.test("a new Deployment's ReplicaSet and first pods are made as its write goes out: their writes reach the store before the apply is answered", async (t) => {
  const c = await hollowCluster(t, ['n1']);
  const prefix = `$KV.${c.bus.subjects.stateBucket}.`;
  // on the connection the answer comes back on: the server hands this connection what it
  // receives in the order it receives it
  const order: string[] = [];
  const sub = c.bus.nc.subscribe(`${prefix}>`, { callback: (_e, m) => void order.push(m.subject.slice(prefix.length)) });
  t.teardown(() => sub.unsubscribe());
  await c.bus.nc.flush();
  const reply = await c.res.apply(deployment('ahead', { replicas: 2 }));
  order.push('answer');
  const answered = order.indexOf('answer');
  // (keys of the form KIND.NAMESPACE.NAME: the ReplicaSet's and its pods' names start with the Deployment's)
  const of = (kind: string) => c.bus.subjects.stateKey(kind, 'default', 'ahead') + '-';
  const rsKey = order.findIndex((k) => k.startsWith(of('replicaset')));
  // (each pod's first write: its node may report on it before the answer too)
  const podKeys = [...new Set(order.filter((k) => k.startsWith(of('pod'))))].map((k) => order.indexOf(k));
  t.ok(order.indexOf(c.bus.subjects.stateKey('deployment', 'default', 'ahead')) < rsKey, `the Deployment's write first, then its ReplicaSet's (${order.join(' ')})`);
  t.ok(rsKey >= 0 && rsKey < answered, 'the ReplicaSet written before the answer');
  t.equal(podKeys.length, 2, 'both pods written before the answer');
  t.ok(podKeys.every((i) => i > rsKey && i < answered), 'after their ReplicaSet');
  // and everything is as the reconcile would have made it: one ReplicaSet, two pods, no more
  await waitFor(async () => (await c.res.get(DEPLOY, 'default', 'ahead'))?.status?.availableReplicas === 2, 'deployment available');
  const rss = await c.res.list(RS);
  t.equal(rss.length, 1);
  t.equal(rss[0]!.metadata.ownerReferences?.[0]?.uid, reply.object?.metadata.uid);
  t.equal(rss[0]!.metadata.annotations?.['deployment.kubernetes.io/revision'], '1');
  await new Promise((r) => setTimeout(r, 200));
  t.equal((await c.res.list(POD)).length, 2, 'no pod made twice');
  t.equal((await c.res.list(RS)).length, 1, 'no ReplicaSet made twice');
});

t.test('a burst of new Deployments, some made ahead and the rest by the queue: each gets one ReplicaSet and its pods, none twice', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2']);
  const names = Array.from({ length: 24 }, (_, i) => `burst-${i}`);
  await Promise.all(names.map((n, i) => c.res.apply(deployment(n, { replicas: 1 + (i % 4) }))));
  await waitFor(async () => {
    const ds = await c.res.list(DEPLOY);
    return ds.length === 24 && ds.every((d) => d.status?.availableReplicas === d.spec.replicas) ? ds : undefined;
  }, 'every deployment available', 20_000);
  await new Promise((r) => setTimeout(r, 300));
  const rss = await c.res.list(RS);
  const pods = await c.res.list(POD);
  t.equal(rss.length, 24, 'one ReplicaSet each');
  for (const [i, n] of names.entries()) {
    const mine = rss.filter((rs) => rs.metadata.name.startsWith(`${n}-`) && /^[a-z0-9]+$/.test(rs.metadata.name.slice(n.length + 1)));
    t.equal(mine.length, 1, `${n}: one ReplicaSet`);
    t.equal(pods.filter((p) => p.metadata.ownerReferences?.[0]?.uid === mine[0]?.metadata.uid).length, 1 + (i % 4), `${n}: ${1 + (i % 4)} pods`);
  }
  t.equal(pods.length, names.reduce((sum, _n, i) => sum + 1 + (i % 4), 0), 'no other pod');
});

t.test('what was made for a Deployment whose write never landed is collected: the ReplicaSet and its pods name an owner the store does not have', async (t) => {
  const c = await hollowCluster(t, ['n1']);
  const kv = await KvStore.open(c.bus, c.bus.subjects.stateBucket);
  const rsSeen = new Informer(c.bus, kv, RS, quiet);
  const made: string[] = [];
  rsSeen.on((type, o) => made.push(`${type} ${o.kind} ${o.metadata.ownerReferences?.[0]?.uid}`));
  await rsSeen.start();
  t.teardown(() => rsSeen.stop());
  const podsMade: KObject[] = [];
  c.pods.on((type, p) => type === 'add' && podsMade.push(p));
  // a Deployment as its creation goes out (ActorHost.onCreating): it is never stored here
  const ghost = deployment('ghost', { replicas: 2 });
  ghost.metadata = { ...ghost.metadata, namespace: 'default', uid: randomUUID(), generation: 1, creationTimestamp: new Date().toISOString() };
  c.cp.deploymentController!.creating(ghost);
  await waitFor(() => made.some((m) => m === `add ReplicaSet ${ghost.metadata.uid}`), 'its ReplicaSet made');
  await waitFor(() => podsMade.filter((p) => p.metadata.labels?.app === 'ghost').length === 2, 'its pods made');
  await waitFor(async () => (await c.res.list(RS)).length === 0 && (await c.res.list(POD)).length === 0, 'collected: no ReplicaSet, no pod');
  t.ok(made.includes(`delete ReplicaSet ${ghost.metadata.uid}`), 'the ReplicaSet was deleted');
  t.equal(await c.res.get(DEPLOY, 'default', 'ghost'), undefined, 'and no Deployment was ever written');
  // the name is free: a real apply makes its ReplicaSet and pods as any
  await c.res.apply(deployment('ghost', { replicas: 1 }));
  await waitFor(() => c.activePods('ghost').filter(isReadyPod).length === 1, 'the real one runs');
  t.equal((await c.res.list(RS)).length, 1);
});

t.test('an unschedulable pod stays Pending, with a condition and an event that say why', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2'], { hollow: { capacity: { cpu: '2', memory: '1Gi', pods: '110' } } });
  await c.res.apply(deployment('huge', { replicas: 1, requests: { memory: '4Gi' } }));
  const pod = await waitFor(() => c.activePods('huge').find((p) => p.status?.conditions?.some((x: { type: string; status: string }) => x.type === 'PodScheduled' && x.status === 'False')), 'PodScheduled=False');
  const cond = pod.status.conditions.find((x: { type: string }) => x.type === 'PodScheduled');
  t.equal(cond.reason, 'Unschedulable');
  t.equal(cond.message, '0/2 nodes are available: 2 Insufficient memory.');
  t.equal(pod.spec.nodeName, undefined);
  const ev = await waitFor(async () => {
    for await (const e of recordedEvents(c.bus, { namespace: 'default' })) if (e.reason === 'FailedScheduling' && e.involvedObject.name === pod.metadata.name) return e;
    return undefined;
  }, 'FailedScheduling event');
  t.equal(ev.type, 'Warning');
  t.equal(ev.message, '0/2 nodes are available: 2 Insufficient memory.');
});

t.test('a node that goes silent is NotReady within 2 s and its pods run elsewhere', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2'], { hollow: { heartbeatMs: 250 } });
  await c.res.apply(deployment('ha', { replicas: 4 }));
  await waitFor(() => c.activePods('ha').filter(isReadyPod).length === 4, '4 ready');
  const lost = c.activePods('ha').filter((p) => p.spec.nodeName === 'n1').map((p) => p.metadata.name);
  t.equal(lost.length, 2);
  const killedAt = Date.now();
  c.fleet.kill('n1');
  await waitFor(async () => {
    const n = await c.res.get(kindInfo('Node')!, undefined, 'n1');
    return n?.status?.conditions?.find((x: { type: string }) => x.type === 'Ready')?.status === 'Unknown';
  }, 'n1 NotReady', 5000);
  const notReadyMs = Date.now() - killedAt;
  await waitFor(() => {
    const active = c.activePods('ha');
    return active.length === 4 && active.every((p) => p.spec.nodeName === 'n2' && isReadyPod(p));
  }, 'all pods on n2', 5000);
  const replacedMs = Date.now() - killedAt;
  t.ok(notReadyMs < 3000, `NotReady after ${notReadyMs} ms`);
  t.ok(replacedMs < 5000, `replaced after ${replacedMs} ms`);
  t.ok(lost.every((name) => !c.pods.get('default', name)), "the lost node's pods are gone from the store");
  const node = await c.res.get(kindInfo('Node')!, undefined, 'n1');
  t.match(node?.spec.taints, [{ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' }]);
  // back: Ready again, and the scheduler may use it
  c.fleet.revive('n1');
  await waitFor(async () => {
    const n = await c.res.get(kindInfo('Node')!, undefined, 'n1');
    return n?.status?.conditions?.find((x: { type: string }) => x.type === 'Ready')?.status === 'True' && !n.spec.taints;
  }, 'n1 Ready again', 10_000);
});

t.test('a pod that tolerates an unreachable node for a while is kept that long', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2'], { hollow: { heartbeatMs: 250 } });
  const tolerant: KObject = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'patient', namespace: 'default' },
    spec: { nodeSelector: { 'kubernetes.io/hostname': 'n1' }, tolerations: [{ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 2 }], containers: [{ name: 'c', image: 'i' }] },
  };
  await c.res.apply((await import('../../protocol/index.js')).normalize(tolerant));
  await waitFor(() => isReadyPod(c.pods.get('default', 'patient') ?? ({ metadata: {}, status: {} } as KObject)), 'patient ready');
  c.fleet.kill('n1');
  const killedAt = Date.now();
  await waitFor(async () => (await c.res.get(kindInfo('Node')!, undefined, 'n1'))?.spec.taints, 'n1 tainted', 5000);
  t.ok(c.pods.get('default', 'patient'), 'still there once the node is NotReady');
  await waitFor(() => !c.pods.get('default', 'patient'), 'evicted after its toleration', 8000);
  t.ok(Date.now() - killedAt >= 2000, 'not before tolerationSeconds');
});

t.test('objects the informers do not have start without a store read; one that left memory is read again, not taken for new', async (t) => {
  const srv = await withNats(t);
  const cpBus = await withBus(t, srv.url, { name: 'cp', logger: quiet });
  const cp = await ControlPlane.start({ bus: cpBus, logger: quiet, idleMs: 200 });
  t.teardown(() => cp.stop());
  const bus = await withBus(t, srv.url, { name: 'test', logger: quiet });
  const res = await Resources.open(bus);
  // every read of a stored object, seen on the wire (a direct get, or a stream message get)
  const key = bus.subjects.stateKey('deployment', 'default', 'reads');
  let reads = 0;
  const watcher = await connect({ servers: srv.url });
  t.teardown(() => watcher.close());
  for (const subject of ['$JS.API.DIRECT.GET.>', '$JS.API.STREAM.MSG.GET.>']) {
    watcher.subscribe(subject, {
      callback: (_e, m) => {
        if (m.subject.endsWith(key) || new TextDecoder().decode(m.data).includes(key)) reads++;
      },
    });
  }
  await watcher.flush();

  const first = await res.apply(deployment('reads', { replicas: 0 }));
  t.equal(first.object?.metadata.generation, 1);
  t.equal(reads, 0, 'a new object: no read');
  await waitFor(async () => (await res.get(DEPLOY, 'default', 'reads'))?.status?.observedGeneration === 1, 'its status written');
  // idle past 200 ms, the actor leaves memory (passivated)
  const passivated = cpBus.metrics.get('actors_passivated_total');
  await waitFor(() => cpBus.metrics.get('actors_passivated_total') > passivated, 'actors out of memory', 5000);
  await new Promise((r) => setTimeout(r, 600));
  const before = reads;
  const again = await res.apply(deployment('reads', { replicas: 2 }));
  t.equal(again.object?.metadata.generation, 2, 'the stored object was changed, not made anew');
  t.equal(again.object?.metadata.uid, first.object?.metadata.uid, 'same uid');
  t.ok(reads > before, `read from the store (${reads - before})`);
  t.equal(cpBus.metrics.get('actor_fresh_conflicts_total', { kind: 'deployment' }), 0, 'never taken for new');
});

t.test("the leader's informers stop following the store's watch after a while; a write behind their back is taken at the next resync", async (t) => {
  const c = await hollowCluster(t, ['n1'], { controlPlane: { informerWatchMs: 300, resyncMs: 700 } });
  await new Promise((r) => setTimeout(r, 400));
  // the control plane works as before on what its own actors write
  await c.res.apply(deployment('told', { replicas: 2 }));
  await waitFor(() => c.activePods('told').filter((p) => p.status?.phase === 'Running').length === 2, '2 pods Running');
  // a Deployment written straight into the store (as a previous leader's late write would be)
  const kv = await KvStore.open(c.bus, c.bus.subjects.stateBucket);
  const made = deployment('behind', { replicas: 1 });
  const object = { ...made, metadata: { ...made.metadata, uid: '0c5a3f4e-0000-4000-8000-000000000001', generation: 1, creationTimestamp: new Date().toISOString() }, status: {} };
  await kv.create(c.bus.subjects.stateKey('deployment', 'default', 'behind'), packValue({ owner: 'elsewhere', seq: 1, snapshot: { status: 'active', value: 'live', historyValue: {}, children: {}, context: { kind: 'deployment', namespace: 'default', name: 'behind', object } } }));
  await waitFor(() => c.activePods('behind').filter((p) => p.status?.phase === 'Running').length === 1, 'its pod Running (found by the resync)', 10_000);
  const d = await waitFor(async () => {
    const d = await c.res.get(DEPLOY, 'default', 'behind');
    return d?.status?.availableReplicas === 1 ? d : undefined;
  }, 'its status written by the control plane');
  t.equal(d.metadata.uid, object.metadata.uid);
  t.equal(c.activePods('told').length, 2, 'nothing else changed');
});
