/**
 * A bus connection as a supervisor child: started by connecting, exited when the connection
 * closes (abnormally unless the supervisor closed it).
 */
import type { ChildContext, ChildSpec, ExitReason } from '../supervisor/index.js';
import { Bus, type BusOptions } from './bus.js';

export function busChild(opts: BusOptions | ((ctx: ChildContext) => BusOptions), id = 'bus'): ChildSpec<Bus> {
  return {
    id,
    restart: 'permanent',
    shutdown: 5000,
    start: async (ctx) => {
      const o = typeof opts === 'function' ? opts(ctx) : opts;
      const bus = await Bus.connect({ logger: ctx.logger, ...o });
      let closing = false;
      const exited: Promise<ExitReason> = bus.nc.closed().then((err) =>
        closing ? { type: 'shutdown' } : err ? { type: 'error', error: err } : { type: 'error', error: new Error('bus connection closed') },
      );
      return {
        exited,
        value: bus,
        stop: async () => {
          closing = true;
          await bus.close();
        },
        kill: () => {
          closing = true;
          void bus.nc.close();
        },
      };
    },
  };
}
