import { createHash, createHmac } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  ATTR_FINGERPRINT,
  ATTR_ICE_CONTROLLED,
  ATTR_MESSAGE_INTEGRITY,
  ATTR_NONCE,
  ATTR_PRIORITY,
  ATTR_REALM,
  ATTR_SOFTWARE,
  ATTR_USERNAME,
  ATTR_XOR_MAPPED_ADDRESS,
  CLASS_REQUEST,
  CLASS_SUCCESS,
  FINGERPRINT_XOR,
  METHOD_BINDING,
  type StunClass,
} from '../../../../src/wire/stun/constants.js';
import {
  attribute,
  decodeStun,
  decodeU32,
  decodeXorAddress,
  longTermKey,
  type StunAttribute,
  StunBuilder,
  type StunMessage,
  shortTermKey,
  utf8,
  verifyFingerprint,
  verifyIntegrity,
} from '../../../../src/wire/stun/message.js';
import { v4, v6 } from '../../../support/packet-builder.js';

/**
 * The four sample messages of RFC 5769 (§2.1–§2.4), typed in from the RFC text. Each one's
 * MESSAGE-INTEGRITY and FINGERPRINT were computed by the RFC's authors, so a message that
 * verifies here is also a check that it was transcribed right.
 */

const unhex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** §2.1–§2.3 use this short-term password; §2.4 uses long-term credentials. */
const SHORT_TERM_PASSWORD = 'VOkJxbRl1RmTxUk/WvJxBt';
/** §2.4: "マトリックス" is unchanged by SASLprep; the password is given after SASLprep. */
const LT_USERNAME = '\u30de\u30c8\u30ea\u30c3\u30af\u30b9';
const LT_PASSWORD = 'TheMatrIX';
const LT_REALM = 'example.org';
const LT_NONCE = 'f//499k954d6OL34oL9FSTvy64sA';

// RFC 5769 §2.1 Sample Request (short-term MESSAGE-INTEGRITY, FINGERPRINT).
const SAMPLE_REQUEST = unhex(`
  00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
  80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
  00 24 00 04  6e 00 01 ff
  80 29 00 08  93 2f f9 b1  51 26 3b 36
  00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
  00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
  80 28 00 04  e5 7a 3b cf`);

// RFC 5769 §2.2 Sample IPv4 Response.
const SAMPLE_IPV4_RESPONSE = unhex(`
  01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
  80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
  00 20 00 08  00 01 a1 47  e1 12 a6 43
  00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
  80 28 00 04  c0 7d 4c 96`);

// RFC 5769 §2.3 Sample IPv6 Response.
const SAMPLE_IPV6_RESPONSE = unhex(`
  01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
  80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
  00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
  00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
  80 28 00 04  c8 fb 0b 4c`);

// RFC 5769 §2.4 Sample Request with Long-Term Authentication (no FINGERPRINT).
const SAMPLE_LONG_TERM_REQUEST = unhex(`
  00 01 00 60  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
  00 06 00 12  e3 83 9e e3  83 88 e3 83  aa e3 83 83  e3 82 af e3  82 b9 00 00
  00 15 00 1c  66 2f 2f 34  39 39 6b 39  35 34 64 36  4f 4c 33 34  6f 4c 39 46  53 54 76 79  36 34 73 41
  00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
  00 08 00 14  f6 70 24 65  6d d6 4a 3e  02 b8 e0 71  2e 85 c9 a2  8c a8 96 66`);

interface Vector {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** The message length field, as the RFC prints it. */
  readonly lengthField: number;
  readonly method: number;
  readonly cls: StunClass;
  readonly transactionId: string;
  readonly key: Uint8Array;
  readonly attributeTypes: readonly number[];
  /** The same attributes, in the same order, through our builder (before integrity). */
  readonly rebuild: (b: StunBuilder) => StunBuilder;
}

