import { type ClientSpec, Router, type RouterEndpoint, type RouterIo } from '../../src/router/router.js';
import type { ClientId, ResourceId } from '../../src/wire/ids.js';
import { parseIp } from '../../src/wire/ip/address.js';
import { IpPacket } from '../../src/wire/ip/packet.js';
import { parsePrefix } from '../../src/wire/ip/prefix.js';
import type { Filter, Grant, Resource } from '../../src/wire/policy.js';
import { STANDARD_PROFILE } from '../../src/wire/wireguard/constants.js';
import { clampPrivateKey } from '../../src/wire/wireguard/crypto.js';
import { WG_DATA, WgDevice } from '../../src/wire/wireguard/device.js';
import type { WgPeer } from '../../src/wire/wireguard/peer.js';
import { seededRandom } from './wg-pair.js';

export const GATEWAY_V4 = parseIp('100.64.0.1')!;
export const GATEWAY_V6 = parseIp('fd00:2021:1111::1')!;

/** Everything the router sent or wrote, for assertions. */
export class CaptureIo implements RouterIo {
  readonly udp: { bytes: Uint8Array; ip: Uint8Array; port: number; ecn: number }[] = [];
  readonly tun: Uint8Array[] = [];
  tunAccepts = true;
  flushes = 0;

  sendUdp(buf: Uint8Array, off: number, len: number, ip: Uint8Array, port: number, ecn: number): void {
    this.udp.push({ bytes: buf.slice(off, off + len), ip: Uint8Array.from(ip), port, ecn });
  }

  writeTun(buf: Uint8Array, off: number, len: number): boolean {
    if (!this.tunAccepts) return false;
    this.tun.push(buf.slice(off, off + len));
    return true;
  }

  flush(): void {
    this.flushes++;
  }
}

interface SimClient {
  readonly id: ClientId;
  readonly device: WgDevice<RouterEndpoint>;
  readonly peer: WgPeer<RouterEndpoint>;
  readonly endpoint: RouterEndpoint;
  readonly ipv4: Uint8Array;
  readonly ipv6: Uint8Array;
  /** Decrypted packets the gateway sent this client. */
  readonly received: IpPacket[];
}

export function resource(id: string, address: string, filters: Filter[] = []): Resource {
  const p = parsePrefix(address);
  if (!p.ok) throw new Error(p.error.message);
  return { type: 'cidr', id: id as ResourceId, name: id, address: p.value, filters };
}

export function dnsResource(id: string, pattern: string, filters: Filter[] = []): Resource {
  return { type: 'dns', id: id as ResourceId, name: id, pattern, filters };
}

export const internet = (id = 'internet'): Resource => ({ type: 'internet', id: id as ResourceId });

export function grants(...resources: Resource[]): Grant[] {
  return resources.map((resource) => ({ resource, expiresAtMs: undefined }));
}

/**
 * A router (the gateway) and simulated clients: each client is a WgDevice with the gateway as its
 * plain WireGuard peer. `fromClient` encrypts an IP packet on the client and feeds the datagram to
 * the router; what the router sends back is decrypted into the client's `received`.
 */
export class RouterSim {
  now = 1_000_000;
  wallOffset = 1_700_000_000_000;
  readonly io = new CaptureIo();
  readonly router: Router;
  private readonly rnd = seededRandom(42);
  private readonly clients = new Map<string, SimClient>();
  private nextHost = 2;

  constructor() {
    this.router = new Router({
      privateKey: clampPrivateKey(this.rnd(32)),
      io: this.io,
      now: this.now,
      wallClockOffsetMs: this.wallOffset,
      random: this.rnd,
    });
    this.router.setInterface(GATEWAY_V4, GATEWAY_V6);
  }

  get wallNow(): number {
    return this.now + this.wallOffset;
  }

