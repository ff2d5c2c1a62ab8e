import { addressKey, sameAddress } from '../ice/candidate.js';
import { DrainQueue } from '../queue.js';
import {
  ATTR_ADDITIONAL_ADDRESS_FAMILY,
  ATTR_CHANNEL_NUMBER,
  ATTR_ERROR_CODE,
  ATTR_LIFETIME,
  ATTR_MESSAGE_INTEGRITY,
  ATTR_NONCE,
  ATTR_REALM,
  ATTR_REQUESTED_TRANSPORT,
  ATTR_SOFTWARE,
  ATTR_USERNAME,
  ATTR_XOR_MAPPED_ADDRESS,
  ATTR_XOR_PEER_ADDRESS,
  ATTR_XOR_RELAYED_ADDRESS,
  CHANNEL_MAX,
  CHANNEL_MIN,
  CLASS_ERROR,
  CLASS_REQUEST,
  CLASS_SUCCESS,
  ERROR_ADDRESS_FAMILY_NOT_SUPPORTED,
  ERROR_ALLOCATION_MISMATCH,
  ERROR_STALE_NONCE,
  ERROR_UNAUTHORIZED,
  FAMILY_IPV6,
  METHOD_ALLOCATE,
  METHOD_BINDING,
  METHOD_CHANNEL_BIND,
  METHOD_REFRESH,
  TRANSACTION_ID_BYTES,
  TRANSPORT_UDP,
} from '../stun/constants.js';
import {
  attribute,
  decodeErrorCode,
  decodeU32,
  decodeXorAddress,
  longTermKey,
  StunBuilder,
  type StunMessage,
  type TransportAddress,
  unknownRequired,
  utf8,
  verifyIntegrity,
} from '../stun/message.js';

/**
 * The client side of one TURN relay (RFC 8656, `spec/snownet.md` §3), sans-IO: probing with
 * BINDING, ALLOCATE with long-term credentials, REFRESH, CHANNEL-BIND and the channel table.
 *
 * It speaks to both the Firezone relay (which signs every response, challenges included) and a
 * standard server such as coturn (unsigned 401/438 challenges, no REQUESTED-TRANSPORT in
 * REFRESH, 440 on ADDITIONAL-ADDRESS-FAMILY, all-zero relayed addresses): the compatibility
 * rules of §3.8 are always on, since each of them is harmless towards the Firezone relay.
 *
 * Lifecycle decisions (when to probe, allocate, refresh, give up, back off) are the
 * relay-allocation statechart's; this class executes one request at a time per kind, retransmits
 * it, authenticates, and reports what happened through `pollEvent`.
 */

export interface TurnRelayConfig {
  readonly id: string;
  /** One address per family the relay has (IPv4 and/or IPv6), port 3478. */
  readonly servers: readonly TransportAddress[];
  readonly username: string;
  readonly password: string;
}

export interface TurnClientOptions {
  readonly relay: TurnRelayConfig;
  readonly random: (n: number) => Uint8Array;
  /** Our SOFTWARE attribute. */
  readonly software: string;
  /** The realm is never sent by the portal; Firezone always uses `firezone` (§3.1). */
  readonly realm?: string;
}

/** The steps the relay-allocation statechart asks of a relay's TURN client. */
export type TurnCommand = 'probe' | 'keepalive' | 'allocate' | 'refresh' | 'poke' | 'reset';

export type TurnRequestKind = 'binding' | 'allocate' | 'refresh' | 'channel-bind';

