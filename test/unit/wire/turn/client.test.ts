import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type MemoryDatagram,
  MemoryUdpNetwork,
  type MemoryUdpSocket,
} from '../../../../src/io/memory-udp.js';
import { datagramSource } from '../../../../src/io/packet-batch.js';
import { decodeChannelData, looksLikeChannelData } from '../../../../src/wire/stun/channel-data.js';
import {
  ATTR_ADDITIONAL_ADDRESS_FAMILY,
  ATTR_CHANNEL_NUMBER,
  ATTR_ERROR_CODE,
  ATTR_LIFETIME,
  ATTR_MAPPED_ADDRESS,
  ATTR_MESSAGE_INTEGRITY,
  ATTR_NONCE,
  ATTR_REALM,
  ATTR_REQUESTED_TRANSPORT,
  ATTR_RESPONSE_ORIGIN,
  ATTR_SOFTWARE,
  ATTR_UNKNOWN_ATTRIBUTES,
  ATTR_USERNAME,
  ATTR_XOR_MAPPED_ADDRESS,
  ATTR_XOR_PEER_ADDRESS,
  ATTR_XOR_RELAYED_ADDRESS,
  CLASS_ERROR,
  CLASS_REQUEST,
  CLASS_SUCCESS,
  METHOD_ALLOCATE,
  METHOD_BINDING,
  METHOD_CHANNEL_BIND,
  METHOD_REFRESH,
  type StunClass,
} from '../../../../src/wire/stun/constants.js';
import {
  attribute,
  decodeErrorCode,
  decodeStun,
  decodeU32,
  decodeXorAddress,
  longTermKey,
  looksLikeStun,
  StunBuilder,
  type StunMessage,
  type TransportAddress,
  utf8,
  verifyIntegrity,
} from '../../../../src/wire/stun/message.js';
import {
  CHANNEL_REFRESH_AFTER_MS,
  TurnClient,
  type TurnEvent,
  type TurnTransmit,
} from '../../../../src/wire/turn/client.js';
import { FakeTurnServer } from '../../../support/fake-turn.js';
import { seededRandom } from '../../../support/wg-pair.js';

// --- The simulated network ----------------------------------------------------------------------

type Mode = 'firezone' | 'coturn';

const RELAY_IP = '10.10.9.1';
const RELAY: TransportAddress = { ip: Uint8Array.of(10, 10, 9, 1), port: 3478 };
const GATEWAY: TransportAddress = { ip: Uint8Array.of(10, 0, 0, 2), port: 51820 };
const PEER: TransportAddress = { ip: Uint8Array.of(10, 0, 0, 3), port: 40000 };
const PEER2: TransportAddress = { ip: Uint8Array.of(10, 0, 0, 4), port: 40000 };
const USERNAME = '1900000000:c2FsdA';
const PASSWORD = 'c2VjcmV0LXBhc3N3b3Jk';
const KEY = longTermKey(USERNAME, 'firezone', PASSWORD);
const SOFTWARE = 'snownet; session=TEST';

const show = (a: TransportAddress | undefined) =>
  a ? `${a.ip.length === 4 ? [...a.ip].join('.') : Buffer.from(a.ip).toString('hex')}:${a.port}` : 'none';
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const text = (s: string) => new TextEncoder().encode(s);

interface SimOptions {
  readonly mode: Mode;
  readonly username?: string;
  readonly password?: string;
  readonly serverRealm?: string;
  readonly seed?: number;
}

interface Sent {
  readonly at: number;
  readonly to: TransportAddress;
  readonly msg: StunMessage;
}

/**
 * One TurnClient on a gateway socket, a FakeTurnServer and two plain peer sockets on one
 * MemoryUdpNetwork, with a clock the test advances (`advance` fires every client timer on the
 * way, at its exact deadline).
 */
class Sim {
  now = 0;
  readonly net = new MemoryUdpNetwork();
  readonly server: FakeTurnServer;
  readonly client: TurnClient;
  readonly gw: MemoryUdpSocket;
  readonly peer: MemoryUdpSocket;
  readonly peer2: MemoryUdpSocket;
  /** Every event with the time it was polled. */
  readonly events: { at: number; e: TurnEvent }[] = [];
  /** Every STUN message the client sent. */
  readonly sent: Sent[] = [];
  /** handleStun's answers, in order. */
  readonly handled: boolean[] = [];
  /** Channel data that reached the gateway, with the peer the client resolved it to. */
  readonly channelData: { channel: number; peer: TransportAddress | undefined; payload: string }[] = [];
  readonly atPeer: { from: TransportAddress; payload: string }[] = [];
  readonly atPeer2: { from: TransportAddress; payload: string }[] = [];

  constructor(readonly opts: SimOptions) {
    const rnd = seededRandom(opts.seed ?? 7);
    this.server = new FakeTurnServer(this.net, {
      address: RELAY_IP,
      mode: opts.mode,
      ...(opts.serverRealm ? { realm: opts.serverRealm } : {}),
      password: (u) => (u === USERNAME ? PASSWORD : undefined),
      random: seededRandom((opts.seed ?? 7) + 1000),
      now: () => this.now,
    });
    this.client = new TurnClient({
      relay: {
        id: 'relay-1',
        servers: [RELAY],
        username: opts.username ?? USERNAME,
        password: opts.password ?? PASSWORD,
      },
      random: rnd,
      software: SOFTWARE,
    });
    this.gw = this.net.open({ family: 4, address: '10.0.0.2', port: GATEWAY.port });
    this.gw.start((batch) => {
      for (let i = 0; i < batch.count; i++) {
        const bytes = batch.bufs[i]!.slice(0, batch.lengths[i]!);
        const from = { ip: Uint8Array.from(datagramSource(batch, i)), port: batch.srcPorts[i]! };
        this.onGatewayDatagram(bytes, from);
      }
    });
    this.peer = this.openPeer(PEER, this.atPeer);
    this.peer2 = this.openPeer(PEER2, this.atPeer2);
  }

  private openPeer(
    addr: TransportAddress,
    log: { from: TransportAddress; payload: string }[],
  ): MemoryUdpSocket {
    const s = this.net.open({ family: 4, address: [...addr.ip].join('.'), port: addr.port });
    s.start((batch) => {
      for (let i = 0; i < batch.count; i++) {
        log.push({
          from: { ip: Uint8Array.from(datagramSource(batch, i)), port: batch.srcPorts[i]! },
          payload: utf8(batch.bufs[i]!.subarray(0, batch.lengths[i]!)),
        });
      }
    });
    return s;
  }

  onGatewayDatagram(bytes: Uint8Array, from: TransportAddress): void {
    if (looksLikeStun(bytes, 0, bytes.length)) {
      const m = decodeStun(bytes);
      if (m.ok) this.handled.push(this.client.handleStun(m.value, from, this.now));
      return;
    }
    if (looksLikeChannelData(bytes, 0, bytes.length)) {
      const cd = decodeChannelData(bytes, 0, bytes.length);
      if (!cd.ok) return;
      const v = cd.value;
      this.channelData.push({
        channel: v.channel,
        peer: this.client.peerOfChannel(v.channel, this.now),
        payload: utf8(bytes.subarray(v.payloadOffset, v.payloadOffset + v.payloadLength)),
      });
    }
  }

