import t from 'tap';
import { Metrics } from '../../actors/metrics.js';

t.test('counters: labels in any order are one counter, and no labels is the same as empty labels', async (t) => {
  const m = new Metrics();
  m.inc('passed_total', {});
  m.inc('passed_total');
  m.inc('passed_total', undefined, 3);
  t.equal(m.get('passed_total'), 5);
  t.equal(m.get('passed_total', {}), 5);
  m.inc('errors_total', { kind: 'pod', code: 'E' });
  m.inc('errors_total', { code: 'E', kind: 'pod' });
  m.inc('errors_total', { code: 'F', kind: 'pod' });
  t.equal(m.get('errors_total', { kind: 'pod', code: 'E' }), 2);
  t.equal(m.total('errors_total'), 3);
  t.same(m.snapshot(), { passed_total: 5, 'errors_total{code="E",kind="pod"}': 2, 'errors_total{code="F",kind="pod"}': 1 });
  t.equal(m.toText().split('\n')[0], 'passed_total 5', 'exposed without an empty label set');
});
