/**
 * Child and supervisor specs, as data, validated before anything starts (OTP's check_childspecs).
 */
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import { SupervisorSpecError } from './errors.js';

/** permanent: always restarted; transient: restarted after an abnormal exit only; temporary: never. */
export const Restart = { Permanent: 'permanent', Transient: 'transient', Temporary: 'temporary' } as const;
export type Restart = (typeof Restart)[keyof typeof Restart];

/** Milliseconds to wait after asking a child to stop before killing it; 'brutal' kills at once; 'infinity' waits. */
export type Shutdown = number | 'brutal' | 'infinity';

export const Strategy = {
  OneForOne: 'one_for_one',
  OneForAll: 'one_for_all',
  RestForOne: 'rest_for_one',
  /** Many children of one kind, added at run time, independent, stopped in parallel (OTP simple_one_for_one). */
  Dynamic: 'dynamic',
} as const;
export type Strategy = (typeof Strategy)[keyof typeof Strategy];

/** Why a child exited. */
export type ExitReason = { type: 'normal' } | { type: 'shutdown' } | { type: 'error'; error: unknown };

export function isAbnormal(reason: ExitReason): boolean {
  return reason.type === 'error';
}

/** What a started child gives its supervisor. */
export interface ChildHandle<V = unknown> {
  /** Settles once, when the child has exited, with the reason. Must never reject. */
  readonly exited: Promise<ExitReason>;
  /** Asks the child to stop gracefully; `exited` settles when it has. */
  stop(): void | Promise<void>;
  /** Ends the child at once; `exited` settles soon after. */
  kill(): void;
  /** Whatever the child offers to its siblings (a connection, a URL, …). */
  readonly value?: V;
}

export interface ChildContext {
  clock: Clock;
  logger: Logger;
  /** The value a running sibling offers (children start in order, so earlier ones are there). */
  valueOf<V = unknown>(id: string): V | undefined;
}

export interface ChildSpec<V = unknown> {
  id: string;
  start: (ctx: ChildContext) => Promise<ChildHandle<V>>;
  restart?: Restart;
  shutdown?: Shutdown;
  type?: 'worker' | 'supervisor';
}

export interface SupervisorSpec {
  /** Name for reports and logs. */
  name: string;
  strategy: Strategy;
  /** At most `intensity` restarts within `period` ms; one more and the supervisor gives up. OTP defaults: 1 in 5 s. */
  intensity?: number;
  period?: number;
  children?: ChildSpec[];
}

const RESTARTS = new Set<string>(Object.values(Restart));
const STRATEGIES = new Set<string>(Object.values(Strategy));

function bad(field: string, message: string): never {
  throw new SupervisorSpecError(`supervisor spec: ${field}: ${message}`, { field });
}

export function validateChildSpec(spec: unknown, path = 'child'): ChildSpec {
  if (spec === null || typeof spec !== 'object') bad(path, 'expected an object');
  const c = spec as Record<string, unknown>;
  if (typeof c.id !== 'string' || c.id.length === 0) bad(`${path}.id`, `expected a non-empty string, got ${JSON.stringify(c.id)}`);
  const p = `${path}[${JSON.stringify(c.id)}]`;
  if (typeof c.start !== 'function') bad(`${p}.start`, 'expected a function returning a child handle');
  if (c.restart !== undefined && !RESTARTS.has(c.restart as string)) {
    bad(`${p}.restart`, `expected one of permanent, transient, temporary, got ${JSON.stringify(c.restart)}`);
  }
  const sd = c.shutdown;
  if (sd !== undefined && sd !== 'brutal' && sd !== 'infinity' && !(typeof sd === 'number' && Number.isInteger(sd) && sd >= 0)) {
    bad(`${p}.shutdown`, `expected milliseconds ≥ 0, 'brutal' or 'infinity', got ${JSON.stringify(sd)}`);
  }
  if (c.type !== undefined && c.type !== 'worker' && c.type !== 'supervisor') {
    bad(`${p}.type`, `expected 'worker' or 'supervisor', got ${JSON.stringify(c.type)}`);
  }
  for (const k of Object.keys(c)) {
    if (!['id', 'start', 'restart', 'shutdown', 'type'].includes(k)) bad(`${p}.${k}`, 'unknown field');
  }
  return c as unknown as ChildSpec;
}

export function validateSupervisorSpec(spec: unknown): Required<Omit<SupervisorSpec, 'children'>> & { children: ChildSpec[] } {
  if (spec === null || typeof spec !== 'object') bad('(root)', 'expected an object');
  const s = spec as Record<string, unknown>;
  if (typeof s.name !== 'string' || s.name.length === 0) bad('name', `expected a non-empty string, got ${JSON.stringify(s.name)}`);
  if (!STRATEGIES.has(s.strategy as string)) {
    bad('strategy', `expected one of ${[...STRATEGIES].join(', ')}, got ${JSON.stringify(s.strategy)}`);
  }
  const intensity = s.intensity ?? 1;
  if (typeof intensity !== 'number' || !Number.isInteger(intensity) || intensity < 0) bad('intensity', `expected an integer ≥ 0, got ${JSON.stringify(intensity)}`);
  const period = s.period ?? 5000;
  if (typeof period !== 'number' || !Number.isInteger(period) || period < 1) bad('period', `expected milliseconds ≥ 1, got ${JSON.stringify(period)}`);
  const children = s.children ?? [];
  if (!Array.isArray(children)) bad('children', 'expected an array of child specs');
  if (s.strategy === Strategy.Dynamic && children.length > 0) bad('children', "a 'dynamic' supervisor starts empty; add children with startChild");
  const ids = new Set<string>();
  const checked = children.map((c, i) => {
    const spec = validateChildSpec(c, `children[${i}]`);
    if (ids.has(spec.id)) bad(`children[${i}].id`, `duplicate id ${JSON.stringify(spec.id)}`);
    ids.add(spec.id);
    return spec;
  });
  for (const k of Object.keys(s)) {
    if (!['name', 'strategy', 'intensity', 'period', 'children'].includes(k)) bad(k, 'unknown field');
  }
  return { name: s.name as string, strategy: s.strategy as Strategy, intensity, period, children: checked };
}
