import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { type core, z } from 'zod';
import { GatewayError } from '../../errors.js';
import type { ResourceId } from '../../wire/ids.js';
import { bytesEqual, formatIp, parseIpv4, parseIpv6 } from '../../wire/ip/address.js';
import { formatPrefix, type IpPrefix, parsePrefix } from '../../wire/ip/prefix.js';
import { parseKey } from '../../wire/keys.js';
import {
  type Filter,
  type Grant,
  prefixContains,
  type Resource,
  TUNNEL_RANGE_V4,
  TUNNEL_RANGE_V6,
} from '../../wire/policy.js';
import { publicKeyOf } from '../../wire/wireguard/crypto.js';
import {
  DEFAULT_PRIVATE_KEY_FILE,
  type PrivateKeySpec,
  type ResolvedPrivateKey,
  resolvePrivateKey,
} from './private-key.js';

/**
 * The standalone-mode policy file (`firezone-gateway --config gateway.json`): the gateway's
 * WireGuard identity and tunnel addresses, its resources, and the plain WireGuard peers allowed
 * to reach them. `docs/standalone.md` describes the format for operators.
 *
 * Loading has three steps, so validation can be tested without files and reused on SIGHUP:
 * 1. `parseStandaloneConfig` (pure, synchronous): the JSON value → a `StandalonePolicy`, with the
 *    private key still a spec (inline key or key file path);
 * 2. `resolvePrivateKey` (`private-key.ts`): read, or generate and save, the key file;
 * 3. `completeStandaloneConfig` (pure): checks that no peer uses the gateway's own public key.
 * `loadStandaloneConfig` runs all three on a file. Every step throws `StandaloneConfigError`
 * (`GW_ERR_CONFIG`) listing every problem it found, one per line, never echoing a key.
 */

export const DEFAULT_LISTEN_PORT = 51820;
/** Routes through the TUN device towards peers when the file gives none: Firezone's tunnel ranges. */
export const DEFAULT_ROUTES: readonly IpPrefix[] = [TUNNEL_RANGE_V4, TUNNEL_RANGE_V6];

export interface StandalonePeer {
  /** Also its id in logs and in the router. */
  readonly name: string;
  readonly publicKey: Uint8Array;
  readonly presharedKey: Uint8Array | undefined;
  /** Tunnel addresses, 4 / 16 bytes. */
  readonly ipv4: Uint8Array | undefined;
  readonly ipv6: Uint8Array | undefined;
  /** Its resources resolved from ids, in file order, each expiring at the peer's `expiresAt`. */
  readonly grants: readonly Grant[];
  readonly persistentKeepaliveMs: number | undefined;
}

export interface StandaloneConfig {
  readonly path: string;
  readonly listenPort: number;
  readonly privateKey: Uint8Array;
  readonly privateKeySource: 'inline' | 'file' | 'generated';
  readonly privateKeyFile: string | undefined;
  readonly interface: { readonly ipv4: Uint8Array | undefined; readonly ipv6: Uint8Array | undefined };
  readonly routes: readonly IpPrefix[];
  readonly resources: readonly Resource[];
  readonly peers: readonly StandalonePeer[];
}

/** A validated policy file whose private key has not been read yet (step 1). */
export interface StandalonePolicy
  extends Omit<StandaloneConfig, 'privateKey' | 'privateKeySource' | 'privateKeyFile'> {
  readonly privateKey: PrivateKeySpec;
}

export interface StandaloneConfigOptions {
  /** The key file used when the policy file names neither `privateKey` nor `privateKeyFile`. */
  readonly defaultKeyFile?: string;
}

/** `GW_ERR_CONFIG` with each problem as one line of the message and one entry of `problems`. */
export class StandaloneConfigError extends GatewayError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[], options?: { cause?: unknown }) {
    super('GW_ERR_CONFIG', problems.join('\n'), options);
    this.problems = problems;
  }
}

