import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FIREZONE_PROFILE,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_TIME_MS,
  STANDARD_PROFILE,
} from '../../../../src/wire/wireguard/constants.js';
import { clampPrivateKey } from '../../../../src/wire/wireguard/crypto.js';
import {
  WG_DATA,
  WG_DROPPED,
  WG_HANDSHAKE,
  WG_KEEPALIVE,
  WgDevice,
} from '../../../../src/wire/wireguard/device.js';
import { readU32LE } from '../../../../src/wire/wireguard/messages.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';
import { type SimEndpoint, seededRandom, WgPair } from '../../../support/wg-pair.js';

const payload = (n: number, fill = 0x45) => new Uint8Array(n).fill(fill);

function connected(profile = STANDARD_PROFILE, psk?: Uint8Array): WgPair {
  const p = new WgPair({ profileA: profile, profileB: profile, psk });
  p.a.device.initiateHandshake(p.a.peer, p.now);
  p.deliver();
  return p;
}

describe('WireGuard device: handshakes and data', () => {
  it('completes a handshake and carries data both ways, with and without a preshared key', () => {
    for (const psk of [undefined, new Uint8Array(32).fill(0x5a)]) {
      const p = connected(STANDARD_PROFILE, psk);
      expect(p.a.events).toMatchObject([
        { type: 'handshake-started', initiator: true },
        { type: 'session-established', initiator: true },
      ]);
      // The responder's session is confirmed by the initiator's keepalive.
      expect(p.b.events).toMatchObject([
        { type: 'handshake-started', initiator: false },
        { type: 'session-established', initiator: false },
      ]);
      expect(p.b.keepalivesReceived).toBe(1);
      for (const [from, to] of [
        [p.a, p.b],
        [p.b, p.a],
      ] as const) {
        const d = p.send(from, payload(100, from === p.a ? 1 : 2));
        expect(d).toBeDefined();
        expect(p.receive(to, d!)).toBe(WG_DATA);
        expect(to.received.at(-1)).toEqual(payload(100, from === p.a ? 1 : 2));
      }
    }
  });

  it('uses the Firezone index scheme: the peer id in the upper 24 bits, a counter from 1 below', () => {
    const p = new WgPair({ profileA: FIREZONE_PROFILE, profileB: FIREZONE_PROFILE });
    p.a.device.initiateHandshake(p.a.peer, p.now);
    const [init] = p.take(p.a);
    const index = readU32LE(init!.bytes, 4);
    expect(index >>> 8).toBe(p.a.peer.id);
    expect(index & 0xff).toBe(1);
    expect(p.a.peer.id).toBeGreaterThan(0);
    expect(p.a.peer.id).toBeLessThan(2 ** 24);
  });

  it('queues packets without a session, starts a handshake, and sends them once it completes', () => {
    const p = new WgPair({ profileA: STANDARD_PROFILE, profileB: STANDARD_PROFILE });
    expect(p.send(p.a, payload(50, 1))).toBeUndefined();
    expect(p.send(p.a, payload(50, 2))).toBeUndefined();
    expect(p.a.peer.queuedPackets).toBe(2);
    p.deliver();
    expect(p.b.received).toEqual([payload(50, 1), payload(50, 2)]);
    // Queued data confirmed the session: no extra keepalive was needed.
    expect(p.b.keepalivesReceived).toBe(0);
  });

  it('does not send on a responder session until the initiator confirms it', () => {
    const p = new WgPair({ profileA: STANDARD_PROFILE, profileB: STANDARD_PROFILE });
    p.a.device.initiateHandshake(p.a.peer, p.now);
    for (const t of p.take(p.a)) p.receive(p.b, t.bytes);
    const response = p.take(p.b);
    expect(response).toHaveLength(1);
    expect(p.b.peer.hasSession).toBe(false);
    expect(p.send(p.b, payload(10))).toBeUndefined();
    for (const t of response) p.receive(p.a, t.bytes);
    p.deliver();
    expect(p.b.peer.hasSession).toBe(true);
    expect(p.a.received).toEqual([payload(10)]);
  });

  it('drops replayed data packets and counts them', () => {
    const p = connected();
    const d = p.send(p.a, payload(20))!;
    expect(p.receive(p.b, d)).toBe(WG_DATA);
    expect(p.receive(p.b, d)).toBe(WG_DROPPED);
    expect(p.b.device.drops['wg.replay']).toBe(1);
  });

  it('fails the handshake when the preshared keys differ', () => {
    const p = new WgPair({
      profileA: STANDARD_PROFILE,
      profileB: STANDARD_PROFILE,
      psk: new Uint8Array(32).fill(1),
      pskB: new Uint8Array(32).fill(2),
    });
    p.a.device.initiateHandshake(p.a.peer, p.now);
    p.deliver();
    expect(p.a.peer.hasSession).toBe(false);
    expect(p.a.device.drops['wg.invalid-response']).toBe(1);
  });

  it('ignores initiations from keys that are not peers, creating no state', () => {
    const p = new WgPair({ profileA: STANDARD_PROFILE, profileB: STANDARD_PROFILE });
    const stranger = new WgDevice<SimEndpoint>({
      privateKey: clampPrivateKey(seededRandom(9)(32)),
      now: p.now,
      wallClockOffsetMs: 0,
    });
    const sp = stranger.addPeer({ publicKey: p.b.device.publicKey, profile: STANDARD_PROFILE });
    stranger.initiateHandshake(sp, p.now);
    const t = stranger.pollTransmit()!;
    expect(p.receive(p.b, t.bytes)).toBe(WG_DROPPED);
    expect(p.b.device.drops['wg.unknown-peer']).toBe(1);
    expect(p.b.device.pollTransmit()).toBeUndefined();
    expect(p.b.device.peerCount).toBe(1);
  });

  it('rejects a replayed initiation (same timestamp) and an initiation flood', () => {
    const p = new WgPair({ profileA: STANDARD_PROFILE, profileB: STANDARD_PROFILE });
    p.a.device.initiateHandshake(p.a.peer, p.now);
    const [init] = p.take(p.a);
    expect(p.receive(p.b, init!.bytes)).toBe(WG_HANDSHAKE);
    expect(p.receive(p.b, init!.bytes)).toBe(WG_DROPPED);
    expect(p.b.device.drops['wg.replayed-initiation']).toBe(1);
    p.now += 5_000;
    p.a.device.handleTimeout(p.now);
    p.take(p.a);
    p.a.peer.initiate(p.now, true);
    const [second] = p.take(p.a);
    p.now += 5;
    p.a.peer.initiate(p.now + 10_000, true);
    const [third] = p.take(p.a);
    expect(p.receive(p.b, second!.bytes)).toBe(WG_HANDSHAKE);
    expect(p.receive(p.b, third!.bytes)).toBe(WG_DROPPED);
    expect(p.b.device.drops['wg.initiation-flood']).toBe(1);
  });

  it('drops handshake messages with a bad mac1 before any public-key work', () => {
    const p = new WgPair({ profileA: STANDARD_PROFILE, profileB: STANDARD_PROFILE });
    p.a.device.initiateHandshake(p.a.peer, p.now);
    const [init] = p.take(p.a);
    const bad = Uint8Array.from(init!.bytes);
    bad[120] = bad[120]! ^ 1;
    expect(p.receive(p.b, bad)).toBe(WG_DROPPED);
    expect(p.b.device.drops['wg.bad-mac1']).toBe(1);
  });
});

