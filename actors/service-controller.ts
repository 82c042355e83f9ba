/**
 * Services on the control-plane side: cluster IPs from the service CIDR (default 10.96.0.0/16),
 * node ports from 30000–32767, admission of what the cluster already holds (an address or node
 * port in use, an address outside the range, a targetPort naming no port of the selected pods),
 * and the Endpoints of each Service: the addresses of its selected pods, Ready ones in
 * `addresses`, the others in `notReadyAddresses`, pods being deleted in neither — kept current
 * from the pod informer, so a change reaches them as soon as the store has it.
 */
import { matchesSelector, stableJson, type KObject } from '../protocol/index.js';
import type { Logger } from '../supervisor/index.js';
import { objectKey, type Informer } from './informer.js';
import { formatIp, ipNumber, parseCidr } from './node-ipam.js';
import { isReady } from './pod-util.js';
import type { Resources } from './resources.js';
import { kindOf, type Admission } from './resource-machine.js';
import { WorkQueue } from './work-queue.js';

const SERVICE = kindOf('service');
const ENDPOINTS = kindOf('endpoints');
export const NODE_PORT_MIN = 30000;
export const NODE_PORT_MAX = 32767;

interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  nodePort?: number;
  protocol?: string;
}

export class ServiceController {
  readonly queue: WorkQueue;
  private readonly range: { base: number; size: number };
  /** Addresses and node ports given out, by service key, before the informer shows them. */
  private readonly givenIp = new Map<string, string>();
  private readonly givenPorts = new Map<string, number[]>();

  constructor(
    private readonly res: Resources,
    private readonly services: Informer,
    private readonly pods: Informer,
    private readonly logger: Logger,
    readonly serviceCidr = '10.96.0.0/16',
  ) {
    const { base, bits } = parseCidr(serviceCidr);
    this.range = { base, size: 2 ** (32 - bits) };
    this.queue = new WorkQueue((key) => this.reconcile(key), { concurrency: 4, onError: (key, err) => this.logger.warn({ err, service: key }, 'service sync failed; retrying') });
    services.on((type, svc) => {
      if (type === 'delete') {
        this.givenIp.delete(objectKey(svc));
        this.givenPorts.delete(objectKey(svc));
      }
      this.queue.add(objectKey(svc));
    });
    pods.on((_type, pod, old) => {
      for (const svc of this.services.list()) {
        if (svc.metadata.namespace !== pod.metadata.namespace || !svc.spec.selector) continue;
        if (matchesSelector({ matchLabels: svc.spec.selector }, pod.metadata.labels) || (old && matchesSelector({ matchLabels: svc.spec.selector }, old.metadata.labels))) this.queue.add(objectKey(svc));
      }
    });
  }

  start(): void {
    for (const s of this.services.list()) this.queue.add(objectKey(s));
    this.queue.resume();
  }

  private inRange(ip: string): boolean {
    const n = ipNumber(ip);
    return n > this.range.base && n < this.range.base + this.range.size - 1;
  }

  private usedIps(except: string): Set<string> {
    const used = new Set<string>();
    for (const s of this.services.list()) if (objectKey(s) !== except && s.spec.clusterIP && s.spec.clusterIP !== 'None') used.add(s.spec.clusterIP);
    for (const [k, ip] of this.givenIp) if (k !== except) used.add(ip);
    return used;
  }

  private usedPorts(except: string): Map<number, string> {
    const used = new Map<number, string>();
    for (const s of this.services.list()) if (objectKey(s) !== except) for (const p of (s.spec.ports ?? []) as ServicePort[]) if (p.nodePort) used.set(p.nodePort, objectKey(s));
    for (const [k, ports] of this.givenPorts) if (k !== except) for (const p of ports) used.set(p, k);
    return used;
  }

  /** What the Service actor checks on every create and update. */
  readonly admit: Admission = (svc, current) => {
    const key = objectKey(svc);
    const ip = svc.spec.clusterIP as string | undefined;
    if (current?.spec.clusterIP && current.spec.clusterIP !== ip && ip !== undefined && ip !== '') {
      return { path: 'spec.clusterIP', message: `may not change once set (it is ${current.spec.clusterIP})` };
    }
    if (ip && ip !== 'None' && ip !== current?.spec.clusterIP) {
      if (!this.inRange(ip)) return { path: 'spec.clusterIP', message: `${ip} is not in the service range ${this.serviceCidr}` };
      if (this.usedIps(key).has(ip)) return { path: 'spec.clusterIP', message: `${ip} is already allocated to another service` };
    }
    if (ip === 'None' && svc.spec.type === 'NodePort') return { path: 'spec.clusterIP', message: 'a headless service (None) cannot be of type NodePort' };
    const used = this.usedPorts(key);
    const ports = (svc.spec.ports ?? []) as ServicePort[];
    for (let i = 0; i < ports.length; i++) {
      const p = ports[i]!;
      if (p.nodePort && used.has(p.nodePort)) return { path: `spec.ports[${i}].nodePort`, message: `${p.nodePort} is already allocated to service ${used.get(p.nodePort)}` };
      if (typeof p.targetPort === 'string' && svc.spec.selector) {
        // a named target port must name a port of the pods the selector picks, when there are any
        const selected = [...this.pods.list()].filter((pod) => pod.metadata.namespace === svc.metadata.namespace && matchesSelector({ matchLabels: svc.spec.selector }, pod.metadata.labels));
        if (selected.length > 0 && !selected.some((pod) => namedPort(pod, p.targetPort as string) !== undefined)) {
          return { path: `spec.ports[${i}].targetPort`, message: `no container port is named ${JSON.stringify(p.targetPort)} in the ${selected.length} pod(s) the selector picks` };
        }
      }
    }
    return undefined;
  };

