import type { z } from 'zod';
import type { ClientId, ResourceId } from '../ids.js';
import { err, ok, type Result } from '../result.js';
import { candidateList } from './ice-candidate.js';
import { relayId, relayList } from './relay.js';
import { resourceSchema } from './resource.js';
import {
  domain,
  field,
  Invalid,
  iceCredentials,
  ip,
  ipv4,
  ipv6,
  key,
  list,
  object,
  optionalUnixSeconds,
  type Path,
  PORTAL_CODE,
  type SkippedEntry,
  show,
  text,
  under,
  unixSeconds,
  uuid,
  type WithSkips,
} from './schemas.js';
import type { DecodedPortalMessage, PortalError, PortalErrorCode, PortalMessage } from './types.js';

/**
 * Decodes the payload of a portal → gateway event (`spec/portal-protocol.md` §2) into a
 * `PortalMessage`.
 *
 * - Input: the `event` and `payload` of a Phoenix push (`decodeFrame`'s `kind: 'push'`).
 * - Output: the message and the human lines for list entries left out (`skipped`), or a
 *   `PortalError`: `portal.unsupported-event` for any other event (newer portals'
 *   `create_authorization`, gateway → portal events, Phoenix control events), `portal.invalid`
 *   with the JSON path of the first bad field, `portal.bad-port-range` for an empty port range.
 * - Never throws; never puts key material, passwords or refs in a message. Unknown extra fields
 *   are ignored, as the reference does (§2).
 */
export function decodePortalMessage(
  event: string,
  payload: unknown,
): Result<DecodedPortalMessage, PortalError> {
  const schema = MESSAGES.get(event);
  if (schema === undefined) return err({ code: 'portal.unsupported-event', message: unsupported(event) });
  const r = schema.safeParse(payload);
  if (!r.success) return err(portalError(event, r.error.issues));
  return ok({ message: r.data.value, skipped: r.data.skipped.map(skippedLine) });
}

/** The portal → gateway events this gateway handles (§0, #7–#16). */
export const PORTAL_EVENTS = [
  'init',
  'authorize_flow',
  'request_connection',
  'allow_access',
  'reject_access',
  'ice_candidates',
  'invalidate_ice_candidates',
  'relays_presence',
  'resource_updated',
  'access_authorization_expiry_updated',
] as const satisfies readonly PortalMessage['type'][];

// ---------------------------------------------------------------------------------------------
// Shared parts.

const clientId = uuid<ClientId>('client id');
const resourceId = uuid<ResourceId>('resource id');
/** Echoed verbatim to the portal; a signed token, so never shown. */
const ref = text('an opaque ref (a string)', { secret: true });
const publicKey = key('WireGuard public key');
const presharedKey = key('WireGuard preshared key');

/** `{name, proxy_ips}` (`ResolveRequest`): a DNS resource's concrete name and the client's proxy IPs. */
const domainRequest = object('a domain object with name and proxy_ips', {
  name: domain,
  proxy_ips: list('a list of proxy IP addresses', ip),
})
  .nullish()
  .transform((d) => (d == null ? undefined : { name: d.name, proxyIps: d.proxy_ips }));

const payload = (event: string) => `an object (the ${event} payload)`;

const noSkips = (message: PortalMessage): WithSkips<PortalMessage> => ({ value: message, skipped: [] });

// ---------------------------------------------------------------------------------------------
// The messages.

/** §2.1. `config` is required but ignored; `relays` and `authorizations` default to empty. */
const init = object(payload('init'), {
  interface: object('an interface object with ipv4 and ipv6', { ipv4, ipv6 }),
  config: object('a config object', {}),
  relays: relayList.optional(),
  account_slug: field('an account slug (a string) or null', (v) =>
    v === null ? undefined : typeof v === 'string' ? v : new Invalid(),
  ).optional(),
  authorizations: list(
    'a list of authorizations',
    object('an authorization object with client_id, resource_id and expires_at', {
      client_id: clientId,
      resource_id: resourceId,
      expires_at: unixSeconds,
    }),
  ).optional(),
}).transform(
  (p): WithSkips<PortalMessage> => ({
    value: {
      type: 'init',
      interface: { ipv4: p.interface.ipv4, ipv6: p.interface.ipv6 },
      relays: p.relays?.value ?? [],
      accountSlug: p.account_slug,
      authorizations: (p.authorizations ?? []).map((a) => ({
        clientId: a.client_id,
        resourceId: a.resource_id,
        expiresAtMs: a.expires_at,
      })),
    },
    skipped: under(['relays'], p.relays?.skipped ?? []),
  }),
);

