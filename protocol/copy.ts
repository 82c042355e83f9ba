/**
 * A deep copy of JSON-shaped data (what manifests, stored objects and bus bodies are) that keeps
 * the strings it finds instead of copying them.
 *
 * structuredClone serializes and reads back every string: each object a controller normalizes
 * (every pod a ReplicaSet makes) carried its own copy of the image, the labels, the defaults. Kept
 * in memory by the informers, 30,000 pods held some 20,000 copies of each ("IfNotPresent",
 * "Always", the image name…), and the clone itself was a few percent of the control plane's CPU.
 * Strings cannot change, so sharing them is safe; objects and arrays are new, as before.
 *
 * Plain objects and arrays are copied here; anything else that is an object (a Date, a typed
 * array, a Map) and anything deeper than MAX_DEPTH goes to structuredClone, which copies it (or
 * refuses it, as a function) exactly as before.
 */
const MAX_DEPTH = 64;

export function copyJson<T>(value: T): T {
  return copy(value, 0) as T;
}

function copy(v: unknown, depth: number): unknown {
  if (v === null || typeof v !== 'object') {
    // primitives are values; a function (or symbol) is refused as structuredClone refuses it
    return typeof v === 'function' || typeof v === 'symbol' ? structuredClone(v) : v;
  }
  if (depth >= MAX_DEPTH) return structuredClone(v);
  if (Array.isArray(v)) {
    const out = new Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = copy(v[i], depth + 1);
    return out;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return structuredClone(v);
  const out: Record<string, unknown> = {};
  for (const k in v as Record<string, unknown>) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
    const value = copy((v as Record<string, unknown>)[k], depth + 1);
    // an own "__proto__" (JSON.parse makes one) stays a property: assigned, it would set the prototype
    if (k === '__proto__') Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
    else out[k] = value;
  }
  return out;
}
