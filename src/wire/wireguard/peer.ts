import {
  AEAD_TAG_BYTES,
  COOKIE_EXPIRATION_MS,
  DATA_COUNTER,
  DATA_HEADER_BYTES,
  DATA_RECEIVER,
  INIT_MAC1,
  KEEPALIVE_TIMEOUT_MS,
  KEY_BYTES,
  KEY_ZEROING_AFTER_MS,
  MAC_BYTES,
  MAX_QUEUED_PACKETS,
  MIN_INITIATION_INTERVAL_MS,
  MSG_TRANSPORT_DATA,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME_MS,
  REKEY_JITTER_MAX_MS,
  REKEY_TIMEOUT_MS,
  RESP_MAC1,
  type TimerProfile,
} from './constants.js';
import { cookieKeyFor, mac1KeyFor, openCookieReply, writeMac1, writeMac2 } from './cookie.js';
import { clampPrivateKey } from './crypto.js';
import {
  consumeResponse,
  createInitiation,
  createResponse,
  type InitiatorState,
  type LocalStatic,
  type RemoteStatic,
  type ResponderState,
} from './handshake.js';
import { readCounter, tai64n, tai64nAfter, writeCounter, writeU32LE } from './messages.js';
import { Session } from './session.js';

/** Why a peer's handshake or connection ended (see {@link WgEvent}). */
export type WgFailure = 'handshake-timeout' | 'no-session';

/** Lifecycle events a device reports (never one per data packet). */
export type WgEvent<E> =
  /** We sent the first initiation of a handshake, or answered one. */
  | { readonly type: 'handshake-started'; readonly peer: WgPeer<E>; readonly initiator: boolean }
  | { readonly type: 'session-established'; readonly peer: WgPeer<E>; readonly initiator: boolean }
  /** Handshake attempts ran out (standard profile: queued packets were dropped; the peer stays). */
  | { readonly type: 'handshake-failed'; readonly peer: WgPeer<E> }
  /** Firezone profile: the connection is dead (attempts ran out, or no session for 540 s). */
  | { readonly type: 'connection-expired'; readonly peer: WgPeer<E>; readonly reason: WgFailure };

/** What a peer needs from its device. */
export interface PeerHost<E> {
  readonly local: LocalStatic;
  random(n: number): Uint8Array;
  /** Wall-clock milliseconds for monotonic `now` (for TAI64N timestamps). */
  wallTime(now: number): number;
  schedule(peer: WgPeer<E>, at: number): void;
  transmit(peer: WgPeer<E>, bytes: Uint8Array): void;
  event(event: WgEvent<E>): void;
}

export interface PeerOptions {
  readonly publicKey: Uint8Array;
  readonly presharedKey?: Uint8Array | undefined;
  readonly profile: TimerProfile;
  /** Overrides the profile's persistent keepalive (standalone peers can ask for one). */
  readonly persistentKeepaliveMs?: number | undefined;
}

export interface PeerStats {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  handshakesCompleted: number;
  handshakeInitiationsSent: number;
  /** Monotonic time of the last completed handshake, or -1. */
  lastHandshakeAt: number;
}

const NEVER = Number.POSITIVE_INFINITY;
const ZERO_KEY = new Uint8Array(KEY_BYTES);

/**
 * One WireGuard peer: handshake state, up to three sessions (previous, current, and next — a
 * responder's session waiting for the initiator's first packet), the timers of paper §6 with the
 * profile's deviations, and a bounded queue of packets waiting for a session.
 *
 * Driven by its {@link WgDevice}; never touches sockets or clocks. Outgoing handshake messages,
 * keepalives and flushed queued packets leave through `host.transmit`.
 */
