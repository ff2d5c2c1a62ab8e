import { describe, expect, it } from 'vitest';
import { ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT } from '../../../../src/wire/ip/constants.js';
import type { IpErrorCode } from '../../../../src/wire/ip/errors.js';
import { IpPacket, recomputeChecksums, TCP_FLAG_RST } from '../../../../src/wire/ip/packet.js';
import { allChecksumsValid, checkChecksums, checksumOf, wordsOf } from '../../../support/checksum-oracle.js';
import { buildPacket, echoRest, v4, v6 } from '../../../support/packet-builder.js';

const A4 = v4(100, 64, 0, 5);
const B4 = v4(172, 20, 1, 9);
const A6 = v6(0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, 5);
const B6 = v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99);

function parse(bytes: Uint8Array): IpPacket {
  const r = IpPacket.parse(bytes);
  if (!r.ok) throw new Error(`expected a valid packet, got ${r.error.code}`);
  return r.value;
}

function rejects(bytes: Uint8Array): IpErrorCode {
  const r = IpPacket.parse(bytes);
  if (r.ok) throw new Error('expected a rejection');
  return r.error.code;
}

/** Rewrites the IPv4 header checksum after a test edits header bytes. */
function fixV4Header(p: Uint8Array): Uint8Array {
  const ihl = (p[0]! & 15) * 4;
  p[10] = 0;
  p[11] = 0;
  const c = checksumOf(wordsOf(p, 0, ihl));
  p[10] = c >> 8;
  p[11] = c & 0xff;
  return p;
}

const udp4 = () =>
  buildPacket({
    src: A4,
    dst: B4,
    l4: { kind: 'udp', srcPort: 5000, dstPort: 53, payload: new Uint8Array(12) },
  });
const udp6 = () =>
  buildPacket({
    src: A6,
    dst: B6,
    l4: { kind: 'udp', srcPort: 5000, dstPort: 53, payload: new Uint8Array(12) },
  });
const tcp4 = (flags = 0x02) =>
  buildPacket({
    src: A4,
    dst: B4,
    l4: { kind: 'tcp', srcPort: 40000, dstPort: 443, flags, payload: new Uint8Array(5) },
  });
const tcp6 = () => buildPacket({ src: A6, dst: B6, l4: { kind: 'tcp', srcPort: 40000, dstPort: 443 } });
const ping4 = (id = 0x1234) =>
  buildPacket({
    src: A4,
    dst: B4,
    l4: { kind: 'icmp', type: 8, code: 0, rest: echoRest(id), payload: new Uint8Array(16) },
  });
const ping6 = (id = 0x1234) =>
  buildPacket({
    src: A6,
    dst: B6,
    l4: { kind: 'icmp', type: 128, code: 0, rest: echoRest(id), payload: new Uint8Array(16) },
  });

