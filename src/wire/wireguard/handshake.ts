import {
  CONSTRUCTION,
  HANDSHAKE_INITIATION_BYTES,
  HANDSHAKE_RESPONSE_BYTES,
  IDENTIFIER,
  INIT_EPHEMERAL,
  INIT_MAC1,
  INIT_SENDER,
  INIT_STATIC,
  INIT_TIMESTAMP,
  KEY_BYTES,
  MSG_HANDSHAKE_INITIATION,
  MSG_HANDSHAKE_RESPONSE,
  RESP_EMPTY,
  RESP_EPHEMERAL,
  RESP_MAC1,
  RESP_RECEIVER,
  RESP_SENDER,
  TAI64N_BYTES,
} from './constants.js';
import { aeadOpen, aeadSeal, dh, EMPTY, hash, hashString, kdf1, kdf2, kdf3, publicKeyOf } from './crypto.js';
import { readU32LE, writeU32LE } from './messages.js';

/**
 * The Noise_IKpsk2 handshake of WireGuard (paper §5.4.2–§5.4.5), as pure functions over explicit
 * state. The caller supplies every random input (ephemeral keys) and the timestamp, so a handshake
 * can be replayed byte for byte in tests. mac1/mac2 are added by the caller (`cookie.ts`).
 */

/** C₀ = HASH(CONSTRUCTION), H₀ = HASH(C₀ ‖ IDENTIFIER). */
const INITIAL_CHAIN_KEY = hashString(CONSTRUCTION);
const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, new TextEncoder().encode(IDENTIFIER));

