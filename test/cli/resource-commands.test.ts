/**
 * The kubectl-shaped verbs against a real control plane with hollow nodes: outputs, exit codes,
 * and bad input rejected with its field path with nothing written.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { kindInfo } from '../../protocol/index.js';
import { cli, runCli } from '../helpers/agent.js';
import { hollowCluster, isReadyPod } from '../helpers/cluster.js';
import { tempDir, waitFor } from '../helpers/nats.js';

const seed = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: myapp-deployment
spec:
  replicas: 3
  selector:
    matchLabels:
      app: myapp
  template:
    metadata:
      labels:
        app: myapp
    spec:
      containers:
      - name: myapp
        image: myapp:1.0
        ports:
        - containerPort: 8080
`;

t.test('bad manifests: each rejected with its field path, nothing written', async (t) => {
  const c = await hollowCluster(t, ['n1']);
  const dir = tempDir(t);
  const env = { ...process.env, TROUPE_SERVER: c.url, TROUPE_HOME: join(dir, 'home') };
  const cases: [string, string, RegExp][] = [
    ['unknown-field', seed.replace('        ports:', '        portz:'), /spec\.template\.spec\.containers\[0\]\.portz: unknown field/],
    ['wrong-type', seed.replace('replicas: 3', 'replicas: "3"'), /spec\.replicas: expected an integer from 0 to 100000, got "3"/],
    ['negative', seed.replace('replicas: 3', 'replicas: -1'), /spec\.replicas: expected an integer from 0 to 100000, got -1/],
    ['selector', seed.replace('      app: myapp\n  template', '      app: web\n  template'), /spec\.template\.metadata\.labels: selector does not match template labels/],
    ['name', seed.replace('name: myapp-deployment', 'name: My_App'), /metadata\.name: expected a DNS-1123 subdomain/],
    ['big', `${seed}#${'x'.repeat(2_000_000)}\n`, /the manifest is \d+ bytes; at most 1048576 bytes are accepted/],
    ['bomb', 'a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n', /alias/i],
    [
      'list',
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [parse(seed), { ...parse(seed), metadata: { name: 'second' }, spec: { ...parse(seed).spec, replicas: -5 } }] }),
      /List items\[1\]: deployment "second": spec\.replicas: expected an integer from 0 to 100000, got -5[\s\S]*nothing of the List was applied/,
    ],
  ];
  for (const [name, text, expected] of cases) {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, text);
    const r = await runCli(env, ['apply', '-f', file]);
    t.equal(r.code, 1, `${name}: exit 1`);
    t.match(r.stderr, expected, `${name}: says what is wrong and where`);
    t.equal(r.stdout, '', `${name}: nothing reported applied`);
  }
  // a folder with one good and one bad file: nothing of it is applied
  const folder = join(dir, 'mixed');
  (await import('node:fs')).mkdirSync(folder);
  writeFileSync(join(folder, 'a-good.yaml'), seed);
  writeFileSync(join(folder, 'b-bad.yaml'), seed.replace('name: myapp-deployment', 'name: other').replace('replicas: 3', 'replicas: x'));
  const r = await runCli(env, ['apply', '-f', folder]);
  t.equal(r.code, 1);
  t.match(r.stderr, /b-bad\.yaml: deployment "other": spec\.replicas[\s\S]*nothing was applied/);
  t.same(await c.res.list(kindInfo('Deployment')!, { all: true }), [], 'nothing was written');
  t.same(await c.res.list(kindInfo('Pod')!, { all: true }), []);
  // a namespace that does not exist
  const ns = await runCli(env, ['apply', '-n', 'nowhere', '-f', join(folder, 'a-good.yaml')]);
  t.equal(ns.code, 1);
  t.match(ns.stderr, /namespaces "nowhere" not found/);
  // usage errors exit 2
  t.equal((await runCli(env, ['get'])).code, 2);
  t.match((await runCli(env, ['get', 'widgets'])).stderr, /doesn't have a resource type "widgets"/);
  t.match((await runCli(env, ['scale', 'deploy', 'x', '--replicas=-1'])).stderr, /--replicas: expected an integer ≥ 0/);
});

t.test('apply, get in every format, describe, events, scale, delete -l, run, create', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2']);
  const dir = tempDir(t);
  const env = { ...process.env, TROUPE_SERVER: c.url, TROUPE_HOME: join(dir, 'home') };
  const troupe = async (...args: string[]) => {
    const r = await runCli(env, args);
    if (r.code !== 0) throw new Error(`troupe ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const file = join(dir, 'd.yaml');
  writeFileSync(file, seed);
  t.equal(await troupe('apply', '-f', file), 'deployment.apps/myapp-deployment created\n');
  await waitFor(() => c.activePods('myapp').filter(isReadyPod).length === 3, '3 ready');
  t.equal(await troupe('apply', '-f', file), 'deployment.apps/myapp-deployment unchanged\n', 'idempotent');
  const create = await runCli(env, ['create', '-f', file]);
  t.equal(create.code, 1);
  t.equal(create.stderr, 'Error from server (AlreadyExists): deployments.apps "myapp-deployment" already exists\n');

  const wide = await troupe('get', 'pods', '-o', 'wide');
  t.match(wide, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\n/);
  t.equal(wide.trim().split('\n').length, 4);
  t.match(wide, /myapp-deployment-\w+-\w{5}\s+1\/1\s+Running\s+0\s+\d+s\s+10\.200\.\d+\.\d+\s+n[12]\n/);
  const list = JSON.parse(await troupe('get', 'pods', '-o', 'json'));
  t.equal(list.kind, 'List');
  t.equal(list.items.length, 3);
  t.match(list.items[0], { apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'default', resourceVersion: /^\d+$/, uid: /^[0-9a-f-]{36}$/ }, status: { phase: 'Running' } });
  const one = parse(await troupe('get', 'deploy', 'myapp-deployment', '-o', 'yaml'));
  t.match(one, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'myapp-deployment', generation: 1 }, status: { readyReplicas: 3, observedGeneration: 1 } });
  t.equal(await troupe('get', 'deploy', '-o', 'name'), 'deployment.apps/myapp-deployment\n');
  t.match(await troupe('get', 'rs'), /^NAME\s+DESIRED\s+CURRENT\s+READY\s+AGE\nmyapp-deployment-\w+\s+3\s+3\s+3\s+/);
  t.match(await troupe('get', 'nodes'), /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\nn1\s+Ready\s+<none>\s+\d+s\s+troupe-hollow\nn2\s+Ready/);
  t.match(await troupe('get', 'ns'), /default\s+Active/);
  t.equal((await troupe('get', 'pods', '-l', 'app=other')), '');
  t.equal((await troupe('get', 'pods', '-l', 'app=myapp', '-o', 'name')).trim().split('\n').length, 3);
  const missing = await runCli(env, ['get', 'pod', 'nope']);
  t.equal(missing.code, 1);
  t.equal(missing.stderr, 'Error from server (NotFound): pods "nope" not found\n');
  const all = await troupe('get', 'deploy', '-A');
  t.match(all, /^NAMESPACE\s+NAME\s+READY/);

  const pod = list.items[0].metadata.name as string;
  const described = await troupe('describe', 'pod', pod);
  t.match(described, new RegExp(`Name:\\s+${pod}\\n`));
  t.match(described, /Controlled By:\s+ReplicaSet\/myapp-deployment-\w+/);
  t.match(described, /State:\s+Running/);
  t.match(described, /Events:\n.*\n\s+Normal\s+Scheduled\s+\S+\s+troupe-controller\s+Successfully assigned default\/.* to n[12]/);
  const events = await troupe('events');
  t.match(events, /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE\n/);
  t.match(events, /Normal\s+ScalingReplicaSet\s+deployment\/myapp-deployment\s+Scaled up replica set myapp-deployment-\w+ to 3/);
  t.match(events, /SuccessfulCreate\s+replicaset\/myapp-deployment-\w+\s+Created pod: /);

  t.equal(await troupe('scale', 'deploy/myapp-deployment', '--replicas', '5'), 'deployment.apps/myapp-deployment scaled\n');
  await waitFor(() => c.activePods('myapp').filter(isReadyPod).length === 5, '5 ready');

  t.equal(await troupe('run', 'solo', '--image', 'busybox:1', '--', 'sleep', '3600'), 'pod/solo created\n');
  const solo = await waitFor(() => c.pods.get('default', 'solo'), 'solo');
  t.same(solo.spec.containers[0].args, ['sleep', '3600']);
  t.same(solo.metadata.labels, { run: 'solo' });
  t.equal(await troupe('delete', 'pod', '-l', 'run=solo'), 'pod "solo" deleted\n');
  t.notOk(c.pods.get('default', 'solo') && (await c.res.get(kindInfo('Pod')!, 'default', 'solo')), 'delete waited until it was gone');

  const del = await troupe('delete', 'deploy', 'myapp-deployment');
  t.equal(del, 'deployment.apps "myapp-deployment" deleted\n');
  await waitFor(async () => (await c.res.list(kindInfo('Pod')!)).length === 0, 'pods gone');
  const nf = await runCli(env, ['delete', 'deploy', 'myapp-deployment']);
  t.equal(nf.code, 1);
  t.equal(nf.stderr, 'Error from server (NotFound): deployments.apps "myapp-deployment" not found\n');
});

t.test('cordon, drain and uncordon', async (t) => {
  const c = await hollowCluster(t, ['n1', 'n2']);
  const dir = tempDir(t);
  const env = { ...process.env, TROUPE_SERVER: c.url, TROUPE_HOME: join(dir, 'home') };
  const file = join(dir, 'd.yaml');
  writeFileSync(file, seed.replace('replicas: 3', 'replicas: 4'));
  await runCli(env, ['apply', '-f', file]);
  await waitFor(() => c.activePods('myapp').filter(isReadyPod).length === 4, '4 ready');
  const drain = await runCli(env, ['drain', 'n1']);
  t.equal(drain.code, 0, drain.stderr);
  t.match(drain.stdout, /^node\/n1 cordoned\n(evicting pod default\/\S+\n)+/);
  t.match(drain.stdout, /node\/n1 drained\n$/);
  await waitFor(() => {
    const a = c.activePods('myapp');
    return a.length === 4 && a.every((p) => p.spec.nodeName === 'n2' && isReadyPod(p));
  }, 'every pod on n2');
  t.match((await runCli(env, ['get', 'nodes'])).stdout, /n1\s+Ready,SchedulingDisabled/);
  t.equal((await runCli(env, ['uncordon', 'n1'])).stdout, 'node/n1 uncordoned\n');
  await runCli(env, ['scale', 'deploy', 'myapp-deployment', '--replicas', '6']);
  await waitFor(() => c.activePods('myapp').filter((p) => p.spec.nodeName === 'n1' && isReadyPod(p)).length === 2, 'new pods go to n1 again');
});

t.test('get -w and events -w follow changes live', async (t) => {
  const c = await hollowCluster(t, ['n1']);
  const dir = tempDir(t);
  const env = { ...process.env, TROUPE_SERVER: c.url, TROUPE_HOME: join(dir, 'home') };
  const { spawn } = await import('node:child_process');
  const { createInterface } = await import('node:readline');
  const follow = (args: string[]) => {
    const child = spawn(process.execPath, [cli, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    const errs: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
    createInterface({ input: child.stderr! }).on('line', (l) => errs.push(l));
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGTERM');
    });
    return { lines, errs };
  };
  const podsW = follow(['get', 'pods', '-w']);
  const pods = podsW.lines;
  const events = follow(['events', '-w']).lines;
  // the watch has listed (nothing yet) and follows from that revision: no change can slip by
  await waitFor(() => podsW.errs.includes('No resources found in default namespace.'), 'get -w listed');
  const file = join(dir, 'd.yaml');
  writeFileSync(file, seed.replace('replicas: 3', 'replicas: 1'));
  t.equal((await runCli(env, ['apply', '-f', file])).code, 0);
  await waitFor(() => pods.some((l) => /^myapp-deployment-\w+-\w{5}\s+1\/1\s+Running\s+0\s+/.test(l)), 'get -w shows the pod Running', 15_000);
  t.ok(pods.some((l) => /^myapp-deployment-\w+-\w{5}\s+0\/1\s+(Pending|ContainerCreating)\s+/.test(l)), 'and its earlier states');
  await waitFor(() => events.some((l) => /Normal\s+Scheduled\s+pod\/myapp-deployment-\w+-\w{5}\s+Successfully assigned default\//.test(l)), 'events -w shows the scheduling', 15_000);
  t.match(events[0], /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE$/);
});

t.test('rollout: pause, resume, restart; a stalled rollout exits non-zero; minReadySeconds holds availability back', async (t) => {
  // pods of image "stuck" never become Ready
  const c = await hollowCluster(t, ['n1'], { hollow: { readyAfterMs: (p) => (p.spec.containers[0].image === 'stuck:1' ? 3_600_000 : 0) } });
  const dir = tempDir(t);
  const env = { ...process.env, TROUPE_SERVER: c.url, TROUPE_HOME: join(dir, 'home') };
  const file = join(dir, 'd.yaml');
  writeFileSync(file, seed.replace('replicas: 3', 'replicas: 2\n  progressDeadlineSeconds: 2\n  minReadySeconds: 1'));
  await runCli(env, ['apply', '-f', file]);
  const ok = await runCli(env, ['rollout', 'status', 'deploy/myapp-deployment', '--timeout', '30s']);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /successfully rolled out/);
  // minReadySeconds: ready pods count as available only after 1 s
  const d0 = await c.res.get(kindInfo('Deployment')!, 'default', 'myapp-deployment');
  const readyAt = Math.max(...c.activePods('myapp').map((p) => Date.parse(p.status.conditions.find((x: { type: string }) => x.type === 'Ready').lastTransitionTime)));
  const availableAt = Date.parse(d0!.status.conditions.find((x: { type: string }) => x.type === 'Available').lastTransitionTime);
  t.ok(availableAt - readyAt >= 900, `Available ${availableAt - readyAt} ms after the last pod was Ready`);

  t.equal((await runCli(env, ['rollout', 'pause', 'deploy/myapp-deployment'])).stdout, 'deployment.apps/myapp-deployment paused\n');
  writeFileSync(file, seed.replace('replicas: 3', 'replicas: 2\n  progressDeadlineSeconds: 2\n  minReadySeconds: 1\n  paused: true').replace('myapp:1.0', 'stuck:1'));
  await runCli(env, ['apply', '-f', file]);
  const paused = await waitFor(async () => {
    const d = await c.res.get(kindInfo('Deployment')!, 'default', 'myapp-deployment');
    return d?.status?.observedGeneration === d?.metadata.generation ? d : undefined;
  }, 'the paused change observed');
  t.match(paused.status.conditions, [{ type: 'Available' }, { type: 'Progressing', status: 'Unknown', reason: 'DeploymentPaused' }]);
  t.equal((await c.res.list(kindInfo('ReplicaSet')!)).length, 1, 'paused: no new ReplicaSet');
  writeFileSync(file, seed.replace('replicas: 3', 'replicas: 2\n  progressDeadlineSeconds: 2\n  minReadySeconds: 1').replace('myapp:1.0', 'stuck:1'));
  await runCli(env, ['apply', '-f', file]);
  // resumed: the new pods never get Ready, the deadline passes, status says so and exits 1
  const stalled = await runCli(env, ['rollout', 'status', 'deploy/myapp-deployment', '--timeout', '30s']);
  t.equal(stalled.code, 1);
  t.equal(stalled.stderr, 'error: deployment "myapp-deployment" exceeded its progress deadline\n');
  const d = await c.res.get(kindInfo('Deployment')!, 'default', 'myapp-deployment');
  t.match(d!.status.conditions, [{ type: 'Available', status: 'True' }, { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }]);
  // maxUnavailable 25% of 2 rounds down to 0, maxSurge up to 1: one new pod, both old ones kept
  t.equal(c.activePods('myapp').filter(isReadyPod).length, 2, 'both old pods keep serving');
  t.equal(c.activePods('myapp').length, 3, 'and one surge pod waits');
  // back to a good image; then restart makes new pods from the same template
  await runCli(env, ['rollout', 'undo', 'deploy/myapp-deployment']);
  t.equal((await runCli(env, ['rollout', 'status', 'deploy/myapp-deployment', '--timeout', '30s'])).code, 0);
  const before = new Set(c.activePods('myapp').map((p) => p.metadata.name));
  t.equal((await runCli(env, ['rollout', 'restart', 'deploy/myapp-deployment'])).stdout, 'deployment.apps/myapp-deployment restarted\n');
  await waitFor(() => {
    const now = c.activePods('myapp').filter(isReadyPod);
    return now.length === 2 && now.every((p) => !before.has(p.metadata.name));
  }, 'two new pods after the restart', 20_000);
  t.match((await runCli(env, ['rollout', 'history', 'deploy/myapp-deployment'])).stdout, /\n4\s+<none>\n$/);
});
