/**
 * The control plane's heap growth limit: the default, an override, 0 for V8's own, and a clear
 * error for a value that is not a percent. Run in a child process: the flag is process-wide.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const heap = fileURLToPath(new URL('../../cli/heap.js', import.meta.url));
const cli = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

function inChild(value: string | undefined): string {
  const env = { ...process.env };
  delete env.TROUPE_HEAP_GROWING_PERCENT;
  if (value !== undefined) env.TROUPE_HEAP_GROWING_PERCENT = value;
  return execFileSync(process.execPath, ['--input-type=module', '-e', `import { limitHeapGrowth } from ${JSON.stringify(heap)}; console.log(limitHeapGrowth());`], { env, encoding: 'utf8' }).trim();
}

t.test('the heap grows 30 % past live data unless told otherwise', async (t) => {
  t.equal(inChild(undefined), '30', 'default');
  t.equal(inChild(''), '30', 'empty is the default');
  t.equal(inChild('50'), '50', 'an override');
  t.equal(inChild('0'), '0', '0 leaves V8 its own heuristics');
});

t.test('a value that is not a percent stops the controller with the variable named', async (t) => {
  for (const bad of ['-5', '12.5', 'lots', '5000']) {
    const r = spawnSync(process.execPath, [cli, 'controller', '--server', 'nats://127.0.0.1:1'], { env: { ...process.env, TROUPE_HEAP_GROWING_PERCENT: bad }, encoding: 'utf8', timeout: 20_000 });
    t.not(r.status, 0, `${bad}: exits non-zero`);
    t.match(r.stderr, `TROUPE_HEAP_GROWING_PERCENT: expected a whole number from 0 to 1000, got ${JSON.stringify(bad)}`, `${bad}: says what was expected`);
  }
});
