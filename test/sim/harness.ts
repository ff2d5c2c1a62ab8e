import dnsPacket from 'dns-packet';
import { TestClock } from '../../src/actors/clock.js';
import type { GatewayLog } from '../../src/actors/gateway.js';
import { PortalControlPlane } from '../../src/actors/portal-control.js';
import { SimClientConnection } from '../../src/dev/client/connection.js';
import type { MemoryUdpSocket } from '../../src/io/memory-udp.js';
import { datagramSource } from '../../src/io/packet-batch.js';
import type { ClientId } from '../../src/wire/ids.js';
import { formatIp, parseIp } from '../../src/wire/ip/address.js';
import { decodePortalMessage } from '../../src/wire/portal/decode.js';
import { clampPrivateKey, publicKeyOf } from '../../src/wire/wireguard/crypto.js';
import { FakeTurnServer } from '../support/fake-turn.js';
import { buildPacket } from '../support/packet-builder.js';
import { SimDnsNetwork, type SimNameserver, settleAsync } from '../support/sim-dns.js';
import { RELAY_IP, RELAY_PASSWORD, RELAY_USERNAME, world } from '../support/sim-gateway.js';
import { seededRandom } from '../support/wg-pair.js';
import {
  echoIcmp,
  hex,
  mirrored,
  portUnreachable,
  readPacket,
  type Seen,
  TCP_RST_ACK,
  TCP_SYN,
  TCP_SYN_ACK,
  unhex,
} from './packets.js';

/**
 * The simulated world of `test/sim/`: the real gateway (actor system and router, `world()` of
 * `test/support/sim-gateway.ts`) on a memory TUN, a memory UDP network and one `TestClock`, plus
 *
 * - a **stub portal**: the production `PortalControlPlane` fed with portal JSON that goes through
 *   the production decoder (`decodePortalMessage`), exactly what the WebSocket session hands it;
 *   gateway → portal messages are recorded and `broadcast_*` candidates relayed to the clients.
 *   A partition loses messages both ways until a fresh `init` (as after a reconnect);
 * - **sim clients**: Firezone-style clients (ICE controlling + WireGuard initiator, the dev sim
 *   client's connection core) on their own sockets; some are *relay-only* (the network drops
 *   their direct datagrams to and from the gateway), so they depend on a TURN relay;
 * - **TURN relays** (`FakeTurnServer`, Firezone mode) that can be lost and added;
 * - **sim resources** answering whatever the gateway writes to the TUN device: ICMP echo reply,
 *   UDP echo (port 9: ICMP port unreachable instead), TCP SYN → SYN-ACK (port 81: RST); the
 *   gateway's own port 53535 is the in-tunnel DNS server, as the kernel socket would be:
 *   `gateway.dnsQuery()` and the answer injected from `gw:53535`;
 * - **nameservers** (`SimDnsNetwork`) on the simulated clock.
 *
 * No sockets, no real time. Everything the TUN receives ("at the resource") and everything each
 * client decrypts is recorded with the step it happened in.
 */

export const GW_V4 = parseIp('100.64.0.1')!;
export const GW_V6 = parseIp('fd00:2021:1111::1')!;
export const GW_UDP = parseIp('10.10.0.1')!;
export const NS_IP = '10.53.0.1';
export const DNS_PORT = 53535;
/** Resource ports with special behaviour. */
export const UDP_UNREACHABLE_PORT = 9;
export const TCP_CLOSED_PORT = 81;

export interface LogLine {
  readonly source: 'gateway' | 'portal';
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly msg: string;
  readonly obj: object;
}

export interface RelayInfo {
  readonly id: string;
  readonly address: string;
  readonly username: string;
  readonly password: string;
  readonly server: FakeTurnServer;
  alive: boolean;
}

/** What one client decrypted, with the step it arrived in. */
export interface Received {
  readonly step: number;
  readonly seen: Seen;
}

/**
 * A Firezone-style client: its key, tunnel addresses and ICE credentials are fixed (the portal
 * derives ICE credentials and the PSK from the key pair, `spec/snownet.md` §2.11), so asking for
 * a flow again reuses the gateway's connection. `start()` begins a fresh connection (ICE agent and
 * WireGuard) from the current socket; `roam()` moves to a new socket address first.
 */
