import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { parseUuid } from '../../wire/ids.js';
import { formatIp, parseIpv4, parseIpv6 } from '../../wire/ip/address.js';
import { formatPrefix, parsePrefix } from '../../wire/ip/prefix.js';
import { parseKey } from '../../wire/keys.js';
import { prefixContains, TUNNEL_RANGE_V4, TUNNEL_RANGE_V6 } from '../../wire/policy.js';
import { PortalPolicyError } from './errors.js';

/**
 * The development portal's policy file: one account with its sites, resources, clients and TURN
 * relays. Gateways are not listed: they are identified when they connect (site by token, row by
 * `external_id`, `spec/portal-protocol.md` §1.3), as on the real portal.
 *
 * ```json
 * {
 *   "accountSlug": "acme",
 *   "sites": [
 *     { "id": "5f1c2a43-0d4e-4f59-9c7e-3b3f1e2d9a10", "name": "hq", "gatewayTokens": ["gw-token-hq"] }
 *   ],
 *   "resources": [
 *     { "id": "1844956a-9aca-4bf4-903b-27c7ebf18666", "siteId": "5f1c2a43-0d4e-4f59-9c7e-3b3f1e2d9a10",
 *       "type": "cidr", "name": "Office LAN", "address": "172.20.0.0/16",
 *       "filters": [{ "protocol": "tcp", "port_range_start": 80, "port_range_end": 443 }, { "protocol": "icmp" }] },
 *     { "id": "ec18cd0b-11ac-47e4-80a4-af6ac3fae473", "siteId": "5f1c2a43-0d4e-4f59-9c7e-3b3f1e2d9a10",
 *       "type": "dns", "name": "internal apps", "address": "*.corp.example", "filters": [] },
 *     { "id": "0b6a1d55-4a53-4b43-9d1e-2c3a1d9c7e11", "siteId": "5f1c2a43-0d4e-4f59-9c7e-3b3f1e2d9a10",
 *       "type": "internet", "name": "Internet" }
 *   ],
 *   "clients": [
 *     { "id": "8e370367-64b2-4e27-83e2-27ce03bcce23", "token": "client-token-alice",
 *       "publicKey": "DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0=",
 *       "ipv4": "100.88.3.41", "ipv6": "fd00:2021:1111::9:1c0d", "version": "1.4.0",
 *       "resources": ["1844956a-9aca-4bf4-903b-27c7ebf18666",
 *                     { "id": "ec18cd0b-11ac-47e4-80a4-af6ac3fae473", "expiresAt": 1893456000 }],
 *       "pskBase": "GSe3SsFmtndY5G4/q4P0HlP9oMDAA79fIIBbJ+nQvZ0=" }
 *   ],
 *   "relays": [
 *     { "id": "41529b7d-f3e1-4b26-b01d-e34919d76e1b", "addr": ["203.0.113.7:3478", "[2001:db8::7]:3478"],
 *       "secret": "the coturn static-auth-secret" }
 *   ]
 * }
 * ```
 *
 * | Key | Meaning |
 * |---|---|
 * | `accountSlug` | required; sent as `init.account_slug` |
 * | `sites[]` | `id` (UUID), `name`, `gatewayTokens` (the tokens gateways of this site connect with; unique over all sites and clients) |
 * | `resources[]` | `id` (UUID), `siteId` (a site's id), `type` `cidr` / `dns` / `internet`, `name` (default: the type); `cidr` and `dns` need `address` (a CIDR with zero host bits / a DNS name pattern) and `filters` in the portal's wire shape (`{protocol, port_range_start?, port_range_end?}`, §4.2) |
 * | `clients[]` | `id` (UUID), `token` (for `/client/websocket`), `publicKey` (WireGuard, base64), `ipv4` in 100.64.0.0/11, `ipv6` in fd00:2021:1111::/107, `version` (`1.4.0` by default; `1.3.x` selects the legacy `request_connection` flow, §2.3), `resources` (resource ids, or `{id, expiresAt}` with Unix seconds), `pskBase` (optional, base64 of 32 bytes; random per run when absent) |
 * | `relays[]` | `id` (UUID), `addr` (`"ip:port"`, `"[v6]:port"`, or a list of at most one IPv4 and one IPv6 address), `secret` (coturn's `static-auth-secret`) |
 *
 * `resources`, `clients` and `relays` default to `[]`. Unknown keys are errors. UUIDs are
 * accepted in any case and stored lower-case. Problems are reported one per line as
 * `<file>: <path>: <message>`; secrets (tokens, relay secrets, `pskBase`) are never echoed.
 */

export type PortalFilter =
  | { readonly protocol: 'tcp' | 'udp'; readonly port_range_start?: number; readonly port_range_end?: number }
  | { readonly protocol: 'icmp' };

