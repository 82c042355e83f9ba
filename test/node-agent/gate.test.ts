import t from 'tap';
import { Gate } from '../../node-agent/gate.js';

t.test('a gate lets `limit` through at once, the rest in arrival order as places free up', async (t) => {
  const gate = new Gate(2);
  const order: string[] = [];
  const a = await gate.enter();
  const b = await gate.enter();
  t.same(gate.load, { held: 2, waiting: 0 });
  const c = gate.enter().then((r) => (order.push('c'), r));
  const d = gate.enter().then((r) => (order.push('d'), r));
  await new Promise((r) => setImmediate(r));
  t.same(order, [], 'both wait while two hold it');
  t.same(gate.load, { held: 2, waiting: 2 });
  b();
  b(); // a second release of the same place changes nothing
  const rc = await c;
  t.same(order, ['c'], 'the first waiter goes in when a place frees');
  t.same(gate.load, { held: 2, waiting: 1 });
  a();
  const rd = await d;
  t.same(order, ['c', 'd']);
  rc();
  rd();
  t.same(gate.load, { held: 0, waiting: 0 }, 'all places free again');
  t.throws(() => new Gate(0), RangeError);
  t.throws(() => new Gate(1.5), RangeError);
});