  /** Sends what the client queued (recording it). */
  flushClient(): number {
    let n = 0;
    for (let t: TurnTransmit | undefined = this.client.pollTransmit(); t; t = this.client.pollTransmit()) {
      const m = decodeStun(t.bytes);
      if (!m.ok) throw new Error(`the client sent a non-STUN message: ${m.error.message}`);
      this.sent.push({ at: this.now, to: t.to, msg: m.value });
      this.gw.send(t.bytes, 0, t.bytes.length, t.to.ip, t.to.port);
      n++;
    }
    for (let e = this.client.pollEvent(); e; e = this.client.pollEvent())
      this.events.push({ at: this.now, e });
    return n;
  }

  /** Moves everything until the network is quiet. */
  pump(): void {
    for (let i = 0; i < 100; i++) {
      const sent = this.flushClient();
      const delivered = this.net.deliver();
      if (sent === 0 && delivered === 0) return;
    }
    throw new Error('the network did not settle');
  }

  /** Advances the clock to `to`, firing the client's timers at their deadlines. */
  advance(to: number): void {
    this.pump();
    for (let i = 0; i < 10_000; i++) {
      const at = this.client.pollTimeout();
      if (at > to) {
        this.now = to;
        this.pump();
        return;
      }
      this.now = Math.max(this.now, at);
      this.client.handleTimeout(this.now);
      this.pump();
    }
    throw new Error('timers did not settle');
  }

  /** Drains the events recorded so far. */
  takeEvents(): TurnEvent[] {
    return this.events.splice(0).map((x) => x.e);
  }

  sentOf(method: number): Sent[] {
    return this.sent.filter((s) => s.msg.method === method);
  }

  probe(): void {
    this.client.probe(this.now);
    this.pump();
  }

  /** probe → bound → allocate → allocated; returns the allocated event. */
  establish(): Extract<TurnEvent, { type: 'allocated' }> {
    this.probe();
    this.client.allocate(this.now);
    this.pump();
    const events = this.takeEvents();
    const allocated = events.find((e) => e.type === 'allocated');
    if (allocated?.type !== 'allocated') throw new Error(`no allocation: ${JSON.stringify(events)}`);
    return allocated;
  }

  /** Binds a channel to `peer` and waits for the confirmation. */
  bind(peer: TransportAddress): number {
    const n = this.client.bindChannel(peer, this.now);
    if (n === undefined) throw new Error('no channel');
    this.pump();
    return n;
  }

  /** Channel data from the gateway through the relay. */
  sendVia(channel: number, payload: string): void {
    const p = text(payload);
    const frame = new Uint8Array(4 + p.length);
    frame[0] = channel >>> 8;
    frame[1] = channel & 0xff;
    frame[2] = p.length >>> 8;
    frame[3] = p.length & 0xff;
    frame.set(p, 4);
    const to = this.client.activeServer!;
    this.gw.send(frame, 0, frame.length, to.ip, to.port);
  }

  /** A datagram from a peer socket to the allocation's relayed address. */
  peerSends(from: MemoryUdpSocket, payload: string): void {
    const relayed = this.client.relayed[0]!;
    const p = text(payload);
    from.send(p, 0, p.length, relayed.ip, relayed.port);
  }

  /** Removes the datagrams in flight (for tampering), after the client's transmits. */
  take(): MemoryDatagram[] {
    this.flushClient();
    this.net.deliver();
    this.flushClient();
    return this.net.take();
  }

  /** Hands a datagram straight to the gateway's STUN path, as if the relay had sent it. */
  feed(bytes: Uint8Array, from: TransportAddress = RELAY): boolean | undefined {
    const m = decodeStun(bytes);
    if (!m.ok) return undefined;
    return this.client.handleStun(m.value, from, this.now);
  }
}

function encodeAddr(a: TransportAddress, tx: Uint8Array): Uint8Array {
  return attribute(
    decodeOk(
      new StunBuilder(METHOD_ALLOCATE, CLASS_SUCCESS, tx).addXorAddress(ATTR_XOR_RELAYED_ADDRESS, a).build(),
    ),
    ATTR_XOR_RELAYED_ADDRESS,
  )!;
}

function decodeOk(bytes: Uint8Array): StunMessage {
  const m = decodeStun(bytes);
  if (!m.ok) throw new Error(m.error.message);
  return m.value;
}

function types(msg: StunMessage): number[] {
  return msg.attributes.map((a) => a.type);
}

function xorAddr(msg: StunMessage, type: number): string {
  const v = attribute(msg, type);
  const r = v ? decodeXorAddress(v, msg.transactionId) : undefined;
  return r?.ok ? show(r.value) : 'none';
}

// --- Both servers ---------------------------------------------------------------------------------