/** Reads, validates and completes a policy file; the key file is created if it is missing. */
export async function loadStandaloneConfig(
  path: string,
  opts: StandaloneConfigOptions = {},
): Promise<StandaloneConfig> {
  const policy = parseStandaloneConfig(await readJsonFile(path), path, opts);
  return completeStandaloneConfig(policy, await resolvePrivateKey(policy.privateKey));
}

/** Step 3: the policy with its private key. Throws if a peer has the gateway's own public key. */
export function completeStandaloneConfig(
  policy: StandalonePolicy,
  key: ResolvedPrivateKey,
): StandaloneConfig {
  const problems = ownKeyProblems(policy.peers, key.key).map((p) => line(policy.path, p));
  if (problems.length > 0) throw new StandaloneConfigError(problems);
  return {
    path: policy.path,
    listenPort: policy.listenPort,
    privateKey: key.key,
    privateKeySource: key.source,
    privateKeyFile: key.file,
    interface: policy.interface,
    routes: policy.routes,
    resources: policy.resources,
    peers: policy.peers,
  };
}

async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new GatewayError('GW_ERR_CONFIG', `cannot read config file ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new GatewayError('GW_ERR_CONFIG', `${path}: not valid JSON: ${jsonErrorText(e as Error, text)}`, {
      cause: e,
    });
  }
}

/**
 * V8's JSON error without the quoted excerpt it sometimes adds (it could show a key), and with
 * the position as line:column.
 */
function jsonErrorText(e: Error, text: string): string {
  let msg = e.message.replace(/, (\.\.\.)?".*"(\.\.\.)? is not valid JSON$/s, '');
  const at = /in JSON at position (\d+)/.exec(msg);
  if (at) {
    const before = text.slice(0, Number(at[1]));
    const lineNo = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    msg = `${msg.slice(0, at.index).trimEnd()} at line ${lineNo}, column ${column}`;
  }
  return msg;
}

// ---------------------------------------------------------------------------------------------
// Step 1: validation.

type Path = readonly (string | number)[];
interface Problem {
  readonly path: Path;
  readonly message: string;
}

const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-'";
const SECRET_FIELDS = new Set(['privateKey', 'publicKey', 'presharedKey']);
/** Unix seconds of 9999-12-31T23:59:59Z: the last instant RFC 3339 can write. */
const MAX_UNIX_SECONDS = 253_402_300_799;

/**
 * What each field expects, by path pattern (`[]` for any list index). Zod's own issues are
 * rewritten from this table into "`<value>` is not `<expected>`" so every message says both.
 */
const EXPECTED: Readonly<Record<string, string>> = {
  '': 'a JSON object with the gateway policy',
  listenPort: 'an integer from 1 to 65535',
  privateKey: 'a WireGuard private key: 44 base64 characters (32 bytes), as `wg genkey` prints',
  privateKeyFile: 'a file path',
  interface: 'an object with the gateway tunnel addresses ipv4 and/or ipv6',
  'interface.ipv4': 'an IPv4 address',
  'interface.ipv6': 'an IPv6 address',
  routes: 'a list of CIDRs',
  'routes[]': 'a CIDR such as 100.64.0.0/11',
  resources: 'a list of resources',
  'resources[]': 'a resource object',
  'resources[].type': "one of 'cidr', 'dns', 'internet'",
  'resources[].id': `a resource id: ${NAME_RULE}`,
  'resources[].name': 'a non-empty string',
  'resources[].address': 'a CIDR (cidr resource) or a DNS name pattern (dns resource)',
  'resources[].filters': 'a list of filters (an empty list permits everything)',
  'resources[].filters[]': 'a filter object',
  'resources[].filters[].protocol': "one of 'tcp', 'udp', 'icmp'",
  'resources[].filters[].port_range_start': 'a port number from 0 to 65535',
  'resources[].filters[].port_range_end': 'a port number from 0 to 65535',
  peers: 'a list of peers',
  'peers[]': 'a peer object',
  'peers[].name': `a peer name: ${NAME_RULE}`,
  'peers[].publicKey': 'a WireGuard public key: 44 base64 characters (32 bytes), as `wg pubkey` prints',
  'peers[].presharedKey': 'a WireGuard preshared key: 44 base64 characters (32 bytes), as `wg genpsk` prints',
  'peers[].ipv4': 'an IPv4 address',
  'peers[].ipv6': 'an IPv6 address',
  'peers[].resources': 'a list of resource ids',
  'peers[].resources[]': 'a resource id (a string)',
  'peers[].expiresAt': 'an RFC 3339 timestamp such as 2026-12-31T00:00:00Z, or integer Unix seconds',
  'peers[].persistentKeepalive': 'an integer number of seconds from 0 to 65535 (0 = off)',
};

/** Allowed keys per object, for the "unknown key" hint. */
const KEYS = {
  root: ['listenPort', 'privateKey', 'privateKeyFile', 'interface', 'routes', 'resources', 'peers'],
  interface: ['ipv4', 'ipv6'],
  cidr: ['id', 'type', 'name', 'address', 'filters'],
  dns: ['id', 'type', 'name', 'address', 'filters'],
  internet: ['id', 'type', 'name'],
  tcp: ['protocol', 'port_range_start', 'port_range_end'],
  udp: ['protocol', 'port_range_start', 'port_range_end'],
  icmp: ['protocol'],
  peer: [
    'name',
    'publicKey',
    'presharedKey',
    'ipv4',
    'ipv6',
    'resources',
    'expiresAt',
    'persistentKeepalive',
  ],
} as const;

function custom(ctx: z.core.$RefinementCtx, input: unknown, message: string): never {
  ctx.addIssue({ code: 'custom', input, message });
  return z.NEVER;
}

const ipv4Text = z
  .string()
  .transform((s, ctx) => parseIpv4(s) ?? custom(ctx, s, `${show(s)} is not an IPv4 address`));
const ipv6Text = z
  .string()
  .transform((s, ctx) => parseIpv6(s) ?? custom(ctx, s, `${show(s)} is not an IPv6 address`));

const cidrText = z.string().transform((s, ctx): IpPrefix => {
  const r = parsePrefix(s);
  // parsePrefix's messages quote the text and say what was expected.
  return r.ok ? r.value : custom(ctx, s, r.error.message);
});

/** A key field: the message never shows the value. */
const keyText = (what: string) =>
  z.string().transform((s, ctx): Uint8Array => {
    const r = parseKey(s);
    return r.ok ? r.value : custom(ctx, s, `the value (not shown) is not ${what}: ${r.error.message}`);
  });

const nameText = z.string().regex(NAME_RE);

/**
 * DNS resource patterns as the portal validates them (`spec/portal-protocol.md` §4.2): letters,
 * digits, hyphens, dots, `*` and `?`; `**` only as a whole label; no wildcard in the last label.
 */
const dnsPatternText = z.string().transform((s, ctx) => {
  const why = dnsPatternProblem(s);
  return why === undefined ? s : custom(ctx, s, `${show(s)} is not a DNS name pattern: ${why}`);
});

function dnsPatternProblem(s: string): string | undefined {
  if (s.length === 0) return 'it is empty';
  if (s.length > 253) return `it has ${s.length} characters, at most 253 are allowed`;
  const bad = /[^A-Za-z0-9.*?-]/.exec(s);
  if (bad) return `character ${show(bad[0])} is not allowed: use letters, digits, '-', '.', '*' and '?'`;
  const labels = s.split('.');
  if (labels.some((l) => l === '')) return 'it has an empty label (a leading, trailing or double dot)';
  for (const l of labels) {
    if (l.length > 63) return `label ${show(l)} is longer than 63 characters`;
    if (l.includes('**') && l !== '**') return `'**' must be a whole label, as in **.example.com`;
  }
  if (/[*?]/.test(labels[labels.length - 1]!)) return 'the last label must not hold a wildcard';
  return undefined;
}

const port = z.int().min(0).max(65535);
const portRangeFilter = (protocol: 'tcp' | 'udp') =>
  z
    .strictObject({
      protocol: z.literal(protocol),
      port_range_start: port.optional(),
      port_range_end: port.optional(),
    })
    .transform((f, ctx): Filter => {
      const portStart = f.port_range_start ?? 0;
      const portEnd = f.port_range_end ?? 65535;
      if (portStart > portEnd) {
        return custom(
          ctx,
          f,
          `${protocol} port range ${portStart}-${portEnd} is empty: port_range_start must not exceed port_range_end`,
        );
      }
      return { protocol, portStart, portEnd };
    });
const filterSchema = z.discriminatedUnion('protocol', [
  portRangeFilter('tcp'),
  portRangeFilter('udp'),
  z.strictObject({ protocol: z.literal('icmp') }).transform((): Filter => ({ protocol: 'icmp' })),
]);

const resourceSchema = z.discriminatedUnion('type', [
  z
    .strictObject({
      type: z.literal('cidr'),
      id: nameText,
      name: z.string().min(1).optional(),
      address: cidrText,
      filters: z.array(filterSchema),
    })
    .transform(
      (r): Resource => ({
        type: 'cidr',
        id: r.id as ResourceId,
        name: r.name ?? r.id,
        address: r.address,
        filters: r.filters,
      }),
    ),
  z
    .strictObject({
      type: z.literal('dns'),
      id: nameText,
      name: z.string().min(1).optional(),
      address: dnsPatternText,
      filters: z.array(filterSchema),
    })
    .transform(
      (r): Resource => ({
        type: 'dns',
        id: r.id as ResourceId,
        name: r.name ?? r.id,
        pattern: r.address,
        filters: r.filters,
      }),
    ),
  z
    .strictObject({ type: z.literal('internet'), id: nameText, name: z.string().min(1).optional() })
    .transform((r): Resource => ({ type: 'internet', id: r.id as ResourceId })),
]);

const RFC3339_RE =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/** Wall-clock ms of an RFC 3339 timestamp or integer Unix seconds, or a reason it is not one. */
function expiresAtMs(v: string | number): number | string {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > MAX_UNIX_SECONDS) {
      return `${v} is not integer Unix seconds from 0 to ${MAX_UNIX_SECONDS} (or an RFC 3339 timestamp)`;
    }
    return v * 1000;
  }
  const m = RFC3339_RE.exec(v);
  const [, y, mo, d, h, mi, s, , , oh, om] = (m ?? []).map(Number);
  if (
    !m ||
    mo! < 1 ||
    mo! > 12 ||
    d! < 1 ||
    d! > daysInMonth(y!, mo!) ||
    h! > 23 ||
    mi! > 59 ||
    s! > 59 ||
    (m[8] !== undefined && (oh! > 23 || om! > 59))
  ) {
    return `${show(v)} is not an RFC 3339 timestamp such as 2026-12-31T00:00:00Z (or integer Unix seconds)`;
  }
  // Rebuilt in ECMA-262's Date Time String Format, which Date.parse must accept: ms, then Z or ±hh:mm.
  const ms = (m[7] ?? '').padEnd(3, '0').slice(0, 3);
  const offset = m[8] === undefined ? 'Z' : `${m[8]}${m[9]}:${m[10]}`;
  return Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${ms}${offset}`);
}

