/**
 * The one root pino logger of a process. Components take `logger.child({ component, … })`.
 * Pretty output only on a TTY; JSON lines otherwise.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';
import { createRequire } from 'node:module';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** Pretty-print; defaults to whether stderr is a TTY. */
  pretty?: boolean;
  /** Where JSON lines go (default: stderr, synchronously). */
  destination?: NodeJS.WritableStream | { write(s: string): unknown };
  name?: string;
}

export function isLogLevel(v: unknown): v is LevelWithSilent {
  return typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v);
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info';
  const base = { name: opts.name ?? 'troupe' };
  const usePretty = opts.pretty ?? (process.stderr.isTTY === true && opts.destination === undefined);
  if (usePretty) {
    // loaded only for a terminal
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    return pino({ level, base }, pretty({ colorize: true, sync: true, destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' }));
  }
  const dest = opts.destination ?? pino.destination({ fd: 2, sync: true });
  return pino({ level, base }, dest as pino.DestinationStream);
}

let silent: Logger | undefined;
/** A logger that writes nothing, for library use without a configured logger. */
export function silentLogger(): Logger {
  silent ??= pino({ level: 'silent' });
  return silent;
}