describe.each<Mode>(['firezone', 'coturn'])('TurnClient against a %s-like server', (mode) => {
  it('probes with an unauthenticated BINDING and reports the mapped address', () => {
    const sim = new Sim({ mode });
    sim.probe();
    expect(sim.takeEvents()).toEqual([{ type: 'bound', server: RELAY, mapped: GATEWAY }]);
    expect(show(sim.client.activeServer)).toBe('10.10.9.1:3478');
    const [req] = sim.sentOf(METHOD_BINDING);
    expect(types(req!.msg)).toEqual([ATTR_SOFTWARE]);
    expect(utf8(attribute(req!.msg, ATTR_SOFTWARE)!)).toBe(SOFTWARE);
    expect(sim.server.stats.bindings).toBe(1);
  });

  it('takes the BINDING answer whatever extra attributes the server adds', () => {
    // coturn adds MAPPED-ADDRESS and RESPONSE-ORIGIN (§3.8 row 9); they are ignored.
    const sim = new Sim({ mode });
    sim.client.probe(0);
    sim.flushClient();
    sim.net.deliver();
    const [resp] = sim.net.take();
    const m = decodeStun(resp!.data);
    expect(m.ok && types(m.value)).toEqual(
      mode === 'coturn'
        ? [ATTR_XOR_MAPPED_ADDRESS, ATTR_MAPPED_ADDRESS, ATTR_RESPONSE_ORIGIN, ATTR_SOFTWARE]
        : [ATTR_XOR_MAPPED_ADDRESS, ATTR_SOFTWARE],
    );
    sim.net.inject([resp!]);
    sim.pump();
    expect(sim.takeEvents().map((e) => e.type)).toEqual(['bound']);
  });

  it('allocates through the 401 challenge and reports relayed address, mapped address, lifetime', () => {
    const sim = new Sim({ mode });
    const allocated = sim.establish();
    expect(show(allocated.relayed[0])).toBe('10.10.9.1:49152');
    expect(allocated.relayed).toHaveLength(1);
    expect(show(allocated.mapped)).toBe('10.0.0.2:51820');
    expect(allocated.lifetimeS).toBe(600);
    expect(sim.client.allocated).toBe(true);
    expect(sim.server.allocationCount()).toBe(1);
    expect(sim.server.stats.allocations).toBe(1);

    const [first, second, ...rest] = sim.sentOf(METHOD_ALLOCATE);
    expect(rest).toEqual([]);
    // The first ALLOCATE fetches the challenge: no credentials (coturn answers 400 otherwise).
    expect(types(first!.msg)).toEqual([
      ATTR_REQUESTED_TRANSPORT,
      ATTR_ADDITIONAL_ADDRESS_FAMILY,
      ATTR_SOFTWARE,
    ]);
    // The second carries them, in snownet's order, with the nonce of the challenge.
    expect(types(second!.msg)).toEqual([
      ATTR_REQUESTED_TRANSPORT,
      ATTR_ADDITIONAL_ADDRESS_FAMILY,
      ATTR_SOFTWARE,
      ATTR_USERNAME,
      ATTR_REALM,
      ATTR_NONCE,
      ATTR_MESSAGE_INTEGRITY,
    ]);
    expect(hex(attribute(second!.msg, ATTR_REQUESTED_TRANSPORT)!)).toBe('11000000');
    expect(hex(attribute(second!.msg, ATTR_ADDITIONAL_ADDRESS_FAMILY)!)).toBe('02000000');
    expect(utf8(attribute(second!.msg, ATTR_USERNAME)!)).toBe(USERNAME);
    expect(utf8(attribute(second!.msg, ATTR_REALM)!)).toBe('firezone');
    expect(attribute(second!.msg, ATTR_NONCE)).toHaveLength(32);
    expect(verifyIntegrity(second!.msg, KEY)).toBe(true);
    expect(hex(second!.msg.transactionId)).not.toBe(hex(first!.msg.transactionId));
    expect(sim.client.drops).toEqual({ unmatched: 0, badIntegrity: 0, wrongRealm: 0 });
  });

  it('refreshes the allocation at half its lifetime without the attributes coturn refuses', () => {
    const sim = new Sim({ mode });
    sim.establish();
    sim.advance(300_000);
    expect(sim.takeEvents()).toEqual([]);
    sim.client.refresh(sim.now);
    sim.pump();
    expect(sim.takeEvents()).toEqual([{ type: 'refreshed', lifetimeS: 600 }]);
    expect(sim.server.stats.refreshes).toBe(1);
    const [req] = sim.sentOf(METHOD_REFRESH);
    expect(types(req!.msg)).toEqual([
      ATTR_SOFTWARE,
      ATTR_USERNAME,
      ATTR_REALM,
      ATTR_NONCE,
      ATTR_MESSAGE_INTEGRITY,
    ]);
    // The refresh moved the end of the lifetime: past the first 600 s, nothing expires.
    sim.advance(899_999);
    expect(sim.takeEvents()).toEqual([]);
    expect(sim.client.allocated).toBe(true);
    expect(sim.server.allocationCount()).toBe(1);
    sim.advance(900_000);
    expect(sim.takeEvents()).toEqual([
      { type: 'failed', request: 'refresh', reason: 'timeout', message: 'the allocation expired' },
    ]);
    expect(sim.server.allocationCount()).toBe(0);
  });

  it('lets the allocation expire on both sides when nobody refreshes it', () => {
    const sim = new Sim({ mode });
    sim.establish();
    sim.advance(599_999);
    expect(sim.client.allocated).toBe(true);
    expect(sim.server.allocationCount()).toBe(1);
    sim.advance(600_000);
    expect(sim.takeEvents()).toMatchObject([{ type: 'failed', request: 'refresh', reason: 'timeout' }]);
    expect(sim.client.allocated).toBe(false);
    expect(sim.server.allocationCount()).toBe(0);
    // An ALLOCATE now gets a fresh allocation (no 437: the server's one is gone too).
    sim.client.allocate(sim.now);
    sim.pump();
    expect(sim.takeEvents().map((e) => e.type)).toEqual(['allocated']);
  });

  it('deletes the allocation with REFRESH LIFETIME 0', () => {
    const sim = new Sim({ mode });
    sim.establish();
    sim.client.refresh(sim.now, 0);
    sim.pump();
    expect(sim.takeEvents()).toEqual([{ type: 'deleted' }]);
    expect(sim.client.allocated).toBe(false);
    expect(sim.client.relayed).toEqual([]);
    expect(sim.server.allocationCount()).toBe(0);
    const [req] = sim.sentOf(METHOD_REFRESH);
    expect(decodeU32(attribute(req!.msg, ATTR_LIFETIME)!)).toEqual({ ok: true, value: 0 });
    // Deleting is not followed by a new ALLOCATE.
    sim.advance(20_000);
    expect(sim.sentOf(METHOD_ALLOCATE)).toHaveLength(2);
  });

  it('repairs a 437: deletes the allocation the server still has, then allocates anew', () => {
    const sim = new Sim({ mode });
    sim.establish();
    // The client forgets (a restart); the server keeps the allocation of the same 5-tuple.
    sim.client.reset();
    sim.sent.length = 0;
    sim.probe();
    sim.client.allocate(sim.now);
    sim.pump();
    expect(sim.takeEvents()).toEqual([
      { type: 'bound', server: RELAY, mapped: GATEWAY },
      { type: 'allocation-mismatch', request: 'allocate' },
      { type: 'deleted' },
      { type: 'allocated', relayed: [{ ip: RELAY.ip, port: 49153 }], mapped: GATEWAY, lifetimeS: 600 },
    ]);
    expect(sim.sent.map((s) => s.msg.method)).toEqual([
      METHOD_BINDING,
      METHOD_ALLOCATE, // challenged (the reset dropped the nonce)
      METHOD_ALLOCATE, // 437
      METHOD_REFRESH, // LIFETIME 0
      METHOD_ALLOCATE,
    ]);
    expect(decodeU32(attribute(sim.sentOf(METHOD_REFRESH)[0]!.msg, ATTR_LIFETIME)!)).toEqual({
      ok: true,
      value: 0,
    });
    expect(sim.server.stats.allocations).toBe(2);
    expect(sim.server.allocationCount()).toBe(1);
    expect(show(sim.server.relayedAddressOf(GATEWAY))).toBe('10.10.9.1:49153');
  });

  it('re-allocates when REFRESH finds no allocation (437)', () => {
    const sim = new Sim({ mode });
    sim.establish();
    // The refresh races the expiry: the server has just dropped the allocation.
    sim.now = 600_000;
    sim.client.refresh(sim.now);
    sim.pump();
    expect(sim.takeEvents()).toEqual([
      { type: 'allocation-mismatch', request: 'refresh' },
      { type: 'allocated', relayed: [{ ip: RELAY.ip, port: 49153 }], mapped: GATEWAY, lifetimeS: 600 },
    ]);
    expect(sim.sent.slice(-2).map((x) => x.msg.method)).toEqual([METHOD_REFRESH, METHOD_ALLOCATE]);
    expect(sim.server.allocationCount()).toBe(1);
  });

  it('binds a channel optimistically and carries channel data both ways', () => {
    const sim = new Sim({ mode });
    const { relayed } = sim.establish();
    const n = sim.client.bindChannel(PEER, sim.now);
    expect(n).toBe(0x4000);
    // Usable for sending at once, but inbound data on it is not accepted before the answer.
    expect(sim.client.channelFor(PEER, sim.now)).toBe(0x4000);
    expect(sim.client.peerOfChannel(0x4000, sim.now)).toBeUndefined();
    // A second call does not bind again.
    expect(sim.client.bindChannel(PEER, sim.now)).toBe(0x4000);

    // Out: the CHANNEL-BIND goes first on the same socket, so the server relays at once.
    sim.flushClient();
    sim.sendVia(n!, 'optimistic hello');
    sim.net.deliver(); // the server gets the CHANNEL-BIND and the frame
    const answer = sim.net.take(); // hold the CHANNEL-BIND success; the frame reached the peer's queue
    const toPeer = answer.filter((d) => d.dstPort === PEER.port);
    const toGateway = answer.filter((d) => d.dstPort === GATEWAY.port);
    expect(toGateway).toHaveLength(1);
    sim.net.inject(toPeer);
    sim.net.deliver();
    expect(sim.atPeer).toEqual([{ from: relayed[0], payload: 'optimistic hello' }]);

    // In, before the confirmation: relayed by the server, but not attributed by the client.
    sim.peerSends(sim.peer, 'too early');
    sim.net.deliver();
    sim.net.deliver();
    expect(sim.channelData).toEqual([{ channel: 0x4000, peer: undefined, payload: 'too early' }]);

    sim.net.inject(toGateway);
    sim.pump();
    expect(sim.takeEvents()).toEqual([{ type: 'channel-bound', peer: PEER, channel: 0x4000 }]);
    expect(sim.client.peerOfChannel(0x4000, sim.now)).toEqual(PEER);

    sim.peerSends(sim.peer, 'pong');
    sim.pump();
    expect(sim.channelData.at(-1)).toEqual({ channel: 0x4000, peer: PEER, payload: 'pong' });
    sim.sendVia(n!, 'ping');
    sim.pump();
    expect(sim.atPeer.at(-1)).toEqual({ from: relayed[0], payload: 'ping' });
    expect(sim.server.stats).toMatchObject({ channelBinds: 1, channelDataIn: 2, channelDataOut: 2 });

    // The CHANNEL-BIND as sent: XOR-PEER-ADDRESS, CHANNEL-NUMBER, SOFTWARE, credentials.
    const [req] = sim.sentOf(METHOD_CHANNEL_BIND);
    expect(types(req!.msg)).toEqual([
      ATTR_XOR_PEER_ADDRESS,
      ATTR_CHANNEL_NUMBER,
      ATTR_SOFTWARE,
      ATTR_USERNAME,
      ATTR_REALM,
      ATTR_NONCE,
      ATTR_MESSAGE_INTEGRITY,
    ]);
    expect(xorAddr(req!.msg, ATTR_XOR_PEER_ADDRESS)).toBe('10.0.0.3:40000');
    expect(hex(attribute(req!.msg, ATTR_CHANNEL_NUMBER)!)).toBe('40000000');

    // A second peer gets the next number; a datagram from an unbound peer is dropped.
    sim.peerSends(sim.peer2, 'stranger');
    sim.pump();
    expect(sim.channelData.map((c) => c.payload)).not.toContain('stranger');
    expect(sim.server.stats.dropped).toBe(1);
    expect(sim.bind(PEER2)).toBe(0x4001);
    sim.peerSends(sim.peer2, 'second');
    sim.pump();
    expect(sim.channelData.at(-1)).toEqual({ channel: 0x4001, peer: PEER2, payload: 'second' });
  });

  it('buffers a bind requested before the allocation and flushes it once allocated', () => {
    const sim = new Sim({ mode });
    sim.probe();
    expect(sim.client.bindChannel(PEER, sim.now)).toBeUndefined();
    expect(sim.sentOf(METHOD_CHANNEL_BIND)).toEqual([]);
    sim.client.allocate(sim.now);
    sim.pump();
    expect(sim.takeEvents().map((e) => e.type)).toEqual(['bound', 'allocated', 'channel-bound']);
    expect(sim.client.channelFor(PEER, sim.now)).toBe(0x4000);
  });

  it('refreshes a channel at 240 s only if it carried traffic, and lets an unused one lapse at 600 s', () => {
    const sim = new Sim({ mode });
    sim.establish();
    const a = sim.bind(PEER);
    const b = sim.bind(PEER2);
    expect([a, b]).toEqual([0x4000, 0x4001]);
    sim.takeEvents();
    sim.advance(10_000);
    sim.peerSends(sim.peer, 'used');
    sim.pump();
    expect(sim.channelData.at(-1)).toEqual({ channel: a, peer: PEER, payload: 'used' });

    sim.advance(CHANNEL_REFRESH_AFTER_MS - 1);
    expect(sim.sentOf(METHOD_CHANNEL_BIND)).toHaveLength(2);
    sim.advance(CHANNEL_REFRESH_AFTER_MS);
    const binds = sim.sentOf(METHOD_CHANNEL_BIND);
    expect(binds).toHaveLength(3);
    expect(binds[2]!.at).toBe(CHANNEL_REFRESH_AFTER_MS);
    expect(xorAddr(binds[2]!.msg, ATTR_XOR_PEER_ADDRESS)).toBe('10.0.0.3:40000');
    expect(hex(attribute(binds[2]!.msg, ATTR_CHANNEL_NUMBER)!)).toBe('40000000');
    expect(sim.server.stats.channelBinds).toBe(3);
    // The re-bind is silent: channel-bound is only reported the first time.
    expect(sim.takeEvents()).toEqual([]);

    // Keep the allocation.
    sim.advance(300_000);
    sim.client.refresh(sim.now);
    sim.advance(350_000);
    // coturn's 300 s permission (installed by CHANNEL-BIND at 0 s) is gone for the unused peer;
    // the used one was re-bound at 240 s. The Firezone relay enforces no permissions.
    sim.peerSends(sim.peer, 'a@350');
    sim.peerSends(sim.peer2, 'b@350');
    sim.pump();
    const got = sim.channelData.slice(-2).map((c) => c.payload);
    expect(got).toEqual(mode === 'coturn' ? ['used', 'a@350'] : ['a@350', 'b@350']);

    // b was never used by the client (the Firezone relay's data above marks it used, though).
    sim.advance(599_999);
    const bindsBefore = sim.sentOf(METHOD_CHANNEL_BIND).length;
    sim.advance(600_000);
    expect(sim.client.channelFor(PEER, sim.now)).toBe(a);
    if (mode === 'coturn') {
      // Never used: lapsed on the client at 600 s, without a re-bind.
      expect(sim.sentOf(METHOD_CHANNEL_BIND)).toHaveLength(bindsBefore);
      expect(sim.client.channelFor(PEER2, sim.now)).toBeUndefined();
      expect(sim.client.peerOfChannel(b, sim.now)).toBeUndefined();
    } else {
      // Used by the data at 350 s, so re-bound and alive.
      expect(sim.client.channelFor(PEER2, sim.now)).toBe(b);
    }
  });

  it('lets a channel lapse 600 s after its last bind when nothing used it', () => {
    const sim = new Sim({ mode });
    sim.establish();
    const n = sim.bind(PEER);
    sim.advance(300_000);
    sim.client.refresh(sim.now);
    sim.advance(599_999);
    expect(sim.sentOf(METHOD_CHANNEL_BIND)).toHaveLength(1);
    sim.advance(600_000);
    expect(sim.client.channelFor(PEER, sim.now)).toBeUndefined();
    expect(sim.client.peerOfChannel(n, sim.now)).toBeUndefined();
    // The server's channel is gone too: the peer's datagram is dropped.
    sim.peerSends(sim.peer, 'late');
    sim.pump();
    expect(sim.channelData).toEqual([]);
    // Binding the peer again re-binds the lapsed number: the server keeps number and peer
    // reserved to each other for 5 min, and would refuse another number for the peer (400).
    sim.takeEvents();
    expect(sim.bind(PEER)).toBe(0x4000);
    expect(sim.takeEvents()).toEqual([{ type: 'channel-bound', peer: PEER, channel: 0x4000 }]);
    sim.peerSends(sim.peer, 'again');
    sim.pump();
    expect(sim.channelData).toEqual([{ channel: 0x4000, peer: PEER, payload: 'again' }]);
    // Another peer still gets the next number, not the lapsed one.
    expect(sim.bind(PEER2)).toBe(0x4001);
  });

  it('retransmits at 0, 1, 2.5 and 4.75 s and gives up at 8 s when the server is gone', () => {
    const sim = new Sim({ mode });
    sim.probe();
    sim.takeEvents();
    sim.advance(1_000_000 - 1);
    sim.server.stop();
    sim.advance(1_000_000);
    const t0 = sim.now;
    sim.client.allocate(t0);
    sim.advance(t0 + 20_000);
    const allocs = sim.sentOf(METHOD_ALLOCATE);
    expect(allocs.map((s) => s.at - t0)).toEqual([0, 1000, 2500, 4750]);
    // ALLOCATE retries get fresh transaction ids.
    expect(new Set(allocs.map((s) => hex(s.msg.transactionId))).size).toBe(4);
    expect(sim.events.map(({ at, e }) => ({ at: at - t0, type: e.type }))).toEqual([
      { at: 8000, type: 'failed' },
    ]);
    expect(sim.takeEvents()).toMatchObject([{ type: 'failed', request: 'allocate', reason: 'timeout' }]);
    expect(sim.client.activeServer).toBeUndefined();
  });

  it('retransmits a probe with the same transaction id on the same schedule', () => {
    const sim = new Sim({ mode });
    sim.server.stop();
    sim.client.probe(0);
    sim.advance(20_000);
    const probes = sim.sentOf(METHOD_BINDING);
    expect(probes.map((s) => s.at)).toEqual([0, 1000, 2500, 4750]);
    expect(new Set(probes.map((s) => hex(s.msg.transactionId))).size).toBe(1);
    expect(sim.events).toMatchObject([
      { at: 8000, e: { type: 'failed', request: 'binding', reason: 'timeout' } },
    ]);
    expect(sim.net.undeliverable).toBe(4);
  });

  it('fails with reason auth when a server tells it plainly that the credentials are wrong', () => {
    // coturn answers a bad MESSAGE-INTEGRITY with an unsigned 401; the Firezone relay answers an
    // unknown user with an unsigned 401 (it has no key to sign with).
    const sim = new Sim(mode === 'coturn' ? { mode, password: 'wrong' } : { mode, username: '1:unknown' });
    sim.probe();
    sim.client.allocate(sim.now);
    sim.pump();
    expect(sim.takeEvents().slice(1)).toEqual([
      {
        type: 'failed',
        request: 'allocate',
        reason: 'auth',
        code: 401,
        message: 'the relay refused our credentials: 401 Unauthorized',
      },
    ]);
    expect(sim.sentOf(METHOD_ALLOCATE)).toHaveLength(2);
    expect(sim.server.allocationCount()).toBe(0);
    // Nothing left in flight.
    sim.advance(20_000);
    expect(sim.sentOf(METHOD_ALLOCATE)).toHaveLength(2);
    expect(sim.takeEvents()).toEqual([]);
  });

  it('ignores a challenge from a foreign realm (drops.wrongRealm) and times out', () => {
    const sim = new Sim({ mode, serverRealm: 'example.org' });
    sim.probe();
    sim.client.allocate(sim.now);
    sim.advance(20_000);
    // Every one of the 4 sends was challenged from the wrong realm; none was answered again.
    expect(sim.sentOf(METHOD_ALLOCATE)).toHaveLength(4);
    expect(sim.sentOf(METHOD_ALLOCATE).every((s) => attribute(s.msg, ATTR_USERNAME) === undefined)).toBe(
      true,
    );
    expect(sim.client.drops.wrongRealm).toBe(4);
    expect(sim.handled).toEqual([true, false, false, false, false]);
    expect(sim.takeEvents().map((e) => e.type === 'failed' && e.reason)).toEqual([false, 'timeout']);
  });

  it('ignores a success response whose MESSAGE-INTEGRITY does not verify (drops.badIntegrity)', () => {
    const sim = new Sim({ mode });
    sim.establish();
    sim.client.refresh(sim.now);
    const [resp] = sim.take();
    expect(resp!.dstPort).toBe(GATEWAY.port);
    const forged = Uint8Array.from(resp!.data);
    forged[forged.length - 1]! ^= 0x01; // the last byte of the MAC
    expect(sim.feed(forged)).toBe(false);
    expect(sim.client.drops.badIntegrity).toBe(1);
    expect(sim.takeEvents()).toEqual([]);
    // The request is still in flight: the genuine answer is taken.
    expect(sim.feed(resp!.data)).toBe(true);
    sim.flushClient();
    expect(sim.takeEvents()).toEqual([{ type: 'refreshed', lifetimeS: 600 }]);
  });

  it('retransmits after ignoring a forged success, and takes the next genuine answer', () => {
    const sim = new Sim({ mode });
    sim.establish();
    const t0 = sim.now;
    sim.client.refresh(t0);
    const [resp] = sim.take();
    const forged = Uint8Array.from(resp!.data);
    forged[forged.length - 10]! ^= 0x80;
    sim.net.inject([{ ...resp!, data: forged }]);
    sim.pump();
    expect(sim.client.drops.badIntegrity).toBe(1);
    sim.advance(t0 + 1000);
    expect(sim.takeEvents()).toEqual([{ type: 'refreshed', lifetimeS: 600 }]);
    expect(sim.sentOf(METHOD_REFRESH).map((s) => s.at - t0)).toEqual([0, 1000]);
  });

  it('counts responses that match no transaction (drops.unmatched)', () => {
    const sim = new Sim({ mode });
    sim.establish();
    const stray = new StunBuilder(METHOD_REFRESH, CLASS_SUCCESS, new Uint8Array(12).fill(0x5a))
      .addU32(ATTR_LIFETIME, 600)
      .integrity(KEY)
      .build();
    expect(sim.feed(stray)).toBe(false);
    expect(sim.client.drops.unmatched).toBe(1);

    // The right transaction from the wrong address.
    sim.client.refresh(sim.now);
    const [resp] = sim.take();
    expect(sim.feed(resp!.data, PEER)).toBe(false);
    expect(sim.client.drops.unmatched).toBe(2);
    // A request is never an answer.
    const req = sim.sentOf(METHOD_REFRESH)[0]!.msg.raw;
    expect(sim.feed(req)).toBe(false);
    expect(sim.client.drops.unmatched).toBe(3);
    // An error without ERROR-CODE is not taken either.
    const tx = sim.sentOf(METHOD_REFRESH)[0]!.msg.transactionId;
    expect(sim.feed(new StunBuilder(METHOD_REFRESH, CLASS_ERROR, tx).integrity(KEY).build())).toBe(false);
    expect(sim.client.drops.unmatched).toBe(4);
    expect(sim.takeEvents()).toEqual([]);
    expect(sim.feed(resp!.data)).toBe(true);
    expect(sim.client.drops).toEqual({ unmatched: 4, badIntegrity: 0, wrongRealm: 0 });
  });

  it('ignores an unsigned error to a signed request unless it is a 401/438 challenge', () => {
    // Anyone who saw the transaction id could otherwise tear the allocation down (§3.2 step 4);
    // coturn signs its 437/420/440 too, only its challenges are unsigned (§3.8).
    const sim = new Sim({ mode });
    sim.establish();
    sim.client.refresh(sim.now);
    sim.take(); // the genuine answer never arrives
    const tx = sim.sentOf(METHOD_REFRESH)[0]!.msg.transactionId;
    for (const code of [437, 420, 400, 500]) {
      const forged = new StunBuilder(METHOD_REFRESH, CLASS_ERROR, tx).addErrorCode(code, 'Forged').build();
      expect(sim.feed(forged), `${code}`).toBe(false);
    }
    expect(sim.client.drops.badIntegrity).toBe(4);
    expect(sim.client.allocated).toBe(true);
    sim.flushClient();
    expect(sim.takeEvents()).toEqual([]);
    // The same 437, signed, is taken.
    const signed = new StunBuilder(METHOD_REFRESH, CLASS_ERROR, tx)
      .addErrorCode(437, 'Allocation Mismatch')
      .integrity(KEY)
      .build();
    expect(sim.feed(signed)).toBe(true);
    sim.flushClient();
    expect(sim.takeEvents()).toEqual([{ type: 'allocation-mismatch', request: 'refresh' }]);
  });

  it('keeps working after arbitrary bytes are thrown at it', () => {
    const sim = new Sim({ mode });
    sim.establish();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), (bytes, asStun) => {
        let buf = bytes;
        if (asStun) {
          // A valid header around random attributes, so that decoding gets past it.
          const body = bytes.subarray(0, bytes.length & ~3);
          buf = new Uint8Array(20 + body.length);
          buf.set(bytes.subarray(0, 2));
          buf[0]! &= 0x3f;
          buf[2] = body.length >>> 8;
          buf[3] = body.length & 0xff;
          buf.set([0x21, 0x12, 0xa4, 0x42], 4);
          buf.set(body, 20);
        }
        const m = decodeStun(buf);
        if (m.ok) expect(sim.client.handleStun(m.value, RELAY, sim.now)).toBe(false);
      }),
      { numRuns: 300, seed: 5769 },
    );
    sim.client.refresh(sim.now);
    sim.pump();
    expect(sim.takeEvents()).toEqual([{ type: 'refreshed', lifetimeS: 600 }]);
  });
});

