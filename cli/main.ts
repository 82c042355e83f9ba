#!/usr/bin/env node
/**
 * The `troupe` command. Talks to the cluster only through the bus.
 */
import { parseArgs } from 'node:util';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { PROTOCOL_VERSION, formatVersion, TroupeError } from '../protocol/index.js';
import { createLogger, isLogLevel, LOG_LEVELS } from '../supervisor/index.js';
import { up } from './up.js';
import { VERSION } from './version.js';

const USAGE = `troupe — a container orchestrator built as an actor system

Usage:
  troupe up [--data-dir DIR] [--port N] [--cluster NAME] [--server URL]
                                   bring up the one-node cluster (embedded nats-server, control plane)
  troupe version                   print the version
  troupe help                      this text

Global flags:
  --log-level LEVEL   ${LOG_LEVELS.join('|')} (default info)
  --server URL        NATS URL of the cluster (or TROUPE_SERVER; default from ~/.troupe/context.json)
`;

class UsageError extends Error {}

function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/troupe' : join(homedir(), '.troupe', 'data');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    case 'version':
    case '--version':
      process.stdout.write(`troupe ${VERSION} (protocol ${formatVersion(PROTOCOL_VERSION)})\n`);
      return 0;
    case 'up':
      return cmdUp(rest);
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}; see \`troupe help\``);
  }
}

async function cmdUp(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      'data-dir': { type: 'string' },
      port: { type: 'string' },
      cluster: { type: 'string' },
      server: { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  const level = values['log-level'] ?? 'info';
  if (!isLogLevel(level)) throw new UsageError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  const port = values.port === undefined ? 4222 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port: expected a port number from 0 to 65535, got ${JSON.stringify(values.port)}`);
  const logger = createLogger({ level });
  const dataDir = values['data-dir'] ?? defaultDataDir();
  const cluster = values.cluster ?? 'default';
  const c = await up({ dataDir, port, cluster, logger, server: values.server });
  process.stdout.write(`troupe is up: cluster "${cluster}" on ${c.url} (data in ${dataDir})\n` + `  the CLI on this machine finds it through ${join(process.env.TROUPE_HOME ?? join(homedir(), '.troupe'), 'context.json')}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    c.stop().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  const reason = await c.supervisor.exited;
  if (reason.type === 'error' && !stopping) {
    logger.fatal({ err: reason.error }, 'the cluster supervisor gave up');
    return 1;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || (err as { code?: string })?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as { code?: string })?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      process.stderr.write(`troupe: ${(err as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    const msg = err instanceof TroupeError ? `${err.message} (${err.code})` : err instanceof Error ? err.message : String(err);
    process.stderr.write(`troupe: ${msg}\n`);
    process.exitCode = 1;
  },
);