describe('IpPacket parsing', () => {
  it('reads the fields of an IPv4 UDP packet', () => {
    const p = parse(udp4());
    expect(p.version).toBe(4);
    expect(p.length).toBe(20 + 8 + 12);
    expect([...p.source()]).toEqual([...A4]);
    expect([...p.destination()]).toEqual([...B4]);
    expect(p.protocol).toBe(17);
    expect(p.srcPort).toBe(5000);
    expect(p.dstPort).toBe(53);
    expect(p.icmpType).toBeUndefined();
    expect(p.echoId).toBeUndefined();
    expect(p.tcpFlags).toBeUndefined();
    expect(p.ttl).toBe(64);
    expect(p.isP2pControl).toBe(false);
  });

  it('reads the fields of an IPv6 TCP packet', () => {
    const p = parse(tcp6());
    expect(p.version).toBe(6);
    expect(p.addressLength).toBe(16);
    expect([...p.source()]).toEqual([...A6]);
    expect(p.srcPort).toBe(40000);
    expect(p.dstPort).toBe(443);
    expect(p.tcpFlags).toBe(0x02);
    expect(p.l4Offset).toBe(40);
  });

  it('reads echo identifiers only from echo request/reply with code 0', () => {
    expect(parse(ping4(0xbeef)).echoId).toBe(0xbeef);
    expect(parse(ping6(0xbeef)).echoId).toBe(0xbeef);
    const code1 = buildPacket({
      src: A4,
      dst: B4,
      l4: { kind: 'icmp', type: 8, code: 1, rest: echoRest(7) },
    });
    expect(parse(code1).echoId).toBeUndefined();
    const unreachable = buildPacket({ src: A4, dst: B4, l4: { kind: 'icmp', type: 3, code: 1 } });
    expect(parse(unreachable).echoId).toBeUndefined();
    expect(parse(unreachable).isIcmpError).toBe(true);
    expect(parse(ping4()).isIcmpError).toBe(false);
  });

  it('classifies ICMP errors of both families', () => {
    for (const t of [3, 4, 5, 11, 12]) {
      expect(
        parse(buildPacket({ src: A4, dst: B4, l4: { kind: 'icmp', type: t, code: 0 } })).isIcmpError,
      ).toBe(true);
    }
    for (const t of [1, 2, 3, 4, 127]) {
      expect(
        parse(buildPacket({ src: A6, dst: B6, l4: { kind: 'icmp', type: t, code: 0 } })).isIcmpError,
      ).toBe(true);
    }
    expect(
      parse(buildPacket({ src: A6, dst: B6, l4: { kind: 'icmp', type: 135, code: 0 } })).isIcmpError,
    ).toBe(false);
  });

  it('trims bytes past the IP length, such as WireGuard padding', () => {
    const raw = udp4();
    const padded = new Uint8Array(48);
    padded.set(raw);
    padded.fill(0xee, raw.length);
    const p = parse(padded);
    expect(p.length).toBe(raw.length);
    expect(p.bytes).toEqual(raw);
    expect(p.l4Offset + p.l4Length).toBe(raw.length);
  });

  it('parses a packet at an offset inside a larger buffer without copying', () => {
    const raw = tcp4();
    const buf = new Uint8Array(16 + raw.length + 16);
    buf.set(raw, 16);
    const p = new IpPacket();
    expect(p.load(buf, 16, raw.length + 16)).toBeUndefined();
    expect(p.buf).toBe(buf);
    expect(p.off).toBe(16);
    expect(p.srcPort).toBe(40000);
    expect(p.setDstPort(8443)).toBeUndefined();
    expect(allChecksumsValid(buf.subarray(16, 16 + raw.length))).toBe(true);
  });

  it('skips IPv4 options', () => {
    const raw = buildPacket({
      src: A4,
      dst: B4,
      ipv4Options: new Uint8Array([1, 1, 1, 0]),
      l4: { kind: 'udp', srcPort: 1, dstPort: 2 },
    });
    const p = parse(raw);
    expect(p.l4Offset).toBe(24);
    expect(p.srcPort).toBe(1);
  });

  it('walks IPv6 extension headers and accepts an atomic fragment', () => {
    const raw = buildPacket({
      src: A6,
      dst: B6,
      ipv6Ext: [
        { type: 0, body: new Uint8Array(6) },
        { type: 60, body: new Uint8Array(14) },
        { type: 44, body: new Uint8Array([0, 0, 0, 0, 0, 1]) },
      ],
      l4: { kind: 'udp', srcPort: 7, dstPort: 9 },
    });
    const p = parse(raw);
    expect(p.protocol).toBe(17);
    expect(p.l4Offset).toBe(40 + 8 + 16 + 8);
    expect(p.dstPort).toBe(9);
  });

  it('skips an IPv4 authentication header to the transport', () => {
    const udp = buildPacket({ src: A4, dst: B4, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } });
    const ah = new Uint8Array(12); // next header, payload len (12/4 - 2 = 1), reserved, SPI, seq
    ah[0] = 17;
    ah[1] = 1;
    const raw = new Uint8Array(udp.length + ah.length);
    raw.set(udp.subarray(0, 20));
    raw.set(ah, 20);
    raw.set(udp.subarray(20), 32);
    raw[9] = 51;
    raw[2] = raw.length >> 8;
    raw[3] = raw.length & 0xff;
    const p = parse(fixV4Header(raw));
    expect(p.protocol).toBe(17);
    expect(p.l4Offset).toBe(32);
  });

  it('recognises p2p control packets', () => {
    const raw = new Uint8Array(48);
    raw[0] = 0x60;
    raw[5] = 8;
    raw[6] = 255;
    expect(parse(raw).isP2pControl).toBe(true);
    raw[23] = 1; // source ::1
    expect(parse(raw).isP2pControl).toBe(false);
  });

  it('reads ECN from IPv4 TOS and the IPv6 traffic class', () => {
    expect(
      parse(
        buildPacket({ src: A4, dst: B4, tos: 0xb8 | ECN_ECT0, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }),
      ).ecn,
    ).toBe(ECN_ECT0);
    expect(
      parse(
        buildPacket({ src: A6, dst: B6, tos: 0xb8 | ECN_CE, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }),
      ).ecn,
    ).toBe(ECN_CE);
  });
});