function daysInMonth(year: number, month: number): number {
  if (month !== 2) return [31, 0, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
}

const peerSchema = z
  .strictObject({
    name: nameText,
    publicKey: keyText('a WireGuard public key'),
    presharedKey: keyText('a WireGuard preshared key').optional(),
    ipv4: ipv4Text.optional(),
    ipv6: ipv6Text.optional(),
    resources: z.array(z.string()).default([]),
    expiresAt: z
      .union([z.string(), z.number()])
      .transform((v, ctx) => {
        const r = expiresAtMs(v);
        return typeof r === 'number' ? r : custom(ctx, v, r);
      })
      .optional(),
    persistentKeepalive: z.int().min(0).max(65535).optional(),
  })
  .superRefine((p, ctx) => {
    if (p.ipv4 === undefined && p.ipv6 === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'has neither ipv4 nor ipv6: give it at least one tunnel address',
      });
    }
  });
type ParsedPeer = z.output<typeof peerSchema>;

const interfaceSchema = z
  .strictObject({ ipv4: ipv4Text.optional(), ipv6: ipv6Text.optional() })
  .superRefine((i, ctx) => {
    if (i.ipv4 === undefined && i.ipv6 === undefined) {
      ctx.addIssue({ code: 'custom', message: 'has neither ipv4 nor ipv6: give the gateway at least one' });
    }
  });

