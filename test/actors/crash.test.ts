/**
 * Crashes under traffic. Every acknowledged write must survive:
 * - the process hosting the actor is SIGKILLed and another process resumes the actor from its snapshot;
 * - nats-server is SIGKILLed (its supervisor restarts it on the same port); clients reconnect.
 * Writes are idempotent adds of distinct ids, retried until acknowledged.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ActorClient, ActorHost, type StoredActor } from '../../index.js';
import { counter } from '../fixtures/counter.js';
import { withBus, withNats, waitFor, type Teardown } from '../helpers/nats.js';

const hostScript = fileURLToPath(new URL('../fixtures/counter-host.js', import.meta.url));

function startHostProcess(t: Teardown, url: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [hostScript, url], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (l) => l.startsWith('ready') && resolve(child));
    child.once('exit', (code) => reject(new Error(`host process exited (${code}) before ready`)));
  });
}

/** Adds ids 0..n-1 with `concurrency` in flight, each retried until acknowledged. */
async function writeAll(client: ActorClient<typeof counter>, name: string, n: number, concurrency: number, onProgress: (acked: number) => void) {
  const acked = new Set<string>();
  let next = 0;
  let errors = 0;
  const worker = async () => {
    while (next < n) {
      const id = `w${next++}`;
      for (;;) {
        try {
          await client.send('default', name, { type: 'add', id }, { timeout: 1000 });
          acked.add(id);
          onProgress(acked.size);
          break;
        } catch {
          errors++;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { acked, errors };
}

const idsOf = (s: StoredActor | undefined) => (s?.snapshot as unknown as { context: { ids: string[] } }).context.ids;

t.test('kill -9 of the hosting process: another process resumes the actor and every acknowledged write is there', async (t) => {
  const nats = await withNats(t);
  const client = new ActorClient(await withBus(t, nats.url), counter);
  const first = await startHostProcess(t, nats.url);
  let killedAt = -1;
  let restarted: Promise<ChildProcess> | undefined;
  const result = await writeAll(client, 'ledger', 400, 8, (acked) => {
    if (acked === 150 && killedAt < 0) {
      killedAt = acked;
      first.kill('SIGKILL');
      restarted = startHostProcess(t, nats.url);
    }
  });
  await restarted;
  t.ok(killedAt > 0, 'the host was killed mid-traffic');
  t.equal(result.acked.size, 400);
  const reply = await client.send('default', 'ledger', { type: 'get' });
  t.equal(reply.n, 400, 'the resumed actor counts every write exactly once');
  const ids = new Set(idsOf(await client.stored('default', 'ledger')));
  const missing = [...result.acked].filter((id) => !ids.has(id));
  t.same(missing, [], 'no acknowledged write is missing from the persisted snapshot');
  t.ok(result.errors > 0, `requests failed while no host served (${result.errors}) and were retried`);
});

t.test('nats-server killed and restarted mid-traffic: clients reconnect and every acknowledged write is there', async (t) => {
  const nats = await withNats(t);
  const hostBus = await withBus(t, nats.url, { name: 'host' });
  const host = await ActorHost.start(hostBus, { kinds: [counter] });
  t.teardown(() => host.stop());
  const clientBus = await withBus(t, nats.url, { name: 'client' });
  const client = new ActorClient(clientBus, counter);
  const statuses: string[] = [];
  clientBus.on('status', (s: { type: string }) => statuses.push(s.type));
  const pid = nats.pid();
  let killed = false;
  const result = await writeAll(client, 'ledger', 300, 8, (acked) => {
    if (acked === 100 && !killed) {
      killed = true;
      process.kill(pid, 'SIGKILL');
    }
  });
  t.ok(killed);
  await waitFor(() => nats.pid() !== pid, 'nats-server restarted by its supervisor');
  t.ok(statuses.includes('disconnect') && statuses.includes('reconnect'), `client saw disconnect and reconnect (${statuses.join(',')})`);
  t.equal(result.acked.size, 300);
  const reply = await client.send('default', 'ledger', { type: 'get' });
  t.equal(reply.n, 300);
  const ids = new Set(idsOf(await client.stored('default', 'ledger')));
  t.same([...result.acked].filter((id) => !ids.has(id)), [], 'no acknowledged write lost');
});
