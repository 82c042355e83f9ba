/**
 * Restart intensity: at most `intensity` restarts within a sliding window of `period` ms.
 */
import type { Clock } from './clock.js';

export class RestartIntensity {
  private readonly times: number[] = [];

  constructor(
    readonly intensity: number,
    readonly period: number,
    private readonly clock: Clock,
  ) {}

  /** Records one restart; returns false when that makes too many within the period. */
  add(): boolean {
    const now = this.clock.now();
    const since = now - this.period;
    while (this.times.length > 0 && this.times[0]! <= since) this.times.shift();
    this.times.push(now);
    return this.times.length <= this.intensity;
  }

  /** Restarts counted in the current window. */
  count(): number {
    const since = this.clock.now() - this.period;
    return this.times.filter((t) => t > since).length;
  }
}