export type TurnEvent =
  /** A BINDING answer: the server and our address as it saw it. */
  | { readonly type: 'bound'; readonly server: TransportAddress; readonly mapped: TransportAddress }
  | {
      readonly type: 'allocated';
      readonly relayed: readonly TransportAddress[];
      readonly mapped: TransportAddress | undefined;
      readonly lifetimeS: number;
    }
  | { readonly type: 'refreshed'; readonly lifetimeS: number }
  /** The server deleted the allocation (a REFRESH with LIFETIME 0 succeeded). */
  | { readonly type: 'deleted' }
  /** 437: the server's allocation state differs from ours; the client repairs it itself. */
  | { readonly type: 'allocation-mismatch'; readonly request: TurnRequestKind }
  | { readonly type: 'channel-bound'; readonly peer: TransportAddress; readonly channel: number }
  | {
      readonly type: 'failed';
      readonly request: TurnRequestKind;
      readonly reason: 'timeout' | 'auth' | 'error';
      readonly code?: number;
      readonly message: string;
    };

export interface TurnTransmit {
  readonly to: TransportAddress;
  readonly bytes: Uint8Array;
}

/** Counters of responses not taken (exposed through the router's drop counters). */
export interface TurnDrops {
  unmatched: number;
  badIntegrity: number;
  wrongRealm: number;
}

/** Retransmission (§3.2 step 9): first retry after 1 s, × 1.5 each time, give up after 8 s. */
export const TURN_FIRST_RTO_MS = 1_000;
export const TURN_RTO_FACTOR = 1.5;
export const TURN_GIVE_UP_MS = 8_000;
/** Channel lifetime on the server (RFC 8656 §12). */
export const CHANNEL_LIFETIME_MS = 600_000;
/**
 * We re-bind a channel this long after its last bind if it carried traffic either way: before
 * coturn's 300 s permission lifetime runs out (§3.8 rule 6), well before the channel's 600 s.
 */
export const CHANNEL_REFRESH_AFTER_MS = 240_000;
/** A lapsed channel number is reusable this long after its last bind (10 min + 5 min). */
export const CHANNEL_REUSE_AFTER_MS = 900_000;
/** Peers waiting for a channel until the allocation exists (a ring, §3.2 step 5). */
export const MAX_BUFFERED_BINDS = 100;
/** Challenges answered per request before it is abandoned (a server that keeps challenging). */
const MAX_CHALLENGES = 3;
/**
 * Comprehension-required attributes (< 0x8000) a response may carry: any other one gets the
 * response discarded (RFC 8489 §7.3.3/§7.3.4). All defined STUN/TURN ones, plus the RFC 3489
 * legacy addresses (0x0002–0x0005) a BINDING answer might still include.
 */
const KNOWN_RESPONSE_ATTRIBUTES: ReadonlySet<number> = new Set([
  0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0008, 0x0009, 0x000a, 0x000c, 0x000d, 0x0012, 0x0013,
  0x0014, 0x0015, 0x0016, 0x0017, 0x0018, 0x0019, 0x001a, 0x001c, 0x001d, 0x001e, 0x0020, 0x0022, 0x0024,
  0x0025,
]);

interface Pending {
  readonly kind: TurnRequestKind;
  readonly to: TransportAddress;
  /** Builds the request for a transaction id (authenticated requests get a new one per send). */
  readonly build: (tx: Uint8Array) => Uint8Array;
  readonly authenticated: boolean;
  /** Whether the current attempt carried a NONCE. */
  hadNonce: boolean;
  challenges: number;
  tx: Uint8Array;
  bytes: Uint8Array;
  readonly startedAt: number;
  nextAt: number;
  interval: number;
  /** Give up after the first timeout (a liveness poke). */
  readonly oneShot: boolean;
  readonly peer?: TransportAddress;
  readonly channel?: number;
  readonly withAdditionalFamily?: boolean;
  readonly lifetimeS?: number;
  /** A REFRESH 0 repairing a 437 to ALLOCATE: allocate anew once it succeeded. */
  reallocate?: boolean;
}

interface Channel {
  readonly number: number;
  readonly peer: TransportAddress;
  /** When the last bind was sent (optimistic) and when it was confirmed. */
  boundAt: number;
  confirmed: boolean;
  inFlight: boolean;
  /** Traffic since the last bind, either way. */
  used: boolean;
  lapsed: boolean;
}

