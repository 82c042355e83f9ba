/**
 * A small schema language that compiles to plain validator closures.
 *
 * Schemas are built once (`s.object({...})`) and validated many times; each node is a closure
 * that checks one value and pushes issues with their field path. Messages follow the house
 * style: `spec.replicas: expected an integer ≥ 0, got "three"`. Unknown object fields are
 * rejected unless the object schema says otherwise: nothing is silently ignored.
 */
import { ValidationError } from './errors.js';

export interface Issue {
  path: string;
  message: string;
}

const MAX_ISSUES = 20;

export interface Schema<T> {
  /** What the schema expects, for messages ("an integer ≥ 0"). */
  readonly expected: string;
  /** Checks `value`; pushes issues under `path`; returns true when valid. */
  readonly check: (value: unknown, path: string, issues: Issue[]) => boolean;
  /** Phantom field carrying the validated type. */
  readonly _type?: T;
  readonly optional?: boolean;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

/** A short, safe rendering of a value for error messages. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') {
    const cut = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return JSON.stringify(cut);
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (typeof value === 'object') return 'an object';
  return typeof value;
}

function fail(issues: Issue[], path: string, message: string): false {
  if (issues.length < MAX_ISSUES) issues.push({ path: path || '(root)', message });
  return false;
}

function expect(issues: Issue[], path: string, expected: string, value: unknown): false {
  return fail(issues, path, `expected ${expected}, got ${describeValue(value)}`);
}

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

function make<T>(expected: string, check: Schema<T>['check']): Schema<T> {
  return { expected, check };
}

interface StringOpts {
  min?: number;
  max?: number;
  pattern?: RegExp;
  /** Words for the pattern in messages, e.g. "a DNS-1123 label". */
  patternName?: string;
}

function string(opts: StringOpts = {}): Schema<string> {
  const { min = 0, max = Infinity, pattern, patternName } = opts;
  const expected = patternName ?? (max < Infinity ? `a string of at most ${max} characters` : 'a string');
  return make(expected, (v, path, issues) => {
    if (typeof v !== 'string') return expect(issues, path, expected, v);
    if (v.length < min) return fail(issues, path, min === 1 ? 'must not be empty' : `expected at least ${min} characters, got ${v.length}`);
    if (v.length > max) return fail(issues, path, `expected at most ${max} characters, got ${v.length}`);
    if (pattern && !pattern.test(v)) return expect(issues, path, expected, v);
    return true;
  });
}

function int(opts: { min?: number; max?: number } = {}): Schema<number> {
  const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = opts;
  const bounds =
    min > Number.MIN_SAFE_INTEGER && max < Number.MAX_SAFE_INTEGER
      ? ` from ${min} to ${max}`
      : min > Number.MIN_SAFE_INTEGER
        ? ` ≥ ${min}`
        : max < Number.MAX_SAFE_INTEGER
          ? ` ≤ ${max}`
          : '';
  const expected = `an integer${bounds}`;
  return make(expected, (v, path, issues) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return expect(issues, path, expected, v);
    return true;
  });
}

function number(opts: { min?: number; max?: number } = {}): Schema<number> {
  const { min = -Infinity, max = Infinity } = opts;
  const expected = min > -Infinity ? `a number ≥ ${min}` : 'a number';
  return make(expected, (v, path, issues) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) return expect(issues, path, expected, v);
    return true;
  });
}

function bool(): Schema<boolean> {
  return make('a boolean', (v, path, issues) => (typeof v === 'boolean' ? true : expect(issues, path, 'a boolean', v)));
}

function bytes(opts: { max?: number } = {}): Schema<Uint8Array> {
  const max = opts.max ?? Infinity;
  return make('bytes', (v, path, issues) => {
    if (!(v instanceof Uint8Array)) return expect(issues, path, 'bytes', v);
    if (v.length > max) return fail(issues, path, `expected at most ${max} bytes, got ${v.length}`);
    return true;
  });
}

function literal<const L extends string | number | boolean | null>(value: L): Schema<L> {
  const expected = JSON.stringify(value);
  return make(expected, (v, path, issues) => (v === value ? true : expect(issues, path, expected, v)));
}

function oneOf<const L extends readonly string[]>(values: L): Schema<L[number]> {
  const set = new Set<unknown>(values);
  const expected = `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`;
  return make(expected, (v, path, issues) => (set.has(v) ? true : expect(issues, path, expected, v)));
}

function any(): Schema<unknown> {
  return make('anything', () => true);
}

function optional<T>(inner: Schema<T>): Schema<T | undefined> {
  return { expected: inner.expected, optional: true, check: (v, path, issues) => v === undefined || inner.check(v, path, issues) };
}

function nullable<T>(inner: Schema<T>): Schema<T | null> {
  return make(`${inner.expected} or null`, (v, path, issues) => v === null || inner.check(v, path, issues));
}

function array<T>(item: Schema<T>, opts: { max?: number; min?: number } = {}): Schema<T[]> {
  const { max = Infinity, min = 0 } = opts;
  const expected = `an array of ${item.expected}`;
  return make(expected, (v, path, issues) => {
    if (!Array.isArray(v)) return expect(issues, path, expected, v);
    if (v.length > max) return fail(issues, path, `expected at most ${max} items, got ${v.length}`);
    if (v.length < min) return fail(issues, path, `expected at least ${min} item${min === 1 ? '' : 's'}, got ${v.length}`);
    let ok = true;
    for (let i = 0; i < v.length; i++) if (!item.check(v[i], join(path, i), issues)) ok = false;
    return ok;
  });
}

