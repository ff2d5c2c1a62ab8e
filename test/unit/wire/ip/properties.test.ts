import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytesEqual } from '../../../../src/wire/ip/address.js';
import { MAX_IP_PACKET_BYTES } from '../../../../src/wire/ip/constants.js';
import { IP_ERROR_CODES, IP_ERRORS } from '../../../../src/wire/ip/errors.js';
import {
  buildUnreachable,
  emptyIcmpErrorInfo,
  MAX_ICMP_ERROR_BYTES,
  readIcmpError,
  type UnreachableReason,
} from '../../../../src/wire/ip/icmp.js';
import { IpPacket } from '../../../../src/wire/ip/packet.js';
import { decodeP2pControl } from '../../../../src/wire/p2p/control.js';
import { type Mutation, mutationArb, PROPERTY_RUNS, packetSpecArb } from '../../../support/arbitraries.js';
import { allChecksumsValid } from '../../../support/checksum-oracle.js';
import { buildPacket } from '../../../support/packet-builder.js';

const validPacketArb = packetSpecArb.map(buildPacket);

/** Bytes that reach deep into the parser: valid packets with flipped, cut or appended bytes. */
const hostileBytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 1400 }),
  fc
    .tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x60, 0x6f), fc.uint8Array({ maxLength: 400 }))
    .map(([b0, rest]) => Uint8Array.from([b0, ...rest])),
  fc
    .tuple(
      validPacketArb,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      fc.oneof(fc.constant(0), fc.nat()),
      fc.uint8Array({ maxLength: 40 }),
    )
    .map(([pkt, flips, cut, tail]) => {
      const b = Uint8Array.from([...pkt, ...tail]);
      for (const [at, v] of flips) b[at % b.length] = v;
      return b.subarray(0, Math.max(0, b.length - (cut % 24)));
    }),
);

function exerciseAccessors(p: IpPacket): void {
  // Every accessor answers without throwing; values are in range.
  const values = [
    p.version,
    p.protocol,
    p.addressLength,
    p.srcPort,
    p.dstPort,
    p.icmpType,
    p.icmpCode,
    p.echoId,
    p.ecn,
    p.ttl,
    p.tcpFlags,
    p.isIcmpError,
    p.isP2pControl,
    p.isEcho,
    p.hasL4Id,
    p.l4ChecksumOffset(),
  ];
  expect(values.length).toBe(16);
  expect(p.source().length).toBe(p.addressLength);
  expect(p.destination().length).toBe(p.addressLength);
  readIcmpError(p, emptyIcmpErrorInfo());
  if (p.isP2pControl) decodeP2pControl(p);
  buildUnreachable(p, 'prohibited', new Uint8Array(MAX_ICMP_ERROR_BYTES));
}

function applyMutation(p: IpPacket, m: Mutation): void {
  let r: unknown;
  switch (m.op) {
    case 'setSource':
    case 'setDestination':
      r = p[m.op](m.addr);
      break;
    case 'setSrcPort':
    case 'setDstPort':
    case 'setEchoId':
      r = p[m.op](m.value);
      break;
    case 'translateDestination':
    case 'translateSource':
      r = p[m.op](m.addr, m.id);
      break;
    case 'applyOuterEcn':
      p.applyOuterEcn(m.ecn);
      return;
  }
  if (r !== undefined) expect(IP_ERROR_CODES).toContain((r as { code: string }).code);
}

