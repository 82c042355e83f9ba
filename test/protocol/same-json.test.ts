import t from 'tap';
import { sameJson, stableJson } from '../../protocol/index.js';

/** A small seeded generator (mulberry32): the same cases every run. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const SCALARS = [null, undefined, 0, 1, -1, 1.5, NaN, Infinity, '', 'a', 'b', '1', true, false];

function value(r: () => number, depth: number): unknown {
  const k = r();
  if (depth <= 0 || k < 0.5) return SCALARS[Math.floor(r() * SCALARS.length)];
  if (k < 0.7) return Array.from({ length: Math.floor(r() * 4) }, () => value(r, depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(r() * 4); i > 0; i--) o['abcd'[Math.floor(r() * 4)]!] = value(r, depth - 1);
  return o;
}

/** A copy with keys in another order, and now and then a small change. */
function variant(r: () => number, v: unknown): unknown {
  if (r() < 0.1) return value(r, 2);
  if (Array.isArray(v)) return v.map((x) => variant(r, x));
  if (v && typeof v === 'object') {
    const keys = Object.keys(v).sort(() => r() - 0.5);
    const o: Record<string, unknown> = {};
    for (const k of keys) o[k] = variant(r, (v as Record<string, unknown>)[k]);
    if (r() < 0.1) o.z = undefined; // a key with no value: absent in JSON
    return o;
  }
  return v;
}

t.test('sameJson says what comparing stableJson strings says', async (t) => {
  const r = rng(12345);
  let equal = 0;
  let mismatches = 0;
  for (let i = 0; i < 20_000; i++) {
    const a = value(r, 4);
    const b = r() < 0.7 ? variant(r, a) : value(r, 4);
    const expected = stableJson(a) === stableJson(b);
    if (expected) equal++;
    if (sameJson(a, b) !== expected) {
      mismatches++;
      if (mismatches < 5) t.fail(`${stableJson(a)} vs ${stableJson(b)}: expected ${expected}`);
    }
  }
  t.equal(mismatches, 0, 'no case differs');
  t.ok(equal > 5000 && equal < 19_000, `both answers are well represented (${equal} equal of 20,000)`);
  t.ok(sameJson({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }), 'key order does not matter');
  t.notOk(sameJson([1, 2], [2, 1]), 'element order does');
  t.ok(sameJson({ a: undefined }, {}), 'an undefined value is an absent key');
  t.notOk(sameJson({ a: null }, {}), 'null is not absent');
  t.notOk(sameJson('{}', {}), 'a string is not an object');
});
