/**
 * Probes on real containers through the agent: httpGet readiness (busybox httpd), exec liveness
 * restarting the container, a startup probe holding liveness back.
 */
import { join } from 'node:path';
import t from 'tap';
import { ActorClient, Crun, ImageStore, type PodStatus } from '../../index.js';
import { tempDir, waitFor, withBus, withNats } from '../helpers/nats.js';
import { busyboxRootfs, tarDir } from '../helpers/tar.js';
import { startAgent, waitNodeEmpty } from '../helpers/agent.js';

t.test('readiness toggles Ready; a failing liveness probe restarts; a startup probe holds liveness back', async (t) => {
  const nats = await withNats(t);
  const bus = await withBus(t, nats.url);
  const dir = tempDir(t, 'troupe-agent-');
  const src = tempDir(t, 'troupe-src-');
  await new ImageStore(join(dir, 'images')).importRootfs(tarDir(busyboxRootfs(join(src, 'root')), join(src, 'rootfs.tar')), 'busybox:test');
  await startAgent(t, nats.url, 'p1', dir, ['--backoff-base', '100']);
  const pods = new ActorClient(bus, 'pod', 'node.p1');
  const status = async (name: string) => (await pods.send('default', name, { type: 'get' })) as unknown as PodStatus;
  const ready = (st: PodStatus) => st.conditions.find((c) => c.type === 'Ready')!.status;

  // readiness: httpd serves /www; the probe asks for /ready, which the test creates and removes
  await pods.send('default', 'web', {
    type: 'run',
    uid: 'uid-web',
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'web',
          image: 'busybox:test',
          command: ['/bin/sh', '-c', 'mkdir -p /www && exec httpd -f -p 8080 -h /www'],
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 1, failureThreshold: 1 },
        },
      ],
    },
  });
  await waitFor(async () => (await status('web')).phase === 'Running', 'web Running');
  t.equal(ready(await status('web')), 'False', 'not Ready while /ready answers 404');
  // (Running says the container's process exists, not that its shell has run its first command:
  // an exec makes what it needs itself, or waits for it, and must succeed)
  const exec = async (pod: string, command: string[]) => (await bus.request<{ exitCode: number; stderr: string }>(bus.subjects.nodeCmd('p1'), 'cmd', { type: 'exec', namespace: 'default', pod, command })).body;
  const mustExec = async (pod: string, command: string[]) => {
    const r = await exec(pod, command);
    t.equal(r.exitCode, 0, `${command.join(' ')} in ${pod}${r.stderr ? `: ${r.stderr.trim()}` : ''}`);
  };
  await mustExec('web', ['/bin/sh', '-c', 'mkdir -p /www && echo ok > /www/ready']);
  await waitFor(async () => ready(await status('web')) === 'True', 'Ready once /ready answers 200');
  await mustExec('web', ['/bin/rm', '/www/ready']);
  await waitFor(async () => ready(await status('web')) === 'False', 'not Ready again');
  t.equal((await status('web')).containerStatuses[0]!.restartCount, 0, 'readiness never restarts');

  // liveness: healthy while /tmp/healthy exists; removing it gets the container restarted
  await pods.send('default', 'live', {
    type: 'run',
    uid: 'uid-live',
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'l', image: 'busybox:test', command: ['/bin/sh', '-c', 'touch /tmp/healthy; exec sleep 300'], livenessProbe: { exec: { command: ['test', '-e', '/tmp/healthy'] }, periodSeconds: 1, failureThreshold: 2 } }],
    },
  });
  await waitFor(async () => (await status('live')).phase === 'Running', 'live Running');
  await waitFor(async () => (await exec('live', ['test', '-e', '/tmp/healthy'])).exitCode === 0, 'the container has made /tmp/healthy');
  await mustExec('live', ['/bin/rm', '/tmp/healthy']);
  const restarted = await waitFor(async () => {
    const st = await status('live');
    return st.containerStatuses[0]!.restartCount >= 1 ? st : undefined;
  }, 'a restart after the liveness probe failed', 20_000);
  t.match(restarted.containerStatuses[0]!.lastState, { terminated: { message: /liveness probe failed 2 times: command exited 1/ } });

  // startup: liveness would fail until /tmp/live exists (after ~3 s); the startup probe waits for it
  await pods.send('default', 'slow', {
    type: 'run',
    uid: 'uid-slow',
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 's',
          image: 'busybox:test',
          command: ['/bin/sh', '-c', 'sleep 3; touch /tmp/live; exec sleep 300'],
          startupProbe: { exec: { command: ['test', '-e', '/tmp/live'] }, periodSeconds: 1, failureThreshold: 10 },
          livenessProbe: { exec: { command: ['test', '-e', '/tmp/live'] }, periodSeconds: 1, failureThreshold: 1 },
        },
      ],
    },
  });
  await waitFor(async () => ready(await status('slow')) === 'True', 'slow Ready after its startup probe passed', 20_000);
  t.equal((await status('slow')).containerStatuses[0]!.restartCount, 0, 'liveness did not kill it while it started');

  for (const name of ['web', 'live', 'slow']) await pods.send('default', name, { type: 'delete' });
  await waitNodeEmpty(dir, 'p1');
});