export type PortalPolicyResource =
  | {
      readonly type: 'cidr' | 'dns';
      readonly id: string;
      readonly siteId: string;
      readonly name: string;
      /** A normalised CIDR (`cidr`) or a DNS name pattern (`dns`). */
      readonly address: string;
      readonly filters: readonly PortalFilter[];
    }
  | { readonly type: 'internet'; readonly id: string; readonly siteId: string; readonly name: string };

export interface PortalPolicySite {
  readonly id: string;
  readonly name: string;
  readonly gatewayTokens: readonly string[];
}

export interface PortalPolicyGrant {
  readonly id: string;
  /** Unix seconds; `undefined` = the portal's default flow lifetime. */
  readonly expiresAt: number | undefined;
}

export interface PortalPolicyClient {
  readonly id: string;
  readonly token: string;
  /** Base64, 44 characters. */
  readonly publicKey: string;
  /** Normalised address text. */
  readonly ipv4: string;
  readonly ipv6: string;
  readonly version: string;
  /** A 1.3.x client: its flows use `request_connection` / `allow_access` (§2.3, §2.4, §7.2). */
  readonly legacy: boolean;
  readonly resources: readonly PortalPolicyGrant[];
  readonly pskBase: Uint8Array | undefined;
}

export interface PortalPolicyRelay {
  readonly id: string;
  /** `ip:port` / `[ip6]:port`, IPv4 first (§4.4). */
  readonly addrs: readonly string[];
  readonly secret: string;
}

export interface PortalPolicy {
  readonly accountSlug: string;
  readonly sites: readonly PortalPolicySite[];
  readonly resources: readonly PortalPolicyResource[];
  readonly clients: readonly PortalPolicyClient[];
  readonly relays: readonly PortalPolicyRelay[];
}

export const DEFAULT_CLIENT_VERSION = '1.4.0';

/** Reads and validates a policy file; throws `PortalPolicyError` listing every problem. */
export async function loadPortalPolicy(path: string): Promise<PortalPolicy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new PortalPolicyError([`${path}: cannot read the policy file: ${(e as Error).message}`], {
      cause: e,
    });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PortalPolicyError([`${path}: not valid JSON: ${(e as Error).message}`], { cause: e });
  }
  return parsePortalPolicy(json, path);
}

// ---------------------------------------------------------------------------------------------

function custom(ctx: z.core.$RefinementCtx, input: unknown, message: string, path?: PropertyKey[]): never {
  ctx.addIssue({ code: 'custom', input, message, ...(path ? { path } : {}) });
  return z.NEVER;
}

function show(v: unknown): string {
  return typeof v === 'string' ? `'${v.length > 80 ? `${v.slice(0, 80)}…` : v}'` : JSON.stringify(v);
}

const uuid = z
  .string()
  .transform((s, ctx) => parseUuid(s) ?? custom(ctx, s, `${show(s)} is not a UUID (8-4-4-4-12 hex digits)`));

const secret = (what: string) => z.string().min(1, `${what} must not be empty`);

const port = z.int().min(0).max(65535);
const portFilter = (protocol: 'tcp' | 'udp') =>
  z
    .strictObject({
      protocol: z.literal(protocol),
      port_range_start: port.optional(),
      port_range_end: port.optional(),
    })
    .transform((f, ctx): PortalFilter => {
      const start = f.port_range_start ?? 0;
      const end = f.port_range_end ?? 65535;
      if (start > end) return custom(ctx, f, `port range ${start}-${end} is empty: start exceeds end`);
      return {
        protocol,
        ...(f.port_range_start === undefined ? {} : { port_range_start: f.port_range_start }),
        ...(f.port_range_end === undefined ? {} : { port_range_end: f.port_range_end }),
      };
    });
const filter = z.discriminatedUnion('protocol', [
  portFilter('tcp'),
  portFilter('udp'),
  z.strictObject({ protocol: z.literal('icmp') }),
]);

const DNS_PATTERN_RE = /^(?:[A-Za-z0-9*?-]+\.)*[A-Za-z0-9-]+$/;

