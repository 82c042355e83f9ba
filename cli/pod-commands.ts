/**
 * `troupe logs` and `troupe exec`: they find the node that has the pod (asking every registered
 * node until the control plane records bindings) and talk to it over the bus.
 */
import { Bus, KvStore } from '../actors/index.js';
import { MessageType, NotFoundError, TroupeError } from '../protocol/index.js';
import type { ExecReply, LogsReply } from '../node-agent/index.js';

export async function registeredNodes(bus: Bus): Promise<string[]> {
  const kv = await KvStore.open(bus, bus.subjects.stateBucket);
  return (await kv.keys('nodeinfo.*')).map((k) => k.slice('nodeinfo.'.length)).sort();
}

/** Sends a node command to every node until one has the pod; NotFound only when none has it. */
export async function askNodes<R>(bus: Bus, body: Record<string, unknown> & { namespace: string; pod: string }, timeout = 60_000): Promise<{ node: string; reply: R }> {
  const nodes = await registeredNodes(bus);
  if (nodes.length === 0) throw new NotFoundError('no node is registered in this cluster; start one with `troupe agent` or `troupe up`');
  const errors: TroupeError[] = [];
  for (const node of nodes) {
    try {
      const env = await bus.request<R>(bus.subjects.nodeCmd(node), MessageType.Command, body, { timeout });
      return { node, reply: env.body };
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      if (err instanceof TroupeError && err.code === 'TRP_ERR_UNAVAILABLE') {
        errors.push(err);
        continue;
      }
      throw err;
    }
  }
  throw new NotFoundError(`pod ${body.namespace}/${body.pod} was not found on any node (${nodes.join(', ')})${errors.length ? `; unreachable: ${errors.map((e) => e.message).join('; ')}` : ''}`);
}

export interface LogsOptions {
  namespace: string;
  pod: string;
  container?: string;
  tail?: number;
  previous?: boolean;
  timestamps?: boolean;
  follow?: boolean;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  signal?: AbortSignal;
}

export async function logs(bus: Bus, o: LogsOptions): Promise<void> {
  const ask = (tail?: number) =>
    askNodes<LogsReply>(bus, { type: 'logs', namespace: o.namespace, pod: o.pod, ...(o.container ? { container: o.container } : {}), ...(tail !== undefined ? { tail } : {}), ...(o.previous ? { previous: true } : {}), ...(o.timestamps ? { timestamps: true } : {}) });
  const first = await ask(o.tail);
  o.out.write(first.reply.stdout);
  o.err.write(first.reply.stderr);
  if (!o.follow) return;
  // follow: ask again and print what is new
  const base = (await ask()).reply;
  let seenOut = base.stdout.length;
  let seenErr = base.stderr.length;
  while (!o.signal?.aborted) {
    await new Promise((r) => setTimeout(r, 500));
    const next = (await ask()).reply;
    if (next.stdout.length > seenOut) o.out.write(next.stdout.slice(seenOut));
    if (next.stderr.length > seenErr) o.err.write(next.stderr.slice(seenErr));
    seenOut = next.stdout.length;
    seenErr = next.stderr.length;
  }
}

export async function exec(bus: Bus, o: { namespace: string; pod: string; container?: string; command: string[]; timeout?: number }): Promise<ExecReply> {
  const { reply } = await askNodes<ExecReply>(bus, { type: 'exec', namespace: o.namespace, pod: o.pod, command: o.command, ...(o.container ? { container: o.container } : {}), ...(o.timeout ? { timeout: o.timeout } : {}) }, (o.timeout ?? 60_000) + 5000);
  return reply;
}
