import { SimulatedClock } from 'xstate';

/**
 * The one clock of the process (DESIGN.md, Time): XState's timer interface for the actors, plus
 * monotonic `now()` for protocol cores and the router, and `wallNow()` (epoch ms) for what must
 * follow wall time (authorization expiry). Only the real clock reads the system time.
 */
export interface Clock {
  // biome-ignore lint/suspicious/noExplicitAny: XState's Clock interface types timer ids as any.
  setTimeout(fn: (...args: unknown[]) => void, ms: number): any;
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  clearTimeout(id: any): void;
  /** Monotonic milliseconds. */
  now(): number;
  /** Wall-clock milliseconds since the epoch. */
  wallNow(): number;
}

export const realClock: Clock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
  now: () => performance.now(),
  wallNow: () => Date.now(),
};

/**
 * A simulated clock for tests: XState's SimulatedClock (deadline-ordered timers, never backwards)
 * with a wall clock that moves with it.
 */
export class TestClock extends SimulatedClock implements Clock {
  private readonly pending = new Map<unknown, number>();

  constructor(private readonly wallOffsetMs = 1_700_000_000_000) {
    super();
  }

  override setTimeout(fn: (...args: unknown[]) => void, ms: number): number {
    const id = super.setTimeout(() => {
      this.pending.delete(id);
      fn();
    }, ms);
    this.pending.set(id, this.now() + ms);
    return id;
  }

  override clearTimeout(id: number): void {
    this.pending.delete(id);
    super.clearTimeout(id);
  }

  wallNow(): number {
    return this.now() + this.wallOffsetMs;
  }

  /** The earliest pending deadline, if any. */
  nextDeadline(): number | undefined {
    let at: number | undefined;
    for (const t of this.pending.values()) if (at === undefined || t < at) at = t;
    return at;
  }

  /** Jumps to the next deadline and fires what is due. Returns false when nothing is pending. */
  advanceToNext(): boolean {
    const at = this.nextDeadline();
    if (at === undefined) return false;
    this.increment(Math.max(0, at - this.now()));
    return true;
  }

  /** Advances by `ms`, firing every timer due on the way in deadline order. */
  advance(ms: number): void {
    const end = this.now() + ms;
    for (;;) {
      const at = this.nextDeadline();
      if (at === undefined || at > end) break;
      this.increment(Math.max(0, at - this.now()));
    }
    this.increment(Math.max(0, end - this.now()));
  }
}