describe('TurnClient against the Firezone relay with a wrong password', () => {
  it('cannot verify the signed 401, ignores it (drops.badIntegrity) and times out', () => {
    // The relay signs its refusal with the key it derives for the user, which is not ours: the
    // answer does not prove it comes from the relay, so it is ignored (§3.2 step 4).
    const sim = new Sim({ mode: 'firezone', password: 'wrong' });
    sim.probe();
    sim.client.allocate(sim.now);
    sim.advance(20_000);
    // The challenge is answered at once, then retransmitted at 1, 2.5 and 4.75 s.
    expect(sim.sentOf(METHOD_ALLOCATE).map((x) => x.at)).toEqual([0, 0, 1000, 2500, 4750]);
    // 1 unsigned challenge taken, then 4 signed refusals ignored.
    expect(sim.client.drops.badIntegrity).toBe(4);
    expect(sim.takeEvents().slice(1)).toMatchObject([
      { type: 'failed', request: 'allocate', reason: 'timeout' },
    ]);
    expect(sim.server.allocationCount()).toBe(0);
  });
});

// --- Forgeries and mutations ----------------------------------------------------------------------

describe('TurnClient under forged and mutated responses', () => {
  it('takes no forged response to a pending signed request, and still takes the real one', () => {
    for (const mode of ['firezone', 'coturn'] as const) {
      const sim = new Sim({ mode });
      sim.establish();
      sim.client.refresh(sim.now);
      sim.flushClient();
      sim.net.take(); // lost on the way: the REFRESH stays pending, unanswered
      const pending = sim.sentOf(METHOD_REFRESH)[0]!.msg.transactionId;
      const sentBefore = sim.sent.length;
      const attrArb = fc.oneof(
        fc.record({
          type: fc.constant(ATTR_ERROR_CODE),
          value: fc
            .tuple(fc.integer({ min: 3, max: 6 }), fc.integer({ min: 0, max: 99 }))
            // Unsigned 401/438 are challenges a standard server may send: taken by design (§3.8).
            .filter(([c, n]) => c * 100 + n !== 401 && c * 100 + n !== 438)
            .map(([c, n]) => Uint8Array.of(0, 0, c, n)),
        }),
        fc.record({ type: fc.constant(ATTR_LIFETIME), value: fc.uint8Array({ minLength: 4, maxLength: 4 }) }),
        fc.record({ type: fc.constant(ATTR_NONCE), value: fc.uint8Array({ maxLength: 16 }) }),
        fc.record({ type: fc.constant(ATTR_REALM), value: fc.constantFrom(text('firezone'), text('x')) }),
        fc.record({
          type: fc.constant(ATTR_XOR_RELAYED_ADDRESS),
          value: fc.constant(new Uint8Array(0)).map(() => encodeAddr({ ip: RELAY.ip, port: 50000 }, pending)),
        }),
        fc.record({
          type: fc.constant(ATTR_MESSAGE_INTEGRITY),
          value: fc.uint8Array({ minLength: 20, maxLength: 20 }),
        }),
        fc.record({
          type: fc.integer({ min: 0, max: 0xffff }).filter((t) => t !== ATTR_ERROR_CODE),
          value: fc.uint8Array({ maxLength: 12 }),
        }),
      );
      fc.assert(
        fc.property(
          fc.constantFrom<StunClass>(CLASS_SUCCESS, CLASS_ERROR),
          fc.constantFrom(METHOD_REFRESH, METHOD_ALLOCATE, METHOD_BINDING),
          fc.array(attrArb, { maxLength: 6 }),
          (cls, method, attrs) => {
            const b = new StunBuilder(method, cls, pending);
            for (const a of attrs) b.add(a.type, a.value);
            expect(sim.feed(b.build())).toBe(false);
            sim.flushClient();
            expect(sim.events).toEqual([]);
            expect(sim.sent.length).toBe(sentBefore);
          },
        ),
        { numRuns: 300, seed: 5769 },
      );
      expect(sim.client.allocated).toBe(true);
      // The retransmission gets the genuine answer through.
      sim.advance(sim.now + 1000);
      expect(sim.takeEvents()).toEqual([{ type: 'refreshed', lifetimeS: 600 }]);
    }
  });

  it('survives arbitrary mutations of a genuine signed response, and takes it exactly once', () => {
    for (const mode of ['firezone', 'coturn'] as const) {
      const sim = new Sim({ mode });
      sim.establish();
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
          fc.nat(3),
          (edits, truncate) => {
            sim.client.refresh(sim.now);
            const [resp] = sim.take();
            const genuine = resp!.data;
            let mutated = Uint8Array.from(genuine);
            for (const [at, v] of edits) mutated[at % mutated.length] = v;
            if (truncate > 0) mutated = mutated.subarray(0, mutated.length - truncate * 4);
            const m = decodeStun(mutated);
            if (m.ok) sim.client.handleStun(m.value, RELAY, sim.now);
            sim.feed(genuine);
            sim.flushClient();
            expect(sim.takeEvents()).toEqual([{ type: 'refreshed', lifetimeS: 600 }]);
            expect(sim.client.allocated).toBe(true);
          },
        ),
        { numRuns: 200, seed: 8656 },
      );
      expect(sim.sentOf(METHOD_REFRESH)).toHaveLength(200);
    }
  });
});

