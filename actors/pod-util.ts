/**
 * Small facts about stored objects that several controllers need: who controls an object, is a
 * pod active, ready, available, and what it requests.
 */
import { milliCpu, parseQuantity, type KObject } from '../protocol/index.js';

export function controllerRef(obj: KObject): { kind: string; name: string; uid: string } | undefined {
  return obj.metadata.ownerReferences?.find((r) => r.controller);
}

/** Not finished and not being deleted: a pod that counts towards its ReplicaSet's replicas. */
export function isActive(pod: KObject): boolean {
  const phase = pod.status?.phase;
  return !pod.metadata.deletionTimestamp && phase !== 'Succeeded' && phase !== 'Failed';
}

function readyCondition(pod: KObject): { status: string; lastTransitionTime?: string } | undefined {
  return (pod.status?.conditions as { type: string; status: string; lastTransitionTime?: string }[] | undefined)?.find((c) => c.type === 'Ready');
}

export function isReady(pod: KObject): boolean {
  return readyCondition(pod)?.status === 'True';
}

/** Ready for at least minReadySeconds at `now`; or, when not yet, the ms left. */
export function availability(pod: KObject, minReadySeconds: number, now: number): { available: boolean; inMs?: number } {
  const c = readyCondition(pod);
  if (c?.status !== 'True') return { available: false };
  if (minReadySeconds === 0) return { available: true };
  const since = c.lastTransitionTime ? Date.parse(c.lastTransitionTime) : now;
  const left = since + minReadySeconds * 1000 - now;
  return left <= 0 ? { available: true } : { available: false, inMs: left };
}

export interface Requests {
  milliCpu: number;
  memory: number;
}

/** The sum of a pod's containers' requests (limits stand in for missing requests, as Kubernetes). */
export function podRequests(pod: KObject): Requests {
  let cpu = 0;
  let mem = 0;
  for (const c of pod.spec?.containers ?? []) {
    const r = c.resources?.requests ?? {};
    const l = c.resources?.limits ?? {};
    const cq = r.cpu ?? l.cpu;
    const mq = r.memory ?? l.memory;
    if (cq !== undefined) cpu += milliCpu(cq) ?? 0;
    if (mq !== undefined) mem += parseQuantity(mq) ?? 0;
  }
  return { milliCpu: cpu, memory: mem };
}

export function hostPorts(pod: KObject): number[] {
  const out: number[] = [];
  for (const c of pod.spec?.containers ?? []) for (const p of c.ports ?? []) if (p.hostPort) out.push(p.hostPort);
  return out;
}

export function condition(obj: KObject, type: string): { type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string; lastUpdateTime?: string } | undefined {
  return (obj.status?.conditions as { type: string; status: string }[] | undefined)?.find((c) => c.type === type);
}
