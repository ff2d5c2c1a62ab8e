import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIp, parseIp, parseIpv4, parseIpv6 } from '../../../../src/wire/ip/address.js';
import { ipv4Arb, ipv6Arb, PROPERTY_RUNS } from '../../../support/arbitraries.js';

/** The WHATWG URL parser canonicalises IPv6 per RFC 5952: an independent formatter. */
function canonicalV6(bytes: Uint8Array): string {
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

describe('IP address text', () => {
  it('parses and formats the addresses the portal sends', () => {
    expect(formatIp(parseIp('100.64.0.5')!)).toBe('100.64.0.5');
    expect(formatIp(parseIp('fd00:2021:1111::13:7a2e')!)).toBe('fd00:2021:1111::13:7a2e');
    expect(formatIp(parseIp('FD00:2021:1111:8000:0:0:0:8')!)).toBe('fd00:2021:1111:8000::8');
    expect(formatIp(parseIp('::')!)).toBe('::');
    expect(formatIp(parseIp('::1')!)).toBe('::1');
    expect(formatIp(parseIp('1::')!)).toBe('1::');
    expect(formatIp(parseIp('::ffff:192.0.2.1')!)).toBe('::ffff:192.0.2.1');
    expect([...parseIpv6('64:ff9b::192.0.2.33')!.subarray(12)]).toEqual([192, 0, 2, 33]);
    // RFC 5952 §4.2.2: a single zero group is not compressed; §4.2.3: the first longest run is.
    expect(formatIp(parseIp('2001:db8:0:1:1:1:1:1')!)).toBe('2001:db8:0:1:1:1:1:1');
    expect(formatIp(parseIp('2001:0:0:1:0:0:0:1')!)).toBe('2001:0:0:1::1');
    expect(formatIp(parseIp('2001:db8:0:0:1:0:0:1')!)).toBe('2001:db8::1:0:0:1');
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.1.1.1',
    '01.2.3.4',
    '1.2.3.-4',
    ' 1.2.3.4',
    '1:2:3:4:5:6:7:8:9',
    '1::2::3',
    ':::',
    '12345::',
    'g::1',
    '1:2:3:4:5:6:7::8:9',
    '::1.2.3.4.5',
    'fe80::1%eth0',
    '1:2:3:4:5:6:7',
  ])('rejects %j', (text) => {
    expect(parseIp(text)).toBeUndefined();
  });

  it('round-trips every IPv4 and IPv6 address and formats as RFC 5952 does', () => {
    fc.assert(
      fc.property(ipv4Arb, (a) => {
        const t = formatIp(a);
        expect(isIP(t)).toBe(4);
        expect(parseIpv4(t)).toEqual(a);
      }),
      { numRuns: PROPERTY_RUNS },
    );
    fc.assert(
      fc.property(ipv6Arb, (a) => {
        const t = formatIp(a);
        expect(isIP(t)).toBe(6);
        expect(parseIpv6(t)).toEqual(a);
        expect(t).toBe(canonicalV6(a));
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('accepts exactly the strings Node accepts as addresses (zone ids aside)', () => {
    const chars = fc.constantFrom(...'0123456789abcdefABCDEF:.'.split(''));
    fc.assert(
      fc.property(fc.string({ unit: chars, maxLength: 45 }), (s) => {
        expect(parseIp(s) !== undefined).toBe(isIP(s) !== 0 && !/(^|[:.])0\d/.test(s.split(':').pop() ?? ''));
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });
});
