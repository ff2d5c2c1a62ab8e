/**
 * WireGuard crypto costs: seal+open of one 1400-byte transport packet with each AEAD we could use
 * (libsodium via sodium-native, node:crypto, @noble/ciphers), X25519 (noble vs libsodium), and
 * complete handshakes per second (initiation + response + confirmation, both sides' work).
 *
 *   npx tsx bench/crypto.bench.ts
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import sodium from 'sodium-native';
import { STANDARD_PROFILE } from '../src/wire/wireguard/constants.js';
import { clampPrivateKey, TransportCipher } from '../src/wire/wireguard/crypto.js';
import { WgDevice } from '../src/wire/wireguard/device.js';
import { type BenchResult, consume, measure, report } from './harness.js';

const PACKET_BYTES = 1400;
const key = new Uint8Array(32).fill(7);
const results: BenchResult[] = [];

// sodium-native, in place, preallocated (what the data path does).
{
  const cipher = new TransportCipher(key);
  const buf = new Uint8Array(16 + PACKET_BYTES + 16);
  let counter = 0;
  results.push(
    measure('aead seal+open 1400 B sodium-native', () => {
      new DataView(buf.buffer).setUint32(8, counter++, true);
      cipher.seal(buf, 16, PACKET_BYTES, buf, 8);
      consume(cipher.open(buf, 16, PACKET_BYTES + 16, buf, 8));
    }),
  );
}

// node:crypto: a cipher object per packet, because the nonce changes every packet.
{
  const plain = new Uint8Array(PACKET_BYTES);
  const nonce = new Uint8Array(12);
  let counter = 0;
  results.push(
    measure('aead seal+open 1400 B node:crypto', () => {
      new DataView(nonce.buffer).setUint32(4, counter++, true);
      const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      const ct = c.update(plain);
      c.final();
      const tag = c.getAuthTag();
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      d.setAuthTag(tag);
      consume(d.update(ct).length);
      d.final();
    }),
  );
}

// @noble/ciphers: pure JavaScript reference.
{
  const plain = new Uint8Array(PACKET_BYTES);
  const nonce = new Uint8Array(12);
  let counter = 0;
  results.push(
    measure(
      'aead seal+open 1400 B @noble/ciphers',
      () => {
        new DataView(nonce.buffer).setUint32(4, counter++, true);
        const aead = chacha20poly1305(key, nonce);
        consume(aead.decrypt(aead.encrypt(plain)).length);
      },
      600,
    ),
  );
}

// X25519: one scalar multiplication.
{
  const priv = clampPrivateKey(new Uint8Array(32).fill(3));
  const pub = x25519.getPublicKey(clampPrivateKey(new Uint8Array(32).fill(4)));
  results.push(measure('x25519 noble', () => consume(x25519.getSharedSecret(priv, pub)[0]!), 600));
  const out = new Uint8Array(32);
  results.push(
    measure('x25519 sodium-native', () => {
      sodium.crypto_scalarmult(out, priv, pub);
      consume(out[0]!);
    }),
  );
}

// Complete handshakes: A initiates, B responds, A confirms with a keepalive B decrypts.
{
  type Ep = { ip: Uint8Array };
  const ep: Ep = { ip: new Uint8Array(4) };
  const mk = (seed: number) =>
    new WgDevice<Ep>({
      privateKey: clampPrivateKey(new Uint8Array(32).fill(seed)),
      now: 0,
      wallClockOffsetMs: 1.7e12,
      handshakeRateLimit: 1e9,
    });
  const a = mk(1);
  const b = mk(2);
  const pa = a.addPeer({ publicKey: b.publicKey, profile: STANDARD_PROFILE });
  b.addPeer({ publicKey: a.publicKey, profile: STANDARD_PROFILE });
  let now = 0;
  results.push(
    measure(
      'handshake initiator+responder',
      () => {
        now += 6_000; // past REKEY_TIMEOUT, so a new initiation is allowed
        a.initiateHandshake(pa, now);
        const init = a.pollTransmit()!.bytes;
        b.decapsulate(init, 0, init.length, ep, now);
        const resp = b.pollTransmit()!.bytes;
        a.decapsulate(resp, 0, resp.length, ep, now);
        const ka = a.pollTransmit()!.bytes;
        consume(b.decapsulate(ka, 0, ka.length, ep, now));
        while (a.pollEvent() || b.pollEvent());
      },
      1_000,
    ),
  );
}

const r = (n: string) => results.find((x) => x.name === n)!;
const sodiumNs = r('aead seal+open 1400 B sodium-native').nsPerOp;
report(
  'crypto',
  results,
  `crypto: seal+open 1400 B sodium-native ${sodiumNs} ns, node:crypto ${r('aead seal+open 1400 B node:crypto').nsPerOp} ns ` +
    `(${(r('aead seal+open 1400 B node:crypto').nsPerOp / sodiumNs).toFixed(1)}x), @noble/ciphers ${r('aead seal+open 1400 B @noble/ciphers').nsPerOp} ns; ` +
    `x25519 noble ${r('x25519 noble').nsPerOp} ns vs sodium ${r('x25519 sodium-native').nsPerOp} ns; ` +
    `handshakes ${r('handshake initiator+responder').opsPerSec}/s`,
);