export class SimClient {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly psk: Uint8Array;
  readonly v4: Uint8Array;
  readonly v6: Uint8Array;
  readonly clientIce: { username: string; password: string };
  readonly gatewayIce: { username: string; password: string };
  sock: MemoryUdpSocket;
  /** Socket generation: the host address is 10.10.<1+gen>.<10+index>. */
  gen = 0;
  conn: SimClientConnection | undefined;
  readonly received: Received[] = [];
  /** The gateway's candidates as the portal relayed them (kept across our own restarts). */
  private readonly gatewayCandidates = new Set<string>();
  /** Where our candidates go: the portal. */
  signal: (candidates: string[]) => void = () => undefined;

  constructor(
    private readonly sim: SimWorld,
    readonly index: number,
    readonly id: ClientId,
    readonly relayOnly: boolean,
  ) {
    const rnd = seededRandom(1000 + index);
    this.privateKey = clampPrivateKey(rnd(32));
    this.publicKey = publicKeyOf(this.privateKey);
    this.psk = rnd(32);
    this.v4 = Uint8Array.of(100, 64, 0, 10 + index);
    this.v6 = parseIp(`fd00:2021:1111::${(0x10 + index).toString(16)}`)!;
    this.clientIce = { username: `c${index}ab`, password: `clientpassword${index}abcdefgh`.slice(0, 22) };
    this.gatewayIce = { username: `g${index}cd`, password: `gatewaypassword${index}abcdefg`.slice(0, 22) };
    this.sock = this.openSocket();
  }

  get hostIp(): string {
    return `10.10.${1 + this.gen}.${10 + this.index}`;
  }

  private openSocket(): MemoryUdpSocket {
    const sock = this.sim.w.net.open({ family: 4, address: this.hostIp });
    sock.start((batch) => {
      for (let i = 0; i < batch.count; i++) {
        if (sock !== this.sock) continue;
        const from = { ip: Uint8Array.from(datagramSource(batch, i)), port: batch.srcPorts[i]! };
        this.conn?.handleDatagram(batch.bufs[i]!.slice(0, batch.lengths[i]!), from, this.sim.clock.now());
      }
      this.flush();
    });
    return sock;
  }

  /** A fresh connection (new ICE agent and WireGuard state) from the current socket. */
  start(): void {
    const now = this.sim.clock.now();
    this.conn = new SimClientConnection({
      privateKey: this.privateKey,
      gatewayPublicKey: this.sim.w.gateway.publicKey,
      presharedKey: this.psk,
      local: this.clientIce,
      remote: this.gatewayIce,
      hosts: [{ ip: parseIp(this.sock.localAddress)!, port: this.sock.localPort }],
      random: this.sim.w.rnd,
      now,
    });
    this.signal(this.conn.localCandidates());
    if (this.gatewayCandidates.size > 0) this.conn.addRemoteCandidates([...this.gatewayCandidates], now);
    this.flush();
  }

  /** Moves to a new host address (the old socket is closed), then starts a fresh connection. */
  roam(): void {
    void this.sock.close();
    this.gen++;
    this.sock = this.openSocket();
    this.start();
  }

  remoteCandidates(candidates: readonly string[]): void {
    for (const c of candidates) this.gatewayCandidates.add(c);
    this.conn?.addRemoteCandidates(candidates, this.sim.clock.now());
    this.flush();
  }

  invalidatedCandidates(candidates: readonly string[]): void {
    for (const c of candidates) this.gatewayCandidates.delete(c);
    this.conn?.invalidateRemoteCandidates(candidates, this.sim.clock.now());
    this.flush();
  }

  get established(): boolean {
    return this.conn?.peer.hasSession === true && this.conn.path !== undefined;
  }

  /** Encrypts one IP packet for the gateway (queued by WireGuard while it has no session). */
  send(packet: Uint8Array): boolean {
    const ok = this.conn?.sendIp(packet, this.sim.clock.now()) ?? false;
    this.flush();
    return ok;
  }

  /** A raw datagram from our socket to the gateway's tunnel port (not WireGuard at all). */
  sendRaw(bytes: Uint8Array): void {
    this.sock.send(bytes, 0, bytes.length, GW_UDP, 51820);
  }

  flush(): void {
    const c = this.conn;
    if (!c) return;
    const now = this.sim.clock.now();
    if (c.pollTimeout() <= now) c.handleTimeout(now);
    for (let t = c.pollTransmit(); t; t = c.pollTransmit())
      this.sock.send(t.bytes, 0, t.bytes.length, t.to.ip, t.to.port);
    while (c.pollEvent());
    for (let p = c.pollPacket(); p; p = c.pollPacket()) {
      const seen = readPacket(p);
      if (seen) this.received.push({ step: this.sim.step, seen });
      else this.sim.unparseableAtClients.push({ client: this.index, bytes: p });
    }
  }