export class TurnClient {
  readonly relay: TurnRelayConfig;
  private readonly random: (n: number) => Uint8Array;
  private readonly software: string;
  private readonly realm: string;
  private readonly key: Uint8Array;
  private nonce: Uint8Array | undefined;
  private readonly pending = new Map<string, Pending>();
  private readonly transmits = new DrainQueue<TurnTransmit>();
  private readonly events = new DrainQueue<TurnEvent>();
  private active: TransportAddress | undefined;
  private relayedAddrs: TransportAddress[] = [];
  private lifetimeEndsAt = Number.POSITIVE_INFINITY;
  /** Sent ADDITIONAL-ADDRESS-FAMILY until a server refused it with 440 (§3.8 rule 4). */
  private additionalFamily = true;
  private readonly channels = new Map<string, Channel>();
  private readonly channelsByNumber = new Map<number, Channel>();
  private nextChannel = CHANNEL_MIN;
  private readonly bufferedBinds: TransportAddress[] = [];
  readonly drops: TurnDrops = { unmatched: 0, badIntegrity: 0, wrongRealm: 0 };

  constructor(opts: TurnClientOptions) {
    this.relay = opts.relay;
    this.random = opts.random;
    this.software = opts.software;
    this.realm = opts.realm ?? 'firezone';
    this.key = longTermKey(opts.relay.username, this.realm, opts.relay.password);
  }

  /** The server address everything but probes goes to (the first to answer a BINDING). */
  get activeServer(): TransportAddress | undefined {
    return this.active;
  }

  /** Our relayed addresses (empty without an allocation). */
  get relayed(): readonly TransportAddress[] {
    return this.relayedAddrs;
  }

  get allocated(): boolean {
    return this.relayedAddrs.length > 0;
  }

  // --- Commands ----------------------------------------------------------------------------

  /** Sends an unauthenticated BINDING to every server address (§3.2 step 1). */
  probe(now: number): void {
    for (const server of this.relay.servers) {
      if (this.inFlight('binding', server)) continue;
      this.start({ kind: 'binding', to: server, authenticated: false, build: (tx) => this.binding(tx) }, now);
    }
  }

  /** A BINDING to the active server: NAT keep-alive and liveness (§3.2 step 6). */
  keepalive(now: number): void {
    const to = this.active;
    if (!to || this.inFlight('binding', to)) return;
    this.start({ kind: 'binding', to, authenticated: false, build: (tx) => this.binding(tx) }, now);
  }

  /** ALLOCATE on the active server (a REFRESH when we already have one). */
  allocate(now: number): void {
    const to = this.active;
    if (!to) return;
    if (this.allocated) {
      this.refresh(now);
      return;
    }
    if (this.inFlight('allocate')) return;
    const aaf = this.additionalFamily;
    this.start(
      {
        kind: 'allocate',
        to,
        authenticated: true,
        withAdditionalFamily: aaf,
        build: (tx) => {
          const b = new StunBuilder(METHOD_ALLOCATE, CLASS_REQUEST, tx).add(
            ATTR_REQUESTED_TRANSPORT,
            Uint8Array.of(TRANSPORT_UDP, 0, 0, 0),
          );
          if (aaf) b.add(ATTR_ADDITIONAL_ADDRESS_FAMILY, Uint8Array.of(FAMILY_IPV6, 0, 0, 0));
          return this.authenticate(b.addText(ATTR_SOFTWARE, this.software));
        },
      },
      now,
    );
  }

  /**
   * REFRESH the allocation (`lifetimeS` 0 deletes it). Without REQUESTED-TRANSPORT and
   * ADDITIONAL-ADDRESS-FAMILY: the Firezone relay ignores them, coturn refuses the first (§3.8).
   */
  refresh(now: number, lifetimeS?: number, oneShot = false): void {
    const to = this.active;
    if (!to || this.inFlight('refresh')) return;
    this.start(
      {
        kind: 'refresh',
        to,
        authenticated: true,
        oneShot,
        ...(lifetimeS !== undefined ? { lifetimeS } : {}),
        build: (tx) => {
          const b = new StunBuilder(METHOD_REFRESH, CLASS_REQUEST, tx);
          if (lifetimeS !== undefined) b.addU32(ATTR_LIFETIME, lifetimeS);
          return this.authenticate(b.addText(ATTR_SOFTWARE, this.software));
        },
      },
      now,
    );
  }