describe('IpPacket rejects malformed packets with a typed error', () => {
  const cases: [string, () => Uint8Array, IpErrorCode][] = [
    ['an empty buffer', () => new Uint8Array(0), 'ip.empty'],
    ['version 5', () => new Uint8Array([0x50, ...new Uint8Array(39)]), 'ip.bad-version'],
    ['a buffer above 1316 bytes', () => new Uint8Array(1317).fill(0x45, 0, 1), 'ip.too-large'],
    ['fewer than 20 bytes of IPv4', () => udp4().subarray(0, 19), 'ipv4.truncated'],
    [
      'IHL below 5',
      () => {
        const p = udp4();
        p[0] = 0x44;
        return p;
      },
      'ipv4.bad-ihl',
    ],
    [
      'IHL beyond the buffer',
      () => {
        const p = udp4().subarray(0, 24);
        p[0] = 0x47;
        return p;
      },
      'ipv4.bad-ihl',
    ],
    [
      'total length smaller than the header',
      () => {
        const p = udp4();
        p[2] = 0;
        p[3] = 16;
        return fixV4Header(p);
      },
      'ipv4.bad-total-length',
    ],
    ['total length beyond the bytes', () => udp4().subarray(0, 30), 'ipv4.bad-total-length'],
    [
      'an IPv4 packet over 1280 bytes',
      () =>
        buildPacket({
          src: A4,
          dst: B4,
          l4: { kind: 'udp', srcPort: 1, dstPort: 2, payload: new Uint8Array(1253) },
        }),
      'ip.too-large',
    ],
    [
      'a first IPv4 fragment (MF)',
      () => buildPacket({ src: A4, dst: B4, ipv4Flags: 0x2000, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }),
      'ip.fragment',
    ],
    [
      'a later IPv4 fragment (offset)',
      () => buildPacket({ src: A4, dst: B4, ipv4Flags: 0x0010, l4: { kind: 'raw', protocol: 17 } }),
      'ip.fragment',
    ],
    [
      'a wrong IPv4 header checksum',
      () => {
        const p = udp4();
        p[11] = p[11]! ^ 1;
        return p;
      },
      'ipv4.bad-header-checksum',
    ],
    ['fewer than 40 bytes of IPv6', () => udp6().subarray(0, 39), 'ipv6.truncated'],
    ['an IPv6 payload length beyond the bytes', () => udp6().subarray(0, 50), 'ipv6.truncated'],
    [
      'an IPv6 packet over 1280 bytes',
      () =>
        buildPacket({
          src: A6,
          dst: B6,
          l4: { kind: 'udp', srcPort: 1, dstPort: 2, payload: new Uint8Array(1233) },
        }),
      'ip.too-large',
    ],
    [
      'hop-by-hop options after another header',
      () =>
        buildPacket({
          src: A6,
          dst: B6,
          ipv6Ext: [
            { type: 60, body: new Uint8Array(6) },
            { type: 0, body: new Uint8Array(6) },
          ],
          l4: { kind: 'udp', srcPort: 1, dstPort: 2 },
        }),
      'ipv6.misplaced-hop-by-hop',
    ],
    [
      'an extension header running past the packet',
      () => {
        const p = buildPacket({
          src: A6,
          dst: B6,
          ipv6Ext: [{ type: 60, body: new Uint8Array(6) }],
          l4: { kind: 'raw', protocol: 59 },
        });
        p[41] = 5; // claims 48 bytes
        return p;
      },
      'ipv6.bad-extension-header',
    ],
    [
      'an IPv6 fragment',
      () =>
        buildPacket({
          src: A6,
          dst: B6,
          ipv6Ext: [{ type: 44, body: new Uint8Array([0, 1, 0, 0, 0, 1]) }],
          l4: { kind: 'raw', protocol: 17 },
        }),
      'ip.fragment',
    ],
    [
      'an IPv6 first fragment (M flag)',
      () =>
        buildPacket({
          src: A6,
          dst: B6,
          ipv6Ext: [{ type: 44, body: new Uint8Array([0, 1, 0, 0, 0, 1]).map((b, i) => (i === 1 ? 1 : b)) }],
          l4: { kind: 'udp', srcPort: 1, dstPort: 2 },
        }),
      'ip.fragment',
    ],
    [
      'UDP shorter than its header',
      () => buildPacket({ src: A4, dst: B4, l4: { kind: 'raw', protocol: 17, payload: new Uint8Array(7) } }),
      'udp.truncated',
    ],
    [
      'a UDP length longer than the payload',
      () => {
        const p = udp4();
        p[25] = p[25]! + 1;
        return p;
      },
      'udp.bad-length',
    ],
    [
      'a UDP length shorter than the payload',
      () => {
        const p = udp4();
        p[25] = p[25]! - 1;
        return p;
      },
      'udp.bad-length',
    ],
    [
      'a UDP length of zero',
      () => {
        const p = udp6();
        p[44] = 0;
        p[45] = 0;
        return p;
      },
      'udp.bad-length',
    ],
    [
      'TCP shorter than its header',
      () => buildPacket({ src: A4, dst: B4, l4: { kind: 'raw', protocol: 6, payload: new Uint8Array(19) } }),
      'tcp.truncated',
    ],
    [
      'a TCP data offset below 5',
      () => {
        const p = tcp4();
        p[32] = 0x40;
        return p;
      },
      'tcp.bad-data-offset',
    ],
    [
      'a TCP data offset beyond the segment',
      () => {
        const p = tcp4();
        p[32] = 0xf0;
        return p;
      },
      'tcp.bad-data-offset',
    ],
    [
      'ICMP shorter than 8 bytes',
      () => buildPacket({ src: A4, dst: B4, l4: { kind: 'raw', protocol: 1, payload: new Uint8Array(7) } }),
      'icmp.truncated',
    ],
    [
      'ICMPv6 shorter than 8 bytes',
      () => buildPacket({ src: A6, dst: B6, l4: { kind: 'raw', protocol: 58, payload: new Uint8Array(4) } }),
      'icmp.truncated',
    ],
    [
      'ICMPv4 inside IPv6',
      () => buildPacket({ src: A6, dst: B6, l4: { kind: 'raw', protocol: 1, payload: new Uint8Array(8) } }),
      'icmp.wrong-family',
    ],
    [
      'ICMPv6 inside IPv4',
      () => buildPacket({ src: A4, dst: B4, l4: { kind: 'raw', protocol: 58, payload: new Uint8Array(8) } }),
      'icmp.wrong-family',
    ],
    [
      'an ICMP timestamp of the wrong size',
      () =>
        buildPacket({
          src: A4,
          dst: B4,
          l4: { kind: 'icmp', type: 13, code: 0, payload: new Uint8Array(8) },
        }),
      'icmp.bad-timestamp-length',
    ],
    [
      'an IPv4 authentication header running past the packet',
      () => {
        const p = buildPacket({
          src: A4,
          dst: B4,
          l4: { kind: 'raw', protocol: 51, payload: new Uint8Array([17, 9, 0, 0]) },
        });
        return p;
      },
      'ah.truncated',
    ],
  ];
  it.each(cases)('rejects %s', (_name, make, code) => {
    expect(rejects(make())).toBe(code);
  });

  it('accepts an ICMP timestamp of exactly 20 bytes', () => {
    const p = buildPacket({
      src: A4,
      dst: B4,
      l4: { kind: 'icmp', type: 13, code: 0, payload: new Uint8Array(12) },
    });
    expect(parse(p).icmpType).toBe(13);
  });

  it('leaves the view empty after a rejection', () => {
    const p = new IpPacket();
    expect(p.load(udp4())).toBeUndefined();
    expect(p.load(new Uint8Array([0x45]))?.code).toBe('ipv4.truncated');
    expect(p.length).toBe(0);
  });
});

