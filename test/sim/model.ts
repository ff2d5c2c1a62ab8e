import { parseIp } from '../../src/wire/ip/address.js';
import { hex } from './packets.js';

/**
 * The reference model of the simulation: plain TypeScript, written from
 * `spec/gateway-dataplane.md` (§3 outbound steps, §4 inbound filter, §5.2–§5.4 filter table,
 * §6.3 DNS-resource NAT setup, §9 authorization lifecycle) and this gateway's documented
 * deviations (README "The portal session": `init` revokes clients it omits; re-authorization
 * refreshes the expiry; the gateway's own tunnel address takes DNS and ping only). It shares no
 * code with `src/router`: it keeps what the gateway was told (per client: grants with the filters
 * and expiry last delivered, the proxy → real translations) and predicts, for each packet, what
 * must happen.
 */

// --- The catalog: resources, names, targets -------------------------------------------------

export type Filter = { protocol: 'tcp' | 'udp'; start: number; end: number } | { protocol: 'icmp' };

export type ResourceDef =
  | { readonly key: string; readonly id: string; readonly type: 'cidr'; readonly address: string }
  | { readonly key: string; readonly id: string; readonly type: 'dns'; readonly pattern: string }
  | { readonly key: string; readonly id: string; readonly type: 'internet' };

export const RESOURCES = {
  LAB: { key: 'LAB', id: '1844956a-9aca-4bf4-903b-27c7ebf18666', type: 'cidr', address: '172.20.0.0/16' },
  /** Nested in LAB: its entry gets the union of both filter lists (§5.2 step 2). */
  DB: { key: 'DB', id: '410c6258-f8fd-43fe-a8e8-7b6e788c80a6', type: 'cidr', address: '172.20.1.0/24' },
  V6: { key: 'V6', id: '7b1c2d3e-4f50-4a61-8b72-9c83d4e5f607', type: 'cidr', address: 'fd20::/64' },
  /**
   * A CIDR resource over part of the IPv4 proxy range: the only way to reach "proxy IP without
   * translation" (§3 step 8, ICMP network unreachable) and where a revoked DNS resource's
   * translations still lead (they are never deleted, §6.3 "Removal").
   */
  PROXYNET: {
    key: 'PROXYNET',
    id: '0c1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5',
    type: 'cidr',
    address: '100.96.0.0/16',
  },
  WEB: { key: 'WEB', id: '7f0a6c1e-3b8d-4a51-9f3e-2c1d0b9a8e71', type: 'dns', pattern: '*.svc.test' },
  CORP: { key: 'CORP', id: '0b2f5d0e-8c7a-4e6b-9d1c-5a4f3e2d1c0b', type: 'dns', pattern: '**.corp.test' },
  INET: { key: 'INET', id: 'a7e1f7f4-1d0b-4a8e-9b6e-3c2d1e0f9a8b', type: 'internet' },
} as const satisfies Record<string, ResourceDef>;
export type ResourceKey = keyof typeof RESOURCES;
export const RESOURCE_KEYS = Object.keys(RESOURCES) as ResourceKey[];

export interface DomainDef {
  readonly name: string;
  /** The resource the client names in AssignedIps. */
  readonly resource: ResourceKey;
  readonly a: readonly string[];
  readonly aaaa: readonly string[];
  /** No such name: every lookup fails (NXDOMAIN). */
  readonly nxdomain?: boolean;
}

export const DOMAINS: readonly DomainDef[] = [
  { name: 'web.svc.test', resource: 'WEB', a: ['172.21.0.10', '172.21.0.11'], aaaa: ['fd21::10'] },
  /** IPv4 only: IPv6 proxies map onto an IPv4 address → ICMPv6 address unreachable (§6.3 step 3). */
  { name: 'api.svc.test', resource: 'WEB', a: ['172.21.0.30'], aaaa: [] },
  { name: 'app.eu.corp.test', resource: 'CORP', a: ['172.21.1.10'], aaaa: ['fd21:1::10', 'fd21:1::11'] },
  /** IPv6 only: IPv4 proxies map onto an IPv6 address → ICMP network unreachable. */
  { name: 'v6only.corp.test', resource: 'CORP', a: [], aaaa: ['fd21:1::20'] },
  /** Resolves, but outside the pattern of the resource the client names: Inactive (§6.2 step 4). */
  { name: 'evil.test', resource: 'WEB', a: ['172.21.9.9'], aaaa: [] },
  /** Does not resolve: Inactive, retried after 1, 2 and 4 s (each retry reports Inactive again). */
  { name: 'gone.svc.test', resource: 'WEB', a: [], aaaa: [], nxdomain: true },
];

