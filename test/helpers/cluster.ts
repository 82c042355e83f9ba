/**
 * A control plane and hollow nodes on a real nats-server, for tests of the controllers that need
 * no containers. Everything stops when the test ends.
 */
import { pino } from 'pino';
import { ControlPlane, Informer, KvStore, Resources, type Bus, type ControlPlaneOptions } from '../../actors/index.js';
import { HollowFleet, type HollowOptions } from '../../node-agent/index.js';
import { kindInfo, normalize, type KObject } from '../../protocol/index.js';
import { withBus, withNats, waitFor, type Teardown } from './nats.js';
import type { NodeLifecycleOptions } from '../../actors/index.js';

export const quiet = pino({ level: process.env.TROUPE_TEST_LOG ?? 'silent' });

export interface TestCluster {
  url: string;
  bus: Bus;
  res: Resources;
  cp: ControlPlane;
  fleet: HollowFleet;
  pods: Informer;
  /** Active (not terminating) pods of a deployment, by label app. */
  activePods(app?: string): KObject[];
}

export async function hollowCluster(
  t: Teardown,
  nodes: string[],
  opts: { hollow?: HollowOptions; lifecycle?: NodeLifecycleOptions; controlPlane?: boolean | Partial<ControlPlaneOptions> } = {},
): Promise<TestCluster> {
  const srv = await withNats(t);
  const cpBus = await withBus(t, srv.url, { name: 'cp', logger: quiet });
  const bus = await withBus(t, srv.url, { name: 'test', logger: quiet });
  const fleetBus = await withBus(t, srv.url, { name: 'fleet', logger: quiet });
  const cp = opts.controlPlane === false ? (undefined as unknown as ControlPlane) : await ControlPlane.start({ bus: cpBus, logger: quiet, lifecycle: opts.lifecycle, ...(typeof opts.controlPlane === 'object' ? opts.controlPlane : {}) });
  if (cp) t.teardown(() => cp.stop());
  const fleet = new HollowFleet(fleetBus, nodes, { logger: quiet, ...opts.hollow });
  await fleet.start();
  t.teardown(() => fleet.stop());
  const res = await Resources.open(bus);
  const pods = new Informer(bus, await KvStore.open(bus, bus.subjects.stateBucket), kindInfo('Pod')!, quiet);
  await pods.start();
  t.teardown(() => pods.stop());
  if (cp) {
    const NODE = kindInfo('Node')!;
    await waitFor(async () => (await res.list(NODE)).filter((n) => n.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True')).length === nodes.length, 'hollow nodes Ready');
  }
  return {
    url: srv.url,
    bus,
    res,
    cp,
    fleet,
    pods,
    activePods: (app) => [...pods.list()].filter((p) => !p.metadata.deletionTimestamp && (!app || p.metadata.labels?.app === app)),
  };
}

export function deployment(
  name: string,
  o: { replicas?: number; image?: string; command?: string[]; port?: number; grace?: number; maxSurge?: number | string; maxUnavailable?: number | string; minReadySeconds?: number; requests?: Record<string, string>; strategy?: 'Recreate' } = {},
): KObject {
  return normalize({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: o.replicas ?? 3,
      selector: { matchLabels: { app: name } },
      ...(o.strategy ? { strategy: { type: 'Recreate' } } : o.maxSurge !== undefined || o.maxUnavailable !== undefined ? { strategy: { rollingUpdate: { ...(o.maxSurge !== undefined ? { maxSurge: o.maxSurge } : {}), ...(o.maxUnavailable !== undefined ? { maxUnavailable: o.maxUnavailable } : {}) } } } : {}),
      ...(o.minReadySeconds ? { minReadySeconds: o.minReadySeconds } : {}),
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: o.grace ?? 1,
          containers: [
            {
              name: 'main',
              image: o.image ?? 'myapp:1.0',
              ...(o.command ? { command: o.command } : {}),
              ...(o.port ? { ports: [{ containerPort: o.port }] } : {}),
              ...(o.requests ? { resources: { requests: o.requests } } : {}),
            },
          ],
        },
      },
    },
  });
}

export function isReadyPod(p: KObject): boolean {
  return !p.metadata.deletionTimestamp && p.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
}