  /**
   * The channel to `peer`, binding one if there is none (§3.5): the number is returned at once
   * and may be used optimistically while the bind is in flight. Undefined when the allocation
   * cannot reach the peer's family, or there is no allocation yet (the peer is then bound as
   * soon as there is one).
   */
  bindChannel(peer: TransportAddress, now: number): number | undefined {
    const existing = this.channels.get(addressKey(peer));
    if (existing && !existing.lapsed) return existing.number;
    if (!this.allocated) {
      if (!this.bufferedBinds.some((p) => sameAddress(p, peer))) {
        if (this.bufferedBinds.length >= MAX_BUFFERED_BINDS) this.bufferedBinds.shift();
        this.bufferedBinds.push({ ip: Uint8Array.from(peer.ip), port: peer.port });
      }
      return undefined;
    }
    if (!this.relayedAddrs.some((a) => a.ip.length === peer.ip.length)) return undefined;
    // A lapsed channel's number and peer stay reserved to each other on the server for 5 more
    // minutes (RFC 8656 §12): binding the peer to another number then gets 400, binding it to
    // the same number is always allowed.
    const number = existing ? existing.number : this.freeChannelNumber(now);
    if (number === undefined) return undefined;
    const ch: Channel = {
      number,
      peer: { ip: Uint8Array.from(peer.ip), port: peer.port },
      boundAt: now,
      confirmed: false,
      inFlight: false,
      used: false,
      lapsed: false,
    };
    if (existing) this.channelsByNumber.delete(existing.number);
    this.channels.set(addressKey(peer), ch);
    this.channelsByNumber.set(number, ch);
    this.sendBind(ch, now);
    return number;
  }

  /** The channel to send to `peer` on, if one is bound (or being bound); records the traffic. */
  channelFor(peer: TransportAddress, _now: number): number | undefined {
    const ch = this.channels.get(addressKey(peer));
    if (!ch || ch.lapsed) return undefined;
    ch.used = true;
    return ch.number;
  }

  /** The peer behind an inbound channel number: only confirmed channels count (§3.5). */
  peerOfChannel(channel: number, _now: number): TransportAddress | undefined {
    const ch = this.channelsByNumber.get(channel);
    if (!ch?.confirmed || ch.lapsed) return undefined;
    ch.used = true;
    return ch.peer;
  }

  /** Forgets everything: requests, the allocation, channels, the active server, the nonce. */
  reset(): void {
    this.pending.clear();
    this.active = undefined;
    this.relayedAddrs = [];
    this.lifetimeEndsAt = Number.POSITIVE_INFINITY;
    this.channels.clear();
    this.channelsByNumber.clear();
    this.bufferedBinds.length = 0;
    this.nonce = undefined;
  }

  // --- Input -------------------------------------------------------------------------------

  /**
   * A STUN message from one of the relay's servers. Returns false when it is not the answer to
   * a request of ours (unknown transaction, wrong server, failed integrity, foreign realm, an
   * unknown comprehension-required attribute); the request then stays in flight.
   */
  handleStun(msg: StunMessage, from: TransportAddress, now: number): boolean {
    if (msg.cls !== CLASS_SUCCESS && msg.cls !== CLASS_ERROR) return this.unmatched();
    const txKey = hexOf(msg.transactionId);
    const p = this.pending.get(txKey);
    if (!p || !sameAddress(p.to, from)) return this.unmatched();
    if (unknownRequired(msg, KNOWN_RESPONSE_ATTRIBUTES).length > 0) return this.unmatched();
    if (p.kind === 'binding') {
      this.pending.delete(txKey);
      return this.onBinding(p, msg);
    }
    if (msg.cls === CLASS_ERROR) return this.onError(p, txKey, msg, now);
    // Success responses to authenticated requests must prove they know our key (§3.2 step 4).
    if (!verifyIntegrity(msg, this.key)) {
      this.drops.badIntegrity++;
      return false;
    }
    this.pending.delete(txKey);
    switch (p.kind) {
      case 'allocate':
        this.onAllocated(msg, now);
        break;
      case 'refresh':
        this.onRefreshed(p, msg, now);
        break;
      case 'channel-bind':
        this.onChannelBound(p, now);
        break;
    }
    return true;
  }

