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

t.test('the heap grows to twice its live data (100 %) unless told otherwise', async (t) => {
  t.equal(inChild(undefined), '100', 'default');
  t.equal(inChild(''), '100', 'empty is the default');
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

t.test('the executable, npm start and the systemd unit start node with NODE_FLAGS, and those flags take', async (t) => {
  const { readFileSync } = await import('node:fs');
  const { NODE_FLAGS } = await import('../../cli/heap.js');
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const shebang = readFileSync(cli, 'utf8').split('\n')[0]!;
  t.equal(shebang, `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`, 'the first line of dist/cli/main.js');
  const start = JSON.parse(readFileSync(`${root}package.json`, 'utf8')).scripts.start as string;
  t.match(start, `node ${NODE_FLAGS.join(' ')} dist/cli/main.js up`, 'npm start');
  t.match(readFileSync(`${root}deploy/systemd/troupe.service`, 'utf8'), `ExecStart=/usr/bin/node ${NODE_FLAGS.join(' ')} /opt/troupe/dist/cli/main.js up`, 'the systemd unit');
  // as the kernel runs it: the interpreter, the rest of the line as one argument, the script
  const out = execFileSync('/usr/bin/env', [shebang.slice('#!/usr/bin/env '.length), cli, 'version'], { encoding: 'utf8' });
  t.match(out, /troupe/, 'the executable runs through its first line');
  // and node has the flags (a script started through the same first line says what it got)
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const dir = mkdtempSync('/tmp/troupe-flags-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(`${dir}/argv.mjs`, 'console.log(JSON.stringify(process.execArgv));\n');
  t.same(JSON.parse(execFileSync('/usr/bin/env', [shebang.slice('#!/usr/bin/env '.length), `${dir}/argv.mjs`], { encoding: 'utf8' })), [...NODE_FLAGS]);
});
