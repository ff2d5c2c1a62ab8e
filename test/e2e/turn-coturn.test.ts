import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatIp, parseIp } from '../../src/wire/ip/address.js';
import {
  decodeChannelData,
  looksLikeChannelData,
  writeChannelDataHeader,
} from '../../src/wire/stun/channel-data.js';
import {
  ATTR_ADDITIONAL_ADDRESS_FAMILY,
  ATTR_ERROR_CODE,
  ATTR_LIFETIME,
  ATTR_MESSAGE_INTEGRITY,
  ATTR_NONCE,
  ATTR_REQUESTED_TRANSPORT,
  ATTR_USERNAME,
  CHANNEL_DATA_HEADER_BYTES,
  CLASS_ERROR,
  CLASS_REQUEST,
  CLASS_SUCCESS,
  METHOD_ALLOCATE,
  METHOD_REFRESH,
} from '../../src/wire/stun/constants.js';
import {
  attribute,
  decodeErrorCode,
  decodeStun,
  longTermKey,
  looksLikeStun,
  StunBuilder,
  type StunMessage,
  type TransportAddress,
} from '../../src/wire/stun/message.js';
import { TurnClient, type TurnEvent } from '../../src/wire/turn/client.js';
import {
  COTURN_PORT,
  type Coturn,
  coturnCredentials,
  requireCoturn,
  startCoturn,
} from '../support/coturn.js';

/**
 * Our sans-IO TURN client against an unmodified coturn 4.6.x on loopback (`spec/snownet.md`
 * §3.8): the unsigned 401 challenge, ALLOCATE with ADDITIONAL-ADDRESS-FAMILY, REFRESH without
 * REQUESTED-TRANSPORT, a channel to a real peer both ways, bad credentials, deletion, and forged
 * responses that must be dropped without throwing.
 */

const LOOPBACK = '127.0.0.1';
const SERVER: TransportAddress = { ip: Uint8Array.of(127, 0, 0, 1), port: COTURN_PORT };
const MIN_PORT = 49152;
const MAX_PORT = 49407;
const SECRET = `fzt-${randomBytes(8).toString('hex')}`;
const SOFTWARE = 'firezone-gateway-ts; e2e';
const EVENT_TIMEOUT_MS = 5_000;

function addr(ip: string, port: number): TransportAddress {
  return { ip: parseIp(ip)!, port };
}

async function udpSocket(): Promise<Socket> {
  const sock = createSocket('udp4');
  sock.bind(0, LOOPBACK);
  await once(sock, 'listening');
  return sock;
}

/**
 * Plays the I/O around one TurnClient: a real UDP socket on loopback, datagrams demuxed into
 * STUN (→ handleStun) or channel data (→ peerOfChannel), timers from pollTimeout, transmits
 * from pollTransmit. Records what it sent and received for the assertions.
 */
class Driver {
  readonly events: TurnEvent[] = [];
  readonly sent: StunMessage[] = [];
  readonly receivedStun: StunMessage[] = [];
  readonly channelData: { peer: TransportAddress; payload: Buffer }[] = [];
  readonly stats = { badStun: 0, refusedStun: 0, badChannelData: 0, unknownChannel: 0, other: 0 };
  private cursor = 0;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly wakers = new Set<() => void>();

  private constructor(
    readonly client: TurnClient,
    readonly sock: Socket,
  ) {
    sock.on('message', (msg, rinfo) => this.receive(msg, addr(rinfo.address, rinfo.port)));
  }

  static async open(username: string, password: string): Promise<Driver> {
    const client = new TurnClient({
      relay: { id: 'coturn', servers: [SERVER], username, password },
      random: (n) => randomBytes(n),
      software: SOFTWARE,
    });
    return new Driver(client, await udpSocket());
  }

  get local(): TransportAddress {
    const a = this.sock.address();
    return addr(a.address, a.port);
  }

