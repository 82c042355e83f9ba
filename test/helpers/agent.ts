/**
 * Test helpers for the CLI and the node agent as real processes, stopped when the test ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Teardown } from './nats.js';
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, rmdirSync, rmSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readdirIf, readIf } from '../../node-agent/files.js';


export const cli = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

/** Runs the troupe CLI to completion. */
export function runCli(env: NodeJS.ProcessEnv, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [cli, ...args], { env });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    // 'close', not 'exit': at 'exit' the output may not all have been read yet (it lost the end of
    // `logs` output now and then: an empty or partial --tail)
    c.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Starts `troupe agent` and resolves once it serves; SIGTERM when the test ends. */
export async function startAgent(t: Teardown, url: string, node: string, dataDir: string, extra: string[] = [], wrap: string[] = []): Promise<ChildProcess> {
  const argv = [...wrap, process.execPath, cli, 'agent', '--server', url, '--node-name', node, '--data-dir', dataDir, '--log-level', 'warn', ...extra];
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // where the runtime link points (tmpfs), once the agent has made it: a teardown that removed the
  // data dir first (a tempDir registered before this) must not leave it, or what it names, behind
  let state: string | undefined;
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    // an agent leaves its pods running when it stops (for adoption): a failed test leaves none
    const runtime = join(dataDir, 'runtime');
    await killNodeLeftovers(existsSync(runtime) ? runtime : (state ?? runtime));
    // nor their cgroups, nor the spare ones of an agent that was killed
    const { detectCgroups, sweepNodeCgroups } = await import('../../node-agent/index.js');
    await sweepNodeCgroups(detectCgroups(), node, new Set());
    removeStateDir(runtime);
    // what a container still being torn down held (its rootfs mount, its shim's files) can make the
    // first removal fail: tried again for a while, then said
    for (let i = 0; state && existsSync(state) && i < 30; i++) {
      removeStateFolder(state);
      if (existsSync(state)) await new Promise((r) => setTimeout(r, 100));
    }
    if (state && existsSync(state)) process.stderr.write(`startAgent teardown: ${state} could not be removed\n`);
    await removeBridge(node);
  });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => l.includes('is up') && resolve());
    child.once('exit', (c) => reject(new Error(`agent ${node} exited ${c}`)));
  });
  try {
    state = realpathSync(join(dataDir, 'runtime'));
  } catch {
    // no link (a runtime folder of its own): removed with the data dir
  }
  return child;
}

/**
 * Kills what a stopped agent left running under its runtime folder: every crun container (its shim
 * then ends) and every sandbox its pid files name (the pods' and the pool's).
 */
export async function killNodeLeftovers(runtimeDir: string): Promise<void> {
  const { Crun } = await import('../../node-agent/index.js');
  const crun = new Crun(join(runtimeDir, 'crun'));
  for (const c of await crun.list()) await crun.kill(c.id, 'SIGKILL');
  // the pods' sandboxes and those the node kept ready (its pool), each a sleep; the shims it kept
  // ready, children of its launcher (they carry its command line)
  const sandbox = (cmd: string) => /^(\/bin\/busybox\0)?sleep\0/.test(cmd);
  const shim = (cmd: string) => cmd.includes('troupe-launcher');
  for (const [sub, ours] of [['sandboxes', sandbox], ['pool', sandbox], ['shims', shim]] as const) {
    for (const f of readdirIf(join(runtimeDir, sub))) {
      if (!f.endsWith('.pid')) continue;
      const pid = Number(readFileSync(join(runtimeDir, sub, f), 'utf8'));
      if (pid > 0 && ours(readIf(`/proc/${pid}/cmdline`))) process.kill(pid, 'SIGKILL');
    }
  }
}

/** Removes a runtime's state folder on tmpfs (what its link points to) and the link. */
export function removeStateDir(link: string): void {
  try {
    if (!lstatSync(link).isSymbolicLink()) return;
    const target = realpathSync(link);
    unlinkSync(link);
    removeStateFolder(target);
  } catch {
    // gone already
  }
}

/** Removes a state folder on tmpfs, and the shared parent (…/troupe) once no other node's is in it. */
function removeStateFolder(target: string): void {
  try {
    rmSync(target, { recursive: true, force: true });
    if (readdirIf(dirname(target)).length === 0) rmdirSync(dirname(target));
  } catch {
    // gone already, or another node's folder still there
  }
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

/**
 * Waits until a node has no container, container folder, sandbox or pod cgroup left (the spare
 * cgroups a running agent keeps ready, as its pool of sandboxes, are not a pod's).
 */
export async function waitNodeEmpty(dataDir: string, node: string): Promise<void> {
  const { Crun } = await import('../../node-agent/index.js');
  const { waitFor } = await import('./nats.js');
  const crun = new Crun(join(dataDir, 'runtime', 'crun'));
  let left = '';
  await waitFor(
    async () => {
      const parts = [
        ...(await crun.list()).map((c) => `container ${c.id}`),
        ...readdirIf(join(dataDir, 'runtime', 'containers')).map((f) => `folder ${f}`),
        ...readdirIf(join(dataDir, 'runtime', 'sandboxes')).map((f) => `sandbox file ${f}`),
        ...(await podCgroupsLeft(node)).map((f) => `cgroup ${f}`),
      ];
      left = parts.join(', ');
      return parts.length === 0;
    },
    `node ${node} to be empty`,
    20_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; still there: ${left}`);
  });
}

/** The pods' cgroup folders a node has (`<hierarchy>/troupe-<node>/<pod>`): the spare ones are not a pod's. */
export async function podCgroupsLeft(node: string): Promise<string[]> {
  const { detectCgroups, isSpareCgroup } = await import('../../node-agent/index.js');
  const info = detectCgroups();
  const hierarchies = info.layout === 'v2' ? [info.unified!] : info.v1Mounts;
  return hierarchies.flatMap((h) => subfolders(join(h, `troupe-${node}`)).filter((f) => !isSpareCgroup(f)).map((f) => `${h}/troupe-${node}/${f}`));
}

/** The folders in a folder (none when it is not there). */
function subfolders(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

/** Deletes a node's pod bridge (its veths go with their namespaces). */
export async function removeBridge(node: string): Promise<void> {
  const { bridgeName, removeServiceProxy } = await import('../../node-agent/index.js');
  const { execFileSync } = await import('node:child_process');
  try {
    execFileSync('ip', ['link', 'del', bridgeName(node)], { stdio: 'ignore' });
  } catch {
    // not there
  }
  // the node's Service table and interface go too
  await removeServiceProxy(node);
}