export class WgPeer<E> {
  readonly publicKey: Uint8Array;
  readonly remote: RemoteStatic;
  readonly profile: TimerProfile;
  /** The 24-bit id in the upper bits of every index we hand out for this peer. */
  readonly id: number;
  /**
   * Where this peer's transmits go. The device never sets it: the caller does, from the
   * endpoint of authenticated packets (`WgDevice.rxPeer`) for roaming plain peers, or from ICE.
   */
  endpoint: E | undefined;
  readonly stats: PeerStats = {
    rxBytes: 0,
    txBytes: 0,
    rxPackets: 0,
    txPackets: 0,
    handshakesCompleted: 0,
    handshakeInitiationsSent: 0,
    lastHandshakeAt: -1,
  };
  /** Earliest pending timer entry (maintained by the device). */
  scheduledAt = NEVER;
  removed = false;

  current: Session | undefined;
  previous: Session | undefined;
  /** Responder session not yet confirmed by a packet from the initiator. */
  next: Session | undefined;

  private readonly host: PeerHost<E>;
  private readonly mac1Key: Uint8Array;
  private readonly cookieKey: Uint8Array;
  private readonly persistentKeepaliveMs: number | undefined;
  private indexCounter = 0;

  private handshake: InitiatorState | undefined;
  private handshakeStartedAt = -1;
  private handshakeSentAt = Number.NEGATIVE_INFINITY;
  private retransmitAt = NEVER;
  private pendingInitiationAt = NEVER;

  private cookie: Uint8Array | undefined;
  private cookieAt = Number.NEGATIVE_INFINITY;
  private lastSentMac1: Uint8Array | undefined;
  private lastSentIndex = -1;

  private greatestTimestamp: Uint8Array | undefined;
  private lastInitiationAt = Number.NEGATIVE_INFINITY;

  private keepaliveAt = NEVER;
  private newHandshakeAt = NEVER;
  private persistentKeepaliveAt = NEVER;
  private sessionDerivedAt = -1;
  private idleRekeyDone = false;

  private readonly queue: Uint8Array[] = [];

  constructor(host: PeerHost<E>, id: number, opts: PeerOptions, staticShared: Uint8Array) {
    this.host = host;
    this.id = id;
    this.publicKey = Uint8Array.from(opts.publicKey);
    this.remote = {
      publicKey: this.publicKey,
      presharedKey: opts.presharedKey ? Uint8Array.from(opts.presharedKey) : ZERO_KEY,
      staticShared,
    };
    this.profile = opts.profile;
    this.persistentKeepaliveMs = opts.persistentKeepaliveMs ?? opts.profile.persistentKeepaliveMs;
    this.mac1Key = mac1KeyFor(this.publicKey);
    this.cookieKey = cookieKeyFor(this.publicKey);
  }

  /** A fresh index: our 24-bit id and an 8-bit counter that wraps (`spec/snownet.md` §1.4). */
  private nextIndex(): number {
    this.indexCounter = (this.indexCounter + 1) & 0xff;
    return (this.id * 256 + this.indexCounter) >>> 0;
  }

  /** The session with our index `index`, if any. */
  sessionFor(index: number): Session | undefined {
    if (this.current?.localIndex === index) return this.current;
    if (this.next?.localIndex === index) return this.next;
    if (this.previous?.localIndex === index) return this.previous;
    return undefined;
  }

  get hasSession(): boolean {
    return this.current !== undefined;
  }

  get handshakeInProgress(): boolean {
    return this.handshake !== undefined;
  }

  // --- Sending --------------------------------------------------------------------------------

  /** The session to encrypt with now, or `undefined`. */
  private sendingSession(now: number): Session | undefined {
    const s = this.current;
    if (!s) return undefined;
    const age = now - s.createdAt;
    if (age >= REJECT_AFTER_TIME_MS || s.sendCounter >= REJECT_AFTER_MESSAGES) return undefined;
    // Firezone: the initiator stops sending on its session 10 s before the peer stops accepting
    // it, so a fresh handshake has time to finish (`spec/snownet.md` §1.6).
    if (
      this.profile.idleInitiatorRekey &&
      s.isInitiator &&
      age >= REJECT_AFTER_TIME_MS - KEEPALIVE_TIMEOUT_MS
    )
      return undefined;
    return s;
  }

