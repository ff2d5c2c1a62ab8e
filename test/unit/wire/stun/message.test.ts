import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ATTR_DATA,
  ATTR_ERROR_CODE,
  ATTR_FINGERPRINT,
  ATTR_LIFETIME,
  ATTR_MESSAGE_INTEGRITY,
  ATTR_MESSAGE_INTEGRITY_SHA256,
  ATTR_NONCE,
  ATTR_REALM,
  ATTR_SOFTWARE,
  ATTR_UNKNOWN_ATTRIBUTES,
  ATTR_USERNAME,
  ATTR_XOR_MAPPED_ADDRESS,
  ATTR_XOR_PEER_ADDRESS,
  CLASS_ERROR,
  CLASS_INDICATION,
  CLASS_REQUEST,
  CLASS_SUCCESS,
  METHOD_ALLOCATE,
  METHOD_BINDING,
  METHOD_CHANNEL_BIND,
  METHOD_CREATE_PERMISSION,
  METHOD_DATA,
  METHOD_REFRESH,
  METHOD_SEND,
  type StunClass,
} from '../../../../src/wire/stun/constants.js';
import {
  attribute,
  crc32,
  decodeAddress,
  decodeErrorCode,
  decodeStun,
  decodeTypeList,
  decodeU32,
  decodeXorAddress,
  encodeErrorCode,
  encodeXorAddress,
  looksLikeStun,
  messageType,
  StunBuilder,
  type StunErrorCode,
  type StunMessage,
  shortTermKey,
  unknownRequired,
  utf8,
  verifyFingerprint,
  verifyIntegrity,
  verifyIntegritySha256,
} from '../../../../src/wire/stun/message.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';
import { v4, v6 } from '../../../support/packet-builder.js';

const unhex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

const TXID = unhex('0102030405060708090a0b0c');
const KEY = shortTermKey('a-short-term-password');

/** A STUN header (type, length, cookie, transaction id) followed by `body`. */
function stunBytes(
  type: number,
  body: Uint8Array,
  { length = body.length, cookie = 0x2112a442 }: { length?: number; cookie?: number } = {},
): Uint8Array {
  const out = new Uint8Array(20 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, type);
  dv.setUint16(2, length);
  dv.setUint32(4, cookie);
  out.set(TXID, 8);
  out.set(body, 20);
  return out;
}

/** One attribute as it appears on the wire: type, length, value, zero padding. */
function attr(type: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + ((value.length + 3) & ~3));
  new DataView(out.buffer).setUint16(0, type);
  new DataView(out.buffer).setUint16(2, value.length);
  out.set(value, 4);
  return out;
}

const cat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

function decoded(bytes: Uint8Array): StunMessage {
  const r = decodeStun(bytes);
  if (!r.ok) throw new Error(`expected a STUN message, got ${r.error.code}: ${r.error.message}`);
  return r.value;
}

function errorCodeOf(bytes: Uint8Array, off?: number, len?: number): StunErrorCode | 'ok' {
  const r = decodeStun(bytes, off, len);
  return r.ok ? 'ok' : r.error.code;
}

