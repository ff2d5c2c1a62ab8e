import { formatIp, parseIp } from '../ip/address.js';
import { err, ok, type Result, type WireError } from '../result.js';
import type { TransportAddress } from '../stun/message.js';

/**
 * ICE candidates (RFC 8445 §5.1, `spec/snownet.md` §2.3–§2.4): kinds, priorities and the SDP
 * attribute string Firezone exchanges through the portal:
 *
 *   candidate:<foundation> 1 udp <priority> <ip> <port> typ <kind>[ raddr <ip> rport <port>][ ufrag <ufrag>]
 *
 * `raddr`/`rport` are always `0.0.0.0 0` (`:: 0`): the real base stays private, as Firezone does.
 */
export type CandidateKind = 'host' | 'srflx' | 'prflx' | 'relay';

export interface Candidate {
  readonly kind: CandidateKind;
  readonly addr: TransportAddress;
  readonly priority: number;
  readonly foundation: string;
  /** The ufrag the candidate was announced with, if any. */
  readonly ufrag?: string | undefined;
}

export type CandidateError = WireError<'ice.bad-candidate' | 'ice.unsupported-candidate'>;

/** RFC 8445 §5.1.2.2 type preferences (UDP), as str0m uses them. */
export const TYPE_PREFERENCE: Readonly<Record<CandidateKind, number>> = {
  host: 126,
  prflx: 110,
  srflx: 100,
  relay: 2,
};

/**
 * Local preference of the first candidate of a kind; each further one of the same kind and
 * family gets 2 less. Server-reflexive candidates carry the default 65534/65535, as Firezone's
 * (whose agent never holds them) announce them: srflx IPv4 = 1694498559.
 */
export const BASE_LOCAL_PREFERENCE: Readonly<Record<CandidateKind, { v4: number; v6: number }>> = {
  host: { v4: 65534, v6: 65535 },
  prflx: { v4: 49150, v6: 49151 },
  srflx: { v4: 65534, v6: 65535 },
  relay: { v4: 16382, v6: 16383 },
};

/** `(type_pref << 24) | (local_pref << 8) | (256 − component)`, component 1. */
export function candidatePriority(typePreference: number, localPreference: number): number {
  return ((typePreference << 24) >>> 0) + (localPreference << 8) + 255;
}

/**
 * Pair priority ordering (RFC 8445 §6.1.2.3): `2^32·min(G,D) + 2·max(G,D) + (G>D ? 1 : 0)`, G the
 * controlling side's candidate priority. Compared piecewise (the sum exceeds 2^53). Positive when
 * pair a ranks above pair b.
 */
export function comparePairPriority(aG: number, aD: number, bG: number, bD: number): number {
  const aMin = Math.min(aG, aD);
  const bMin = Math.min(bG, bD);
  if (aMin !== bMin) return aMin - bMin;
  const aMax = Math.max(aG, aD);
  const bMax = Math.max(bG, bD);
  if (aMax !== bMax) return aMax - bMax;
  return (aG > aD ? 1 : 0) - (bG > bD ? 1 : 0);
}

/** A stable 8-hex-digit foundation from the kind and base address (FNV-1a). */
export function foundationOf(kind: CandidateKind, base: Uint8Array): string {
  let h = 0x811c9dc5;
  const mix = (b: number) => {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  };
  for (const ch of kind) mix(ch.charCodeAt(0));
  for (const b of base) mix(b);
  return h.toString(16).padStart(8, '0');
}

export function formatCandidate(c: Candidate): string {
  const any = c.addr.ip.length === 4 ? '0.0.0.0' : '::';
  const related = c.kind === 'host' ? '' : ` raddr ${any} rport 0`;
  const ufrag = c.ufrag ? ` ufrag ${c.ufrag}` : '';
  return `candidate:${c.foundation} 1 udp ${c.priority} ${formatIp(c.addr.ip)} ${c.addr.port} typ ${c.kind}${related}${ufrag}`;
}

const KINDS = new Set<string>(['host', 'srflx', 'prflx', 'relay']);

/**
 * Parses a candidate string. Component 2 and TCP candidates are valid SDP but of no use here:
 * they come back as `ice.unsupported-candidate`, which callers skip quietly.
 */
export function parseCandidate(text: string): Result<Candidate, CandidateError> {
  const bad = (message: string) => err<CandidateError>({ code: 'ice.bad-candidate', message });
  const t = text.trim().split(/\s+/);
  if (t.length < 8 || !t[0]!.startsWith('candidate:'))
    return bad("not 'candidate:<foundation> ...' with 8 tokens");
  const foundation = t[0]!.slice('candidate:'.length);
  if (!/^[A-Za-z0-9+/]{1,32}$/.test(foundation)) return bad('foundation is not 1 to 32 ice-chars');
  if (!/^\d{1,3}$/.test(t[1]!)) return bad(`component '${t[1]}' is not a number`);
  if (!/^\d{1,10}$/.test(t[3]!) || Number(t[3]) > 0xffffffff)
    return bad(`priority '${t[3]}' is not a 32-bit number`);
  const ip = parseIp(t[4]!);
  if (!ip) return bad(`'${t[4]}' is not an IP address`);
  if (!/^\d{1,5}$/.test(t[5]!) || Number(t[5]) > 65535) return bad(`port '${t[5]}' is out of range`);
  if (t[6] !== 'typ' || !KINDS.has(t[7]!)) return bad(`expected 'typ host|srflx|prflx|relay'`);
  let ufrag: string | undefined;
  for (let i = 8; i + 1 < t.length; i += 2) if (t[i] === 'ufrag') ufrag = t[i + 1];
  if (Number(t[1]) !== 1 || t[2]!.toLowerCase() !== 'udp') {
    return err({ code: 'ice.unsupported-candidate', message: 'only component 1 over UDP is used' });
  }
  return ok({
    kind: t[7] as CandidateKind,
    addr: { ip, port: Number(t[5]) },
    priority: Number(t[3]),
    foundation,
    ...(ufrag !== undefined ? { ufrag } : {}),
  });
}

export function sameAddress(a: TransportAddress, b: TransportAddress): boolean {
  if (a.port !== b.port || a.ip.length !== b.ip.length) return false;
  for (let i = 0; i < a.ip.length; i++) if (a.ip[i] !== b.ip[i]) return false;
  return true;
}

/** `ip:port` / `[ip]:port`, for logs and map keys. */
export function addressKey(a: TransportAddress): string {
  return a.ip.length === 4 ? `${formatIp(a.ip)}:${a.port}` : `[${formatIp(a.ip)}]:${a.port}`;
}