  /**
   * Encrypts `buf[off, off+len)` in place as a transport-data message. Needs 16 bytes of headroom
   * before `off` and 16 bytes after the plaintext. Returns the datagram length (the datagram
   * starts at `off - 16`), or 0 when there is no usable session: then a copy is queued and a
   * handshake started. `len` 0 sends a keepalive.
   */
  encapsulate(buf: Uint8Array, off: number, len: number, now: number): number {
    const s = this.sendingSession(now);
    if (!s) {
      if (len > 0) {
        if (this.queue.length >= MAX_QUEUED_PACKETS) this.queue.shift();
        this.queue.push(buf.slice(off, off + len));
      }
      this.initiate(now);
      return 0;
    }
    const h = off - DATA_HEADER_BYTES;
    buf[h] = MSG_TRANSPORT_DATA;
    buf[h + 1] = 0;
    buf[h + 2] = 0;
    buf[h + 3] = 0;
    writeU32LE(buf, h + DATA_RECEIVER, s.remoteIndex);
    writeCounter(buf, h + DATA_COUNTER, s.sendCounter);
    s.sendCounter++;
    s.sendCipher.seal(buf, off, len, buf, h + DATA_COUNTER);
    const total = DATA_HEADER_BYTES + len + AEAD_TAG_BYTES;
    this.stats.txBytes += total;
    this.stats.txPackets++;
    this.authenticatedPacketSent(now);
    if (len > 0) {
      // Data sent and nothing heard for KEEPALIVE + REKEY_TIMEOUT → new handshake (paper §6.5).
      if (this.newHandshakeAt === NEVER) {
        // The initiation it leads to is jittered when scheduled (scheduleInitiation).
        this.newHandshakeAt = now + KEEPALIVE_TIMEOUT_MS + REKEY_TIMEOUT_MS;
        this.host.schedule(this, this.newHandshakeAt);
      }
      // Keep keys fresh on the sending side (paper §6.2).
      if (
        s.isInitiator &&
        (now - s.createdAt >= REKEY_AFTER_TIME_MS || s.sendCounter >= REKEY_AFTER_MESSAGES)
      ) {
        this.initiate(now);
      }
    }
    return total;
  }

  /** A keepalive (empty data message), if a session allows it. */
  sendKeepalive(now: number): boolean {
    if (!this.sendingSession(now)) return false;
    const buf = new Uint8Array(DATA_HEADER_BYTES + AEAD_TAG_BYTES);
    const n = this.encapsulate(buf, DATA_HEADER_BYTES, 0, now);
    if (n > 0) this.host.transmit(this, buf);
    return n > 0;
  }

  private authenticatedPacketSent(now: number): void {
    this.keepaliveAt = NEVER;
    if (this.persistentKeepaliveMs !== undefined) {
      this.persistentKeepaliveAt = now + this.persistentKeepaliveMs;
      this.host.schedule(this, this.persistentKeepaliveAt);
    }
  }

  private authenticatedPacketReceived(now: number): void {
    this.newHandshakeAt = NEVER;
    if (this.persistentKeepaliveMs !== undefined) {
      this.persistentKeepaliveAt = now + this.persistentKeepaliveMs;
      this.host.schedule(this, this.persistentKeepaliveAt);
    }
  }

  private jitter(): number {
    const r = this.host.random(2);
    return ((r[0]! << 8) | r[1]!) % (REKEY_JITTER_MAX_MS + 1);
  }

  // --- Handshakes -----------------------------------------------------------------------------