  /** Adds a client with tunnel IPs 100.64.0.N / fd00:2021:1111::N, connects it, and grants `gs`. */
  addClient(name: string, gs: Grant[], extra: Partial<ClientSpec> = {}): SimClient {
    const n = this.nextHost++;
    const device = new WgDevice<RouterEndpoint>({
      privateKey: clampPrivateKey(this.rnd(32)),
      now: this.now,
      wallClockOffsetMs: this.wallOffset,
      random: this.rnd,
    });
    const peer = device.addPeer({ publicKey: this.router.publicKey, profile: STANDARD_PROFILE });
    const endpoint = { ip: Uint8Array.of(10, 0, 0, n), port: 40000 + n };
    peer.endpoint = { ip: Uint8Array.of(10, 10, 0, 1), port: 51820 };
    const c: SimClient = {
      id: name as ClientId,
      device,
      peer,
      endpoint,
      ipv4: Uint8Array.of(100, 64, 0, n),
      ipv6: parseIp(`fd00:2021:1111::${n.toString(16)}`)!,
      received: [],
    };
    this.router.addClient(
      {
        id: c.id,
        publicKey: device.publicKey,
        profile: STANDARD_PROFILE,
        ipv4: c.ipv4,
        ipv6: c.ipv6,
        roaming: true,
        ...extra,
      },
      this.now,
    );
    this.router.setGrants(c.id, gs);
    this.clients.set(name, c);
    device.initiateHandshake(peer, this.now);
    this.pump(c);
    return c;
  }

  /** Moves the client's pending transmits to the router and the router's replies back. */
  pump(c: SimClient): void {
    for (let round = 0; round < 10; round++) {
      let moved = 0;
      for (let t = c.device.pollTransmit(); t; t = c.device.pollTransmit()) {
        this.datagram(t.bytes, c.endpoint);
        moved++;
      }
      moved += this.deliverToClients();
      while (c.device.pollEvent());
      if (moved === 0) return;
    }
  }

  /** Feeds one datagram from `from` to the router. */
  datagram(bytes: Uint8Array, from: RouterEndpoint, ecn = 0): void {
    const buf = new Uint8Array(1536);
    buf.set(bytes);
    const srcAddrs = new Uint8Array(16);
    srcAddrs.set(from.ip);
    this.router.handleDatagrams(
      {
        count: 1,
        bufs: [buf],
        lengths: Int32Array.of(bytes.length),
        family: 4,
        srcAddrs,
        srcPorts: Uint16Array.of(from.port),
        ecn: Uint8Array.of(ecn),
      },
      this.now,
    );
  }

  /** Sends an IP packet from the client through its tunnel (encrypted on the client). */
  fromClient(c: SimClient, packet: Uint8Array, ecn = 0): void {
    const buf = new Uint8Array(16 + packet.length + 16);
    buf.set(packet, 16);
    const n = c.device.encapsulate(c.peer, buf, 16, packet.length, this.now);
    if (n === 0) throw new Error('client has no session');
    this.datagram(buf.subarray(0, n), c.endpoint, ecn);
    this.deliverToClients();
  }

  /** Feeds IP packets to the router as if read from the TUN device. */
  fromTun(...packets: Uint8Array[]): void {
    const bufs = packets.map((p) => {
      const b = new Uint8Array(1536);
      b.set(p, 20);
      return b;
    });
    this.router.handleTunPackets(
      {
        count: packets.length,
        bufs,
        offsets: Int32Array.from(packets.map(() => 20)),
        lengths: Int32Array.from(packets.map((p) => p.length)),
      },
      this.now,
    );
    this.deliverToClients();
  }

  /** Decrypts what the router sent to clients; returns how many datagrams were delivered. */
  deliverToClients(): number {
    let n = 0;
    for (const d of this.io.udp.splice(0)) {
      const c = [...this.clients.values()].find((x) => x.endpoint.port === d.port);
      if (!c) continue;
      n++;
      const r = c.device.decapsulate(
        d.bytes,
        0,
        d.bytes.length,
        { ip: Uint8Array.of(10, 10, 0, 1), port: 51820 },
        this.now,
      );
      if (r === WG_DATA) {
        const p = IpPacket.parse(d.bytes.slice(c.device.rxOffset, c.device.rxOffset + c.device.rxLength));
        if (p.ok) c.received.push(p.value);
      }
    }
    return n;
  }

  advance(ms: number): void {
    const end = this.now + ms;
    while (this.router.pollTimeout().at <= end) {
      this.now = Math.max(this.now, this.router.pollTimeout().at);
      this.router.handleTimeout(this.now, this.wallNow);
      this.deliverToClients();
    }
    this.now = end;
  }

  events(): string[] {
    const out: string[] = [];
    for (let e = this.router.pollEvent(); e; e = this.router.pollEvent())
      out.push(`${e.type}:${'clientId' in e ? e.clientId : e.relayId}`);
    return out;
  }
}
