import { hmac } from '@noble/hashes/hmac.js';
import { md5, sha1 } from '@noble/hashes/legacy.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { readU16, writeU16 } from '../bytes.js';
import { err, ok, type Result, type WireError } from '../result.js';
import {
  ATTR_ERROR_CODE,
  ATTR_FINGERPRINT,
  ATTR_MESSAGE_INTEGRITY,
  ATTR_MESSAGE_INTEGRITY_SHA256,
  FAMILY_IPV4,
  FAMILY_IPV6,
  FINGERPRINT_XOR,
  STUN_HEADER_BYTES,
  STUN_MAGIC_COOKIE,
  type StunClass,
  TRANSACTION_ID_BYTES,
} from './constants.js';

/**
 * STUN messages (RFC 8489 §5, §14): decoding with typed errors, a builder, the address,
 * error-code and integrity attributes. Shared by the ICE agent (short-term credentials) and the
 * TURN client (long-term credentials). Decoding copies nothing but the header fields: attribute
 * values are views into the input, valid while it is.
 */

export type StunErrorCode =
  | 'stun.truncated'
  | 'stun.not-stun'
  | 'stun.bad-cookie'
  | 'stun.bad-length'
  | 'stun.bad-attribute'
  | 'stun.bad-address'
  | 'stun.bad-error-code'
  | 'stun.bad-value';
export type StunError = WireError<StunErrorCode>;

export interface StunAttribute {
  readonly type: number;
  /** The value without padding (a view into the message). */
  readonly value: Uint8Array;
  /** Offset of the attribute's type field from the start of the message. */
  readonly offset: number;
}

export interface StunMessage {
  readonly method: number;
  readonly cls: StunClass;
  /** 12 bytes (a copy). */
  readonly transactionId: Uint8Array;
  /** In wire order; repeated types are kept (the first one counts, RFC 8489 §14). */
  readonly attributes: readonly StunAttribute[];
  /** The whole message (a view into the input). */
  readonly raw: Uint8Array;
}

export interface TransportAddress {
  /** 4 or 16 bytes. */
  readonly ip: Uint8Array;
  readonly port: number;
}

function fail(code: StunErrorCode, message: string): { ok: false; error: StunError } {
  return err({ code, message });
}

/**
 * Cheap test whether `buf[off, off+len)` can be a STUN message: top two bits clear, the magic
 * cookie, and a length field that is a multiple of 4 and matches the datagram (RFC 8489 §6.3,
 * what lets STUN, TURN channel data and WireGuard share one port).
 */
export function looksLikeStun(buf: Uint8Array, off: number, len: number): boolean {
  if (len < STUN_HEADER_BYTES || (buf[off]! & 0xc0) !== 0) return false;
  const length = readU16(buf, off + 2);
  return (
    (length & 3) === 0 &&
    length + STUN_HEADER_BYTES === len &&
    buf[off + 4] === 0x21 &&
    buf[off + 5] === 0x12 &&
    buf[off + 6] === 0xa4 &&
    buf[off + 7] === 0x42
  );
}

/** The message type field: method bits M0–M11 interleaved with class bits C0, C1 (RFC 8489 §5). */
export function messageType(method: number, cls: StunClass): number {
  return (
    (method & 0x000f) |
    ((method & 0x0070) << 1) |
    ((method & 0x0f80) << 2) |
    ((cls & 1) << 4) |
    ((cls & 2) << 7)
  );
}

