import type { MemoryUdpNetwork, MemoryUdpSocket } from '../../src/io/memory-udp.js';
import { type DatagramBatch, datagramSource } from '../../src/io/packet-batch.js';
import { formatIp, parseIpv4, parseIpv6 } from '../../src/wire/ip/address.js';
import {
  ATTR_ADDITIONAL_ADDRESS_FAMILY,
  ATTR_CHANNEL_NUMBER,
  ATTR_LIFETIME,
  ATTR_MAPPED_ADDRESS,
  ATTR_MESSAGE_INTEGRITY,
  ATTR_NONCE,
  ATTR_REALM,
  ATTR_REQUESTED_ADDRESS_FAMILY,
  ATTR_REQUESTED_TRANSPORT,
  ATTR_RESPONSE_ORIGIN,
  ATTR_SOFTWARE,
  ATTR_UNKNOWN_ATTRIBUTES,
  ATTR_USERNAME,
  ATTR_XOR_MAPPED_ADDRESS,
  ATTR_XOR_PEER_ADDRESS,
  ATTR_XOR_RELAYED_ADDRESS,
  CHANNEL_MAX,
  CHANNEL_MIN,
  CLASS_ERROR,
  CLASS_REQUEST,
  CLASS_SUCCESS,
  ERROR_ALLOCATION_MISMATCH,
  ERROR_BAD_REQUEST,
  ERROR_PEER_ADDRESS_FAMILY_MISMATCH,
  ERROR_STALE_NONCE,
  ERROR_UNAUTHORIZED,
  ERROR_UNKNOWN_ATTRIBUTE,
  ERROR_UNSUPPORTED_TRANSPORT,
  FAMILY_IPV4,
  FAMILY_IPV6,
  METHOD_ALLOCATE,
  METHOD_BINDING,
  METHOD_CHANNEL_BIND,
  METHOD_CREATE_PERMISSION,
  METHOD_REFRESH,
  TRANSPORT_UDP,
} from '../../src/wire/stun/constants.js';
import {
  attribute,
  decodeStun,
  decodeU32,
  decodeXorAddress,
  longTermKey,
  StunBuilder,
  type StunMessage,
  type TransportAddress,
  utf8,
  verifyIntegrity,
} from '../../src/wire/stun/message.js';

/**
 * A TURN server on the simulated network (`MemoryUdpNetwork`), UDP only, modelled on the two
 * servers of `spec/snownet.md` §3.7 (the Firezone relay) and §3.8 (coturn 4.6.1):
 *
 * - BINDING is answered unauthenticated (coturn adds MAPPED-ADDRESS and RESPONSE-ORIGIN).
 * - ALLOCATE / REFRESH / CHANNEL-BIND / CREATE-PERMISSION need long-term credentials. The
 *   Firezone relay challenges with a 401 that is signed when the request named a known user;
 *   coturn never signs its challenges and answers an authenticated request without NONCE
 *   with 400. Everything else answered to an authenticated request is signed.
 * - coturn refuses a REFRESH carrying REQUESTED-TRANSPORT (420) and enforces 300 s permissions
 *   (installed and refreshed by CHANNEL-BIND); the Firezone relay relays on channels alone.
 * - Data moves only through channels (no Send/Data indications). Lifetimes are checked lazily
 *   against `now()`. Nothing it receives makes it throw: what it cannot decode is counted in
 *   `stats.rejected`, what it cannot route in `stats.dropped`.
 */

export interface FakeTurnOptions {
  /** e.g. '10.10.9.1' or 'fd00::9'; listens on port 3478. */
  address: string;
  mode: 'firezone' | 'coturn';
  /** Default 'firezone'. */
  realm?: string;
  /** The password of a user, undefined for an unknown one. */
  password: (username: string) => string | undefined;
  random: (n: number) => Uint8Array;
  now: () => number;
  /** Default lifetime of an allocation, seconds. Default 600. */
  lifetimeS?: number;
}

export const FAKE_TURN_PORT = 3478;
export const FAKE_TURN_FIRST_RELAY_PORT = 49_152;
/** Longest lifetime granted (both servers cap at one hour). */
export const FAKE_TURN_MAX_LIFETIME_S = 3_600;
export const FAKE_TURN_CHANNEL_LIFETIME_MS = 600_000;
/** A lapsed channel number / peer stays reserved this long (RFC 8656 §12). */
export const FAKE_TURN_CHANNEL_RESERVED_MS = 300_000;
/** coturn's permission lifetime (RFC 8656 §9). */
export const FAKE_TURN_PERMISSION_LIFETIME_MS = 300_000;