  private async reconcile(key: string): Promise<void> {
    const [ns, name] = key.split('/') as [string, string];
    const svc = this.services.get(ns, name);
    if (!svc) return; // its Endpoints go with it (garbage collection by owner)
    if (await this.allocate(svc, key)) return; // the update comes back through the informer
    if (!svc.spec.selector) return; // Endpoints of a selector-less service are the user's
    await this.syncEndpoints(svc);
  }

  /** Gives a Service its cluster IP and node ports; true when it changed it. */
  private async allocate(svc: KObject, key: string): Promise<boolean> {
    const patch: { clusterIP?: string; ports?: ServicePort[] } = {};
    if (!svc.spec.clusterIP) {
      const used = this.usedIps(key);
      // .1 is kept for the API service, as in Kubernetes
      for (let i = 2; i < this.range.size - 1; i++) {
        const ip = formatIp((this.range.base + i) >>> 0);
        if (!used.has(ip)) {
          patch.clusterIP = ip;
          this.givenIp.set(key, ip);
          break;
        }
      }
      if (!patch.clusterIP) throw new Error(`no free address left in ${this.serviceCidr}`);
    }
    const ports = (svc.spec.ports ?? []) as ServicePort[];
    if (svc.spec.type === 'NodePort' && ports.some((p) => !p.nodePort)) {
      const used = this.usedPorts(key);
      const given: number[] = [];
      patch.ports = ports.map((p) => {
        if (p.nodePort) return p;
        for (let n = NODE_PORT_MIN; n <= NODE_PORT_MAX; n++) {
          if (!used.has(n) && !given.includes(n)) {
            given.push(n);
            return { ...p, nodePort: n };
          }
        }
        throw new Error(`no free node port left in ${NODE_PORT_MIN}-${NODE_PORT_MAX}`);
      });
      this.givenPorts.set(key, [...ports.filter((p) => p.nodePort).map((p) => p.nodePort!), ...given]);
    }
    if (!patch.clusterIP && !patch.ports) return false;
    await this.res.send(SERVICE, svc.metadata.namespace, svc.metadata.name, { type: 'patch', spec: patch });
    return true;
  }

  private async syncEndpoints(svc: KObject): Promise<void> {
    const ports = (svc.spec.ports ?? []) as ServicePort[];
    // pods grouped by how the ports resolve for them (named target ports may differ per pod)
    const groups = new Map<string, { ports: { name?: string; port: number; protocol: string }[]; addresses: unknown[]; notReadyAddresses: unknown[] }>();
    const pods = [...this.pods.list()]
      .filter((p) => p.metadata.namespace === svc.metadata.namespace && matchesSelector({ matchLabels: svc.spec.selector }, p.metadata.labels))
      .filter((p) => !p.metadata.deletionTimestamp && p.status?.podIP && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    for (const pod of pods) {
      const resolved = ports.map((p) => ({
        ...(p.name ? { name: p.name } : {}),
        port: typeof p.targetPort === 'string' ? namedPort(pod, p.targetPort) : (p.targetPort ?? p.port),
        protocol: p.protocol ?? 'TCP',
      }));
      if (resolved.some((r) => r.port === undefined)) continue; // the name is not on this pod
      const k = stableJson(resolved);
      const g = groups.get(k) ?? { ports: resolved as { name?: string; port: number; protocol: string }[], addresses: [], notReadyAddresses: [] };
      groups.set(k, g);
      const address = { ip: pod.status.podIP, nodeName: pod.spec.nodeName, targetRef: { kind: 'Pod', name: pod.metadata.name, namespace: pod.metadata.namespace, uid: pod.metadata.uid } };
      (isReady(pod) ? g.addresses : g.notReadyAddresses).push(address);
    }
    const subsets = [...groups.values()].map((g) => ({
      ...(g.addresses.length ? { addresses: g.addresses } : {}),
      ...(g.notReadyAddresses.length ? { notReadyAddresses: g.notReadyAddresses } : {}),
      ports: g.ports,
    }));
    const ep: KObject = {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: {
        name: svc.metadata.name,
        namespace: svc.metadata.namespace,
        ...(svc.metadata.labels ? { labels: svc.metadata.labels } : {}),
        ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata.name, uid: svc.metadata.uid!, controller: true }],
      },
      ...(subsets.length ? { subsets } : {}),
    } as KObject;
    // apply is level-based and a no-op when nothing changed: no write, no event
    await this.res.send(ENDPOINTS, svc.metadata.namespace, svc.metadata.name, { type: 'apply', object: ep });
  }
}

/** The number of a container port by its name, in any container of the pod. */
export function namedPort(pod: KObject, name: string): number | undefined {
  for (const c of pod.spec?.containers ?? []) for (const p of c.ports ?? []) if (p.name === name) return p.containerPort;
  return undefined;
}

