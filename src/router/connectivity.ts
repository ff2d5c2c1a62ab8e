import {
  ICE_DEFAULT_TIMING,
  ICE_IDLE_TIMING,
  IceAgent,
  type IceCredentials,
  type IceEvent,
  type IceVia,
  type LocalCandidate,
} from '../wire/ice/agent.js';
import { addressKey, formatCandidate, parseCandidate, sameAddress } from '../wire/ice/candidate.js';
import type { ClientId } from '../wire/ids.js';
import {
  decodeChannelData,
  looksLikeChannelData,
  writeChannelDataHeader,
} from '../wire/stun/channel-data.js';
import {
  ATTR_MESSAGE_INTEGRITY,
  ATTR_MESSAGE_INTEGRITY_SHA256,
  ATTR_PRIORITY,
  ATTR_USE_CANDIDATE,
  ATTR_USERNAME,
  CHANNEL_DATA_HEADER_BYTES,
  CLASS_REQUEST,
} from '../wire/stun/constants.js';
import {
  attribute,
  decodeStun,
  looksLikeStun,
  type TransportAddress,
  unknownRequired,
  utf8,
} from '../wire/stun/message.js';
import { TurnClient, type TurnCommand, type TurnEvent, type TurnRelayConfig } from '../wire/turn/client.js';

/**
 * ICE and TURN on the router's socket (`spec/snownet.md` §2.3, §2.12, §3): the relay
 * allocations' protocol cores, one ICE agent per portal client, the demultiplexing of relay
 * traffic, STUN and WireGuard, and sending on a client's selected path (directly, or as channel
 * data through a relay). Lifecycle decisions (when to allocate, refresh, give up) belong to the
 * relay-allocation and client-connection statecharts; this layer only executes and reports.
 */

/** The comprehension-required attributes an ICE connectivity check may carry (§2.7). */
const ICE_REQUEST_ATTRIBUTES: ReadonlySet<number> = new Set([
  ATTR_USERNAME,
  ATTR_MESSAGE_INTEGRITY,
  ATTR_MESSAGE_INTEGRITY_SHA256,
  ATTR_PRIORITY,
  ATTR_USE_CANDIDATE,
]);

/** The port relays send from; only datagrams from it are taken for relay traffic (§2.12). */
export const RELAY_PORT = 3478;
/** WireGuard packets held per connection until ICE selects a path (a ring, §2.8). */
export const MAX_BUFFERED_WG_PACKETS = 128;

/** A client's path: the remote address, reached directly or through a relay. */
export interface IcePath {
  readonly to: TransportAddress;
  readonly relay: string | undefined;
}

/** Per-connection ICE state, owned by the router's client entry. */
export interface IceConnection {
  readonly clientId: ClientId;
  readonly agent: IceAgent;
  /** The relay whose relayed candidates this connection uses (chosen at random, §2.3). */
  relay: string | undefined;
  path: IcePath | undefined;
  /** WireGuard datagrams waiting for the first path (copies). */
  readonly wgBuffer: Uint8Array[];
  /** Candidate strings to announce / withdraw at the end of this turn. */
  readonly announce: string[];
  readonly withdraw: string[];
}

export type ConnectivityEvent =
  /** ICE: the selected path changed, or the agent's state did. */
  | { readonly type: 'ice'; readonly clientId: ClientId; readonly event: IceEvent }
  /** Local candidates to announce to / withdraw from the client (through the portal). */
  | {
      readonly type: 'candidates';
      readonly clientId: ClientId;
      readonly added: readonly string[];
      readonly removed: readonly string[];
    }
  /** What a relay's TURN client reported (for its relay-allocation actor). */
  | { readonly type: 'relay'; readonly relayId: string; readonly event: TurnEvent };

/** What the router gives this layer. */
export interface ConnectivityHost {
  sendUdp(buf: Uint8Array, off: number, len: number, ip: Uint8Array, port: number, ecn: number): void;
  /** A buffer with `CHANNEL_DATA_HEADER_BYTES` of headroom that stays untouched until the next flush. */
  scratch(): Uint8Array;
  emit(e: ConnectivityEvent): void;
  drop(reason: ConnectivityDrop): void;
  random(n: number): Uint8Array;
}

export const CONNECTIVITY_DROPS = [
  'relay.unknown-channel',
  'relay.bad-channel-data',
  'relay.unmatched-stun',
  'relay.no-allocation',
  'stun.invalid',
  'stun.unknown-attribute',
  'ice.unknown-ufrag',
  'ice.unknown-transaction',
  'ice.refused',
  'wg.buffer-overflow',
] as const;
export type ConnectivityDrop = (typeof CONNECTIVITY_DROPS)[number];

