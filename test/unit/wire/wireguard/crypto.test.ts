import { chacha20poly1305, xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CONSTRUCTION, IDENTIFIER } from '../../../../src/wire/wireguard/constants.js';
import {
  aeadOpen,
  aeadSeal,
  clampPrivateKey,
  dh,
  hash,
  hashString,
  kdf2,
  mac,
  publicKeyOf,
  TransportCipher,
  xaeadOpen,
  xaeadSeal,
} from '../../../../src/wire/wireguard/crypto.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const b64 = (s: string) => Uint8Array.from(Buffer.from(s, 'base64'));

function nonce12(counter: number): Uint8Array {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setBigUint64(4, BigInt(counter), true);
  return n;
}

describe('WireGuard primitives', () => {
  it('derives the construction constants WireGuard implementations share', () => {
    const c0 = hashString(CONSTRUCTION);
    expect(hex(c0)).toBe('60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36');
    expect(hex(hash(c0, new TextEncoder().encode(IDENTIFIER)))).toBe(
      '2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3',
    );
  });

  it('computes BLAKE2s-256 and keyed BLAKE2s-128 per RFC 7693', () => {
    expect(hex(hashString('abc'))).toBe('508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
    // RFC 7693 Appendix E style keyed hash: key 00..1f, empty input, 16-byte digest differs from unkeyed.
    const key = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(mac(key, new Uint8Array(0))).toHaveLength(16);
    expect(hex(mac(key, new Uint8Array(0)))).not.toBe(hex(mac(new Uint8Array(32), new Uint8Array(0))));
  });

  it('computes X25519 per RFC 7748 §6.1', () => {
    const alicePriv = unhex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bobPub = unhex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    expect(hex(publicKeyOf(alicePriv))).toBe(
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
    expect(hex(dh(alicePriv, bobPub)!)).toBe(
      '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
    );
  });

  it('derives the public key wireguard-tools derives (`wg genkey | wg pubkey`)', () => {
    const priv = b64('2KDM1ZWnNx3S4j/iTaBUJvsuHWsL1XPMJCLnZrkdIlg=');
    expect(Buffer.from(publicKeyOf(priv)).toString('base64')).toBe(
      '05Tf9gHlf61OhU6kTBKQdjg44sL9cMJyCs/EqSsSK0k=',
    );
  });

  it('agrees with @noble/curves X25519 on any keys', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        (a, b) => {
          const priv = clampPrivateKey(a);
          const pub = publicKeyOf(clampPrivateKey(b));
          expect(hex(publicKeyOf(priv))).toBe(hex(x25519.getPublicKey(priv)));
          expect(hex(dh(priv, pub)!)).toBe(hex(x25519.getSharedSecret(priv, pub)));
        },
      ),
      { numRuns: Math.min(PROPERTY_RUNS, 300) },
    );
  });

  it('refuses low-order public keys instead of deriving an all-zero secret', () => {
    expect(dh(clampPrivateKey(new Uint8Array(32).fill(7)), new Uint8Array(32))).toBeUndefined();
  });

  it('clamps private keys per RFC 7748 §5', () => {
    const k = clampPrivateKey(new Uint8Array(32).fill(0xff));
    expect([k[0]! & 7, k[31]! & 0x80, k[31]! & 0x40]).toEqual([0, 0, 0x40]);
  });

  it('derives two distinct keys with KDF2', () => {
    const [a, b] = kdf2(new Uint8Array(32), new Uint8Array(0));
    expect(a).toHaveLength(32);
    expect(hex(a)).not.toBe(hex(b));
  });

  it('seals and opens like @noble/ciphers ChaCha20-Poly1305, for handshake fields and in-place transport data', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.nat({ max: 2 ** 40 }),
        fc.uint8Array({ maxLength: 1400 }),
        fc.uint8Array({ maxLength: 64 }),
        (key, counter, plaintext, aad) => {
          const reference = chacha20poly1305(key, nonce12(counter), aad).encrypt(plaintext);
          expect(hex(aeadSeal(key, counter, plaintext, aad))).toBe(hex(reference));
          expect(aeadOpen(key, counter, reference, aad)).toEqual(plaintext);
          // In place, as the data path does it: header (16) · plaintext · room for the tag.
          const buf = new Uint8Array(16 + plaintext.length + 16);
          new DataView(buf.buffer).setBigUint64(8, BigInt(counter), true);
          buf.set(plaintext, 16);
          const cipher = new TransportCipher(key);
          expect(cipher.seal(buf, 16, plaintext.length, buf, 8)).toBe(plaintext.length + 16);
          expect(hex(buf.subarray(16))).toBe(hex(chacha20poly1305(key, nonce12(counter)).encrypt(plaintext)));
          expect(cipher.open(buf, 16, plaintext.length + 16, buf, 8)).toBe(plaintext.length);
          expect(buf.subarray(16, 16 + plaintext.length)).toEqual(plaintext);
        },
      ),
      { numRuns: Math.min(PROPERTY_RUNS, 2_000) },
    );
  });

  it('rejects any modified ciphertext, tag or nonce', () => {
    const key = new Uint8Array(32).fill(9);
    const sealed = aeadSeal(key, 5, new Uint8Array(40).fill(1), new Uint8Array(0));
    for (let i = 0; i < sealed.length; i += 7) {
      const bad = Uint8Array.from(sealed);
      bad[i] = bad[i]! ^ 0x80;
      expect(aeadOpen(key, 5, bad, new Uint8Array(0))).toBeUndefined();
    }
    expect(aeadOpen(key, 6, sealed, new Uint8Array(0))).toBeUndefined();
    const cipher = new TransportCipher(key);
    const buf = new Uint8Array(16 + 8);
    expect(cipher.open(buf, 0, 10, buf, 0)).toBe(-1);
    expect(cipher.open(buf, 0, 24, buf, 0)).toBe(-1);
  });

  it('seals cookies like @noble/ciphers XChaCha20-Poly1305', () => {
    const key = new Uint8Array(32).fill(3);
    const nonce = new Uint8Array(24).fill(4);
    const aad = new Uint8Array(16).fill(5);
    const cookie = new Uint8Array(16).fill(6);
    const sealed = xaeadSeal(key, nonce, cookie, aad);
    expect(hex(sealed)).toBe(hex(xchacha20poly1305(key, nonce, aad).encrypt(cookie)));
    expect(xaeadOpen(key, nonce, sealed, aad)).toEqual(cookie);
    expect(xaeadOpen(key, nonce, sealed, new Uint8Array(16))).toBeUndefined();
  });
});
