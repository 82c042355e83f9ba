import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Bus, KvStore, natsServerConfig, startNatsServer } from '../../actors/index.js';
import { requireProgram, type ProcessValue } from '../../supervisor/index.js';
import { tempDir, waitFor } from '../helpers/nats.js';

t.test('config: JetStream store under the data dir, the port, the payload limit', async (t) => {
  const conf = natsServerConfig({ dataDir: '/d', port: 0, serverName: 'x' });
  t.match(conf, /listen: "127\.0\.0\.1:-1"/, 'port 0 asks the server for a free one');
  t.match(conf, /store_dir: "\/d\/jetstream"/);
  t.match(conf, /max_payload: 1048576/);
  t.match(natsServerConfig({ dataDir: '/d', port: 4300 }), /listen: "127\.0\.0\.1:4300"/);
});

t.test('the embedded server starts, is supervised, restarts on the same port after kill -9, and keeps data', async (t) => {
  const dataDir = tempDir(t);
  const srv = await startNatsServer({ dataDir });
  t.teardown(() => srv.stop());
  t.match(srv.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  t.match(readFileSync(join(dataDir, 'nats-server.conf'), 'utf8'), /jetstream/);
  const bus = await Bus.connect({ servers: srv.url });
  t.teardown(() => bus.close());
  const kv = await KvStore.open(bus, 'test-bucket');
  await kv.put('k', new Uint8Array([42]));

  const firstPid = srv.pid();
  process.kill(firstPid, 'SIGKILL');
  await waitFor(() => srv.pid() !== firstPid && srv.pid() > 0, 'the supervisor to restart nats-server');
  // the client reconnects to the same URL and JetStream still has the value
  const entry = await waitFor(() => kv.get('k').catch(() => undefined), 'the value back after the restart');
  t.same([...entry.value], [42]);
  const info = srv.supervisor.valueOf<ProcessValue<{ port: number }>>('nats-server')!;
  t.equal(info.ready!.port, srv.port, 'same port after the restart');
  await srv.stop();
  let gone = false;
  try {
    process.kill(srv.pid(), 0);
  } catch {
    gone = true;
  }
  t.ok(gone || srv.pid() === -1, 'no server process left');
});

t.test('nats-server is found on this machine', async (t) => {
  t.match(requireProgram('nats-server', 'hint'), /nats-server$/);
});