  pollTimeout(): number {
    return this.conn?.pollTimeout() ?? Number.POSITIVE_INFINITY;
  }
}

/** A relay in portal JSON (one entry per address family; ours are IPv4 only). */
function relayJson(r: RelayInfo) {
  return {
    id: r.id,
    type: 'turn',
    addr: `${r.address}:3478`,
    username: r.username,
    password: r.password,
    expires_at: 1_766_444_400,
  };
}

/** Portal messages not delivered during a partition, both ways, by event. */
export interface Lost {
  toGateway: string[];
  toPortal: string[];
}

/**
 * The portal as the gateway sees it: JSON payloads through the production decoder into the
 * production control plane. Gateway → portal messages are recorded; candidate broadcasts go to the
 * named clients. While partitioned, nothing is delivered either way (lost, as on a dead WebSocket;
 * the session's 32-message send queue is not modelled: candidates broadcast meanwhile are lost).
 */
export class StubPortal {
  partitioned = false;
  readonly control: PortalControlPlane;
  /** Gateway → portal messages that arrived (event, payload). */
  readonly received: { event: string; payload: unknown }[] = [];
  readonly lost: Lost = { toGateway: [], toPortal: [] };
  reconnectRequests = 0;
  readonly fatal: string[] = [];
  /** Refs answered with `flow_authorized`. */
  readonly authorizedRefs = new Set<string>();
  private refs = 0;

  constructor(private readonly sim: SimWorld) {
    const log = (level: LogLine['level']) => (obj: object, msg: string) =>
      sim.logs.push({ source: 'portal', level, msg, obj });
    this.control = new PortalControlPlane({
      gateway: sim.w.gateway,
      configureTun: (cfg) => sim.w.tun.configure(cfg),
      send: (event, payload) => this.fromGateway(event, payload),
      reconnect: () => {
        this.reconnectRequests++;
      },
      resolve: (name) => sim.w.gateway.resolveName(name),
      fatal: (reason) => this.fatal.push(reason),
      random: sim.w.rnd,
      clock: sim.clock,
      log: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
    });
  }

  nextRef(): string {
    return `SFMyNTY.sim-ref-${++this.refs}`;
  }

  /** Delivers one portal → gateway push (unless partitioned). Returns whether it arrived. */
  push(event: string, payload: unknown): boolean {
    if (this.partitioned) {
      this.lost.toGateway.push(event);
      return false;
    }
    // Exactly what the socket hands the session: text, parsed.
    const wire = JSON.parse(JSON.stringify(payload)) as unknown;
    const decoded = decodePortalMessage(event, wire);
    if (!decoded.ok)
      throw new Error(`sim bug: the portal built an invalid ${event}: ${decoded.error.message}`);
    this.sim.control.handle(decoded.value.message, decoded.value.skipped);
    return true;
  }

  private fromGateway(event: string, payload: unknown): void {
    if (this.partitioned) {
      this.lost.toPortal.push(event);
      return;
    }
    this.received.push({ event, payload });
    const p = payload as { ref?: string; client_ids?: string[]; candidates?: string[] };
    if (event === 'flow_authorized' && p.ref) this.authorizedRefs.add(p.ref);
    if (event === 'broadcast_ice_candidates' || event === 'broadcast_invalidated_ice_candidates') {
      for (const id of p.client_ids ?? []) {
        const c = this.sim.clients.find((x) => x.id === id);
        if (!c) continue;
        if (event === 'broadcast_ice_candidates') c.remoteCandidates(p.candidates ?? []);
        else c.invalidatedCandidates(p.candidates ?? []);
      }
    }
  }

  /** The client's candidates, relayed to the gateway as `ice_candidates`. */
  clientCandidates(c: SimClient, candidates: string[]): void {
    if (candidates.length > 0) this.push('ice_candidates', { client_id: c.id, candidates });
  }

  initPayload(
    relays: readonly RelayInfo[],
    authorizations: readonly { clientId: string; resourceId: string; expiresAtMs: number }[],
  ) {
    return {
      interface: { ipv4: formatIp(GW_V4), ipv6: formatIp(GW_V6) },
      config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
      relays: relays.map(relayJson),
      account_slug: 'sim',
      authorizations: authorizations.map((a) => ({
        client_id: a.clientId,
        resource_id: a.resourceId,
        expires_at: Math.floor(a.expiresAtMs / 1000),
      })),
    };
  }

