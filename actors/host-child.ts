/**
 * An actor host as a supervisor child: it exits abnormally when its actors' supervisor gives up.
 * Its bus is the sibling child `busId` (default "bus"), unless one is given.
 */
import type { ChildSpec, Restart } from '../supervisor/index.js';
import { ActorHost, type ActorHostOptions } from './actor-host.js';
import type { Bus } from './bus.js';

export interface HostChildOptions extends ActorHostOptions {
  id?: string;
  restart?: Restart;
  bus?: Bus;
  busId?: string;
}

export function hostChild(opts: HostChildOptions): ChildSpec<ActorHost> {
  const { id, restart, bus, busId, ...hostOpts } = opts;
  return {
    id: id ?? 'actor-host',
    restart: restart ?? 'permanent',
    shutdown: 15_000,
    start: async (ctx) => {
      const b = bus ?? ctx.valueOf<Bus>(busId ?? 'bus');
      if (!b) throw new Error(`actor host: no bus (no running sibling ${JSON.stringify(busId ?? 'bus')})`);
      const host = await ActorHost.start(b, { logger: ctx.logger, clock: ctx.clock, ...hostOpts });
      return { exited: host.exited, stop: () => host.stop(), kill: () => void host.stop(), value: host };
    },
  };
}
