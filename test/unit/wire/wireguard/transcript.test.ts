import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bytesEqual, parseIp } from '../../../../src/wire/ip/address.js';
import { IpPacket } from '../../../../src/wire/ip/packet.js';
import { parseKey } from '../../../../src/wire/keys.js';
import { STANDARD_PROFILE } from '../../../../src/wire/wireguard/constants.js';
import { WG_DATA, WG_HANDSHAKE, WgDevice } from '../../../../src/wire/wireguard/device.js';
import { seededRandom } from '../../../support/wg-pair.js';

/**
 * Transcripts of our endpoint talking to an unmodified wireguard-go, recorded by
 * test/fixtures/wireguard/record.mts. Replaying our side with the same key, seed and clock must
 * reproduce every datagram we sent byte for byte, and every datagram wireguard-go sent must
 * authenticate and decrypt to a valid IP packet: wireguard-go derived the same keys from our
 * handshake messages, and we from its.
 */
interface Transcript {
  privateKey: string;
  peerPublicKey: string;
  presharedKey: string;
  seed: number;
  wallClockOffsetMs: number;
  startNow: number;
  peerEndpoint?: string;
  transcript: { t: number; dir: 'in' | 'out' | 'tun' | 'timer'; hex?: string }[];
}

const PEER_TUNNEL_IP = parseIp('100.64.0.2')!;
const WG_GO: { ip: Uint8Array; port: number } = { ip: parseIp('10.99.0.2')!, port: 51821 };

function load(name: string): Transcript {
  return JSON.parse(
    readFileSync(
      fileURLToPath(new URL(`../../../fixtures/wireguard/transcript-${name}.json`, import.meta.url)),
      'utf8',
    ),
  );
}

function key(text: string): Uint8Array {
  const r = parseKey(text);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

function replay(doc: Transcript): {
  outputs: string[];
  expected: string[];
  decrypted: IpPacket[];
  handshakes: number;
} {
  const device = new WgDevice<{ ip: Uint8Array; port: number }>({
    privateKey: key(doc.privateKey),
    now: doc.startNow,
    wallClockOffsetMs: doc.wallClockOffsetMs,
    random: seededRandom(doc.seed),
  });
  const peer = device.addPeer({
    publicKey: key(doc.peerPublicKey),
    presharedKey: key(doc.presharedKey),
    profile: STANDARD_PROFILE,
  });
  if (doc.peerEndpoint) peer.endpoint = WG_GO;
  const outputs: string[] = [];
  const expected: string[] = [];
  const decrypted: IpPacket[] = [];
  let handshakes = 0;
  const drain = () => {
    for (let t = device.pollTransmit(); t; t = device.pollTransmit())
      outputs.push(Buffer.from(t.bytes).toString('hex'));
    while (device.pollEvent());
  };
  for (const e of doc.transcript) {
    const bytes = e.hex ? Uint8Array.from(Buffer.from(e.hex, 'hex')) : new Uint8Array(0);
    switch (e.dir) {
      case 'out':
        expected.push(e.hex!);
        break;
      case 'timer':
        device.handleTimeout(e.t);
        break;
      case 'in': {
        const r = device.decapsulate(bytes, 0, bytes.length, WG_GO, e.t);
        if (r === WG_HANDSHAKE) handshakes++;
        if (r === WG_DATA) {
          const p = new IpPacket();
          expect(p.load(bytes, device.rxOffset, device.rxLength)).toBeUndefined();
          decrypted.push(p);
        }
        break;
      }
      case 'tun': {
        const buf = new Uint8Array(16 + bytes.length + 16);
        buf.set(bytes, 16);
        const ip = new IpPacket();
        if (ip.load(buf, 16, bytes.length) || !bytesEqual(buf, ip.dstOffset, PEER_TUNNEL_IP, 0, 4)) break;
        const n = device.encapsulate(peer, buf, 16, ip.length, e.t);
        if (n > 0) outputs.push(Buffer.from(buf.subarray(0, n)).toString('hex'));
        break;
      }
    }
    drain();
  }
  return { outputs, expected, decrypted, handshakes };
}

describe('WireGuard transcripts recorded against wireguard-go', () => {
  it.each(['wireguard-go-initiates', 'we-initiate'])('replays %s byte for byte', (name) => {
    const doc = load(name);
    const { outputs, expected, decrypted, handshakes } = replay(doc);
    expect(expected.length).toBeGreaterThanOrEqual(4);
    expect(outputs).toEqual(expected);
    expect(handshakes).toBe(1);
    // Every data packet from wireguard-go decrypted to a ping of its tunnel address.
    expect(decrypted.length).toBeGreaterThanOrEqual(3);
    for (const p of decrypted) {
      expect(p.version).toBe(4);
      expect(p.isIcmp).toBe(true);
      expect(bytesEqual(p.buf, p.srcOffset, PEER_TUNNEL_IP, 0, 4)).toBe(true);
    }
  });

  it('starts with a handshake message in the direction the transcript says', () => {
    const a = load('we-initiate').transcript.find((e) => e.dir === 'out')!;
    expect(a.hex!.slice(0, 8)).toBe('01000000');
    const b = load('wireguard-go-initiates').transcript.find((e) => e.dir === 'in')!;
    expect(b.hex!.slice(0, 8)).toBe('01000000');
  });

  it('detects a single flipped bit in what wireguard-go sent', () => {
    const doc = load('wireguard-go-initiates');
    const data = doc.transcript.filter((e) => e.dir === 'in').at(-1)!;
    const flipped = `${data.hex!.slice(0, -2)}${((Number.parseInt(data.hex!.slice(-2), 16) ^ 1) & 0xff).toString(16).padStart(2, '0')}`;
    const { decrypted } = replay({
      ...doc,
      transcript: doc.transcript.map((e) => (e === data ? { ...e, hex: flipped } : e)),
    });
    expect(decrypted.length).toBe(replay(doc).decrypted.length - 1);
  });
});