const resource = z.discriminatedUnion('type', [
  z
    .strictObject({
      id: uuid,
      siteId: uuid,
      type: z.literal('cidr'),
      name: z.string().min(1).optional(),
      address: z.string(),
      filters: z.array(filter),
    })
    .transform((r, ctx): PortalPolicyResource => {
      const p = parsePrefix(r.address);
      if (!p.ok) return custom(ctx, r.address, p.error.message, ['address']);
      return { ...r, name: r.name ?? 'cidr', address: formatPrefix(p.value) };
    }),
  z
    .strictObject({
      id: uuid,
      siteId: uuid,
      type: z.literal('dns'),
      name: z.string().min(1).optional(),
      address: z.string(),
      filters: z.array(filter),
    })
    .transform((r, ctx): PortalPolicyResource => {
      if (!DNS_PATTERN_RE.test(r.address) || r.address.length > 253) {
        return custom(
          ctx,
          r.address,
          `${show(r.address)} is not a DNS name pattern (labels of letters, digits, '-', '*', '?'; no wildcard in the last label)`,
          ['address'],
        );
      }
      return { ...r, name: r.name ?? 'dns' };
    }),
  z
    .strictObject({ id: uuid, siteId: uuid, type: z.literal('internet'), name: z.string().min(1).optional() })
    .transform((r): PortalPolicyResource => ({ ...r, name: r.name ?? 'Internet' })),
]);

const VERSION_RE = /^(\d{1,4})\.(\d{1,4})\.(\d{1,6})$/;

const client = z
  .strictObject({
    id: uuid,
    token: secret('token'),
    publicKey: z.string().transform((s, ctx) => {
      const k = parseKey(s);
      return k.ok ? s : custom(ctx, s, `${show(s)} is not a WireGuard public key: ${k.error.message}`);
    }),
    ipv4: z.string().transform((s, ctx) => {
      const a = parseIpv4(s);
      if (a === undefined) return custom(ctx, s, `${show(s)} is not an IPv4 address`);
      if (!prefixContains(TUNNEL_RANGE_V4, a, 0, 4))
        return custom(ctx, s, `${show(s)} is not in 100.64.0.0/11`);
      return formatIp(a);
    }),
    ipv6: z.string().transform((s, ctx) => {
      const a = parseIpv6(s);
      if (a === undefined) return custom(ctx, s, `${show(s)} is not an IPv6 address`);
      if (!prefixContains(TUNNEL_RANGE_V6, a, 0, 16)) {
        return custom(ctx, s, `${show(s)} is not in fd00:2021:1111::/107`);
      }
      return formatIp(a);
    }),
    version: z
      .string()
      .default(DEFAULT_CLIENT_VERSION)
      .transform((s, ctx) => {
        const m = VERSION_RE.exec(s);
        if (!m) return custom(ctx, s, `${show(s)} is not a version such as '1.4.0' or '1.3.14'`);
        if (Number(m[1]) === 1 && Number(m[2]) < 3) {
          return custom(ctx, s, `${show(s)}: clients older than 1.3.0 cannot use a 1.4 gateway`);
        }
        return s;
      }),
    resources: z
      .array(
        z.union([
          uuid.transform((id): PortalPolicyGrant => ({ id, expiresAt: undefined })),
          z
            .strictObject({ id: uuid, expiresAt: z.int().min(0).max(253_402_300_799).optional() })
            .transform((g): PortalPolicyGrant => ({ id: g.id, expiresAt: g.expiresAt })),
        ]),
      )
      .default([]),
    pskBase: z
      .string()
      .transform((s, ctx) => {
        const k = parseKey(s);
        return k.ok
          ? k.value
          : custom(ctx, s, `the value (not shown) is not base64 of 32 bytes: ${k.error.message}`);
      })
      .optional(),
  })
  .transform(
    (c): PortalPolicyClient => ({
      ...c,
      pskBase: c.pskBase,
      legacy: c.version.startsWith('1.3.'),
    }),
  );

/** `ip:port` or `[ip6]:port` → normalised text and family, or a reason. */
function parseSocketAddress(s: string): { text: string; family: 4 | 6 } | string {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]]+):(\d{1,5})$/.exec(s);
  if (!m) return `${show(s)} is not ip:port (IPv6 in brackets: [2001:db8::7]:3478)`;
  const p = Number(m[2]);
  if (p < 1 || p > 65535) return `${show(s)}: port ${p} is not from 1 to 65535`;
  const bracketed = s.startsWith('[');
  const ip = bracketed ? parseIpv6(m[1]!) : parseIpv4(m[1]!);
  if (ip === undefined) return `${show(s)}: ${show(m[1])} is not an IPv${bracketed ? 6 : 4} address`;
  return bracketed
    ? { text: `[${formatIp(ip)}]:${p}`, family: 6 }
    : { text: `${formatIp(ip)}:${p}`, family: 4 };
}

const relay = z
  .strictObject({
    id: uuid,
    addr: z.union([z.string(), z.array(z.string()).min(1).max(2)]),
    secret: secret('secret'),
  })
  .transform((r, ctx): PortalPolicyRelay => {
    const list = typeof r.addr === 'string' ? [r.addr] : r.addr;
    const parsed: { text: string; family: 4 | 6 }[] = [];
    for (const a of list) {
      const p = parseSocketAddress(a);
      if (typeof p === 'string') return custom(ctx, a, p, ['addr']);
      if (parsed.some((q) => q.family === p.family)) {
        return custom(ctx, a, `at most one IPv${p.family} address per relay`, ['addr']);
      }
      parsed.push(p);
    }
    parsed.sort((a, b) => a.family - b.family);
    return { id: r.id, addrs: parsed.map((p) => p.text), secret: r.secret };
  });

