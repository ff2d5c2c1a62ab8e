import { z } from 'zod';
import { parseIp } from '../ip/address.js';
import { listWithSkips, parsePort, Skip, show } from './schemas.js';

/**
 * ICE candidates as the portal forwards them (`spec/portal-protocol.md` §2.6, §4.1): SDP
 * `a=candidate` values without the `a=`, RFC 8839 §5.1:
 *
 *   candidate:<foundation> <component> <udp|tcp> <priority> <ip> <port> typ <host|srflx|prflx|relay>
 *     [raddr <ip> rport <port>] [<extension name> <value>]…
 *
 * Checked strictly enough that the ICE agent can rely on the shape (token kinds, IPs, ports,
 * ranges), and kept verbatim. Of the extensions, `raddr`/`rport` (both or neither), `tcptype`
 * and `ufrag` are checked; others (`generation`, `network-id`, …) are accepted as name-value pairs.
 * Unlike a full SDP parser we take no hostnames (mDNS `.local` candidates): Firezone peers send IPs.
 */

const FOUNDATION_RE = /^candidate:([A-Za-z0-9+/]{1,32})$/;
const DIGITS_RE = /^[0-9]+$/;
const TOKEN_RE = /^[\x21-\x7e]+$/;
const CANDIDATE_TYPES = new Set(['host', 'srflx', 'prflx', 'relay']);
const TCP_TYPES = new Set(['active', 'passive', 'so']);
/** RFC 8839 §5.1: component-id is 1 to 256; priority is a 32-bit unsigned integer (RFC 8445 §5.1.2). */
const MAX_COMPONENT = 256;
const MAX_PRIORITY = 0xffff_ffff;

/** Why `s` is not an ICE candidate, or `undefined` if it is one. */
export function iceCandidateProblem(s: string): string | undefined {
  const t = s.split(' ');
  if (t.length < 8) return `${t.length} space-separated tokens, at least 8 expected`;
  if (t.some((x) => !TOKEN_RE.test(x)))
    return 'empty or non-printable token (tokens are separated by one space)';
  if (!FOUNDATION_RE.test(t[0]!))
    return "it does not start with 'candidate:' and a foundation of 1 to 32 characters";
  const component = integer(t[1]!, MAX_COMPONENT);
  if (component === undefined || component < 1) return `component ${show(t[1])} is not 1 to ${MAX_COMPONENT}`;
  const transport = t[2]!.toLowerCase();
  if (transport !== 'udp' && transport !== 'tcp') return `transport ${show(t[2])} is not udp or tcp`;
  if (integer(t[3]!, MAX_PRIORITY) === undefined)
    return `priority ${show(t[3])} is not a 32-bit unsigned integer`;
  if (!parseIp(t[4]!)) return `address ${show(t[4])} is not an IP address`;
  if (parsePort(t[5]!) === undefined) return `port ${show(t[5])} is not 0 to 65535`;
  if (t[6] !== 'typ') return `expected 'typ' after the port, got ${show(t[6])}`;
  if (!CANDIDATE_TYPES.has(t[7]!)) return `candidate type ${show(t[7])} is not host, srflx, prflx or relay`;
  if ((t.length - 8) % 2 !== 0) return 'the attributes after the type are not name-value pairs';
  const seen = new Set<string>();
  for (let i = 8; i < t.length; i += 2) {
    const name = t[i]!;
    const value = t[i + 1]!;
    if (seen.has(name)) return `attribute ${show(name)} appears twice`;
    seen.add(name);
    if (name === 'raddr' && !parseIp(value)) return `raddr ${show(value)} is not an IP address`;
    if (name === 'rport' && parsePort(value) === undefined) return `rport ${show(value)} is not 0 to 65535`;
    if (name === 'tcptype' && !TCP_TYPES.has(value))
      return `tcptype ${show(value)} is not active, passive or so`;
  }
  if (seen.has('raddr') !== seen.has('rport')) return 'raddr and rport must come together';
  return undefined;
}

function integer(s: string, max: number): number | undefined {
  if (!DIGITS_RE.test(s) || s.length > 10) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
}

const candidateEntry = z.unknown().transform((v): string | Skip => {
  if (typeof v !== 'string') return new Skip(`${show(v)} is not an ICE candidate string; ignored`);
  const why = iceCandidateProblem(v);
  return why === undefined ? v : new Skip(`${show(v)} is not an ICE candidate (${why}); ignored`);
});

/** `candidates`: a list whose unparseable entries are skipped one by one (§2.6, `VecSkipError`). */
export const candidateList = listWithSkips('a list of ICE candidate strings', candidateEntry);