  relaysPresence(disconnected: readonly RelayInfo[], connected: readonly RelayInfo[]) {
    return {
      disconnected_ids: disconnected.map((r) => r.id),
      connected: connected.map(relayJson),
    };
  }
}

/** A DNS query the in-tunnel server answered (or not), for the checks. */
export interface DnsServed {
  readonly step: number;
  readonly query: Seen;
  answered: boolean;
}

export class SimWorld {
  readonly clock = new TestClock();
  readonly dns = new SimDnsNetwork(this.clock);
  readonly ns: SimNameserver;
  readonly logs: LogLine[] = [];
  readonly w: ReturnType<typeof world>;
  readonly portal: StubPortal;
  readonly clients: SimClient[] = [];
  readonly relays: RelayInfo[] = [];
  /** The current step (for recording). */
  step = 0;
  /** Everything the gateway wrote to the TUN device, with the step. */
  readonly atResource: { step: number; seen: Seen }[] = [];
  readonly unparseableAtResource: Uint8Array[] = [];
  readonly unparseableAtClients: { client: number; bytes: Uint8Array }[] = [];
  /** Client removals the gateway reported (actor ended), with the reason. */
  readonly removals: { step: number; client: string; reason: string | undefined }[] = [];
  readonly dnsServed: DnsServed[] = [];
  /** Datagrams the network dropped (relay-only clients' direct traffic). */
  blockedDatagrams = 0;
  private tunCursor = 0;
  private dnsInFlight = 0;

  constructor(
    zone: Map<
      string,
      {
        a?: string[];
        aaaa?: string[];
        srv?: { target: string; port: number }[];
        txt?: string[];
        ttl?: number;
      }
    >,
  ) {
    this.ns = this.dns.add(NS_IP, { delayMs: 10, zone });
    let control: PortalControlPlane | undefined;
    const log = (level: LogLine['level']) => (obj: object, msg: string) =>
      this.logs.push({ source: 'gateway', level, msg, obj });
    const gatewayLog: GatewayLog = { info: log('info'), warn: log('warn'), error: log('error') };
    this.w = world({
      clock: this.clock,
      dns: { nameservers: [NS_IP], upstream: this.dns },
      log: gatewayLog,
      onClientRemoved: (id, reason) => {
        this.removals.push({ step: this.step, client: id, reason });
        control?.clientRemoved(id, reason);
      },
      onCandidates: (id, added, removed) => control?.localCandidates(id, added, removed),
    });
    this.relays.push({
      id: '41529b7d-f3e1-4b26-b01d-e34919d76e1b',
      address: RELAY_IP,
      username: RELAY_USERNAME,
      password: RELAY_PASSWORD,
      server: this.w.relay,
      alive: true,
    });
    this.portal = new StubPortal(this);
    control = this.portal.control;
  }

  get control(): PortalControlPlane {
    return this.portal.control;
  }

  addClient(id: string, relayOnly: boolean): SimClient {
    const c = new SimClient(this, this.clients.length, id as ClientId, relayOnly);
    c.signal = (candidates) => this.portal.clientCandidates(c, candidates);
    this.clients.push(c);
    return c;
  }

  /** A new TURN relay on the simulated network (10.10.9.<n>). */
  addRelay(id: string): RelayInfo {
    const address = `10.10.9.${this.relays.length + 1}`;
    const username = `1766444400:salt${this.relays.length}`;
    const password = `secret${this.relays.length}`;
    const server = new FakeTurnServer(this.w.net, {
      address,
      mode: 'firezone',
      password: (u) => (u === username ? password : undefined),
      random: this.w.rnd,
      now: () => this.clock.now(),
    });
    const r: RelayInfo = { id, address, username, password, server, alive: true };
    this.relays.push(r);
    return r;
  }

  /** Whether the network carries a datagram (relay-only clients never reach the gateway directly). */
  private carries(d: { src: Uint8Array; dst: Uint8Array }): boolean {
    const s = formatIp(d.src);
    const t = formatIp(d.dst);
    const gw = formatIp(GW_UDP);
    for (const c of this.clients) {
      if (!c.relayOnly) continue;
      if ((s === c.hostIp && t === gw) || (s === gw && t === c.hostIp)) return false;
    }
    return true;
  }

  private deliverNet(): number {
    const inFlight = this.w.net.take();
    const keep = inFlight.filter((d) => this.carries(d));
    this.blockedDatagrams += inFlight.length - keep.length;
    this.w.net.inject(keep);
    return this.w.net.deliver();
  }

