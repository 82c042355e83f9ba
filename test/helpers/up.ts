/**
 * `troupe up` as a real process tree, for end-to-end tests; killed when the test ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { cli, killNodeLeftovers, removeStateDir } from './agent.js';
import type { Teardown } from './nats.js';

/** The nats-server pid whose config lives under `dir` (found through /proc). */
export function natsPidUnder(dir: string): number | undefined {
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (cmd.some((a) => a.endsWith('nats-server')) && cmd.some((a) => a.startsWith(dir)) && !/\) Z /.test(st)) return Number(p);
    } catch {
      // gone
    }
  }
  return undefined;
}

export async function startUp(t: Teardown, dir: string, extra: string[] = [], nodeName = 'up-node'): Promise<{ child: ChildProcess; out: string[]; err: string[] }> {
  const child = spawn(process.execPath, [cli, 'up', '--data-dir', join(dir, 'data'), '--port', '0', '--node-name', nodeName, ...extra], {
    env: { ...process.env, TROUPE_HOME: join(dir, 'home') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    // what the node left (after a kill -9, say): its containers, sandboxes and tmpfs state folder
    const runtime = join(dir, 'data', 'node', 'runtime');
    await killNodeLeftovers(runtime).catch(() => undefined);
    removeStateDir(runtime);
    // and the node's cgroups: its pods', and the spare ones a killed agent keeps
    const { detectCgroups, sweepNodeCgroups } = await import('../../node-agent/index.js');
    await sweepNodeCgroups(detectCgroups(), nodeName, new Set());
  });
  const out: string[] = [];
  const err: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => err.push(l));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      out.push(l);
      if (l.startsWith('troupe is up')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`troupe up exited ${code}: ${err.join('\n')}`)));
  });
  return { child, out, err };
}