  /**
   * Starts a handshake now, unless one is already in flight (its retransmissions are timer-driven,
   * so the attempt clock of REKEY_ATTEMPT_TIME is honest) or one was sent less than REKEY_TIMEOUT
   * ago (paper §6.1). `retry` is the retransmission timer itself. Returns whether one was sent.
   */
  initiate(now: number, retry = false): boolean {
    if (!retry) {
      if (this.handshake || now - this.handshakeSentAt < REKEY_TIMEOUT_MS) return false;
      this.handshakeStartedAt = now;
      this.host.event({ type: 'handshake-started', peer: this, initiator: true });
    }
    const index = this.nextIndex();
    const ephemeral = clampPrivateKey(this.host.random(KEY_BYTES));
    const built = createInitiation(
      this.host.local,
      this.remote,
      index,
      ephemeral,
      tai64n(this.host.wallTime(now)),
    );
    if (!built) return false;
    this.handshake = built.state;
    this.handshakeSentAt = now;
    this.pendingInitiationAt = NEVER;
    this.retransmitAt = now + REKEY_TIMEOUT_MS + this.jitter();
    this.host.schedule(this, this.retransmitAt);
    this.sendHandshakeMessage(built.message, INIT_MAC1, index, now);
    this.stats.handshakeInitiationsSent++;
    this.authenticatedPacketSent(now);
    return true;
  }

  /** Schedules a timer-driven initiation after a random 0–333 ms (Firezone: every timer-driven one). */
  private scheduleInitiation(now: number): void {
    if (this.handshake || this.pendingInitiationAt !== NEVER) return;
    this.pendingInitiationAt = now + this.jitter();
    this.host.schedule(this, this.pendingInitiationAt);
  }

  private sendHandshakeMessage(msg: Uint8Array, mac1At: number, index: number, now: number): void {
    writeMac1(msg, mac1At, this.mac1Key);
    // A cookie from a peer under load proves our address for COOKIE_EXPIRATION (paper §5.4.7).
    const cookieFresh = this.cookie !== undefined && now - this.cookieAt < COOKIE_EXPIRATION_MS;
    writeMac2(msg, mac1At, cookieFresh ? this.cookie : undefined);
    this.lastSentMac1 = msg.slice(mac1At, mac1At + MAC_BYTES);
    this.lastSentIndex = index;
    this.host.transmit(this, msg);
  }

  /** Answers a consumed initiation. Returns a drop reason, or undefined when answered. */
  handleInitiation(
    state: ResponderState,
    now: number,
  ): 'wg.replayed-initiation' | 'wg.initiation-flood' | 'wg.invalid-handshake' | undefined {
    if (this.greatestTimestamp && !tai64nAfter(state.timestamp, this.greatestTimestamp))
      return 'wg.replayed-initiation';
    if (now - this.lastInitiationAt < MIN_INITIATION_INTERVAL_MS) return 'wg.initiation-flood';
    const index = this.nextIndex();
    const ephemeral = clampPrivateKey(this.host.random(KEY_BYTES));
    const built = createResponse(state, this.remote, index, ephemeral);
    if (!built) return 'wg.invalid-handshake';
    this.greatestTimestamp = state.timestamp;
    this.lastInitiationAt = now;
    this.next?.wipe();
    this.next = new Session(built.keys, now, false);
    this.sessionDerived(now);
    this.authenticatedPacketReceived(now);
    this.sendHandshakeMessage(built.message, RESP_MAC1, index, now);
    this.authenticatedPacketSent(now);
    this.host.event({ type: 'handshake-started', peer: this, initiator: false });
    return undefined;
  }

  /** Consumes a response to our outstanding initiation (the device matched the index). */
  handleResponse(
    msg: Uint8Array,
    off: number,
    now: number,
  ): 'wg.unexpected-response' | 'wg.invalid-response' | undefined {
    const hs = this.handshake;
    if (!hs) return 'wg.unexpected-response';
    const keys = consumeResponse(hs, this.host.local, this.remote, msg, off);
    if (!keys) return 'wg.invalid-response';
    if (keys.localIndex !== hs.senderIndex) return 'wg.unexpected-response';
    this.handshake = undefined;
    this.handshakeStartedAt = -1;
    this.retransmitAt = NEVER;
    this.next?.wipe();
    this.next = undefined;
    this.rotateIn(new Session(keys, now, true), now);
    this.authenticatedPacketReceived(now);
    this.host.event({ type: 'session-established', peer: this, initiator: true });
    // The initiator confirms the session at once so the responder can start using it: with the
    // queued packets, or with a keepalive when there are none (boringtun does the same).
    if (this.flushQueue(now) === 0) this.sendKeepalive(now);
    return undefined;
  }

