/**
 * crun, through execa. On a hybrid cgroup layout crun 1.8 refuses to work while the cgroup2
 * `unified` mount is visible, so each call then runs in a private mount namespace without it
 * (`unshare -m`), unless this process already runs in such a namespace (the agent enters one once
 * at start; see TROUPE_PRIVATE_MOUNT_NS).
 */
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { requireProgram } from '../supervisor/index.js';
import { detectCgroups, type CgroupInfo } from './cgroups.js';
import { RuntimeError } from './errors.js';

export const CRUN_INSTALL_HINT = 'install it with `apt-get install crun` (Debian package crun), or run `bash deploy/install.sh`';

/** The argv prefix that puts a command where crun can work on this machine's cgroup layout. */
export function namespacePrefix(info: CgroupInfo, mountinfo?: string): string[] {
  if (info.layout !== 'hybrid') return [];
  const current = detectCgroups(mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8'));
  if (current.layout !== 'hybrid') return []; // this process already lives where `unified` is gone
  const umount = `umount ${info.unified} 2>/dev/null || umount -l ${info.unified}`;
  return ['unshare', '-m', '--propagation', 'private', '--', '/bin/sh', '-c', `${umount}; exec "$0" "$@"`];
}

export interface CrunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs one command to its end (the node's launcher does it without forking the agent). */
export type CommandRunner = (argv: string[], opts: { input?: string; env?: Record<string, string>; timeoutMs?: number }) => Promise<CrunResult>;

export class Crun {
  readonly binary: string;
  readonly prefix: string[];
  /**
   * When set, crun runs through it, without the namespace prefix (the runner's commands already
   * run where crun can work); otherwise through execa.
   */
  runner?: CommandRunner;

  constructor(
    /** crun's state folder (its --root): one per agent, so agents never see each other's containers. */
    readonly stateRoot: string,
    readonly cgroups: CgroupInfo = detectCgroups(),
    binary?: string,
  ) {
    this.binary = binary ?? requireProgram('crun', CRUN_INSTALL_HINT);
    this.prefix = namespacePrefix(cgroups);
  }

  /** The full argv of one crun call. */
  argv(args: string[]): string[] {
    return [...this.prefix, this.binary, '--root', this.stateRoot, ...args];
  }

  async call(args: string[], opts: { timeout?: number; input?: string; reject?: boolean } = {}): Promise<CrunResult> {
    let out: CrunResult;
    let short = '';
    if (this.runner) {
      out = await this.runner([this.binary, '--root', this.stateRoot, ...args], { input: opts.input, timeoutMs: opts.timeout ?? 30_000 });
    } else {
      const [file, ...rest] = this.argv(args);
      const r = await execa(file!, rest, { reject: false, timeout: opts.timeout ?? 30_000, input: opts.input, stdin: opts.input === undefined ? 'ignore' : undefined, stripFinalNewline: false });
      out = { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
      short = r.shortMessage ?? "";
    }
    if (opts.reject !== false && out.exitCode !== 0) {
      throw new RuntimeError(`crun ${args[0]} failed: ${out.stderr.trim() || short || `exit ${out.exitCode}`}`, { args, exitCode: out.exitCode });
    }
    return out;
  }

  async state(id: string): Promise<{ status: string; pid: number } | undefined> {
    const r = await this.call(['state', id], { reject: false });
    if (r.exitCode !== 0) return undefined;
    const s = JSON.parse(r.stdout) as { status: string; pid: number };
    return { status: s.status, pid: s.pid };
  }

  async kill(id: string, signal: string): Promise<boolean> {
    const r = await this.call(['kill', id, signal], { reject: false });
    return r.exitCode === 0;
  }

  async delete(id: string): Promise<void> {
    await this.call(['delete', '--force', id], { reject: false });
  }

  /** Ids of the containers in this state root. */
  async list(): Promise<{ id: string; pid: number; status: string }[]> {
    const r = await this.call(['list', '--format', 'json'], { reject: false });
    if (r.exitCode !== 0 || !r.stdout.trim()) return [];
    return (JSON.parse(r.stdout) as { id: string; pid: number; status: string }[]).map((c) => ({ id: c.id, pid: c.pid, status: c.status }));
  }

  /** Runs a command in a running container; its output and exit code come back. */
  async exec(id: string, command: string[], opts: { timeout?: number; input?: string } = {}): Promise<CrunResult> {
    return this.call(['exec', id, ...command], { reject: false, timeout: opts.timeout, input: opts.input });
  }
}