type Shape = Record<string, Schema<unknown>>;
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends { optional: true } ? K : undefined extends Infer<S[K]> ? K : never }[keyof S];
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
export type ObjectOf<S extends Shape> = Simplify<{ [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }>;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) return false;
  return true;
}

interface ObjectOpts {
  /** 'reject' (default) names each unknown field; 'allow' lets them through. */
  unknown?: 'reject' | 'allow';
}

export interface ObjectSchema<S extends Shape> extends Schema<ObjectOf<S>> {
  readonly shape: S;
}

function object<S extends Shape>(shape: S, opts: ObjectOpts = {}): ObjectSchema<S> {
  const keys = Object.keys(shape);
  const entries = keys.map((k) => [k, shape[k]!] as const);
  const known = new Set(keys);
  const rejectUnknown = opts.unknown !== 'allow';
  const expected = 'an object';
  const check: Schema<ObjectOf<S>>['check'] = (v, path, issues) => {
    if (!isPlainObject(v)) return expect(issues, path, expected, v);
    let ok = true;
    for (const [k, sch] of entries) {
      const fv = v[k];
      if (fv === undefined) {
        if (!sch.optional) ok = fail(issues, join(path, k), `required field is missing (expected ${sch.expected})`);
        continue;
      }
      if (!sch.check(fv, join(path, k), issues)) ok = false;
    }
    if (rejectUnknown) {
      for (const k in v) {
        if (!known.has(k) && Object.prototype.hasOwnProperty.call(v, k)) ok = fail(issues, join(path, k), 'unknown field');
      }
    }
    return ok;
  };
  return { expected, check, shape };
}

function record<T>(value: Schema<T>, opts: { key?: Schema<string>; maxKeys?: number } = {}): Schema<Record<string, T>> {
  const keySchema = opts.key;
  const maxKeys = opts.maxKeys ?? Infinity;
  const expected = `a map of ${value.expected}`;
  return make(expected, (v, path, issues) => {
    if (!isPlainObject(v)) return expect(issues, path, expected, v);
    let ok = true;
    let n = 0;
    for (const k in v) {
      if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
      if (++n > maxKeys) return fail(issues, path, `expected at most ${maxKeys} keys`);
      if (keySchema && !keySchema.check(k, join(path, k), issues)) ok = false;
      if (!value.check(v[k], join(path, k), issues)) ok = false;
    }
    return ok;
  });
}

type UnionOf<D extends string, M extends Record<string, ObjectSchema<Shape>>> = {
  [K in keyof M & string]: Simplify<{ [P in D]: K } & Infer<M[K]>>;
}[keyof M & string];

/**
 * A union discriminated by one field (`type` by convention). Each member is an object schema
 * without the discriminator, which is added.
 */
function union<const D extends string, M extends Record<string, ObjectSchema<Shape>>>(discriminator: D, members: M): Schema<UnionOf<D, M>> {
  const byTag = new Map<string, ObjectSchema<Shape>>();
  for (const [tag, member] of Object.entries(members)) {
    byTag.set(tag, object({ ...member.shape, [discriminator]: literal(tag) }));
  }
  const tags = [...byTag.keys()];
  const expected = `one of ${tags.map((t) => JSON.stringify(t)).join(', ')}`;
  return make(expected, (v, path, issues) => {
    if (!isPlainObject(v)) return expect(issues, path, `an object with "${discriminator}"`, v);
    const tag = v[discriminator];
    const member = typeof tag === 'string' ? byTag.get(tag) : undefined;
    if (!member) return expect(issues, join(path, discriminator), expected, tag);
    return member.check(v, path, issues);
  });
}

/** A schema plus a rule across its fields: `rule` returns a message when the value breaks it. */
function refine<T>(inner: Schema<T>, rule: (value: T) => string | undefined): Schema<T> {
  return {
    expected: inner.expected,
    optional: inner.optional,
    check: (v, path, issues) => {
      if (!inner.check(v, path, issues)) return false;
      if (v === undefined && inner.optional) return true;
      const problem = rule(v as T);
      return problem ? fail(issues, path, problem) : true;
    },
  };
}

/** Runs a schema; returns the issues (empty when valid). */
export function check<T>(schema: Schema<T>, value: unknown, path = ''): Issue[] {
  const issues: Issue[] = [];
  schema.check(value, path, issues);
  return issues;
}

/** Formats issues into one message: `what: path: message; path: message`. */
export function formatIssues(what: string, issues: Issue[]): string {
  const lines = issues.map((i) => `${i.path}: ${i.message}`);
  return what ? `${what}: ${lines.join('; ')}` : lines.join('; ');
}

/** Validates or throws a ValidationError naming every issue with its field path. */
export function validate<T>(schema: Schema<T>, value: unknown, what = ''): T {
  const issues: Issue[] = [];
  if (schema.check(value, '', issues)) return value as T;
  throw new ValidationError(formatIssues(what, issues), { issues });
}

export const s = { string, int, number, bool, bytes, literal, oneOf, any, optional, nullable, array, object, record, union, refine };
