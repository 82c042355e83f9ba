/**
 * An OS process as a supervisor child, run with execa: its output lines go into pino, its exit
 * status and signal are observed, stop sends a signal (SIGTERM by default) and kill sends SIGKILL.
 * The supervisor's shutdown rule decides how long to wait between the two.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ResultPromise } from 'execa';
import type { Logger } from 'pino';
import type { ChildHandle, ChildSpec, ExitReason, Restart, Shutdown } from './child-spec.js';
import { ChildStartError, ProcessExitError, ProgramMissingError } from './errors.js';

/** Looks a program up on PATH (and the sbin folders, which a root shell has but a service may not). */
export function findProgram(name: string, extraDirs: string[] = ['/usr/local/sbin', '/usr/sbin', '/sbin']): string | undefined {
  if (name.includes('/')) return canRun(name) ? name : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...extraDirs].filter(Boolean);
  for (const d of dirs) {
    const p = join(d, name);
    if (canRun(p)) return p;
  }
  return undefined;
}

function canRun(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function requireProgram(name: string, installHint: string): string {
  const found = findProgram(name);
  if (!found) throw new ProgramMissingError(`${name} is not installed or not on PATH; ${installHint}`, { program: name, hint: installHint });
  return found;
}

export interface ProcessChildOptions<V> {
  id: string;
  file: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  restart?: Restart;
  shutdown?: Shutdown;
  /** Signal for a graceful stop. */
  stopSignal?: NodeJS.Signals;
  /**
   * Called with each output line until it returns something other than undefined: the process is
   * then ready and that is the child's value. Without it the process is ready once spawned.
   */
  ready?: (line: string) => V | undefined;
  /** How long to wait for readiness before the start fails (ms). */
  readyTimeout?: number;
  /**
   * Run in its own process group (so a terminal's Ctrl-C reaches only troupe, which then stops
   * its children in order) and die with troupe even when troupe is SIGKILLed (PR_SET_PDEATHSIG
   * through util-linux's setpriv). Default true.
   */
  tieToParent?: boolean;
  /** Logs one output line; the default logs it at info under the child's id. */
  log?: (logger: Logger, line: string, stream: 'stdout' | 'stderr') => void;
}

export interface ProcessValue<V> {
  pid: number;
  ready: V | undefined;
}

const TAIL_LINES = 20;

export function processChild<V = undefined>(opts: ProcessChildOptions<V>): ChildSpec<ProcessValue<V>> {
  return {
    id: opts.id,
    restart: opts.restart,
    shutdown: opts.shutdown ?? 5000,
    start: async (ctx) => {
      // loaded when first needed: a CLI that starts no process does not pay for it
      const { execa } = await import('execa');
      return new Promise((resolveStart, rejectStart) => {
        const logger = ctx.logger.child({ component: opts.id });
        const tail: string[] = [];
        let started = false;
        let stopRequested = false;
        let child: ResultPromise;
        const tie = opts.tieToParent !== false;
        const setpriv = tie ? findProgram('setpriv') : undefined;
        const [file, args] = setpriv ? [setpriv, ['--pdeathsig', 'SIGKILL', '--', opts.file, ...(opts.args ?? [])]] : [opts.file, opts.args ?? []];
        try {
          child = execa(file, args, {
            detached: tie,
            env: opts.env,
            extendEnv: true,
            cwd: opts.cwd,
            stdin: 'ignore',
            buffer: false,
            reject: false,
            cleanup: true,
          });
        } catch (err) {
          rejectStart(new ChildStartError(`${opts.id}: cannot run ${opts.file}: ${(err as Error).message}`, { file: opts.file }, { cause: err }));
          return;
        }
        const pid = child.pid;
        const log = opts.log ?? ((l: Logger, line: string, stream: string) => l.info({ stream }, line));
        let timer: NodeJS.Timeout | undefined;
        const becomeReady = (value: V | undefined) => {
          if (started) return;
          started = true;
          if (timer) clearTimeout(timer);
          resolveStart({
            exited,
            stop: () => {
              stopRequested = true;
              child.kill(opts.stopSignal ?? 'SIGTERM');
            },
            kill: () => {
              stopRequested = true;
              child.kill('SIGKILL');
            },
            value: { pid: pid ?? -1, ready: value },
          } satisfies ChildHandle<ProcessValue<V>>);
        };
        const onLine = (stream: 'stdout' | 'stderr') => (line: string) => {
          tail.push(line);
          if (tail.length > TAIL_LINES) tail.shift();
          log(logger, line, stream);
          if (!started && opts.ready) {
            const v = opts.ready(line);
            if (v !== undefined) becomeReady(v);
          }
        };
        if (child.stdout) createInterface({ input: child.stdout }).on('line', onLine('stdout'));
        if (child.stderr) createInterface({ input: child.stderr }).on('line', onLine('stderr'));

        const exited: Promise<ExitReason> = child.then(
          (result) => {
            const how = result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`;
            if (!started) {
              if (timer) clearTimeout(timer);
              rejectStart(
                new ChildStartError(`${opts.id}: ${opts.file} ended before it was ready (${result.exitCode === undefined ? result.shortMessage : how})${tail.length ? `; last output: ${tail.slice(-5).join(' | ')}` : ''}`, {
                  file: opts.file,
                  exitCode: result.exitCode,
                  signal: result.signal,
                }),
              );
            }
            if (stopRequested) return { type: 'shutdown' } as const;
            if (result.exitCode === 0) return { type: 'normal' } as const;
            logger.warn({ exitCode: result.exitCode, signal: result.signal }, `${opts.id} exited (${how})`);
            return {
              type: 'error',
              error: new ProcessExitError(`${opts.id} exited unexpectedly (${how})`, { exitCode: result.exitCode, signal: result.signal, tail: [...tail] }),
            } as const;
          },
          (error: unknown) => ({ type: 'error', error }) as const,
        );
        if (!opts.ready) {
          child.once('spawn', () => becomeReady(undefined));
        } else if (opts.readyTimeout) {
          timer = setTimeout(() => {
            if (started) return;
            stopRequested = true;
            child.kill('SIGKILL');
            rejectStart(new ChildStartError(`${opts.id}: not ready within ${opts.readyTimeout} ms${tail.length ? `; last output: ${tail.slice(-5).join(' | ')}` : ''}`, { file: opts.file }));
          }, opts.readyTimeout);
        }
      });
    },
  };
}