/** §2.2. */
const authorizeFlow = object(payload('authorize_flow'), {
  ref,
  resource: resourceSchema,
  client: object('a client object with id, public_key, preshared_key, ipv4 and ipv6', {
    id: clientId,
    public_key: publicKey,
    preshared_key: presharedKey,
    ipv4,
    ipv6,
  }),
  client_ice_credentials: iceCredentials("the client's ICE credentials"),
  gateway_ice_credentials: iceCredentials("the gateway's ICE credentials"),
  expires_at: optionalUnixSeconds,
}).transform(
  (p): WithSkips<PortalMessage> => ({
    value: {
      type: 'authorize_flow',
      ref: p.ref,
      resource: p.resource.value,
      client: {
        id: p.client.id,
        publicKey: p.client.public_key,
        presharedKey: p.client.preshared_key,
        ipv4: p.client.ipv4,
        ipv6: p.client.ipv6,
      },
      clientIce: p.client_ice_credentials,
      gatewayIce: p.gateway_ice_credentials,
      expiresAtMs: p.expires_at,
    },
    skipped: under(['resource'], p.resource.skipped),
  }),
);

/** §2.3 (legacy). `client.peer.persistent_keepalive` and a top-level `relays` are ignored. */
const requestConnection = object(payload('request_connection'), {
  ref,
  resource: resourceSchema,
  client: object('a client object with id, payload and peer', {
    id: clientId,
    payload: object('a client payload object with ice_parameters', {
      ice_parameters: iceCredentials("the client's ICE parameters"),
      domain: domainRequest,
    }),
    peer: object('a peer object with public_key, preshared_key, ipv4 and ipv6', {
      public_key: publicKey,
      preshared_key: presharedKey,
      ipv4,
      ipv6,
    }),
  }),
  expires_at: optionalUnixSeconds,
}).transform(
  (p): WithSkips<PortalMessage> => ({
    value: {
      type: 'request_connection',
      ref: p.ref,
      resource: p.resource.value,
      clientId: p.client.id,
      clientIce: p.client.payload.ice_parameters,
      domain: p.client.payload.domain,
      peer: {
        publicKey: p.client.peer.public_key,
        presharedKey: p.client.peer.preshared_key,
        ipv4: p.client.peer.ipv4,
        ipv6: p.client.peer.ipv6,
      },
      expiresAtMs: p.expires_at,
    },
    skipped: under(['resource'], p.resource.skipped),
  }),
);

/** §2.4 (legacy). `payload` may be null or absent (`Option<ResolveRequest>`). */
const allowAccess = object(payload('allow_access'), {
  ref,
  client_id: clientId,
  resource: resourceSchema,
  expires_at: optionalUnixSeconds,
  payload: domainRequest,
  client_ipv4: ipv4,
  client_ipv6: ipv6,
}).transform(
  (p): WithSkips<PortalMessage> => ({
    value: {
      type: 'allow_access',
      ref: p.ref,
      clientId: p.client_id,
      resource: p.resource.value,
      expiresAtMs: p.expires_at,
      domain: p.payload,
      clientIpv4: p.client_ipv4,
      clientIpv6: p.client_ipv6,
    },
    skipped: under(['resource'], p.resource.skipped),
  }),
);

/** §2.5. */
const rejectAccess = object(payload('reject_access'), {
  client_id: clientId,
  resource_id: resourceId,
}).transform((p) => noSkips({ type: 'reject_access', clientId: p.client_id, resourceId: p.resource_id }));

/** §2.6: each unparseable candidate is skipped on its own. */
const iceCandidates = (type: 'ice_candidates' | 'invalidate_ice_candidates') =>
  object(payload(type), { client_id: clientId, candidates: candidateList }).transform(
    (p): WithSkips<PortalMessage> => ({
      value: { type, clientId: p.client_id, candidates: p.candidates.value },
      skipped: under(['candidates'], p.candidates.skipped),
    }),
  );