export interface LocalStatic {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

export interface RemoteStatic {
  readonly publicKey: Uint8Array;
  /** 32 bytes; all zeros when the peer has no preshared key. */
  readonly presharedKey: Uint8Array;
  /** DH(local static, remote static), computed once per peer. */
  readonly staticShared: Uint8Array;
}

/** The initiator's state between sending an initiation and receiving the response. */
export interface InitiatorState {
  readonly senderIndex: number;
  readonly ephemeralPrivate: Uint8Array;
  readonly hash: Uint8Array;
  readonly chainingKey: Uint8Array;
}

/** What the responder learned from an initiation, needed to answer it. */
export interface ResponderState {
  readonly remoteIndex: number;
  readonly initiatorStatic: Uint8Array;
  readonly initiatorEphemeral: Uint8Array;
  readonly timestamp: Uint8Array;
  readonly hash: Uint8Array;
  readonly chainingKey: Uint8Array;
}

export interface SessionKeys {
  readonly send: Uint8Array;
  readonly receive: Uint8Array;
  readonly localIndex: number;
  readonly remoteIndex: number;
}

/**
 * Builds a handshake initiation (148 bytes, macs left zero). Returns `undefined` only if a DH
 * yields the all-zero secret (the remote key is a low-order point).
 */
export function createInitiation(
  local: LocalStatic,
  remote: RemoteStatic,
  senderIndex: number,
  ephemeralPrivate: Uint8Array,
  timestamp: Uint8Array,
): { message: Uint8Array; state: InitiatorState } | undefined {
  const msg = new Uint8Array(HANDSHAKE_INITIATION_BYTES);
  msg[0] = MSG_HANDSHAKE_INITIATION;
  writeU32LE(msg, INIT_SENDER, senderIndex);
  let c = INITIAL_CHAIN_KEY;
  let h = hash(INITIAL_HASH, remote.publicKey);
  const ephemeralPublic = publicKeyOf(ephemeralPrivate);
  c = kdf1(c, ephemeralPublic);
  msg.set(ephemeralPublic, INIT_EPHEMERAL);
  h = hash(h, ephemeralPublic);
  const es = dh(ephemeralPrivate, remote.publicKey);
  if (!es) return undefined;
  let k: Uint8Array;
  [c, k] = kdf2(c, es);
  const encStatic = aeadSeal(k, 0, local.publicKey, h);
  msg.set(encStatic, INIT_STATIC);
  h = hash(h, encStatic);
  [c, k] = kdf2(c, remote.staticShared);
  const encTimestamp = aeadSeal(k, 0, timestamp, h);
  msg.set(encTimestamp, INIT_TIMESTAMP);
  h = hash(h, encTimestamp);
  return { message: msg, state: { senderIndex, ephemeralPrivate, hash: h, chainingKey: c } };
}

/**
 * First half of consuming an initiation: decrypts the initiator's static key and timestamp with
 * our static key. Needs no knowledge of the peer beyond what the message carries, so the device
 * calls it to find out which peer is knocking. `staticSharedFor` maps the decrypted initiator key
 * to DH(our static, their static), or `undefined` for an unknown peer.
 */
export function consumeInitiation(
  local: LocalStatic,
  msg: Uint8Array,
  off: number,
  staticSharedFor: (initiatorStatic: Uint8Array) => Uint8Array | undefined,
): ResponderState | 'unknown-peer' | 'invalid' {
  let c = INITIAL_CHAIN_KEY;
  let h = hash(INITIAL_HASH, local.publicKey);
  const ephemeral = msg.slice(off + INIT_EPHEMERAL, off + INIT_EPHEMERAL + KEY_BYTES);
  c = kdf1(c, ephemeral);
  h = hash(h, ephemeral);
  const es = dh(local.privateKey, ephemeral);
  if (!es) return 'invalid';
  let k: Uint8Array;
  [c, k] = kdf2(c, es);
  const encStatic = msg.subarray(off + INIT_STATIC, off + INIT_TIMESTAMP);
  const initiatorStatic = aeadOpen(k, 0, encStatic, h);
  if (!initiatorStatic) return 'invalid';
  h = hash(h, encStatic);
  const ss = staticSharedFor(initiatorStatic);
  if (!ss) return 'unknown-peer';
  [c, k] = kdf2(c, ss);
  const encTimestamp = msg.subarray(off + INIT_TIMESTAMP, off + INIT_MAC1);
  const timestamp = aeadOpen(k, 0, encTimestamp, h);
  if (!timestamp || timestamp.length !== TAI64N_BYTES) return 'invalid';
  h = hash(h, encTimestamp);
  return {
    remoteIndex: readU32LE(msg, off + INIT_SENDER),
    initiatorStatic,
    initiatorEphemeral: ephemeral,
    timestamp,
    hash: h,
    chainingKey: c,
  };
}

/** Builds the handshake response (92 bytes, macs left zero) and the responder's session keys. */
export function createResponse(
  state: ResponderState,
  remote: RemoteStatic,
  senderIndex: number,
  ephemeralPrivate: Uint8Array,
): { message: Uint8Array; keys: SessionKeys } | undefined {
  const msg = new Uint8Array(HANDSHAKE_RESPONSE_BYTES);
  msg[0] = MSG_HANDSHAKE_RESPONSE;
  writeU32LE(msg, RESP_SENDER, senderIndex);
  writeU32LE(msg, RESP_RECEIVER, state.remoteIndex);
  let c = state.chainingKey;
  let h = state.hash;
  const ephemeralPublic = publicKeyOf(ephemeralPrivate);
  c = kdf1(c, ephemeralPublic);
  msg.set(ephemeralPublic, RESP_EPHEMERAL);
  h = hash(h, ephemeralPublic);
  const ee = dh(ephemeralPrivate, state.initiatorEphemeral);
  const se = dh(ephemeralPrivate, state.initiatorStatic);
  if (!ee || !se) return undefined;
  c = kdf1(c, ee);
  c = kdf1(c, se);
  const [c2, t, k] = kdf3(c, remote.presharedKey);
  c = c2;
  h = hash(h, t);
  const encEmpty = aeadSeal(k, 0, EMPTY, h);
  msg.set(encEmpty, RESP_EMPTY);
  const [receive, send] = kdf2(c, EMPTY);
  return { message: msg, keys: { send, receive, localIndex: senderIndex, remoteIndex: state.remoteIndex } };
}

/** Consumes a handshake response to our initiation; `undefined` if it does not authenticate. */
export function consumeResponse(
  state: InitiatorState,
  local: LocalStatic,
  remote: RemoteStatic,
  msg: Uint8Array,
  off: number,
): SessionKeys | undefined {
  let c = state.chainingKey;
  let h = state.hash;
  const ephemeral = msg.slice(off + RESP_EPHEMERAL, off + RESP_EPHEMERAL + KEY_BYTES);
  c = kdf1(c, ephemeral);
  h = hash(h, ephemeral);
  const ee = dh(state.ephemeralPrivate, ephemeral);
  const se = dh(local.privateKey, ephemeral);
  if (!ee || !se) return undefined;
  c = kdf1(c, ee);
  c = kdf1(c, se);
  const [c2, t, k] = kdf3(c, remote.presharedKey);
  c = c2;
  h = hash(h, t);
  const encEmpty = msg.subarray(off + RESP_EMPTY, off + RESP_MAC1);
  if (!aeadOpen(k, 0, encEmpty, h)) return undefined;
  const [send, receive] = kdf2(c, EMPTY);
  return { send, receive, localIndex: state.senderIndex, remoteIndex: readU32LE(msg, off + RESP_SENDER) };
}