  // --- Time --------------------------------------------------------------------------------

  handleTimeout(now: number): void {
    for (const [key, p] of [...this.pending]) {
      if (p.nextAt > now) continue;
      if (p.oneShot || now - p.startedAt >= TURN_GIVE_UP_MS) {
        this.pending.delete(key);
        this.onGaveUp(p);
        continue;
      }
      // Authenticated retries get a fresh transaction id (and the current nonce); BINDING
      // retries reuse theirs (§3.2 step 9).
      if (p.authenticated) {
        this.pending.delete(key);
        p.tx = this.transactionId();
        p.bytes = p.build(p.tx);
        p.hadNonce = this.nonce !== undefined;
        this.pending.set(hexOf(p.tx), p);
      }
      this.transmits.push({ to: p.to, bytes: p.bytes });
      // Sends at 0, 1, 2.5 and 4.75 s; the next would be at 8.125 s, so give up at 8 s instead.
      p.nextAt = Math.min(now + p.interval, p.startedAt + TURN_GIVE_UP_MS);
      p.interval *= TURN_RTO_FACTOR;
    }
    if (now >= this.lifetimeEndsAt && this.allocated) {
      // The lifetime passed without a successful refresh: the allocation is gone (§3.2 step 8).
      this.invalidate();
      this.events.push({
        type: 'failed',
        request: 'refresh',
        reason: 'timeout',
        message: 'the allocation expired',
      });
    }
    for (const ch of this.channels.values()) {
      if (ch.lapsed) continue;
      const age = now - ch.boundAt;
      if (age >= CHANNEL_LIFETIME_MS) ch.lapsed = true;
      else if (ch.confirmed && !ch.inFlight && ch.used && age >= CHANNEL_REFRESH_AFTER_MS)
        this.sendBind(ch, now);
    }
    for (const [key, ch] of this.channels) {
      if (ch.lapsed && now - ch.boundAt >= CHANNEL_REUSE_AFTER_MS) {
        this.channels.delete(key);
        if (this.channelsByNumber.get(ch.number) === ch) this.channelsByNumber.delete(ch.number);
      }
    }
  }

  pollTimeout(): number {
    let at = Number.POSITIVE_INFINITY;
    for (const p of this.pending.values()) if (p.nextAt < at) at = p.nextAt;
    if (this.allocated && this.lifetimeEndsAt < at) at = this.lifetimeEndsAt;
    for (const ch of this.channels.values()) {
      const due = ch.lapsed
        ? ch.boundAt + CHANNEL_REUSE_AFTER_MS
        : ch.confirmed && !ch.inFlight && ch.used
          ? ch.boundAt + CHANNEL_REFRESH_AFTER_MS
          : ch.boundAt + CHANNEL_LIFETIME_MS;
      if (due < at) at = due;
    }
    return at;
  }

  pollTransmit(): TurnTransmit | undefined {
    return this.transmits.poll();
  }

  pollEvent(): TurnEvent | undefined {
    return this.events.poll();
  }

  // --- Internals ---------------------------------------------------------------------------

  private unmatched(): false {
    this.drops.unmatched++;
    return false;
  }

  private inFlight(kind: TurnRequestKind, to?: TransportAddress): boolean {
    for (const p of this.pending.values()) if (p.kind === kind && (!to || sameAddress(p.to, to))) return true;
    return false;
  }

