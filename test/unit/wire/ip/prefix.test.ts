import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIp } from '../../../../src/wire/ip/address.js';
import { formatPrefix, parsePrefix, prefixEquals } from '../../../../src/wire/ip/prefix.js';
import { ipv4Arb, ipv6Arb, PROPERTY_RUNS } from '../../../support/arbitraries.js';

describe('route prefixes', () => {
  it('parses the tunnel ranges and prints them back', () => {
    expect(parsePrefix('100.64.0.0/11')).toEqual({
      ok: true,
      value: { address: parseIp('100.64.0.0'), prefixLength: 11 },
    });
    const v6 = parsePrefix('fd00:2021:1111::/107');
    expect(v6.ok && formatPrefix(v6.value)).toBe('fd00:2021:1111::/107');
    expect(parsePrefix('0.0.0.0/0')).toMatchObject({ ok: true, value: { prefixLength: 0 } });
    expect(parsePrefix('::1/128')).toMatchObject({ ok: true, value: { prefixLength: 128 } });
  });

  it.each([
    ['100.64.0.0', 'prefix.bad-syntax'],
    ['100.64.0.0/11/2', 'prefix.bad-syntax'],
    ['100.64.0/11', 'prefix.bad-address'],
    ['100.64.0.0/33', 'prefix.bad-length'],
    ['100.64.0.0/', 'prefix.bad-length'],
    ['100.64.0.0/+1', 'prefix.bad-length'],
    ['::/129', 'prefix.bad-length'],
    ['100.64.0.1/11', 'prefix.host-bits'],
    ['fd00:2021:1111::1/107', 'prefix.host-bits'],
  ])('rejects %j with %s', (text, code) => {
    expect(parsePrefix(text)).toMatchObject({ ok: false, error: { code } });
  });

  it('names the network a prefix with host bits was probably meant to be', () => {
    expect(parsePrefix('100.64.0.1/11')).toMatchObject({
      error: { message: expect.stringContaining('100.64.0.0/11') },
    });
  });

  it('round-trips every network prefix, and compares by family, length and bytes', () => {
    fc.assert(
      fc.property(fc.oneof(ipv4Arb, ipv6Arb), fc.integer({ min: 0, max: 128 }), (address, bits) => {
        const prefixLength = bits % (address.length * 8 + 1);
        const network = address.slice();
        for (let bit = prefixLength; bit < network.length * 8; bit++)
          network[bit >> 3]! &= ~(0x80 >> (bit & 7));
        const p = { address: network, prefixLength };
        const parsed = parsePrefix(formatPrefix(p));
        expect(parsed).toEqual({ ok: true, value: p });
        expect(parsed.ok && prefixEquals(parsed.value, p)).toBe(true);
        expect(prefixEquals(p, { address: network, prefixLength: (prefixLength + 1) % 129 })).toBe(false);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });
});
