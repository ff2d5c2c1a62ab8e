import { parseUuid, type ResourceId } from '../ids.js';
import { formatIp, parseIp } from '../ip/address.js';
import { IPPROTO_RESERVED_255, IPV6_HEADER_BYTES, MAX_IP_PACKET_BYTES } from '../ip/constants.js';
import type { IpPacket } from '../ip/packet.js';
import type { Result, WireError } from '../result.js';

/**
 * Firezone's in-tunnel control events (`spec/snownet.md` §4, `spec/gateway-dataplane.md` §6.1).
 *
 * On the wire: an IPv6 packet from `::` to `::`, next header 255, hop limit 0, whose payload is
 * an 8-byte header (byte 0 = event type, bytes 1–7 zero on send, ignored on receipt) followed by
 * a UTF-8 JSON body (empty for Goodbye). The whole packet is at most 1280 bytes.
 * The channel is unreliable: Clients retransmit AssignedIps every ≥ 2 s until they see a
 * DomainStatus, so handling must be idempotent.
 */

export const P2P_HEADER_BYTES = 8;
export const P2P_TYPE_ASSIGNED_IPS = 0;
export const P2P_TYPE_DOMAIN_STATUS = 1;
export const P2P_TYPE_GOODBYE = 2;
/** Largest event body: 1280 − 40 (IPv6) − 8 (event header). */
export const P2P_MAX_BODY_BYTES = MAX_IP_PACKET_BYTES - IPV6_HEADER_BYTES - P2P_HEADER_BYTES;
/** RFC 1035 §2.3.4 limits, for the textual form without the trailing dot. */
const MAX_DOMAIN_CHARS = 253;
const MAX_LABEL_CHARS = 63;

export type DomainStatus = 'Active' | 'Inactive';

export type P2pControlEvent =
  | {
      readonly type: 'assigned-ips';
      readonly resource: ResourceId;
      readonly domain: string;
      /** 4- or 16-byte addresses, in the order the Client sent them. */
      readonly proxyIps: readonly Uint8Array[];
    }
  | {
      readonly type: 'domain-status';
      readonly resource: ResourceId;
      readonly domain: string;
      readonly status: DomainStatus;
    }
  | { readonly type: 'goodbye' };

export type P2pErrorCode =
  | 'p2p.not-control'
  | 'p2p.truncated'
  | 'p2p.unknown-type'
  | 'p2p.bad-json'
  | 'p2p.bad-resource'
  | 'p2p.bad-domain'
  | 'p2p.bad-proxy-ips'
  | 'p2p.too-large';

export type P2pError = WireError<P2pErrorCode>;