export interface FakeTurnStats {
  /** BINDING requests answered. */
  bindings: number;
  /** Allocations created. */
  allocations: number;
  /** Successful REFRESH requests (deletions included). */
  refreshes: number;
  /** Successful CHANNEL-BIND requests (new and refreshed). */
  channelBinds: number;
  /** Channel-data frames from clients relayed to their peer. */
  channelDataIn: number;
  /** Peer datagrams relayed to a client as channel data. */
  channelDataOut: number;
  /** Datagrams that were not a decodable request or channel-data frame. */
  rejected: number;
  /** Decodable traffic that could not be routed (no allocation, channel or permission). */
  dropped: number;
}

interface Channel {
  readonly number: number;
  readonly peer: TransportAddress;
  expiresAt: number;
}

interface Allocation {
  readonly client: TransportAddress;
  readonly key: Uint8Array;
  readonly relay: MemoryUdpSocket;
  readonly relayed: TransportAddress;
  expiresAt: number;
  readonly channelsByNumber: Map<number, Channel>;
  readonly channelsByPeer: Map<string, Channel>;
  /** Peer IP → expiry (coturn). */
  readonly permissions: Map<string, number>;
}

interface Auth {
  readonly key: Uint8Array;
}

const SOFTWARE = { firezone: 'firezone-relay; rev=fa4e7a11', coturn: "Coturn-4.6.1 'Gorst'" } as const;

export class FakeTurnServer {
  readonly stats: FakeTurnStats = {
    bindings: 0,
    allocations: 0,
    refreshes: 0,
    channelBinds: 0,
    channelDataIn: 0,
    channelDataOut: 0,
    rejected: 0,
    dropped: 0,
  };
  readonly address: TransportAddress;
  private readonly family: 4 | 6;
  private readonly realm: string;
  private readonly lifetimeS: number;
  private readonly socket: MemoryUdpSocket;
  private readonly allocations = new Map<string, Allocation>();
  private readonly nonces = new Set<string>();
  private nextRelayPort = FAKE_TURN_FIRST_RELAY_PORT;
  private stopped = false;

  constructor(
    private readonly net: MemoryUdpNetwork,
    private readonly opts: FakeTurnOptions,
  ) {
    this.family = opts.address.includes(':') ? 6 : 4;
    const ip = this.family === 4 ? parseIpv4(opts.address) : parseIpv6(opts.address);
    if (!ip) throw new Error(`FakeTurnServer: bad address ${opts.address}`);
    this.address = { ip, port: FAKE_TURN_PORT };
    this.realm = opts.realm ?? 'firezone';
    this.lifetimeS = opts.lifetimeS ?? 600;
    this.socket = net.open({ family: this.family, address: opts.address, port: FAKE_TURN_PORT });
    this.socket.start((batch) => this.onBatch(batch, (from, bytes) => this.onClientDatagram(from, bytes)));
  }

  /** Live (unexpired) allocations. */
  allocationCount(): number {
    for (const [k, a] of [...this.allocations]) this.expire(k, a);
    return this.allocations.size;
  }

  /** The relayed address of the allocation of a client's 5-tuple, if it has one. */
  relayedAddressOf(client: TransportAddress): TransportAddress | undefined {
    return this.live(client)?.relayed;
  }

