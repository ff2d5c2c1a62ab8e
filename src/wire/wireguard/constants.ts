/**
 * WireGuard numbers. Specification constants (the WireGuard paper, §5 and §6) first, then the
 * timer profiles: standard WireGuard for plain peers and Firezone's deviations
 * (`spec/snownet.md` §1.5–1.7).
 */

// --- Specification constants -------------------------------------------------------------

export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';

export const MSG_HANDSHAKE_INITIATION = 1;
export const MSG_HANDSHAKE_RESPONSE = 2;
export const MSG_COOKIE_REPLY = 3;
export const MSG_TRANSPORT_DATA = 4;

export const KEY_BYTES = 32;
export const AEAD_TAG_BYTES = 16;
export const MAC_BYTES = 16;
export const TAI64N_BYTES = 12;
export const XNONCE_BYTES = 24;

/** Message sizes (exact for handshake and cookie messages, minimum for data). */
export const HANDSHAKE_INITIATION_BYTES = 148;
export const HANDSHAKE_RESPONSE_BYTES = 92;
export const COOKIE_REPLY_BYTES = 64;
/** Transport data header: type (4) · receiver index (4) · counter (8). */
export const DATA_HEADER_BYTES = 16;
export const DATA_MIN_BYTES = DATA_HEADER_BYTES + AEAD_TAG_BYTES;

/** Field offsets in the handshake initiation. */
export const INIT_SENDER = 4;
export const INIT_EPHEMERAL = 8;
export const INIT_STATIC = 40;
export const INIT_TIMESTAMP = 88;
export const INIT_MAC1 = 116;
export const INIT_MAC2 = 132;
/** Field offsets in the handshake response. */
export const RESP_SENDER = 4;
export const RESP_RECEIVER = 8;
export const RESP_EPHEMERAL = 12;
export const RESP_EMPTY = 44;
export const RESP_MAC1 = 60;
export const RESP_MAC2 = 76;
/** Field offsets in the cookie reply. */
export const COOKIE_RECEIVER = 4;
export const COOKIE_NONCE = 8;
export const COOKIE_ENCRYPTED = 32;
/** Field offsets in transport data. */
export const DATA_RECEIVER = 4;
export const DATA_COUNTER = 8;

/** WireGuard paper §6.1. Message counts as plain numbers: no peer can reach 2^53 packets. */
export const REKEY_AFTER_MESSAGES = 2 ** 60;
export const REJECT_AFTER_MESSAGES = 2 ** 64 - 2 ** 13 - 1;
export const REKEY_AFTER_TIME_MS = 120_000;
export const REJECT_AFTER_TIME_MS = 180_000;
export const REKEY_TIMEOUT_MS = 5_000;
export const KEEPALIVE_TIMEOUT_MS = 10_000;
export const COOKIE_EXPIRATION_MS = 120_000;
/** Cookie secrets rotate every two minutes (paper §5.4.7); the reference uses 128 s. */
export const COOKIE_SECRET_ROTATION_MS = 128_000;
/** Handshake retransmissions carry up to this much random delay (paper §6.1: jitter). */
export const REKEY_JITTER_MAX_MS = 333;
/** Keys are erased after three times REJECT_AFTER_TIME without a new session (paper §6.3). */
export const KEY_ZEROING_AFTER_MS = 3 * REJECT_AFTER_TIME_MS;

// --- Implementation constants ------------------------------------------------------------

/**
 * Received packets are checked against a sliding window of this many counters (RFC 6479
 * style bitmap). 8192 like the Firezone [main] fork and wireguard-go; must be ≥ 2048.
 */
export const REPLAY_WINDOW_BITS = 8192;
/** IP packets queued per peer while it has no session (boringtun `MAX_QUEUE_DEPTH`). */
export const MAX_QUEUED_PACKETS = 256;
/** Handshake messages accepted per rate-limiter window before mac2 (a cookie) is required. */
export const HANDSHAKE_RATE_LIMIT = 100;
/** The shared rate limiter's window (`spec/snownet.md` §1.6: reset once per second). */
export const RATE_LIMIT_WINDOW_MS = 1_000;
/** A responder ignores initiations from one peer that arrive closer than this (wireguard-go: 50/s). */
export const MIN_INITIATION_INTERVAL_MS = 20;

/**
 * How a peer's timers behave. `standard` is WireGuard as wireguard-go and the kernel run it, for
 * plain peers in standalone mode; `firezone` is the reference gateway's snownet/boringtun fork.
 */
export interface TimerProfile {
  readonly name: 'standard' | 'firezone';
  /** Give up on a handshake after trying this long (standard 90 s, Firezone 15 s). */
  readonly rekeyAttemptTimeMs: number;
  /** Send a keepalive after this much outbound silence, or never (Firezone: never). */
  readonly persistentKeepaliveMs: number | undefined;
  /**
   * Firezone: the initiator of the current session starts a new handshake as soon as the session
   * reaches REJECT_AFTER_TIME, even without traffic; and stops sending on a session it initiated
   * after REJECT_AFTER_TIME − KEEPALIVE_TIMEOUT (170 s).
   */
  readonly idleInitiatorRekey: boolean;
  /**
   * Firezone: a peer whose handshake attempts time out, or that has no session for
   * KEY_ZEROING_AFTER, is reported as expired (the connection fails). Standard WireGuard only
   * drops queued packets and erases keys; the peer stays and retries when there is data.
   */
  readonly expireConnection: boolean;
}

export const STANDARD_PROFILE: TimerProfile = Object.freeze({
  name: 'standard',
  rekeyAttemptTimeMs: 90_000,
  persistentKeepaliveMs: undefined,
  idleInitiatorRekey: false,
  expireConnection: false,
});

export const FIREZONE_PROFILE: TimerProfile = Object.freeze({
  name: 'firezone',
  rekeyAttemptTimeMs: 15_000,
  persistentKeepaliveMs: undefined,
  idleInitiatorRekey: true,
  expireConnection: true,
});
