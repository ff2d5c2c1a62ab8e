import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeChannelData, writeChannelDataHeader } from '../../../../src/wire/stun/channel-data.js';
import {
  ATTR_FINGERPRINT,
  ATTR_MESSAGE_INTEGRITY,
  ATTR_MESSAGE_INTEGRITY_SHA256,
  ATTR_XOR_MAPPED_ADDRESS,
  ATTR_XOR_PEER_ADDRESS,
  ATTR_XOR_RELAYED_ADDRESS,
  type StunClass,
} from '../../../../src/wire/stun/constants.js';
import {
  decodeAddress,
  decodeErrorCode,
  decodeStun,
  decodeTypeList,
  decodeU32,
  decodeXorAddress,
  StunBuilder,
  type StunErrorCode,
  type StunMessage,
  unknownRequired,
  utf8,
  verifyFingerprint,
  verifyIntegrity,
  verifyIntegritySha256,
} from '../../../../src/wire/stun/message.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

const STUN_ERROR_CODES: ReadonlySet<StunErrorCode> = new Set<StunErrorCode>([
  'stun.truncated',
  'stun.not-stun',
  'stun.bad-cookie',
  'stun.bad-length',
  'stun.bad-attribute',
  'stun.bad-address',
  'stun.bad-error-code',
  'stun.bad-value',
]);

/** Types the builder writes itself, so random attributes must not use them. */
const RESERVED_TYPES = new Set([ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_FINGERPRINT]);
const XOR_TYPES = [ATTR_XOR_MAPPED_ADDRESS, ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS];

type AttrSpec =
  | { kind: 'raw'; type: number; value: Uint8Array }
  | { kind: 'xor'; type: number; ip: Uint8Array; port: number };

const attrSpecArb: fc.Arbitrary<AttrSpec> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('raw' as const),
      type: fc.integer({ min: 0, max: 0xffff }).filter((t) => !RESERVED_TYPES.has(t)),
      value: fc.uint8Array({ maxLength: 64 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('xor' as const),
      type: fc.constantFrom(...XOR_TYPES),
      ip: fc.oneof(
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
      ),
      port: fc.integer({ min: 0, max: 0xffff }),
    }),
  },
);

interface MessageSpec {
  method: number;
  cls: StunClass;
  transactionId: Uint8Array;
  attributes: AttrSpec[];
  integrity: 'none' | 'sha1' | 'sha256';
  /** HMAC keys of any size, including empty and longer than the 64-byte block. */
  key: Uint8Array;
  fingerprint: boolean;
}

const messageSpecArb: fc.Arbitrary<MessageSpec> = fc.record({
  method: fc.integer({ min: 0, max: 0xfff }),
  cls: fc.constantFrom<StunClass>(0, 1, 2, 3),
  transactionId: fc.uint8Array({ minLength: 12, maxLength: 12 }),
  attributes: fc.array(attrSpecArb, { maxLength: 8 }),
  integrity: fc.constantFrom('none' as const, 'sha1' as const, 'sha256' as const),
  key: fc.uint8Array({ maxLength: 100 }),
  fingerprint: fc.boolean(),
});

function build(spec: MessageSpec): Uint8Array {
  const b = new StunBuilder(spec.method, spec.cls, spec.transactionId);
  for (const a of spec.attributes) {
    if (a.kind === 'raw') b.add(a.type, a.value);
    else b.addXorAddress(a.type, { ip: a.ip, port: a.port });
  }
  if (spec.integrity === 'sha1') b.integrity(spec.key);
  if (spec.integrity === 'sha256') b.integritySha256(spec.key);
  if (spec.fingerprint) b.fingerprint();
  return b.build();
}

/** A message with MESSAGE-INTEGRITY, and the end of the region that attribute covers. */
const withIntegrityArb = messageSpecArb
  .map((s) => ({ ...s, integrity: 'sha1' as const }))
  .map((spec) => {
    const bytes = build(spec);
    const r = decodeStun(bytes);
    if (!r.ok) throw new Error('built message did not decode');
    const mi = r.value.attributes.find((a) => a.type === ATTR_MESSAGE_INTEGRITY)!;
    return { spec, bytes, miEnd: mi.offset + 24 };
  });

