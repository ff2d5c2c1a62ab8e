import {
  COOKIE_REPLY_BYTES,
  DATA_MIN_BYTES,
  HANDSHAKE_INITIATION_BYTES,
  HANDSHAKE_RESPONSE_BYTES,
  MSG_COOKIE_REPLY,
  MSG_HANDSHAKE_INITIATION,
  MSG_HANDSHAKE_RESPONSE,
  MSG_TRANSPORT_DATA,
} from './constants.js';

/** Little-endian u32 (WireGuard indices and types are little-endian on the wire). */
export function readU32LE(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

export function writeU32LE(b: Uint8Array, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
  b[at + 2] = v >>> 16;
  b[at + 3] = v >>> 24;
}

/** The 64-bit little-endian transport counter as a number (exact below 2^53; larger reads as Infinity). */
export function readCounter(b: Uint8Array, at: number): number {
  const lo = readU32LE(b, at);
  const hi = readU32LE(b, at + 4);
  return hi >= 0x200000 ? Number.POSITIVE_INFINITY : hi * 0x1_0000_0000 + lo;
}

export function writeCounter(b: Uint8Array, at: number, v: number): void {
  writeU32LE(b, at, v >>> 0);
  writeU32LE(b, at + 4, Math.floor(v / 0x1_0000_0000));
}

/**
 * The WireGuard message type of a datagram, or 0 when it is not one: the little-endian u32 at
 * offset 0 must be 1–4 and the length exactly 148/92/64, or at least 32 for data
 * (`spec/snownet.md` §1.5).
 */
export function wireguardMessageType(b: Uint8Array, off: number, len: number): number {
  if (len < 4 || b[off + 1] !== 0 || b[off + 2] !== 0 || b[off + 3] !== 0) return 0;
  switch (b[off]) {
    case MSG_HANDSHAKE_INITIATION:
      return len === HANDSHAKE_INITIATION_BYTES ? MSG_HANDSHAKE_INITIATION : 0;
    case MSG_HANDSHAKE_RESPONSE:
      return len === HANDSHAKE_RESPONSE_BYTES ? MSG_HANDSHAKE_RESPONSE : 0;
    case MSG_COOKIE_REPLY:
      return len === COOKIE_REPLY_BYTES ? MSG_COOKIE_REPLY : 0;
    case MSG_TRANSPORT_DATA:
      return len >= DATA_MIN_BYTES ? MSG_TRANSPORT_DATA : 0;
    default:
      return 0;
  }
}

/**
 * TAI64N label for a wall-clock time in milliseconds since the epoch: 8-byte big-endian
 * seconds + 2^62, then 4-byte big-endian nanoseconds (paper §5.4.2).
 */
export function tai64n(wallMs: number): Uint8Array {
  const out = new Uint8Array(12);
  const secs = Math.floor(wallMs / 1000);
  const nanos = Math.floor((wallMs - secs * 1000) * 1e6);
  const hi = 0x4000_0000 + Math.floor(secs / 0x1_0000_0000);
  const lo = secs % 0x1_0000_0000;
  const dv = new DataView(out.buffer);
  dv.setUint32(0, hi);
  dv.setUint32(4, lo);
  dv.setUint32(8, nanos);
  return out;
}

/** True when TAI64N label `a` is strictly later than `b` (big-endian byte order compares as time). */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 12; i++) {
    if (a[i] !== b[i]) return a[i]! > b[i]!;
  }
  return false;
}