/** §2.7: both fields required. */
const relaysPresence = object(payload('relays_presence'), {
  disconnected_ids: list('a list of relay ids', relayId),
  connected: relayList,
}).transform(
  (p): WithSkips<PortalMessage> => ({
    value: { type: 'relays_presence', disconnectedIds: p.disconnected_ids, connected: p.connected.value },
    skipped: under(['connected'], p.connected.skipped),
  }),
);

/** §2.8: the payload is the resource description itself. */
const resourceUpdated = resourceSchema.transform(
  (r): WithSkips<PortalMessage> => ({
    value: { type: 'resource_updated', resource: r.value },
    skipped: r.skipped,
  }),
);

/** §2.9: `expires_at` required. */
const expiryUpdated = object(payload('access_authorization_expiry_updated'), {
  client_id: clientId,
  resource_id: resourceId,
  expires_at: unixSeconds,
}).transform((p) =>
  noSkips({
    type: 'access_authorization_expiry_updated',
    clientId: p.client_id,
    resourceId: p.resource_id,
    expiresAtMs: p.expires_at,
  }),
);

const MESSAGES: ReadonlyMap<string, z.ZodType<WithSkips<PortalMessage>>> = new Map<
  (typeof PORTAL_EVENTS)[number],
  z.ZodType<WithSkips<PortalMessage>>
>([
  ['init', init],
  ['authorize_flow', authorizeFlow],
  ['request_connection', requestConnection],
  ['allow_access', allowAccess],
  ['reject_access', rejectAccess],
  ['ice_candidates', iceCandidates('ice_candidates')],
  ['invalidate_ice_candidates', iceCandidates('invalidate_ice_candidates')],
  ['relays_presence', relaysPresence],
  ['resource_updated', resourceUpdated],
  ['access_authorization_expiry_updated', expiryUpdated],
]);

// ---------------------------------------------------------------------------------------------
// Errors and skipped lines.

/** Events we know of but do not take as portal → gateway messages, with the reason. */
const NOT_OURS: ReadonlyMap<string, string> = new Map([
  [
    'create_authorization',
    'it is authorize_flow as the newer /gateway/v2 endpoint names it (spec §9); this gateway speaks the /gateway endpoint',
  ],
  ...[
    'flow_authorized',
    'connection_ready',
    'broadcast_ice_candidates',
    'broadcast_invalidated_ice_candidates',
    'authorization_created',
    'no_relays',
    'set_snownet_capabilities',
    'phx_join',
    'phx_leave',
    'heartbeat',
  ].map((e): [string, string] => [e, 'it is a gateway → portal event']),
  ...['phx_reply', 'phx_error', 'phx_close', 'disconnect'].map((e): [string, string] => [
    e,
    'it is a Phoenix control frame (decodeFrame handles those), not a portal message',
  ]),
]);

function unsupported(event: unknown): string {
  const why = typeof event === 'string' ? NOT_OURS.get(event) : undefined;
  return `unsupported event ${show(event)}: ${why ?? `expected one of ${PORTAL_EVENTS.join(', ')}`}`;
}

function portalError(event: string, issues: readonly z.core.$ZodIssue[]): PortalError {
  // safeParse fails only with at least one issue.
  const first = issues[0]!;
  const path = formatPath(['payload', ...first.path.map((p) => (typeof p === 'symbol' ? String(p) : p))]);
  const more =
    issues.length === 1 ? '' : ` (and ${issues.length - 1} more problem${issues.length === 2 ? '' : 's'})`;
  return { code: portalCode(first), message: `${event}: ${path}: ${first.message}${more}`, path };
}

function portalCode(issue: z.core.$ZodIssue): PortalErrorCode {
  return issue.code === 'custom' && issue.params?.[PORTAL_CODE] === 'portal.bad-port-range'
    ? 'portal.bad-port-range'
    : 'portal.invalid';
}

function skippedLine(s: SkippedEntry): string {
  return `${formatPath(['payload', ...s.path])}: ${s.why}`;
}

/** `payload.relays[1].addr`. */
function formatPath(path: Path): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}