  /** Feeds one datagram to the client; true when it took it. Never throws for bad input. */
  receive(buf: Uint8Array, from: TransportAddress, now = Date.now()): boolean {
    let taken = false;
    if (looksLikeStun(buf, 0, buf.length)) {
      const m = decodeStun(buf);
      if (!m.ok) this.stats.badStun++;
      else {
        this.receivedStun.push(copyMessage(m.value));
        taken = this.client.handleStun(m.value, from, now);
        if (!taken) this.stats.refusedStun++;
      }
    } else if (looksLikeChannelData(buf, 0, buf.length)) {
      const c = decodeChannelData(buf, 0, buf.length);
      if (!c.ok) this.stats.badChannelData++;
      else {
        const peer = this.client.peerOfChannel(c.value.channel, now);
        if (!peer) this.stats.unknownChannel++;
        else {
          const { payloadOffset: off, payloadLength: len } = c.value;
          this.channelData.push({ peer, payload: Buffer.from(buf.subarray(off, off + len)) });
          taken = true;
        }
      }
    } else this.stats.other++;
    this.flush(now);
    return taken;
  }

  /** Runs a client command, then sends what it queued. */
  run(command: (client: TurnClient, now: number) => void): void {
    const now = Date.now();
    command(this.client, now);
    this.flush(now);
  }

  /** Sends `payload` on `channel` to the relay as channel data. */
  sendChannelData(channel: number, payload: Uint8Array): void {
    const buf = new Uint8Array(CHANNEL_DATA_HEADER_BYTES + payload.length);
    writeChannelDataHeader(buf, 0, channel, payload.length);
    buf.set(payload, CHANNEL_DATA_HEADER_BYTES);
    this.sock.send(buf, SERVER.port, formatIp(SERVER.ip));
  }

  flush(now = Date.now()): void {
    if (this.closed) return;
    for (let t = this.client.pollTransmit(); t; t = this.client.pollTransmit()) {
      const m = decodeStun(t.bytes);
      if (m.ok) this.sent.push(copyMessage(m.value));
      this.sock.send(t.bytes, t.to.port, formatIp(t.to.ip));
    }
    for (let e = this.client.pollEvent(); e; e = this.client.pollEvent()) this.events.push(e);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const at = this.client.pollTimeout();
    if (Number.isFinite(at)) {
      this.timer = setTimeout(
        () => {
          const n = Date.now();
          this.client.handleTimeout(n);
          this.flush(n);
        },
        Math.min(Math.max(0, at - now), 2 ** 31 - 1),
      );
      this.timer.unref();
    }
    for (const wake of this.wakers) wake();
  }

  /** Events not yet consumed by `nextEvent`. */
  pendingEvents(): TurnEvent[] {
    return this.events.slice(this.cursor);
  }

  /** The next event in order, waiting for it up to `timeoutMs`. */
  async nextEvent(timeoutMs = EVENT_TIMEOUT_MS): Promise<TurnEvent> {
    const deadline = Date.now() + timeoutMs;
    while (this.cursor >= this.events.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no TURN event within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          wakers.delete(done);
          resolve();
        }
        const wakers = this.wakers;
        wakers.add(done);
      });
    }
    return this.events[this.cursor++]!;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.sock.close();
  }
}

/** Decoded messages hold views into the datagram; keep a private copy. */
function copyMessage(m: StunMessage): StunMessage {
  const d = decodeStun(Uint8Array.from(m.raw));
  if (!d.ok) throw new Error('re-decoding a decoded message failed');
  return d.value;
}

function sentOf(d: Driver, method: number): StunMessage[] {
  return d.sent.filter((m) => m.method === method && m.cls === CLASS_REQUEST);
}

/** Waits until `sock` receives a datagram. */
async function receiveOn(sock: Socket): Promise<{ msg: Buffer; from: TransportAddress }> {
  const [msg, rinfo] = (await Promise.race([
    once(sock, 'message'),
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error('no datagram within 5 s')), EVENT_TIMEOUT_MS),
    ),
  ])) as [Buffer, { address: string; port: number }];
  return { msg, from: addr(rinfo.address, rinfo.port) };
}

const canRun = requireCoturn();

