import type { ClientId, RelayId, ResourceId } from '../ids.js';
import type { Resource } from '../policy.js';

/**
 * The portal's messages to a gateway (`spec/portal-protocol.md` §2–§4), decoded and validated.
 * Times are wall-clock milliseconds since the epoch (the wire carries Unix seconds); keys are 32
 * bytes; addresses are 4 or 16 bytes.
 */

export interface IceCredentials {
  readonly username: string;
  readonly password: string;
}

/** A TURN relay (§4.4); `stun` entries are accepted on the wire and dropped by the decoder. */
export interface Relay {
  readonly id: RelayId;
  /** One relay may have an IPv4 and an IPv6 address (consecutive entries with the same id). */
  readonly addresses: readonly { readonly ip: Uint8Array; readonly port: number }[];
  readonly username: string;
  readonly password: string;
  readonly expiresAtMs: number;
}

/** A current (1.4+) client as `authorize_flow` describes it (§4.3). */
export interface PortalClient {
  readonly id: ClientId;
  readonly publicKey: Uint8Array;
  readonly presharedKey: Uint8Array;
  readonly ipv4: Uint8Array;
  readonly ipv6: Uint8Array;
}

export interface Authorization {
  readonly clientId: ClientId;
  readonly resourceId: ResourceId;
  readonly expiresAtMs: number;
}

export type PortalMessage =
  | {
      readonly type: 'init';
      readonly interface: { readonly ipv4: Uint8Array; readonly ipv6: Uint8Array };
      readonly relays: readonly Relay[];
      readonly accountSlug: string | undefined;
      /** Absent on the wire means an empty list. */
      readonly authorizations: readonly Authorization[];
    }
  | {
      readonly type: 'authorize_flow';
      /** Opaque, echoed verbatim in `flow_authorized`. */
      readonly ref: string;
      readonly resource: Resource;
      readonly client: PortalClient;
      readonly clientIce: IceCredentials;
      readonly gatewayIce: IceCredentials;
      readonly expiresAtMs: number | undefined;
    }
  | {
      readonly type: 'request_connection';
      readonly ref: string;
      readonly resource: Resource;
      readonly clientId: ClientId;
      readonly clientIce: IceCredentials;
      /** DNS resources: the concrete name and the client's proxy IPs for it. */
      readonly domain: { readonly name: string; readonly proxyIps: readonly Uint8Array[] } | undefined;
      readonly peer: {
        readonly publicKey: Uint8Array;
        readonly presharedKey: Uint8Array;
        readonly ipv4: Uint8Array;
        readonly ipv6: Uint8Array;
      };
      readonly expiresAtMs: number | undefined;
    }
  | {
      readonly type: 'allow_access';
      readonly ref: string;
      readonly clientId: ClientId;
      readonly resource: Resource;
      readonly expiresAtMs: number | undefined;
      readonly domain: { readonly name: string; readonly proxyIps: readonly Uint8Array[] } | undefined;
      readonly clientIpv4: Uint8Array;
      readonly clientIpv6: Uint8Array;
    }
  | { readonly type: 'reject_access'; readonly clientId: ClientId; readonly resourceId: ResourceId }
  | {
      readonly type: 'ice_candidates' | 'invalidate_ice_candidates';
      readonly clientId: ClientId;
      readonly candidates: readonly string[];
    }
  | {
      readonly type: 'relays_presence';
      readonly disconnectedIds: readonly RelayId[];
      readonly connected: readonly Relay[];
    }
  | { readonly type: 'resource_updated'; readonly resource: Resource }
  | {
      readonly type: 'access_authorization_expiry_updated';
      readonly clientId: ClientId;
      readonly resourceId: ResourceId;
      readonly expiresAtMs: number;
    };

export type PortalMessageType = PortalMessage['type'];

export type PortalErrorCode =
  /** An event this gateway does not handle (newer portals, or gateway→portal events). */
  | 'portal.unsupported-event'
  /** A required field is missing or has the wrong type or value. */
  | 'portal.invalid'
  /** `port_range_start > port_range_end`. */
  | 'portal.bad-port-range';

export interface PortalError {
  readonly code: PortalErrorCode;
  readonly message: string;
  /** JSON path of the offending field, e.g. `payload.client.public_key`. */
  readonly path?: string;
}

/**
 * A decoded message plus what was skipped: where the reference drops a whole message for one
 * unknown list entry (resource type, filter protocol, relay type), we drop just that entry.
 */
export interface DecodedPortalMessage {
  readonly message: PortalMessage;
  readonly skipped: readonly string[];
}

/** The gateway's messages to the portal (§3). */
export type GatewayMessage =
  | { readonly event: 'flow_authorized'; readonly payload: { readonly ref: string } }
  | {
      readonly event: 'connection_ready';
      readonly payload: {
        readonly ref: string;
        readonly gateway_payload: {
          readonly ConnectionAccepted: { readonly ice_parameters: IceCredentials };
        };
      };
    }
  | {
      readonly event: 'broadcast_ice_candidates' | 'broadcast_invalidated_ice_candidates';
      readonly payload: { readonly client_ids: readonly string[]; readonly candidates: readonly string[] };
    };
