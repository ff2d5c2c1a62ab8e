import type { IceCredentials } from '../wire/ice/agent.js';
import type { ClientId, ResourceId } from '../wire/ids.js';
import { bytesEqual } from '../wire/ip/address.js';
import { MAX_IP_PACKET_BYTES, MAX_TUNNEL_DATAGRAM_BYTES } from '../wire/ip/constants.js';
import { IP_ERROR_CODES } from '../wire/ip/errors.js';
import {
  buildUnreachable,
  emptyIcmpErrorInfo,
  readIcmpError,
  type UnreachableReason,
} from '../wire/ip/icmp.js';
import { IpPacket } from '../wire/ip/packet.js';
import {
  type DomainStatus,
  decodeP2pControl,
  encodeP2pControl,
  type P2pControlEvent,
} from '../wire/p2p/control.js';
import { type Grant, PROXY_RANGE_V4, PROXY_RANGE_V6, prefixContains, TUN_DNS_PORT } from '../wire/policy.js';
import { DrainQueue } from '../wire/queue.js';
import type { TransportAddress } from '../wire/stun/message.js';
import type { TurnCommand, TurnRelayConfig } from '../wire/turn/client.js';
import type { TimerProfile } from '../wire/wireguard/constants.js';
import { WG_DATA, WG_KEEPALIVE, WgDevice, webRandom } from '../wire/wireguard/device.js';
import type { WgPeer } from '../wire/wireguard/peer.js';
import { ClientPolicy, type Translation } from './client-policy.js';
import {
  CONNECTIVITY_DROPS,
  Connectivity,
  type ConnectivityEvent,
  type IceConnection,
  RELAY_PORT,
} from './connectivity.js';
import { IpMap } from './ip-map.js';
import { NatTable } from './nat.js';

/** Where a client is reached: the remote address of its path (direct, or later via a relay). */
export interface RouterEndpoint {
  readonly ip: Uint8Array;
  readonly port: number;
}

/** The router's outputs. Implemented by the I/O layer (and by in-memory twins in tests). */
export interface RouterIo {
  /** Queues one tunnel datagram; `buf[off, off+len)` must stay untouched until the socket flushes. */
  sendUdp(buf: Uint8Array, off: number, len: number, ip: Uint8Array, port: number, ecn: number): void;
  /** Writes one IP packet to the TUN device; false when it was dropped. */
  writeTun(buf: Uint8Array, off: number, len: number): boolean;
  /** Sends every queued datagram now; after it returns the queued buffers may be reused. */
  flush(): void;
}

/** Lifecycle events, never one per data packet. */
export type RouterEvent =
  | { readonly type: 'handshake-started'; readonly clientId: ClientId; readonly initiator: boolean }
  | { readonly type: 'session-established'; readonly clientId: ClientId; readonly initiator: boolean }
  | {
      readonly type: 'connection-failed';
      readonly clientId: ClientId;
      readonly reason: 'handshake-timeout' | 'no-session' | 'handshake-failed';
    }
  | { readonly type: 'idle' | 'active'; readonly clientId: ClientId }
  | {
      readonly type: 'grants-expired';
      readonly clientId: ClientId;
      readonly resources: readonly ResourceId[];
      readonly remaining: number;
    }
  | { readonly type: 'control'; readonly clientId: ClientId; readonly event: P2pControlEvent }
  /** ICE state and selected path, candidates to announce or withdraw, TURN client news. */
  | ConnectivityEvent;

/** A client's DNS-resource NAT request: its proxy IPs for `domain` onto the resolved addresses. */
export interface NatRequest {
  readonly resourceId: ResourceId;
  readonly domain: string;
  readonly proxyIps: readonly Uint8Array[];
  readonly realAddrs: readonly Uint8Array[];
}

export interface ClientSpec {
  readonly id: ClientId;
  readonly publicKey: Uint8Array;
  readonly presharedKey?: Uint8Array | undefined;
  readonly profile: TimerProfile;
  readonly persistentKeepaliveMs?: number | undefined;
  /** The client's tunnel addresses: the only sources accepted from it. */
  readonly ipv4?: Uint8Array | undefined;
  readonly ipv6?: Uint8Array | undefined;
  /** Plain WireGuard peers roam: their path is wherever their last authenticated packet came from. */
  readonly roaming: boolean;
  readonly endpoint?: RouterEndpoint | undefined;
  /**
   * Portal clients: the ICE credentials of the connection. The path is then ICE's selected
   * pair (direct or through a relay), never where packets happen to come from.
   */
  readonly ice?: { readonly local: IceCredentials; readonly remote: IceCredentials } | undefined;
}