interface RelayEntry {
  readonly turn: TurnClient;
  /** Our host address towards the relay, per family (IP of the interface the kernel picks, our port). */
  readonly hosts: readonly TransportAddress[];
  /** Host and server-reflexive candidates learnt from BINDING responses. */
  readonly reflexive: { kind: 'host' | 'srflx'; addr: TransportAddress; base: TransportAddress }[];
  relayed: readonly TransportAddress[];
}

/** What came out of demultiplexing one datagram. */
export type Inbound =
  | { readonly kind: 'consumed' }
  | {
      readonly kind: 'wireguard';
      readonly off: number;
      readonly len: number;
      /** The peer's address; for relayed datagrams the peer behind the channel. */
      readonly from: TransportAddress;
      readonly relay: string | undefined;
    };

export class Connectivity {
  private readonly host: ConnectivityHost;
  private readonly relays = new Map<string, RelayEntry>();
  private readonly relayByServer = new Map<string, RelayEntry>();
  private readonly connections = new Map<ClientId, IceConnection>();
  private readonly byUfrag = new Map<string, IceConnection>();
  private readonly dirty = new Set<IceConnection>();
  private deadline = Number.POSITIVE_INFINITY;
  private readonly software: string;

  constructor(host: ConnectivityHost, software: string) {
    this.host = host;
    this.software = software;
  }

  get relayCount(): number {
    return this.relays.size;
  }

  /** Whether a relay has an allocation (connections need at least one, §2.3). */
  get hasAllocation(): boolean {
    for (const r of this.relays.values()) if (r.relayed.length > 0) return true;
    return false;
  }

  // --- Relays ------------------------------------------------------------------------------

  /** Adds (or replaces) a relay; `hosts` are our addresses towards its servers. */
  addRelay(config: TurnRelayConfig, hosts: readonly TransportAddress[], now: number): void {
    if (this.relays.has(config.id)) this.removeRelay(config.id, now);
    const entry: RelayEntry = {
      turn: new TurnClient({ relay: config, random: (n) => this.host.random(n), software: this.software }),
      hosts,
      reflexive: [],
      relayed: [],
    };
    this.relays.set(config.id, entry);
    for (const s of config.servers) this.relayByServer.set(addressKey(s), entry);
  }

  /** Forgets a relay: its candidates are withdrawn and connections move to another relay (§3.6). */
  removeRelay(id: string, now: number): void {
    const r = this.relays.get(id);
    if (!r) return;
    this.withdrawRelayed(id, now);
    this.relays.delete(id);
    for (const s of r.turn.relay.servers) this.relayByServer.delete(addressKey(s));
    for (const c of this.connections.values()) if (c.relay === id) this.chooseRelay(c, now);
  }

  relayIds(): string[] {
    return [...this.relays.keys()];
  }

  relayClient(id: string): TurnClient | undefined {
    return this.relays.get(id)?.turn;
  }

  /** Runs a command of the relay-allocation statechart on the relay's TURN client. */
  relayCommand(id: string, cmd: TurnCommand, now: number): void {
    const r = this.relays.get(id);
    if (!r) return;
    switch (cmd) {
      case 'probe':
        r.turn.probe(now);
        break;
      case 'keepalive':
        r.turn.keepalive(now);
        break;
      case 'allocate':
        r.turn.allocate(now);
        break;
      case 'refresh':
        r.turn.refresh(now);
        break;
      case 'poke':
        // A liveness test: one REFRESH with a single 1 s attempt (§3.6 step 3).
        r.turn.refresh(now, undefined, true);
        break;
      case 'reset':
        r.turn.reset();
        this.withdrawRelayed(id, now);
        break;
    }
    this.drainRelay(id, r, now);
  }

  // --- Connections -------------------------------------------------------------------------

  /**
   * Creates the controlled ICE agent of a portal client and seeds it with our candidates: host
   * and server-reflexive ones of every relay, relayed ones of one relay picked at random.
   */
  addConnection(
    clientId: ClientId,
    peerId: number,
    creds: { local: IceCredentials; remote: IceCredentials },
    now: number,
  ): IceConnection {
    this.removeConnection(clientId);
    const agent = new IceAgent({
      controlling: false,
      local: creds.local,
      remote: creds.remote,
      random: (n) => this.host.random(n),
      transactionPrefix: Uint8Array.of(peerId >>> 16, peerId >>> 8, peerId),
    });
    const c: IceConnection = {
      clientId,
      agent,
      relay: undefined,
      path: undefined,
      wgBuffer: [],
      announce: [],
      withdraw: [],
    };
    this.connections.set(clientId, c);
    this.byUfrag.set(creds.local.username, c);
    for (const r of this.relays.values())
      for (const x of r.reflexive) this.addLocal(c, { ...x, via: { kind: 'direct' } }, now);
    this.chooseRelay(c, now);
    this.touched(c);
    return c;
  }