const VECTORS: readonly Vector[] = [
  {
    name: '§2.1 sample request',
    bytes: SAMPLE_REQUEST,
    lengthField: 0x58,
    method: METHOD_BINDING,
    cls: CLASS_REQUEST,
    transactionId: 'b7e7a701bc34d686fa87dfae',
    key: shortTermKey(SHORT_TERM_PASSWORD),
    attributeTypes: [
      ATTR_SOFTWARE,
      ATTR_PRIORITY,
      ATTR_ICE_CONTROLLED,
      ATTR_USERNAME,
      ATTR_MESSAGE_INTEGRITY,
      ATTR_FINGERPRINT,
    ],
    rebuild: (b) =>
      b
        .addText(ATTR_SOFTWARE, 'STUN test client')
        .addU32(ATTR_PRIORITY, 0x6e0001ff)
        .add(ATTR_ICE_CONTROLLED, unhex('932ff9b151263b36'))
        .addText(ATTR_USERNAME, 'evtj:h6vY'),
  },
  {
    name: '§2.2 sample IPv4 response',
    bytes: SAMPLE_IPV4_RESPONSE,
    lengthField: 0x3c,
    method: METHOD_BINDING,
    cls: CLASS_SUCCESS,
    transactionId: 'b7e7a701bc34d686fa87dfae',
    key: shortTermKey(SHORT_TERM_PASSWORD),
    attributeTypes: [ATTR_SOFTWARE, ATTR_XOR_MAPPED_ADDRESS, ATTR_MESSAGE_INTEGRITY, ATTR_FINGERPRINT],
    rebuild: (b) =>
      b
        .addText(ATTR_SOFTWARE, 'test vector')
        .addXorAddress(ATTR_XOR_MAPPED_ADDRESS, { ip: v4(192, 0, 2, 1), port: 32853 }),
  },
  {
    name: '§2.3 sample IPv6 response',
    bytes: SAMPLE_IPV6_RESPONSE,
    lengthField: 0x48,
    method: METHOD_BINDING,
    cls: CLASS_SUCCESS,
    transactionId: 'b7e7a701bc34d686fa87dfae',
    key: shortTermKey(SHORT_TERM_PASSWORD),
    attributeTypes: [ATTR_SOFTWARE, ATTR_XOR_MAPPED_ADDRESS, ATTR_MESSAGE_INTEGRITY, ATTR_FINGERPRINT],
    rebuild: (b) =>
      b.addText(ATTR_SOFTWARE, 'test vector').addXorAddress(ATTR_XOR_MAPPED_ADDRESS, {
        ip: v6(0x2001, 0xdb8, 0x1234, 0x5678, 0x11, 0x2233, 0x4455, 0x6677),
        port: 32853,
      }),
  },
  {
    name: '§2.4 sample request with long-term authentication',
    bytes: SAMPLE_LONG_TERM_REQUEST,
    lengthField: 0x60,
    method: METHOD_BINDING,
    cls: CLASS_REQUEST,
    transactionId: '78ad3433c6ad72c029da412e',
    key: longTermKey(LT_USERNAME, LT_REALM, LT_PASSWORD),
    attributeTypes: [ATTR_USERNAME, ATTR_NONCE, ATTR_REALM, ATTR_MESSAGE_INTEGRITY],
    rebuild: (b) =>
      b.addText(ATTR_USERNAME, LT_USERNAME).addText(ATTR_NONCE, LT_NONCE).addText(ATTR_REALM, LT_REALM),
  },
];

function decoded(bytes: Uint8Array): StunMessage {
  const r = decodeStun(bytes);
  if (!r.ok) throw new Error(`expected a STUN message, got ${r.error.code}: ${r.error.message}`);
  return r.value;
}

function only(msg: StunMessage, type: number): StunAttribute {
  const a = msg.attributes.find((x) => x.type === type);
  if (!a) throw new Error(`no attribute 0x${type.toString(16)}`);
  return a;
}

/** Offsets of the padding bytes that follow each attribute value. */
function paddingOffsets(msg: StunMessage): number[] {
  const out: number[] = [];
  for (const a of msg.attributes) {
    const end = a.offset + 4 + a.value.length;
    for (let i = end; i < a.offset + 4 + ((a.value.length + 3) & ~3); i++) out.push(i);
  }
  return out;
}

/** Offsets of the MESSAGE-INTEGRITY and FINGERPRINT values, whose bytes depend on the padding. */
function checkValueOffsets(msg: StunMessage): number[] {
  const out: number[] = [];
  for (const a of msg.attributes) {
    if (a.type !== ATTR_MESSAGE_INTEGRITY && a.type !== ATTR_FINGERPRINT) continue;
    for (let i = 0; i < a.value.length; i++) out.push(a.offset + 4 + i);
  }
  return out;
}

/**
 * The vector as a zero-padding sender would have sent it: padding bytes set to zero, then
 * MESSAGE-INTEGRITY and FINGERPRINT recomputed with Node's own HMAC-SHA1 and CRC-32, so that the
 * comparison does not lean on the code under test.
 */
