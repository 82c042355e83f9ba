import t from 'tap';
import { Scheduler, type EventRecorder, type Informer, type Resources } from '../../actors/index.js';
import type { KObject } from '../../protocol/index.js';
import { pino } from 'pino';

// The scheduler's choice is pure logic over its caches; these stand in for the informers.
function cache(objs: KObject[]): Informer {
  const map = new Map(objs.map((o) => [`${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]));
  return { list: () => map.values(), get: (ns: string | undefined, n: string) => map.get(`${ns ?? ''}/${n}`), on: () => undefined } as unknown as Informer;
}

const node = (name: string, o: { memory?: string; cpu?: string; ready?: boolean; unschedulable?: boolean; taints?: unknown[]; labels?: Record<string, string> } = {}): KObject => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels: { 'kubernetes.io/hostname': name, ...o.labels } },
  spec: { ...(o.unschedulable ? { unschedulable: true } : {}), ...(o.taints ? { taints: o.taints } : {}) },
  status: { allocatable: { cpu: o.cpu ?? '2', memory: o.memory ?? '1Gi', pods: '110' }, conditions: [{ type: 'Ready', status: o.ready === false ? 'Unknown' : 'True' }] },
});

const pod = (name: string, spec: Record<string, unknown> = {}, requests?: Record<string, string>, owner?: string): KObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', uid: `uid-${name}`, ...(owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: owner, uid: owner, controller: true }] } : {}) },
  spec: { containers: [{ name: 'c', image: 'i', ...(requests ? { resources: { requests } } : {}) }], ...spec },
});

function scheduler(nodes: KObject[], pods: KObject[] = []) {
  const recorded: string[] = [];
  const recorder = { record: (_o: unknown, _t: string, reason: string, msg: string) => recorded.push(`${reason}: ${msg}`) } as unknown as EventRecorder;
  const s = new Scheduler({} as Resources, cache(pods), cache(nodes), recorder, pino({ level: 'silent' }));
  return { s, recorded };
}

t.test('requests against allocatable: the reason names each node', async (t) => {
  const { s } = scheduler([node('a', { memory: '128Mi' }), node('b', { memory: '128Mi' })]);
  const r = s.pick(pod('big', {}, { memory: '256Mi' }));
  t.equal(r.node, undefined);
  t.same(r.reasons, ['Insufficient memory', 'Insufficient memory']);
  t.equal(r.total, 2);
  t.ok(s.pick(pod('small', {}, { memory: '64Mi' })).node);
  t.same(s.pick(pod('cpu', {}, { cpu: '3' })).reasons, ['Insufficient cpu', 'Insufficient cpu']);
});

t.test('not ready, cordoned and tainted nodes are filtered unless tolerated', async (t) => {
  const { s } = scheduler([
    node('down', { ready: false }),
    node('cordoned', { unschedulable: true }),
    node('gpu', { taints: [{ key: 'gpu', value: 'yes', effect: 'NoSchedule' }] }),
  ]);
  const r = s.pick(pod('p'));
  t.equal(r.node, undefined);
  t.same(r.reasons.sort(), ["node(s) had untolerated taint {gpu: yes}", 'node(s) had untolerated taint {node.kubernetes.io/not-ready: }', 'node(s) were unschedulable'].sort());
  t.equal(s.pick(pod('t', { tolerations: [{ key: 'gpu', operator: 'Equal', value: 'yes', effect: 'NoSchedule' }] })).node, 'gpu');
  t.equal(s.pick(pod('t2', { tolerations: [{ operator: 'Exists' }] })).node !== 'down', true, 'a node that is not Ready is never chosen');
});

t.test('nodeSelector and required node affinity', async (t) => {
  const { s } = scheduler([node('a', { labels: { disk: 'ssd', zone: '1' } }), node('b', { labels: { disk: 'hdd', zone: '2' } })]);
  t.equal(s.pick(pod('p', { nodeSelector: { disk: 'ssd' } })).node, 'a');
  const aff = { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['2'] }] }] } } } };
  t.equal(s.pick(pod('q', aff)).node, 'b');
  t.same(s.pick(pod('r', { nodeSelector: { disk: 'nvme' } })).reasons, ["node(s) didn't match Pod's node affinity/selector", "node(s) didn't match Pod's node affinity/selector"]);
});

t.test('host ports conflict; replicas of one owner spread; least allocated wins', async (t) => {
  const hp = (name: string, nodeName?: string) => ({ ...pod(name, nodeName ? { nodeName } : {}), spec: { ...(nodeName ? { nodeName } : {}), containers: [{ name: 'c', image: 'i', ports: [{ containerPort: 80, hostPort: 8080 }] }] } });
  const bound = [hp('x', 'a'), { ...pod('r1', { nodeName: 'a' }, undefined, 'rs1') }, { ...pod('heavy', { nodeName: 'b' }, { memory: '900Mi' }) }];
  const { s } = scheduler([node('a'), node('b'), node('c')], bound);
  // the scheduler counts bound pods as its informer reports them
  for (const p of bound) (s as unknown as { count(k: string, p: KObject, n: string): void }).count(`default/${p.metadata.name}`, p, p.spec.nodeName);
  t.not(s.pick(hp('y')).node, 'a', 'hostPort 8080 is taken on a');
  t.equal(s.pick(pod('r2', {}, undefined, 'rs1')).node, 'c', 'not where its sibling is, not on the busy node');
  t.equal(s.pick(pod('free', {}, { memory: '100Mi' })).node, 'c');
});

t.test('nodes that score the same are each chosen in turn at random, not always the first found', async (t) => {
  const { s } = scheduler(['a', 'b', 'c', 'd', 'e'].map((n) => node(n)));
  const chosen = new Map<string, number>();
  for (let i = 0; i < 500; i++) {
    const { node: n } = s.pick(pod('p', {}, { cpu: '100m' }));
    chosen.set(n!, (chosen.get(n!) ?? 0) + 1);
  }
  t.same([...chosen.keys()].sort(), ['a', 'b', 'c', 'd', 'e'], 'every one of the equal nodes');
  for (const [n, count] of chosen) t.ok(count > 50 && count < 150, `${n}: ${count} of 500, about a fifth`);
});