  removeConnection(clientId: ClientId): void {
    const c = this.connections.get(clientId);
    if (!c) return;
    this.connections.delete(clientId);
    if (this.byUfrag.get(c.agent.localCredentials.username) === c)
      this.byUfrag.delete(c.agent.localCredentials.username);
    this.dirty.delete(c);
  }

  connection(clientId: ClientId): IceConnection | undefined {
    return this.connections.get(clientId);
  }

  addRemoteCandidates(c: IceConnection, candidates: readonly string[], now: number): void {
    for (const text of candidates) {
      if (!c.agent.addRemoteCandidate(text, now)) continue;
      // A non-host candidate is reached through our relay: bind a channel ahead of time (§2.6 step 3).
      const parsed = parseCandidate(text);
      if (parsed.ok && parsed.value.kind !== 'host' && c.relay !== undefined) {
        this.relays.get(c.relay)?.turn.bindChannel(parsed.value.addr, now);
      }
    }
    c.agent.setTiming(ICE_DEFAULT_TIMING, now);
    this.touched(c);
  }

  invalidateRemoteCandidates(c: IceConnection, candidates: readonly string[]): void {
    for (const text of candidates) c.agent.invalidateRemoteCandidate(text);
    this.touched(c);
  }

  setIdle(c: IceConnection, idle: boolean, now: number): void {
    c.agent.setTiming(idle ? ICE_IDLE_TIMING : ICE_DEFAULT_TIMING, now);
    this.touched(c);
  }

  // --- Inbound -----------------------------------------------------------------------------

  /**
   * Demultiplexes one datagram (§2.12): relay traffic (source port 3478 from a known relay),
   * then ICE STUN, else WireGuard (returned to the caller, unwrapped from channel data if it
   * came through a relay).
   */
  demux(buf: Uint8Array, off: number, len: number, from: TransportAddress, now: number): Inbound {
    let relay: string | undefined;
    let peer = from;
    if (from.port === RELAY_PORT && this.relays.size > 0) {
      const r = this.relayByServer.get(addressKey(from));
      if (r) {
        if (looksLikeStun(buf, off, len)) {
          const m = decodeStun(buf, off, len);
          if (!m.ok || !r.turn.handleStun(m.value, from, now)) this.host.drop('relay.unmatched-stun');
          this.drainRelay(r.turn.relay.id, r, now);
          return CONSUMED;
        }
        if (looksLikeChannelData(buf, off, len)) {
          const cd = decodeChannelData(buf, off, len);
          if (!cd.ok) {
            this.host.drop('relay.bad-channel-data');
            return CONSUMED;
          }
          const p = r.turn.peerOfChannel(cd.value.channel, now);
          if (!p) {
            this.host.drop('relay.unknown-channel');
            return CONSUMED;
          }
          relay = r.turn.relay.id;
          peer = p;
          off = cd.value.payloadOffset;
          len = cd.value.payloadLength;
        }
      }
    }
    if (looksLikeStun(buf, off, len)) {
      this.handleIceStun(buf, off, len, peer, relay, now);
      return CONSUMED;
    }
    return { kind: 'wireguard', off, len, from: peer, relay };
  }

  private handleIceStun(
    buf: Uint8Array,
    off: number,
    len: number,
    from: TransportAddress,
    relay: string | undefined,
    now: number,
  ): void {
    const m = decodeStun(buf, off, len);
    if (!m.ok) {
      this.host.drop('stun.invalid');
      return;
    }
    const msg = m.value;
    // A request with a comprehension-required attribute we do not know is refused (RFC 8489
    // §6.3.1); ICE never answers with an error (§2.7), so it is dropped.
    if (msg.cls === CLASS_REQUEST && unknownRequired(msg, ICE_REQUEST_ATTRIBUTES).length > 0) {
      this.host.drop('stun.unknown-attribute');
      return;
    }
    let c: IceConnection | undefined;
    if (msg.cls === CLASS_REQUEST) {
      const u = attribute(msg, ATTR_USERNAME);
      const ufrag = u ? utf8(u).split(':')[0] : undefined;
      c = ufrag !== undefined ? this.byUfrag.get(ufrag) : undefined;
      if (!c) {
        this.host.drop('ice.unknown-ufrag');
        return;
      }
    } else {
      // Our transaction ids start with the connection's 24-bit peer id.
      c = this.byPeerPrefix(msg.transactionId);
      if (!c) {
        this.host.drop('ice.unknown-transaction');
        return;
      }
    }
    const via: IceVia = relay === undefined ? DIRECT : { kind: 'relay', relay };
    if (!c.agent.handleStun(msg, via, { ip: Uint8Array.from(from.ip), port: from.port }, now))
      this.host.drop('ice.refused');
    this.touched(c);
  }