/** Why a packet was dropped (besides the WireGuard device's own reasons and IP parse errors). */
export const ROUTER_DROP_REASONS = [
  'tunnel.too-large',
  'peer.unknown',
  'src.spoofed',
  'gateway.denied',
  'no-resource',
  'filter.denied',
  'proxy.no-translation',
  'proxy.family-mismatch',
  'nat.exhausted',
  'nat.unsupported',
  'nat.expired',
  'tun.no-client',
  'inbound.no-resource',
  'inbound.filter.denied',
  'no-path',
  'tun.write-failed',
  'control.invalid',
] as const;
export type RouterDropReason = (typeof ROUTER_DROP_REASONS)[number];

/** Clients go idle after this long without IP traffic either way (snownet `idle_at`). */
export const IDLE_AFTER_MS = 20_000;
/** Expiry, NAT and idle sweep cadence (`EXPIRE_RESOURCES_INTERVAL`). */
export const SWEEP_INTERVAL_MS = 1_000;
/** Headroom the router leaves in front of packets it builds (TURN channel data + WireGuard). */
const BUILD_HEADROOM_BYTES = 20;
/**
 * Buffers for packets the router builds (ICMP replies, control events). A queued datagram must
 * stay untouched until the socket flushes, so replies rotate through these and the router
 * flushes when it runs out (and at the end of every batch).
 */
const REPLY_BUFFERS = 32;

interface Client {
  readonly id: ClientId;
  readonly peer: WgPeer<RouterEndpoint>;
  /** Cleared when the portal gives the address to another client. */
  ipv4: Uint8Array | undefined;
  ipv6: Uint8Array | undefined;
  readonly roaming: boolean;
  readonly policy: ClientPolicy;
  readonly nat: NatTable;
  endpoint: RouterEndpoint | undefined;
  /** Portal clients: ICE agent and selected path. */
  readonly ice: IceConnection | undefined;
  lastActivity: number;
  idle: boolean;
}

export interface RouterOptions {
  readonly privateKey: Uint8Array;
  readonly io: RouterIo;
  /** Monotonic ms at creation. */
  readonly now: number;
  /** Wall-clock minus monotonic ms (for WireGuard timestamps). */
  readonly wallClockOffsetMs: number;
  readonly random?: (n: number) => Uint8Array;
  /** SOFTWARE attribute of our TURN requests. */
  readonly software?: string;
}

/**
 * The fast path (`spec/gateway-dataplane.md` §3–§6): WireGuard datagrams from clients to the TUN
 * device and TUN packets back to clients, with exact source validation, per-client resource
 * filters (longest prefix match), DNS-resource NAT, ICMP "prohibited"/"unreachable" replies and
 * ECN merging. Synchronous and allocation-free per packet: per-packet outcomes are counters.
 *
 * Command API (called only by `src/actors`): `setInterface`, `addClient`, `removeClient`,
 * `setGrants`, `setEndpoint`, `setupNat`, `sendControl`. Inputs per batch: `handleDatagrams`,
 * `handleTunPackets`; timers: `handleTimeout(now, wallNow)` at `pollTimeout()`. Lifecycle changes
 * come out of `pollEvent()`.
 */
export class Router {
  readonly wg: WgDevice<RouterEndpoint>;
  readonly drops: Record<string, number>;
  readonly traffic = {
    fromClientsPackets: 0,
    fromClientsBytes: 0,
    toClientsPackets: 0,
    toClientsBytes: 0,
    toTunPackets: 0,
    fromTunPackets: 0,
  };

  private readonly io: RouterIo;
  private readonly clients = new Map<ClientId, Client>();
  private readonly byPeer = new Map<WgPeer<RouterEndpoint>, Client>();
  private readonly byTunnelIp = new IpMap<Client>();
  private gatewayV4: Uint8Array | undefined;
  private gatewayV6: Uint8Array | undefined;
  private readonly events = new DrainQueue<RouterEvent>();
  private nextSweepAt: number;
  /** Relays, ICE agents and their demultiplexing (spec/snownet.md §2–§3). */
  readonly net: Connectivity;
  private readonly random: (n: number) => Uint8Array;
  /** The time of the current turn, for code that runs without one passed in. */
  private now: number;

  private readonly pkt = new IpPacket();
  private readonly icmpInfo = emptyIcmpErrorInfo();
  private readonly ep4 = { ip: new Uint8Array(4), port: 0 };
  private readonly ep6 = { ip: new Uint8Array(16), port: 0 };
  private readonly replyBufs = Array.from(
    { length: REPLY_BUFFERS },
    () => new Uint8Array(BUILD_HEADROOM_BYTES + MAX_IP_PACKET_BYTES + 16),
  );
  private replyUsed = 0;

