/**
 * `troupe up`: the one-node cluster as one supervisor tree —
 * root → nats-server (embedded) → bus → store (state bucket, events stream) → … .
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { Agent } from '../node-agent/index.js';
import { join, resolve } from 'node:path';
import {
  Bus,
  ControlPlane,
  busChild,
  ensureEventStream,
  KvStore,
  natsServerChild,
  type NatsServerInfo,
} from '../actors/index.js';
import { Supervisor, taskChild, type Logger, type ProcessValue } from '../supervisor/index.js';
import { writeContext } from './context.js';

export interface UpOptions {
  dataDir: string;
  port: number;
  cluster: string;
  logger: Logger;
  /** Use this NATS server instead of embedding one. */
  server?: string;
  writeContext?: boolean;
  /** The node agent's name (default: this machine's host name); null runs no agent. */
  nodeName?: string | null;
  /** The range pod addresses come from (default 10.244.0.0/16). */
  clusterCidr?: string;
  /** The range Services' cluster IPs come from (default 10.96.0.0/16). */
  serviceCidr?: string;
  /** The node's InternalIP (default: this machine's first non-loopback IPv4 address). */
  nodeIp?: string;
}

export interface Cluster {
  supervisor: Supervisor;
  url: string;
  stop(): Promise<void>;
}

export async function up(opts: UpOptions): Promise<Cluster> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const sup = await Supervisor.start(
    {
      name: 'troupe',
      strategy: 'rest_for_one',
      intensity: 3,
      period: 10_000,
      children: [
        ...(opts.server ? [] : [natsServerChild({ dataDir: join(dataDir, 'nats'), port: opts.port, serverName: `troupe-${opts.cluster}` })]),
        busChild((ctx) => ({ servers: opts.server ?? natsUrl(ctx.valueOf<ProcessValue<NatsServerInfo>>('nats-server')), cluster: opts.cluster, name: 'troupe-up' })),
        taskChild({
          id: 'store',
          waitReady: true,
          run: async (signal, ctx) => {
            const bus = ctx.valueOf<Bus>('bus')!;
            await KvStore.open(bus, bus.subjects.stateBucket);
            await ensureEventStream(bus);
            ctx.ready();
            await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
          },
        }),
        taskChild<ControlPlane>({
          id: 'control-plane',
          waitReady: true,
          shutdown: 10_000,
          run: async (signal, ctx) => {
            const cp = await ControlPlane.start({ bus: ctx.valueOf<Bus>('bus')!, logger: opts.logger, signal, clusterCidr: opts.clusterCidr, serviceCidr: opts.serviceCidr, identity: `troupe-up:${hostname()}:${dataDir}` });
            ctx.ready(cp);
            const onAbort = () => void cp.stop();
            signal.addEventListener('abort', onAbort, { once: true });
            const r = await cp.done;
            if (r.lost && !signal.aborted) throw new Error('the control plane lost its lease to another controller');
          },
        }),
        ...(opts.nodeName === null
          ? []
          : [
              taskChild<Agent>({
                id: 'node-agent',
                waitReady: true,
                shutdown: 20_000,
                run: async (signal, ctx) => {
                  const agent = new Agent({ bus: ctx.valueOf<Bus>('bus')!, nodeName: opts.nodeName ?? defaultNodeName(), dataDir: join(dataDir, 'node'), logger: opts.logger, nodeIp: opts.nodeIp });
                  await agent.start();
                  ctx.ready(agent);
                  await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
                  await agent.stop();
                },
              }),
            ]),
      ],
    },
    { logger: opts.logger },
  );
  const url = opts.server ?? natsUrl(sup.valueOf<ProcessValue<NatsServerInfo>>('nats-server'));
  if (opts.writeContext !== false) writeContext({ server: url, cluster: opts.cluster, dataDir });
  return { supervisor: sup, url, stop: () => sup.stop() };
}

/** This machine's host name as a DNS-1123 label. */
export function defaultNodeName(): string {
  const name = hostname().toLowerCase().split('.')[0]!.replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return name || 'node-1';
}

function natsUrl(v: ProcessValue<NatsServerInfo> | undefined): string {
  if (!v?.ready) throw new Error('the embedded nats-server is not running');
  return v.ready.url;
}