describe('IpPacket mutators keep every checksum valid', () => {
  const all: [string, () => Uint8Array][] = [
    ['UDP/IPv4', udp4],
    ['UDP/IPv6', udp6],
    ['TCP/IPv4', tcp4],
    ['TCP/IPv6', tcp6],
    ['ICMP echo', () => ping4()],
    ['ICMPv6 echo', () => ping6()],
  ];

  it.each(all)('rewrites addresses of %s', (_n, make) => {
    const raw = make();
    const p = parse(raw);
    const dst = p.version === 4 ? v4(10, 1, 2, 3) : v6(0xfd00, 0, 0, 0, 0, 0, 0, 0x77);
    expect(p.setDestination(dst)).toBeUndefined();
    expect(p.setSource(p.version === 4 ? v4(1, 1, 1, 1) : v6(1))).toBeUndefined();
    expect([...p.destination()]).toEqual([...dst]);
    expect(allChecksumsValid(raw)).toBe(true);
  });

  it('rewrites TCP and UDP ports', () => {
    for (const make of [udp4, udp6, tcp4, tcp6]) {
      const raw = make();
      const p = parse(raw);
      expect(p.setSrcPort(1)).toBeUndefined();
      expect(p.setDstPort(65535)).toBeUndefined();
      expect([p.srcPort, p.dstPort]).toEqual([1, 65535]);
      expect(allChecksumsValid(raw)).toBe(true);
    }
  });

  it('translates destination and source as the DNS-resource NAT does', () => {
    const raw = tcp4();
    const p = parse(raw);
    expect(p.translateDestination(v4(198, 51, 100, 7), 40001)).toBeUndefined();
    expect([p.srcPort, p.dstPort]).toEqual([40001, 443]);
    expect(p.translateSource(v4(100, 96, 0, 1), 5555)).toBeUndefined();
    expect([p.srcPort, p.dstPort]).toEqual([40001, 5555]);
    expect(allChecksumsValid(raw)).toBe(true);

    const echo = ping6(9);
    const q = parse(echo);
    expect(q.translateDestination(v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 10)).toBeUndefined();
    expect(q.echoId).toBe(10);
    expect(allChecksumsValid(echo)).toBe(true);
  });

  it('refuses a wrong-family address, ports on ICMP, and echo ids on non-echo packets', () => {
    const p = parse(udp4());
    expect(p.setSource(v6(1))?.code).toBe('ip.family-mismatch');
    expect(p.translateDestination(v6(1), 1)?.code).toBe('ip.family-mismatch');
    expect(p.setEchoId(3)?.code).toBe('ip.not-echo');
    const e = parse(ping4());
    expect(e.setSrcPort(1)?.code).toBe('ip.no-ports');
    const raw = parse(
      buildPacket({ src: A4, dst: B4, l4: { kind: 'raw', protocol: 47, payload: new Uint8Array(4) } }),
    );
    expect(raw.translateSource(A4, 1)?.code).toBe('ip.no-ports');
    expect(raw.hasL4Id).toBe(false);
  });

  it('keeps an IPv4 UDP checksum of zero (no checksum) at zero', () => {
    const raw = buildPacket({
      src: A4,
      dst: B4,
      l4: { kind: 'udp', srcPort: 1, dstPort: 2, zeroChecksum: true },
    });
    const p = parse(raw);
    p.translateDestination(v4(9, 9, 9, 9), 7);
    expect(raw[26]).toBe(0);
    expect(raw[27]).toBe(0);
    expect(checkChecksums(raw)).toMatchObject({ ipv4Header: true, l4: 'unchecked-udp' });
  });

  it('never writes a UDP checksum of zero', () => {
    // Find a port change that makes the checksum come out as 0x0000 and check it is sent as 0xffff.
    const raw = buildPacket({ src: A4, dst: B4, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } });
    const cur = (raw[26]! << 8) | raw[27]!;
    const p = parse(raw);
    // Setting dst port from 2 to 2 + cur' such that the sum becomes 0xffff: adding `cur` to the
    // port word makes the one's-complement sum all ones.
    const target = (2 + cur) % 0xffff;
    p.setDstPort(target);
    expect(allChecksumsValid(raw)).toBe(true);
    expect((raw[26]! << 8) | raw[27]!).toBe(0xffff);
  });

  it('merges the outer ECN mark only from CE into ECT packets', () => {
    for (const inner of [ECN_NOT_ECT, ECN_ECT1, ECN_ECT0, ECN_CE]) {
      for (const outer of [ECN_NOT_ECT, ECN_ECT1, ECN_ECT0, ECN_CE]) {
        for (const make of [
          (tos: number) =>
            buildPacket({ src: A4, dst: B4, tos, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }),
          (tos: number) =>
            buildPacket({ src: A6, dst: B6, tos, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }),
        ]) {
          const raw = make(0x28 | inner);
          const p = parse(raw);
          const changed = p.applyOuterEcn(outer);
          const expected = outer === ECN_CE && (inner === ECN_ECT0 || inner === ECN_ECT1) ? ECN_CE : inner;
          expect(p.ecn).toBe(expected);
          expect(changed).toBe(expected !== inner);
          expect(allChecksumsValid(raw)).toBe(true);
          // DSCP bits are untouched.
          expect(p.version === 4 ? raw[1]! >> 2 : ((raw[0]! & 0x0f) << 2) | (raw[1]! >> 6)).toBe(0x28 >> 2);
        }
      }
    }
  });

  it('gives the same bytes by incremental update and by full recompute', () => {
    for (const make of [udp4, udp6, tcp4, tcp6, () => ping4(), () => ping6()]) {
      const a = make();
      const b = make();
      const pa = parse(a);
      const pb = parse(b);
      const dst = pa.version === 4 ? v4(203, 0, 113, 1) : v6(0x2001, 0xdb8, 0xff);
      pa.translateDestination(dst, 31337);
      b.set(dst, pb.dstOffset);
      if (pb.isEcho) b.set([31337 >> 8, 31337 & 0xff], pb.l4Offset + 4);
      else b.set([31337 >> 8, 31337 & 0xff], pb.l4Offset);
      recomputeChecksums(pb);
      expect(allChecksumsValid(a)).toBe(true);
      expect(allChecksumsValid(b)).toBe(true);
      // Checksum fields may differ only as 0x0000 vs 0xffff (both are one's-complement zero).
      const norm = (x: Uint8Array, p: IpPacket) => {
        const out = Array.from(x);
        for (const at of [p.version === 4 ? 10 : -1, p.l4ChecksumOffset()]) {
          if (at >= 0 && out[at] === 0xff && out[at + 1] === 0xff && !p.isUdp) out[at] = out[at + 1] = 0;
        }
        return out;
      };
      expect(norm(a, pa)).toEqual(norm(b, pb));
    }
  });

  it('detects TCP RST through the flags accessor', () => {
    expect(parse(tcp4(TCP_FLAG_RST | 0x10)).tcpFlags! & TCP_FLAG_RST).toBe(TCP_FLAG_RST);
  });
});
