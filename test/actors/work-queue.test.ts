import t from 'tap';
import { WorkQueue } from '../../actors/work-queue.js';

const tick = () => new Promise((r) => setImmediate(r));

t.test('a key queued twice while it waits is worked on once; queued while running, once more after', async (t) => {
  const done: string[] = [];
  let release!: () => void;
  const q = new WorkQueue(async (key) => {
    done.push(key);
    if (key === 'a' && done.length === 1) await new Promise<void>((r) => (release = r));
  });
  q.add('a');
  q.add('b');
  q.add('b');
  q.resume();
  await tick();
  q.add('a'); // while a runs
  q.add('a');
  release();
  await q.idle();
  t.same(done, ['a', 'b', 'a']);
});

t.test('a failure is reported and the key tried again; a failure after stop is neither', async (t) => {
  const errors: string[] = [];
  let calls = 0;
  let fail!: (e: Error) => void;
  const q = new WorkQueue(
    (key) => {
      calls++;
      if (calls === 1) return Promise.reject(new Error(`first try of ${key}`));
      if (calls === 2) return Promise.resolve();
      return new Promise<void>((_, reject) => (fail = reject));
    },
    { onError: (key, err) => errors.push(`${key}: ${(err as Error).message}`) },
  );
  q.resume();
  q.add('k');
  await q.idle();
  t.same(errors, ['k: first try of k'], 'reported');
  await new Promise((r) => setTimeout(r, 150)); // the retry's backoff (50 ms, jittered)
  t.equal(calls, 2, 'tried again after its backoff');
  q.add('k');
  await tick();
  t.equal(calls, 3, 'a third run, in flight');
  const idle = q.idle();
  q.stop();
  fail(new Error('connection closed'));
  await idle;
  await new Promise((r) => setTimeout(r, 150));
  t.same(errors, ['k: first try of k'], 'the failure of work cut short by the stop is not reported');
  t.equal(calls, 3, 'nor retried');
});
