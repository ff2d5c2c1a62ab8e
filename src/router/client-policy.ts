import type { ResourceId } from '../wire/ids.js';
import { formatPrefix, type IpPrefix } from '../wire/ip/prefix.js';
import type { Filter, Grant, Resource } from '../wire/policy.js';
import { FilterEngine } from './filter.js';
import { LpmTable } from './lpm.js';
import { proxyOffset } from './nat.js';

/** A proxy IP's permanent translation (`spec/gateway-dataplane.md` §6.3). */
export interface Translation {
  readonly proxyAddr: Uint8Array;
  readonly realAddr: Uint8Array;
  readonly resourceId: ResourceId;
  readonly domain: string;
}

/**
 * What one client may reach: its grants, the longest-prefix-match filter table derived from them
 * (rebuilt from scratch on every change, §5.2), the Internet flag, and its DNS-resource proxy IP
 * translations. Pure data; the router consults it per packet.
 */
export class ClientPolicy {
  private readonly grantMap = new Map<ResourceId, Grant>();
  private table4 = new LpmTable<FilterEngine>(4);
  private table6 = new LpmTable<FilterEngine>(16);
  /** The Internet resource is granted: every destination outside the proxy ranges is open (§5.4). */
  internet = false;
  /** Earliest grant expiry (wall-clock ms), or Infinity. */
  nextExpiryMs = Number.POSITIVE_INFINITY;
  /** Proxy IP (family + 21-bit offset) → translation. */
  private readonly translations = new Map<number, Translation>();
  /** Resolved addresses per DNS resource and domain, which count as host prefixes in §5.2. */
  private readonly resolved = new Map<ResourceId, Map<string, readonly Uint8Array[]>>();

  get grants(): ReadonlyMap<ResourceId, Grant> {
    return this.grantMap;
  }

  /** Replaces all grants (a grant's resource carries its current filters). */
  setGrants(grants: readonly Grant[]): void {
    this.grantMap.clear();
    for (const g of grants) this.grantMap.set(g.resource.id, g);
    this.rebuild();
  }

  /** Removes grants whose expiry has passed; returns their resource ids. */
  expire(wallNowMs: number): ResourceId[] {
    if (wallNowMs < this.nextExpiryMs) return [];
    const gone: ResourceId[] = [];
    for (const [id, g] of this.grantMap) {
      if (g.expiresAtMs !== undefined && g.expiresAtMs <= wallNowMs) {
        this.grantMap.delete(id);
        gone.push(id);
      }
    }
    if (gone.length > 0) this.rebuild();
    return gone;
  }

  /** The filter for the longest prefix holding the address at `buf[off, off+len)`. */
  lookup(buf: Uint8Array, off: number, len: number): FilterEngine | undefined {
    return len === 4 ? this.table4.lookup(buf, off) : this.table6.lookup(buf, off);
  }

  translationAt(buf: Uint8Array, off: number, len: number): Translation | undefined {
    return this.translations.get(translationKey(buf, off, len));
  }

  translationFor(proxyAddr: Uint8Array): Translation | undefined {
    return this.translations.get(translationKey(proxyAddr, 0, proxyAddr.length));
  }

  allTranslations(): IterableIterator<Translation> {
    return this.translations.values();
  }

  setTranslation(t: Translation): void {
    this.translations.set(translationKey(t.proxyAddr, 0, t.proxyAddr.length), t);
  }

  clearTranslations(): void {
    this.translations.clear();
    this.resolved.clear();
  }

  /** Records what a DNS resource's domain resolved to (for §5.2) and rebuilds the table. */
  setResolved(resourceId: ResourceId, domain: string, addrs: readonly Uint8Array[]): void {
    let m = this.resolved.get(resourceId);
    if (!m) {
      m = new Map();
      this.resolved.set(resourceId, m);
    }
    m.set(domain, addrs);
    this.rebuild();
  }

  /** The table as text, for tests and inspection: `prefix → filter`. */
  describe(): string[] {
    return [...this.table4.entries(), ...this.table6.entries()].map(
      (e) => `${formatPrefix(e.prefix)} → ${e.value.describe()}`,
    );
  }

  /**
   * §5.2: every authorized CIDR resource N gets the union of the filters of all authorized
   * resources with a prefix containing N (CIDR networks, DNS resolved host addresses, and
   * 0.0.0.0/0 + ::/0 for the Internet resource, whose empty filter list means permit-all). Then
   * every translated proxy IP of a still-authorized DNS resource gets that resource's filters.
   */
  private rebuild(): void {
    const t4 = new LpmTable<FilterEngine>(4);
    const t6 = new LpmTable<FilterEngine>(16);
    let internet = false;
    let next = Number.POSITIVE_INFINITY;
    const grants = [...this.grantMap.values()];
    for (const g of grants) {
      if (g.resource.type === 'internet') internet = true;
      if (g.expiresAtMs !== undefined && g.expiresAtMs < next) next = g.expiresAtMs;
    }
    for (const g of grants) {
      const r = g.resource;
      if (r.type !== 'cidr') continue;
      const lists: (readonly Filter[])[] = [];
      for (const other of grants) {
        const o = other.resource;
        if (o.type === 'internet') lists.push([]);
        else if (o.type === 'cidr') {
          if (prefixCovers(o.address, r.address)) lists.push(o.filters);
        } else {
          for (const addrs of this.resolved.get(o.id)?.values() ?? []) {
            if (addrs.some((a) => prefixCovers({ address: a, prefixLength: a.length * 8 }, r.address))) {
              lists.push(o.filters);
              break;
            }
          }
        }
      }
      (r.address.address.length === 4 ? t4 : t6).insert(r.address, FilterEngine.fromLists(lists));
    }
    for (const t of this.translations.values()) {
      const res = this.grantMap.get(t.resourceId)?.resource;
      if (res?.type !== 'dns') continue;
      const host = { address: t.proxyAddr, prefixLength: t.proxyAddr.length * 8 };
      (t.proxyAddr.length === 4 ? t4 : t6).insert(host, FilterEngine.fromLists([res.filters]));
    }
    this.table4 = t4;
    this.table6 = t6;
    this.internet = internet;
    this.nextExpiryMs = next;
  }

  /** Rebuilds after translations changed. */
  refresh(): void {
    this.rebuild();
  }

  /** The DNS resource a grant id refers to, if granted. */
  dnsResource(id: ResourceId): Extract<Resource, { type: 'dns' }> | undefined {
    const r = this.grantMap.get(id)?.resource;
    return r?.type === 'dns' ? r : undefined;
  }
}

function translationKey(buf: Uint8Array, off: number, len: number): number {
  return (len === 4 ? 0 : 2 ** 21) + proxyOffset(buf, off, len);
}

/** True when `outer` contains `inner`: same family, not longer, and the network bits agree. */
export function prefixCovers(outer: IpPrefix, inner: IpPrefix): boolean {
  if (outer.address.length !== inner.address.length || outer.prefixLength > inner.prefixLength) return false;
  const full = outer.prefixLength >> 3;
  for (let i = 0; i < full; i++) if (outer.address[i] !== inner.address[i]) return false;
  const rest = outer.prefixLength & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (outer.address[full]! & mask) === (inner.address[full]! & mask);
}
