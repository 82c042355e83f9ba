/**
 * Pod networking through the standard CNI plugins (Debian's containernetworking-plugins), called
 * as the CNI spec says and as container runtimes do: the plugin binary, CNI_* variables, the
 * network configuration on stdin, the result as JSON on stdout.
 *
 * Each node has one bridge (`tb-<hash of the node name>`, so two agents on one machine never share
 * one) with the node's pod CIDR; host-local IPAM hands out addresses and keeps its allocations
 * under the agent's data dir. No masquerading: pods reach each other, their node and what the
 * routes allow, never the outside by accident.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { CommandRunner } from './crun.js';
import { RuntimeError } from './errors.js';

export const CNI_PATH = '/usr/lib/cni';
export const CNI_INSTALL_HINT = 'apt-get install containernetworking-plugins';

export interface CniResult {
  /** The pod's address, without prefix length ("10.244.1.5"). */
  ip: string;
  /** With prefix length ("10.244.1.5/24"). */
  cidr: string;
  gateway?: string;
}

/** A hostPort, as CNI's portMappings capability names it. */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  hostIP?: string;
}

/** The host ports a pod's containers ask for. */
export function portMappingsOf(containers: { ports?: { containerPort: number; hostPort?: number; protocol?: string; hostIP?: string }[] }[]): PortMapping[] {
  const out: PortMapping[] = [];
  for (const c of containers) {
    for (const p of c.ports ?? []) {
      if (p.hostPort) out.push({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: (p.protocol ?? 'TCP').toLowerCase() as PortMapping['protocol'], ...(p.hostIP ? { hostIP: p.hostIP } : {}) });
    }
  }
  return out;
}

export interface CniOptions {
  node: string;
  /** The node's pod CIDR, e.g. 10.244.1.0/24. */
  podCidr: string;
  /** Where host-local keeps its allocations. */
  dataDir: string;
  /** Extra routes put in every pod (e.g. the cluster CIDR via the bridge). */
  routes?: string[];
  timeoutMs?: number;
  /** Runs the plugins (the node's launcher, so the agent does not fork); default execa. */
  runner?: CommandRunner;
}

/** The bridge of a node: at most 15 characters, as Linux wants. */
export function bridgeName(node: string): string {
  return `tb-${createHash('sha256').update(node).digest('hex').slice(0, 8)}`;
}

export class Cni {
  readonly bridge: string;
  readonly network: string;

  constructor(readonly opts: CniOptions) {
    if (!existsSync(join(CNI_PATH, 'bridge')) || !existsSync(join(CNI_PATH, 'host-local'))) {
      throw new RuntimeError(`the CNI plugins are missing from ${CNI_PATH}: ${CNI_INSTALL_HINT}`, { path: CNI_PATH });
    }
    this.bridge = bridgeName(opts.node);
    this.network = `troupe-${opts.node}`.slice(0, 64);
  }

  /** The network configuration given to the bridge plugin. */
  config(): Record<string, unknown> {
    return {
      cniVersion: '1.0.0',
      name: this.network,
      type: 'bridge',
      bridge: this.bridge,
      isGateway: true,
      ipMasq: false,
      hairpinMode: true,
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: this.opts.podCidr }]],
        dataDir: this.opts.dataDir,
        routes: (this.opts.routes ?? []).map((dst) => ({ dst })),
      },
    };
  }

  /** The portmap plugin's configuration, chained after the bridge (hostPort). */
  portmapConfig(portMappings: PortMapping[], prevResult?: unknown): Record<string, unknown> {
    return {
      cniVersion: '1.0.0',
      name: this.network,
      type: 'portmap',
      capabilities: { portMappings: true },
      snat: true,
      runtimeConfig: { portMappings },
      ...(prevResult ? { prevResult } : {}),
    };
  }

  private async call(command: 'ADD' | 'DEL' | 'CHECK', containerId: string, netns: string, plugin: 'bridge' | 'portmap' = 'bridge', conf: Record<string, unknown> = this.config()): Promise<string> {
    const env = { CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH, PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
    const timeoutMs = this.opts.timeoutMs ?? 15_000;
    const r = this.opts.runner
      ? await this.opts.runner([join(CNI_PATH, plugin)], { input: JSON.stringify(conf), env, timeoutMs })
      : await execa(join(CNI_PATH, plugin), [], { input: JSON.stringify(conf), env, extendEnv: false, reject: false, timeout: timeoutMs });
    if (r.exitCode !== 0) {
      let msg = r.stdout || r.stderr;
      try {
        const e = JSON.parse(r.stdout) as { msg?: string; details?: string; code?: number };
        msg = `${e.msg ?? ''}${e.details ? `: ${e.details}` : ''} (CNI error ${e.code})`;
      } catch {
        // not JSON: keep the raw text
      }
      throw new RuntimeError(`CNI ${command} for ${containerId} failed: ${msg.trim() || `exit ${r.exitCode}`}`, { command, containerId });
    }
    return r.stdout;
  }

  /**
   * Puts the pod's network namespace on the node's bridge, then (a chain, as the CNI spec runs
   * one) publishes its host ports with portmap; returns its address.
   */
  async add(containerId: string, netns: string, portMappings: PortMapping[] = []): Promise<CniResult> {
    const raw = await this.call('ADD', containerId, netns);
    const out = JSON.parse(raw) as { ips?: { address: string; gateway?: string }[] };
    const first = out.ips?.[0];
    if (!first) throw new RuntimeError(`CNI ADD for ${containerId} gave no address`, { containerId });
    if (portMappings.length > 0) {
      try {
        await this.call('ADD', containerId, netns, 'portmap', this.portmapConfig(portMappings, out));
      } catch (err) {
        await this.call('DEL', containerId, netns).catch(() => undefined);
        throw err;
      }
    }
    return { ip: first.address.split('/')[0]!, cidr: first.address, gateway: first.gateway };
  }

  /** Unpublishes the host ports, takes the pod off the bridge, gives its address back (idempotent). */
  async del(containerId: string, netns: string, portMappings: PortMapping[] = []): Promise<void> {
    let failed: unknown;
    if (portMappings.length > 0) await this.call('DEL', containerId, netns, 'portmap', this.portmapConfig(portMappings)).catch((err) => (failed = err));
    await this.call('DEL', containerId, netns);
    if (failed) throw failed;
  }

  /** Addresses host-local holds now (for tests and leak checks). */
  allocations(): string[] {
    const dir = join(this.opts.dataDir, this.network);
    try {
      return readdirSync(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    } catch {
      return [];
    }
  }
}
