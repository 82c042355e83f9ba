/**
 * A seeded random source for property tests: a failing seed is printed and can be replayed.
 */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random JSON-like value (what bodies carry), depth-bounded. */
export function randomValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * (depth > 3 ? 6 : 9));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return Math.floor((r() - 0.5) * 2 ** (Math.floor(r() * 53)));
    case 3:
      return (r() - 0.5) * 1e6;
    case 4:
      return randomString(r);
    case 5:
      return new Uint8Array(Array.from({ length: Math.floor(r() * 20) }, () => Math.floor(r() * 256)));
    case 6:
    case 7: {
      const o: Record<string, unknown> = {};
      const n = Math.floor(r() * 6);
      for (let i = 0; i < n; i++) o[randomString(r, 8) || 'k'] = randomValue(r, depth + 1);
      return o;
    }
    default:
      return Array.from({ length: Math.floor(r() * 6) }, () => randomValue(r, depth + 1));
  }
}

export function randomString(r: () => number, max = 30): string {
  const n = Math.floor(r() * max);
  let s = '';
  for (let i = 0; i < n; i++) {
    const c = r();
    s += c < 0.7 ? String.fromCharCode(97 + Math.floor(r() * 26)) : c < 0.9 ? String.fromCharCode(32 + Math.floor(r() * 95)) : String.fromCodePoint(0x400 + Math.floor(r() * 0x2000));
  }
  return s;
}
