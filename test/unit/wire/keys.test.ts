import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatKey, parseKey } from '../../../src/wire/keys.js';
import { PROPERTY_RUNS } from '../../support/arbitraries.js';

describe('WireGuard key codec', () => {
  it('reads the keys the portal and wg(8) print', () => {
    const r = parseKey('DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0=');
    expect(r.ok && Buffer.from(r.value).toString('base64')).toBe(
      'DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0=',
    );
  });

  it('round-trips any 32 bytes exactly as Node base64 does', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (k) => {
        const text = formatKey(k);
        expect(text).toBe(Buffer.from(k).toString('base64'));
        expect(parseKey(text)).toEqual({ ok: true, value: k });
      }),
      { numRuns: Math.min(PROPERTY_RUNS, 20_000) },
    );
  });

  it.each([
    ['too short', 'DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI=', 'key.bad-length'],
    ['unpadded', 'DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0', 'key.bad-length'],
    ['url-safe alphabet', 'DNSOs6t_0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0=', 'key.bad-base64'],
    ['non-canonical padding bits', 'DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI1=', 'key.bad-base64'],
    ['not a string', 42, 'key.bad-length'],
  ])('rejects a key that is %s', (_n, text, code) => {
    const r = parseKey(text);
    expect(r.ok ? 'parsed' : r.error.code).toBe(code);
  });
});