describe('WireGuard device: timers', () => {
  it('sends a keepalive 10 s after receiving data it did not answer', () => {
    const p = connected();
    p.receive(p.b, p.send(p.a, payload(10))!);
    const before = p.a.keepalivesReceived;
    p.advance(9_000);
    expect(p.a.keepalivesReceived).toBe(before);
    p.advance(1_500);
    expect(p.a.keepalivesReceived).toBe(before + 1);
  });

  it('sends persistent keepalives when a plain peer asks for them', () => {
    const p = new WgPair({
      profileA: { ...STANDARD_PROFILE, persistentKeepaliveMs: 25_000 },
      profileB: STANDARD_PROFILE,
    });
    p.a.device.initiateHandshake(p.a.peer, p.now);
    p.deliver();
    const before = p.b.keepalivesReceived;
    p.advance(60_000);
    expect(p.b.keepalivesReceived - before).toBe(2);
  });

  it('starts a new handshake when data it sent got no answer for 15 s', () => {
    const p = connected();
    const hs = p.a.peer.stats.handshakeInitiationsSent;
    p.send(p.a, payload(10)); // lost
    p.advance(14_000, false);
    expect(p.a.peer.stats.handshakeInitiationsSent).toBe(hs);
    p.advance(1_400, false);
    expect(p.a.peer.stats.handshakeInitiationsSent).toBe(hs + 1);
  });

  it('rekeys under traffic after REKEY_AFTER_TIME and loses nothing across rotations, even reordered', () => {
    const p = connected(FIREZONE_PROFILE);
    const sent: number[] = [];
    const late: Uint8Array[] = [];
    let seq = 0;
    for (let t = 0; t < 10 * 60_000; t += 500) {
      const pkt = payload(64);
      new DataView(pkt.buffer).setUint32(0, seq);
      const d = p.send(p.a, pkt);
      sent.push(seq++);
      if (d) {
        // Hold back every 7th datagram and deliver it 1.5 s later: across rekeys it arrives on
        // the previous session.
        if (seq % 7 === 0) late.push(d);
        else p.receive(p.b, d);
      }
      p.advance(500);
      if (seq % 7 === 3) for (const d2 of late.splice(0)) p.receive(p.b, d2);
      const back = p.send(p.b, payload(32, 9));
      if (back) p.receive(p.a, back);
    }
    for (const d of late) p.receive(p.b, d);
    p.deliver();
    const got = p.b.received
      .filter((x) => x.length === 64)
      .map((x) => new DataView(x.buffer, x.byteOffset).getUint32(0));
    expect(new Set(got).size).toBe(got.length);
    expect(got.sort((x, y) => x - y)).toEqual(sent);
    // Ten minutes of traffic: a handshake at least every REKEY_AFTER_TIME.
    expect(p.a.peer.stats.handshakesCompleted).toBeGreaterThanOrEqual(
      Math.floor((10 * 60_000) / REKEY_AFTER_TIME_MS),
    );
    expect(
      p.b.device.drops['wg.auth-failed'] +
        p.b.device.drops['wg.unknown-index'] +
        p.b.device.drops['wg.session-expired'],
    ).toBe(0);
  });

  it('Firezone: the initiator re-handshakes an idle session when it expires; the responder never does', () => {
    const p = connected(FIREZONE_PROFILE);
    const a0 = p.a.peer.stats.handshakeInitiationsSent;
    const b0 = p.b.peer.stats.handshakeInitiationsSent;
    p.advance(REJECT_AFTER_TIME_MS - 1_000);
    expect(p.a.peer.stats.handshakeInitiationsSent).toBe(a0);
    p.advance(2_000);
    expect(p.a.peer.stats.handshakeInitiationsSent).toBe(a0 + 1);
    expect(p.b.peer.stats.handshakeInitiationsSent).toBe(b0);
    expect(p.a.peer.hasSession).toBe(true);
  });

  it('Firezone: the initiator stops sending on its session after 170 s', () => {
    const p = connected(FIREZONE_PROFILE);
    p.now += 169_000;
    expect(p.send(p.a, payload(8))).toBeDefined();
    p.now += 1_000;
    expect(p.send(p.a, payload(8))).toBeUndefined();
    // The responder may keep using its side until 180 s.
    expect(p.send(p.b, payload(8))).toBeDefined();
  });

  it('standard: an idle session just expires after 180 s, without a handshake', () => {
    const p = connected(STANDARD_PROFILE);
    const a0 = p.a.peer.stats.handshakeInitiationsSent;
    p.advance(REJECT_AFTER_TIME_MS + 1_000);
    expect(p.a.peer.hasSession).toBe(false);
    expect(p.a.peer.stats.handshakeInitiationsSent).toBe(a0);
  });

  it('gives up after REKEY_ATTEMPT_TIME: 15 s and a failed connection for Firezone, 90 s for standard peers', () => {
    for (const [profile, limit, event] of [
      [FIREZONE_PROFILE, 15_000, 'connection-expired'],
      [STANDARD_PROFILE, 90_000, 'handshake-failed'],
    ] as const) {
      const p = new WgPair({ profileA: profile, profileB: profile });
      p.send(p.a, payload(10));
      p.advance(limit - 1_000, false);
      expect(p.a.events.map((e) => e.type)).toEqual(['handshake-started']);
      p.advance(6_000, false);
      expect(p.a.events.map((e) => e.type)).toEqual(['handshake-started', event]);
      expect(p.a.peer.queuedPackets).toBe(0);
      // Retransmitted every REKEY_TIMEOUT plus jitter.
      expect(p.a.peer.stats.handshakeInitiationsSent).toBe(limit / 5_000);
    }
  });

  it('Firezone: reports a connection without a new session for 540 s as expired', () => {
    const p = connected(FIREZONE_PROFILE);
    // Responder side, fed by nobody: its session expires, then the connection.
    p.advance(539_000, false);
    expect(p.b.events.filter((e) => e.type === 'connection-expired')).toHaveLength(0);
    p.advance(2_000, false);
    expect(p.b.events.filter((e) => e.type === 'connection-expired')).toMatchObject([
      { reason: 'no-session' },
    ]);
  });

  it('tells the caller when to wake up next', () => {
    const p = new WgPair({ profileA: STANDARD_PROFILE, profileB: STANDARD_PROFILE });
    expect(p.a.device.pollTimeout()).toBeUndefined();
    p.a.device.initiateHandshake(p.a.peer, p.now);
    const t = p.a.device.pollTimeout()!;
    expect(t.at).toBeGreaterThanOrEqual(p.now + 5_000);
    expect(t.at).toBeLessThanOrEqual(p.now + 5_333);
  });
});

