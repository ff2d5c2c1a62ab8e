import { DrainQueue } from '../queue.js';
import {
  COOKIE_RECEIVER,
  DATA_HEADER_BYTES,
  DATA_RECEIVER,
  HANDSHAKE_RATE_LIMIT,
  INIT_MAC1,
  KEY_BYTES,
  MSG_COOKIE_REPLY,
  MSG_HANDSHAKE_INITIATION,
  MSG_HANDSHAKE_RESPONSE,
  MSG_TRANSPORT_DATA,
  RESP_MAC1,
  RESP_RECEIVER,
} from './constants.js';
import { CookieIssuer, cookieKeyFor, mac1KeyFor, verifyMac1 } from './cookie.js';
import { clampPrivateKey, dh, publicKeyOf } from './crypto.js';
import { consumeInitiation, type LocalStatic } from './handshake.js';
import { readU32LE, wireguardMessageType } from './messages.js';
import { type PeerHost, type PeerOptions, type WgEvent, WgPeer } from './peer.js';

/** Why a datagram was dropped. Each is a counter in {@link WgDevice.drops}. */
export type WgDropReason =
  | 'wg.not-wireguard'
  | 'wg.bad-mac1'
  | 'wg.cookie-sent'
  | 'wg.unknown-index'
  | 'wg.unknown-peer'
  | 'wg.invalid-handshake'
  | 'wg.replayed-initiation'
  | 'wg.initiation-flood'
  | 'wg.unexpected-response'
  | 'wg.invalid-response'
  | 'wg.invalid-cookie'
  | 'wg.replay'
  | 'wg.auth-failed'
  | 'wg.session-expired';

export const WG_DROP_REASONS: readonly WgDropReason[] = [
  'wg.not-wireguard',
  'wg.bad-mac1',
  'wg.cookie-sent',
  'wg.unknown-index',
  'wg.unknown-peer',
  'wg.invalid-handshake',
  'wg.replayed-initiation',
  'wg.initiation-flood',
  'wg.unexpected-response',
  'wg.invalid-response',
  'wg.invalid-cookie',
  'wg.replay',
  'wg.auth-failed',
  'wg.session-expired',
];

/** What `decapsulate` did with a datagram. */
export const WG_DROPPED = 0;
/** A data packet: plaintext at {@link WgDevice.rxOffset}, {@link WgDevice.rxLength} bytes, from {@link WgDevice.rxPeer}. */
export const WG_DATA = 1;
export const WG_KEEPALIVE = 2;
/** A handshake or cookie message was consumed; check `pollTransmit`/`pollEvent`. */
export const WG_HANDSHAKE = 3;
export type WgDecapResult = typeof WG_DROPPED | typeof WG_DATA | typeof WG_KEEPALIVE | typeof WG_HANDSHAKE;

/** An outgoing datagram: to a peer (wherever its path goes), or straight back to a sender (cookie replies). */
export type WgTransmit<E> =
  | { readonly kind: 'peer'; readonly peer: WgPeer<E>; readonly bytes: Uint8Array }
  | { readonly kind: 'reply'; readonly to: E; readonly bytes: Uint8Array };

/** A remote endpoint as the device needs it: its IP (16 or 4 bytes) binds cookies. */
export interface WgEndpoint {
  readonly ip: Uint8Array;
}

export interface WgDeviceOptions {
  /** Our static X25519 private key (clamped on use). */
  readonly privateKey: Uint8Array;
  /** Monotonic time of creation (ms). */
  readonly now: number;
  /** Wall-clock minus monotonic time, in ms: TAI64N timestamps are `now + offset` (`spec/snownet.md` §1.5). */
  readonly wallClockOffsetMs: number;
  /** Randomness (ephemeral keys, indices, jitter, cookie secrets). Defaults to Web Crypto. */
  readonly random?: (n: number) => Uint8Array;
  /** Handshake messages per second before mac2 is demanded (default 100, shared by all peers). */
  readonly handshakeRateLimit?: number;
}

export function webRandom(n: number): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

