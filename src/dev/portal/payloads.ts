import { coturnCredentials, type IceCredentials, RELAY_CREDENTIAL_LIFETIME_S } from './credentials.js';
import type { PortalFilter, PortalPolicyRelay, PortalPolicyResource } from './policy.js';

/**
 * The JSON payloads the development portal sends, typed in their wire shape (snake_case, Unix
 * seconds, base64 keys, address text) and built by hand from the policy, exactly as
 * `spec/portal-protocol.md` §2 shows them. Independent of the gateway's decoder on purpose: the
 * two sides are checked against each other, not against one shared definition.
 */

/** A TURN server entry (§4.4). One per address family, same id and credentials. */
export interface RelayJson {
  readonly id: string;
  readonly type: 'turn';
  readonly addr: string;
  readonly username: string;
  readonly password: string;
  readonly expires_at: number;
}

/** A resource description as gateways receive it (§4.2). */
export type GatewayResourceJson =
  | {
      readonly id: string;
      readonly type: 'cidr' | 'dns';
      readonly name: string;
      readonly address: string;
      readonly filters: readonly PortalFilter[];
    }
  | { readonly id: string; readonly type: 'internet' };

/** A resource as the client channel's `init` lists it (small: the simulated client needs no more). */
export interface ClientResourceJson {
  readonly id: string;
  readonly type: 'cidr' | 'dns' | 'internet';
  readonly name: string;
  readonly address?: string;
}

export interface AuthorizationJson {
  readonly client_id: string;
  readonly resource_id: string;
  readonly expires_at: number;
}

/** §2.1; keys in the order Jason writes a small Elixir map (sorted), as in the spec's example. */
export interface InitJson {
  readonly account_slug: string;
  readonly authorizations: readonly AuthorizationJson[];
  readonly config: { readonly ipv4_masquerade_enabled: true; readonly ipv6_masquerade_enabled: true };
  readonly interface: { readonly ipv4: string; readonly ipv6: string };
  readonly relays: readonly RelayJson[];
}

/** §2.2. */
export interface AuthorizeFlowJson {
  readonly ref: string;
  readonly resource: GatewayResourceJson;
  readonly client: {
    readonly id: string;
    readonly public_key: string;
    readonly preshared_key: string;
    readonly ipv4: string;
    readonly ipv6: string;
  };
  readonly client_ice_credentials: IceCredentials;
  readonly gateway_ice_credentials: IceCredentials;
  readonly expires_at: number;
}

export interface DomainJson {
  readonly name: string;
  readonly proxy_ips: readonly string[];
}

/** §2.3 (legacy). */
export interface RequestConnectionJson {
  readonly ref: string;
  readonly expires_at: number;
  readonly resource: GatewayResourceJson;
  readonly client: {
    readonly id: string;
    readonly payload: { readonly ice_parameters: IceCredentials; readonly domain: DomainJson | null };
    readonly peer: {
      readonly persistent_keepalive: 25;
      readonly public_key: string;
      readonly preshared_key: string;
      readonly ipv4: string;
      readonly ipv6: string;
    };
  };
}

/** §2.4 (legacy). */
export interface AllowAccessJson {
  readonly ref: string;
  readonly client_id: string;
  readonly resource: GatewayResourceJson;
  readonly expires_at: number;
  readonly payload: DomainJson | null;
  readonly client_ipv4: string;
  readonly client_ipv6: string;
}

/** What the client channel pushes once the gateway authorized a flow. */
export interface FlowCreatedJson {
  readonly resource_id: string;
  readonly gateway_id: string;
  readonly site_id: string;
  readonly gateway_public_key: string;
  readonly gateway_ipv4: string;
  readonly gateway_ipv6: string;
  readonly preshared_key: string;
  readonly client_ice_credentials: IceCredentials;
  readonly gateway_ice_credentials: IceCredentials;
}

/**
 * Relay entries for one gateway or client (`user` = its id), with coturn REST credentials valid
 * 90 days from `nowMs` (§4.4). IPv4 entry first, then IPv6, both with the relay's id.
 */
export function renderRelays(relays: readonly PortalPolicyRelay[], user: string, nowMs: number): RelayJson[] {
  const expiresAt = Math.floor(nowMs / 1000) + RELAY_CREDENTIAL_LIFETIME_S;
  const out: RelayJson[] = [];
  for (const r of relays) {
    const { username, password } = coturnCredentials(r.secret, user, expiresAt);
    for (const addr of r.addrs)
      out.push({ id: r.id, type: 'turn', addr, username, password, expires_at: expiresAt });
  }
  return out;
}

/** §4.2: `internet` resources carry only `id` and `type`. */
export function renderGatewayResource(r: PortalPolicyResource): GatewayResourceJson {
  if (r.type === 'internet') return { id: r.id, type: 'internet' };
  return { id: r.id, type: r.type, name: r.name, address: r.address, filters: r.filters };
}

export function renderClientResource(r: PortalPolicyResource): ClientResourceJson {
  if (r.type === 'internet') return { id: r.id, type: r.type, name: r.name };
  return { id: r.id, type: r.type, address: r.address, name: r.name };
}
