/**
 * A test network of "hosts" on this one machine: each host is a network namespace with an eth0
 * on a switch (a bridge in a namespace of its own), and the test's own namespace joins the
 * switch through a veth, so that a nats-server listening on that link's address reaches every
 * host. Addresses are 10.250.<id>.0/24 (.1 the test side, .11, .12, … the hosts), on links the
 * lab created: nothing the hosts send can reach another address. Everything is deleted when the
 * test ends: the namespaces (with their links, bridges, routes and nft tables), the veth, and
 * any process still running in a host.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Teardown } from './nats.js';

const run = promisify(execFile);

export interface LabHost {
  name: string;
  netns: string;
  ip: string;
  /** Runs a command inside the host's network namespace. */
  exec(cmd: string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
}

export interface Lab {
  /** The test side's address on the lab link. */
  gatewayIp: string;
  hosts: LabHost[];
  netnsNames: string[];
  hostVeth: string;
  /** Kills what runs in the hosts and deletes the namespaces and the veth (also done at teardown). */
  destroy(): Promise<void>;
}

async function sh(cmd: string[]): Promise<void> {
  await run(cmd[0]!, cmd.slice(1));
}

/** Whether a network namespace by that name exists. */
export async function netnsExists(name: string): Promise<boolean> {
  const r = await run('ip', ['netns', 'list']);
  return r.stdout.split('\n').some((l) => l.split(' ')[0] === name);
}

export async function linkExists(name: string): Promise<boolean> {
  return run('ip', ['link', 'show', 'dev', name]).then(
    () => true,
    () => false,
  );
}

export async function makeLab(t: Teardown, id: number, count: number): Promise<Lab> {
  const prefix = `tl${id}`;
  const sw = `${prefix}-sw`;
  const hostVeth = `${prefix}-up`;
  const names = Array.from({ length: count }, (_, i) => `${prefix}-h${i + 1}`);
  const all = [sw, ...names];
  const cleanup = async () => {
    for (const ns of all) {
      // whatever still runs in a host (an agent that did not stop) goes first
      const pids = await run('ip', ['netns', 'pids', ns]).then((r) => r.stdout.split('\n').filter(Boolean), () => [] as string[]);
      for (const p of pids) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          // gone
        }
      }
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
    await run('ip', ['link', 'del', hostVeth]).catch(() => undefined);
  };
  await cleanup(); // a run that was killed may have left one
  t.teardown(cleanup);
  const subnet = `10.250.${id}`;
  for (const ns of all) await sh(['ip', 'netns', 'add', ns]);
  await sh(['ip', '-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
  await sh(['ip', '-n', sw, 'link', 'set', 'br0', 'up']);
  // the test's side
  await sh(['ip', 'link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'p0', 'netns', sw]);
  await sh(['ip', '-n', sw, 'link', 'set', 'p0', 'master', 'br0', 'up']);
  await sh(['ip', 'addr', 'add', `${subnet}.1/24`, 'dev', hostVeth]);
  await sh(['ip', 'link', 'set', hostVeth, 'up']);
  const hosts: LabHost[] = [];
  for (let i = 0; i < count; i++) {
    const ns = names[i]!;
    const ip = `${subnet}.${11 + i}`;
    await sh(['ip', 'link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `p${i + 1}`, 'netns', sw]);
    await sh(['ip', '-n', sw, 'link', 'set', `p${i + 1}`, 'master', 'br0', 'up']);
    await sh(['ip', '-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
    await sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    hosts.push({
      name: ns,
      netns: ns,
      ip,
      exec: (cmd, timeoutMs = 30_000) =>
        run('ip', ['netns', 'exec', ns, ...cmd], { timeout: timeoutMs }).then(
          (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
          (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
        ),
    });
  }
  return { gatewayIp: `${subnet}.1`, hosts, netnsNames: all, hostVeth, destroy: cleanup };
}