/**
 * A WireGuard device: our static key and every peer we talk to (`spec/snownet.md` §1).
 *
 * Sans-IO. Inputs: `decapsulate(buf, off, len, from, now)` for each received datagram,
 * `encapsulate(peer, buf, off, len, now)` for each outgoing IP packet, `handleTimeout(now)`.
 * Outputs: `pollTransmit()` (handshake messages, keepalives, cookie replies, packets that waited
 * for a session), `pollEvent()` (sessions established, connections failed), `pollTimeout()`.
 * The caller loops: feed input, drain transmits and events, arm one timer at `pollTimeout()`.
 *
 * Data packets are decrypted and encrypted in place without allocating; per-packet outcomes are
 * return codes and fields (`rxPeer`, `rxOffset`, `rxLength`, `lastDrop`), not objects.
 * Demultiplexing follows the Firezone index scheme: the upper 24 bits of every index we hand out
 * name the peer, so one map lookup finds it. Handshake initiations from unknown keys never create
 * state.
 */
export class WgDevice<E extends WgEndpoint> {
  readonly local: LocalStatic;
  readonly drops: Record<WgDropReason, number>;
  /**
   * The peer the last successful `decapsulate` heard from (WG_DATA, WG_KEEPALIVE, and WG_HANDSHAKE
   * when a peer was identified), so the caller can update where that peer is (`WgPeer.endpoint`).
   */
  rxPeer: WgPeer<E> | undefined;
  rxOffset = 0;
  rxLength = 0;
  /** Why the last `decapsulate` returned WG_DROPPED. */
  lastDrop: WgDropReason = 'wg.not-wireguard';

  private readonly random: (n: number) => Uint8Array;
  private readonly wallOffset: number;
  private readonly cookies: CookieIssuer;
  private readonly mac1Key: Uint8Array;
  private readonly byId = new Map<number, WgPeer<E>>();
  private readonly byKey = new Map<string, WgPeer<E>>();
  private readonly transmits = new DrainQueue<WgTransmit<E>>();
  private readonly events = new DrainQueue<WgEvent<E>>();
  private readonly timers = new TimerHeap<WgPeer<E>>();
  private readonly host: PeerHost<E>;

  constructor(opts: WgDeviceOptions) {
    const privateKey = clampPrivateKey(opts.privateKey);
    this.local = { privateKey, publicKey: publicKeyOf(privateKey) };
    this.random = opts.random ?? webRandom;
    this.wallOffset = opts.wallClockOffsetMs;
    this.mac1Key = mac1KeyFor(this.local.publicKey);
    this.cookies = new CookieIssuer(
      cookieKeyFor(this.local.publicKey),
      this.random,
      opts.now,
      opts.handshakeRateLimit ?? HANDSHAKE_RATE_LIMIT,
    );
    this.drops = Object.fromEntries(WG_DROP_REASONS.map((r) => [r, 0])) as Record<WgDropReason, number>;
    this.host = {
      local: this.local,
      random: (n) => this.random(n),
      wallTime: (now) => now + this.wallOffset,
      schedule: (peer, at) => this.schedule(peer, at),
      transmit: (peer, bytes) => {
        this.transmits.push({ kind: 'peer', peer, bytes });
      },
      event: (ev) => {
        this.events.push(ev);
      },
    };
  }

  get publicKey(): Uint8Array {
    return this.local.publicKey;
  }

  /** Cookie replies sent because we were under load. */
  get cookieRepliesSent(): number {
    return this.cookies.cookieReplies;
  }

  get peerCount(): number {
    return this.byId.size;
  }

  /** Adds a peer with a fresh, unguessable 24-bit id. Throws if the key is already a peer or invalid. */
  addPeer(opts: PeerOptions): WgPeer<E> {
    if (opts.publicKey.length !== KEY_BYTES) throw new RangeError(`public key must be ${KEY_BYTES} bytes`);
    const key = keyOf(opts.publicKey);
    if (this.byKey.has(key)) throw new Error('peer already exists');
    const shared = dh(this.local.privateKey, opts.publicKey);
    if (!shared) throw new RangeError('public key is a low-order point');
    let id: number;
    do {
      const r = this.random(3);
      id = (r[0]! << 16) | (r[1]! << 8) | r[2]!;
    } while (id === 0 || this.byId.has(id));
    const peer = new WgPeer<E>(this.host, id, opts, shared);
    this.byId.set(id, peer);
    this.byKey.set(key, peer);
    return peer;
  }