export function decodeStun(buf: Uint8Array, off = 0, len = buf.length - off): Result<StunMessage, StunError> {
  if (len < STUN_HEADER_BYTES) return fail('stun.truncated', `${len} bytes, a STUN header has 20`);
  const type = readU16(buf, off);
  if ((type & 0xc000) !== 0) return fail('stun.not-stun', 'the two top bits of a STUN message are zero');
  const length = readU16(buf, off + 2);
  const cookie = ((buf[off + 4]! << 24) | (buf[off + 5]! << 16) | (buf[off + 6]! << 8) | buf[off + 7]!) >>> 0;
  if (cookie !== STUN_MAGIC_COOKIE)
    return fail('stun.bad-cookie', 'no magic cookie (RFC 3489 is not spoken)');
  if ((length & 3) !== 0) return fail('stun.bad-length', `message length ${length} is not a multiple of 4`);
  if (length + STUN_HEADER_BYTES !== len) {
    return fail('stun.bad-length', `message length ${length} + 20 does not match the ${len} bytes received`);
  }
  const method = (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
  const cls = (((type & 0x0010) >> 4) | ((type & 0x0100) >> 7)) as StunClass;
  const raw = buf.subarray(off, off + len);
  const attributes: StunAttribute[] = [];
  let at = STUN_HEADER_BYTES;
  while (at < len) {
    if (at + 4 > len) return fail('stun.bad-attribute', `attribute header at byte ${at} is truncated`);
    const attrType = readU16(raw, at);
    const attrLen = readU16(raw, at + 2);
    const padded = (attrLen + 3) & ~3;
    if (at + 4 + padded > len) {
      return fail(
        'stun.bad-attribute',
        `attribute 0x${attrType.toString(16)} of ${attrLen} bytes overruns the message`,
      );
    }
    attributes.push({ type: attrType, value: raw.subarray(at + 4, at + 4 + attrLen), offset: at });
    at += 4 + padded;
  }
  return ok({
    method,
    cls,
    transactionId: raw.slice(8, 8 + TRANSACTION_ID_BYTES),
    attributes,
    raw,
  });
}

/** The first attribute of `type`, or undefined. */
export function attribute(msg: StunMessage, type: number): Uint8Array | undefined {
  for (const a of msg.attributes) if (a.type === type) return a.value;
  return undefined;
}

/**
 * Comprehension-required attribute types (0x0000–0x7FFF) of `msg` that are not in `known`: a
 * request carrying one must be refused (RFC 8489 §6.3.1), a response ignored.
 */
export function unknownRequired(msg: StunMessage, known: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (const a of msg.attributes)
    if (a.type < 0x8000 && !known.has(a.type) && !out.includes(a.type)) out.push(a.type);
  return out;
}

// --- Attribute values ---------------------------------------------------------------------------

/** XOR-MAPPED-ADDRESS and friends (RFC 8489 §14.2). */
export function decodeXorAddress(
  value: Uint8Array,
  transactionId: Uint8Array,
): Result<TransportAddress, StunError> {
  if (value.length < 4) return fail('stun.bad-address', 'address attribute shorter than 4 bytes');
  const family = value[1]!;
  const port = readU16(value, 2) ^ (STUN_MAGIC_COOKIE >>> 16);
  const size = family === FAMILY_IPV4 ? 4 : family === FAMILY_IPV6 ? 16 : 0;
  if (size === 0)
    return fail('stun.bad-address', `address family ${family} is neither IPv4 (1) nor IPv6 (2)`);
  if (value.length !== 4 + size)
    return fail('stun.bad-address', `IPv${size === 4 ? 4 : 6} address attribute of ${value.length} bytes`);
  const ip = new Uint8Array(size);
  const mask = xorMask(transactionId);
  for (let i = 0; i < size; i++) ip[i] = value[4 + i]! ^ mask[i]!;
  return ok({ ip, port });
}

export function encodeXorAddress(addr: TransportAddress, transactionId: Uint8Array): Uint8Array {
  const size = addr.ip.length;
  const out = new Uint8Array(4 + size);
  out[1] = size === 4 ? FAMILY_IPV4 : FAMILY_IPV6;
  writeU16(out, 2, addr.port ^ (STUN_MAGIC_COOKIE >>> 16));
  const mask = xorMask(transactionId);
  for (let i = 0; i < size; i++) out[4 + i] = addr.ip[i]! ^ mask[i]!;
  return out;
}

function xorMask(transactionId: Uint8Array): Uint8Array {
  const m = new Uint8Array(16);
  m[0] = 0x21;
  m[1] = 0x12;
  m[2] = 0xa4;
  m[3] = 0x42;
  m.set(transactionId.subarray(0, TRANSACTION_ID_BYTES), 4);
  return m;
}

/** MAPPED-ADDRESS (plain, RFC 8489 §14.1). */
export function decodeAddress(value: Uint8Array): Result<TransportAddress, StunError> {
  if (value.length < 4) return fail('stun.bad-address', 'address attribute shorter than 4 bytes');
  const family = value[1]!;
  const size = family === FAMILY_IPV4 ? 4 : family === FAMILY_IPV6 ? 16 : 0;
  if (size === 0 || value.length !== 4 + size) return fail('stun.bad-address', 'malformed MAPPED-ADDRESS');
  return ok({ ip: value.slice(4), port: readU16(value, 2) });
}

/** ERROR-CODE (RFC 8489 §14.8): class × 100 + number, and the reason phrase. */
export function decodeErrorCode(value: Uint8Array): Result<{ code: number; reason: string }, StunError> {
  if (value.length < 4) return fail('stun.bad-error-code', 'ERROR-CODE shorter than 4 bytes');
  const cls = value[2]! & 0x07;
  const number = value[3]!;
  if (cls < 3 || cls > 6 || number > 99)
    return fail('stun.bad-error-code', `error code ${cls}${number} is out of range`);
  return ok({ code: cls * 100 + number, reason: utf8(value.subarray(4)) });
}

export function encodeErrorCode(code: number, reason: string): Uint8Array {
  const text = new TextEncoder().encode(reason);
  const out = new Uint8Array(4 + text.length);
  out[2] = Math.floor(code / 100) & 0x07;
  out[3] = code % 100;
  out.set(text, 4);
  return out;
}

export function decodeU32(value: Uint8Array): Result<number, StunError> {
  if (value.length !== 4) return fail('stun.bad-value', `expected 4 bytes, got ${value.length}`);
  return ok(((value[0]! << 24) | (value[1]! << 16) | (value[2]! << 8) | value[3]!) >>> 0);
}

export function encodeU32(v: number): Uint8Array {
  const out = new Uint8Array(4);
  out[0] = v >>> 24;
  out[1] = v >>> 16;
  out[2] = v >>> 8;
  out[3] = v;
  return out;
}

/** UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): a list of 16-bit types. */
export function decodeTypeList(value: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < value.length; i += 2) out.push(readU16(value, i));
  return out;
}