  constructor(opts: RouterOptions) {
    this.io = opts.io;
    this.wg = new WgDevice<RouterEndpoint>({
      privateKey: opts.privateKey,
      now: opts.now,
      wallClockOffsetMs: opts.wallClockOffsetMs,
      ...(opts.random ? { random: opts.random } : {}),
    });
    this.drops = Object.fromEntries(
      [...ROUTER_DROP_REASONS, ...IP_ERROR_CODES, ...P2P_DROP_CODES, ...CONNECTIVITY_DROPS].map((r) => [
        r,
        0,
      ]),
    );
    this.nextSweepAt = opts.now + SWEEP_INTERVAL_MS;
    this.now = opts.now;
    this.random = opts.random ?? webRandom;
    this.net = new Connectivity(
      {
        sendUdp: (buf, off, len, ip, port, ecn) => this.io.sendUdp(buf, off, len, ip, port, ecn),
        scratch: () => this.replyBuffer(),
        emit: (e) => this.emit(e),
        drop: (reason) => {
          this.drops[reason]!++;
        },
        random: (n) => this.random(n),
      },
      opts.software ?? 'firezone-gateway',
    );
    this.net.byPeerPrefix = (tx) => {
      const peer = this.wg.peerById((tx[0]! << 16) | (tx[1]! << 8) | tx[2]!);
      return peer ? this.byPeer.get(peer)?.ice : undefined;
    };
  }