/** The top level, checked for its shape and unknown keys only; each section is parsed on its own. */
const rootSchema = z.strictObject({
  listenPort: z.unknown().optional(),
  privateKey: z.unknown().optional(),
  privateKeyFile: z.unknown().optional(),
  interface: z.unknown().optional(),
  routes: z.unknown().optional(),
  resources: z.unknown().optional(),
  peers: z.unknown().optional(),
});

/**
 * Step 1: validates a parsed policy file. Pure and synchronous; `path` only names the file in
 * messages and anchors a relative `privateKeyFile`. Each section and each list entry is parsed
 * on its own so that one bad entry neither hides the problems of the others nor causes
 * follow-up errors (a peer naming a resource whose entry is malformed is not also told the id
 * is unknown). Throws `StandaloneConfigError` listing every problem.
 */
export function parseStandaloneConfig(
  json: unknown,
  path: string,
  opts: StandaloneConfigOptions = {},
): StandalonePolicy {
  const problems: Problem[] = [];
  const section = <S extends z.ZodType>(schema: S, value: unknown, at: Path): z.output<S> | undefined => {
    const r = schema.safeParse(value, { reportInput: true });
    if (r.success) return r.data;
    for (const issue of r.error.issues) problems.push(...describeIssue(issue, at));
    return undefined;
  };

  const root = section(rootSchema, json, []);
  if (root === undefined && (typeof json !== 'object' || json === null || Array.isArray(json))) {
    throw new StandaloneConfigError(problems.map((p) => line(path, p)));
  }
  // Unknown keys were reported; go on with the known ones to report everything at once.
  const raw = json as Record<string, unknown>;
  const get = (key: string): unknown => (Object.hasOwn(raw, key) ? raw[key] : undefined);

  const listenPort = section(z.int().min(1).max(65535).default(DEFAULT_LISTEN_PORT), get('listenPort'), [
    'listenPort',
  ]);

  const inlineKey = section(keyText('a WireGuard private key').optional(), get('privateKey'), ['privateKey']);
  const keyFile = section(z.string().min(1).optional(), get('privateKeyFile'), ['privateKeyFile']);
  if (get('privateKey') !== undefined && get('privateKeyFile') !== undefined) {
    problems.push({
      path: ['privateKeyFile'],
      message: 'give either privateKey (the key itself) or privateKeyFile (where it is kept), not both',
    });
  }

  const iface = section(interfaceSchema, get('interface'), ['interface']);
  const routesRaw = get('routes');
  const routes = routesRaw === undefined ? DEFAULT_ROUTES : section(z.array(cidrText), routesRaw, ['routes']);

  // Resources, each on its own. Ids of malformed entries still count as known.
  const resources: Resource[] = [];
  const resourceById = new Map<string, Resource>();
  const knownIds = new Map<string, number>();
  const resourceList = section(z.array(z.unknown()).default([]), get('resources'), ['resources']) ?? [];
  resourceList.forEach((entry, i) => {
    const id = stringField(entry, 'id');
    if (id !== undefined) {
      const first = knownIds.get(id);
      if (first === undefined) knownIds.set(id, i);
      else
        problems.push({
          path: ['resources', i, 'id'],
          message: `${show(id)} is already the id of resources[${first}]`,
        });
    }
    const r = section(resourceSchema, entry, ['resources', i]);
    if (r !== undefined && !resourceById.has(r.id)) {
      resources.push(r);
      resourceById.set(r.id, r);
    }
  });

  // Peers, each on its own; cross-peer checks run on the entries that parsed.
  const parsedPeers: { readonly index: number; readonly peer: ParsedPeer }[] = [];
  const peerNames = new Map<string, number>();
  const peerList = section(z.array(z.unknown()).default([]), get('peers'), ['peers']) ?? [];
  peerList.forEach((entry, i) => {
    const name = stringField(entry, 'name');
    if (name !== undefined) {
      const first = peerNames.get(name);
      if (first === undefined) peerNames.set(name, i);
      else
        problems.push({
          path: ['peers', i, 'name'],
          message: `${show(name)} is already the name of peers[${first}]`,
        });
    }
    const p = section(peerSchema, entry, ['peers', i]);
    if (p !== undefined) parsedPeers.push({ index: i, peer: p });
  });

  problems.push(...peerProblems(parsedPeers, iface, resourceById, knownIds));
  if (routes !== undefined) problems.push(...routeProblems(routes, iface, parsedPeers));

  let privateKey: PrivateKeySpec | undefined;
  if (inlineKey !== undefined) {
    privateKey = { source: 'inline', key: inlineKey };
    problems.push(
      ...ownKeyProblems(
        parsedPeers.map((p) => p.peer),
        inlineKey,
        parsedPeers.map((p) => p.index),
      ),
    );
  } else if (get('privateKey') === undefined) {
    const file =
      keyFile ??
      (get('privateKeyFile') === undefined ? (opts.defaultKeyFile ?? DEFAULT_PRIVATE_KEY_FILE) : undefined);
    if (file !== undefined) privateKey = { source: 'file', file: resolve(dirname(path), file) };
  }

  if (
    problems.length > 0 ||
    listenPort === undefined ||
    privateKey === undefined ||
    iface === undefined ||
    routes === undefined
  ) {
    throw new StandaloneConfigError(problems.map((p) => line(path, p)));
  }
  const peers = parsedPeers.map(({ peer }): StandalonePeer => {
    const expires = peer.expiresAt;
    return {
      name: peer.name,
      publicKey: peer.publicKey,
      presharedKey: peer.presharedKey,
      ipv4: peer.ipv4,
      ipv6: peer.ipv6,
      grants: peer.resources.map((id) => ({ resource: resourceById.get(id)!, expiresAtMs: expires })),
      persistentKeepaliveMs: peer.persistentKeepalive ? peer.persistentKeepalive * 1000 : undefined,
    };
  });
  return {
    path,
    listenPort,
    privateKey,
    interface: { ipv4: iface.ipv4, ipv6: iface.ipv6 },
    routes,
    resources,
    peers,
  };
}