  /** Stores the cookie from a cookie reply to our last handshake message. */
  handleCookieReply(
    msg: Uint8Array,
    off: number,
    receiverIndex: number,
    now: number,
  ): 'wg.invalid-cookie' | undefined {
    if (!this.lastSentMac1 || receiverIndex !== this.lastSentIndex) return 'wg.invalid-cookie';
    const cookie = openCookieReply(msg, off, this.cookieKey, this.lastSentMac1);
    if (!cookie) return 'wg.invalid-cookie';
    this.cookie = cookie;
    this.cookieAt = now;
    return undefined;
  }

  private rotateIn(s: Session, now: number): void {
    this.previous?.wipe();
    this.previous = this.current;
    this.current = s;
    this.idleRekeyDone = false;
    this.sessionDerived(now);
    this.stats.handshakesCompleted++;
    this.stats.lastHandshakeAt = now;
    this.host.schedule(this, this.nextDeadline());
  }

  private sessionDerived(now: number): void {
    this.sessionDerivedAt = now;
    this.host.schedule(this, now + KEY_ZEROING_AFTER_MS);
  }

  /** Sends the packets queued while there was no session; returns how many went out. */
  private flushQueue(now: number): number {
    let sent = 0;
    while (this.queue.length > 0 && this.sendingSession(now)) {
      const pkt = this.queue.shift()!;
      const buf = new Uint8Array(DATA_HEADER_BYTES + pkt.length + AEAD_TAG_BYTES);
      buf.set(pkt, DATA_HEADER_BYTES);
      if (this.encapsulate(buf, DATA_HEADER_BYTES, pkt.length, now) > 0) {
        this.host.transmit(this, buf);
        sent++;
      }
    }
    return sent;
  }

  // --- Receiving ------------------------------------------------------------------------------

  /**
   * Decrypts a transport-data message in place (`buf[off, off+len)` is the whole message) on
   * `session`, one of ours. Returns the plaintext length (at `off + 16`; 0 is a keepalive) or a
   * drop reason.
   */
  receiveData(
    session: Session,
    buf: Uint8Array,
    off: number,
    len: number,
    now: number,
  ): number | 'wg.replay' | 'wg.auth-failed' | 'wg.session-expired' {
    if (now - session.createdAt >= REJECT_AFTER_TIME_MS) return 'wg.session-expired';
    const counter = readCounter(buf, off + DATA_COUNTER);
    if (!session.replay.check(counter)) return 'wg.replay';
    const n = session.receiveCipher.open(
      buf,
      off + DATA_HEADER_BYTES,
      len - DATA_HEADER_BYTES,
      buf,
      off + DATA_COUNTER,
    );
    if (n < 0) return 'wg.auth-failed';
    session.replay.update(counter);
    this.stats.rxBytes += len;
    this.stats.rxPackets++;
    this.authenticatedPacketReceived(now);
    if (session === this.next) {
      this.next = undefined;
      this.rotateIn(session, now);
      this.host.event({ type: 'session-established', peer: this, initiator: false });
      this.flushQueue(now);
    }
    if (n > 0) {
      // Data received and nothing sent back within KEEPALIVE_TIMEOUT → keepalive (paper §6.5).
      if (this.keepaliveAt === NEVER) {
        this.keepaliveAt = now + KEEPALIVE_TIMEOUT_MS;
        this.host.schedule(this, this.keepaliveAt);
      }
      // Keep keys fresh on the receiving side: 165 s (paper §6.2).
      const s = this.current;
      if (
        s?.isInitiator &&
        now - s.createdAt >= REJECT_AFTER_TIME_MS - KEEPALIVE_TIMEOUT_MS - REKEY_TIMEOUT_MS
      ) {
        this.initiate(now);
      }
    }
    return n;
  }

