/**
 * How far the control plane's heap may grow past its live data.
 *
 * V8 lets a busy process's heap grow to up to four times what a full collection keeps, and keeps
 * the pages it grew into: a controller holding 30,000 pods was 636 MB resident. Kept to twice its
 * live data (as Go's default GOGC=100), the same run peaks at 405-420 MB resident.
 *
 * 30 % (GOGC=30) kept it near 365 MB but cost more than it saved: measured on the control-plane
 * bench, three runs each alternated in one hour, 0.52-0.61 ms of controller CPU per pod and
 * 1,733-2,026 pods/s at 30 %, against 0.45-0.48 ms and 1,995-2,187 pods/s at 100 % (at 30 % a
 * full collection ran every time the heap grew by a third of the live pods).
 *
 * TROUPE_HEAP_GROWING_PERCENT sets another figure; 0 leaves V8's own heuristics.
 */
import { setFlagsFromString } from 'node:v8';

export const DEFAULT_HEAP_GROWING_PERCENT = 100;

/** Applies the heap growing limit to this process; returns the percent in force (0: V8's own). */
export function limitHeapGrowth(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.TROUPE_HEAP_GROWING_PERCENT;
  const percent = raw === undefined || raw === '' ? DEFAULT_HEAP_GROWING_PERCENT : Number(raw);
  if (!Number.isInteger(percent) || percent < 0 || percent > 1000) {
    throw new Error(`TROUPE_HEAP_GROWING_PERCENT: expected a whole number from 0 to 1000, got ${JSON.stringify(raw)}`);
  }
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
  return percent;
}

/**
 * Node flags the long-running troupe processes (`troupe up`, `troupe controller`, `troupe agent`)
 * start with: in the executable's first line, `npm start`, the systemd unit and the
 * control-plane bench (a test holds them together). They cannot be set once the process runs.
 *
 * --max-semi-space-size=32: V8's young generation may grow to 32 MB a half (16 by default). A
 * control plane allocates a few short-lived objects per message; with the default most of them
 * were scavenged twice and promoted, and collection was 16% of its CPU. Measured on the
 * control-plane bench, controller only: 1.03 → 0.82 ms of CPU per pod, 1,130 → 1,320 pods/s,
 * resident 380-440 → 405-417 MB (64 MB: no faster, 450 MB).
 */
export const NODE_FLAGS = ['--max-semi-space-size=32'] as const;