  /** Unbinds every socket of the server: it goes silent and forgets everything (relay loss). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    void this.socket.close();
    for (const a of this.allocations.values()) void a.relay.close();
    this.allocations.clear();
    this.nonces.clear();
  }

  // --- Datagrams ---------------------------------------------------------------------------

  private onBatch(batch: DatagramBatch, handle: (from: TransportAddress, bytes: Uint8Array) => void): void {
    for (let i = 0; i < batch.count; i++) {
      const from = { ip: Uint8Array.from(datagramSource(batch, i)), port: batch.srcPorts[i]! };
      const bytes = batch.bufs[i]!.slice(batch.offsets[i]!, batch.offsets[i]! + batch.lengths[i]!);
      try {
        handle(from, bytes);
      } catch {
        // A fake must never take the test down with it; count what it choked on.
        this.stats.rejected++;
      }
    }
  }

  private onClientDatagram(from: TransportAddress, bytes: Uint8Array): void {
    if (this.stopped) return;
    if (bytes.length >= 4 && (bytes[0]! & 0xf0) === 0x40) {
      this.onChannelData(from, bytes);
      return;
    }
    const r = decodeStun(bytes);
    if (!r.ok || r.value.cls !== CLASS_REQUEST) {
      this.stats.rejected++;
      return;
    }
    this.onRequest(from, r.value);
  }

  /** Channel data from a client: to the channel's peer, from the relayed socket. */
  private onChannelData(from: TransportAddress, bytes: Uint8Array): void {
    const channel = (bytes[0]! << 8) | bytes[1]!;
    const length = (bytes[2]! << 8) | bytes[3]!;
    // Both servers accept padding over UDP (length ≤ what follows), RFC 8656 §12.5.
    if (channel < CHANNEL_MIN || channel > CHANNEL_MAX || length > bytes.length - 4) {
      this.stats.rejected++;
      return;
    }
    const a = this.live(from);
    const ch = a?.channelsByNumber.get(channel);
    if (!a || !ch || !this.usable(a, ch)) {
      this.stats.dropped++;
      return;
    }
    this.stats.channelDataIn++;
    a.relay.send(bytes, 4, length, ch.peer.ip, ch.peer.port);
  }

  /** A datagram from a peer at a relayed socket: channel data to the client, from port 3478. */
  private onPeerDatagram(a: Allocation, from: TransportAddress, bytes: Uint8Array): void {
    if (this.stopped) return;
    const k = key(a.client);
    if (this.allocations.get(k) !== a || this.expire(k, a)) {
      this.stats.dropped++;
      return;
    }
    const ch = a.channelsByPeer.get(key(from));
    if (!ch || !this.usable(a, ch)) {
      this.stats.dropped++;
      return;
    }
    const out = new Uint8Array(4 + bytes.length);
    out[0] = ch.number >>> 8;
    out[1] = ch.number & 0xff;
    out[2] = bytes.length >>> 8;
    out[3] = bytes.length & 0xff;
    out.set(bytes, 4);
    this.stats.channelDataOut++;
    this.socket.send(out, 0, out.length, a.client.ip, a.client.port);
  }

  private usable(a: Allocation, ch: Channel): boolean {
    const now = this.opts.now();
    if (ch.expiresAt <= now) return false;
    if (this.opts.mode === 'coturn') {
      const perm = a.permissions.get(formatIp(ch.peer.ip));
      if (perm === undefined || perm <= now) return false;
    }
    return true;
  }

  // --- Requests ----------------------------------------------------------------------------

  private onRequest(from: TransportAddress, msg: StunMessage): void {
    if (msg.method === METHOD_BINDING) {
      this.stats.bindings++;
      const b = new StunBuilder(METHOD_BINDING, CLASS_SUCCESS, msg.transactionId).addXorAddress(
        ATTR_XOR_MAPPED_ADDRESS,
        from,
      );
      if (this.opts.mode === 'coturn') {
        b.add(ATTR_MAPPED_ADDRESS, plainAddress(from)).add(ATTR_RESPONSE_ORIGIN, plainAddress(this.address));
      }
      this.reply(from, b.addText(ATTR_SOFTWARE, SOFTWARE[this.opts.mode]).build());
      return;
    }
    if (
      msg.method !== METHOD_ALLOCATE &&
      msg.method !== METHOD_REFRESH &&
      msg.method !== METHOD_CHANNEL_BIND &&
      msg.method !== METHOD_CREATE_PERMISSION
    ) {
      this.stats.rejected++;
      return;
    }
    const auth = this.authenticate(from, msg);
    if (!auth) return;
    switch (msg.method) {
      case METHOD_ALLOCATE:
        this.onAllocate(from, msg, auth);
        break;
      case METHOD_REFRESH:
        this.onRefresh(from, msg, auth);
        break;
      case METHOD_CHANNEL_BIND:
        this.onChannelBind(from, msg, auth);
        break;
      default:
        this.onCreatePermission(from, msg, auth);
    }
  }