describe('IP packet properties', () => {
  it('(a) any bytes give a valid packet or a typed error, never an exception', () => {
    const view = new IpPacket();
    fc.assert(
      fc.property(hostileBytesArb, (bytes) => {
        const error = view.load(bytes);
        if (error) {
          expect(error).toBe(IP_ERRORS[error.code]);
          expect(view.length).toBe(0);
          return;
        }
        expect(view.length).toBeLessThanOrEqual(Math.min(bytes.length, MAX_IP_PACKET_BYTES));
        expect(view.l4Offset).toBeGreaterThanOrEqual(view.version === 4 ? 20 : 40);
        expect(view.l4Offset + view.l4Length).toBe(view.length);
        exerciseAccessors(view);
        applyMutation(view, { op: 'translateDestination', addr: view.destination(), id: 1 });
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('(b) after any sequence of mutations every checksum verifies', () => {
    fc.assert(
      fc.property(validPacketArb, fc.array(mutationArb, { maxLength: 8 }), (bytes, mutations) => {
        const p = new IpPacket();
        expect(p.load(bytes)).toBeUndefined();
        const before = allChecksumsValid(bytes);
        expect(before).toBe(true);
        for (const m of mutations) {
          applyMutation(p, m);
          expect(allChecksumsValid(bytes)).toBe(true);
        }
        // The mutated packet is still a valid packet of the same shape.
        const again = new IpPacket();
        expect(again.load(bytes)).toBeUndefined();
        expect([again.protocol, again.l4Offset, again.length]).toEqual([p.protocol, p.l4Offset, p.length]);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('(c) an ICMP error built from any packet parses back to its addresses, ports and code', () => {
    const out = new Uint8Array(MAX_ICMP_ERROR_BYTES);
    const info = emptyIcmpErrorInfo();
    fc.assert(
      fc.property(
        validPacketArb,
        fc.constantFrom<UnreachableReason>('prohibited', 'unreachable'),
        (bytes, reason) => {
          const orig = new IpPacket();
          expect(orig.load(bytes)).toBeUndefined();
          const n = buildUnreachable(orig, reason, out);
          const src = orig.source();
          const multicastOrZero =
            orig.version === 4
              ? src[0]! >= 224 || src.every((b) => b === 0)
              : src[0] === 0xff || src.every((b) => b === 0);
          if (typeof n !== 'number') {
            expect(n.code).toBe(orig.isIcmpError ? 'icmp.about-icmp-error' : 'icmp.source-not-unicast');
            expect(orig.isIcmpError || multicastOrZero).toBe(true);
            return;
          }
          expect(orig.isIcmpError || multicastOrZero).toBe(false);
          expect(n).toBeLessThanOrEqual(MAX_IP_PACKET_BYTES);
          const reply = new IpPacket();
          expect(reply.load(out, 0, n)).toBeUndefined();
          expect(allChecksumsValid(out.subarray(0, n))).toBe(true);
          expect(reply.ttl).toBe(20);
          expect(reply.isIcmpError).toBe(true);
          expect(bytesEqual(reply.source(), 0, orig.destination(), 0, orig.addressLength)).toBe(true);
          expect(bytesEqual(reply.destination(), 0, src, 0, orig.addressLength)).toBe(true);
          const code =
            orig.version === 4 ? (reason === 'prohibited' ? 13 : 0) : reason === 'prohibited' ? 1 : 3;
          expect([reply.icmpType, reply.icmpCode]).toEqual([orig.version === 4 ? 3 : 1, code]);

          expect(readIcmpError(reply, info)).toBeUndefined();
          expect([info.type, info.code, info.quotedVersion, info.quotedProtocol]).toEqual([
            reply.icmpType,
            code,
            orig.version,
            orig.protocol,
          ]);
          expect(bytesEqual(out, info.quotedSrcOffset, orig.buf, orig.srcOffset, orig.addressLength)).toBe(
            true,
          );
          expect(bytesEqual(out, info.quotedDstOffset, orig.buf, orig.dstOffset, orig.addressLength)).toBe(
            true,
          );
          expect(info.quotedSrcPort).toBe(orig.srcPort ?? -1);
          expect(info.quotedDstPort).toBe(orig.dstPort ?? -1);
          expect(info.quotedEchoId).toBe(orig.echoId ?? -1);
        },
      ),
      { numRuns: PROPERTY_RUNS },
    );
  });
});