  /** Set by the router: finds a connection by the peer id in a transaction id. */
  byPeerPrefix: (transactionId: Uint8Array) => IceConnection | undefined = () => undefined;

  // --- Outbound ----------------------------------------------------------------------------

  /**
   * Sends `buf[off, off+len)` to `to`, directly or as channel data through `relay`. For a relay,
   * `buf` needs `CHANNEL_DATA_HEADER_BYTES` of headroom before `off`. Returns false when there
   * is no way (no allocation, no channel possible).
   */
  send(
    to: TransportAddress,
    relay: string | undefined,
    buf: Uint8Array,
    off: number,
    len: number,
    ecn: number,
    now: number,
  ): boolean {
    if (relay === undefined) {
      this.host.sendUdp(buf, off, len, to.ip, to.port, ecn);
      return true;
    }
    const r = this.relays.get(relay);
    const server = r?.turn.activeServer;
    if (!r || !server) {
      this.host.drop('relay.no-allocation');
      return false;
    }
    const channel = r.turn.channelFor(to, now) ?? r.turn.bindChannel(to, now);
    if (channel === undefined) {
      this.host.drop('relay.no-allocation');
      return false;
    }
    writeChannelDataHeader(buf, off - CHANNEL_DATA_HEADER_BYTES, channel, len);
    this.host.sendUdp(
      buf,
      off - CHANNEL_DATA_HEADER_BYTES,
      len + CHANNEL_DATA_HEADER_BYTES,
      server.ip,
      server.port,
      ecn,
    );
    this.drainRelay(relay, r, now);
    return true;
  }

  /** The same for a buffer without headroom (copied into a scratch buffer). */
  sendCopy(to: TransportAddress, relay: string | undefined, bytes: Uint8Array, now: number): boolean {
    if (relay === undefined) {
      this.host.sendUdp(bytes, 0, bytes.length, to.ip, to.port, 0);
      return true;
    }
    const s = this.host.scratch();
    s.set(bytes, CHANNEL_DATA_HEADER_BYTES);
    return this.send(to, relay, s, CHANNEL_DATA_HEADER_BYTES, bytes.length, 0, now);
  }

  /** A WireGuard datagram for an ICE client: on its path, or held until there is one. */
  sendWireGuard(c: IceConnection, bytes: Uint8Array, now: number): void {
    if (c.path) {
      this.sendCopy(c.path.to, c.path.relay, bytes, now);
      return;
    }
    if (c.wgBuffer.length >= MAX_BUFFERED_WG_PACKETS) {
      c.wgBuffer.shift();
      this.host.drop('wg.buffer-overflow');
    }
    c.wgBuffer.push(Uint8Array.from(bytes));
  }

  // --- Timers, draining --------------------------------------------------------------------

  handleTimeout(now: number): void {
    if (now < this.deadline) return;
    for (const [id, r] of this.relays) {
      if (r.turn.pollTimeout() <= now) r.turn.handleTimeout(now);
      this.drainRelay(id, r, now);
    }
    for (const c of this.connections.values()) {
      if (c.agent.pollTimeout() <= now) {
        c.agent.handleTimeout(now);
        this.dirty.add(c);
      }
    }
    this.flush(now);
    this.recomputeDeadline();
  }

  pollTimeout(): number {
    return this.deadline;
  }

  /** Drains every agent touched this turn: its datagrams, events and candidate announcements. */
  flush(now: number): void {
    for (const c of this.dirty) {
      this.drainAgent(c, now);
      if (c.announce.length > 0 || c.withdraw.length > 0) {
        this.host.emit({
          type: 'candidates',
          clientId: c.clientId,
          added: c.announce.splice(0),
          removed: c.withdraw.splice(0),
        });
      }
      const at = c.agent.pollTimeout();
      if (at < this.deadline) this.deadline = at;
    }
    this.dirty.clear();
  }

  private touched(c: IceConnection): void {
    this.dirty.add(c);
  }

  private recomputeDeadline(): void {
    let at = Number.POSITIVE_INFINITY;
    for (const r of this.relays.values()) at = Math.min(at, r.turn.pollTimeout());
    for (const c of this.connections.values()) at = Math.min(at, c.agent.pollTimeout());
    this.deadline = at;
  }

