/**
 * The embedded nats-server: the system package's binary, run as a supervised OS-process child.
 *
 * It writes the server's config (JetStream store under the data dir, the port; 0 picks a free one
 * on the first start and keeps it across restarts, so clients reconnect to the same URL), waits
 * until the server says it is ready, and stops it with SIGTERM, then SIGKILL after the shutdown
 * timeout. Its log lines go into pino at their own level.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { processChild, requireProgram, Supervisor, type ChildSpec, type ProcessValue, type Restart } from '../supervisor/index.js';

export const NATS_INSTALL_HINT = 'install it with `apt-get install nats-server` (Debian package nats-server), or run `bash deploy/install.sh`';

export interface NatsServerOptions {
  /** Folder for the config and the JetStream store. */
  dataDir: string;
  /** Client port; 0 (default) picks a free one. */
  port?: number;
  host?: string;
  /** Server name, unique in a NATS cluster. */
  serverName?: string;
  /** Path of the binary (default: nats-server on PATH). */
  binary?: string;
  /** Limits for the JetStream store. */
  maxMemoryStore?: string;
  maxFileStore?: string;
  maxPayload?: number;
  id?: string;
  restart?: Restart;
  /** Extra config lines (e.g. a cluster block), appended verbatim. */
  extraConfig?: string;
}

export interface NatsServerInfo {
  url: string;
  port: number;
  host: string;
}

/** Renders nats-server's config file. */
export function natsServerConfig(opts: NatsServerOptions & { port: number }): string {
  const host = opts.host ?? '127.0.0.1';
  const lines = [
    `server_name: ${JSON.stringify(opts.serverName ?? 'troupe')}`,
    `listen: "${host}:${opts.port === 0 ? -1 : opts.port}"`,
    `max_payload: ${opts.maxPayload ?? 1024 * 1024}`,
    'jetstream {',
    `  store_dir: ${JSON.stringify(join(opts.dataDir, 'jetstream'))}`,
    `  max_memory_store: ${opts.maxMemoryStore ?? '256MB'}`,
    `  max_file_store: ${opts.maxFileStore ?? '10GB'}`,
    '}',
  ];
  if (opts.extraConfig) lines.push(opts.extraConfig);
  return `${lines.join('\n')}\n`;
}

const LEVELS: Record<string, 'info' | 'warn' | 'error' | 'debug' | 'fatal'> = {
  // nats-server's info lines are mostly its start banner: keep them at debug.
  INF: 'debug',
  WRN: 'warn',
  ERR: 'error',
  DBG: 'debug',
  TRC: 'debug',
  FTL: 'fatal',
};

function logLine(logger: Logger, line: string): void {
  // "[pid] 2026/11/26 14:00:00.123456 [INF] message"
  const m = /^\[\d+\] \S+ \S+ \[([A-Z]{3})\] (.*)$/.exec(line);
  if (m) logger[LEVELS[m[1]!] ?? 'info'](m[2]!);
  else logger.info(line);
}

/** nats-server as a child spec; its value carries the pid and the client URL. */
export function natsServerChild(opts: NatsServerOptions): ChildSpec<ProcessValue<NatsServerInfo>> {
  const binary = opts.binary ?? requireProgram('nats-server', NATS_INSTALL_HINT);
  let port = opts.port ?? 0;
  const host = opts.host ?? '127.0.0.1';
  const inner = (): ChildSpec<ProcessValue<NatsServerInfo>> => {
    mkdirSync(opts.dataDir, { recursive: true });
    const configFile = join(opts.dataDir, 'nats-server.conf');
    writeFileSync(configFile, natsServerConfig({ ...opts, port }));
    let listening: number | undefined;
    return processChild<NatsServerInfo>({
      id: opts.id ?? 'nats-server',
      file: binary,
      args: ['-c', configFile],
      restart: opts.restart ?? 'permanent',
      shutdown: 5000,
      stopSignal: 'SIGTERM',
      readyTimeout: 20_000,
      log: (logger, line) => logLine(logger, line),
      ready: (line) => {
        const l = /Listening for client connections on (\S+):(\d+)/.exec(line);
        if (l) listening = Number(l[2]);
        if (/Server is ready/.test(line) && listening !== undefined) {
          port = listening; // keep the same port across restarts
          return { url: `nats://${host}:${listening}`, port: listening, host };
        }
        return undefined;
      },
    });
  };
  const first = inner();
  return { ...first, start: (ctx) => inner().start(ctx) };
}

/** A stand-alone embedded server under its own supervisor (tests, tools). */
export interface EmbeddedNats {
  readonly url: string;
  readonly port: number;
  /** Pid of the current server process. */
  pid(): number;
  readonly supervisor: Supervisor;
  stop(): Promise<void>;
}

export async function startNatsServer(opts: NatsServerOptions & { logger?: Logger; intensity?: number }): Promise<EmbeddedNats> {
  const id = opts.id ?? 'nats-server';
  const sup = await Supervisor.start(
    { name: 'nats', strategy: 'one_for_one', intensity: opts.intensity ?? 5, period: 10_000, children: [natsServerChild({ ...opts, id })] },
    { logger: opts.logger },
  );
  const info = sup.valueOf<ProcessValue<NatsServerInfo>>(id)!.ready!;
  return {
    url: info.url,
    port: info.port,
    pid: () => sup.valueOf<ProcessValue<NatsServerInfo>>(id)?.pid ?? -1,
    supervisor: sup,
    stop: () => sup.stop(),
  };
}
