import { blake2s } from '@noble/hashes/blake2.js';
import { hmac } from '@noble/hashes/hmac.js';
import sodium from 'sodium-native';
import { AEAD_TAG_BYTES, KEY_BYTES, MAC_BYTES, XNONCE_BYTES } from './constants.js';

/**
 * WireGuard's cryptographic primitives (paper §5.4):
 * HASH = BLAKE2s-256, MAC = keyed BLAKE2s-128, HMAC = HMAC-BLAKE2s, KDF = HKDF over HMAC
 * (@noble/hashes: libsodium has no BLAKE2s); DH = X25519, AEAD = ChaCha20-Poly1305 and
 * XAEAD = XChaCha20-Poly1305 (libsodium).
 *
 * X25519 runs in libsodium rather than @noble/curves: `bench/crypto.bench.ts` measured one
 * scalar multiplication at ~28 µs there against ~750 µs in noble, which capped handshakes near
 * 180/s. noble stays the independent reference in the tests.
 *
 * Bulk transport encryption goes through libsodium in place with preallocated nonces: no
 * allocation per packet. Handshake-time helpers may allocate.
 */

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

export function hash(...parts: Uint8Array[]): Uint8Array {
  const h = blake2s.create({});
  for (const p of parts) h.update(p);
  return h.digest();
}

export function hashString(s: string): Uint8Array {
  return blake2s(utf8.encode(s));
}

/** MAC(key, input): keyed BLAKE2s with a 16-byte digest. */
export function mac(key: Uint8Array, input: Uint8Array): Uint8Array {
  return blake2s(input, { key, dkLen: MAC_BYTES });
}

export function hmacBlake2s(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = hmac.create(blake2s, key);
  for (const p of parts) h.update(p);
  return h.digest();
}

const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);
const THREE = Uint8Array.of(3);

/** KDF_n (paper §5.4): HKDF-extract then up to three expand steps. */
export function kdf1(key: Uint8Array, input: Uint8Array): Uint8Array {
  const t0 = hmacBlake2s(key, input);
  return hmacBlake2s(t0, ONE);
}

export function kdf2(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const t0 = hmacBlake2s(key, input);
  const t1 = hmacBlake2s(t0, ONE);
  return [t1, hmacBlake2s(t0, t1, TWO)];
}

export function kdf3(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const t0 = hmacBlake2s(key, input);
  const t1 = hmacBlake2s(t0, ONE);
  const t2 = hmacBlake2s(t0, t1, TWO);
  return [t1, t2, hmacBlake2s(t0, t2, THREE)];
}

export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  const out = new Uint8Array(KEY_BYTES);
  sodium.crypto_scalarmult_base(out, privateKey);
  return out;
}

/**
 * DH(private, public). Returns `undefined` for a low-order public key (all-zero shared secret),
 * which WireGuard must refuse (paper §5.4); libsodium detects it and throws.
 */
export function dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | undefined {
  if (publicKey.length !== KEY_BYTES || privateKey.length !== KEY_BYTES) return undefined;
  const out = new Uint8Array(KEY_BYTES);
  try {
    sodium.crypto_scalarmult(out, privateKey, publicKey);
  } catch {
    // An all-zero result: the public key is a low-order point. A failed handshake, not a crash.
    return undefined;
  }
  return out;
}

/** Clamped X25519 private key from 32 random bytes (RFC 7748 §5). */
export function clampPrivateKey(bytes: Uint8Array): Uint8Array {
  const k = Uint8Array.from(bytes);
  k[0] = k[0]! & 248;
  k[31] = (k[31]! & 127) | 64;
  return k;
}

/** A 12-byte AEAD nonce for counter `n` (4 zero bytes, then the 64-bit counter little-endian). */
function nonceFor(counter: number, out: Uint8Array): Uint8Array {
  out.fill(0);
  let c = counter;
  for (let i = 4; i < 12; i++) {
    out[i] = c % 256;
    c = Math.floor(c / 256);
  }
  return out;
}

