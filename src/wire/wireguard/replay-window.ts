import { REJECT_AFTER_MESSAGES, REPLAY_WINDOW_BITS } from './constants.js';

const BLOCK_BITS = 32;
const RING_BLOCKS = REPLAY_WINDOW_BITS / BLOCK_BITS;
/** One block of the ring is slack, so the usable window is one block short (RFC 6479 §2). */
export const REPLAY_WINDOW_SIZE = REPLAY_WINDOW_BITS - BLOCK_BITS;
/** Counters are JavaScript numbers: exact up to 2^53, which no peer can reach. */
const MAX_COUNTER = Math.min(REJECT_AFTER_MESSAGES, Number.MAX_SAFE_INTEGER);

/**
 * Sliding-window replay protection for transport counters (WireGuard paper §5.4.6, RFC 6479).
 *
 * `check` is side-effect free and runs before decryption to reject cheaply; `update` records a
 * counter and must only be called after the packet authenticated, so forged packets cannot
 * advance or poison the window.
 */
export class ReplayWindow {
  private readonly ring = new Uint32Array(RING_BLOCKS);
  private last = -1;

  check(counter: number): boolean {
    if (!(counter >= 0 && counter < MAX_COUNTER)) return false;
    if (counter > this.last) return true;
    if (this.last - counter >= REPLAY_WINDOW_SIZE) return false;
    const block = Math.floor(counter / BLOCK_BITS) % RING_BLOCKS;
    return (this.ring[block]! & (1 << (counter % BLOCK_BITS))) === 0;
  }

  update(counter: number): boolean {
    if (!this.check(counter)) return false;
    if (counter > this.last) {
      const cur = Math.floor(counter / BLOCK_BITS);
      const prev = Math.floor(this.last / BLOCK_BITS);
      const clear = Math.min(cur - prev, RING_BLOCKS);
      for (let i = 1; i <= clear; i++) this.ring[(prev + i) % RING_BLOCKS] = 0;
      this.last = counter;
    }
    const block = Math.floor(counter / BLOCK_BITS) % RING_BLOCKS;
    this.ring[block] = this.ring[block]! | (1 << (counter % BLOCK_BITS));
    return true;
  }

  /** The greatest counter accepted so far (-1 before the first). */
  get greatest(): number {
    return this.last;
  }
}