  removePeer(peer: WgPeer<E>): void {
    if (this.byId.get(peer.id) !== peer) return;
    this.byId.delete(peer.id);
    this.byKey.delete(keyOf(peer.publicKey));
    peer.destroy();
  }

  peerByPublicKey(publicKey: Uint8Array): WgPeer<E> | undefined {
    return this.byKey.get(keyOf(publicKey));
  }

  /** The peer with this 24-bit id (the upper bits of its indices), if any. */
  peerById(id: number): WgPeer<E> | undefined {
    return this.byId.get(id);
  }

  /**
   * Handles one datagram already known not to be STUN/TURN. `buf[off, off+len)` is the datagram;
   * data is decrypted in place (plaintext at `off + 16`). `from` is only read during the call (its
   * IP binds cookies) and is the target of a cookie reply, which the caller should drain before
   * reusing `from`; the device keeps no reference, so a scratch object per datagram is fine.
   */
  decapsulate(buf: Uint8Array, off: number, len: number, from: E, now: number): WgDecapResult {
    this.rxPeer = undefined;
    switch (wireguardMessageType(buf, off, len)) {
      case MSG_TRANSPORT_DATA:
        return this.decapsulateData(buf, off, len, now);
      case MSG_HANDSHAKE_INITIATION:
        return this.handleInitiation(buf, off, from, now);
      case MSG_HANDSHAKE_RESPONSE:
        return this.handleResponse(buf, off, from, now);
      case MSG_COOKIE_REPLY:
        return this.handleCookieReply(buf, off, now);
      default:
        return this.drop('wg.not-wireguard');
    }
  }

  private drop(reason: WgDropReason): typeof WG_DROPPED {
    this.drops[reason]++;
    this.lastDrop = reason;
    return WG_DROPPED;
  }

  private decapsulateData(buf: Uint8Array, off: number, len: number, now: number): WgDecapResult {
    const index = readU32LE(buf, off + DATA_RECEIVER);
    const peer = this.byId.get(index >>> 8);
    const session = peer?.sessionFor(index);
    if (!peer || !session) return this.drop('wg.unknown-index');
    const n = peer.receiveData(session, buf, off, len, now);
    if (typeof n !== 'number') return this.drop(n);
    this.rxPeer = peer;
    this.rxOffset = off + DATA_HEADER_BYTES;
    this.rxLength = n;
    return n === 0 ? WG_KEEPALIVE : WG_DATA;
  }

  /**
   * mac1 first (cheap, proves the sender knows our public key), then the shared rate limiter:
   * under load a message needs a valid mac2, else it gets a cookie reply (paper §5.4.7).
   */
  private admitHandshake(buf: Uint8Array, off: number, mac1At: number, from: E, now: number): boolean {
    if (!verifyMac1(buf, off, mac1At, this.mac1Key)) {
      this.drop('wg.bad-mac1');
      return false;
    }
    if (this.cookies.underLoad(now) && !this.cookies.verifyMac2(buf, off, mac1At, from.ip, now)) {
      this.transmits.push({
        kind: 'reply',
        to: from,
        bytes: this.cookies.reply(buf, off, mac1At, from.ip, now),
      });
      this.drop('wg.cookie-sent');
      return false;
    }
    return true;
  }

  private handleInitiation(buf: Uint8Array, off: number, from: E, now: number): WgDecapResult {
    if (!this.admitHandshake(buf, off, INIT_MAC1, from, now)) return WG_DROPPED;
    let peer: WgPeer<E> | undefined;
    const state = consumeInitiation(this.local, buf, off, (initiatorStatic) => {
      peer = this.byKey.get(keyOf(initiatorStatic));
      return peer?.remote.staticShared;
    });
    if (state === 'unknown-peer') return this.drop('wg.unknown-peer');
    if (state === 'invalid' || !peer) return this.drop('wg.invalid-handshake');
    const dropped = peer.handleInitiation(state, now);
    if (dropped) return this.drop(dropped);
    this.rxPeer = peer;
    return WG_HANDSHAKE;
  }

