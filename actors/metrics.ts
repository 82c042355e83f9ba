/**
 * Counters, cheap enough for hot paths: a flat map from `name{label="v"}` to a number.
 */

export type Labels = Record<string, string | number>;

function keyOf(name: string, labels?: Labels): string {
  if (!labels) return name;
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(String(labels[k]))}`);
  return `${name}{${parts.join(',')}}`;
}

export class Metrics {
  private readonly counters = new Map<string, number>();

  inc(name: string, labels?: Labels, by = 1): void {
    const k = keyOf(name, labels);
    this.counters.set(k, (this.counters.get(k) ?? 0) + by);
  }

  get(name: string, labels?: Labels): number {
    return this.counters.get(keyOf(name, labels)) ?? 0;
  }

  /** Sum over every label set of one counter. */
  total(name: string): number {
    let sum = 0;
    for (const [k, v] of this.counters) if (k === name || k.startsWith(`${name}{`)) sum += v;
    return sum;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.counters);
  }

  /** Prometheus text exposition of every counter. */
  toText(): string {
    return [...this.counters].map(([k, v]) => `${k} ${v}`).join('\n');
  }
}

/** Lets through at most `perSecond` calls a second; counts what it held back. */
export class RateLimit {
  private windowStart = 0;
  private used = 0;
  suppressed = 0;
  constructor(private readonly perSecond: number) {}
  allow(now = Date.now()): boolean {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used < this.perSecond) {
      this.used++;
      return true;
    }
    this.suppressed++;
    return false;
  }
}