// --- A hand-rolled coturn for what the fake does not do -------------------------------------------

/** A sans-IO exchange with the client: the test answers each request itself. */
class Responder {
  now = 0;
  readonly client = new TurnClient({
    relay: { id: 'r', servers: [RELAY], username: USERNAME, password: PASSWORD },
    random: seededRandom(3),
    software: SOFTWARE,
  });
  readonly events: TurnEvent[] = [];

  /** The next request the client sent. */
  next(): StunMessage {
    const t = this.client.pollTransmit();
    if (!t) throw new Error('nothing sent');
    const m = decodeStun(t.bytes);
    if (!m.ok) throw new Error('not STUN');
    return m.value;
  }

  answer(req: StunMessage, cls: StunClass, add: (b: StunBuilder) => StunBuilder, sign = true): boolean {
    let b = add(new StunBuilder(req.method, cls, req.transactionId));
    if (sign) b = b.integrity(KEY);
    const m = decodeStun(b.build());
    if (!m.ok) throw new Error('bad answer');
    const r = this.client.handleStun(m.value, RELAY, this.now);
    for (let e = this.client.pollEvent(); e; e = this.client.pollEvent()) this.events.push(e);
    return r;
  }

  /** Probe, then ALLOCATE up to the authenticated request (challenged coturn-style). */
  toAuthenticatedAllocate(): StunMessage {
    this.client.probe(0);
    this.answer(this.next(), CLASS_SUCCESS, (b) => b.addXorAddress(ATTR_XOR_MAPPED_ADDRESS, GATEWAY), false);
    this.client.allocate(0);
    this.answer(
      this.next(),
      CLASS_ERROR,
      (b) => b.addErrorCode(401, 'Unauthorized').addText(ATTR_REALM, 'firezone').addText(ATTR_NONCE, 'n1'),
      false,
    );
    return this.next();
  }
}