  /** Long-term credentials (RFC 8489 §9.2); answers the challenge itself and returns undefined. */
  private authenticate(from: TransportAddress, msg: StunMessage): Auth | undefined {
    const userRaw = attribute(msg, ATTR_USERNAME);
    const nonceRaw = attribute(msg, ATTR_NONCE);
    const mi = attribute(msg, ATTR_MESSAGE_INTEGRITY);
    const user = userRaw ? utf8(userRaw) : undefined;
    const password = user !== undefined ? this.opts.password(user) : undefined;
    const userKey =
      user !== undefined && password !== undefined ? longTermKey(user, this.realm, password) : undefined;
    const coturn = this.opts.mode === 'coturn';
    // The Firezone relay signs every answer to a request naming a known user; coturn signs none
    // of its challenges.
    const challengeKey = coturn ? undefined : userKey;

    if (!mi || user === undefined) {
      this.challenge(from, msg, ERROR_UNAUTHORIZED, 'Unauthorized', challengeKey);
      return undefined;
    }
    if (!nonceRaw) {
      if (coturn) this.error(from, msg, ERROR_BAD_REQUEST, 'Bad Request', undefined);
      else this.challenge(from, msg, ERROR_UNAUTHORIZED, 'Unauthorized', challengeKey);
      return undefined;
    }
    if (!this.nonces.has(utf8(nonceRaw))) {
      this.challenge(from, msg, ERROR_STALE_NONCE, 'Stale Nonce', challengeKey);
      return undefined;
    }
    const realm = attribute(msg, ATTR_REALM);
    if (!userKey || !verifyIntegrity(msg, userKey) || (coturn && (!realm || utf8(realm) !== this.realm))) {
      this.challenge(from, msg, ERROR_UNAUTHORIZED, 'Unauthorized', challengeKey);
      return undefined;
    }
    return { key: userKey };
  }

  private onAllocate(from: TransportAddress, msg: StunMessage, auth: Auth): void {
    if (this.live(from)) {
      this.error(from, msg, ERROR_ALLOCATION_MISMATCH, 'Allocation Mismatch', auth.key);
      return;
    }
    const transport = attribute(msg, ATTR_REQUESTED_TRANSPORT);
    if (transport?.length !== 4) {
      this.error(from, msg, ERROR_BAD_REQUEST, 'Bad Request', auth.key);
      return;
    }
    if (transport[0] !== TRANSPORT_UDP) {
      this.error(from, msg, ERROR_UNSUPPORTED_TRANSPORT, 'Unsupported Transport Protocol', auth.key);
      return;
    }
    if (attribute(msg, ATTR_REQUESTED_ADDRESS_FAMILY) && attribute(msg, ATTR_ADDITIONAL_ADDRESS_FAMILY)) {
      this.error(from, msg, ERROR_BAD_REQUEST, 'Bad Request', auth.key);
      return;
    }
    const lifetimeS = this.lifetimeOf(msg);
    const relay = this.openRelaySocket();
    const a: Allocation = {
      client: copy(from),
      key: auth.key,
      relay,
      relayed: { ip: this.address.ip, port: relay.localPort },
      expiresAt: this.opts.now() + lifetimeS * 1000,
      channelsByNumber: new Map(),
      channelsByPeer: new Map(),
      permissions: new Map(),
    };
    relay.start((batch) => this.onBatch(batch, (peer, bytes) => this.onPeerDatagram(a, peer, bytes)));
    this.allocations.set(key(from), a);
    this.stats.allocations++;
    // A single-stack relay silently leaves out the family it does not have (both servers).
    this.reply(
      from,
      new StunBuilder(METHOD_ALLOCATE, CLASS_SUCCESS, msg.transactionId)
        .addXorAddress(ATTR_XOR_RELAYED_ADDRESS, a.relayed)
        .addXorAddress(ATTR_XOR_MAPPED_ADDRESS, from)
        .addU32(ATTR_LIFETIME, lifetimeS)
        .addText(ATTR_SOFTWARE, SOFTWARE[this.opts.mode])
        .integrity(auth.key)
        .build(),
    );
  }