/** Exercises everything a caller may do with a decoded message; none of it may throw. */
function useEverything(msg: StunMessage, key: Uint8Array): void {
  verifyIntegrity(msg, key);
  verifyIntegritySha256(msg, key);
  verifyFingerprint(msg);
  unknownRequired(msg, new Set([1, 6, 8]));
  for (const a of msg.attributes) {
    decodeXorAddress(a.value, msg.transactionId);
    decodeAddress(a.value);
    decodeErrorCode(a.value);
    decodeU32(a.value);
    decodeTypeList(a.value);
    utf8(a.value);
  }
}

/** Bytes that reach past the header checks often: valid headers over random or mutated bodies. */
const stunishBytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc
    .tuple(fc.integer({ min: 0, max: 0x3fff }), fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.nat(40))
    .chain(([type, txid, words]) =>
      fc.uint8Array({ minLength: words * 4, maxLength: words * 4 }).map((body) => {
        const out = new Uint8Array(20 + body.length);
        const dv = new DataView(out.buffer);
        dv.setUint16(0, type);
        dv.setUint16(2, body.length);
        dv.setUint32(4, 0x2112a442);
        out.set(txid, 8);
        out.set(body, 20);
        return out;
      }),
    ),
  fc
    .tuple(messageSpecArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }))
    .map(([spec, edits]) => {
      const bytes = build(spec);
      for (const [at, v] of edits) bytes[at % bytes.length] = v;
      return bytes;
    }),
);

