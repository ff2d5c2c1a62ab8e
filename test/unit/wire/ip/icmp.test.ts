import { describe, expect, it } from 'vitest';
import {
  buildUnreachable,
  emptyIcmpErrorInfo,
  MAX_ICMP_ERROR_BYTES,
  parseIcmpError,
  readIcmpError,
} from '../../../../src/wire/ip/icmp.js';
import { IpPacket } from '../../../../src/wire/ip/packet.js';
import { allChecksumsValid } from '../../../support/checksum-oracle.js';
import { buildPacket, echoRest, v4, v6 } from '../../../support/packet-builder.js';

const CLIENT4 = v4(100, 64, 0, 5);
const RES4 = v4(172, 20, 1, 9);
const CLIENT6 = v6(0xfd00, 0x2021, 0x1111, 0, 0, 0, 9, 0x1c0d);
const RES6 = v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99);

function parse(bytes: Uint8Array): IpPacket {
  const r = IpPacket.parse(bytes);
  if (!r.ok) throw new Error(r.error.code);
  return r.value;
}

function build(original: Uint8Array, reason: 'prohibited' | 'unreachable'): Uint8Array {
  const out = new Uint8Array(MAX_ICMP_ERROR_BYTES);
  const n = buildUnreachable(parse(original), reason, out);
  if (typeof n !== 'number') throw new Error(n.code);
  return out.subarray(0, n);
}

describe('ICMP destination unreachable builder', () => {
  const tcp4 = buildPacket({
    src: CLIENT4,
    dst: RES4,
    ipv4Options: new Uint8Array([1, 1, 1, 1]),
    l4: { kind: 'tcp', srcPort: 40000, dstPort: 22, payload: new Uint8Array(100) },
  });

  it('answers a prohibited IPv4 packet with type 3 code 13, TTL 20, id 0, DF, header + 8 bytes quoted', () => {
    const reply = build(tcp4, 'prohibited');
    const p = parse(reply);
    expect([p.icmpType, p.icmpCode]).toEqual([3, 13]);
    expect(p.ttl).toBe(20);
    expect([reply[4], reply[5]]).toEqual([0, 0]);
    expect([reply[6], reply[7]]).toEqual([0x40, 0]);
    expect([...p.source()]).toEqual([...RES4]);
    expect([...p.destination()]).toEqual([...CLIENT4]);
    expect(reply.length).toBe(20 + 8 + 24 + 8);
    expect(reply.subarray(28)).toEqual(tcp4.subarray(0, 32));
    expect(allChecksumsValid(reply)).toBe(true);
  });

  it('answers an unreachable IPv4 proxy IP with type 3 code 0', () => {
    const p = parse(build(tcp4, 'unreachable'));
    expect([p.icmpType, p.icmpCode]).toEqual([3, 0]);
  });

  it('answers IPv6 with type 1 code 1 (prohibited) or code 3 (address unreachable)', () => {
    const udp6 = buildPacket({
      src: CLIENT6,
      dst: RES6,
      l4: { kind: 'udp', srcPort: 5353, dstPort: 53, payload: new Uint8Array(30) },
    });
    const prohibited = build(udp6, 'prohibited');
    const p = parse(prohibited);
    expect([p.icmpType, p.icmpCode, p.ttl]).toEqual([1, 1, 20]);
    expect([...p.source()]).toEqual([...RES6]);
    expect([...p.destination()]).toEqual([...CLIENT6]);
    expect(prohibited.subarray(48)).toEqual(udp6);
    expect(allChecksumsValid(prohibited)).toBe(true);
    expect(parse(build(udp6, 'unreachable')).icmpCode).toBe(3);
  });

  it('quotes a full-size IPv6 packet only up to the 1280-byte minimum MTU', () => {
    const big = buildPacket({
      src: CLIENT6,
      dst: RES6,
      l4: { kind: 'udp', srcPort: 1, dstPort: 2, payload: new Uint8Array(1232) },
    });
    expect(big.length).toBe(1280);
    const reply = build(big, 'prohibited');
    expect(reply.length).toBe(1280);
    expect(reply.subarray(48)).toEqual(big.subarray(0, 1232));
    expect(allChecksumsValid(reply)).toBe(true);
  });

  it('quotes a short IPv4 packet whole', () => {
    const short = buildPacket({
      src: CLIENT4,
      dst: RES4,
      l4: { kind: 'raw', protocol: 47, payload: new Uint8Array(3) },
    });
    const reply = build(short, 'prohibited');
    expect(reply.subarray(28)).toEqual(short);
  });

  it('writes at an offset into a caller buffer (headroom for the WireGuard header)', () => {
    const out = new Uint8Array(16 + MAX_ICMP_ERROR_BYTES);
    const n = buildUnreachable(parse(tcp4), 'prohibited', out, 16);
    expect(n).toBe(60);
    expect(out.subarray(0, 16).every((b) => b === 0)).toBe(true);
    expect(allChecksumsValid(out.subarray(16, 16 + (n as number)))).toBe(true);
  });

  it.each([
    [
      'an ICMPv4 error',
      buildPacket({ src: CLIENT4, dst: RES4, l4: { kind: 'icmp', type: 3, code: 13 } }),
      'icmp.about-icmp-error',
    ],
    [
      'an ICMPv4 time exceeded',
      buildPacket({ src: CLIENT4, dst: RES4, l4: { kind: 'icmp', type: 11, code: 0 } }),
      'icmp.about-icmp-error',
    ],
    [
      'an ICMPv6 packet too big',
      buildPacket({ src: CLIENT6, dst: RES6, l4: { kind: 'icmp', type: 2, code: 0 } }),
      'icmp.about-icmp-error',
    ],
    [
      'a packet from 0.0.0.0',
      buildPacket({ src: v4(0, 0, 0, 0), dst: RES4, l4: { kind: 'udp', srcPort: 68, dstPort: 67 } }),
      'icmp.source-not-unicast',
    ],
    [
      'a packet from a multicast source',
      buildPacket({ src: v4(224, 0, 0, 1), dst: RES4, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }),
      'icmp.source-not-unicast',
    ],
    [
      'a packet from the broadcast address',
      buildPacket({ src: v4(255, 255, 255, 255), dst: RES4, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }),
      'icmp.source-not-unicast',
    ],
    [
      'a packet from ::',
      buildPacket({ src: v6(), dst: RES6, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }),
      'icmp.source-not-unicast',
    ],
    [
      'a packet from ff02::1',
      buildPacket({
        src: v6(0xff02, 0, 0, 0, 0, 0, 0, 1),
        dst: RES6,
        l4: { kind: 'udp', srcPort: 1, dstPort: 2 },
      }),
      'icmp.source-not-unicast',
    ],
  ])('sends nothing about %s', (_name, original, code) => {
    const r = buildUnreachable(parse(original), 'prohibited', new Uint8Array(MAX_ICMP_ERROR_BYTES));
    expect(typeof r).toBe('object');
    expect((r as { code: string }).code).toBe(code);
  });

  it('does answer echo requests and other informational ICMP', () => {
    const ping = buildPacket({
      src: CLIENT4,
      dst: RES4,
      l4: { kind: 'icmp', type: 8, code: 0, rest: echoRest(77) },
    });
    expect(parse(build(ping, 'prohibited')).icmpCode).toBe(13);
  });
});