function p2pError(code: P2pErrorCode, message: string): P2pError {
  return { code, message };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** Decodes the control event carried by `p` (which must satisfy `p.isP2pControl`). */
export function decodeP2pControl(p: IpPacket): Result<P2pControlEvent, P2pError> {
  if (!p.isP2pControl) return fail('p2p.not-control', 'not an IPv6 :: → :: packet with next header 255');
  const start = p.off + IPV6_HEADER_BYTES;
  const end = p.off + p.length;
  if (end - start < P2P_HEADER_BYTES)
    return fail('p2p.truncated', 'control payload shorter than its 8-byte header');
  const type = p.buf[start]!;
  if (type === P2P_TYPE_GOODBYE) return { ok: true, value: { type: 'goodbye' } };
  if (type !== P2P_TYPE_ASSIGNED_IPS && type !== P2P_TYPE_DOMAIN_STATUS) {
    return fail('p2p.unknown-type', `unknown control event type ${type}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(utf8.decode(p.buf.subarray(start + P2P_HEADER_BYTES, end)));
  } catch (e) {
    return fail('p2p.bad-json', `control event body is not UTF-8 JSON: ${(e as Error).message}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return fail('p2p.bad-json', 'control event body is not a JSON object');
  }
  const o = body as Record<string, unknown>;
  const resource = parseUuid(o.resource);
  if (!resource) return fail('p2p.bad-resource', `"resource" is not a UUID: ${preview(o.resource)}`);
  const domain = normaliseDomain(o.domain);
  if (domain === undefined)
    return fail('p2p.bad-domain', `"domain" is not a domain name: ${preview(o.domain)}`);
  if (type === P2P_TYPE_DOMAIN_STATUS) {
    // Unknown status strings read as Inactive (`spec/snownet.md` §4).
    const status: DomainStatus = o.status === 'Active' ? 'Active' : 'Inactive';
    return { ok: true, value: { type: 'domain-status', resource: resource as ResourceId, domain, status } };
  }
  if (!Array.isArray(o.proxy_ips)) return fail('p2p.bad-proxy-ips', '"proxy_ips" is not an array');
  const proxyIps: Uint8Array[] = [];
  for (const ip of o.proxy_ips) {
    const bytes = typeof ip === 'string' ? parseIp(ip) : undefined;
    if (!bytes) return fail('p2p.bad-proxy-ips', `"proxy_ips" holds a non-address: ${preview(ip)}`);
    proxyIps.push(bytes);
  }
  return { ok: true, value: { type: 'assigned-ips', resource: resource as ResourceId, domain, proxyIps } };
}

/**
 * Encodes `event` as a complete IPv6 control packet (a fresh buffer of exactly its length).
 * Fails with `p2p.too-large` if it would exceed 1280 bytes.
 */
export function encodeP2pControl(event: P2pControlEvent): Result<Uint8Array, P2pError> {
  let type: number;
  let body: Uint8Array;
  switch (event.type) {
    case 'goodbye':
      type = P2P_TYPE_GOODBYE;
      body = new Uint8Array(0);
      break;
    case 'domain-status':
      type = P2P_TYPE_DOMAIN_STATUS;
      body = utf8Encoder.encode(
        JSON.stringify({ resource: event.resource, domain: event.domain, status: event.status }),
      );
      break;
    case 'assigned-ips':
      type = P2P_TYPE_ASSIGNED_IPS;
      body = utf8Encoder.encode(
        JSON.stringify({
          resource: event.resource,
          domain: event.domain,
          proxy_ips: event.proxyIps.map((ip) => formatIp(ip)),
        }),
      );
      break;
  }
  if (body.length > P2P_MAX_BODY_BYTES) {
    return fail('p2p.too-large', `control event body of ${body.length} bytes exceeds ${P2P_MAX_BODY_BYTES}`);
  }
  const payload = P2P_HEADER_BYTES + body.length;
  const out = new Uint8Array(IPV6_HEADER_BYTES + payload);
  out[0] = 0x60;
  out[4] = payload >> 8;
  out[5] = payload & 0xff;
  out[6] = IPPROTO_RESERVED_255;
  out[7] = 0; // hop limit 0: never routable
  out[IPV6_HEADER_BYTES] = type;
  out.set(body, IPV6_HEADER_BYTES + P2P_HEADER_BYTES);
  return { ok: true, value: out };
}

/** Domain text without a trailing dot, or `undefined` if it is not a plausible DNS name. */
function normaliseDomain(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  const d = v.endsWith('.') ? v.slice(0, -1) : v;
  if (d.length === 0 || d.length > MAX_DOMAIN_CHARS) return undefined;
  for (const label of d.split('.')) {
    if (label.length === 0 || label.length > MAX_LABEL_CHARS) return undefined;
    // Printable ASCII without spaces: names reach us as the Client's DNS queries, which may hold
    // `_` (SRV) or anything a `*` wildcard of the resource matched.
    if (!/^[\x21-\x7e]+$/.test(label)) return undefined;
  }
  return d;
}

function preview(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function fail(code: P2pErrorCode, message: string): { ok: false; error: P2pError } {
  return { ok: false, error: p2pError(code, message) };
}