/** Filter lists the portal may send (the empty list permits everything). */
export const FILTER_CHOICES: readonly (readonly Filter[])[] = [
  [],
  [{ protocol: 'icmp' }],
  [
    { protocol: 'tcp', start: 80, end: 80 },
    { protocol: 'tcp', start: 443, end: 443 },
  ],
  [{ protocol: 'udp', start: 7, end: 9 }, { protocol: 'icmp' }],
  [
    { protocol: 'tcp', start: 0, end: 1023 },
    { protocol: 'udp', start: 53, end: 53 },
  ],
  [
    { protocol: 'tcp', start: 81, end: 81 },
    { protocol: 'udp', start: 1, end: 65535 },
  ],
  [{ protocol: 'udp', start: 5353, end: 5353 }],
];

export function filtersJson(fs: readonly Filter[]) {
  return fs.map((f) =>
    f.protocol === 'icmp'
      ? { protocol: 'icmp' }
      : { protocol: f.protocol, port_range_start: f.start, port_range_end: f.end },
  );
}

export function resourceJson(key: ResourceKey, filters: readonly Filter[]) {
  const r: ResourceDef = RESOURCES[key];
  if (r.type === 'internet') return { id: r.id, type: 'internet', name: 'Internet' };
  if (r.type === 'cidr')
    return { id: r.id, type: 'cidr', name: r.key, address: r.address, filters: filtersJson(filters) };
  return { id: r.id, type: 'dns', name: r.key, address: r.pattern, filters: filtersJson(filters) };
}

// --- Addresses --------------------------------------------------------------------------------

interface Prefix {
  readonly addr: Uint8Array;
  readonly len: number;
}

function prefixOf(text: string): Prefix {
  const [a, l] = text.split('/');
  return { addr: parseIp(a!)!, len: Number(l) };
}

function bitsEqual(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if ((a[byte]! & mask) !== (b[byte]! & mask)) return false;
  }
  return true;
}

function prefixContains(p: Prefix, addr: Uint8Array): boolean {
  return p.addr.length === addr.length && bitsEqual(p.addr, addr, p.len);
}

function prefixCovers(outer: Prefix, inner: Prefix): boolean {
  return (
    outer.addr.length === inner.addr.length &&
    outer.len <= inner.len &&
    bitsEqual(outer.addr, inner.addr, outer.len)
  );
}

const PROXY_V4 = prefixOf('100.96.0.0/11');
const PROXY_V6 = prefixOf('fd00:2021:1111:8000::/107');

export function inProxyRange(addr: Uint8Array): boolean {
  return prefixContains(addr.length === 4 ? PROXY_V4 : PROXY_V6, addr);
}

/**
 * The proxy IPs a client assigns to the `domain`-th name in generation `gen` (a renumbering is a
 * new generation): 4 IPv4 + 4 IPv6, as Firezone clients do (§6.1).
 */
export function proxyIps(domain: number, gen: number): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (let n = 1; n <= 4; n++) {
    v4.push(`100.${96 + gen}.${domain}.${n}`);
    v6.push(`fd00:2021:1111:8000::${gen.toString(16)}:${(domain * 256 + n).toString(16)}`);
  }
  return { v4, v6 };
}

/** §6.7: case-insensitive label globs; `*.x` and `**.x` also match `x`. */
export function patternMatches(pattern: string, domain: string): boolean {
  const p = pattern.toLowerCase().split('.');
  const d = domain.toLowerCase().split('.');
  const label = (pl: string, dl: string) =>
    new RegExp(
      `^${pl
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '[^.]*')
        .replace(/\?/g, '[^.]')}$`,
    ).test(dl);
  const m = (i: number, j: number): boolean => {
    if (i === p.length) return j === d.length;
    if (p[i] === '**') {
      for (let k = j; k <= d.length; k++) if (m(i + 1, k)) return true;
      return false;
    }
    return j < d.length && label(p[i]!, d[j]!) && m(i + 1, j + 1);
  };
  return m(0, 0) || ((p[0] === '*' || p[0] === '**') && p.length > 1 && m(1, 0));
}