describe.runIf(canRun)('TURN client against coturn', () => {
  let coturn: Coturn | undefined;
  let d: Driver;
  let peer: Socket;
  const creds = coturnCredentials(SECRET);
  let relayed: TransportAddress;
  let channel: number;

  beforeAll(async () => {
    coturn = await startCoturn({
      listenIp: LOOPBACK,
      secret: SECRET,
      minPort: MIN_PORT,
      maxPort: MAX_PORT,
      tag: 'turn-e2e',
    });
    d = await Driver.open(creds.username, creds.password);
    peer = await udpSocket();
  });

  afterAll(async () => {
    d?.close();
    peer?.close();
    await coturn?.stop();
  });

  it('(a) probe: a BINDING answer gives our mapped address', async () => {
    d.run((c, now) => c.probe(now));
    const e = await d.nextEvent();
    expect(e).toEqual({ type: 'bound', server: SERVER, mapped: d.local });
    expect(d.client.activeServer).toEqual(SERVER);
  });

  it('(b) allocate: through the unsigned 401 challenge to an IPv4 relayed address, 600 s', async () => {
    d.run((c, now) => c.allocate(now));
    const e = await d.nextEvent();
    if (e.type !== 'allocated')
      throw new Error(`expected allocated, got ${JSON.stringify(e)}\n${coturn!.logs()}`);
    expect(e.lifetimeS).toBe(600);
    expect(e.mapped).toEqual(d.local);
    // ADDITIONAL-ADDRESS-FAMILY=IPv6 on an IPv4-only coturn: the IPv4 relay only (any all-zero
    // IPv6 placeholder is ignored).
    expect(e.relayed).toHaveLength(1);
    relayed = e.relayed[0]!;
    expect(formatIp(relayed.ip)).toBe(LOOPBACK);
    expect(relayed.port).toBeGreaterThanOrEqual(MIN_PORT);
    expect(relayed.port).toBeLessThanOrEqual(MAX_PORT);
    expect(d.client.relayed).toEqual([relayed]);

    // The wire: an unauthenticated ALLOCATE, coturn's 401 without MESSAGE-INTEGRITY, then the
    // authenticated retry with its NONCE.
    const [first, second, ...more] = sentOf(d, METHOD_ALLOCATE);
    expect(more).toHaveLength(0);
    expect(attribute(first!, ATTR_MESSAGE_INTEGRITY)).toBeUndefined();
    expect(attribute(first!, ATTR_ADDITIONAL_ADDRESS_FAMILY)).toEqual(Uint8Array.of(2, 0, 0, 0));
    const challenge = d.receivedStun.find((m) => m.method === METHOD_ALLOCATE && m.cls === CLASS_ERROR)!;
    expect(decodeErrorCode(attribute(challenge, ATTR_ERROR_CODE)!)).toMatchObject({
      ok: true,
      value: { code: 401 },
    });
    expect(attribute(challenge, ATTR_MESSAGE_INTEGRITY)).toBeUndefined();
    expect(attribute(second!, ATTR_NONCE)).toEqual(attribute(challenge, ATTR_NONCE));
    expect(attribute(second!, ATTR_USERNAME)).toEqual(new TextEncoder().encode(creds.username));
    expect(attribute(second!, ATTR_MESSAGE_INTEGRITY)).toHaveLength(20);
    expect(d.client.drops).toMatchObject({ unmatched: 0, badIntegrity: 0, wrongRealm: 0 });
  });

  it('(c) refresh: no REQUESTED-TRANSPORT, so no 420', async () => {
    d.run((c, now) => c.refresh(now));
    expect(await d.nextEvent()).toEqual({ type: 'refreshed', lifetimeS: 600 });
    const refresh = sentOf(d, METHOD_REFRESH).at(-1)!;
    expect(attribute(refresh, ATTR_REQUESTED_TRANSPORT)).toBeUndefined();
    expect(attribute(refresh, ATTR_ADDITIONAL_ADDRESS_FAMILY)).toBeUndefined();
    expect(attribute(refresh, ATTR_MESSAGE_INTEGRITY)).toHaveLength(20);
  });

  it('(d) a channel to a plain UDP peer carries data both ways', async () => {
    const peerAddr = addr(LOOPBACK, peer.address().port);
    let ch: number | undefined;
    d.run((c, now) => {
      ch = c.bindChannel(peerAddr, now);
    });
    expect(ch).toBe(0x4000);
    channel = ch!;
    expect(await d.nextEvent()).toEqual({ type: 'channel-bound', peer: peerAddr, channel });

    // Peer → relayed address → us as channel data, mapped back to the peer.
    const inbound = randomBytes(333);
    peer.send(inbound, relayed.port, formatIp(relayed.ip));
    const deadline = Date.now() + EVENT_TIMEOUT_MS;
    while (d.channelData.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(d.channelData).toEqual([{ peer: peerAddr, payload: inbound }]);
    expect(d.stats.unknownChannel + d.stats.badChannelData).toBe(0);

    // Us → channel data → the peer, from our relayed address.
    const outbound = randomBytes(1200);
    const got = receiveOn(peer);
    expect(d.client.channelFor(peerAddr, Date.now())).toBe(channel);
    d.sendChannelData(channel, outbound);
    const { msg, from } = await got;
    expect(msg).toEqual(outbound);
    expect(from).toEqual(relayed);
  });

  it('(g) forged or broken responses are dropped, never thrown, and the real answer still counts', async () => {
    const now = Date.now();
    d.client.refresh(now);
    const request = d.client.pollTransmit()!;
    const req = decodeStun(request.bytes);
    if (!req.ok) throw new Error('our REFRESH does not decode');
    const tx = req.value.transactionId;
    const key = longTermKey(creds.username, 'firezone', creds.password);
    const eventsBefore = d.events.length;
    const drops = { ...d.client.drops };
    const refreshOk = () => new StunBuilder(METHOD_REFRESH, CLASS_SUCCESS, tx).addU32(ATTR_LIFETIME, 600);

    // A corrupted MESSAGE-INTEGRITY (last byte flipped) on a success with the right transaction id.
    const corrupted = refreshOk().integrity(key).build();
    corrupted[corrupted.length - 1]! ^= 0xff;
    expect(d.receive(corrupted, SERVER, now)).toBe(false);
    // Signed with the wrong key.
    const wrongKey = refreshOk()
      .integrity(longTermKey(creds.username, 'firezone', 'not-the-password'))
      .build();
    expect(d.receive(wrongKey, SERVER, now)).toBe(false);
    // No MESSAGE-INTEGRITY at all.
    expect(d.receive(refreshOk().build(), SERVER, now)).toBe(false);
    // A signed error with a corrupted MESSAGE-INTEGRITY.
    const err = new StunBuilder(METHOD_REFRESH, CLASS_ERROR, tx)
      .addErrorCode(437, 'Mismatch')
      .integrity(key)
      .build();
    err[err.length - 5]! ^= 0x01;
    expect(d.receive(err, SERVER, now)).toBe(false);
    expect(d.client.drops.badIntegrity - drops.badIntegrity).toBe(4);

    // A correctly signed success from the wrong address (a peer, not the server).
    const signed = refreshOk().integrity(key).build();
    expect(d.receive(signed, addr(LOOPBACK, peer.address().port), now)).toBe(false);
    expect(d.client.drops.unmatched - drops.unmatched).toBe(1);

    // An unknown comprehension-required attribute (0x7FF0) in a correctly signed response
    // (RFC 8489 §7.3.3: discarded).
    const unknownAttr = refreshOk()
      .add(0x7ff0, Uint8Array.of(1, 2, 3, 4))
      .integrity(key)
      .build();
    expect(d.receive(unknownAttr, SERVER, now)).toBe(false);
    const unknownErr = new StunBuilder(METHOD_REFRESH, CLASS_ERROR, tx)
      .addErrorCode(437, 'Mismatch')
      .add(0x7ff0, Uint8Array.of(0))
      .integrity(key)
      .build();
    expect(d.receive(unknownErr, SERVER, now)).toBe(false);
    expect(d.client.drops.unmatched - drops.unmatched).toBe(3);

    // Truncated datagrams: a STUN message cut short, a bare header fragment, channel data whose
    // length field overruns the datagram, and a lone byte.
    const badStun = d.stats.badStun;
    expect(d.receive(signed.subarray(0, signed.length - 8), SERVER, now)).toBe(false);
    expect(d.receive(signed.subarray(0, 12), SERVER, now)).toBe(false);
    const shortHeader = Uint8Array.from(signed.subarray(0, 24));
    shortHeader[3] = 4; // length 4: looks like STUN, the attribute header is cut
    expect(d.receive(shortHeader, SERVER, now)).toBe(false);
    expect(d.stats.badStun - badStun).toBe(1);
    expect(d.receive(Uint8Array.of(0x40, 0x00, 0x00, 0x10, 1, 2), SERVER, now)).toBe(false);
    expect(d.receive(Uint8Array.of(0x40, 0x00, 0x00), SERVER, now)).toBe(false);
    expect(d.receive(Uint8Array.of(0x40), SERVER, now)).toBe(false);
    expect(d.receive(new Uint8Array(0), SERVER, now)).toBe(false);
    // Channel data on a channel we never bound.
    expect(d.receive(Uint8Array.of(0x4f, 0xff, 0x00, 0x01, 7), SERVER, now)).toBe(false);

    expect(d.events.slice(eventsBefore)).toEqual([]);
    expect(d.client.allocated).toBe(true);

    // The request is still in flight: coturn's real answer is taken.
    d.sock.send(request.bytes, SERVER.port, formatIp(SERVER.ip));
    d.flush(now);
    expect(await d.nextEvent()).toEqual({ type: 'refreshed', lifetimeS: 600 });
  });

  it('(f) refresh(0) deletes the allocation; allocating again on the same 5-tuple converges', async () => {
    d.run((c, now) => c.refresh(now, 0));
    expect(await d.nextEvent()).toEqual({ type: 'deleted' });
    expect(d.client.allocated).toBe(false);
    expect(d.client.channelFor(addr(LOOPBACK, peer.address().port), Date.now())).toBeUndefined();
    const refresh0 = sentOf(d, METHOD_REFRESH).at(-1)!;
    expect(attribute(refresh0, ATTR_LIFETIME)).toEqual(Uint8Array.of(0, 0, 0, 0));

    // coturn keeps a deleted allocation's session for about a second and answers every ALLOCATE
    // on that 5-tuple with an unsigned 437 meanwhile. Retry like the statechart would (after a
    // failure, with a pause) and require a bounded number of requests: no 437 ⇄ REFRESH 0 loop.
    const sentBefore = d.sent.length;
    const deadline = Date.now() + 8_000;
    let allocated: TurnEvent | undefined;
    while (!allocated) {
      d.run((c, now) => c.allocate(now));
      for (;;) {
        const e = await d.nextEvent(9_000);
        if (d.sent.length - sentBefore > 40) {
          throw new Error(`a request loop after the delete: ${d.sent.length - sentBefore} requests sent`);
        }
        if (e.type === 'allocated') allocated = e;
        else if (e.type !== 'failed') continue;
        break;
      }
      if (!allocated) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    expect(allocated).toMatchObject({ type: 'allocated', lifetimeS: 600 });
    expect(d.sent.length - sentBefore).toBeLessThan(20);

    d.run((c, now) => c.refresh(now, 0));
    expect(await d.nextEvent()).toEqual({ type: 'deleted' });
    expect(d.pendingEvents()).toEqual([]);
  });

  it('(e) a wrong password fails with reason auth', async () => {
    const bad = await Driver.open(creds.username, 'not-the-password');
    try {
      bad.run((c, now) => c.probe(now));
      expect(await bad.nextEvent()).toMatchObject({ type: 'bound' });
      bad.run((c, now) => c.allocate(now));
      expect(await bad.nextEvent()).toMatchObject({
        type: 'failed',
        request: 'allocate',
        reason: 'auth',
        code: 401,
      });
      expect(bad.client.allocated).toBe(false);
      // Exactly two ALLOCATEs: the challenge fetch and the one authenticated try.
      expect(sentOf(bad, METHOD_ALLOCATE)).toHaveLength(2);
    } finally {
      bad.close();
    }
  });

  it('(e) expired REST credentials fail with reason auth', async () => {
    const expired = coturnCredentials(SECRET, -60);
    const bad = await Driver.open(expired.username, expired.password);
    try {
      bad.run((c, now) => c.probe(now));
      expect(await bad.nextEvent()).toMatchObject({ type: 'bound' });
      bad.run((c, now) => c.allocate(now));
      expect(await bad.nextEvent()).toMatchObject({ type: 'failed', request: 'allocate', reason: 'auth' });
    } finally {
      bad.close();
    }
  });
});