function stringField(entry: unknown, key: string): string | undefined {
  if (typeof entry !== 'object' || entry === null || !Object.hasOwn(entry, key)) return undefined;
  const v = (entry as Record<string, unknown>)[key];
  return typeof v === 'string' ? v : undefined;
}

type Iface = { readonly ipv4?: Uint8Array | undefined; readonly ipv6?: Uint8Array | undefined } | undefined;

function peerProblems(
  peers: readonly { readonly index: number; readonly peer: ParsedPeer }[],
  iface: Iface,
  resourceById: ReadonlyMap<string, Resource>,
  knownIds: ReadonlyMap<string, number>,
): Problem[] {
  const problems: Problem[] = [];
  const keys: { index: number; key: Uint8Array }[] = [];
  const ips = new Map<string, number>();
  for (const { index, peer } of peers) {
    const first = keys.find((k) => bytesEqual(k.key, 0, peer.publicKey, 0, 32));
    if (first) {
      problems.push({
        path: ['peers', index, 'publicKey'],
        message: `is the same key as peers[${first.index}].publicKey: every peer needs its own key pair`,
      });
    } else {
      keys.push({ index, key: peer.publicKey });
    }
    for (const family of ['ipv4', 'ipv6'] as const) {
      const ip = peer[family];
      if (ip === undefined) continue;
      const text = formatIp(ip);
      const own = iface?.[family];
      if (own !== undefined && bytesEqual(own, 0, ip, 0, ip.length)) {
        problems.push({
          path: ['peers', index, family],
          message: `${show(text)} is the gateway's own address (interface.${family})`,
        });
        continue;
      }
      const other = ips.get(text);
      if (other !== undefined) {
        problems.push({
          path: ['peers', index, family],
          message: `${show(text)} is already the address of peers[${other}]`,
        });
      } else {
        ips.set(text, index);
      }
    }
    const seen = new Set<string>();
    peer.resources.forEach((id, j) => {
      const at = ['peers', index, 'resources', j];
      if (seen.has(id)) {
        problems.push({ path: at, message: `${show(id)} is listed twice` });
      } else if (!resourceById.has(id) && !knownIds.has(id)) {
        const known = [...knownIds.keys()];
        problems.push({
          path: at,
          message: `${show(id)} is not the id of any resource (${known.length === 0 ? 'there are no resources' : `known: ${known.slice(0, 20).join(', ')}${known.length > 20 ? ', …' : ''}`})`,
        });
      }
      seen.add(id);
    });
  }
  return problems;
}

