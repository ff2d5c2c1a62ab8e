import type { Result, WireError } from './result.js';

/**
 * WireGuard keys on the wire and in config files: standard base64 with padding of exactly 32
 * bytes, 44 characters (`spec/snownet.md` §1.1; `wg genkey` prints the same form).
 */
export type KeyError = WireError<'key.bad-base64' | 'key.bad-length'>;

const B64 = /^[A-Za-z0-9+/]{43}=$/;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

export function parseKey(text: unknown): Result<Uint8Array, KeyError> {
  if (typeof text !== 'string' || text.length !== 44) {
    return {
      ok: false,
      error: { code: 'key.bad-length', message: 'a key is 44 base64 characters (32 bytes)' },
    };
  }
  if (!B64.test(text)) {
    return {
      ok: false,
      error: { code: 'key.bad-base64', message: 'a key is standard base64 with one padding character' },
    };
  }
  const out = new Uint8Array(32);
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < 43; i++) {
    acc = (acc << 6) | DECODE[text.charCodeAt(i)]!;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  // 43 characters carry 258 bits: the last 2 must be zero in canonical base64.
  if ((acc & ((1 << bits) - 1)) !== 0) {
    return {
      ok: false,
      error: { code: 'key.bad-base64', message: 'key has non-zero padding bits (not canonical base64)' },
    };
  }
  return { ok: true, value: out };
}

export function formatKey(key: Uint8Array): string {
  if (key.length !== 32) throw new RangeError('a key has 32 bytes');
  let s = '';
  let acc = 0;
  let bits = 0;
  for (const b of key) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      s += ALPHABET[(acc >> bits) & 63];
    }
  }
  s += ALPHABET[(acc << (6 - bits)) & 63];
  return `${s}=`;
}