  private onRefresh(from: TransportAddress, msg: StunMessage, auth: Auth): void {
    if (this.opts.mode === 'coturn' && attribute(msg, ATTR_REQUESTED_TRANSPORT)) {
      // coturn 4.6.1 does not comprehend REQUESTED-TRANSPORT in REFRESH (§3.8 row 5).
      this.reply(
        from,
        new StunBuilder(METHOD_REFRESH, CLASS_ERROR, msg.transactionId)
          .addErrorCode(ERROR_UNKNOWN_ATTRIBUTE, 'Unknown Attribute')
          .add(
            ATTR_UNKNOWN_ATTRIBUTES,
            Uint8Array.of(ATTR_REQUESTED_TRANSPORT >>> 8, ATTR_REQUESTED_TRANSPORT),
          )
          .addText(ATTR_SOFTWARE, SOFTWARE.coturn)
          .integrity(auth.key)
          .build(),
      );
      return;
    }
    const a = this.live(from);
    if (!a) {
      this.error(from, msg, ERROR_ALLOCATION_MISMATCH, 'Allocation Mismatch', auth.key);
      return;
    }
    const lifetimeS = this.lifetimeOf(msg);
    if (lifetimeS === 0) this.delete(key(from), a);
    else a.expiresAt = this.opts.now() + lifetimeS * 1000;
    this.stats.refreshes++;
    this.reply(
      from,
      new StunBuilder(METHOD_REFRESH, CLASS_SUCCESS, msg.transactionId)
        .addU32(ATTR_LIFETIME, lifetimeS)
        .addText(ATTR_SOFTWARE, SOFTWARE[this.opts.mode])
        .integrity(auth.key)
        .build(),
    );
  }

  private onChannelBind(from: TransportAddress, msg: StunMessage, auth: Auth): void {
    const a = this.live(from);
    if (!a) {
      this.error(from, msg, ERROR_ALLOCATION_MISMATCH, 'Allocation Mismatch', auth.key);
      return;
    }
    const numberRaw = attribute(msg, ATTR_CHANNEL_NUMBER);
    const peerRaw = attribute(msg, ATTR_XOR_PEER_ADDRESS);
    const peer = peerRaw ? decodeXorAddress(peerRaw, msg.transactionId) : undefined;
    const number = numberRaw && numberRaw.length === 4 ? (numberRaw[0]! << 8) | numberRaw[1]! : -1;
    if (!peer?.ok || number < CHANNEL_MIN || number > CHANNEL_MAX) {
      this.error(from, msg, ERROR_BAD_REQUEST, 'Bad Request', auth.key);
      return;
    }
    if (peer.value.ip.length !== this.address.ip.length) {
      this.error(from, msg, ERROR_PEER_ADDRESS_FAMILY_MISMATCH, 'Peer Address Family Mismatch', auth.key);
      return;
    }
    const now = this.opts.now();
    // Forget channels past their reservation, then: the number and the peer must go together.
    for (const ch of [...a.channelsByNumber.values()]) {
      if (ch.expiresAt + FAKE_TURN_CHANNEL_RESERVED_MS <= now) {
        a.channelsByNumber.delete(ch.number);
        a.channelsByPeer.delete(key(ch.peer));
      }
    }
    const byNumber = a.channelsByNumber.get(number);
    const byPeer = a.channelsByPeer.get(key(peer.value));
    if ((byNumber && byNumber !== byPeer) || (byPeer && byPeer !== byNumber)) {
      this.error(from, msg, ERROR_BAD_REQUEST, 'Bad Request', auth.key);
      return;
    }
    const ch = byNumber ?? { number, peer: copy(peer.value), expiresAt: 0 };
    ch.expiresAt = now + FAKE_TURN_CHANNEL_LIFETIME_MS;
    a.channelsByNumber.set(number, ch);
    a.channelsByPeer.set(key(ch.peer), ch);
    a.permissions.set(formatIp(ch.peer.ip), now + FAKE_TURN_PERMISSION_LIFETIME_MS);
    this.stats.channelBinds++;
    this.reply(
      from,
      new StunBuilder(METHOD_CHANNEL_BIND, CLASS_SUCCESS, msg.transactionId)
        .addText(ATTR_SOFTWARE, SOFTWARE[this.opts.mode])
        .integrity(auth.key)
        .build(),
    );
  }

