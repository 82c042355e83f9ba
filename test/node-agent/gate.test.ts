import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ContainerRuntime } from '../../node-agent/index.js';
import { Gate } from '../../node-agent/gate.js';
import { setEnv, tempDir } from '../helpers/nats.js';

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

t.test('a runtime refuses a start limit that is not an integer ≥ 1, naming where it came from, and makes nothing', async (t) => {
  const dir = tempDir(t, 'troupe-gate-');
  const dataDir = join(dir, 'agent');
  t.throws(() => new ContainerRuntime({ dataDir, node: 'g', startConcurrency: 0 }), { message: 'startConcurrency: expected an integer ≥ 1, got 0' });
  setEnv(t, 'TROUPE_START_CONCURRENCY', 'many');
  t.throws(() => new ContainerRuntime({ dataDir, node: 'g' }), { message: 'TROUPE_START_CONCURRENCY: expected an integer ≥ 1, got "many"' });
  t.notOk(existsSync(dataDir), 'no state folder was made');
});

t.test('a sandbox pool size that is not an integer ≥ 0 is refused before anything is made on disk', async (t) => {
  const dir = tempDir(t, 'troupe-pool-');
  const dataDir = join(dir, 'agent');
  t.throws(() => new ContainerRuntime({ dataDir, node: 'g', sandboxPool: -1 }), { message: 'sandboxPool: expected an integer ≥ 0, got -1' });
  setEnv(t, 'TROUPE_SANDBOX_POOL', '1.5');
  t.throws(() => new ContainerRuntime({ dataDir, node: 'g' }), { message: 'TROUPE_SANDBOX_POOL: expected an integer ≥ 0, got "1.5"' });
  t.notOk(existsSync(dataDir), 'no state folder was made');
});
