/**
 * The CLI's context: where the cluster is. `troupe up` writes it so that the CLI on the same
 * machine needs no flags; `--server` and TROUPE_SERVER override it.
 */
import { mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface Context {
  server: string;
  cluster: string;
  dataDir?: string;
}

export function contextFile(): string {
  return process.env.TROUPE_CONTEXT ?? join(process.env.TROUPE_HOME ?? join(homedir(), '.troupe'), 'context.json');
}

export function readContext(): Context | undefined {
  try {
    const c = JSON.parse(readFileSync(contextFile(), 'utf8')) as Partial<Context>;
    if (typeof c.server === 'string' && typeof c.cluster === 'string') return c as Context;
  } catch {
    // no context yet
  }
  return undefined;
}

export function writeContext(c: Context): void {
  const file = contextFile();
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(c, null, 2)}\n`);
  renameSync(tmp, file);
}

/** The server to talk to: flag, then environment, then the context, then the default port. */
export function resolveServer(flag: string | undefined): { server: string; cluster: string } {
  const ctx = readContext();
  return {
    server: flag ?? process.env.TROUPE_SERVER ?? ctx?.server ?? 'nats://127.0.0.1:4222',
    cluster: process.env.TROUPE_CLUSTER ?? ctx?.cluster ?? 'default',
  };
}
