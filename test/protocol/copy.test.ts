/**
 * copyJson: a deep copy as structuredClone makes for JSON-shaped data, with the strings kept.
 */
import t from 'tap';
import { copyJson, normalize } from '../../protocol/index.js';

t.test('objects and arrays are new at every level; the values are equal', async (t) => {
  const src = { a: { b: [1, { c: 'x' }, null], d: true }, e: undefined, f: 2.5 };
  const out = copyJson(src);
  t.same(out, src);
  t.strictSame(out, structuredClone(src), 'as structuredClone makes it');
  t.ok('e' in out && out.e === undefined, 'an undefined property is kept, as structuredClone keeps it');
  t.not(out, src);
  t.not(out.a, src.a);
  t.not(out.a.b, src.a.b);
  t.not(out.a.b[1], src.a.b[1]);
  (out.a.b[1] as { c: string }).c = 'changed';
  out.a.b.push(4);
  t.equal((src.a.b[1] as { c: string }).c, 'x', 'changing the copy leaves the original');
  t.equal(src.a.b.length, 3);
});

t.test('what is not a plain object or array is copied by structuredClone, or refused as it refuses it', async (t) => {
  const when = new Date(0);
  const bytes = new Uint8Array([1, 2, 3]);
  const out = copyJson({ when, bytes, map: new Map([['k', 1]]) });
  t.ok(out.when instanceof Date && out.when !== when && out.when.getTime() === 0, 'a Date');
  t.ok(out.bytes instanceof Uint8Array && out.bytes !== bytes && out.bytes[2] === 3, 'a typed array');
  t.equal(out.map.get('k'), 1, 'a Map');
  t.throws(() => copyJson({ f: () => 1 }), { name: 'DataCloneError' }, 'a function');
  const parsed = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>;
  const copied = copyJson(parsed);
  t.same(Object.keys(copied), ['__proto__', 'a'], 'an own __proto__ key stays an own property');
  t.equal(Object.getPrototypeOf(copied), Object.prototype, 'and does not become the prototype');
  t.equal((copied as { polluted?: boolean }).polluted, undefined);
  t.strictSame(Object.getOwnPropertyDescriptor(copied, '__proto__')?.value, { polluted: true });
  const nullProto = Object.assign(Object.create(null), { a: 1 });
  t.same(copyJson(nullProto), { a: 1 }, 'an object without a prototype is a plain object');
});

t.test('deep and self-referencing values end in structuredClone instead of overflowing the stack', async (t) => {
  let deep: unknown = 'leaf';
  for (let i = 0; i < 500; i++) deep = { d: deep };
  t.same(copyJson(deep), deep);
  const loop: Record<string, unknown> = { a: 1 };
  loop.self = loop;
  const out = copyJson(loop) as Record<string, unknown>;
  let at = out;
  for (let i = 0; i < 100; i++) at = at.self as Record<string, unknown>;
  t.equal(at.a, 1, 'the cycle is followed as structuredClone follows it');
});

t.test('normalize copies what it is given (defaults do not land in the caller\'s object)', async (t) => {
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'busybox:1' }] } };
  const out = normalize(pod);
  t.equal(out.spec.containers[0].imagePullPolicy, 'IfNotPresent', 'defaulted in the result');
  t.notOk('imagePullPolicy' in pod.spec.containers[0]!, 'not in the input');
  t.notOk('restartPolicy' in pod.spec, 'not in the input');
  t.not(out.spec.containers, pod.spec.containers);
});
