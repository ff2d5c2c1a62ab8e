import {
  COOKIE_ENCRYPTED,
  COOKIE_NONCE,
  COOKIE_RECEIVER,
  COOKIE_REPLY_BYTES,
  COOKIE_SECRET_ROTATION_MS,
  HANDSHAKE_RATE_LIMIT,
  LABEL_COOKIE,
  LABEL_MAC1,
  MAC_BYTES,
  MSG_COOKIE_REPLY,
  RATE_LIMIT_WINDOW_MS,
  XNONCE_BYTES,
} from './constants.js';
import { hash, mac, xaeadOpen, xaeadSeal } from './crypto.js';
import { readU32LE, writeU32LE } from './messages.js';

const utf8 = new TextEncoder();

/** HASH(LABEL_MAC1 ‖ public key): the key of mac1 on messages sent to that key's owner. */
export function mac1KeyFor(publicKey: Uint8Array): Uint8Array {
  return hash(utf8.encode(LABEL_MAC1), publicKey);
}

/** HASH(LABEL_COOKIE ‖ public key): the key of cookie replies sent by that key's owner. */
export function cookieKeyFor(publicKey: Uint8Array): Uint8Array {
  return hash(utf8.encode(LABEL_COOKIE), publicKey);
}

/** Writes mac1 (at `mac1At`) over the message bytes before it. */
export function writeMac1(msg: Uint8Array, mac1At: number, mac1Key: Uint8Array): void {
  msg.set(mac(mac1Key, msg.subarray(0, mac1At)), mac1At);
}

/** Writes mac2 (at `mac1At + 16`) from a cookie, or zeros without one. */
export function writeMac2(msg: Uint8Array, mac1At: number, cookie: Uint8Array | undefined): void {
  const at = mac1At + MAC_BYTES;
  if (cookie) msg.set(mac(cookie, msg.subarray(0, at)), at);
  else msg.fill(0, at, at + MAC_BYTES);
}

/** Constant-time comparison of two MACs. */
export function macEqual(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  let diff = 0;
  for (let i = 0; i < MAC_BYTES; i++) diff |= a[aOff + i]! ^ b[bOff + i]!;
  return diff === 0;
}

export function verifyMac1(msg: Uint8Array, off: number, mac1At: number, mac1Key: Uint8Array): boolean {
  return macEqual(mac(mac1Key, msg.subarray(off, off + mac1At)), 0, msg, off + mac1At);
}

/**
 * The responder's side of the cookie mechanism (paper §5.4.7), shared by all peers of a device:
 * a rate limiter over handshake messages, and cookies bound to the sender's IP under a secret that
 * rotates every 128 s. Only this device ever checks its own cookies.
 */
export class CookieIssuer {
  private secret: Uint8Array;
  private secretAt: number;
  private windowStart = Number.NEGATIVE_INFINITY;
  private count = 0;
  /** Cookie replies sent since start. */
  cookieReplies = 0;

  constructor(
    private readonly cookieKey: Uint8Array,
    private readonly random: (n: number) => Uint8Array,
    now: number,
    private readonly limit = HANDSHAKE_RATE_LIMIT,
  ) {
    this.secret = random(32);
    this.secretAt = now;
  }

  /**
   * Counts one handshake message with a valid mac1 and says whether the device is under load,
   * i.e. whether this message needs a valid mac2.
   */
  underLoad(now: number): boolean {
    if (now - this.windowStart >= RATE_LIMIT_WINDOW_MS) {
      this.windowStart = now;
      this.count = 0;
    }
    this.count++;
    return this.count > this.limit;
  }

  private cookieFor(ip: Uint8Array, now: number): Uint8Array {
    if (now - this.secretAt >= COOKIE_SECRET_ROTATION_MS) {
      this.secret = this.random(32);
      this.secretAt = now;
    }
    // IPv4 is zero-padded to 16 bytes; no port, so a relayed peer keeps its cookie.
    const key = new Uint8Array(16);
    key.set(ip.subarray(0, 16));
    return mac(this.secret, key);
  }

  verifyMac2(msg: Uint8Array, off: number, mac1At: number, ip: Uint8Array, now: number): boolean {
    const cookie = this.cookieFor(ip, now);
    const at = mac1At + MAC_BYTES;
    return macEqual(mac(cookie, msg.subarray(off, off + at)), 0, msg, off + at);
  }

  /** A cookie reply to a handshake message (its sender index and mac1 are echoed). */
  reply(msg: Uint8Array, off: number, mac1At: number, ip: Uint8Array, now: number): Uint8Array {
    const out = new Uint8Array(COOKIE_REPLY_BYTES);
    out[0] = MSG_COOKIE_REPLY;
    writeU32LE(out, COOKIE_RECEIVER, readU32LE(msg, off + 4));
    const nonce = this.random(XNONCE_BYTES);
    out.set(nonce, COOKIE_NONCE);
    const mac1 = msg.subarray(off + mac1At, off + mac1At + MAC_BYTES);
    out.set(xaeadSeal(this.cookieKey, nonce, this.cookieFor(ip, now), mac1), COOKIE_ENCRYPTED);
    this.cookieReplies++;
    return out;
  }
}

/** Decrypts a cookie reply with the replier's cookie key and the mac1 we sent; `undefined` if forged. */
export function openCookieReply(
  msg: Uint8Array,
  off: number,
  cookieKey: Uint8Array,
  sentMac1: Uint8Array,
): Uint8Array | undefined {
  const nonce = msg.subarray(off + COOKIE_NONCE, off + COOKIE_NONCE + XNONCE_BYTES);
  const sealed = msg.subarray(off + COOKIE_ENCRYPTED, off + COOKIE_REPLY_BYTES);
  const cookie = xaeadOpen(cookieKey, nonce, sealed, sentMac1);
  return cookie?.length === MAC_BYTES ? cookie : undefined;
}
