import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HASH_LABEL, REVISION, ValidationError, copyJson, formatSelector, matchesSelector, normalize, parseManifests, parseSelector, podLike, replicaSetOf, templateHash, type KObject } from '../../protocol/index.js';

const seed = readFileSync(fileURLToPath(new URL('../../../examples/deployment.yaml', import.meta.url)), 'utf8');

function rejects(text: string): string {
  try {
    parseManifests(text, 'm.yaml');
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    return err.message;
  }
  throw new Error('expected a ValidationError');
}

t.test("the seed's Deployment parses unchanged and gets Kubernetes' defaults", async (t) => {
  const [m] = parseManifests(seed, 'deployment.yaml');
  const d = m!.object;
  t.equal(d.kind, 'Deployment');
  t.equal(d.metadata.namespace, 'default');
  t.equal(d.spec.replicas, 3);
  t.same(d.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } });
  t.equal(d.spec.revisionHistoryLimit, 10);
  t.equal(d.spec.progressDeadlineSeconds, 600);
  t.equal(d.spec.template.spec.restartPolicy, 'Always');
  t.equal(d.spec.template.spec.terminationGracePeriodSeconds, 30);
  t.equal(d.spec.template.spec.containers[0].imagePullPolicy, 'IfNotPresent', 'a tagged image');
  t.equal(d.spec.template.spec.containers[0].ports[0].protocol, 'TCP');
  const [latest] = parseManifests(seed.replace('myapp:1.0', 'myapp'), 'd.yaml');
  t.equal(latest!.object.spec.template.spec.containers[0].imagePullPolicy, 'Always', 'no tag means latest');
  const [one] = parseManifests(seed.replace('  replicas: 3\n', ''), 'd.yaml');
  t.equal(one!.object.spec.replicas, 1);
});

t.test('JSON and multi-document YAML; empty documents are skipped', async (t) => {
  const json = JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } });
  t.equal(parseManifests(json, 'ns.json')[0]!.object.kind, 'Namespace');
  const multi = parseManifests(`---\n${seed}---\n---\n${json}\n`, 'all.yaml');
  t.same(multi.map((m) => m.object.kind), ['Deployment', 'Namespace']);
  t.equal(multi[1]!.source, 'all.yaml (document 3)', 'documents are numbered as they appear');
});

