/**
 * The OCI image config (the part a runtime uses) and Docker's `--change` instructions.
 */
import { ValidationError } from '../protocol/index.js';

export interface ImageRuntimeConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

export interface ImageConfig {
  created?: string;
  architecture: string;
  os: string;
  config: ImageRuntimeConfig;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: { created?: string; created_by?: string; comment?: string }[];
}

/** An exec-form JSON array, or a shell-form string run by /bin/sh -c (as a Dockerfile). */
function commandForm(arg: string): string[] {
  const trimmed = arg.trim();
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new Error(`expected a JSON array of strings, got ${trimmed}`);
    }
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error('expected a JSON array of strings');
    return parsed;
  }
  if (trimmed === '') throw new Error('expected a command');
  return ['/bin/sh', '-c', trimmed];
}

const INSTRUCTIONS = ['CMD', 'ENTRYPOINT', 'ENV', 'WORKDIR', 'EXPOSE', 'USER', 'LABEL', 'STOPSIGNAL'] as const;

/** Applies `--change` instructions (docker import semantics) to a runtime config. */
export function applyChanges(config: ImageRuntimeConfig, changes: string[]): ImageRuntimeConfig {
  const out: ImageRuntimeConfig = { ...config, Env: [...(config.Env ?? [])], ExposedPorts: { ...(config.ExposedPorts ?? {}) }, Labels: { ...(config.Labels ?? {}) } };
  changes.forEach((change, i) => {
    const m = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(change);
    const where = `--change[${i}] ${JSON.stringify(change)}`;
    if (!m) throw new ValidationError(`${where}: expected "INSTRUCTION arguments" with one of ${INSTRUCTIONS.join(', ')}`, { change });
    const instr = m[1]!.toUpperCase();
    const arg = m[2]!.trim();
    try {
      switch (instr) {
        case 'CMD':
          out.Cmd = commandForm(arg);
          break;
        case 'ENTRYPOINT':
          out.Entrypoint = commandForm(arg);
          break;
        case 'ENV': {
          const pairs = arg.includes('=') ? (arg.match(/(?:[^\s"]+|"[^"]*")+/g) ?? []) : [arg.replace(/\s+/, '=')];
          for (const p of pairs) {
            const eq = p.indexOf('=');
            if (eq <= 0) throw new Error('expected NAME=value');
            const name = p.slice(0, eq);
            const value = p.slice(eq + 1).replace(/^"(.*)"$/, '$1');
            out.Env = [...out.Env!.filter((e) => !e.startsWith(`${name}=`)), `${name}=${value}`];
          }
          break;
        }
        case 'WORKDIR':
          if (!arg.startsWith('/')) throw new Error('expected an absolute path');
          out.WorkingDir = arg;
          break;
        case 'EXPOSE':
          for (const p of arg.split(/\s+/)) {
            const pm = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/.exec(p);
            if (!pm || Number(pm[1]) < 1 || Number(pm[1]) > 65535) throw new Error(`expected PORT[/tcp|udp|sctp], got ${p}`);
            out.ExposedPorts![`${pm[1]}/${pm[2] ?? 'tcp'}`] = {};
          }
          break;
        case 'USER':
          if (!/^[\w.-]+(:[\w.-]+)?$/.test(arg)) throw new Error('expected USER or USER:GROUP');
          out.User = arg;
          break;
        case 'LABEL': {
          const eq = arg.indexOf('=');
          if (eq <= 0) throw new Error('expected KEY=value');
          out.Labels![arg.slice(0, eq)] = arg.slice(eq + 1).replace(/^"(.*)"$/, '$1');
          break;
        }
        case 'STOPSIGNAL':
          out.StopSignal = arg;
          break;
        default:
          throw new Error(`unsupported instruction ${instr} (supported: ${INSTRUCTIONS.join(', ')})`);
      }
    } catch (err) {
      if (err instanceof ValidationError) throw err;
      throw new ValidationError(`${where}: ${(err as Error).message}`, { change });
    }
  });
  return out;
}
