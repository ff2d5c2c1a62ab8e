import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adjust, checksum, fold, rangeDelta, sumWords, wordDelta } from '../../../../src/wire/ip/checksum.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';
import { checksumOf, wordsOf } from '../../../support/checksum-oracle.js';

describe('internet checksum', () => {
  it('matches the RFC 1071 §3 worked example', () => {
    const bytes = new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(fold(sumWords(bytes, 0, bytes.length))).toBe(0xddf2);
    expect(checksum(bytes, 0, bytes.length)).toBe(0x220d);
  });

  it('pads an odd trailing byte with zero', () => {
    expect(checksum(new Uint8Array([0x12, 0x34, 0x56]), 0, 3)).toBe(checksumOf([0x1234, 0x5600]));
  });

  it('agrees with the independent oracle on any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), (b) => {
        expect(checksum(b, 0, b.length)).toBe(checksumOf(wordsOf(b, 0, b.length)));
      }),
      { numRuns: Math.min(PROPERTY_RUNS, 20_000) },
    );
  });

  it('updates incrementally to a checksum that verifies like a full recompute (RFC 1624)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 2, maxLength: 400 }).filter((b) => b.length % 2 === 0),
        fc.nat(),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 1, max: 8 }),
        (data, at, repl, words) => {
          const buf = Uint8Array.from(data);
          const field = checksum(buf, 0, buf.length);
          const off = (at % (buf.length / 2)) * 2;
          const len = Math.min(words * 2, buf.length - off);
          const delta = rangeDelta(buf, off, repl, 0, len);
          buf.set(repl.subarray(0, len), off);
          const updated = adjust(field, delta);
          const full = checksum(buf, 0, buf.length);
          // 0x0000 and 0xffff are both one's-complement zero; anything else must match exactly.
          const zeros = new Set([0, 0xffff]);
          expect(updated === full || (zeros.has(updated) && zeros.has(full))).toBe(true);
          expect(fold(sumWords(buf, 0, buf.length) + updated)).toBe(0xffff);
        },
      ),
      { numRuns: Math.min(PROPERTY_RUNS, 20_000) },
    );
  });

  it('gives all ones, never zero, when the covered data is all zeros (RFC 1624 §3)', () => {
    const data = new Uint8Array(8);
    const field = checksum(data, 0, 8);
    expect(field).toBe(0xffff);
    expect(adjust(field, wordDelta(0, 0))).toBe(0xffff);
    expect(fold(sumWords(data, 0, 8) + adjust(field, wordDelta(0, 0)))).toBe(0xffff);
  });

  it('computes the word delta used for single-field updates', () => {
    expect(adjust(checksumOf([0x1111]), wordDelta(0x1111, 0x2222))).toBe(checksumOf([0x2222]));
  });
});
