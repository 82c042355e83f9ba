/**
 * What a node answers on `troupe.<c>.node.<node>.cmd`, beside its pod actors: container logs,
 * exec, and the list of its containers. Bodies are validated here; answers stay under the payload
 * limit (logs are cut from the front, and say so).
 */
import type { Subscription } from '@nats-io/transport-node';
import type { Bus } from '../actors/index.js';
import { MessageType, NotFoundError, ValidationError, labelName, s, validate, type Infer } from '../protocol/index.js';
import type { ContainerRuntime, LogLine } from './container-runtime.js';

const podRef = { namespace: labelName, pod: s.string({ min: 1, max: 253 }), container: s.optional(labelName) };

export const nodeCommand = s.union('type', {
  logs: s.object({ ...podRef, tail: s.optional(s.int({ min: 0, max: 1_000_000 })), previous: s.optional(s.bool()), timestamps: s.optional(s.bool()) }),
  exec: s.object({ ...podRef, command: s.array(s.string({ max: 1 << 16 }), { min: 1, max: 1024 }), timeout: s.optional(s.int({ min: 1, max: 3_600_000 })) }),
  containers: s.object({}),
});
export type NodeCommand = Infer<typeof nodeCommand>;

export interface LogsReply {
  container: string;
  stdout: string;
  stderr: string;
  /** True when the output was cut to fit a message. */
  truncated: boolean;
}

export interface ExecReply {
  container: string;
  stdout: string;
  stderr: string;
  exitCode: number;
}

function lastLines(text: string, n: number | undefined): string {
  if (n === undefined) return text;
  if (n === 0 || text === '') return '';
  const lines = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
  return `${lines.slice(-n).join('\n')}\n`;
}

/** 2026-11-26T15:04:05.123456000Z, as Kubernetes prints log timestamps. */
export function rfc3339Nano(ms: number): string {
  const whole = Math.floor(ms);
  const micros = Math.round((ms - whole) * 1000);
  const iso = new Date(whole).toISOString(); // …ss.mmmZ
  return `${iso.slice(0, -1)}${String(micros).padStart(3, '0')}000Z`;
}

export function serveNode(bus: Bus, node: string, runtime: ContainerRuntime): Subscription {
  const budget = Math.floor(bus.codec.maxPayload * 0.45);
  const cut = (text: string) => (Buffer.byteLength(text) > budget ? { text: Buffer.from(text).subarray(-budget).toString('utf8'), cut: true } : { text, cut: false });

  const find = async (cmd: { namespace: string; pod: string; container?: string }) => {
    const scan = async () => (await runtime.containers()).filter((c) => c.namespace === cmd.namespace && c.pod === cmd.pod);
    let all = await scan();
    // a restarting container's folder is renewed: look again a few times before saying no
    for (let i = 0; i < 5 && all.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      all = await scan();
    }
    if (all.length === 0) throw new NotFoundError(`pod ${cmd.namespace}/${cmd.pod} has no container on node ${node}`, { node, ...cmd });
    if (cmd.container) {
      const c = all.find((x) => x.container === cmd.container);
      if (!c) throw new ValidationError(`container ${JSON.stringify(cmd.container)} is not valid for pod ${cmd.namespace}/${cmd.pod}; choose one of: ${all.map((x) => x.container).join(' ')}`, { node, ...cmd });
      return c;
    }
    if (all.length > 1) {
      throw new ValidationError(`a container name must be specified for pod ${cmd.namespace}/${cmd.pod}, choose one of: ${all.map((x) => x.container).join(' ')}`, { containers: all.map((x) => x.container) });
    }
    return all[0]!;
  };

  return bus.serve<unknown>(
    bus.subjects.nodeCmd(node),
    async (env) => {
      const cmd = validate(nodeCommand, env.body, `node ${node} command`);
      switch (cmd.type) {
        case 'containers':
          return (await runtime.containers()).map(({ namespace, pod, container, podUid }) => ({ namespace, pod, container, podUid }));
        case 'logs': {
          const c = await find(cmd);
          const lines = await runtime.logLines(c.podUid, c.container, cmd.previous === true);
          const text = (ls: LogLine[]) => ls.map((l) => `${cmd.timestamps ? `${rfc3339Nano(l.ts)} ` : ''}${l.line}\n`).join('');
          const out = cut(lastLines(text(lines.stdout), cmd.tail));
          const err = cut(lastLines(text(lines.stderr), cmd.tail));
          return { container: c.container, stdout: out.text, stderr: err.text, truncated: out.cut || err.cut } satisfies LogsReply;
        }
        case 'exec': {
          const c = await find(cmd);
          const r = await runtime.exec(c.podUid, c.container, cmd.command, { timeout: cmd.timeout ?? 60_000 });
          return { container: c.container, stdout: cut(r.stdout).text, stderr: cut(r.stderr).text, exitCode: r.exitCode } satisfies ExecReply;
        }
      }
    },
    { accept: [MessageType.Command] },
  );
}
