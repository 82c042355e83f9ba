/**
 * The README's library example, run exactly as written against a real nats-server.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { withNats } from './helpers/nats.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

t.test('the README example runs and prints what it says', async (t) => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const block = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error('no js block in README.md');
  const lines = block.trim().split('\n').length;
  t.ok(lines <= 30, `the example is ${lines} lines`);
  const nats = await withNats(t);
  // inside the package folder, so that `import … from 'troupe'` resolves to this package
  const file = `${root}.readme-example-${process.pid}.mjs`;
  writeFileSync(file, block);
  t.teardown(() => rmSync(file, { force: true }));
  const { stdout } = await promisify(execFile)(process.execPath, [file], { env: { ...process.env, NATS_URL: nats.url }, timeout: 30_000 });
  t.equal(stdout, 'event 2: n=2\nn = 2\n');
});
