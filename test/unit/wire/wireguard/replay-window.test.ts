import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REPLAY_WINDOW_SIZE, ReplayWindow } from '../../../../src/wire/wireguard/replay-window.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';

describe('replay window', () => {
  it('keeps a window of at least 2048 counters', () => {
    expect(REPLAY_WINDOW_SIZE).toBeGreaterThanOrEqual(2048);
  });

  it('accepts each counter once, in any order inside the window', () => {
    const w = new ReplayWindow();
    for (const c of [0, 2, 1, 5, 3, 4]) expect(w.update(c)).toBe(true);
    for (const c of [0, 1, 2, 3, 4, 5]) expect(w.update(c)).toBe(false);
    expect(w.greatest).toBe(5);
  });

  it('rejects counters that fell out of the window and accepts the oldest one still in it', () => {
    const w = new ReplayWindow();
    w.update(10_000);
    expect(w.check(10_000 - REPLAY_WINDOW_SIZE)).toBe(false);
    expect(w.check(10_000 - REPLAY_WINDOW_SIZE + 1)).toBe(true);
  });

  it('checks without recording, so forged packets cannot poison it', () => {
    const w = new ReplayWindow();
    expect(w.check(7)).toBe(true);
    expect(w.check(7)).toBe(true);
    expect(w.greatest).toBe(-1);
  });

  it('forgets bits of blocks it slides past after a large jump', () => {
    const w = new ReplayWindow();
    w.update(1);
    w.update(1 + 8192 * 3 + 5);
    expect(w.check(1 + 8192 * 3 + 4)).toBe(true);
    expect(w.check(1 + 8192 * 3 + 5)).toBe(false);
  });

  it('rejects negative, non-integer-safe and reject-after counters', () => {
    const w = new ReplayWindow();
    expect(w.check(-1)).toBe(false);
    expect(w.check(Number.POSITIVE_INFINITY)).toBe(false);
    expect(w.check(Number.MAX_SAFE_INTEGER)).toBe(false);
  });

  it('agrees with a naive model on any sequence', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.nat({ max: 20_000 }), fc.nat({ max: 100 })), { maxLength: 300 }),
        (counters) => {
          const w = new ReplayWindow();
          const seen = new Set<number>();
          let greatest = -1;
          for (const c of counters) {
            const expected = !seen.has(c) && (c > greatest || greatest - c < REPLAY_WINDOW_SIZE);
            expect(w.update(c)).toBe(expected);
            if (expected) {
              seen.add(c);
              greatest = Math.max(greatest, c);
            }
          }
        },
      ),
      { numRuns: Math.min(PROPERTY_RUNS, 20_000) },
    );
  });
});