  // --- Timers ---------------------------------------------------------------------------------

  /** Runs every timer that is due and returns the next deadline (or Infinity). */
  tick(now: number): number {
    if (this.removed) return NEVER;
    // Handshake retransmission, until REKEY_ATTEMPT_TIME has passed.
    if (this.handshake && now >= this.retransmitAt) {
      if (now - this.handshakeStartedAt >= this.profile.rekeyAttemptTimeMs) {
        this.giveUpHandshake();
      } else {
        this.initiate(now, true);
      }
    }
    if (now >= this.pendingInitiationAt) {
      this.pendingInitiationAt = NEVER;
      this.initiate(now);
    }
    if (now >= this.newHandshakeAt) {
      this.newHandshakeAt = NEVER;
      this.scheduleInitiation(now);
    }
    if (now >= this.keepaliveAt) {
      this.keepaliveAt = NEVER;
      this.sendKeepalive(now);
    }
    if (now >= this.persistentKeepaliveAt) {
      this.persistentKeepaliveAt = NEVER;
      this.sendKeepalive(now);
    }
    this.expireSessions(now);
    if (this.sessionDerivedAt >= 0 && now - this.sessionDerivedAt >= KEY_ZEROING_AFTER_MS) {
      this.eraseKeys();
      if (this.profile.expireConnection)
        this.host.event({ type: 'connection-expired', peer: this, reason: 'no-session' });
    }
    return this.nextDeadline();
  }

  private expireSessions(now: number): void {
    const cur = this.current;
    if (
      cur &&
      this.profile.idleInitiatorRekey &&
      cur.isInitiator &&
      !this.idleRekeyDone &&
      now - cur.createdAt >= REJECT_AFTER_TIME_MS
    ) {
      // Firezone: the initiator re-handshakes as soon as its session expires, even when idle.
      this.idleRekeyDone = true;
      this.scheduleInitiation(now);
    }
    for (const key of ['previous', 'current', 'next'] as const) {
      const s = this[key];
      if (s && now - s.createdAt >= REJECT_AFTER_TIME_MS) {
        s.wipe();
        this[key] = undefined;
      }
    }
  }

  private giveUpHandshake(): void {
    this.handshake = undefined;
    this.handshakeStartedAt = -1;
    this.retransmitAt = NEVER;
    this.queue.length = 0;
    if (this.profile.expireConnection)
      this.host.event({ type: 'connection-expired', peer: this, reason: 'handshake-timeout' });
    else this.host.event({ type: 'handshake-failed', peer: this });
  }

  private eraseKeys(): void {
    for (const key of ['previous', 'current', 'next'] as const) {
      this[key]?.wipe();
      this[key] = undefined;
    }
    this.handshake = undefined;
    this.retransmitAt = NEVER;
    this.sessionDerivedAt = -1;
  }

  nextDeadline(): number {
    let at = Math.min(
      this.retransmitAt,
      this.pendingInitiationAt,
      this.newHandshakeAt,
      this.keepaliveAt,
      this.persistentKeepaliveAt,
    );
    for (const s of [this.previous, this.current, this.next]) {
      if (!s) continue;
      at = Math.min(at, s.createdAt + REJECT_AFTER_TIME_MS);
    }
    if (this.sessionDerivedAt >= 0) at = Math.min(at, this.sessionDerivedAt + KEY_ZEROING_AFTER_MS);
    return at;
  }

  /** Forgets all keys and pending work (the peer is being removed). */
  destroy(): void {
    this.removed = true;
    this.eraseKeys();
    this.queue.length = 0;
  }

  /** Packets waiting for a session. */
  get queuedPackets(): number {
    return this.queue.length;
  }
}
