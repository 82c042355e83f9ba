import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import t from 'tap';
import { alive, cli, removeBridge } from '../helpers/agent.js';
import { natsPidUnder, startUp } from '../helpers/up.js';
import { Bus, KvStore } from '../../index.js';
import { tempDir, waitFor, type Teardown } from '../helpers/nats.js';

// the node's network (bridge, Service table and interface) stays when an agent stops
t.teardown(() => removeBridge('up-node'));



t.test('troupe up: one tree, a context for the CLI, the store ready, SIGTERM stops it in order', async (t) => {
  const dir = tempDir(t);
  const { child, out, err } = await startUp(t, dir, ['--log-level', 'debug']);
  t.match(out[0], /^troupe is up: cluster "default" on nats:\/\/127\.0\.0\.1:\d+ \(data in .*\/data\)$/);
  const ctx = JSON.parse(readFileSync(join(dir, 'home', 'context.json'), 'utf8')) as { server: string; cluster: string };
  t.equal(ctx.cluster, 'default');
  t.ok(out[0]!.includes(ctx.server), 'the context names the server it printed');

  const bus = await Bus.connect({ servers: ctx.server });
  t.teardown(() => bus.close());
  const kv = await KvStore.open(bus, bus.subjects.stateBucket);
  t.same(await kv.status().then((s) => typeof s.values), 'number', 'the state bucket exists');
  const natsPid = natsPidUnder(dir);
  t.ok(natsPid, 'the embedded nats-server runs');
  const keys = await kv.keys('nodeinfo.*');
  t.same(keys, ['nodeinfo.up-node'], 'the node agent registered its node');

  // logs are JSON lines (stderr is not a TTY) at the requested level, nats-server's own included
  const parsed = err.map((l) => JSON.parse(l) as { level: number; component?: string });
  t.ok(parsed.some((l) => l.level === 20 && l.component === 'nats-server'), 'nats-server debug lines went into pino');

  child.kill('SIGTERM');
  const code = await new Promise((r) => child.once('exit', r));
  t.equal(code, 0, 'exits 0');
  t.notOk(alive(natsPid!), 'nats-server stopped');
  const lines = err.map((l) => JSON.parse(l) as { msg: string; component?: string });
  const busClose = lines.findIndex((l) => l.msg === 'bus close');
  const natsDown = lines.findIndex((l) => l.component === 'nats-server' && /Server Exiting/.test(l.msg));
  t.ok(busClose >= 0 && natsDown > busClose, 'the bus closed before nats-server stopped (reverse order)');
});

t.test('kill -9 of troupe up leaves no nats-server behind', async (t) => {
  const dir = tempDir(t);
  const { child } = await startUp(t, dir, ['--log-level', 'warn']);
  const natsPid = natsPidUnder(dir);
  t.ok(natsPid);
  child.kill('SIGKILL');
  await waitFor(() => !natsPidUnder(dir), 'nats-server to die with its parent');
  t.pass('gone');
});

t.test('usage errors: clear message, exit code 2', async (t) => {
  const run = (args: string[]) =>
    promisify(execFile)(process.execPath, [cli, ...args]).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
  const bad = await run(['up', '--log-level', 'loud']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--log-level: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"/);
  const unknown = await run(['frobnicate']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command "frobnicate"/);
  const port = await run(['up', '--port', '99999']);
  t.equal(port.code, 2);
  t.match(port.stderr, /--port: expected a port number from 0 to 65535, got "99999"/);
  const flag = await run(['up', '--nope']);
  t.equal(flag.code, 2);
  t.match(flag.stderr, /Unknown option '--nope'/);
  const v = await run(['version']);
  t.equal(v.code, 0);
  t.match(v.stdout, /^troupe \d+\.\d+\.\d+ \(protocol 1\.0\)\n$/);
});
