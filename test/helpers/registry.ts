/**
 * Debian's docker-registry (the CNCF distribution registry) on a free loopback port, with its own
 * storage folder, stopped when the test ends.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { tempDir, waitFor, type Teardown } from './nats.js';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function withRegistry(t: Teardown): Promise<string> {
  const dir = tempDir(t, 'troupe-registry-');
  const port = await freePort();
  const config = join(dir, 'config.yml');
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  const host = `127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`http://${host}/v2/`).catch(() => undefined))?.ok, 'the registry to answer');
  return host;
}
