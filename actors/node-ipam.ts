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
  /**
   * Block index → the node holding it, and node → its index: kept from the informer's changes and
   * from what is given here, so that finding a free block does not list every node (with a
   * thousand nodes registering at once, listing them for each one was a million steps).
   */
  private readonly taken = new Map<number, string>();
  private readonly blockOf = new Map<string, number>();
  /** Where the search for a free block starts: after the last one given (as Kubernetes' range allocator). */
  private next = 1;

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
      const name = node.metadata.name;
      if (type === 'delete') {
        this.given.delete(name);
        this.exhausted.delete(name);
        this.release(name);
        // its block is free: the nodes waiting for one need not wait for their next try
        for (const waiting of this.exhausted) this.queue.add(`/${waiting}`);
      } else if (node.spec?.podCIDR) this.hold(name, node.spec.podCIDR as string);
      else {
        if (!this.given.has(name)) this.release(name);
        this.queue.add(objectKey(node));
      }
    });
  }

  start(): void {
    // (the queue is paused until resume: every block held is counted before any is given)
    for (const n of this.nodes.list()) {
      if (n.spec?.podCIDR) this.hold(n.metadata.name, n.spec.podCIDR as string);
      else this.queue.add(objectKey(n));
    }
    this.queue.resume();
  }

  blockCidr(i: number): string {
    return `${formatIp((this.cluster.base + i * 2 ** (32 - this.nodeMaskBits)) >>> 0)}/${this.nodeMaskBits}`;
  }

  /** The index of a block of the cluster CIDR, or undefined for a CIDR that is not one of them. */
  private blockIndex(cidr: string): number | undefined {
    let c: { base: number; bits: number };
    try {
      c = parseCidr(cidr);
    } catch {
      return undefined;
    }
    if (c.bits !== this.nodeMaskBits || ((c.base & maskOf(this.cluster.bits)) >>> 0) !== this.cluster.base) return undefined;
    return (c.base - this.cluster.base) / 2 ** (32 - this.nodeMaskBits);
  }

  /** Counts a node's block as taken (a CIDR outside the cluster's takes none of its blocks). */
  private hold(name: string, cidr: string): void {
    const i = this.blockIndex(cidr);
    if (this.blockOf.get(name) === i) return;
    this.release(name);
    if (i === undefined) return;
    if (!this.taken.has(i)) this.taken.set(i, name);
    this.blockOf.set(name, i);
  }

  private release(name: string): void {
    const i = this.blockOf.get(name);
    if (i === undefined) return;
    this.blockOf.delete(name);
    if (this.taken.get(i) === name) this.taken.delete(i);
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
    // block 0 holds the network address of the whole range: blocks 1 to blocks-1 are given
    const usable = this.blocks - 1;
    for (let n = 0; n < usable; n++) {
      const i = 1 + ((this.next - 1 + n) % usable);
      if (this.taken.has(i)) continue;
      this.next = (i % usable) + 1;
      const cidr = this.blockCidr(i);
      this.given.set(name, cidr);
      this.hold(name, cidr);
      this.exhausted.delete(name);
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