  /** The Firezone relay accepts and ignores it; coturn installs the permissions. */
  private onCreatePermission(from: TransportAddress, msg: StunMessage, auth: Auth): void {
    const a = this.live(from);
    if (!a) {
      this.error(from, msg, ERROR_ALLOCATION_MISMATCH, 'Allocation Mismatch', auth.key);
      return;
    }
    if (this.opts.mode === 'coturn') {
      const peers = msg.attributes.filter((x) => x.type === ATTR_XOR_PEER_ADDRESS);
      const decoded = peers.map((p) => decodeXorAddress(p.value, msg.transactionId));
      if (decoded.length === 0 || decoded.some((d) => !d.ok)) {
        this.error(from, msg, ERROR_BAD_REQUEST, 'Bad Request', auth.key);
        return;
      }
      for (const d of decoded)
        if (d.ok) a.permissions.set(formatIp(d.value.ip), this.opts.now() + FAKE_TURN_PERMISSION_LIFETIME_MS);
    }
    this.reply(
      from,
      new StunBuilder(METHOD_CREATE_PERMISSION, CLASS_SUCCESS, msg.transactionId)
        .addText(ATTR_SOFTWARE, SOFTWARE[this.opts.mode])
        .integrity(auth.key)
        .build(),
    );
  }

  // --- Helpers -----------------------------------------------------------------------------

  /** LIFETIME as requested (capped), the default when absent. */
  private lifetimeOf(msg: StunMessage): number {
    const raw = attribute(msg, ATTR_LIFETIME);
    const v = raw ? decodeU32(raw) : undefined;
    return v?.ok ? Math.min(v.value, FAKE_TURN_MAX_LIFETIME_S) : this.lifetimeS;
  }

  private challenge(
    from: TransportAddress,
    msg: StunMessage,
    code: number,
    reason: string,
    sign: Uint8Array | undefined,
  ): void {
    const nonce = hex(this.opts.random(16));
    this.nonces.add(nonce);
    const b = new StunBuilder(msg.method, CLASS_ERROR, msg.transactionId)
      .addErrorCode(code, reason)
      .addText(ATTR_REALM, this.realm)
      .addText(ATTR_NONCE, nonce)
      .addText(ATTR_SOFTWARE, SOFTWARE[this.opts.mode]);
    if (sign) b.integrity(sign);
    this.reply(from, b.build());
  }

  private error(
    from: TransportAddress,
    msg: StunMessage,
    code: number,
    reason: string,
    sign: Uint8Array | undefined,
  ): void {
    const b = new StunBuilder(msg.method, CLASS_ERROR, msg.transactionId)
      .addErrorCode(code, reason)
      .addText(ATTR_SOFTWARE, SOFTWARE[this.opts.mode]);
    if (sign) b.integrity(sign);
    this.reply(from, b.build());
  }

  private reply(to: TransportAddress, bytes: Uint8Array): void {
    this.socket.send(bytes, 0, bytes.length, to.ip, to.port);
  }

  /** The unexpired allocation of a client's 5-tuple. */
  private live(client: TransportAddress): Allocation | undefined {
    const k = key(client);
    const a = this.allocations.get(k);
    if (!a || this.expire(k, a)) return undefined;
    return a;
  }

  /** Deletes `a` if its lifetime has passed; returns whether it did. */
  private expire(k: string, a: Allocation): boolean {
    if (a.expiresAt > this.opts.now()) return false;
    this.delete(k, a);
    return true;
  }

  private delete(k: string, a: Allocation): void {
    this.allocations.delete(k);
    void a.relay.close();
  }

  private openRelaySocket(): MemoryUdpSocket {
    for (let tries = 0; tries < 65_536 - FAKE_TURN_FIRST_RELAY_PORT; tries++) {
      const port = this.nextRelayPort;
      this.nextRelayPort = port >= 65_535 ? FAKE_TURN_FIRST_RELAY_PORT : port + 1;
      try {
        return this.net.open({ family: this.family, address: this.opts.address, port });
      } catch {
        // In use (another server on the same address): try the next port.
      }
    }
    throw new Error('FakeTurnServer: no free relay port');
  }
}

function key(a: TransportAddress): string {
  return `${formatIp(a.ip)}#${a.port}`;
}

function copy(a: TransportAddress): TransportAddress {
  return { ip: Uint8Array.from(a.ip), port: a.port };
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** MAPPED-ADDRESS / RESPONSE-ORIGIN (plain, RFC 8489 §14.1). */
function plainAddress(a: TransportAddress): Uint8Array {
  const out = new Uint8Array(4 + a.ip.length);
  out[1] = a.ip.length === 4 ? FAMILY_IPV4 : FAMILY_IPV6;
  out[2] = a.port >>> 8;
  out[3] = a.port & 0xff;
  out.set(a.ip, 4);
  return out;
}