  private drainAgent(c: IceConnection, now: number): void {
    const agent = c.agent;
    for (let t = agent.pollTransmit(); t; t = agent.pollTransmit()) {
      this.sendCopy(t.to, t.via.kind === 'relay' ? t.via.relay : undefined, t.bytes, now);
    }
    for (let e = agent.pollEvent(); e; e = agent.pollEvent()) {
      if (e.type === 'selected') {
        const first = c.path === undefined;
        c.path = { to: e.remote, relay: e.local.via.kind === 'relay' ? e.local.via.relay : undefined };
        if (first) for (const b of c.wgBuffer.splice(0)) this.sendCopy(c.path.to, c.path.relay, b, now);
      } else if (e.type === 'state' && e.state !== 'connected') {
        c.path = undefined;
      }
      this.host.emit({ type: 'ice', clientId: c.clientId, event: e });
    }
  }

  private drainRelay(id: string, r: RelayEntry, now: number): void {
    const turn = r.turn;
    for (let t = turn.pollTransmit(); t; t = turn.pollTransmit()) {
      this.host.sendUdp(t.bytes, 0, t.bytes.length, t.to.ip, t.to.port, 0);
    }
    for (let e = turn.pollEvent(); e; e = turn.pollEvent()) {
      if (e.type === 'bound') this.learnReflexive(r, e.server, e.mapped, now);
      else if (e.type === 'allocated') {
        r.relayed = [...e.relayed];
        for (const c of this.connections.values()) {
          if (c.relay === undefined) this.chooseRelay(c, now);
          else if (c.relay === id) this.addRelayed(c, id, r, now);
        }
      }
      this.host.emit({ type: 'relay', relayId: id, event: e });
    }
    const at = turn.pollTimeout();
    if (at < this.deadline) this.deadline = at;
  }

  /** A BINDING answer: our host address towards the relay and what the relay saw (§2.3). */
  private learnReflexive(
    r: RelayEntry,
    server: TransportAddress,
    mapped: TransportAddress,
    now: number,
  ): void {
    const host = r.hosts.find((h) => h.ip.length === server.ip.length);
    const found: RelayEntry['reflexive'] = [];
    if (host) found.push({ kind: 'host', addr: host, base: host });
    if (host && !sameAddress(host, mapped)) found.push({ kind: 'srflx', addr: mapped, base: host });
    for (const f of found) {
      if (r.reflexive.some((x) => x.kind === f.kind && sameAddress(x.addr, f.addr))) continue;
      r.reflexive.push(f);
      for (const c of this.connections.values()) this.addLocal(c, { ...f, via: DIRECT }, now);
    }
  }

  private chooseRelay(c: IceConnection, now: number): void {
    const usable = [...this.relays.entries()].filter(([, r]) => r.relayed.length > 0);
    if (usable.length === 0) {
      c.relay = undefined;
      return;
    }
    const pick = usable[this.host.random(1)[0]! % usable.length]!;
    c.relay = pick[0];
    this.addRelayed(c, pick[0], pick[1], now);
  }

  private addRelayed(c: IceConnection, id: string, r: RelayEntry, now: number): void {
    const server = r.turn.activeServer;
    for (const a of r.relayed) {
      const other = server !== undefined && server.ip.length !== a.ip.length;
      this.addLocal(c, { kind: 'relay', addr: a, base: a, via: { kind: 'relay', relay: id } }, now, other);
    }
  }

  private addLocal(
    c: IceConnection,
    cand: { kind: 'host' | 'srflx' | 'relay'; addr: TransportAddress; base: TransportAddress; via: IceVia },
    now: number,
    otherFamily = false,
  ): void {
    const added = c.agent.addLocalCandidate(cand, now, otherFamily);
    if (added) {
      c.announce.push(formatCandidate(added));
      this.touched(c);
    }
  }

  /**
   * Withdraws the relayed candidates of `id` from every connection (→ invalidations); those that
   * used this relay move to another one that has an allocation (§3.6 step 4).
   */
  private withdrawRelayed(id: string, now: number): void {
    const r = this.relays.get(id);
    if (r) r.relayed = [];
    for (const c of this.connections.values()) {
      const gone = c.agent.removeLocalCandidates(
        (l: LocalCandidate) => l.via.kind === 'relay' && l.via.relay === id,
      );
      for (const g of gone) c.withdraw.push(formatCandidate(g));
      if (gone.length > 0) this.touched(c);
      if (c.relay === id) this.chooseRelay(c, now);
    }
  }
}

const CONSUMED: Inbound = { kind: 'consumed' };
const DIRECT: IceVia = { kind: 'direct' };