t.test('bad input is rejected with the field path, and what was expected', async (t) => {
  t.match(rejects(seed.replace('        ports:', '        portz:')), /spec\.template\.spec\.containers\[0\]\.portz: unknown field/);
  t.match(rejects(seed.replace('replicas: 3', 'replicas: three')), /deployment "myapp-deployment": spec\.replicas: expected an integer from 0 to 100000, got "three"/);
  t.match(rejects(seed.replace('replicas: 3', 'replicas: -1')), /spec\.replicas: expected an integer from 0 to 100000, got -1/);
  t.match(rejects(seed.replace('      app: myapp\n  template', '      app: other\n  template')), /spec\.template\.metadata\.labels: selector does not match template labels \(selector app=other/);
  t.match(rejects(seed.replace('name: myapp-deployment', 'name: MyApp_Deployment')), /metadata\.name: expected a DNS-1123 subdomain/);
  t.match(rejects(seed.replace('containerPort: 8080', 'containerPort: 80800')), /containerPort: expected an integer from 1 to 65535, got 80800/);
  t.match(rejects(seed.replace('apps/v1', 'apps/v2')), /apiVersion: expected "apps\/v1" for kind Deployment, got "apps\/v2"/);
  t.match(rejects(seed.replace('kind: Deployment', 'kind: StatefulSet')), /kind: expected one of Pod, Deployment, ReplicaSet, Service, Namespace, Endpoints, List, got "StatefulSet"/);
  t.match(rejects(`${seed}\n  paused: true\n  paused: false\n`), /not valid YAML or JSON: Map keys must be unique/);
  t.match(rejects('kind: [unclosed'), /not valid YAML or JSON/);
  t.match(rejects('just a string'), /expected an object with apiVersion, kind and metadata, got "just a string"/);
  const noSelector = seed.replace('  selector:\n    matchLabels:\n      app: myapp\n', '  selector: {}\n');
  t.match(rejects(noSelector), /spec\.selector: expected matchLabels or matchExpressions/);
  t.match(rejects(seed.replace('replicas: 3', 'replicas: 3\n  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: "0%"}}')), /maxUnavailable: may not be 0 when maxSurge is 0/);
  t.match(rejects(seed.replace('replicas: 3', 'replicas: 3\n  strategy: {rollingUpdate: {maxSurge: "150%"}}')), /maxSurge: expected an integer ≥ 0 or a percentage from "0%" to "100%", got "150%"/);
});

t.test('a manifest over 1 MiB is refused before it is parsed', async (t) => {
  const big = `${seed}# ${'x'.repeat(2 * 1024 * 1024)}\n`;
  t.match(rejects(big), /the manifest is \d+ bytes; at most 1048576 bytes are accepted/);
});

t.test('a YAML alias bomb is refused', async (t) => {
  const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
  for (let i = 1; i < 10; i++) {
    const prev = String.fromCharCode(96 + i);
    const cur = String.fromCharCode(97 + i);
    lines.push(`${cur}: &${cur} [*${prev},*${prev},*${prev},*${prev},*${prev},*${prev},*${prev},*${prev},*${prev}]`);
  }
  const started = Date.now();
  t.match(rejects(lines.join('\n')), /alias/i);
  t.ok(Date.now() - started < 5000, 'answered without expanding the aliases');
});

t.test('a List with one bad item: nothing of it is returned', async (t) => {
  const list = { apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ok' } }, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'Bad!' } }] };
  const msg = rejects(JSON.stringify(list));
  t.match(msg, /List items\[1\]: namespace "Bad!": metadata\.name: expected a DNS-1123 label/);
  t.match(msg, /nothing of the List was applied/);
  const good = parseManifests(JSON.stringify({ ...list, items: [list.items[0]] }), 'l.json');
  t.equal(good.length, 1);
});

t.test('selectors: kubectl syntax, matching, formatting', async (t) => {
  const sel = parseSelector('app=web,tier!=db,env in (prod, staging),!legacy,team');
  t.same(sel.matchLabels, { app: 'web' });
  t.equal(sel.matchExpressions!.length, 4);
  t.ok(matchesSelector(sel, { app: 'web', env: 'prod', team: 'a' }));
  t.notOk(matchesSelector(sel, { app: 'web', env: 'prod', team: 'a', legacy: 'y' }));
  t.notOk(matchesSelector(sel, { app: 'web', env: 'dev', team: 'a' }));
  t.notOk(matchesSelector(sel, { app: 'web', env: 'prod', tier: 'db', team: 'a' }));
  t.equal(formatSelector({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] }), 'app=web,env notin (dev)');
  t.throws(() => parseSelector('app=(web'), ValidationError);
});

t.test('the pod-template-hash is stable and follows the template', async (t) => {
  const [a] = parseManifests(seed, 'a');
  const [b] = parseManifests(seed, 'b');
  t.equal(templateHash(a!.object.spec.template), templateHash(b!.object.spec.template));
  const [c] = parseManifests(seed.replace('myapp:1.0', 'myapp:2.0'), 'c');
  t.not(templateHash(a!.object.spec.template), templateHash(c!.object.spec.template));
  t.match(templateHash(a!.object.spec.template), /^[bcdfghjklmnpqrstvwxz2456789]+$/);
});

t.test("services as environment variables, as Kubernetes writes them", async (t) => {
  const { serviceEnv } = await import('../../protocol/index.js');
  const svc = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec });
  const env = serviceEnv([
    svc('redis-primary', { clusterIP: '10.96.0.11', ports: [{ name: 'redis', port: 6379, protocol: 'TCP' }, { port: 9121, protocol: 'TCP' }] }),
    svc('headless', { clusterIP: 'None', ports: [{ port: 80 }] }),
    svc('pending', { ports: [{ port: 80 }] }),
  ]);
  const map = Object.fromEntries(env.map((e) => [e.name, e.value]));
  t.same(map, {
    REDIS_PRIMARY_SERVICE_HOST: '10.96.0.11',
    REDIS_PRIMARY_SERVICE_PORT: '6379',
    REDIS_PRIMARY_SERVICE_PORT_REDIS: '6379',
    REDIS_PRIMARY_PORT: 'tcp://10.96.0.11:6379',
    REDIS_PRIMARY_PORT_6379_TCP: 'tcp://10.96.0.11:6379',
    REDIS_PRIMARY_PORT_6379_TCP_PROTO: 'tcp',
    REDIS_PRIMARY_PORT_6379_TCP_PORT: '6379',
    REDIS_PRIMARY_PORT_6379_TCP_ADDR: '10.96.0.11',
    REDIS_PRIMARY_PORT_9121_TCP: 'tcp://10.96.0.11:9121',
    REDIS_PRIMARY_PORT_9121_TCP_PROTO: 'tcp',
    REDIS_PRIMARY_PORT_9121_TCP_PORT: '9121',
    REDIS_PRIMARY_PORT_9121_TCP_ADDR: '10.96.0.11',
  }, 'headless services and services without an address yet give none');
});