describe('STUN properties', () => {
  it('decodes any bytes to a message or a typed error, and never throws', () => {
    fc.assert(
      fc.property(
        stunishBytesArb,
        fc.nat(),
        fc.nat(),
        fc.uint8Array({ maxLength: 40 }),
        (bytes, a, b, key) => {
          // Any window of the buffer, not only the whole of it.
          const off = bytes.length === 0 ? 0 : a % (bytes.length + 1);
          const len = b % (bytes.length - off + 1);
          for (const [o, l] of [
            [0, bytes.length],
            [off, len],
          ] as const) {
            const r = decodeStun(bytes, o, l);
            if (r.ok) {
              useEverything(r.value, key);
            } else {
              expect(STUN_ERROR_CODES.has(r.error.code)).toBe(true);
              expect(typeof r.error.message).toBe('string');
            }
          }
        },
      ),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('decodes attributes that lie inside the message and tile it exactly', () => {
    fc.assert(
      fc.property(stunishBytesArb, fc.nat(7), (bytes, off) => {
        const buf = new Uint8Array(off + bytes.length + 3).fill(0xee);
        buf.set(bytes, off);
        const r = decodeStun(buf, off, bytes.length);
        if (!r.ok) return;
        const msg = r.value;
        expect(msg.raw.length).toBe(bytes.length);
        expect(msg.raw.byteOffset).toBe(buf.byteOffset + off);
        let at = 20;
        for (const a of msg.attributes) {
          expect(a.offset).toBe(at);
          expect(a.value.buffer).toBe(buf.buffer);
          expect(a.value.byteOffset).toBe(msg.raw.byteOffset + a.offset + 4);
          expect(a.offset + 4 + a.value.length).toBeLessThanOrEqual(msg.raw.length);
          at += 4 + ((a.value.length + 3) & ~3);
        }
        expect(at).toBe(msg.raw.length);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('decodes a built message back to the same header and attributes, and it verifies', () => {
    fc.assert(
      fc.property(messageSpecArb, (spec) => {
        const r = decodeStun(build(spec));
        expect(r.ok).toBe(true);
        if (!r.ok) return;
        const msg = r.value;
        expect(msg.method).toBe(spec.method);
        expect(msg.cls).toBe(spec.cls);
        expect(hex(msg.transactionId)).toBe(hex(spec.transactionId));

        const trailer = [
          ...(spec.integrity === 'sha1' ? [ATTR_MESSAGE_INTEGRITY] : []),
          ...(spec.integrity === 'sha256' ? [ATTR_MESSAGE_INTEGRITY_SHA256] : []),
          ...(spec.fingerprint ? [ATTR_FINGERPRINT] : []),
        ];
        expect(msg.attributes.map((a) => a.type)).toEqual([
          ...spec.attributes.map((a) => a.type),
          ...trailer,
        ]);
        spec.attributes.forEach((a, i) => {
          const got = msg.attributes[i]!;
          if (a.kind === 'raw') {
            expect(hex(got.value)).toBe(hex(a.value));
          } else {
            const addr = decodeXorAddress(got.value, msg.transactionId);
            expect(addr.ok && [hex(addr.value.ip), addr.value.port]).toEqual([hex(a.ip), a.port]);
          }
        });

        expect(verifyIntegrity(msg, spec.key)).toBe(spec.integrity === 'sha1');
        expect(verifyIntegritySha256(msg, spec.key)).toBe(spec.integrity === 'sha256');
        expect(verifyFingerprint(msg)).toBe(spec.fingerprint ? true : undefined);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('rejects a message with MESSAGE-INTEGRITY after any single bit flip it covers', () => {
    fc.assert(
      fc.property(withIntegrityArb, fc.nat(), fc.nat(7), ({ spec, bytes, miEnd }, at, bit) => {
        const i = at % miEnd;
        const t = Uint8Array.from(bytes);
        t[i]! ^= 1 << bit;
        const r = decodeStun(t);
        if (r.ok) expect(verifyIntegrity(r.value, spec.key), `byte ${i} bit ${bit}`).toBe(false);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('catches a bit flip after MESSAGE-INTEGRITY with FINGERPRINT', () => {
    // MESSAGE-INTEGRITY does not cover FINGERPRINT (RFC 8489 §14.5); the CRC does, so every
    // single bit of a message with both is guarded by one or the other.
    fc.assert(
      fc.property(
        withIntegrityArb.filter(({ spec }) => spec.fingerprint),
        fc.nat(63),
        ({ spec, bytes, miEnd }, at) => {
          const i = miEnd + (at >> 3);
          const t = Uint8Array.from(bytes);
          t[i]! ^= 1 << (at & 7);
          const r = decodeStun(t);
          if (!r.ok) return;
          expect(verifyIntegrity(r.value, spec.key)).toBe(true);
          expect(verifyFingerprint(r.value)).not.toBe(true);
        },
      ),
      { numRuns: PROPERTY_RUNS },
    );
  });
});

describe('channel data properties', () => {
  /** Random bytes, and frames whose first byte and length field are often right. */
  const channelishArb: fc.Arbitrary<Uint8Array> = fc.oneof(
    fc.uint8Array({ maxLength: 80 }),
    fc
      .tuple(
        fc.integer({ min: 0x3ff0, max: 0x500f }),
        fc.uint8Array({ maxLength: 80 }),
        fc.integer({ min: -2, max: 2 }),
      )
      .map(([channel, payload, delta]) => {
        const out = new Uint8Array(4 + payload.length);
        writeChannelDataHeader(out, 0, channel, Math.max(0, payload.length + delta));
        out.set(payload, 4);
        return out;
      }),
  );

  it('decodes any window of any bytes without throwing, and a payload lies within the input', () => {
    fc.assert(
      fc.property(channelishArb, fc.nat(), fc.nat(), (bytes, a, b) => {
        const off = a % (bytes.length + 1);
        const len = b % (bytes.length - off + 1);
        for (const [o, l] of [
          [0, bytes.length],
          [off, len],
        ] as const) {
          const r = decodeChannelData(bytes, o, l);
          if (!r.ok) {
            expect(STUN_ERROR_CODES.has(r.error.code)).toBe(true);
            continue;
          }
          expect(r.value.channel).toBeGreaterThanOrEqual(0x4000);
          expect(r.value.channel).toBeLessThanOrEqual(0x4fff);
          expect(r.value.payloadOffset).toBe(o + 4);
          expect(r.value.payloadOffset + r.value.payloadLength).toBe(o + l);
        }
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });
});