  get publicKey(): Uint8Array {
    return this.wg.publicKey;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  // --- Command API --------------------------------------------------------------------------

  /** The gateway's own tunnel addresses (the portal's `init.interface`, or the policy file). */
  setInterface(ipv4: Uint8Array | undefined, ipv6: Uint8Array | undefined): void {
    this.gatewayV4 = ipv4 ? Uint8Array.from(ipv4) : undefined;
    this.gatewayV6 = ipv6 ? Uint8Array.from(ipv6) : undefined;
  }

  /** Adds or replaces a relay; `hosts` are our addresses towards its servers (host candidates). */
  addRelay(config: TurnRelayConfig, hosts: readonly TransportAddress[], now: number): void {
    this.now = now;
    this.net.addRelay(config, hosts, now);
    this.endBatch();
  }

  removeRelay(id: string, now: number): void {
    this.now = now;
    this.net.removeRelay(id, now);
    this.endBatch();
  }

  /** One step of a relay-allocation actor: probe, keepalive, allocate, refresh, delete, reset. */
  relayCommand(id: string, cmd: TurnCommand, now: number): void {
    this.now = now;
    this.net.relayCommand(id, cmd, now);
    this.endBatch();
  }

  /** Remote ICE candidates the portal relayed from the client. */
  addRemoteCandidates(id: ClientId, candidates: readonly string[], now: number): void {
    const c = this.clients.get(id);
    if (!c?.ice) return;
    this.now = now;
    this.net.addRemoteCandidates(c.ice, candidates, now);
    this.endBatch();
  }

  invalidateRemoteCandidates(id: ClientId, candidates: readonly string[], now: number): void {
    const c = this.clients.get(id);
    if (!c?.ice) return;
    this.now = now;
    this.net.invalidateRemoteCandidates(c.ice, candidates);
    this.endBatch();
  }

  /** The local candidates of a client's connection, highest priority first (to re-announce). */
  localCandidates(id: ClientId): string[] {
    return this.clients.get(id)?.ice?.agent.candidateStrings() ?? [];
  }

  /** A client's selected ICE path, for logs and tests. */
  icePath(id: ClientId): { to: TransportAddress; relay: string | undefined } | undefined {
    return this.clients.get(id)?.ice?.path;
  }

  /**
   * Adds a client. A tunnel address another client holds moves to the new one (the portal's
   * assignment is authoritative, as in the reference): the other client can no longer send from
   * it nor receive for it. Returns the clients that lost an address that way.
   */
  addClient(spec: ClientSpec, now: number): ClientId[] {
    if (this.clients.has(spec.id)) throw new Error(`client ${spec.id} already exists`);
    const displaced: ClientId[] = [];
    for (const ip of [spec.ipv4, spec.ipv6]) {
      const holder = ip ? this.byTunnelIp.getAddress(ip) : undefined;
      if (!holder) continue;
      if (holder.ipv4 && ip!.length === 4) holder.ipv4 = undefined;
      if (holder.ipv6 && ip!.length === 16) holder.ipv6 = undefined;
      if (!displaced.includes(holder.id)) displaced.push(holder.id);
    }
    const peer = this.wg.addPeer({
      publicKey: spec.publicKey,
      presharedKey: spec.presharedKey,
      profile: spec.profile,
      persistentKeepaliveMs: spec.persistentKeepaliveMs,
    });
    const client: Client = {
      id: spec.id,
      peer,
      ipv4: spec.ipv4 ? Uint8Array.from(spec.ipv4) : undefined,
      ipv6: spec.ipv6 ? Uint8Array.from(spec.ipv6) : undefined,
      roaming: spec.roaming,
      policy: new ClientPolicy(),
      nat: new NatTable(),
      endpoint: spec.ice ? undefined : spec.endpoint,
      ice: spec.ice ? this.net.addConnection(spec.id, peer.id, spec.ice, now) : undefined,
      lastActivity: now,
      idle: true,
    };
    peer.endpoint = client.endpoint;
    this.clients.set(spec.id, client);
    this.byPeer.set(peer, client);
    if (client.ipv4) this.byTunnelIp.set(client.ipv4, client);
    if (client.ipv6) this.byTunnelIp.set(client.ipv6, client);
    return displaced;
  }

  /** Forgets a client; with `goodbye`, first tells a Firezone client over the tunnel (§6.1). */
  removeClient(id: ClientId, now: number, goodbye = false): boolean {
    const c = this.clients.get(id);
    if (!c) return false;
    if (goodbye) this.sendControl(id, { type: 'goodbye' }, now);
    this.clients.delete(id);
    if (c.ice) this.net.removeConnection(id);
    this.byPeer.delete(c.peer);
    if (c.ipv4 && this.byTunnelIp.getAddress(c.ipv4) === c) this.byTunnelIp.delete(c.ipv4);
    if (c.ipv6 && this.byTunnelIp.getAddress(c.ipv6) === c) this.byTunnelIp.delete(c.ipv6);
    this.wg.removePeer(c.peer);
    return true;
  }

  hasClient(id: ClientId): boolean {
    return this.clients.has(id);
  }

  setGrants(id: ClientId, grants: readonly Grant[]): void {
    this.mustGet(id).policy.setGrants(grants);
  }

  grantsOf(id: ClientId): readonly Grant[] {
    return [...(this.clients.get(id)?.policy.grants.values() ?? [])];
  }

  /** Pins the client's path (ICE nomination, or a configured endpoint). */
  setEndpoint(id: ClientId, endpoint: RouterEndpoint | undefined): void {
    const c = this.mustGet(id);
    c.endpoint = endpoint;
    c.peer.endpoint = endpoint;
  }

  endpointOf(id: ClientId): RouterEndpoint | undefined {
    return this.clients.get(id)?.endpoint;
  }

  /** The client's filter table as text (inspection and tests). */
  describePolicy(id: ClientId): string[] {
    return this.mustGet(id).policy.describe();
  }

  /** Starts a WireGuard handshake to the client now (plain peers with a configured endpoint). */
  initiateHandshake(id: ClientId, now: number): void {
    this.wg.initiateHandshake(this.mustGet(id).peer, now);
    this.drainWireGuard();
    this.endBatch();
  }

  /**
   * Whether `setupNat` would accept `domain` for the client now: the resource is an authorized
   * DNS resource whose pattern covers the name (§6.3 step 2). A read, no change.
   */
  natAllowed(id: ClientId, resourceId: ResourceId, domain: string): boolean {
    const res = this.clients.get(id)?.policy.dnsResource(resourceId);
    return res !== undefined && domainMatches(res.pattern, domain);
  }

  /**
   * DNS-resource NAT setup (`spec/gateway-dataplane.md` §6.3): maps the client's proxy IPs for
   * `domain` onto `realAddrs`. Returns the DomainStatus to report.
   */
  setupNat(id: ClientId, req: NatRequest): DomainStatus {
    const c = this.clients.get(id);
    if (!c) return 'Inactive';
    const policy = c.policy;
    // Step 1: a proxy IP already translated for another resource or domain means the client
    // renumbered its proxy IPs (e.g. after signing in again): reset all of its NAT state.
    for (const p of req.proxyIps) {
      const t = policy.translationFor(p);
      if (t && (t.resourceId !== req.resourceId || t.domain !== req.domain)) {
        policy.clearTranslations();
        c.nat.clear();
        break;
      }
    }
    // Step 2: only for an authorized DNS resource whose pattern covers the domain.
    const res = policy.dnsResource(req.resourceId);
    if (!res || !domainMatches(res.pattern, req.domain)) return 'Inactive';
    // Step 3: pair each family's sorted proxy IPs round-robin with the sorted real IPs of the
    // same family, falling back to the other family when one has none.
    const sorted = (xs: readonly Uint8Array[]) => [...xs].sort(compareAddr);
    const p4 = sorted(req.proxyIps.filter((a) => a.length === 4));
    const p6 = sorted(req.proxyIps.filter((a) => a.length === 16));
    const r4 = sorted(req.realAddrs.filter((a) => a.length === 4));
    const r6 = sorted(req.realAddrs.filter((a) => a.length === 16));
    const pairs: [Uint8Array, Uint8Array][] = [];
    const pairUp = (proxies: Uint8Array[], reals: Uint8Array[]) => {
      if (reals.length === 0) return;
      for (let i = 0; i < proxies.length; i++) pairs.push([proxies[i]!, reals[i % reals.length]!]);
    };
    pairUp(p4, r4.length > 0 ? r4 : r6);
    pairUp(p6, r6.length > 0 ? r6 : r4);
    // Step 4: a proxy IP with live sessions keeps its old real IP, so running flows survive
    // DNS round-robin changes.
    for (const [proxy, real] of pairs) {
      const old = policy.translationFor(proxy);
      if (old && !bytesEqual(old.realAddr, 0, real, 0, real.length) && c.nat.hasSessionFor(proxy)) continue;
      const t: Translation = {
        proxyAddr: Uint8Array.from(proxy),
        realAddr: Uint8Array.from(real),
        resourceId: req.resourceId,
        domain: req.domain,
      };
      policy.setTranslation(t);
    }
    // Step 5: the resolved addresses count as the resource's host prefixes; rebuild filters.
    policy.setResolved(req.resourceId, req.domain, req.realAddrs);
    return 'Active';
  }

  /** Sends an in-tunnel control event (DomainStatus, Goodbye) to a client. */
  sendControl(id: ClientId, event: P2pControlEvent, now: number): boolean {
    const c = this.clients.get(id);
    if (!c) return false;
    this.now = now;
    const enc = encodeP2pControl(event);
    if (!enc.ok) return false;
    const buf = this.replyBuffer();
    buf.set(enc.value, BUILD_HEADROOM_BYTES);
    this.sendToClient(c, buf, BUILD_HEADROOM_BYTES, enc.value.length, 0, now);
    this.drainWireGuard();
    this.endBatch();
    return true;
  }

  // --- Data path: tunnel → TUN -------------------------------------------------------------

  /**
   * Datagrams received on a tunnel socket: `bufs[i][0, lengths[i])` from `srcAddrs`/`srcPorts`,
   * with the outer ECN codepoint in `ecn[i]` when known.
   */
  handleDatagrams(
    batch: {
      readonly count: number;
      readonly bufs: readonly Uint8Array[];
      readonly lengths: Int32Array;
      readonly family: 4 | 6;
      readonly srcAddrs: Uint8Array;
      readonly srcPorts: Uint16Array;
      readonly ecn?: Uint8Array;
    },
    now: number,
  ): void {
    this.now = now;
    const ep = batch.family === 4 ? this.ep4 : this.ep6;
    const alen = ep.ip.length;
    const wg = this.wg;
    const net = this.net;
    for (let i = 0; i < batch.count; i++) {
      const buf = batch.bufs[i]!;
      const len = batch.lengths[i]!;
      this.traffic.fromClientsPackets++;
      this.traffic.fromClientsBytes += len;
      if (len > MAX_TUNNEL_DATAGRAM_BYTES) {
        this.drops['tunnel.too-large']!++;
        continue;
      }
      const a = i * 16;
      for (let k = 0; k < alen; k++) ep.ip[k] = batch.srcAddrs[a + k]!;
      ep.port = batch.srcPorts[i]!;
      // Relay traffic and STUN first; WireGuard is what is left (spec/snownet.md §2.12).
      let off = 0;
      let size = len;
      let from: RouterEndpoint = ep;
      if (len >= 4 && (buf[0]! > 0x04 || buf[1] !== 0 || ep.port === RELAY_PORT)) {
        const d = net.demux(buf, 0, len, ep, now);
        if (d.kind === 'consumed') continue;
        off = d.off;
        size = d.len;
        from = d.from;
      }
      const r = wg.decapsulate(buf, off, size, from, now);
      const peer = wg.rxPeer;
      const client = peer ? this.byPeer.get(peer) : undefined;
      if (client?.roaming && from === ep) this.track(client, ep);
      if (r === WG_DATA) {
        if (!client) this.drops['peer.unknown']!++;
        else this.fromClient(client, buf, wg.rxOffset, wg.rxLength, batch.ecn ? batch.ecn[i]! : 0, now);
      } else if (r !== WG_KEEPALIVE) {
        // Handshake messages and cookie replies: answer at once, before `ep` is reused.
        this.drainWireGuard();
      }
    }
    this.drainWireGuard();
    this.endBatch();
  }

  private fromClient(
    c: Client,
    buf: Uint8Array,
    off: number,
    len: number,
    outerEcn: number,
    now: number,
  ): void {
    const p = this.pkt;
    const error = p.load(buf, off, len);
    if (error) {
      this.drops[error.code]!++;
      return;
    }
    this.touch(c, now);
    if (p.isP2pControl) {
      this.handleControl(c, p, now);
      return;
    }
    const v4 = p.version === 4;
    const alen = p.addressLength;
    // Exact source validation (§3 step 5): only the client's own tunnel address.
    const own = v4 ? c.ipv4 : c.ipv6;
    if (!own || !bytesEqual(buf, p.srcOffset, own, 0, alen)) {
      this.reject(c, p, 'prohibited', 'src.spoofed', now);
      return;
    }
    const dst = p.dstOffset;
    const gw = v4 ? this.gatewayV4 : this.gatewayV6;
    if (gw && bytesEqual(buf, dst, gw, 0, alen)) {
      // The gateway's own tunnel address: its DNS server and ping only (§13: the reference
      // allowed any protocol and port here).
      if (p.dstPort === TUN_DNS_PORT || (p.isEcho && p.icmpType === (v4 ? 8 : 128))) this.toTun(p, outerEcn);
      else this.reject(c, p, 'prohibited', 'gateway.denied', now);
      return;
    }
    const inProxy = prefixContains(v4 ? PROXY_RANGE_V4 : PROXY_RANGE_V6, buf, dst, alen);
    const policy = c.policy;
    if (!(policy.internet && !inProxy)) {
      const engine = policy.lookup(buf, dst, alen);
      if (!engine) {
        this.reject(c, p, 'prohibited', 'no-resource', now);
        return;
      }
      if (!engine.allows(p, false)) {
        this.reject(c, p, 'prohibited', 'filter.denied', now);
        return;
      }
    }
    if (inProxy) {
      const t = policy.translationAt(buf, dst, alen);
      if (!t) {
        this.reject(c, p, 'unreachable', 'proxy.no-translation', now);
        return;
      }
      if (t.realAddr.length !== alen) {
        this.reject(c, p, 'unreachable', 'proxy.family-mismatch', now);
        return;
      }
      const outcome = c.nat.translateOutbound(p, t, now);
      if (outcome !== 'ok') {
        this.drops[outcome === 'nat.exhausted' ? 'nat.exhausted' : 'nat.unsupported']!++;
        return;
      }
    }
    this.toTun(p, outerEcn);
  }

  private toTun(p: IpPacket, outerEcn: number): void {
    p.applyOuterEcn(outerEcn);
    if (this.io.writeTun(p.buf, p.off, p.length)) this.traffic.toTunPackets++;
    else this.drops['tun.write-failed']!++;
  }

  /** Counts the drop and answers with an ICMP destination unreachable (never about an ICMP error). */
  private reject(
    c: Client,
    p: IpPacket,
    kind: UnreachableReason,
    reason: RouterDropReason,
    now: number,
  ): void {
    this.drops[reason]!++;
    const buf = this.replyBuffer();
    const n = buildUnreachable(p, kind, buf, BUILD_HEADROOM_BYTES);
    if (typeof n === 'number') this.sendToClient(c, buf, BUILD_HEADROOM_BYTES, n, 0, now);
  }

  private replyBuffer(): Uint8Array {
    if (this.replyUsed === REPLY_BUFFERS) {
      this.io.flush();
      this.replyUsed = 0;
    }
    return this.replyBufs[this.replyUsed++]!;
  }

  /** Sends what the batch queued; reply buffers are free again afterwards. */
  private endBatch(): void {
    this.net.flush(this.now);
    this.io.flush();
    this.replyUsed = 0;
  }

  private handleControl(c: Client, p: IpPacket, now: number): void {
    const r = decodeP2pControl(p);
    if (!r.ok) {
      // Unknown event types are normal (newer clients); the rest is counted as invalid.
      this.drops[r.error.code === 'p2p.unknown-type' ? 'p2p.unknown-type' : 'control.invalid']!++;
      return;
    }
    const ev = r.value;
    if (ev.type === 'assigned-ips' && !c.policy.dnsResource(ev.resource)) {
      // Not authorized for the resource: answer Inactive at once (§6.2 step 2).
      this.sendControl(
        c.id,
        { type: 'domain-status', resource: ev.resource, domain: ev.domain, status: 'Inactive' },
        now,
      );
      return;
    }
    this.emit({ type: 'control', clientId: c.id, event: ev });
  }

  // --- Data path: TUN → tunnel -------------------------------------------------------------

  /** IP packets read from the TUN device: `bufs[i][offsets[i], +lengths[i])`, with headroom for the WireGuard header. */
  handleTunPackets(
    batch: {
      readonly count: number;
      readonly bufs: readonly Uint8Array[];
      readonly offsets: Int32Array;
      readonly lengths: Int32Array;
    },
    now: number,
  ): void {
    this.now = now;
    const p = this.pkt;
    for (let i = 0; i < batch.count; i++) {
      const buf = batch.bufs[i]!;
      this.traffic.fromTunPackets++;
      const error = p.load(buf, batch.offsets[i]!, batch.lengths[i]!);
      if (error) {
        this.drops[error.code]!++;
        continue;
      }
      const c = this.byTunnelIp.get(buf, p.dstOffset, p.addressLength);
      if (!c) {
        this.drops['tun.no-client']!++;
        continue;
      }
      if (this.toClientAllowed(c, p, now)) this.sendToClient(c, buf, p.off, p.length, p.ecn, now);
    }
    this.drainWireGuard();
    this.endBatch();
  }

  /** Reverse NAT and the source-side filter (§4 steps 5–9). */
  private toClientAllowed(c: Client, p: IpPacket, now: number): boolean {
    const buf = p.buf;
    const v4 = p.version === 4;
    const alen = p.addressLength;
    const gw = v4 ? this.gatewayV4 : this.gatewayV6;
    if (gw && bytesEqual(buf, p.srcOffset, gw, 0, alen)) return true; // the gateway itself (DNS answers)
    if (p.isIcmpError && !readIcmpError(p, this.icmpInfo)) {
      // Destination unreachable, packet too big, time exceeded: pass regardless of filters
      // (§4 step 8), translated when they are about NAT traffic. Other ICMP types take the
      // normal path below.
      if (c.nat.translateIcmpError(p, this.icmpInfo, now) === 'nat.expired') {
        this.drops['nat.expired']!++;
        return false;
      }
      this.touch(c, now);
      return true;
    }
    if (c.nat.translateInbound(p, now) === 'nat.expired') {
      this.drops['nat.expired']!++;
      return false;
    }
    const src = p.srcOffset;
    const inProxy = prefixContains(v4 ? PROXY_RANGE_V4 : PROXY_RANGE_V6, buf, src, alen);
    const policy = c.policy;
    if (!(policy.internet && !inProxy)) {
      const engine = policy.lookup(buf, src, alen);
      if (!engine) {
        this.drops['inbound.no-resource']!++;
        return false;
      }
      // Keyed on the source port: replies from an allowed service pass (§4 step 9).
      if (!engine.allows(p, true)) {
        this.drops['inbound.filter.denied']!++;
        return false;
      }
    }
    this.touch(c, now);
    return true;
  }

  /** Encrypts in place (16 bytes of headroom before `off`) and sends on the client's path. */
  private sendToClient(c: Client, buf: Uint8Array, off: number, len: number, ecn: number, now: number): void {
    if (c.ice) {
      const path = c.ice.path;
      if (!path) {
        // ICE has not selected a path: the gateway never sends before it (§2.8), and IP
        // packets are not buffered.
        this.drops['no-path']!++;
        return;
      }
      const n = this.wg.encapsulate(c.peer, buf, off, len, now);
      if (n > 0 && this.net.send(path.to, path.relay, buf, off - 16, n, ecn, now)) {
        this.traffic.toClientsPackets++;
        this.traffic.toClientsBytes += n;
      }
      return;
    }
    const ep = c.endpoint;
    if (!ep) {
      // No path yet: a gateway does not send before the client reached it (§4 step 10).
      this.drops['no-path']!++;
      return;
    }
    const n = this.wg.encapsulate(c.peer, buf, off, len, now);
    if (n > 0) {
      this.io.sendUdp(buf, off - 16, n, ep.ip, ep.port, ecn);
      this.traffic.toClientsPackets++;
      this.traffic.toClientsBytes += n;
    }
  }

  // --- Timers, events ----------------------------------------------------------------------

  handleTimeout(now: number, wallNowMs: number): void {
    this.now = now;
    this.wg.handleTimeout(now);
    this.net.handleTimeout(now);
    if (now >= this.nextSweepAt) {
      this.nextSweepAt = now + SWEEP_INTERVAL_MS;
      for (const c of this.clients.values()) {
        const gone = c.policy.expire(wallNowMs);
        if (gone.length > 0) {
          this.emit({
            type: 'grants-expired',
            clientId: c.id,
            resources: gone,
            remaining: c.policy.grants.size,
          });
        }
        c.nat.sweep(now);
        if (!c.idle && now - c.lastActivity >= IDLE_AFTER_MS) {
          c.idle = true;
          if (c.ice) this.net.setIdle(c.ice, true, now);
          this.emit({ type: 'idle', clientId: c.id });
        }
      }
    }
    this.drainWireGuard();
    this.endBatch();
  }

  pollTimeout(): { at: number; reason: string } {
    const wg = this.wg.pollTimeout();
    let next = wg && wg.at < this.nextSweepAt ? wg : { at: this.nextSweepAt, reason: 'router sweep' };
    const ice = this.net.pollTimeout();
    if (ice < next.at) next = { at: ice, reason: 'ICE/TURN' };
    return next;
  }

  pollEvent(): RouterEvent | undefined {
    return this.events.poll();
  }

  /** Every drop counter: the router's and the WireGuard device's. */
  dropCounters(): Record<string, number> {
    return { ...this.drops, ...this.wg.drops };
  }

  private emit(e: RouterEvent): void {
    this.events.push(e);
  }

  private touch(c: Client, now: number): void {
    c.lastActivity = now;
    if (c.idle) {
      c.idle = false;
      if (c.ice) this.net.setIdle(c.ice, false, now);
      this.emit({ type: 'active', clientId: c.id });
    }
  }

  /** Roaming: the client's path follows the source of its authenticated packets. */
  private track(c: Client, ep: { ip: Uint8Array; port: number }): void {
    const cur = c.endpoint;
    if (
      cur &&
      cur.port === ep.port &&
      cur.ip.length === ep.ip.length &&
      bytesEqual(cur.ip, 0, ep.ip, 0, ep.ip.length)
    )
      return;
    const next = { ip: Uint8Array.from(ep.ip), port: ep.port };
    c.endpoint = next;
    c.peer.endpoint = next;
  }

  private drainWireGuard(): void {
    const wg = this.wg;
    for (let t = wg.pollTransmit(); t; t = wg.pollTransmit()) {
      if (t.kind === 'reply') {
        this.io.sendUdp(t.bytes, 0, t.bytes.length, t.to.ip, t.to.port, 0);
        continue;
      }
      const c = this.byPeer.get(t.peer);
      if (c?.ice) {
        // Held until ICE selects a path (e.g. the answer to an early handshake, §2.8).
        this.net.sendWireGuard(c.ice, t.bytes, this.now);
        continue;
      }
      const ep = c?.endpoint;
      if (ep) this.io.sendUdp(t.bytes, 0, t.bytes.length, ep.ip, ep.port, 0);
      else this.drops['no-path']!++;
    }
    for (let e = wg.pollEvent(); e; e = wg.pollEvent()) {
      const c = this.byPeer.get(e.peer);
      if (!c) continue;
      if (e.type === 'connection-expired')
        this.emit({ type: 'connection-failed', clientId: c.id, reason: e.reason });
      else if (e.type === 'handshake-failed')
        this.emit({ type: 'connection-failed', clientId: c.id, reason: 'handshake-failed' });
      else this.emit({ type: e.type, clientId: c.id, initiator: e.initiator });
    }
  }

  private mustGet(id: ClientId): Client {
    const c = this.clients.get(id);
    if (!c) throw new Error(`no client ${id}`);
    return c;
  }
}

const P2P_DROP_CODES = ['p2p.unknown-type'] as const;

function compareAddr(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/**
 * Domain ↔ resource pattern matching (`spec/gateway-dataplane.md` §6.7): case-insensitive label
 * globs; `?` one character and `*` any run within one label, `**` any number of labels; a leading
 * `*.` or `**.` also matches the bare parent domain.
 */
export function domainMatches(pattern: string, domain: string): boolean {
  const p = pattern.toLowerCase().split('.');
  const d = domain.toLowerCase().replace(/\.$/, '').split('.');
  const label = (pl: string, dl: string): boolean => {
    const re = new RegExp(
      `^${pl
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '[^.]*')
        .replace(/\?/g, '[^.]')}$`,
    );
    return re.test(dl);
  };
  const match = (i: number, j: number): boolean => {
    if (i === p.length) return j === d.length;
    if (p[i] === '**') {
      for (let k = j; k <= d.length; k++) if (match(i + 1, k)) return true;
      return false;
    }
    return j < d.length && label(p[i]!, d[j]!) && match(i + 1, j + 1);
  };
  if (match(0, 0)) return true;
  // `*.example.com` and `**.example.com` also match `example.com`.
  return (p[0] === '*' || p[0] === '**') && p.length > 1 && match(1, 0);
}