t.test("podLike: a template's pods are what normalize() makes of them, without a check and copy each", async (t) => {
  const templates: KObject['spec'][] = [
    { containers: [{ name: 'c', image: 'busybox:1' }] },
    { containers: [{ name: 'web', image: 'myapp:1.0', ports: [{ containerPort: 8080 }], resources: { requests: { cpu: '10m', memory: '16Mi' } } }], restartPolicy: 'OnFailure', nodeSelector: { disk: 'ssd' }, tolerations: [{ key: 'k', operator: 'Exists' }] },
    { containers: [{ name: 'a', image: 'x:latest', command: ['sh', '-c', 'sleep 1'] }, { name: 'b', image: 'y@sha256:' + 'a'.repeat(64) }], terminationGracePeriodSeconds: 5 },
  ];
  for (const [i, spec] of templates.entries()) {
    const shell = normalize({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'rs', namespace: 'ns1', labels: { app: 'a' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: 'u1', controller: true, blockOwnerDeletion: true }] }, spec });
    for (const node of [undefined, 'node-1', 'n.example.com']) {
      const pod = podLike(shell, `rs-abc${i}`, node);
      const direct = normalize({ ...copyJson(shell), metadata: { ...copyJson(shell.metadata), name: `rs-abc${i}` }, spec: node === undefined ? copyJson(shell.spec) : { ...copyJson(shell.spec), nodeName: node } });
      t.strictSame(pod, direct, `template ${i}, node ${node}: the same object as normalize() makes`);
      t.strictSame(normalize(copyJson(pod)), pod, 'and normalize() of a copy changes nothing');
      t.equal(normalize(pod), pod, 'normalize() hands it back as it is');
      t.equal(pod.metadata.name, `rs-abc${i}`);
      t.equal(shell.metadata.name, 'rs', 'the shell is left as it was');
      t.equal(shell.spec.nodeName, undefined);
    }
  }
  const shell = normalize({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'rs' }, spec: templates[0] });
  t.throws(() => podLike(shell, 'Not_A-Name'), { name: 'ValidationError', message: /metadata\.name/ }, 'a bad name: normalize() says what is wrong');
  t.throws(() => podLike(shell, 'ok', 'Bad Node'), { name: 'ValidationError', message: /spec\.nodeName/ }, 'a bad node name too');
  const copy = { ...podLike(shell, 'p1') };
  t.not(normalize(copy), copy, 'an object not made by podLike is checked and copied as any other');
});

t.test("replicaSetOf: a Deployment's ReplicaSet is what normalize() makes of it, without a check and copy", async (t) => {
  const stored = (spec: Record<string, unknown>): KObject => ({ ...normalize({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'ns1', labels: { tier: 'front' } }, spec }), status: {} });
  const deployments = [
    stored({ replicas: 3, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'myapp:1.0', ports: [{ containerPort: 8080 }] }] } } }),
    stored({
      minReadySeconds: 4,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'track', operator: 'In', values: ['stable', 'canary'] }] },
      template: { metadata: { labels: { app: 'web', track: 'stable' }, annotations: { note: 'x' } }, spec: { containers: [{ name: 'a', image: 'x:latest' }, { name: 'b', image: 'y:2', resources: { limits: { memory: '64Mi' } } }], restartPolicy: 'Always', terminationGracePeriodSeconds: 5 } },
    }),
  ];
  for (const [i, d] of deployments.entries()) {
    d.metadata.uid = `uid-${i}`;
    const before = copyJson(d);
    const hash = templateHash(d.spec.template);
    const rs = replicaSetOf(d, hash, 2, 1);
    t.strictSame(rs, normalize(copyJson(rs)), `deployment ${i}: the same object as normalize() makes of it`);
    t.equal(normalize(rs), rs, 'normalize() hands it back as it is');
    t.equal(rs.metadata.name, `web-${hash}`);
    t.same(rs.metadata.ownerReferences, [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: `uid-${i}`, controller: true, blockOwnerDeletion: true }]);
    t.equal(rs.metadata.annotations![REVISION], '2');
    t.equal(rs.spec.template.metadata.labels[HASH_LABEL], hash);
    t.equal(rs.spec.selector.matchLabels[HASH_LABEL], hash);
    t.ok(matchesSelector(rs.spec.selector, rs.spec.template.metadata.labels), 'its selector selects its template');
    t.strictSame(d, before, 'the Deployment is left as it was');
    rs.spec.selector.matchExpressions?.push({ key: 'k', operator: 'Exists' });
    rs.spec.template.spec.containers[0].image = 'changed';
    t.strictSame(d, before, 'and shares nothing with it');
  }
  const d = deployments[0]!;
  t.throws(() => replicaSetOf({ ...d, metadata: { ...d.metadata, name: 'x'.repeat(252) } }, 'abc', 1, 1), { name: 'ValidationError', message: /metadata\.name/ }, 'a name that its hash makes too long (cut, it ends in "-"): normalize() says what is wrong');
  t.throws(() => replicaSetOf(d, 'not a label value', 1, 1), { name: 'ValidationError' }, 'a hash that is no label value too');
  t.throws(() => replicaSetOf(d, 'abc', 1, -1), { name: 'ValidationError', message: /spec\.replicas/ }, 'a negative count too');
  const unstored = normalize(copyJson(d));
  delete unstored.metadata.uid;
  t.throws(() => replicaSetOf(unstored, 'abc', 1, 1), { name: 'ValidationError', message: /ownerReferences\[0\]\.uid/ }, 'a Deployment not stored (no uid) too');
});