describe('decodeStun errors', () => {
  it('rejects anything shorter than the 20-byte header as stun.truncated', () => {
    const full = stunBytes(0x0001, new Uint8Array(0));
    for (let n = 0; n < 20; n++)
      expect(errorCodeOf(full.subarray(0, n)), `${n} bytes`).toBe('stun.truncated');
    expect(errorCodeOf(full)).toBe('ok');
  });

  it('rejects a type with either of the two top bits set as stun.not-stun', () => {
    for (const type of [0x4001, 0x8001, 0xc001, 0x4000, 0x8101]) {
      expect(errorCodeOf(stunBytes(type, new Uint8Array(0))), `type 0x${type.toString(16)}`).toBe(
        'stun.not-stun',
      );
    }
  });

  it('rejects a wrong magic cookie as stun.bad-cookie (RFC 3489 messages are not spoken)', () => {
    for (const cookie of [0, 0x2112a443, 0x4212a421, 0xffffffff]) {
      expect(errorCodeOf(stunBytes(0x0001, new Uint8Array(0), { cookie }))).toBe('stun.bad-cookie');
    }
  });

  it('rejects a length field that is not a multiple of 4 as stun.bad-length', () => {
    for (const n of [1, 2, 3, 5, 7]) {
      expect(errorCodeOf(stunBytes(0x0001, new Uint8Array(n))), `${n} bytes`).toBe('stun.bad-length');
    }
  });

  it('rejects a length field that disagrees with the datagram as stun.bad-length', () => {
    const body = attr(ATTR_SOFTWARE, new TextEncoder().encode('abcd'));
    expect(errorCodeOf(stunBytes(0x0001, body, { length: body.length + 4 }))).toBe('stun.bad-length');
    expect(errorCodeOf(stunBytes(0x0001, body, { length: body.length - 4 }))).toBe('stun.bad-length');
    expect(errorCodeOf(stunBytes(0x0001, body, { length: 0 }))).toBe('stun.bad-length');
    // A valid message followed by trailing bytes in the same datagram.
    expect(errorCodeOf(cat(stunBytes(0x0001, body), new Uint8Array(4)))).toBe('stun.bad-length');
  });

  it('rejects an attribute whose value or padding overruns the message as stun.bad-attribute', () => {
    const value = attr(ATTR_SOFTWARE, new Uint8Array(4));
    const tooLong = Uint8Array.from(value);
    tooLong[3] = 8; // claims 8 bytes, 4 are there
    expect(errorCodeOf(stunBytes(0x0001, tooLong))).toBe('stun.bad-attribute');
    const paddingOut = Uint8Array.from(value);
    paddingOut[3] = 5; // 5 bytes need 3 of padding, which the message does not have
    expect(errorCodeOf(stunBytes(0x0001, paddingOut))).toBe('stun.bad-attribute');
    const second = cat(attr(ATTR_NONCE, new Uint8Array(8)), unhex('00150100'));
    expect(errorCodeOf(stunBytes(0x0001, second))).toBe('stun.bad-attribute');
    const huge = unhex('8022ffff');
    expect(errorCodeOf(stunBytes(0x0001, huge))).toBe('stun.bad-attribute');
  });

  it('checks the header rules in order: size, top bits, cookie, length', () => {
    expect(errorCodeOf(stunBytes(0xc001, new Uint8Array(3), { cookie: 0 }))).toBe('stun.not-stun');
    expect(errorCodeOf(stunBytes(0x0001, new Uint8Array(3), { cookie: 0 }))).toBe('stun.bad-cookie');
  });
});

describe('decodeStun', () => {
  it('accepts a header with no attributes', () => {
    const msg = decoded(stunBytes(messageType(METHOD_BINDING, CLASS_REQUEST), new Uint8Array(0)));
    expect(msg.method).toBe(METHOD_BINDING);
    expect(msg.cls).toBe(CLASS_REQUEST);
    expect(msg.attributes).toEqual([]);
    expect(hex(msg.transactionId)).toBe(hex(TXID));
  });

  it('decodes a message that sits at an offset inside a larger buffer', () => {
    const inner = new StunBuilder(METHOD_BINDING, CLASS_SUCCESS, TXID)
      .addText(ATTR_SOFTWARE, 'x')
      .integrity(KEY)
      .fingerprint()
      .build();
    const buf = cat(new Uint8Array(7).fill(0xee), inner, new Uint8Array(5).fill(0xee));
    const r = decodeStun(buf, 7, inner.length);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(hex(r.value.raw)).toBe(hex(inner));
    expect(r.value.raw.buffer).toBe(buf.buffer);
    expect(r.value.attributes.map((a) => a.offset)).toEqual([20, 28, 52]);
    expect(verifyIntegrity(r.value, KEY)).toBe(true);
    expect(verifyFingerprint(r.value)).toBe(true);
    // The transaction id is a copy: it survives the buffer being reused.
    buf.fill(0);
    expect(hex(r.value.transactionId)).toBe(hex(TXID));
  });

  it('keeps repeated attributes in wire order, and attribute() returns the first', () => {
    const msg = decoded(
      new StunBuilder(METHOD_BINDING, CLASS_REQUEST, TXID)
        .addText(ATTR_SOFTWARE, 'first')
        .addText(ATTR_USERNAME, 'u')
        .addText(ATTR_SOFTWARE, 'second')
        .build(),
    );
    expect(msg.attributes.map((a) => a.type)).toEqual([ATTR_SOFTWARE, ATTR_USERNAME, ATTR_SOFTWARE]);
    expect(utf8(attribute(msg, ATTR_SOFTWARE)!)).toBe('first');
    expect(attribute(msg, ATTR_REALM)).toBeUndefined();
  });

  it('gives attribute values without their padding', () => {
    const msg = decoded(
      new StunBuilder(METHOD_BINDING, CLASS_REQUEST, TXID)
        .add(ATTR_DATA, new Uint8Array(0))
        .add(ATTR_USERNAME, unhex('61'))
        .add(ATTR_NONCE, unhex('616263'))
        .build(),
    );
    expect(msg.attributes.map((a) => [a.offset, hex(a.value)])).toEqual([
      [20, ''],
      [24, '61'],
      [32, '616263'],
    ]);
  });
});