  private start(
    req: Pick<Pending, 'kind' | 'to' | 'build' | 'authenticated'> &
      Partial<Pick<Pending, 'oneShot' | 'peer' | 'channel' | 'withAdditionalFamily' | 'lifetimeS'>>,
    now: number,
  ): void {
    const tx = this.transactionId();
    const p: Pending = {
      ...req,
      oneShot: req.oneShot ?? false,
      hadNonce: req.authenticated && this.nonce !== undefined,
      challenges: 0,
      tx,
      bytes: req.build(tx),
      startedAt: now,
      nextAt: now + TURN_FIRST_RTO_MS,
      interval: TURN_FIRST_RTO_MS * TURN_RTO_FACTOR,
    };
    this.pending.set(hexOf(tx), p);
    this.transmits.push({ to: p.to, bytes: p.bytes });
  }

  private transactionId(): Uint8Array {
    return Uint8Array.from(this.random(TRANSACTION_ID_BYTES).subarray(0, TRANSACTION_ID_BYTES));
  }

  private binding(tx: Uint8Array): Uint8Array {
    return new StunBuilder(METHOD_BINDING, CLASS_REQUEST, tx).addText(ATTR_SOFTWARE, this.software).build();
  }

  /**
   * USERNAME, REALM, NONCE and MESSAGE-INTEGRITY once a nonce is known; before that the request
   * goes out unauthenticated to fetch the challenge, which is what a standard server expects
   * (coturn answers an authenticated request without NONCE with 400, §3.8).
   */
  private authenticate(b: StunBuilder): Uint8Array {
    if (this.nonce === undefined) return b.build();
    return b
      .addText(ATTR_USERNAME, this.relay.username)
      .addText(ATTR_REALM, this.realm)
      .add(ATTR_NONCE, this.nonce)
      .integrity(this.key)
      .build();
  }

  private onBinding(p: Pending, msg: StunMessage): boolean {
    if (msg.cls !== CLASS_SUCCESS) {
      if (!this.inFlight('binding') && !this.active) {
        this.events.push({
          type: 'failed',
          request: 'binding',
          reason: 'error',
          message: 'the relay refused BINDING',
        });
      }
      return true;
    }
    const x = attribute(msg, ATTR_XOR_MAPPED_ADDRESS);
    const mapped = x ? decodeXorAddress(x, msg.transactionId) : undefined;
    if (!mapped?.ok) return true;
    if (!this.active) this.active = p.to;
    this.events.push({ type: 'bound', server: p.to, mapped: mapped.value });
    return true;
  }