export function utf8(value: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false }).decode(value);
}

// --- Integrity ---------------------------------------------------------------------------------

/** Short-term credential key: the password itself (RFC 8489 §9.1.1; ICE passwords are ASCII). */
export function shortTermKey(password: string): Uint8Array {
  return new TextEncoder().encode(password);
}

/** Long-term credential key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2). */
export function longTermKey(username: string, realm: string, password: string): Uint8Array {
  return md5(new TextEncoder().encode(`${username}:${realm}:${password}`));
}

/**
 * Whether the first MESSAGE-INTEGRITY (HMAC-SHA1) of `msg` verifies with `key`: computed over
 * the message up to that attribute, with the length field counting through it (§14.5). Returns
 * false when the attribute is absent.
 */
export function verifyIntegrity(msg: StunMessage, key: Uint8Array): boolean {
  return verifyHmac(msg, key, ATTR_MESSAGE_INTEGRITY, 20, (k, d) => hmac(sha1, k, d));
}

/** The same for MESSAGE-INTEGRITY-SHA256 (§14.6; 16 to 32 bytes, truncated HMAC). */
export function verifyIntegritySha256(msg: StunMessage, key: Uint8Array): boolean {
  return verifyHmac(msg, key, ATTR_MESSAGE_INTEGRITY_SHA256, 0, (k, d) => hmac(sha256, k, d));
}