// --- Filters (§5.3) ----------------------------------------------------------------------------

interface Engine {
  readonly permitAll: boolean;
  readonly lists: readonly (readonly Filter[])[];
}

function engineOf(lists: readonly (readonly Filter[])[]): Engine {
  return { permitAll: lists.some((l) => l.length === 0), lists };
}

function engineAllows(e: Engine, proto: number, port: number | undefined): boolean {
  if (e.permitAll) return true;
  for (const list of e.lists) {
    for (const f of list) {
      if (f.protocol === 'icmp' && (proto === 1 || proto === 58)) return true;
      if (f.protocol === 'tcp' && proto === 6 && port! >= f.start && port! <= f.end) return true;
      if (f.protocol === 'udp' && proto === 17 && port! >= f.start && port! <= f.end) return true;
    }
  }
  return false;
}

// --- Per-client state ------------------------------------------------------------------------

export interface GrantState {
  /** The filters the gateway was last told for this resource (authorize_flow / resource_updated). */
  filters: readonly Filter[];
  expiresAtMs: number;
}

export interface Translation {
  readonly resource: ResourceKey;
  readonly domain: string;
  /** The real address, hex. */
  readonly real: string;
}

export interface ClientModel {
  /** What the control plane holds for the client (a failed connection keeps it, §9.5). */
  readonly grants: Map<ResourceKey, GrantState>;
  /** Proxy IP (hex) → translation, in the router client (lost with it). */
  readonly translations: Map<string, Translation>;
  /** Bumped whenever the translations change: mappings are stable within one epoch. */
  epoch: number;
  /**
   * The proxy IPs that have a host entry in the router's filter table, and for which resource.
   * The table is a snapshot (§5.2): rebuilt when the grants the gateway installed change, when
   * one expires and when a NAT setup succeeds, but *not* when a renumbering reset (§6.3 step 1)
   * is followed by a refusal (step 2, "nothing changed beyond step 1"): then the old entries
   * stay until the next rebuild, and their proxy IPs answer "unreachable" (no translation)
   * instead of "prohibited".
   */
  filterProxies: Map<string, ResourceKey>;
  /** The grants as last installed in the gateway (the supervisor's `grantsKey`). */
  installedKey: string | undefined;
}

/** What makes the supervisor send a client new grants (`grantsKeyOf` in src/actors/gateway.ts). */
function grantsKey(m: ClientModel): string {
  return JSON.stringify([...m.grants].map(([k, g]) => [k, g.filters, g.expiresAtMs]));
}

export type RouterReason =
  | 'src.spoofed'
  | 'gateway.denied'
  | 'no-resource'
  | 'filter.denied'
  | 'proxy.no-translation'
  | 'proxy.family-mismatch';

export type Prediction =
  /** Written to the TUN device (destination `realDst`, hex), and the answer comes back. */
  | {
      readonly kind: 'forward';
      readonly realDst: string;
      readonly nat: boolean;
      readonly replyAllowed: boolean;
    }
  /** Exactly one ICMP destination unreachable back to the client, nothing at the resource. */
  | { readonly kind: 'icmp'; readonly code: 'prohibited' | 'unreachable'; readonly reason: RouterReason };

export interface PacketFacts {
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
  /** 6, 17, 1 or 58. */
  readonly proto: number;
  /** TCP/UDP destination port. */
  readonly dport: number | undefined;
  readonly isEcho: boolean;
}

export class Model {
  readonly clients: ClientModel[];
  /** The filters each resource has at the portal (what the next authorize_flow carries). */
  readonly portalFilters = new Map<ResourceKey, readonly Filter[]>();
  readonly gwV4: string;
  readonly gwV6: string;

  constructor(
    clientCount: number,
    private readonly clientIps: readonly { v4: string; v6: string }[],
    gw: { v4: Uint8Array; v6: Uint8Array },
  ) {
    this.clients = Array.from({ length: clientCount }, () => ({
      grants: new Map(),
      translations: new Map(),
      epoch: 0,
      filterProxies: new Map(),
      installedKey: undefined,
    }));
    for (const k of RESOURCE_KEYS) this.portalFilters.set(k, []);
    this.gwV4 = hex(gw.v4);
    this.gwV6 = hex(gw.v6);
  }