  private onError(p: Pending, txKey: string, msg: StunMessage, now: number): boolean {
    const e = attribute(msg, ATTR_ERROR_CODE);
    const decoded = e ? decodeErrorCode(e) : undefined;
    if (!decoded?.ok) return this.unmatched();
    const { code, reason } = decoded.value;
    // A signed error must verify (the Firezone relay signs all of them). An unsigned one is
    // taken as a standard server's 401/438 challenge or refusal (§3.8 rule 1), or as the answer
    // to a request we sent without credentials; any other error to a signed request must be
    // signed too (§3.2 step 4), or anyone who saw the transaction id could forge a 437 or 420.
    const signed = attribute(msg, ATTR_MESSAGE_INTEGRITY) !== undefined;
    if (
      signed
        ? !verifyIntegrity(msg, this.key)
        : p.hadNonce && code !== ERROR_UNAUTHORIZED && code !== ERROR_STALE_NONCE
    ) {
      this.drops.badIntegrity++;
      return false;
    }
    if (code === ERROR_UNAUTHORIZED || code === ERROR_STALE_NONCE) {
      const realm = attribute(msg, ATTR_REALM);
      if (realm && utf8(realm) !== this.realm) {
        this.drops.wrongRealm++;
        return false;
      }
      const nonce = attribute(msg, ATTR_NONCE);
      this.pending.delete(txKey);
      if ((code === ERROR_UNAUTHORIZED && p.hadNonce) || !nonce || p.challenges >= MAX_CHALLENGES) {
        this.onFailed(p, 'auth', code, `the relay refused our credentials: ${code} ${reason}`);
        return true;
      }
      this.nonce = Uint8Array.from(nonce);
      p.challenges++;
      p.tx = this.transactionId();
      p.bytes = p.build(p.tx);
      p.hadNonce = true;
      p.nextAt = now + TURN_FIRST_RTO_MS;
      this.pending.set(hexOf(p.tx), p);
      this.transmits.push({ to: p.to, bytes: p.bytes });
      return true;
    }
    this.pending.delete(txKey);
    if (code === ERROR_ALLOCATION_MISMATCH) {
      this.events.push({ type: 'allocation-mismatch', request: p.kind });
      const peer = p.peer;
      this.invalidate();
      if (p.kind === 'allocate') {
        // The server still has an allocation for our 5-tuple: delete it, then allocate anew. The
        // mark is on that request, so that a later deliberate delete is not followed by ALLOCATE.
        this.refresh(now, 0);
        for (const q of this.pending.values())
          if (q.kind === 'refresh' && q.lifetimeS === 0) q.reallocate = true;
      } else {
        if (peer) this.bufferedBinds.push(peer);
        this.allocate(now);
      }
      return true;
    }
    if (code === ERROR_ADDRESS_FAMILY_NOT_SUPPORTED && p.kind === 'allocate' && p.withAdditionalFamily) {
      this.additionalFamily = false;
      this.allocate(now);
      return true;
    }
    if (p.kind === 'channel-bind' && p.peer) {
      const ch = this.channels.get(addressKey(p.peer));
      if (ch && ch.number === p.channel) this.forgetChannel(ch);
    }
    if (p.kind === 'allocate') this.bufferedBinds.length = 0;
    this.onFailed(p, 'error', code, `${code} ${reason}`);
    return true;
  }

  private onAllocated(msg: StunMessage, now: number): void {
    const relayed: TransportAddress[] = [];
    for (const a of msg.attributes) {
      if (a.type !== ATTR_XOR_RELAYED_ADDRESS) continue;
      const r = decodeXorAddress(a.value, msg.transactionId);
      // coturn reports a family it could not allocate as an all-zero address (§3.8 rule 5).
      if (r.ok && r.value.port !== 0 && r.value.ip.some((b) => b !== 0)) relayed.push(r.value);
    }
    const lifetimeRaw = attribute(msg, ATTR_LIFETIME);
    const lifetime = lifetimeRaw ? decodeU32(lifetimeRaw) : undefined;
    if (relayed.length === 0 || !lifetime?.ok) {
      this.events.push({
        type: 'failed',
        request: 'allocate',
        reason: 'error',
        message: 'ALLOCATE succeeded without a usable relayed address or lifetime',
      });
      return;
    }
    const x = attribute(msg, ATTR_XOR_MAPPED_ADDRESS);
    const mapped = x ? decodeXorAddress(x, msg.transactionId) : undefined;
    this.relayedAddrs = relayed;
    this.lifetimeEndsAt = now + lifetime.value * 1000;
    this.events.push({
      type: 'allocated',
      relayed,
      mapped: mapped?.ok ? mapped.value : undefined,
      lifetimeS: lifetime.value,
    });
    for (const peer of this.bufferedBinds.splice(0)) this.bindChannel(peer, now);
  }

  private onRefreshed(p: Pending, msg: StunMessage, now: number): void {
    const raw = attribute(msg, ATTR_LIFETIME);
    const decoded = raw ? decodeU32(raw) : undefined;
    const lifetime = decoded?.ok ? decoded.value : (p.lifetimeS ?? 600);
    if (lifetime === 0 || p.lifetimeS === 0) {
      this.invalidate();
      this.events.push({ type: 'deleted' });
      if (p.reallocate) this.allocate(now);
      return;
    }
    this.lifetimeEndsAt = now + lifetime * 1000;
    this.events.push({ type: 'refreshed', lifetimeS: lifetime });
  }