describe('TurnClient against a standard server configured with external-ip', () => {
  it('retries an ALLOCATE refused with 440 without ADDITIONAL-ADDRESS-FAMILY', () => {
    const r = new Responder();
    const req = r.toAuthenticatedAllocate();
    expect(attribute(req, ATTR_ADDITIONAL_ADDRESS_FAMILY)).toBeDefined();
    expect(r.answer(req, CLASS_ERROR, (b) => b.addErrorCode(440, 'Address Family not Supported'))).toBe(true);
    const retry = r.next();
    expect(retry.method).toBe(METHOD_ALLOCATE);
    expect(types(retry)).toEqual([
      ATTR_REQUESTED_TRANSPORT,
      ATTR_SOFTWARE,
      ATTR_USERNAME,
      ATTR_REALM,
      ATTR_NONCE,
      ATTR_MESSAGE_INTEGRITY,
    ]);
    expect(utf8(attribute(retry, ATTR_NONCE)!)).toBe('n1');
    r.answer(retry, CLASS_SUCCESS, (b) =>
      b
        .addXorAddress(ATTR_XOR_RELAYED_ADDRESS, { ip: RELAY.ip, port: 50000 })
        .addXorAddress(ATTR_XOR_MAPPED_ADDRESS, GATEWAY)
        .addU32(ATTR_LIFETIME, 600),
    );
    expect(r.events.slice(1)).toEqual([
      { type: 'allocated', relayed: [{ ip: RELAY.ip, port: 50000 }], mapped: GATEWAY, lifetimeS: 600 },
    ]);
    // It remembers: an ALLOCATE after a reset leaves the attribute out from the start.
    r.client.reset();
    expect(attribute(r.toAuthenticatedAllocate(), ATTR_ADDITIONAL_ADDRESS_FAMILY)).toBeUndefined();
  });

  it('fails on a 440 to an ALLOCATE that did not carry ADDITIONAL-ADDRESS-FAMILY', () => {
    const r = new Responder();
    r.answer(r.toAuthenticatedAllocate(), CLASS_ERROR, (b) =>
      b.addErrorCode(440, 'Address Family not Supported'),
    );
    const retry = r.next();
    r.answer(retry, CLASS_ERROR, (b) => b.addErrorCode(440, 'Address Family not Supported'));
    expect(r.client.pollTransmit()).toBeUndefined();
    expect(r.events.at(-1)).toEqual({
      type: 'failed',
      request: 'allocate',
      reason: 'error',
      code: 440,
      message: '440 Address Family not Supported',
    });
  });

  it('ignores all-zero XOR-RELAYED-ADDRESS values (a family coturn could not allocate)', () => {
    const r = new Responder();
    r.answer(r.toAuthenticatedAllocate(), CLASS_SUCCESS, (b) =>
      b
        .addXorAddress(ATTR_XOR_RELAYED_ADDRESS, { ip: RELAY.ip, port: 50000 })
        .addXorAddress(ATTR_XOR_RELAYED_ADDRESS, { ip: new Uint8Array(16), port: 0 })
        .addXorAddress(ATTR_XOR_RELAYED_ADDRESS, { ip: new Uint8Array(4), port: 50001 })
        .addXorAddress(ATTR_XOR_MAPPED_ADDRESS, GATEWAY)
        .addU32(ATTR_LIFETIME, 600),
    );
    expect(r.events.slice(1)).toEqual([
      { type: 'allocated', relayed: [{ ip: RELAY.ip, port: 50000 }], mapped: GATEWAY, lifetimeS: 600 },
    ]);
    // So no channel to an IPv6 peer: the allocation cannot reach that family.
    expect(r.client.bindChannel({ ip: new Uint8Array(16).fill(0xfd, 0, 1), port: 1 }, 0)).toBeUndefined();
  });

  it('fails an ALLOCATE whose only relayed addresses are all-zero', () => {
    const r = new Responder();
    r.answer(r.toAuthenticatedAllocate(), CLASS_SUCCESS, (b) =>
      b
        .addXorAddress(ATTR_XOR_RELAYED_ADDRESS, { ip: new Uint8Array(4), port: 0 })
        .addU32(ATTR_LIFETIME, 600),
    );
    expect(r.client.allocated).toBe(false);
    expect(r.events.at(-1)).toMatchObject({ type: 'failed', request: 'allocate', reason: 'error' });
  });

  it('takes an unsigned 438 with a fresh nonce and resends with it', () => {
    const r = new Responder();
    const req = r.toAuthenticatedAllocate();
    r.answer(
      req,
      CLASS_ERROR,
      (b) => b.addErrorCode(438, 'Stale Nonce').addText(ATTR_REALM, 'firezone').addText(ATTR_NONCE, 'n2'),
      false,
    );
    const again = r.next();
    expect(utf8(attribute(again, ATTR_NONCE)!)).toBe('n2');
    expect(hex(again.transactionId)).not.toBe(hex(req.transactionId));
    expect(verifyIntegrity(again, KEY)).toBe(true);
  });
});