/** Every interface and peer tunnel address must be routed through the TUN device. */
function routeProblems(
  routes: readonly IpPrefix[],
  iface: Iface,
  peers: readonly { readonly index: number; readonly peer: ParsedPeer }[],
): Problem[] {
  const problems: Problem[] = [];
  const check = (ip: Uint8Array | undefined, path: Path) => {
    if (ip === undefined || routes.some((r) => prefixContains(r, ip, 0, ip.length))) return;
    const family = routes.filter((r) => r.address.length === ip.length);
    const label = ip.length === 4 ? 'IPv4' : 'IPv6';
    problems.push({
      path,
      message: `${show(formatIp(ip))} is not inside any of the routes (${family.length === 0 ? `there is no ${label} route` : family.map(formatPrefix).join(', ')}): add a route that covers it`,
    });
  };
  check(iface?.ipv4, ['interface', 'ipv4']);
  check(iface?.ipv6, ['interface', 'ipv6']);
  for (const { index, peer } of peers) {
    check(peer.ipv4, ['peers', index, 'ipv4']);
    check(peer.ipv6, ['peers', index, 'ipv6']);
  }
  return problems;
}

/** A peer with the gateway's own public key could never complete a handshake. */
function ownKeyProblems(
  peers: readonly { readonly publicKey: Uint8Array }[],
  privateKey: Uint8Array,
  indices?: readonly number[],
): Problem[] {
  const own = publicKeyOf(privateKey);
  const problems: Problem[] = [];
  peers.forEach((p, i) => {
    if (bytesEqual(p.publicKey, 0, own, 0, 32)) {
      problems.push({
        path: ['peers', indices?.[i] ?? i, 'publicKey'],
        message:
          "is the gateway's own public key: give the peer's public key (`wg pubkey` of its private key)",
      });
    }
  });
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Messages.

function line(file: string, p: Problem): string {
  return p.path.length === 0 ? `${file}: ${p.message}` : `${file}: ${formatPath(p.path)}: ${p.message}`;
}

function formatPath(path: Path): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) s += s === '' ? seg : `.${seg}`;
    else s += `[${JSON.stringify(seg)}]`;
  }
  return s;
}

