/**
 * Kubernetes resource quantities: "500m", "2", "0.5" CPU; "64Mi", "1G", "128974848", "1e9" bytes.
 */
import { s, type Schema } from './schema.js';

const SUFFIX: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  Pi: 1024 ** 5,
  Ei: 1024 ** 6,
};
const QUANTITY = /^([+]?(?:\d+(?:\.\d*)?|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?$/;

/**
 * Quantities parsed lately (a cluster's pods repeat a few: "100m", "64Mi"); emptied past its size.
 * Only short strings are kept: any text from a manifest is asked about, and a thousand long ones
 * must not stay in memory.
 */
const parsed = new Map<string, number | undefined>();
const PARSED_MAX = 1024;
const PARSED_MAX_LENGTH = 32;

/** The value of a quantity, or undefined when it does not parse. */
export function parseQuantity(q: string | number): number | undefined {
  if (typeof q === 'number') return Number.isFinite(q) && q >= 0 ? q : undefined;
  if (q.length > PARSED_MAX_LENGTH) return parseText(q);
  if (parsed.has(q)) return parsed.get(q);
  const v = parseText(q);
  if (parsed.size >= PARSED_MAX) parsed.clear();
  parsed.set(q, v);
  return v;
}

function parseText(q: string): number | undefined {
  const m = QUANTITY.exec(q.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  if (m[3] !== undefined) return n * 10 ** Number(m[3]);
  return n * SUFFIX[m[2] ?? '']!;
}

/** CPU in millicores (rounded up, as Kubernetes does). */
export function milliCpu(q: string | number): number | undefined {
  const v = parseQuantity(q);
  return v === undefined ? undefined : Math.ceil(Math.round(v * 1e6) / 1e3);
}

/** Bytes (rounded up). */
export function bytes(q: string | number): number | undefined {
  const v = parseQuantity(q);
  return v === undefined ? undefined : Math.ceil(v);
}

export const quantity: Schema<string | number> = {
  expected: 'a quantity (e.g. "500m", "2", "64Mi", "1G")',
  check: (v, path, issues) => {
    if ((typeof v === 'string' || typeof v === 'number') && parseQuantity(v) !== undefined) return true;
    const inner = s.string({ pattern: /$^/, patternName: 'a quantity (e.g. "500m", "2", "64Mi", "1G")' });
    return inner.check(v, path, issues);
  },
};