// --- The fake itself --------------------------------------------------------------------------------

describe('FakeTurnServer', () => {
  /** Sends one raw request from the gateway's socket and returns the server's answer. */
  function ask(sim: Sim, bytes: Uint8Array): StunMessage | undefined {
    sim.gw.send(bytes, 0, bytes.length, RELAY.ip, RELAY.port);
    sim.net.deliver();
    const [resp] = sim.net.take();
    if (!resp) return undefined;
    const m = decodeStun(resp.data);
    return m.ok ? m.value : undefined;
  }
  const tx = (n: number) => new Uint8Array(12).fill(n);
  const code = (m: StunMessage | undefined) => {
    const e = m ? attribute(m, ATTR_ERROR_CODE) : undefined;
    const d = e ? decodeErrorCode(e) : undefined;
    return d?.ok ? d.value.code : undefined;
  };
  const nonceOf = (m: StunMessage | undefined) => utf8(attribute(m!, ATTR_NONCE)!);
  const signedRequest = (method: number, id: number, nonce: string, add = (b: StunBuilder) => b) =>
    add(new StunBuilder(method, CLASS_REQUEST, tx(id)))
      .addText(ATTR_USERNAME, USERNAME)
      .addText(ATTR_REALM, 'firezone')
      .addText(ATTR_NONCE, nonce)
      .integrity(KEY)
      .build();
  const allocate = (b: StunBuilder) => b.add(ATTR_REQUESTED_TRANSPORT, Uint8Array.of(17, 0, 0, 0));

  it('challenges as the Firezone relay does: signed for a known user, unsigned otherwise', () => {
    const sim = new Sim({ mode: 'firezone' });
    const anon = ask(sim, allocate(new StunBuilder(METHOD_ALLOCATE, CLASS_REQUEST, tx(1))).build());
    expect(code(anon)).toBe(401);
    expect(utf8(attribute(anon!, ATTR_REALM)!)).toBe('firezone');
    expect(attribute(anon!, ATTR_MESSAGE_INTEGRITY)).toBeUndefined();
    // Credentials but no NONCE: 401, signed with the user's key.
    const noNonce = ask(
      sim,
      allocate(new StunBuilder(METHOD_ALLOCATE, CLASS_REQUEST, tx(2)))
        .addText(ATTR_USERNAME, USERNAME)
        .addText(ATTR_REALM, 'firezone')
        .integrity(KEY)
        .build(),
    );
    expect(code(noNonce)).toBe(401);
    expect(verifyIntegrity(noNonce!, KEY)).toBe(true);
    // An unknown nonce: 438, signed.
    const stale = ask(sim, signedRequest(METHOD_ALLOCATE, 3, 'made-up', allocate));
    expect(code(stale)).toBe(438);
    expect(verifyIntegrity(stale!, KEY)).toBe(true);
    // A wrong key: 401, signed with the right one.
    const wrong = ask(
      sim,
      allocate(new StunBuilder(METHOD_ALLOCATE, CLASS_REQUEST, tx(4)))
        .addText(ATTR_USERNAME, USERNAME)
        .addText(ATTR_REALM, 'firezone')
        .addText(ATTR_NONCE, nonceOf(stale))
        .integrity(longTermKey(USERNAME, 'firezone', 'nope'))
        .build(),
    );
    expect(code(wrong)).toBe(401);
    expect(verifyIntegrity(wrong!, KEY)).toBe(true);
    // REFRESH with REQUESTED-TRANSPORT: the Firezone relay ignores it (no allocation yet: 437).
    const refresh = ask(sim, signedRequest(METHOD_REFRESH, 5, nonceOf(stale), allocate));
    expect(code(refresh)).toBe(437);
    expect(verifyIntegrity(refresh!, KEY)).toBe(true);
    expect(sim.server.stats.rejected).toBe(0);
  });

  it('challenges as coturn does: 400 for credentials without NONCE, nothing signed, 420 on REFRESH', () => {
    const sim = new Sim({ mode: 'coturn' });
    const noNonce = ask(
      sim,
      allocate(new StunBuilder(METHOD_ALLOCATE, CLASS_REQUEST, tx(1)))
        .addText(ATTR_USERNAME, USERNAME)
        .addText(ATTR_REALM, 'firezone')
        .integrity(KEY)
        .build(),
    );
    expect(code(noNonce)).toBe(400);
    expect(attribute(noNonce!, ATTR_NONCE)).toBeUndefined();
    const anon = ask(sim, allocate(new StunBuilder(METHOD_ALLOCATE, CLASS_REQUEST, tx(2))).build());
    expect(code(anon)).toBe(401);
    expect(attribute(anon!, ATTR_MESSAGE_INTEGRITY)).toBeUndefined();
    const nonce = nonceOf(anon);
    const ok = ask(sim, signedRequest(METHOD_ALLOCATE, 3, nonce, allocate));
    expect(ok?.cls).toBe(CLASS_SUCCESS);
    expect(verifyIntegrity(ok!, KEY)).toBe(true);
    const r420 = ask(sim, signedRequest(METHOD_REFRESH, 4, nonce, allocate));
    expect(code(r420)).toBe(420);
    expect(hex(attribute(r420!, ATTR_UNKNOWN_ATTRIBUTES)!)).toBe('0019');
    expect(verifyIntegrity(r420!, KEY)).toBe(true);
    const again = ask(sim, signedRequest(METHOD_ALLOCATE, 5, nonce, allocate));
    expect(code(again)).toBe(437);
    const badTransport = ask(
      sim,
      signedRequest(METHOD_ALLOCATE, 6, nonce, (b) =>
        b.add(ATTR_REQUESTED_TRANSPORT, Uint8Array.of(6, 0, 0, 0)),
      ),
    );
    expect(code(badTransport)).toBe(437); // the allocation check comes first
    const wrong = ask(
      sim,
      new StunBuilder(METHOD_REFRESH, CLASS_REQUEST, tx(7))
        .addText(ATTR_USERNAME, USERNAME)
        .addText(ATTR_REALM, 'firezone')
        .addText(ATTR_NONCE, nonce)
        .integrity(longTermKey(USERNAME, 'firezone', 'nope'))
        .build(),
    );
    expect(code(wrong)).toBe(401);
    expect(attribute(wrong!, ATTR_MESSAGE_INTEGRITY)).toBeUndefined();
    expect(sim.server.stats.refreshes).toBe(0);
  });

  it('counts what it cannot decode and never throws', () => {
    const sim = new Sim({ mode: 'coturn' });
    const junk = [
      Uint8Array.of(1),
      Uint8Array.of(1, 2, 3),
      Uint8Array.of(0x40, 0x00, 0xff, 0xff), // channel data longer than the datagram
      Uint8Array.of(0x00, 0x01, 0x00, 0x00, 0, 0, 0, 0), // STUN without cookie
      new StunBuilder(METHOD_BINDING, CLASS_SUCCESS, tx(9)).build(), // a response
    ];
    for (const j of junk) sim.gw.send(j, 0, j.length, RELAY.ip, RELAY.port);
    sim.net.deliver();
    expect(sim.net.take()).toEqual([]);
    expect(sim.server.stats.rejected).toBe(junk.length);
    // Channel data on a channel nobody bound is dropped, not rejected.
    const frame = Uint8Array.of(0x40, 0x00, 0x00, 0x01, 0x41);
    sim.gw.send(frame, 0, frame.length, RELAY.ip, RELAY.port);
    sim.net.deliver();
    expect(sim.server.stats).toMatchObject({ rejected: junk.length, dropped: 1, channelDataIn: 0 });
  });

  it('stop() unbinds the relay and its relayed sockets', () => {
    const sim = new Sim({ mode: 'firezone' });
    sim.establish();
    sim.bind(PEER);
    sim.server.stop();
    sim.peerSends(sim.peer, 'into the void');
    sim.sendVia(0x4000, 'also lost');
    sim.pump();
    expect(sim.net.undeliverable).toBe(2);
    expect(sim.server.allocationCount()).toBe(0);
  });
});