describe('ICMP error parsing', () => {
  it('reads back the quoted tuple of a built error', () => {
    const udp = buildPacket({ src: CLIENT4, dst: RES4, l4: { kind: 'udp', srcPort: 5555, dstPort: 53 } });
    const reply = parse(build(udp, 'prohibited'));
    const r = parseIcmpError(reply);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const q = r.value;
    expect([q.type, q.code, q.quotedVersion, q.quotedProtocol]).toEqual([3, 13, 4, 17]);
    expect([...reply.buf.subarray(q.quotedSrcOffset, q.quotedSrcOffset + 4)]).toEqual([...CLIENT4]);
    expect([...reply.buf.subarray(q.quotedDstOffset, q.quotedDstOffset + 4)]).toEqual([...RES4]);
    expect([q.quotedSrcPort, q.quotedDstPort, q.quotedEchoId]).toEqual([5555, 53, -1]);
  });

  it('reads the echo identifier of a quoted echo request', () => {
    const ping = buildPacket({
      src: CLIENT6,
      dst: RES6,
      l4: { kind: 'icmp', type: 128, code: 0, rest: echoRest(0x4242) },
    });
    const r = parseIcmpError(parse(build(ping, 'unreachable')));
    expect(r.ok && r.value.quotedEchoId).toBe(0x4242);
    expect(r.ok && r.value.quotedSrcPort).toBe(-1);
  });

  it('reports a quote cut before the transport header as having no ports', () => {
    const err = buildPacket({
      src: RES4,
      dst: CLIENT4,
      l4: {
        kind: 'icmp',
        type: 11,
        code: 0,
        payload: buildPacket({
          src: CLIENT4,
          dst: RES4,
          l4: { kind: 'udp', srcPort: 1, dstPort: 2 },
        }).subarray(0, 22),
      },
    });
    const r = parseIcmpError(parse(err));
    expect(r.ok).toBe(true);
    expect(r.ok && [r.value.quotedProtocol, r.value.quotedSrcPort, r.value.quotedDstPort]).toEqual([
      17, -1, -1,
    ]);
  });

  it('refuses non-errors, untranslated error types and unusable quotes', () => {
    const info = emptyIcmpErrorInfo();
    const ping = buildPacket({ src: CLIENT4, dst: RES4, l4: { kind: 'icmp', type: 8, code: 0 } });
    expect(readIcmpError(parse(ping), info)?.code).toBe('ip.not-icmp-error');
    const paramProblem = buildPacket({ src: CLIENT4, dst: RES4, l4: { kind: 'icmp', type: 12, code: 0 } });
    expect(readIcmpError(parse(paramProblem), info)?.code).toBe('ip.not-icmp-error');
    const code16 = buildPacket({ src: CLIENT4, dst: RES4, l4: { kind: 'icmp', type: 3, code: 16 } });
    expect(readIcmpError(parse(code16), info)?.code).toBe('ip.not-icmp-error');
    const udp = buildPacket({ src: CLIENT4, dst: RES4, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } });
    expect(readIcmpError(parse(udp), info)?.code).toBe('ip.not-icmp-error');
    const noQuote = buildPacket({ src: RES4, dst: CLIENT4, l4: { kind: 'icmp', type: 3, code: 1 } });
    expect(readIcmpError(parse(noQuote), info)?.code).toBe('ip.icmp-error-quote');
    const v6Quote = buildPacket({
      src: RES4,
      dst: CLIENT4,
      l4: {
        kind: 'icmp',
        type: 3,
        code: 1,
        payload: buildPacket({ src: CLIENT6, dst: RES6, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }),
      },
    });
    expect(readIcmpError(parse(v6Quote), info)?.code).toBe('ip.icmp-error-quote');
    const cutHeader = buildPacket({
      src: RES6,
      dst: CLIENT6,
      l4: {
        kind: 'icmp',
        type: 1,
        code: 0,
        payload: buildPacket({
          src: CLIENT6,
          dst: RES6,
          l4: { kind: 'udp', srcPort: 1, dstPort: 2 },
        }).subarray(0, 39),
      },
    });
    expect(readIcmpError(parse(cutHeader), info)?.code).toBe('ip.icmp-error-quote');
  });
});