describe('WireGuard device: load and hostile input', () => {
  it('answers a flood of initiations with cookie replies while the real peer still completes its handshake', () => {
    const p = new WgPair({ profileA: FIREZONE_PROFILE, profileB: FIREZONE_PROFILE });
    // A spoofer knows the public key (mac1 is valid) but not any peer's static key.
    const spoofer = new WgDevice<SimEndpoint>({
      privateKey: clampPrivateKey(seededRandom(77)(32)),
      now: p.now,
      wallClockOffsetMs: 0,
      random: seededRandom(78),
    });
    const sp = spoofer.addPeer({ publicKey: p.b.device.publicKey, profile: STANDARD_PROFILE });
    spoofer.initiateHandshake(sp, p.now);
    const flood = spoofer.pollTransmit()!.bytes;
    let cookies = 0;
    const spoofed: SimEndpoint = { name: 'spoofer', ip: Uint8Array.of(192, 0, 2, 66), port: 1 };
    for (let i = 0; i < 10_000; i++) {
      p.b.device.decapsulate(Uint8Array.from(flood), 0, flood.length, spoofed, p.now);
      for (let t = p.b.device.pollTransmit(); t; t = p.b.device.pollTransmit()) {
        if (t.kind === 'reply' && t.bytes[0] === 3) cookies++;
      }
    }
    expect(cookies).toBe(10_000 - 100);
    expect(p.b.device.cookieRepliesSent).toBe(cookies);
    // The legitimate peer gets a cookie reply too...
    p.a.device.initiateHandshake(p.a.peer, p.now);
    p.deliver();
    expect(p.a.peer.hasSession).toBe(false);
    expect(p.b.device.drops['wg.cookie-sent']).toBe(cookies + 1);
    // ...and its retry, sent while the flood goes on, carries a valid mac2 and is admitted.
    p.advance(5_400, false);
    const retry = p.take(p.a);
    expect(retry).toHaveLength(1);
    for (let i = 0; i < 200; i++)
      p.b.device.decapsulate(Uint8Array.from(flood), 0, flood.length, spoofed, p.now);
    while (p.b.device.pollTransmit());
    const repliesBefore = p.b.device.cookieRepliesSent;
    expect(p.receive(p.b, retry[0]!.bytes)).toBe(WG_HANDSHAKE);
    expect(p.b.device.cookieRepliesSent).toBe(repliesBefore);
    p.deliver();
    expect(p.a.peer.hasSession).toBe(true);
    expect(p.b.peer.hasSession).toBe(true);
  });

  it('counts and drops garbage and truncated messages without throwing', () => {
    const p = connected();
    const d = p.send(p.a, payload(40))!;
    const cases = [
      new Uint8Array(0),
      new Uint8Array([4, 0, 0]),
      d.subarray(0, 31),
      Uint8Array.of(1, 0, 0, 0, ...new Uint8Array(100)),
      Uint8Array.of(5, 0, 0, 0, ...new Uint8Array(40)),
      Uint8Array.of(4, 1, 0, 0, ...d.subarray(4)),
    ];
    for (const c of cases) expect(p.receive(p.b, c)).toBe(WG_DROPPED);
    expect(p.b.device.drops['wg.not-wireguard']).toBe(cases.length);
    const forged = Uint8Array.from(d);
    forged[20] = forged[20]! ^ 0xff;
    expect(p.receive(p.b, forged)).toBe(WG_DROPPED);
    expect(p.b.device.drops['wg.auth-failed']).toBe(1);
  });

  it('never throws on any datagram, and keeps working afterwards', () => {
    const p = connected();
    const sizes = fc.oneof(
      fc.constant(148),
      fc.constant(92),
      fc.constant(64),
      fc.integer({ min: 0, max: 1500 }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        sizes,
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        (type, size, index) => {
          const b = new Uint8Array(size);
          if (size >= 8) {
            b[0] = type;
            new DataView(b.buffer).setUint32(4, index, true);
            globalThis.crypto.getRandomValues(b.subarray(8));
          }
          const r = p.b.device.decapsulate(b, 0, b.length, p.a.endpoint, p.now);
          expect([WG_DROPPED, WG_DATA, WG_KEEPALIVE, WG_HANDSHAKE]).toContain(r);
        },
      ),
      { numRuns: Math.min(PROPERTY_RUNS, 5_000) },
    );
    const d = p.send(p.a, payload(10))!;
    expect(p.receive(p.b, d)).toBe(WG_DATA);
  });

  it('removes a peer and forgets its indices', () => {
    const p = connected();
    const d = p.send(p.a, payload(10))!;
    p.b.device.removePeer(p.b.peer);
    expect(p.receive(p.b, d)).toBe(WG_DROPPED);
    expect(p.b.device.drops['wg.unknown-index']).toBe(1);
    expect(p.b.device.peerCount).toBe(0);
  });
});