/**
 * Validates one relay definition in the policy file's shape (`{id, addr, secret}`), for relays
 * announced at run time (`DevPortal.relaysPresence`). Returns the problems instead of throwing.
 */
export function parseRelaySpec(
  value: unknown,
): { ok: true; value: PortalPolicyRelay } | { ok: false; problems: string[] } {
  const r = relay.safeParse(value);
  if (r.success) return { ok: true, value: r.data };
  return { ok: false, problems: r.error.issues.map((i) => `${pathText(i.path)}: ${i.message}`) };
}

const site = z.strictObject({
  id: uuid,
  name: z.string().min(1),
  gatewayTokens: z.array(secret('a gateway token')).default([]),
});

const policySchema = z.strictObject({
  accountSlug: z.string().min(1).max(100),
  sites: z.array(site),
  resources: z.array(resource).default([]),
  clients: z.array(client).default([]),
  relays: z.array(relay).default([]),
});

function pathText(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out === '' ? '' : '.'}${String(p)}`;
  return out === '' ? '(top level)' : out;
}

/**
 * Validates a parsed policy file (pure). `source` names the file in messages. Throws
 * `PortalPolicyError` listing every problem: first the shape of each entry, then, once the shape
 * is right, the cross references (unique ids, tokens, keys and addresses; known sites and
 * resources).
 */
export function parsePortalPolicy(json: unknown, source = 'policy'): PortalPolicy {
  const r = policySchema.safeParse(json);
  if (!r.success) {
    throw new PortalPolicyError(r.error.issues.map((i) => `${source}: ${pathText(i.path)}: ${i.message}`));
  }
  const p = r.data;
  const problems: string[] = [];
  const problem = (path: readonly PropertyKey[], message: string) =>
    problems.push(`${source}: ${pathText(path)}: ${message}`);

  const unique = <T>(list: readonly T[], key: (t: T) => string, section: string, field: string) => {
    const seen = new Map<string, string>();
    list.forEach((t, i) => {
      const k = key(t);
      const first = seen.get(k);
      if (first !== undefined) problem([section, i, field], `${show(k)} is already used by ${first}`);
      else seen.set(k, `${section}[${i}].${field}`);
    });
  };
  unique(p.sites, (s) => s.id, 'sites', 'id');
  unique(p.resources, (s) => s.id, 'resources', 'id');
  unique(p.clients, (c) => c.id, 'clients', 'id');
  unique(p.clients, (c) => c.publicKey, 'clients', 'publicKey');
  unique(p.clients, (c) => c.ipv4, 'clients', 'ipv4');
  unique(p.clients, (c) => c.ipv6, 'clients', 'ipv6');
  unique(p.relays, (r) => r.id, 'relays', 'id');

  // Tokens: one namespace for gateways and clients, so a token names exactly one thing.
  const tokens = new Map<string, string>();
  p.sites.forEach((s, i) => {
    s.gatewayTokens.forEach((t, j) => {
      const first = tokens.get(t);
      if (first !== undefined)
        problem(['sites', i, 'gatewayTokens', j], `the token (not shown) is already used by ${first}`);
      else tokens.set(t, `sites[${i}].gatewayTokens[${j}]`);
    });
  });
  p.clients.forEach((c, i) => {
    const first = tokens.get(c.token);
    if (first !== undefined)
      problem(['clients', i, 'token'], `the token (not shown) is already used by ${first}`);
    else tokens.set(c.token, `clients[${i}].token`);
  });

  const siteIds = new Set(p.sites.map((s) => s.id));
  p.resources.forEach((res, i) => {
    if (!siteIds.has(res.siteId))
      problem(['resources', i, 'siteId'], `${show(res.siteId)} is not the id of any site`);
  });
  const resourceIds = new Set(p.resources.map((res) => res.id));
  p.clients.forEach((c, i) => {
    const seen = new Set<string>();
    c.resources.forEach((g, j) => {
      if (!resourceIds.has(g.id))
        problem(['clients', i, 'resources', j], `${show(g.id)} is not the id of any resource`);
      else if (seen.has(g.id)) problem(['clients', i, 'resources', j], `${show(g.id)} is listed twice`);
      seen.add(g.id);
    });
  });

  if (problems.length > 0) throw new PortalPolicyError(problems);
  return p;
}