  /** Answers what the gateway wrote to the TUN device since the last call (the sim resources). */
  private serveTun(): number {
    const written = this.w.tun.written;
    let n = 0;
    while (this.tunCursor < written.length) {
      const bytes = written[this.tunCursor++]!;
      n++;
      const seen = readPacket(bytes);
      if (!seen) {
        this.unparseableAtResource.push(bytes);
        continue;
      }
      this.atResource.push({ step: this.step, seen });
      const reply = this.answer(seen);
      if (reply) this.w.tun.inject(reply);
    }
    if (n > 0) this.w.tun.deliver();
    return n;
  }

  /** What a resource (or the gateway host's own stack) answers. */
  private answer(p: Seen): Uint8Array | undefined {
    if (p.control) return undefined;
    const toGateway = p.dst === hex(GW_V4) || p.dst === hex(GW_V6);
    if (toGateway && p.proto === 17 && p.dport === DNS_PORT) {
      this.serveDns(p);
      return undefined;
    }
    if (p.icmpType === 8 || p.icmpType === 128) return echoIcmp(p);
    if (toGateway) return undefined;
    if (p.proto === 17 && p.sport !== undefined && p.dport !== undefined) {
      if (p.dport === UDP_UNREACHABLE_PORT) return portUnreachable(p);
      return mirrored(p, { kind: 'udp', srcPort: p.dport, dstPort: p.sport, payload: p.payload });
    }
    if (p.proto === 6 && p.tcpFlags === TCP_SYN) {
      const flags = p.dport === TCP_CLOSED_PORT ? TCP_RST_ACK : TCP_SYN_ACK;
      return mirrored(p, { kind: 'tcp', srcPort: p.dport!, dstPort: p.sport!, flags });
    }
    return undefined;
  }

  /** The gateway's DNS socket on port 53535 (a kernel socket in production). */
  private serveDns(p: Seen): void {
    const served: DnsServed = { step: this.step, query: p, answered: false };
    this.dnsServed.push(served);
    this.dnsInFlight++;
    void this.w.gateway.dnsQuery(p.payload, 'udp').then(
      (answer) => {
        this.dnsInFlight--;
        if (!answer) return;
        served.answered = true;
        this.w.tun.inject(
          buildPacket({
            src: unhex(p.dst),
            dst: unhex(p.src),
            l4: { kind: 'udp', srcPort: DNS_PORT, dstPort: p.sport!, payload: answer },
          }),
        );
        this.w.tun.deliver();
      },
      (e: unknown) => {
        this.dnsInFlight--;
        this.logs.push({
          source: 'gateway',
          level: 'error',
          msg: `dnsQuery rejected: ${String(e)}`,
          obj: {},
        });
      },
    );
  }

  /** Moves everything that can move without time passing. */
  async settle(): Promise<void> {
    for (let round = 0; round < 200; round++) {
      let moved = this.deliverNet();
      for (const c of this.clients) c.flush();
      moved += this.serveTun();
      if (moved === 0) {
        await settleAsync(3);
        moved = this.deliverNet() + this.serveTun();
        if (moved === 0) return;
      }
    }
    throw new Error('sim: the network did not settle within 200 rounds (a packet loop?)');
  }

  /** Runs simulated time for `ms`, stopping at every timer deadline, settling in between. */
  async run(ms: number, until: () => boolean = () => false): Promise<void> {
    const end = this.clock.now() + ms;
    await this.settle();
    while (this.clock.now() < end && !until()) {
      let at = Math.min(end, this.clock.nextDeadline() ?? end);
      for (const c of this.clients) at = Math.min(at, c.pollTimeout());
      this.clock.advance(Math.max(1, at - this.clock.now()));
      for (const c of this.clients) c.flush();
      await this.settle();
    }
  }

  get dnsBusy(): boolean {
    return this.dnsInFlight > 0;
  }

  async stop(): Promise<void> {
    await this.w.gateway.stop();
    for (const r of this.relays) r.server.stop();
  }
}

/** A DNS query (UDP payload) for the in-tunnel server. */
export function dnsQuery(id: number, name: string, type: 'SRV' | 'TXT' | 'A'): Uint8Array {
  return new Uint8Array(
    dnsPacket.encode({ id, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type }] }),
  );
}

export function decodeDns(bytes: Uint8Array): dnsPacket.Packet | undefined {
  try {
    return dnsPacket.decode(Buffer.from(bytes));
  } catch {
    return undefined;
  }
}
