/**
 * Pod CIDRs for nodes: each Node without `spec.podCIDR` gets the next free block of the cluster
 * CIDR (default 10.244.0.0/16 cut in /24s: 10.244.N.0/24), as kube-controller-manager's
 * node IPAM does. A block stays with its node until the Node object goes.
 */
import { ValidationError, isIPv4, type KObject } from '../protocol/index.js';
import type { Logger } from '../supervisor/index.js';
import { objectKey, type Informer } from './informer.js';
import type { Resources } from './resources.js';
import { kindOf } from './resource-machine.js';
import { WorkQueue } from './work-queue.js';

const NODE = kindOf('node');

/** An IPv4 address as a 32-bit number. */
export function ipNumber(ip: string): number {
  return ip.split('.').reduce((n, p) => ((n << 8) | Number(p)) >>> 0, 0);
}

function maskOf(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/** Parses "a.b.c.d/n" into a 32-bit base and prefix length; throws a ValidationError if malformed. */
export function parseCidr(cidr: string): { base: number; bits: number } {
  const [addr = '', prefix = ''] = cidr.split('/');
  const bits = /^\d{1,2}$/.test(prefix) ? Number(prefix) : NaN;
  if (cidr.split('/').length !== 2 || !isIPv4(addr) || !(bits <= 32)) throw new ValidationError(`${JSON.stringify(cidr)}: expected an IPv4 CIDR such as 10.244.0.0/16`);
  return { base: (ipNumber(addr) & maskOf(bits)) >>> 0, bits };
}

/** Whether an IPv4 address lies in a CIDR. */
export function inCidr(ip: string, cidr: string): boolean {
  const { base, bits } = parseCidr(cidr);
  return ((ipNumber(ip) & maskOf(bits)) >>> 0) === base;
}

export function formatIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export class NodeIpam {
  readonly queue: WorkQueue;
  private readonly cluster: { base: number; bits: number };
  private readonly blocks: number;
  /** Blocks given out by this controller, before the informer shows them. */
  private readonly given = new Map<string, string>();
  private readonly exhausted = new Set<string>();

  constructor(
    private readonly res: Resources,
    private readonly nodes: Informer,
    private readonly logger: Logger,
    readonly clusterCidr = '10.244.0.0/16',
    readonly nodeMaskBits = 24,
  ) {
    this.cluster = parseCidr(clusterCidr);
    if (nodeMaskBits < this.cluster.bits || nodeMaskBits > 30) throw new ValidationError(`node CIDR size /${nodeMaskBits} does not fit in ${clusterCidr}`);
    this.blocks = 2 ** (nodeMaskBits - this.cluster.bits);
    this.queue = new WorkQueue((key) => this.assign(key), { onError: (key, err) => this.logger.warn({ err, node: key }, 'pod CIDR not assigned; retrying') });
    nodes.on((type, node) => {
      if (type === 'delete') this.given.delete(node.metadata.name);
      else if (!node.spec?.podCIDR) this.queue.add(objectKey(node));
    });
  }

  start(): void {
    for (const n of this.nodes.list()) if (!n.spec?.podCIDR) this.queue.add(objectKey(n));
    this.queue.resume();
  }

  blockCidr(i: number): string {
    return `${formatIp((this.cluster.base + i * 2 ** (32 - this.nodeMaskBits)) >>> 0)}/${this.nodeMaskBits}`;
  }

  private async assign(key: string): Promise<void> {
    const name = key.split('/')[1]!;
    const node = this.nodes.get(undefined, name);
    if (!node || node.spec?.podCIDR) return;
    const prior = this.given.get(name);
    if (prior) {
      await this.res.send(NODE, undefined, name, { type: 'patch', spec: { podCIDR: prior } });
      return;
    }
    const used = new Set([...[...this.nodes.list()].map((n: KObject) => n.spec?.podCIDR as string | undefined), ...this.given.values()].filter(Boolean));
    // block 0 holds the network address of the whole range: start at 1, as 10.244.1.0/24
    for (let i = 1; i < this.blocks; i++) {
      const cidr = this.blockCidr(i);
      if (used.has(cidr)) continue;
      this.given.set(name, cidr);
      await this.res.send(NODE, undefined, name, { type: 'patch', spec: { podCIDR: cidr } });
      this.logger.info({ node: name, podCIDR: cidr }, 'pod CIDR assigned');
      return;
    }
    // exhausted: said once per node, tried again now and then (a node may go and free a block)
    if (!this.exhausted.has(name)) this.logger.warn({ node: name, clusterCIDR: this.clusterCidr }, `no free /${this.nodeMaskBits} left in the cluster CIDR; the node's pods get no pod network until one is free`);
    this.exhausted.add(name);
    this.queue.addAfter(key, 30_000);
  }
}