/** `peers[].ipv4` for `['peers', 3, 'ipv4']`: the key of `EXPECTED`. */
function pattern(path: Path): string {
  return formatPath(path.map((s) => (typeof s === 'number' ? -1 : s))).replaceAll('[-1]', '[]');
}

/**
 * A value for a message: short strings quoted, numbers and booleans as they are, objects and
 * lists by kind only (they may hold anything, keys included). Never a key's value.
 */
/** base64 of 32 bytes, as keys are written (43 characters and one `=`). */
const KEYLIKE_RE = /[A-Za-z0-9+/]{42,}=/;
function show(v: unknown, secret = false): string {
  if (typeof v === 'string') {
    // Also a key pasted into the wrong field.
    if (secret || KEYLIKE_RE.test(v)) return 'a string (not shown)';
    const cut = v.length > 80 ? `${v.slice(0, 80)}…` : v;
    return /^[\x20-\x7e]*$/.test(v) && !v.includes("'") ? `'${cut}'` : JSON.stringify(cut);
  }
  if (typeof v === 'number' || typeof v === 'boolean') return secret ? `a ${typeof v}` : String(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return 'an object';
}

function describeIssue(issue: core.$ZodIssue, at: Path): Problem[] {
  const path = [...at, ...issue.path.map((s) => (typeof s === 'symbol' ? String(s) : s))];
  if (issue.code === 'custom') return [{ path, message: issue.message }];
  if (issue.code === 'unrecognized_keys') {
    const allowed = allowedKeys(path, issue.input);
    return issue.keys.map((key) => ({
      path: [...path, key],
      message: `unknown key${suggest(key, allowed)}${allowed ? `: expected ${allowed.join(', ')}` : ''}`,
    }));
  }
  let field = path;
  let hasInput = 'input' in issue && issue.input !== undefined;
  let input: unknown = hasInput ? issue.input : undefined;
  if (issue.code === 'invalid_union' && 'discriminator' in issue && typeof issue.discriminator === 'string') {
    // Zod reports a bad tag at the tag's path but with the whole object as input.
    const tag = issue.discriminator;
    field = path[path.length - 1] === tag ? path : [...path, tag];
    hasInput = typeof input === 'object' && input !== null && Object.hasOwn(input, tag);
    input = hasInput ? (input as Record<string, unknown>)[tag] : undefined;
  }
  const last = field.findLast((s) => typeof s === 'string');
  const secret = typeof last === 'string' && SECRET_FIELDS.has(last);
  const key = pattern(field);
  const expected = Object.hasOwn(EXPECTED, key) ? EXPECTED[key]! : issue.message;
  return [
    {
      path: field,
      message: hasInput ? `${show(input, secret)} is not ${expected}` : `missing: expected ${expected}`,
    },
  ];
}

function allowedKeys(path: Path, input: unknown): readonly string[] | undefined {
  const p = pattern(path);
  const tag = (key: string) =>
    typeof input === 'object' && input !== null ? (input as Record<string, unknown>)[key] : undefined;
  if (p === '') return KEYS.root;
  if (p === 'interface') return KEYS.interface;
  if (p === 'peers[]') return KEYS.peer;
  if (p === 'resources[]') {
    const t = tag('type');
    return t === 'cidr' || t === 'dns' || t === 'internet' ? KEYS[t] : undefined;
  }
  if (p === 'resources[].filters[]') {
    const t = tag('protocol');
    return t === 'tcp' || t === 'udp' || t === 'icmp' ? KEYS[t] : undefined;
  }
  return undefined;
}

/** ` (did you mean 'peers'?)` when a known key is one or two edits away. */
function suggest(key: string, allowed: readonly string[] | undefined): string {
  if (!allowed) return '';
  let best: string | undefined;
  let bestDistance = 3;
  for (const a of allowed) {
    const d = editDistance(key.toLowerCase(), a.toLowerCase());
    if (d < bestDistance) {
      best = a;
      bestDistance = d;
    }
  }
  return best === undefined ? '' : ` (did you mean '${best}'?)`;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2 || a.length > 64) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
