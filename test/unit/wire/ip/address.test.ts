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

  it('accepts exactly the strings Node accepts as addresses', () => {
    const chars = fc.constantFrom(...'0123456789abcdefABCDEF:.'.split(''));
    fc.assert(
      fc.property(fc.string({ unit: chars, maxLength: 45 }), (s) => {
        expect(parseIp(s) !== undefined).toBe(isIP(s) !== 0);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('parses every valid spelling of an IPv6 address: padding, case, any zero run compressed, dotted tail', () => {
    const spelling = fc.record({
      bytes: ipv6Arb,
      pad: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }),
      upper: fc.boolean(),
      dotted: fc.boolean(),
      compress: fc.nat(),
    });
    fc.assert(
      fc.property(spelling, ({ bytes, pad, upper, dotted, compress }) => {
        const groups: string[] = [];
        for (let i = 0; i < 8; i++) {
          const hex = ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16);
          groups.push(hex.padStart(Math.min(4, hex.length + pad[i]!), '0'));
        }
        let tail: string[] = [];
        if (dotted) {
          groups.splice(6, 2);
          tail = [`${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`];
        }
        // Compress one run of zero groups, chosen among all runs, if there is one.
        const runs: [number, number][] = [];
        for (let i = 0; i < groups.length; i++) {
          if (Number.parseInt(groups[i]!, 16) !== 0) continue;
          let j = i;
          while (j < groups.length && Number.parseInt(groups[j]!, 16) === 0) j++;
          runs.push([i, j]);
          i = j;
        }
        let text = [...groups, ...tail].join(':');
        if (runs.length > 0) {
          const [a, b] = runs[compress % runs.length]!;
          text = `${groups.slice(0, a).join(':')}::${[...groups.slice(b), ...tail].join(':')}`;
        }
        if (upper) text = text.toUpperCase();
        expect(isIP(text)).toBe(6);
        expect(parseIpv6(text)).toEqual(bytes);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });
});