/** AEAD(key, counter, plaintext, aad) for handshake fields (allocates). */
export function aeadSeal(
  key: Uint8Array,
  counter: number,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(plaintext.length + AEAD_TAG_BYTES);
  sodium.crypto_aead_chacha20poly1305_ietf_encrypt(
    out,
    plaintext,
    aad,
    null,
    nonceFor(counter, new Uint8Array(12)),
    key,
  );
  return out;
}

/** Opens a handshake field; `undefined` when authentication fails. */
export function aeadOpen(
  key: Uint8Array,
  counter: number,
  ciphertext: Uint8Array,
  aad: Uint8Array,
): Uint8Array | undefined {
  if (ciphertext.length < AEAD_TAG_BYTES) return undefined;
  const out = new Uint8Array(ciphertext.length - AEAD_TAG_BYTES);
  try {
    sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
      out,
      null,
      ciphertext,
      aad,
      nonceFor(counter, new Uint8Array(12)),
      key,
    );
    return out;
  } catch {
    // libsodium signals a forged or corrupted message by throwing.
    return undefined;
  }
}

export function xaeadSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(plaintext.length + AEAD_TAG_BYTES);
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out, plaintext, aad, null, nonce, key);
  return out;
}

export function xaeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array,
): Uint8Array | undefined {
  if (ciphertext.length < AEAD_TAG_BYTES || nonce.length !== XNONCE_BYTES) return undefined;
  const out = new Uint8Array(ciphertext.length - AEAD_TAG_BYTES);
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, ciphertext, aad, nonce, key);
    return out;
  } catch {
    // forged or corrupted
    return undefined;
  }
}

/**
 * Transport-data AEAD in place: one instance per session key. `seal` encrypts
 * `buf[off, off+len)` and writes the tag right after it; `open` decrypts `buf[off, off+len)`
 * (ciphertext + tag) into `buf[off, off+len-16)`. The nonce is the 8 counter bytes as they are on
 * the wire, copied into a preallocated 12-byte nonce.
 */
export class TransportCipher {
  private readonly key: Uint8Array;
  private readonly nonce = new Uint8Array(12);

  constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) throw new RangeError(`transport key must be ${KEY_BYTES} bytes`);
    this.key = Uint8Array.from(key);
  }

  /** Encrypts in place; `buf` must have 16 bytes of room after the plaintext. Returns the ciphertext length. */
  seal(buf: Uint8Array, off: number, len: number, counterBytes: Uint8Array, counterOff: number): number {
    this.nonce.set(counterBytes.subarray(counterOff, counterOff + 8), 4);
    const m = buf.subarray(off, off + len);
    const c = buf.subarray(off, off + len + AEAD_TAG_BYTES);
    sodium.crypto_aead_chacha20poly1305_ietf_encrypt(c, m, null, null, this.nonce, this.key);
    return len + AEAD_TAG_BYTES;
  }

  /** Decrypts in place. Returns the plaintext length, or -1 if authentication fails. */
  open(buf: Uint8Array, off: number, len: number, counterBytes: Uint8Array, counterOff: number): number {
    if (len < AEAD_TAG_BYTES) return -1;
    this.nonce.set(counterBytes.subarray(counterOff, counterOff + 8), 4);
    const c = buf.subarray(off, off + len);
    const m = buf.subarray(off, off + len - AEAD_TAG_BYTES);
    try {
      sodium.crypto_aead_chacha20poly1305_ietf_decrypt(m, null, c, null, this.nonce, this.key);
    } catch {
      // Forged, corrupted or replayed-with-wrong-key data: the caller counts and drops it.
      return -1;
    }
    return len - AEAD_TAG_BYTES;
  }

  /** Overwrites the key (called when a session is retired). */
  wipe(): void {
    this.key.fill(0);
  }
}

export { EMPTY };
