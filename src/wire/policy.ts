import type { ResourceId } from './ids.js';
import type { IpPrefix } from './ip/prefix.js';

/**
 * Access policy as the portal describes it (`spec/portal-protocol.md` §4.2) and the standalone
 * policy file repeats: resources with port filters, granted to a client with an optional expiry.
 */

/** One filter entry: an inclusive TCP/UDP port range, or "ICMP allowed". */
export type Filter =
  | { readonly protocol: 'tcp' | 'udp'; readonly portStart: number; readonly portEnd: number }
  | { readonly protocol: 'icmp' };

/** A resource. An empty `filters` list permits every protocol and port (§4.2). */
export type Resource =
  | {
      readonly type: 'cidr';
      readonly id: ResourceId;
      readonly name: string;
      readonly address: IpPrefix;
      readonly filters: readonly Filter[];
    }
  | {
      readonly type: 'dns';
      readonly id: ResourceId;
      readonly name: string;
      readonly pattern: string;
      readonly filters: readonly Filter[];
    }
  | { readonly type: 'internet'; readonly id: ResourceId };

/** A resource granted to one client until `expiresAtMs` (wall-clock ms since the epoch), or forever. */
export interface Grant {
  readonly resource: Resource;
  readonly expiresAtMs: number | undefined;
}

/** The DNS-resource proxy ranges the Client picks proxy IPs from (`spec/gateway-dataplane.md` §1). */
export const PROXY_RANGE_V4 = {
  address: Uint8Array.of(100, 96, 0, 0),
  prefixLength: 11,
} as const satisfies IpPrefix;
export const PROXY_RANGE_V6 = {
  address: Uint8Array.of(0xfd, 0x00, 0x20, 0x21, 0x11, 0x11, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0),
  prefixLength: 107,
} as const satisfies IpPrefix;
/** The in-tunnel DNS server's port on the gateway's tunnel addresses (§7). */
export const TUN_DNS_PORT = 53535;
/** The tunnel ranges Client and Gateway tunnel IPs come from. */
export const TUNNEL_RANGE_V4 = {
  address: Uint8Array.of(100, 64, 0, 0),
  prefixLength: 11,
} as const satisfies IpPrefix;
export const TUNNEL_RANGE_V6 = {
  address: Uint8Array.of(0xfd, 0x00, 0x20, 0x21, 0x11, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
  prefixLength: 107,
} as const satisfies IpPrefix;

/** True when `addr[off, off+len)` lies inside `prefix` (same family). */
export function prefixContains(prefix: IpPrefix, addr: Uint8Array, off: number, len: number): boolean {
  if (prefix.address.length !== len) return false;
  const full = prefix.prefixLength >> 3;
  for (let i = 0; i < full; i++) if (addr[off + i] !== prefix.address[i]) return false;
  const rest = prefix.prefixLength & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (addr[off + full]! & mask) === (prefix.address[full]! & mask);
}
