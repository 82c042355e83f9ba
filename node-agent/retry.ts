/**
 * A node talking to a control plane that may be away (starting, failing over): a command is sent
 * again with backoff until it is answered, the caller stops, or the error is not one to wait out.
 */
import { backoff, sleep, systemClock } from '../supervisor/index.js';

export interface RetryOptions {
  /** True once the caller stops: no more attempts. */
  stopped: () => boolean;
  baseMs: number;
  capMs: number;
  /** Whether an error is worth another attempt (default: every error). */
  retry?: (err: unknown) => boolean;
  /** Told of each failed attempt before its wait. */
  onRetry?: (err: unknown, attempt: number) => void;
}

/** The error's troupe code, if it has one. */
export function codeOf(err: unknown): string | undefined {
  return (err as { code?: string } | undefined)?.code;
}

/** The object is gone or changed hands: nothing a retry would mend. */
export function isGoneOrConflict(err: unknown): boolean {
  const code = codeOf(err);
  return code === 'TRP_ERR_NOT_FOUND' || code === 'TRP_ERR_CONFLICT';
}

/**
 * Calls until it succeeds. An error that `retry` refuses is thrown; stopping ends quietly with
 * undefined.
 */
export async function untilAnswered<T>(call: () => Promise<T>, o: RetryOptions): Promise<T | undefined> {
  for (let attempt = 0; !o.stopped(); attempt++) {
    try {
      return await call();
    } catch (err) {
      if (o.retry && !o.retry(err)) throw err;
      o.onRetry?.(err, attempt);
      await sleep(systemClock, backoff(attempt, o.baseMs, o.capMs)).catch(() => undefined);
    }
  }
  return undefined;
}