describe('TurnClient after a 437 to its REFRESH LIFETIME 0', () => {
  it('does not re-allocate after a later, deliberate delete', () => {
    const sim = new Sim({ mode: 'firezone' });
    sim.establish();
    sim.client.reset();
    sim.probe();
    sim.client.allocate(sim.now);
    // Hold the 437's repair (REFRESH 0) until the server's allocation has expired by itself.
    const held: MemoryDatagram[] = [];
    for (let i = 0; i < 10; i++) {
      sim.flushClient();
      const moving = sim.net.take();
      const refresh0 = moving.filter((d) => {
        const m = decodeStun(d.data);
        return m.ok && m.value.method === METHOD_REFRESH && m.value.cls === CLASS_REQUEST;
      });
      held.push(...refresh0);
      sim.net.inject(moving.filter((d) => !refresh0.includes(d)));
      if (sim.net.deliver() === 0 && refresh0.length === 0) break;
    }
    expect(held).toHaveLength(1);
    sim.now = 600_000;
    expect(sim.server.allocationCount()).toBe(0);
    sim.net.inject(held);
    sim.pump();
    expect(sim.takeEvents().map((e) => e.type)).toEqual([
      'bound',
      'allocation-mismatch',
      'allocation-mismatch',
      'allocated',
    ]);
    // Now the application deletes the allocation: deleted, and nothing more.
    sim.client.refresh(sim.now, 0);
    sim.pump();
    expect(sim.takeEvents()).toEqual([{ type: 'deleted' }]);
    expect(sim.server.allocationCount()).toBe(0);
    expect(sim.client.allocated).toBe(false);
  });
});
