/**
 * Test helpers: a real nats-server on a free loopback port with its own store directory, stopped
 * (and its directory removed) when the test ends, even when it fails.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bus, startNatsServer, type BusOptions, type EmbeddedNats } from '../../actors/index.js';
import { createLogger, type Logger } from '../../supervisor/index.js';

export interface Teardown {
  teardown(fn: () => unknown): void;
}

export function tempDir(t: Teardown, prefix = 'troupe-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Sets an environment variable for the rest of the test; its value before (or its absence) comes back at the end. */
export function setEnv(t: Teardown, name: string, value: string): void {
  const saved = process.env[name];
  process.env[name] = value;
  t.teardown(() => {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  });
}

export async function withNats(t: Teardown, opts: { port?: number } = {}): Promise<EmbeddedNats & { dataDir: string }> {
  const dataDir = tempDir(t, 'troupe-nats-');
  const srv = await startNatsServer({ dataDir, port: opts.port ?? 0 });
  t.teardown(() => srv.stop());
  return Object.assign(srv, { dataDir });
}

export async function withBus(t: Teardown, url: string, opts: Partial<BusOptions> = {}): Promise<Bus> {
  const bus = await Bus.connect({ servers: url, ...opts });
  t.teardown(() => bus.close());
  return bus;
}

/** A logger whose JSON lines are kept for assertions. */
export function captureLogger(level: 'debug' | 'info' | 'warn' = 'debug'): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const logger = createLogger({ level, pretty: false, destination: { write: (s: string) => out.push(s) } });
  return { logger, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** Polls until `fn` returns a truthy value, or fails after `timeout` ms. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeout = 10_000, every = 10): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeout;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Calls `seen` with every buffer the bus hands its socket (one call per socket write). */
export function onSocketWrite(bus: Bus, seen: (b: Uint8Array) => void): void {
  const transport = (bus.nc as unknown as { protocol: { transport: { send(b: Uint8Array): void } } }).protocol.transport;
  const send = transport.send.bind(transport);
  transport.send = (b) => {
    seen(b);
    send(b);
  };
}
