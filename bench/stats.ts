/** Small statistics and output helpers for benchmarks. */
import { readFileSync } from 'node:fs';

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** A figure to one decimal (times in ms, rates). */
export const round1 = (x: number): number => Math.round(x * 10) / 10;

/** A figure to two decimals (ratios). */
export const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Prints one line per figure for people, then the figures as one JSON object (the last line). */
export function printFigures(name: string, figures: Record<string, number>): void {
  for (const [k, v] of Object.entries(figures)) process.stdout.write(`${name}: ${k} = ${v}\n`);
  process.stdout.write(`${JSON.stringify({ bench: name, ...figures })}\n`);
}

/** CPU time a process has used so far (user + system, ms), from /proc/<pid>/stat. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // the fields after the command (which may hold spaces), from the third on
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
}

/** USER_HZ: 100 on Linux for every architecture Node runs on. */
const CLOCK_TICKS = 100;