  private handleResponse(buf: Uint8Array, off: number, from: E, now: number): WgDecapResult {
    if (!this.admitHandshake(buf, off, RESP_MAC1, from, now)) return WG_DROPPED;
    const index = readU32LE(buf, off + RESP_RECEIVER);
    const peer = this.byId.get(index >>> 8);
    if (!peer) return this.drop('wg.unknown-index');
    const dropped = peer.handleResponse(buf, off, now);
    if (dropped) return this.drop(dropped);
    this.rxPeer = peer;
    return WG_HANDSHAKE;
  }

  private handleCookieReply(buf: Uint8Array, off: number, now: number): WgDecapResult {
    const index = readU32LE(buf, off + COOKIE_RECEIVER);
    const peer = this.byId.get(index >>> 8);
    if (!peer) return this.drop('wg.unknown-index');
    const dropped = peer.handleCookieReply(buf, off, index, now);
    if (dropped) return this.drop(dropped);
    this.rxPeer = peer;
    return WG_HANDSHAKE;
  }

  /**
   * Encrypts an IP packet for `peer` in place (see {@link WgPeer.encapsulate}): returns the
   * datagram length (datagram at `off - 16`), or 0 when it was queued for a handshake.
   */
  encapsulate(peer: WgPeer<E>, buf: Uint8Array, off: number, len: number, now: number): number {
    return peer.encapsulate(buf, off, len, now);
  }

  /** Starts a handshake with `peer` now (we act as initiator). */
  initiateHandshake(peer: WgPeer<E>, now: number): boolean {
    return peer.initiate(now);
  }

  handleTimeout(now: number): void {
    for (;;) {
      const top = this.timers.peek();
      if (!top || top.at > now) return;
      this.timers.pop();
      const peer = top.item;
      if (peer.removed || top.at !== peer.scheduledAt) continue; // superseded entry
      peer.scheduledAt = Number.POSITIVE_INFINITY;
      this.schedule(peer, peer.tick(now));
    }
  }

  pollTimeout(): { at: number; reason: string } | undefined {
    for (;;) {
      const top = this.timers.peek();
      if (!top) return undefined;
      if (top.item.removed || top.at !== top.item.scheduledAt) {
        this.timers.pop();
        continue;
      }
      return { at: top.at, reason: 'wireguard timers' };
    }
  }

  pollTransmit(): WgTransmit<E> | undefined {
    return this.transmits.poll();
  }

  pollEvent(): WgEvent<E> | undefined {
    return this.events.poll();
  }

  private schedule(peer: WgPeer<E>, at: number): void {
    if (peer.removed || !(at < peer.scheduledAt)) return;
    peer.scheduledAt = at;
    this.timers.push(at, peer);
  }
}

function keyOf(publicKey: Uint8Array): string {
  let s = '';
  for (let i = 0; i < publicKey.length; i++) s += String.fromCharCode(publicKey[i]!);
  return s;
}

/** A binary min-heap of (deadline, item) with lazy deletion by the owner. */
class TimerHeap<T> {
  private readonly at: number[] = [];
  private readonly items: T[] = [];

  push(at: number, item: T): void {
    let i = this.at.length;
    this.at.push(at);
    this.items.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.at[p]! <= at) break;
      this.at[i] = this.at[p]!;
      this.items[i] = this.items[p]!;
      i = p;
    }
    this.at[i] = at;
    this.items[i] = item;
  }

  peek(): { at: number; item: T } | undefined {
    return this.at.length === 0 ? undefined : { at: this.at[0]!, item: this.items[0]! };
  }

  pop(): void {
    const n = this.at.length - 1;
    if (n < 0) return;
    const lastAt = this.at[n]!;
    const lastItem = this.items[n]!;
    this.at.length = n;
    this.items.length = n;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.at[r]! < this.at[l]! ? r : l;
      if (this.at[c]! >= lastAt) break;
      this.at[i] = this.at[c]!;
      this.items[i] = this.items[c]!;
      i = c;
    }
    this.at[i] = lastAt;
    this.items[i] = lastItem;
  }
}