function verifyHmac(
  msg: StunMessage,
  key: Uint8Array,
  type: number,
  exactLength: number,
  mac: (key: Uint8Array, data: Uint8Array) => Uint8Array,
): boolean {
  const a = msg.attributes.find((x) => x.type === type);
  if (!a) return false;
  const n = a.value.length;
  if (exactLength > 0 ? n !== exactLength : n < 16 || n > 32 || (n & 3) !== 0) return false;
  const covered = Uint8Array.from(msg.raw.subarray(0, a.offset));
  writeU16(covered, 2, a.offset + 4 + n - STUN_HEADER_BYTES);
  const expected = mac(key, covered);
  // Constant time: the comparison must not tell an attacker how many bytes matched.
  let diff = 0;
  for (let i = 0; i < n; i++) diff |= expected[i]! ^ a.value[i]!;
  return diff === 0;
}

/**
 * Whether FINGERPRINT verifies; `undefined` when the message has none. It must be the last
 * attribute (§14.7).
 */
export function verifyFingerprint(msg: StunMessage): boolean | undefined {
  const last = msg.attributes[msg.attributes.length - 1];
  const any = msg.attributes.some((a) => a.type === ATTR_FINGERPRINT);
  if (!any) return undefined;
  if (!last || last.type !== ATTR_FINGERPRINT || last.value.length !== 4) return false;
  const covered = msg.raw.subarray(0, last.offset);
  const want = (crc32(covered) ^ FINGERPRINT_XOR) >>> 0;
  const got =
    ((last.value[0]! << 24) | (last.value[1]! << 16) | (last.value[2]! << 8) | last.value[3]!) >>> 0;
  return want === got;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO 3309 / ITU-T V.42, as FINGERPRINT uses). */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// --- Building ----------------------------------------------------------------------------------

/**
 * Builds one message. Attributes are written in call order; `integrity` and `fingerprint` must
 * come last (in that order), as they cover what precedes them.
 */
export class StunBuilder {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  constructor(
    private readonly method: number,
    private readonly cls: StunClass,
    readonly transactionId: Uint8Array,
  ) {
    if (transactionId.length !== TRANSACTION_ID_BYTES) throw new RangeError('a transaction id has 12 bytes');
  }

  add(type: number, value: Uint8Array): this {
    const padded = (value.length + 3) & ~3;
    const a = new Uint8Array(4 + padded);
    writeU16(a, 0, type);
    writeU16(a, 2, value.length);
    a.set(value, 4);
    this.parts.push(a);
    this.size += a.length;
    return this;
  }

  addText(type: number, text: string): this {
    return this.add(type, new TextEncoder().encode(text));
  }

  addU32(type: number, v: number): this {
    return this.add(type, encodeU32(v));
  }

  addXorAddress(type: number, addr: TransportAddress): this {
    return this.add(type, encodeXorAddress(addr, this.transactionId));
  }

  addErrorCode(code: number, reason: string): this {
    return this.add(ATTR_ERROR_CODE, encodeErrorCode(code, reason));
  }

  /** MESSAGE-INTEGRITY over everything so far (HMAC-SHA1, 20 bytes). */
  integrity(key: Uint8Array): this {
    const covered = this.header(this.size + 24);
    const mac = hmac(sha1, key, concat([covered, ...this.parts]));
    return this.add(ATTR_MESSAGE_INTEGRITY, mac);
  }

  /** MESSAGE-INTEGRITY-SHA256 over everything so far (32 bytes). */
  integritySha256(key: Uint8Array): this {
    const covered = this.header(this.size + 36);
    const mac = hmac(sha256, key, concat([covered, ...this.parts]));
    return this.add(ATTR_MESSAGE_INTEGRITY_SHA256, mac);
  }

  /** FINGERPRINT over everything so far. */
  fingerprint(): this {
    const covered = concat([this.header(this.size + 8), ...this.parts]);
    return this.addU32(ATTR_FINGERPRINT, (crc32(covered) ^ FINGERPRINT_XOR) >>> 0);
  }

  build(): Uint8Array {
    return concat([this.header(this.size), ...this.parts]);
  }

  private header(length: number): Uint8Array {
    const h = new Uint8Array(STUN_HEADER_BYTES);
    writeU16(h, 0, messageType(this.method, this.cls));
    writeU16(h, 2, length);
    h[4] = 0x21;
    h[5] = 0x12;
    h[6] = 0xa4;
    h[7] = 0x42;
    h.set(this.transactionId, 8);
    return h;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
