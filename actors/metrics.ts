/**
 * Counters, cheap enough for hot paths: a flat map from `name{label="v"}` to a number.
 */

export type Labels = Record<string, string | number>;

function keyOf(name: string, labels?: Labels): string {
  if (!labels) return name;
  const keys = Object.keys(labels);
  // empty labels are no labels: the same counter
  if (keys.length === 0) return name;
  const parts = keys
    .sort()
    .map((k) => `${k}=${JSON.stringify(String(labels[k]))}`);
  return `${name}{${parts.join(',')}}`;
}

/** One counter; hot paths keep the handle and call inc() without a lookup. */
export interface Counter {
  value: number;
  inc(by?: number): void;
}

export class Metrics {
  private readonly counters = new Map<string, Counter>();

  /** The counter for a name and label set, created at zero. */
  counter(name: string, labels?: Labels): Counter {
    const k = keyOf(name, labels);
    let c = this.counters.get(k);
    if (!c) {
      const counter: Counter = {
        value: 0,
        inc(by = 1) {
          counter.value += by;
        },
      };
      c = counter;
      this.counters.set(k, c);
    }
    return c;
  }

  inc(name: string, labels?: Labels, by = 1): void {
    this.counter(name, labels).inc(by);
  }

  get(name: string, labels?: Labels): number {
    return this.counters.get(keyOf(name, labels))?.value ?? 0;
  }

  /** Sum over every label set of one counter. */
  total(name: string): number {
    let sum = 0;
    for (const [k, c] of this.counters) if (k === name || k.startsWith(`${name}{`)) sum += c.value;
    return sum;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counters].filter(([, c]) => c.value !== 0).map(([k, c]) => [k, c.value]));
  }

  /** Prometheus text exposition of every counter. */
  toText(): string {
    return [...this.counters].map(([k, c]) => `${k} ${c.value}`).join('\n');
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