function resealedWithZeroPadding(bytes: Uint8Array, key: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  const msg = decoded(out);
  for (const i of paddingOffsets(msg)) out[i] = 0;
  const mi = msg.attributes.find((a) => a.type === ATTR_MESSAGE_INTEGRITY);
  if (mi) {
    const covered = Uint8Array.from(out.subarray(0, mi.offset));
    new DataView(covered.buffer).setUint16(2, mi.offset + 24 - 20);
    out.set(createHmac('sha1', key).update(covered).digest(), mi.offset + 4);
  }
  const fp = msg.attributes.find((a) => a.type === ATTR_FINGERPRINT);
  if (fp) {
    const crc = (zlibCrc32(out.subarray(0, fp.offset)) ^ FINGERPRINT_XOR) >>> 0;
    new DataView(out.buffer).setUint32(fp.offset + 4, crc);
  }
  return out;
}

/**
 * The flips (of one bit, or of a whole byte) in `[from, to)` that still leave a decodable
 * message passing `check`.
 */
function survivingFlips(
  bytes: Uint8Array,
  from: number,
  to: number,
  check: (msg: StunMessage) => boolean,
): string[] {
  const survivors: string[] = [];
  for (let i = from; i < to; i++) {
    for (const mask of [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff]) {
      const t = Uint8Array.from(bytes);
      t[i]! ^= mask;
      const r = decodeStun(t);
      if (r.ok && check(r.value)) survivors.push(`byte ${i} ^ 0x${mask.toString(16)}`);
    }
  }
  return survivors;
}

describe.each(VECTORS)('RFC 5769 $name', (v) => {
  it('has the length the RFC prints', () => {
    expect(v.bytes.length).toBe(20 + v.lengthField);
    expect((v.bytes[2]! << 8) | v.bytes[3]!).toBe(v.lengthField);
  });

  it('decodes with the right method, class, transaction id and attribute order', () => {
    const msg = decoded(v.bytes);
    expect(msg.method).toBe(v.method);
    expect(msg.cls).toBe(v.cls);
    expect(hex(msg.transactionId)).toBe(v.transactionId);
    expect(msg.attributes.map((a) => a.type)).toEqual(v.attributeTypes);
    expect(msg.raw.length).toBe(v.bytes.length);
  });

  it('verifies MESSAGE-INTEGRITY with the right key and not with a wrong one', () => {
    const msg = decoded(v.bytes);
    expect(verifyIntegrity(msg, v.key)).toBe(true);
    expect(verifyIntegrity(msg, shortTermKey('VOkJxbRl1RmTxUk/WvJxBT'))).toBe(false);
    expect(verifyIntegrity(msg, longTermKey(LT_USERNAME, LT_REALM, 'TheMatrix'))).toBe(false);
    expect(verifyIntegrity(msg, new Uint8Array(0))).toBe(false);
  });

  it('fails MESSAGE-INTEGRITY after any bit or byte flip in the covered region or the MAC', () => {
    const mi = only(decoded(v.bytes), ATTR_MESSAGE_INTEGRITY);
    expect(survivingFlips(v.bytes, 0, mi.offset + 24, (m) => verifyIntegrity(m, v.key))).toEqual([]);
  });

  it('keeps MESSAGE-INTEGRITY valid when only bytes after it change', () => {
    // Only FINGERPRINT may follow MESSAGE-INTEGRITY, and it is not covered by it (RFC 8489 §14.5).
    const mi = only(decoded(v.bytes), ATTR_MESSAGE_INTEGRITY);
    for (let i = mi.offset + 24; i < v.bytes.length; i++) {
      const t = Uint8Array.from(v.bytes);
      t[i]! ^= 0x01;
      const r = decodeStun(t);
      if (r.ok) expect(verifyIntegrity(r.value, v.key), `byte ${i}`).toBe(true);
    }
  });

  const hasFingerprint = v.attributeTypes.includes(ATTR_FINGERPRINT);

  if (hasFingerprint) {
    it('verifies FINGERPRINT and fails it after any bit or byte flip', () => {
      expect(verifyFingerprint(decoded(v.bytes))).toBe(true);
      expect(survivingFlips(v.bytes, 0, v.bytes.length, (m) => verifyFingerprint(m) === true)).toEqual([]);
    });
  } else {
    it('reports the absent FINGERPRINT as undefined, not as a failure', () => {
      expect(verifyFingerprint(decoded(v.bytes))).toBeUndefined();
    });
  }

  it('is rebuilt by StunBuilder byte for byte, apart from the padding and what covers it', () => {
    // RFC 5769 pads §2.1–§2.3 with spaces (0x20); our builder pads with zeros, as RFC 8489 §14
    // recommends. Those padding bytes differ, and so do MESSAGE-INTEGRITY and FINGERPRINT,
    // which cover them. Every other byte must match; §2.4 pads with zeros, so all of it does.
    const msg = decoded(v.bytes);
    let b = v.rebuild(new StunBuilder(v.method, v.cls, unhex(v.transactionId))).integrity(v.key);
    if (v.attributeTypes.includes(ATTR_FINGERPRINT)) b = b.fingerprint();
    const built = b.build();
    expect(built.length).toBe(v.bytes.length);

    const padding = paddingOffsets(msg);
    const spacePadded = padding.some((i) => v.bytes[i] !== 0);
    const skip = new Set(spacePadded ? [...padding, ...checkValueOffsets(msg)] : []);
    const differing: number[] = [];
    for (let i = 0; i < built.length; i++) if (!skip.has(i) && built[i] !== v.bytes[i]) differing.push(i);
    expect(differing).toEqual([]);

    // And with zero padding and independently recomputed MAC and CRC, all bytes match.
    expect(hex(built)).toBe(hex(resealedWithZeroPadding(v.bytes, v.key)));
    if (!spacePadded) expect(hex(built)).toBe(hex(v.bytes));
  });

  it('produces integrity and fingerprint that verify when rebuilt', () => {
    let b = v.rebuild(new StunBuilder(v.method, v.cls, unhex(v.transactionId))).integrity(v.key);
    if (v.attributeTypes.includes(ATTR_FINGERPRINT)) b = b.fingerprint();
    const msg = decoded(b.build());
    expect(verifyIntegrity(msg, v.key)).toBe(true);
    expect(verifyFingerprint(msg)).toBe(v.attributeTypes.includes(ATTR_FINGERPRINT) ? true : undefined);
  });
});