  hasGrants(c: number): boolean {
    return this.clients[c]!.grants.size > 0;
  }

  /** The router client was replaced (connection failed and re-created): its NAT state is gone. */
  routerClientReset(c: number): void {
    const m = this.clients[c]!;
    if (m.translations.size > 0) m.epoch++;
    m.translations.clear();
    m.filterProxies.clear();
    m.installedKey = m.grants.size > 0 ? grantsKey(m) : undefined;
  }

  /** The control plane forgot the client (revoked, expired, goodbye). */
  private forget(c: number): void {
    this.clients[c]!.grants.clear();
    this.routerClientReset(c);
  }

  /** The control plane installs the client's grants; the router rebuilds only if they changed. */
  private install(c: number): void {
    const m = this.clients[c]!;
    const key = grantsKey(m);
    if (key === m.installedKey) return;
    m.installedKey = key;
    this.rebuild(c);
  }

  /** §5.2 step 3 as of now: translated proxy IPs of still-authorized DNS resources. */
  private rebuild(c: number): void {
    const m = this.clients[c]!;
    m.filterProxies = new Map();
    for (const [p, t] of m.translations) if (m.grants.has(t.resource)) m.filterProxies.set(p, t.resource);
  }

  // --- Portal messages (§9) -------------------------------------------------------------------

  /** `authorize_flow`: adds the resource, or refreshes its filters and expiry (README). */
  authorize(c: number, r: ResourceKey, expiresAtMs: number): void {
    this.clients[c]!.grants.set(r, { filters: this.portalFilters.get(r)!, expiresAtMs });
    this.install(c);
  }

  /** `reject_access`: returns whether the client lost its last resource (and so its state). */
  reject(c: number, r: ResourceKey): boolean {
    const m = this.clients[c]!;
    if (!m.grants.delete(r)) return false;
    if (m.grants.size > 0) {
      this.install(c);
      return false;
    }
    this.forget(c);
    return true;
  }

  /** `resource_updated`: every client holding the resource gets the new filters. */
  updateFilters(r: ResourceKey, filters: readonly Filter[], delivered: boolean): void {
    this.portalFilters.set(r, filters);
    if (!delivered) return;
    this.clients.forEach((m, c) => {
      const g = m.grants.get(r);
      if (!g || RESOURCES[r].type === 'internet') return;
      g.filters = filters;
      this.install(c);
    });
  }

  /** `access_authorization_expiry_updated`. */
  setExpiry(c: number, r: ResourceKey, expiresAtMs: number): void {
    const g = this.clients[c]!.grants.get(r);
    if (!g) return;
    g.expiresAtMs = expiresAtMs;
    this.install(c);
  }

  /**
   * `init` with the complete list (§9.1 and README): every grant not listed is revoked, listed
   * ones take the listed expiry, a client left with nothing is removed. Returns the clients removed.
   */
  init(listed: readonly { client: number; resource: ResourceKey; expiresAtMs: number }[]): number[] {
    const removed: number[] = [];
    this.clients.forEach((m, c) => {
      if (m.grants.size === 0) return;
      let changed = false;
      for (const [r, g] of [...m.grants]) {
        const l = listed.find((x) => x.client === c && x.resource === r);
        if (l) {
          changed ||= g.expiresAtMs !== l.expiresAtMs;
          g.expiresAtMs = l.expiresAtMs;
        } else {
          m.grants.delete(r);
          changed = true;
        }
      }
      if (m.grants.size === 0) {
        this.forget(c);
        removed.push(c);
      } else if (changed) this.install(c);
    });
    return removed;
  }

  /** Grants whose expiry has passed are gone (§9.4); returns the clients that lost everything. */
  expire(wallNowMs: number): number[] {
    const removed: number[] = [];
    this.clients.forEach((m, c) => {
      if (m.grants.size === 0) return;
      let gone = false;
      for (const [r, g] of [...m.grants]) {
        if (g.expiresAtMs > wallNowMs) continue;
        m.grants.delete(r);
        gone = true;
      }
      if (m.grants.size === 0) {
        this.forget(c);
        removed.push(c);
      } else if (gone) this.rebuild(c);
    });
    return removed;
  }

