import t from 'tap';
import { ValidationError, check, labelName, s, subdomainName, validate } from '../../protocol/index.js';

const deployment = s.object({
  metadata: s.object({ name: labelName, labels: s.optional(s.record(s.string({ max: 63 }))) }),
  spec: s.object({
    replicas: s.optional(s.int({ min: 0 })),
    strategy: s.optional(s.oneOf(['RollingUpdate', 'Recreate'] as const)),
    containers: s.array(s.object({ name: labelName, image: s.string({ min: 1 }) }), { min: 1 }),
  }),
});

t.test('messages name the field path, what was expected and what came', async (t) => {
  const issues = check(deployment, { metadata: { name: 'web' }, spec: { replicas: 'three', containers: [{ name: 'a', image: '' }] } });
  t.same(
    issues.map((i) => `${i.path}: ${i.message}`),
    ['spec.replicas: expected an integer ≥ 0, got "three"', 'spec.containers[0].image: must not be empty'],
  );
});

t.test('unknown fields are rejected, never ignored', async (t) => {
  const issues = check(deployment, { metadata: { name: 'web', nmae: 'x' }, spec: { containers: [{ name: 'a', image: 'i', imagePullPolcy: 'x' }] } });
  t.same(issues.map((i) => i.path), ['metadata.nmae', 'spec.containers[0].imagePullPolcy']);
  t.ok(issues.every((i) => i.message === 'unknown field'));
});

t.test('missing required fields say what they expect', async (t) => {
  const issues = check(deployment, { metadata: {}, spec: { containers: [] } });
  t.match(issues[0], { path: 'metadata.name', message: /required field is missing/ });
  t.match(issues[1], { path: 'spec.containers', message: 'expected at least 1 item, got 0' });
});

t.test('DNS-1123 names', async (t) => {
  for (const good of ['a', 'web-1', 'a'.repeat(63)]) t.same(check(labelName, good), [], good);
  for (const bad of ['', 'Web', '-a', 'a-', 'a_b', 'a.b', 'a'.repeat(64)]) t.not(check(labelName, bad).length, 0, JSON.stringify(bad));
  t.same(check(subdomainName, 'my.app-1.example'), []);
  t.not(check(subdomainName, 'my..app').length, 0);
});

t.test('discriminated unions', async (t) => {
  const ev = s.union('type', { inc: s.object({ by: s.int() }), reset: s.object({}) });
  t.same(check(ev, { type: 'inc', by: 2 }), []);
  t.same(check(ev, { type: 'reset' }), []);
  t.match(check(ev, { type: 'dec' })[0], { path: 'type', message: 'expected one of "inc", "reset", got "dec"' });
  t.match(check(ev, { type: 'reset', by: 1 })[0], { path: 'by', message: 'unknown field' });
  t.match(check(ev, 'inc')[0], { message: /expected an object with "type"/ });
});

t.test('validate throws one ValidationError carrying every issue', async (t) => {
  try {
    validate(deployment, { metadata: { name: 'Bad' }, spec: { containers: [{ name: 'a', image: 'i' }], replicas: -1 } }, 'deployment "Bad"');
    t.fail('accepted');
  } catch (err) {
    t.type(err, ValidationError);
    t.match((err as Error).message, /^deployment "Bad": metadata\.name: expected a DNS-1123 label .*; spec\.replicas: expected an integer ≥ 0, got -1$/);
    t.equal(((err as ValidationError).details.issues as unknown[]).length, 2);
  }
});

t.test('issue lists are capped, so a hostile value cannot make a huge error', async (t) => {
  const issues = check(s.array(s.int()), Array.from({ length: 10_000 }, () => 'x'));
  t.equal(issues.length, 20);
});