describe('RFC 5769 documented attribute values', () => {
  it('§2.1 carries SOFTWARE, PRIORITY, ICE-CONTROLLED and USERNAME (padding excluded)', () => {
    const msg = decoded(SAMPLE_REQUEST);
    expect(utf8(attribute(msg, ATTR_SOFTWARE)!)).toBe('STUN test client');
    expect(decodeU32(attribute(msg, ATTR_PRIORITY)!)).toEqual({ ok: true, value: 0x6e0001ff });
    expect(hex(attribute(msg, ATTR_ICE_CONTROLLED)!)).toBe('932ff9b151263b36');
    expect(utf8(attribute(msg, ATTR_USERNAME)!)).toBe('evtj:h6vY');
    expect(attribute(msg, ATTR_MESSAGE_INTEGRITY)).toHaveLength(20);
    expect(hex(attribute(msg, ATTR_FINGERPRINT)!)).toBe('e57a3bcf');
  });

  it('§2.2 maps to 192.0.2.1 port 32853', () => {
    const msg = decoded(SAMPLE_IPV4_RESPONSE);
    expect(utf8(attribute(msg, ATTR_SOFTWARE)!)).toBe('test vector');
    const addr = decodeXorAddress(attribute(msg, ATTR_XOR_MAPPED_ADDRESS)!, msg.transactionId);
    expect(addr.ok && { ip: [...addr.value.ip], port: addr.value.port }).toEqual({
      ip: [192, 0, 2, 1],
      port: 32853,
    });
  });

  it('§2.3 maps to 2001:db8:1234:5678:11:2233:4455:6677 port 32853', () => {
    const msg = decoded(SAMPLE_IPV6_RESPONSE);
    expect(utf8(attribute(msg, ATTR_SOFTWARE)!)).toBe('test vector');
    const addr = decodeXorAddress(attribute(msg, ATTR_XOR_MAPPED_ADDRESS)!, msg.transactionId);
    expect(addr.ok && { ip: hex(addr.value.ip), port: addr.value.port }).toEqual({
      ip: '20010db8123456780011223344556677',
      port: 32853,
    });
  });

  it('§2.4 carries the UTF-8 USERNAME, NONCE and REALM', () => {
    const msg = decoded(SAMPLE_LONG_TERM_REQUEST);
    expect(utf8(attribute(msg, ATTR_USERNAME)!)).toBe(LT_USERNAME);
    expect(attribute(msg, ATTR_USERNAME)).toHaveLength(18);
    expect(utf8(attribute(msg, ATTR_NONCE)!)).toBe(LT_NONCE);
    expect(utf8(attribute(msg, ATTR_REALM)!)).toBe(LT_REALM);
  });

  it('§2.4 long-term key is MD5(username:realm:password) over UTF-8', () => {
    const want = createHash('md5').update(`${LT_USERNAME}:${LT_REALM}:${LT_PASSWORD}`, 'utf8').digest();
    expect(hex(longTermKey(LT_USERNAME, LT_REALM, LT_PASSWORD))).toBe(want.toString('hex'));
  });
});