  /** A Goodbye from the client: its state is dropped (§6.1). */
  goodbye(c: number): void {
    this.forget(c);
  }

  /** The earliest grant expiry after `wallMs`, or Infinity. */
  nextExpiryAfter(wallMs: number): number {
    let at = Number.POSITIVE_INFINITY;
    for (const m of this.clients)
      for (const g of m.grants.values()) if (g.expiresAtMs > wallMs) at = Math.min(at, g.expiresAtMs);
    return at;
  }

  /** The earliest grant expiry of anybody, or Infinity. */
  nextExpiry(): number {
    let at = Number.POSITIVE_INFINITY;
    for (const m of this.clients) for (const g of m.grants.values()) at = Math.min(at, g.expiresAtMs);
    return at;
  }

  // --- DNS-resource NAT (§6.2–§6.3) -------------------------------------------------------------

  /**
   * AssignedIps for `domain` naming `resource`: the DomainStatus reports the client must get, and
   * the NAT change. `resolves` is what the name resolves to (undefined: the lookup fails).
   */
  assignedIps(
    c: number,
    resource: ResourceKey,
    domain: DomainDef,
    proxies: readonly string[],
  ): { statuses: ('Active' | 'Inactive')[] } {
    const m = this.clients[c]!;
    const res = RESOURCES[resource];
    // §6.2 step 2: not an authorized DNS resource → Inactive at once, nothing else happens.
    if (!m.grants.has(resource) || res.type !== 'dns') return { statuses: ['Inactive'] };
    // Lookup failed: Inactive, then three retries 1, 2 and 4 s apart, each Inactive again.
    if (domain.nxdomain) return { statuses: ['Inactive', 'Inactive', 'Inactive', 'Inactive'] };
    const proxyHex = proxies.map((p) => hex(parseIp(p)!));
    // §6.3 step 1: a proxy IP translated for another resource or name resets the client's NAT.
    for (const p of proxyHex) {
      const t = m.translations.get(p);
      if (t && (t.resource !== resource || t.domain !== domain.name)) {
        m.translations.clear();
        m.epoch++;
        break;
      }
    }
    // Step 2: the pattern must cover the name.
    if (!patternMatches(res.pattern, domain.name)) return { statuses: ['Inactive'] };
    // Step 3: sorted proxies per family paired round-robin with sorted reals of the same family,
    // else of the other family.
    const sort = (xs: readonly string[]) =>
      xs.map((x) => hex(parseIp(x)!)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const p4 = sort(proxies.filter((p) => !p.includes(':')));
    const p6 = sort(proxies.filter((p) => p.includes(':')));
    const r4 = sort(domain.a);
    const r6 = sort(domain.aaaa);
    const pairs: [string, string][] = [];
    const pairUp = (ps: string[], rs: string[]) => {
      if (rs.length === 0) return;
      ps.forEach((p, i) => {
        pairs.push([p, rs[i % rs.length]!]);
      });
    };
    pairUp(p4, r4.length > 0 ? r4 : r6);
    pairUp(p6, r6.length > 0 ? r6 : r4);
    let changed = false;
    for (const [p, real] of pairs) {
      const old = m.translations.get(p);
      // Step 4 keeps an old address only for a proxy with open flows; the catalog's records never
      // change, so an existing translation always agrees.
      if (old && old.real !== real)
        throw new Error(`model: proxy ${p} would move from ${old.real} to ${real} (records are static)`);
      if (!old || old.resource !== resource || old.domain !== domain.name) changed = true;
      m.translations.set(p, { resource, domain: domain.name, real });
    }
    if (changed) m.epoch++;
    // Step 5: the filter table is rebuilt.
    this.rebuild(c);
    return { statuses: ['Active'] };
  }

  // --- The packet path ---------------------------------------------------------------------------

  /** §5.2: the filter engine of the longest prefix holding `addr`, for client `c`. */
  lookup(c: number, addr: Uint8Array): Engine | undefined {
    const m = this.clients[c]!;
    let best: { len: number; engine: Engine } | undefined;
    const consider = (p: Prefix, engine: () => Engine) => {
      if (!prefixContains(p, addr)) return;
      if (!best || p.len > best.len) best = { len: p.len, engine: engine() };
    };
    for (const [k, g] of m.grants) {
      const r: ResourceDef = RESOURCES[k];
      if (r.type !== 'cidr') continue;
      const n = prefixOf(r.address);
      consider(n, () => {
        // Every authorized resource with a prefix containing N contributes its list; the
        // Internet resource contributes the empty list (permit-all). DNS resources contribute
        // through their resolved host addresses only, and no CIDR here is a single host.
        const lists: (readonly Filter[])[] = [];
        for (const [k2, g2] of m.grants) {
          const o: ResourceDef = RESOURCES[k2];
          if (o.type === 'internet') lists.push([]);
          else if (o.type === 'cidr' && prefixCovers(prefixOf(o.address), n)) lists.push(g2.filters);
        }
        return engineOf(lists);
      });
      void g;
    }
    // §5.2 step 3: translated proxy IPs of still-authorized DNS resources, that resource's filters
    // (as of the last rebuild of the table).
    for (const [p, r] of m.filterProxies) {
      const g = m.grants.get(r);
      if (!g) continue;
      const a = Buffer.from(p, 'hex');
      consider({ addr: Uint8Array.from(a), len: a.length * 8 }, () => engineOf([g.filters]));
    }
    return best?.engine;
  }

  private internet(c: number): boolean {
    return this.clients[c]!.grants.has('INET');
  }

  /** §4 step 9: whether the resource's answer (from `src`, source port `sport`) reaches the client. */
  inboundAllowed(c: number, src: Uint8Array, proto: number, sport: number | undefined): boolean {
    if (this.internet(c) && !inProxyRange(src)) return true;
    const e = this.lookup(c, src);
    return e !== undefined && engineAllows(e, proto, sport);
  }

  /** §4 steps 5–9 for an unsolicited packet from `src` (not the gateway, no NAT session) to client `c`. */
  inbound(
    c: number,
    src: Uint8Array,
    proto: number,
    sport: number | undefined,
  ): 'allowed' | 'no-resource' | 'filter.denied' {
    if (this.internet(c) && !inProxyRange(src)) return 'allowed';
    const e = this.lookup(c, src);
    if (!e) return 'no-resource';
    return engineAllows(e, proto, sport) ? 'allowed' : 'filter.denied';
  }

  /** §3 steps 5–8 for a packet from client `c`, whose tunnel addresses the gateway knows. */
  outbound(c: number, p: PacketFacts): Prediction {
    const own = p.src.length === 4 ? this.clientIps[c]!.v4 : this.clientIps[c]!.v6;
    if (hex(p.src) !== own) return { kind: 'icmp', code: 'prohibited', reason: 'src.spoofed' };
    const dst = hex(p.dst);
    if (dst === this.gwV4 || dst === this.gwV6) {
      // This gateway's deviation (§13, router.ts): its own address takes DNS and ping only.
      if ((p.proto === 17 && p.dport === 53535) || p.isEcho)
        return { kind: 'forward', realDst: dst, nat: false, replyAllowed: true };
      return { kind: 'icmp', code: 'prohibited', reason: 'gateway.denied' };
    }
    const inProxy = inProxyRange(p.dst);
    if (!(this.internet(c) && !inProxy)) {
      const e = this.lookup(c, p.dst);
      if (!e) return { kind: 'icmp', code: 'prohibited', reason: 'no-resource' };
      if (!engineAllows(e, p.proto, p.dport))
        return { kind: 'icmp', code: 'prohibited', reason: 'filter.denied' };
    }
    if (!inProxy) {
      return {
        kind: 'forward',
        realDst: dst,
        nat: false,
        replyAllowed: this.inboundAllowed(c, p.dst, p.proto, p.dport),
      };
    }
    const t = this.clients[c]!.translations.get(dst);
    if (!t) return { kind: 'icmp', code: 'unreachable', reason: 'proxy.no-translation' };
    if (t.real.length !== dst.length)
      return { kind: 'icmp', code: 'unreachable', reason: 'proxy.family-mismatch' };
    return {
      kind: 'forward',
      realDst: t.real,
      nat: true,
      replyAllowed: this.inboundAllowed(c, p.dst, p.proto, p.dport),
    };
  }
}