  private sendBind(ch: Channel, now: number): void {
    const to = this.active;
    if (!to) return;
    ch.inFlight = true;
    ch.boundAt = now;
    ch.used = false;
    const peer = ch.peer;
    this.start(
      {
        kind: 'channel-bind',
        to,
        authenticated: true,
        peer,
        channel: ch.number,
        build: (tx) =>
          this.authenticate(
            new StunBuilder(METHOD_CHANNEL_BIND, CLASS_REQUEST, tx)
              .addXorAddress(ATTR_XOR_PEER_ADDRESS, peer)
              .add(ATTR_CHANNEL_NUMBER, Uint8Array.of(ch.number >>> 8, ch.number & 0xff, 0, 0))
              .addText(ATTR_SOFTWARE, this.software),
          ),
      },
      now,
    );
  }

  private onChannelBound(p: Pending, _now: number): void {
    if (!p.peer) return;
    const ch = this.channels.get(addressKey(p.peer));
    if (!ch || ch.number !== p.channel) return;
    ch.inFlight = false;
    const first = !ch.confirmed;
    ch.confirmed = true;
    if (first) this.events.push({ type: 'channel-bound', peer: ch.peer, channel: ch.number });
  }

  private freeChannelNumber(now: number): number | undefined {
    const span = CHANNEL_MAX - CHANNEL_MIN + 1;
    for (let i = 0; i < span; i++) {
      const n = this.nextChannel;
      this.nextChannel = n === CHANNEL_MAX ? CHANNEL_MIN : n + 1;
      const taken = this.channelsByNumber.get(n);
      if (!taken) return n;
      if (taken.lapsed && now - taken.boundAt >= CHANNEL_REUSE_AFTER_MS) {
        this.forgetChannel(taken);
        return n;
      }
    }
    return undefined;
  }

  private forgetChannel(ch: Channel): void {
    const key = addressKey(ch.peer);
    if (this.channels.get(key) === ch) this.channels.delete(key);
    if (this.channelsByNumber.get(ch.number) === ch) this.channelsByNumber.delete(ch.number);
  }

  /** The allocation is gone (locally): relayed addresses, its timers and its channels. */
  private invalidate(): void {
    this.relayedAddrs = [];
    this.lifetimeEndsAt = Number.POSITIVE_INFINITY;
    this.channels.clear();
    this.channelsByNumber.clear();
    for (const [key, p] of this.pending) if (p.kind === 'channel-bind') this.pending.delete(key);
  }

  private onGaveUp(p: Pending): void {
    if (p.kind === 'binding') {
      // A probe failed only when every server stayed silent; a keep-alive when the active one did.
      if (this.active && !sameAddress(this.active, p.to)) return;
      if (!this.active && this.inFlight('binding')) return;
      if (this.active) {
        this.active = undefined;
        this.invalidate();
      }
    } else if (p.kind === 'channel-bind') {
      const ch = p.peer ? this.channels.get(addressKey(p.peer)) : undefined;
      if (ch && ch.number === p.channel) this.forgetChannel(ch);
    } else if (!p.oneShot) {
      // No answer to ALLOCATE/REFRESH: the server is gone for us (§3.2 step 10).
      this.active = undefined;
      this.invalidate();
    }
    this.events.push({
      type: 'failed',
      request: p.kind,
      reason: 'timeout',
      message: `no answer from ${addressKey(p.to)} within ${p.oneShot ? TURN_FIRST_RTO_MS : TURN_GIVE_UP_MS} ms`,
    });
  }

  private onFailed(p: Pending, reason: 'auth' | 'error', code: number, message: string): void {
    if (reason === 'auth') {
      this.nonce = undefined;
      this.invalidate();
    }
    this.events.push({ type: 'failed', request: p.kind, reason, code, message });
  }
}

function hexOf(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += (b[i]! < 16 ? '0' : '') + b[i]!.toString(16);
  return s;
}
