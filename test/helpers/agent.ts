/**
 * Test helpers for the CLI and the node agent as real processes, stopped when the test ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Teardown } from './nats.js';

export const cli = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

/** Runs the troupe CLI to completion. */
export function runCli(env: NodeJS.ProcessEnv, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [cli, ...args], { env });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.once('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Starts `troupe agent` and resolves once it serves; SIGTERM when the test ends. */
export async function startAgent(t: Teardown, url: string, node: string, dataDir: string, extra: string[] = []): Promise<ChildProcess> {
  const child = spawn(process.execPath, [cli, 'agent', '--server', url, '--node-name', node, '--data-dir', dataDir, '--log-level', 'warn', ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => l.includes('is up') && resolve());
    child.once('exit', (c) => reject(new Error(`agent ${node} exited ${c}`)));
  });
  return child;
}

/** Whether a process exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