describe('looksLikeStun', () => {
  it('agrees with decodeStun on the header rules for hand-made headers', () => {
    const good = stunBytes(0x0001, attr(ATTR_SOFTWARE, new Uint8Array(4)));
    expect(looksLikeStun(good, 0, good.length)).toBe(true);
    const cases = [
      stunBytes(0x0001, new Uint8Array(0)).subarray(0, 19),
      stunBytes(0x8001, new Uint8Array(0)),
      stunBytes(0x0001, new Uint8Array(0), { cookie: 1 }),
      stunBytes(0x0001, new Uint8Array(2)),
      stunBytes(0x0001, new Uint8Array(4), { length: 8 }),
    ];
    for (const c of cases) {
      expect(looksLikeStun(c, 0, c.length)).toBe(false);
      expect(decodeStun(c).ok).toBe(false);
    }
  });

  it('is true exactly when decodeStun gets past the header', () => {
    // Headers built from a few choices per field, so that every rule is both met and broken.
    const headerArb = fc.record({
      topBits: fc.constantFrom(0, 0, 1, 2, 3),
      type: fc.integer({ min: 0, max: 0x3fff }),
      cookie: fc.constantFrom(0x2112a442, 0x2112a442, 0x2112a443, 0x0),
      bodyWords: fc.integer({ min: 0, max: 6 }),
      extraBytes: fc.constantFrom(0, 0, 0, 1, 2, 3),
      lengthDelta: fc.constantFrom(0, 0, 0, -4, 4, 1, -1, 2),
      body: fc.uint8Array({ minLength: 28, maxLength: 28 }),
      off: fc.integer({ min: 0, max: 3 }),
    });
    fc.assert(
      fc.property(headerArb, (h) => {
        const bodyLen = h.bodyWords * 4 + h.extraBytes;
        const msg = stunBytes((h.topBits << 14) | h.type, h.body.subarray(0, bodyLen), {
          cookie: h.cookie,
          length: Math.max(0, bodyLen + h.lengthDelta),
        });
        const buf = cat(new Uint8Array(h.off), msg, new Uint8Array(2));
        const r = decodeStun(buf, h.off, msg.length);
        const pastHeader = r.ok || r.error.code === 'stun.bad-attribute';
        expect(looksLikeStun(buf, h.off, msg.length)).toBe(pastHeader);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });
});

describe('message type', () => {
  it('round-trips every method 0x000–0xFFF and every class through the type field', () => {
    const seen = new Set<number>();
    for (let method = 0; method <= 0xfff; method++) {
      for (const cls of [CLASS_REQUEST, CLASS_INDICATION, CLASS_SUCCESS, CLASS_ERROR] as StunClass[]) {
        const type = messageType(method, cls);
        expect(type & 0xc000).toBe(0);
        seen.add(type);
        const msg = decodeStun(stunBytes(type, new Uint8Array(0)));
        if (!msg.ok || msg.value.method !== method || msg.value.cls !== cls) {
          expect.fail(`method 0x${method.toString(16)} class ${cls} came back as ${JSON.stringify(msg)}`);
        }
      }
    }
    expect(seen.size).toBe(0x1000 * 4);
  });

  it('gives the type values of RFC 8489 §5 and RFC 8656 §18', () => {
    expect(messageType(METHOD_BINDING, CLASS_REQUEST)).toBe(0x0001);
    expect(messageType(METHOD_BINDING, CLASS_INDICATION)).toBe(0x0011);
    expect(messageType(METHOD_BINDING, CLASS_SUCCESS)).toBe(0x0101);
    expect(messageType(METHOD_BINDING, CLASS_ERROR)).toBe(0x0111);
    expect(messageType(METHOD_ALLOCATE, CLASS_REQUEST)).toBe(0x0003);
    expect(messageType(METHOD_ALLOCATE, CLASS_ERROR)).toBe(0x0113);
    expect(messageType(METHOD_REFRESH, CLASS_SUCCESS)).toBe(0x0104);
    expect(messageType(METHOD_SEND, CLASS_INDICATION)).toBe(0x0016);
    expect(messageType(METHOD_DATA, CLASS_INDICATION)).toBe(0x0017);
    expect(messageType(METHOD_CREATE_PERMISSION, CLASS_SUCCESS)).toBe(0x0108);
    expect(messageType(METHOD_CHANNEL_BIND, CLASS_ERROR)).toBe(0x0119);
    expect(messageType(0xfff, CLASS_ERROR)).toBe(0x3fff);
  });
});

describe('XOR addresses', () => {
  it('round-trips any IPv4 or IPv6 address and port under any transaction id', () => {
    const addrArb = fc.record({
      ip: fc.oneof(
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
      ),
      port: fc.integer({ min: 0, max: 0xffff }),
    });
    const txidArb = fc.uint8Array({ minLength: 12, maxLength: 12 });
    fc.assert(
      fc.property(addrArb, txidArb, (addr, txid) => {
        const value = encodeXorAddress(addr, txid);
        expect(value.length).toBe(4 + addr.ip.length);
        expect(value[0]).toBe(0);
        const back = decodeXorAddress(value, txid);
        expect(back.ok).toBe(true);
        if (!back.ok) return;
        expect(hex(back.value.ip)).toBe(hex(addr.ip));
        expect(back.value.port).toBe(addr.port);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('XORs the port with the cookie and an IPv4 address with the cookie only', () => {
    const value = encodeXorAddress({ ip: v4(192, 0, 2, 1), port: 32853 }, TXID);
    expect(hex(value)).toBe('0001a147e112a643');
  });

  it('XORs an IPv6 address with the cookie and the transaction id', () => {
    const ip = v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const value = encodeXorAddress({ ip, port: 3478 }, TXID);
    // 3478 ^ 0x2112 = 0x2c84; 2001:0db8 ^ 2112:a442 = 0113:a9fa; the rest ^ the transaction id.
    expect(hex(value)).toBe('00022c840113a9fa0102030405060708090a0b0d');
  });

  it('rejects malformed address values as stun.bad-address', () => {
    const bad = [
      '',
      '0001a1',
      '0003a147e112a643', // family 3
      '0000a147e112a643', // family 0
      '0001a147e112a6', // IPv4 with 3 address bytes
      '0001a147e112a64300', // IPv4 with 5
      '0002a147e112a643', // IPv6 with 4
    ];
    for (const h of bad) {
      const r = decodeXorAddress(unhex(h), TXID);
      expect(r.ok ? 'ok' : r.error.code, h).toBe('stun.bad-address');
    }
  });

  it('decodes a plain MAPPED-ADDRESS and rejects a malformed one', () => {
    const r = decodeAddress(unhex('00010d96c0000201'));
    expect(r.ok && [hex(r.value.ip), r.value.port]).toEqual(['c0000201', 3478]);
    const r6 = decodeAddress(unhex('00020d9620010db8000000000000000000000001'));
    expect(r6.ok && [hex(r6.value.ip), r6.value.port]).toEqual(['20010db8000000000000000000000001', 3478]);
    for (const h of ['', '0001', '00030d96c0000201', '00020d96c0000201']) {
      const bad = decodeAddress(unhex(h));
      expect(bad.ok ? 'ok' : bad.error.code, h).toBe('stun.bad-address');
    }
  });

  it('carries XOR addresses through a built message', () => {
    const peer = { ip: v6(0xfd00, 0, 0, 0, 0, 0, 0, 0x42), port: 51820 };
    const msg = decoded(
      new StunBuilder(METHOD_CHANNEL_BIND, CLASS_REQUEST, TXID)
        .addXorAddress(ATTR_XOR_PEER_ADDRESS, peer)
        .build(),
    );
    const back = decodeXorAddress(attribute(msg, ATTR_XOR_PEER_ADDRESS)!, msg.transactionId);
    expect(back.ok && [hex(back.value.ip), back.value.port]).toEqual([hex(peer.ip), peer.port]);
  });
});

describe('ERROR-CODE', () => {
  const errorCode = (cls: number, number: number, reason = '') =>
    cat(new Uint8Array([0, 0, cls, number]), new TextEncoder().encode(reason));

  it('decodes codes 300–699 with their reason phrase', () => {
    const cases: [number, number, string, number][] = [
      [4, 1, 'Unauthorized', 401],
      [4, 38, 'Stale Nonce', 438],
      [6, 99, '', 699],
      [3, 0, 'Try Alternate', 300],
      [5, 8, 'Insufficient Capacity', 508],
    ];
    for (const [cls, number, reason, code] of cases) {
      expect(decodeErrorCode(errorCode(cls, number, reason))).toEqual({ ok: true, value: { code, reason } });
    }
  });

  it('rejects a class outside 3–6, a number above 99, or a value shorter than 4 bytes', () => {
    const bad = [errorCode(7, 0), errorCode(2, 0), errorCode(0, 0), errorCode(4, 100), errorCode(4, 255)];
    bad.push(new Uint8Array([0, 0, 4]));
    for (const value of bad) {
      const r = decodeErrorCode(value);
      expect(r.ok ? 'ok' : r.error.code, hex(value)).toBe('stun.bad-error-code');
    }
  });

  it('ignores the reserved bits in front of the class (RFC 8489 §14.8)', () => {
    expect(decodeErrorCode(new Uint8Array([0xff, 0xff, 0xfc, 37]))).toEqual({
      ok: true,
      value: { code: 437, reason: '' },
    });
  });

  it('round-trips every code 300–699 through encodeErrorCode', () => {
    for (let code = 300; code <= 699; code++) {
      const reason = code % 2 ? `reason ${code}` : 'Fehler ✓';
      expect(decodeErrorCode(encodeErrorCode(code, reason))).toEqual({ ok: true, value: { code, reason } });
    }
  });

  it('carries ERROR-CODE through a built error response', () => {
    const msg = decoded(
      new StunBuilder(METHOD_ALLOCATE, CLASS_ERROR, TXID)
        .addErrorCode(438, 'Stale Nonce')
        .integrity(KEY)
        .build(),
    );
    expect(msg.cls).toBe(CLASS_ERROR);
    expect(decodeErrorCode(attribute(msg, ATTR_ERROR_CODE)!)).toEqual({
      ok: true,
      value: { code: 438, reason: 'Stale Nonce' },
    });
  });
});

describe('other attribute values', () => {
  it('decodes a 32-bit value and rejects other sizes', () => {
    expect(decodeU32(unhex('00000258'))).toEqual({ ok: true, value: 600 });
    expect(decodeU32(unhex('ffffffff'))).toEqual({ ok: true, value: 0xffffffff });
    for (const h of ['', '000258', '0000025800']) {
      const r = decodeU32(unhex(h));
      expect(r.ok ? 'ok' : r.error.code).toBe('stun.bad-value');
    }
  });

  it('decodes UNKNOWN-ATTRIBUTES as a list of types', () => {
    expect(decodeTypeList(unhex('00190017'))).toEqual([0x0019, 0x0017]);
    expect(decodeTypeList(unhex('001900'))).toEqual([0x0019]);
    expect(decodeTypeList(new Uint8Array(0))).toEqual([]);
  });

  it('computes the CRC-32 check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });
});

describe('unknownRequired', () => {
  it('lists each unknown comprehension-required type once, in wire order', () => {
    const msg = decoded(
      new StunBuilder(METHOD_ALLOCATE, CLASS_REQUEST, TXID)
        .add(0x7fff, new Uint8Array(0))
        .add(ATTR_LIFETIME, new Uint8Array(4))
        .add(0x0030, new Uint8Array(1))
        .add(0x8000, new Uint8Array(0))
        .add(0xc0de, new Uint8Array(2))
        .add(0x0030, new Uint8Array(1))
        .add(ATTR_SOFTWARE, new Uint8Array(3))
        .add(0x0000, new Uint8Array(0))
        .build(),
    );
    expect(unknownRequired(msg, new Set([ATTR_LIFETIME]))).toEqual([0x7fff, 0x0030, 0x0000]);
    expect(unknownRequired(msg, new Set([ATTR_LIFETIME, 0x7fff, 0x0030, 0x0000]))).toEqual([]);
  });

  it('never lists comprehension-optional types, known or not', () => {
    const msg = decoded(
      new StunBuilder(METHOD_BINDING, CLASS_REQUEST, TXID)
        .add(0x8000, new Uint8Array(0))
        .add(0xffff, new Uint8Array(0))
        .fingerprint()
        .build(),
    );
    expect(unknownRequired(msg, new Set())).toEqual([]);
  });

  it('counts UNKNOWN-ATTRIBUTES itself as required', () => {
    const msg = decoded(
      new StunBuilder(METHOD_BINDING, CLASS_ERROR, TXID).add(ATTR_UNKNOWN_ATTRIBUTES, unhex('0030')).build(),
    );
    expect(unknownRequired(msg, new Set())).toEqual([ATTR_UNKNOWN_ATTRIBUTES]);
  });
});

describe('MESSAGE-INTEGRITY', () => {
  const base = () =>
    new StunBuilder(METHOD_ALLOCATE, CLASS_REQUEST, TXID)
      .addText(ATTR_USERNAME, 'user')
      .addText(ATTR_REALM, 'firezone')
      .addText(ATTR_NONCE, 'n0nce');

  it('is false when the message has none', () => {
    const msg = decoded(base().build());
    expect(verifyIntegrity(msg, KEY)).toBe(false);
    expect(verifyIntegritySha256(msg, KEY)).toBe(false);
  });

  it('is false when its value is not 20 bytes', () => {
    const msg = decoded(base().add(ATTR_MESSAGE_INTEGRITY, new Uint8Array(16)).build());
    expect(verifyIntegrity(msg, KEY)).toBe(false);
  });

  it('still verifies when an attribute follows it, since it covers only what precedes it', () => {
    // RFC 8489 §14.5: only FINGERPRINT may follow, but the HMAC is computed up to
    // MESSAGE-INTEGRITY with the length field counting through it, whatever comes after.
    const withTrailer = decoded(base().integrity(KEY).addText(ATTR_SOFTWARE, 'after').build());
    expect(withTrailer.attributes.at(-1)?.type).toBe(ATTR_SOFTWARE);
    expect(verifyIntegrity(withTrailer, KEY)).toBe(true);
    const changed = Uint8Array.from(withTrailer.raw);
    changed[changed.length - 8]! ^= 0xff;
    expect(verifyIntegrity(decoded(changed), KEY)).toBe(true);
    expect(verifyIntegrity(decoded(base().integrity(KEY).fingerprint().build()), KEY)).toBe(true);
  });

  it('uses the first MESSAGE-INTEGRITY when there are two', () => {
    const msg = decoded(base().integrity(KEY).integrity(shortTermKey('other')).build());
    expect(verifyIntegrity(msg, KEY)).toBe(true);
    expect(verifyIntegrity(msg, shortTermKey('other'))).toBe(false);
  });
});

describe('MESSAGE-INTEGRITY-SHA256', () => {
  const base = () =>
    new StunBuilder(METHOD_BINDING, CLASS_REQUEST, TXID)
      .addText(ATTR_USERNAME, 'ufrag:ufrag')
      .addU32(0x0024, 7);

  /** A message ending in MESSAGE-INTEGRITY-SHA256 truncated to `n` bytes, computed with Node's HMAC. */
  function truncatedSha256(n: number): Uint8Array {
    const prefix = base().build();
    const covered = Uint8Array.from(prefix);
    new DataView(covered.buffer).setUint16(2, prefix.length - 20 + 4 + n);
    const mac = createHmac('sha256', KEY).update(covered).digest().subarray(0, n);
    const out = cat(covered, attr(ATTR_MESSAGE_INTEGRITY_SHA256, mac));
    new DataView(out.buffer).setUint16(2, out.length - 20);
    return out;
  }

  it('verifies when built with the same key, and not with another', () => {
    const msg = decoded(base().integritySha256(KEY).fingerprint().build());
    expect(attribute(msg, ATTR_MESSAGE_INTEGRITY_SHA256)).toHaveLength(32);
    expect(verifyIntegritySha256(msg, KEY)).toBe(true);
    expect(verifyIntegritySha256(msg, shortTermKey('a-short-term-passworD'))).toBe(false);
    expect(verifyIntegrity(msg, KEY)).toBe(false);
    expect(verifyFingerprint(msg)).toBe(true);
  });

  it('matches an independent HMAC-SHA256', () => {
    expect(hex(base().integritySha256(KEY).build())).toBe(hex(truncatedSha256(32)));
  });

  it('fails after a flipped bit anywhere up to the end of the attribute', () => {
    const bytes = base().integritySha256(KEY).build();
    for (let i = 0; i < bytes.length; i++) {
      const t = Uint8Array.from(bytes);
      t[i]! ^= 0x10;
      const r = decodeStun(t);
      if (r.ok) expect(verifyIntegritySha256(r.value, KEY), `byte ${i}`).toBe(false);
    }
  });

  it('accepts a value truncated to 16–32 bytes in steps of 4 (RFC 8489 §14.6)', () => {
    for (const n of [16, 20, 24, 28, 32]) {
      expect(verifyIntegritySha256(decoded(truncatedSha256(n)), KEY), `${n} bytes`).toBe(true);
    }
    for (const n of [4, 12, 18, 30]) {
      expect(verifyIntegritySha256(decoded(truncatedSha256(n)), KEY), `${n} bytes`).toBe(false);
    }
  });
});

describe('FINGERPRINT', () => {
  const base = () =>
    new StunBuilder(METHOD_BINDING, CLASS_SUCCESS, TXID).addXorAddress(ATTR_XOR_MAPPED_ADDRESS, {
      ip: v4(198, 51, 100, 7),
      port: 40000,
    });

  it('is undefined when the message has none', () => {
    expect(verifyFingerprint(decoded(base().build()))).toBeUndefined();
  });

  it('is false when FINGERPRINT is not the last attribute', () => {
    const msg = decoded(base().fingerprint().addText(ATTR_SOFTWARE, 'late').build());
    expect(verifyFingerprint(msg)).toBe(false);
  });

  it('is false when its value is not 4 bytes', () => {
    expect(verifyFingerprint(decoded(base().add(ATTR_FINGERPRINT, new Uint8Array(8)).build()))).toBe(false);
  });

  it('is false when the CRC does not match', () => {
    const bytes = base().fingerprint().build();
    bytes[bytes.length - 1]! ^= 1;
    expect(verifyFingerprint(decoded(bytes))).toBe(false);
    const body = base().fingerprint().build();
    body[25]! ^= 1;
    expect(verifyFingerprint(decoded(body))).toBe(false);
  });

  it('covers MESSAGE-INTEGRITY and what precedes it', () => {
    const msg = decoded(base().addText(ATTR_SOFTWARE, 's').integrity(KEY).fingerprint().build());
    expect(verifyIntegrity(msg, KEY)).toBe(true);
    expect(verifyFingerprint(msg)).toBe(true);
  });
});

describe('StunBuilder', () => {
  it('refuses a transaction id that is not 12 bytes', () => {
    expect(() => new StunBuilder(METHOD_BINDING, CLASS_REQUEST, new Uint8Array(11))).toThrow(RangeError);
    expect(() => new StunBuilder(METHOD_BINDING, CLASS_REQUEST, new Uint8Array(16))).toThrow(RangeError);
  });

  it('writes the header length, cookie and zero padding', () => {
    const bytes = new StunBuilder(METHOD_BINDING, CLASS_REQUEST, TXID)
      .addText(ATTR_SOFTWARE, 'abcde')
      .build();
    expect(hex(bytes)).toBe(`0001000c2112a442${hex(TXID)}80220005${'6162636465'}000000`);
  });
});
