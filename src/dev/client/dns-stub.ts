import dnsPacket from 'dns-packet';
import { domainMatches } from '../../router/router.js';
import { buildErrorReply, buildFormerr, DNS_RCODE, parseDnsQuery } from '../../wire/dns/message.js';
import { parseUuid, type ResourceId } from '../../wire/ids.js';
import { formatIp } from '../../wire/ip/address.js';
import { IpPacket } from '../../wire/ip/packet.js';
import { type DomainStatus, decodeP2pControl, encodeP2pControl } from '../../wire/p2p/control.js';
import { PROXY_RANGE_V4, PROXY_RANGE_V6, prefixContains } from '../../wire/policy.js';

/**
 * The simulated client's stub resolver for DNS resources, sans-IO (`spec/gateway-dataplane.md`
 * §6.1, §7.1). It behaves like the Firezone client's:
 *
 * - an A or AAAA query for a name matching a DNS resource's pattern is answered with proxy IPs:
 *   every name gets a stable set of 4 IPv4 addresses from 100.96.0.0/11 and 4 IPv6 addresses from
 *   fd00:2021:1111:8000::/107. Each query sends a fresh AssignedIps control event (all 8 proxies)
 *   to the gateway serving the resource, retransmitted every 2 s until a DomainStatus for
 *   (resource, domain) arrives; the answer goes out on that DomainStatus or after 5 s;
 * - any other query type for such a name (SRV, TXT, ...) is forwarded unchanged to the gateway's
 *   DNS server (its tunnel IP, port 53535) and the reply relayed; no reply in 5 s → SERVFAIL;
 * - a name matching no resource → REFUSED; an unparseable datagram or a response → dropped.
 *
 * The caller (`main.ts`) owns the sockets and the links: it feeds queries (`handleQuery`),
 * decrypted tunnel packets (`handleTunnelPacket`), forwarded replies (`handleForwardReply`) and
 * time, and drains `pollOutput()`. `A` is whatever identifies a querier (its address and port).
 */

export const PROXY_IPS_PER_FAMILY = 4;
/** The client retransmits AssignedIps this often while it waits for DomainStatus (§6.3). */
export const ASSIGNED_IPS_RETRANSMIT_MS = 2_000;
/** An A/AAAA query is answered after this long even without a DomainStatus. */
export const PROXY_ANSWER_TIMEOUT_MS = 5_000;
/** A query forwarded to the gateway's DNS server is answered SERVFAIL after this long. */
export const FORWARD_TIMEOUT_MS = 5_000;
/** TTL of proxy-IP answers: small, so every application lookup reaches the stub again. */
export const PROXY_ANSWER_TTL_S = 1;
/** The gateway's in-tunnel DNS port (§1). */
export const GATEWAY_DNS_PORT = 53535;

export const RCODE_FORMERR = DNS_RCODE.FORMERR;
export const RCODE_SERVFAIL = DNS_RCODE.SERVFAIL;
export const RCODE_REFUSED = DNS_RCODE.REFUSED;

/** A DNS resource of the client's `init`: its id and its name pattern (`*.svc.test`). */
export interface DnsResource {
  readonly id: string;
  readonly address: string;
}

/** Proxy addresses of one name, 4 per family. */
export interface ProxyIps {
  readonly v4: readonly Uint8Array[];
  readonly v6: readonly Uint8Array[];
}

/** Host bits of the /11 and /107 proxy ranges: 2^21 addresses each. */
const RANGE_SIZE = 1 << 21;
const V4_BASE =
  ((PROXY_RANGE_V4.address[0]! << 24) |
    (PROXY_RANGE_V4.address[1]! << 16) |
    (PROXY_RANGE_V4.address[2]! << 8) |
    PROXY_RANGE_V4.address[3]!) >>>
  0;

/**
 * Sequential proxy-IP allocation: the n-th name (from 0) gets offsets 4n+1 … 4n+4 in both ranges
 * (offset 0, the network address, is never used). The same name always gets the same addresses.
 */
export class ProxyIpAllocator {
  private readonly byName = new Map<string, number>();
  private readonly names: string[] = [];

  /** The proxies of `domain` (case-insensitive, trailing dot ignored), allocating on first use. */
  ipsFor(domain: string): ProxyIps {
    const name = normaliseName(domain);
    let n = this.byName.get(name);
    if (n === undefined) {
      n = this.names.length;
      if (1 + PROXY_IPS_PER_FAMILY * (n + 1) > RANGE_SIZE) throw new Error('the proxy ranges are exhausted');
      this.byName.set(name, n);
      this.names.push(name);
    }
    const v4: Uint8Array[] = [];
    const v6: Uint8Array[] = [];
    for (let i = 0; i < PROXY_IPS_PER_FAMILY; i++) {
      const off = 1 + PROXY_IPS_PER_FAMILY * n + i;
      const a = (V4_BASE + off) >>> 0;
      v4.push(Uint8Array.of(a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff));
      const b = Uint8Array.from(PROXY_RANGE_V6.address);
      b[13] = (off >>> 16) & 0x1f;
      b[14] = (off >>> 8) & 0xff;
      b[15] = off & 0xff;
      v6.push(b);
    }
    return { v4, v6 };
  }

  /** The name a proxy address (`addr[off, off+len)`) was allocated to, if any. */
  nameOf(addr: Uint8Array, off = 0, len: number = addr.length - off): string | undefined {
    let offset: number;
    if (len === 4 && prefixContains(PROXY_RANGE_V4, addr, off, 4)) {
      offset =
        (((addr[off]! << 24) | (addr[off + 1]! << 16) | (addr[off + 2]! << 8) | addr[off + 3]!) >>> 0) -
        V4_BASE;
    } else if (len === 16 && prefixContains(PROXY_RANGE_V6, addr, off, 16)) {
      offset = ((addr[off + 13]! & 0x1f) << 16) | (addr[off + 14]! << 8) | addr[off + 15]!;
    } else return undefined;
    if (offset === 0) return undefined;
    return this.names[Math.floor((offset - 1) / PROXY_IPS_PER_FAMILY)];
  }
}

/** Lower case, no trailing dot. */
export function normaliseName(domain: string): string {
  return domain.toLowerCase().replace(/\.$/, '');
}

function hasWildcard(pattern: string): boolean {
  return /[*?]/.test(pattern);
}

/**
 * The DNS resource whose pattern matches `domain` (§6.7): an exact name wins over patterns, then
 * the longest pattern; ties go to the first in `resources`.
 */
export function matchResource(domain: string, resources: readonly DnsResource[]): DnsResource | undefined {
  let best: DnsResource | undefined;
  let bestRank = -1;
  for (const r of resources) {
    if (!domainMatches(r.address, domain)) continue;
    const rank = (hasWildcard(r.address) ? 0 : 1_000_000) + r.address.length;
    if (rank > bestRank) {
      best = r;
      bestRank = rank;
    }
  }
  return best;
}

export type QueryClass =
  /** Not a DNS query we can answer at all: drop it. */
  | { readonly kind: 'malformed' }
  /** A query without exactly one question: FORMERR. */
  | { readonly kind: 'formerr' }
  /** A name that matches no DNS resource: REFUSED. */
  | { readonly kind: 'refused'; readonly domain: string }
  /** A or AAAA for a DNS resource: answered with proxy IPs. */
  | {
      readonly kind: 'proxy';
      readonly resource: string;
      readonly domain: string;
      readonly qtype: 'A' | 'AAAA';
    }
  /** Any other type for a DNS resource: forwarded to the gateway's DNS server. */
  | { readonly kind: 'forward'; readonly resource: string; readonly domain: string; readonly qtype: string };

/** What the stub does with `query` given the client's DNS resources. */
export function classifyQuery(query: Uint8Array, resources: readonly DnsResource[]): QueryClass {
  let p: dnsPacket.DecodedPacket;
  try {
    p = dnsPacket.decode(Buffer.from(query.buffer, query.byteOffset, query.byteLength));
  } catch {
    return { kind: 'malformed' };
  }
  if (p.flag_qr) return { kind: 'malformed' };
  const q = p.questions ?? [];
  if (q.length !== 1) return { kind: 'formerr' };
  const question = q[0]!;
  const domain = normaliseName(question.name);
  const r = matchResource(domain, resources);
  if (!r) return { kind: 'refused', domain };
  if ((question.type === 'A' || question.type === 'AAAA') && (question.class ?? 'IN') === 'IN')
    return { kind: 'proxy', resource: r.id, domain, qtype: question.type };
  return { kind: 'forward', resource: r.id, domain, qtype: question.type };
}

/**
 * A reply to `query` with `rcode` and no records, the question echoed (the gateway's own DNS
 * helpers); FORMERR without a question when the query does not parse; `undefined` when there is
 * not even a header.
 */
export function errorReply(query: Uint8Array, rcode: number): Uint8Array | undefined {
  const q = parseDnsQuery(query);
  return q.ok ? buildErrorReply(q.value, rcode) : buildFormerr(query);
}

/**
 * The answer to an A or AAAA `query`: its question echoed, one record per address of the query's
 * family (`ips` may hold both; the others are skipped), TTL {@link PROXY_ANSWER_TTL_S}, an OPT
 * record when the query had one.
 */
export function proxyAnswer(
  query: Uint8Array,
  ips: readonly Uint8Array[],
  ttlS = PROXY_ANSWER_TTL_S,
): Uint8Array {
  const p = dnsPacket.decode(Buffer.from(query.buffer, query.byteOffset, query.byteLength));
  const question = p.questions![0]!;
  const v4 = question.type === 'A';
  const answers: dnsPacket.Answer[] = ips
    .filter((ip) => ip.length === (v4 ? 4 : 16))
    .map((ip) => ({
      type: v4 ? 'A' : 'AAAA',
      name: question.name,
      class: 'IN',
      ttl: ttlS,
      data: formatIp(ip),
    }));
  const hadOpt = (p.additionals ?? []).some((a) => a.type === 'OPT');
  const bytes = dnsPacket.encode({
    type: 'response',
    id: p.id ?? 0,
    flags:
      dnsPacket.AUTHORITATIVE_ANSWER |
      dnsPacket.RECURSION_AVAILABLE |
      ((p.flags ?? 0) & dnsPacket.RECURSION_DESIRED),
    questions: [question],
    answers,
    additionals: hadOpt
      ? [
          {
            type: 'OPT',
            name: '.',
            udpPayloadSize: 1232,
            extendedRcode: 0,
            ednsVersion: 0,
            flags: 0,
            flag_do: false,
            options: [],
          },
        ]
      : [],
  });
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Whether a decrypted packet is a p2p control event (IPv6 `::` → `::`, next header 255). */
export function looksLikeControl(packet: Uint8Array): boolean {
  const p = IpPacket.parse(packet);
  return p.ok && p.value.isP2pControl;
}

export type DnsStubOutput<A> =
  /** A DNS reply for the querier `to`. */
  | { readonly type: 'reply'; readonly to: A; readonly bytes: Uint8Array }
  /** A query for `resource` came in: make sure a flow to a gateway serving it exists. */
  | { readonly type: 'flow'; readonly resource: string }
  /** A control packet (AssignedIps) for the link serving `resource`; drop it if there is none. */
  | { readonly type: 'control'; readonly resource: string; readonly packet: Uint8Array }
  /**
   * Send `query` to `<gateway tunnel IP>:53535` of the gateway serving `resource` once that link
   * can carry it, and hand the reply to `handleForwardReply(id, …)`.
   */
  | { readonly type: 'forward'; readonly id: number; readonly resource: string; readonly query: Uint8Array }
  /** A DomainStatus arrived (for the `domain` progress line). */
  | {
      readonly type: 'domain';
      readonly resource: string;
      readonly domain: string;
      readonly status: DomainStatus;
      readonly proxyIps: readonly string[];
    };

interface Assignment {
  readonly resource: ResourceId;
  readonly domain: string;
  readonly proxyIps: readonly Uint8Array[];
  /** Retransmit at this time; infinite once a DomainStatus arrived. */
  nextAt: number;
}

interface WaitingQuery<A> {
  readonly key: string;
  readonly to: A;
  readonly query: Uint8Array;
  readonly deadline: number;
}

interface PendingForward<A> {
  readonly to: A;
  readonly query: Uint8Array;
  readonly deadline: number;
}

const assignmentKey = (resource: string, domain: string) => `${resource}\n${domain}`;

/** The stateful stub: queries in, replies and control events out (see the module comment). */
export class DnsStub<A> {
  readonly proxies = new ProxyIpAllocator();
  private resources: readonly DnsResource[] = [];
  /** Name → the resource it was last resolved for (to route its proxy IPs). */
  private readonly nameResource = new Map<string, string>();
  private readonly assignments = new Map<string, Assignment>();
  private readonly waiting: WaitingQuery<A>[] = [];
  private readonly forwards = new Map<number, PendingForward<A>>();
  private nextForwardId = 1;
  private readonly out: DnsStubOutput<A>[] = [];

  constructor(resources: readonly DnsResource[] = []) {
    this.setResources(resources);
  }

  /** The DNS resources of the latest `init` (patterns in `address`). */
  setResources(resources: readonly DnsResource[]): void {
    this.resources = [...resources];
  }

  /** One datagram from a querier. */
  handleQuery(query: Uint8Array, from: A, now: number): void {
    const c = classifyQuery(query, this.resources);
    switch (c.kind) {
      case 'malformed':
        return;
      case 'formerr':
      case 'refused': {
        const bytes = errorReply(query, c.kind === 'formerr' ? RCODE_FORMERR : RCODE_REFUSED);
        if (bytes) this.out.push({ type: 'reply', to: from, bytes });
        return;
      }
      case 'forward': {
        const id = this.nextForwardId++;
        this.forwards.set(id, { to: from, query, deadline: now + FORWARD_TIMEOUT_MS });
        this.out.push({ type: 'flow', resource: c.resource });
        this.out.push({ type: 'forward', id, resource: c.resource, query });
        return;
      }
      case 'proxy': {
        const resource = parseUuid(c.resource) as ResourceId | undefined;
        if (!resource) {
          // AssignedIps needs a UUID; the portal never sends anything else.
          const bytes = errorReply(query, RCODE_SERVFAIL);
          if (bytes) this.out.push({ type: 'reply', to: from, bytes });
          return;
        }
        const ips = this.proxies.ipsFor(c.domain);
        this.nameResource.set(c.domain, c.resource);
        const key = assignmentKey(resource, c.domain);
        let a = this.assignments.get(key);
        if (!a) {
          a = { resource, domain: c.domain, proxyIps: [...ips.v4, ...ips.v6], nextAt: now };
          this.assignments.set(key, a);
        }
        this.out.push({ type: 'flow', resource: c.resource });
        // Every query sends a fresh AssignedIps (the gateway re-resolves), then retransmits.
        this.sendAssignment(a, now);
        this.waiting.push({ key, to: from, query, deadline: now + PROXY_ANSWER_TIMEOUT_MS });
        return;
      }
    }
  }

  /**
   * A decrypted packet from a gateway: true if it was a control event (consumed; never for the
   * TUN device), false for an ordinary IP packet.
   */
  handleTunnelPacket(packet: Uint8Array, _now: number): boolean {
    const p = IpPacket.parse(packet);
    if (!p.ok || !p.value.isP2pControl) return false;
    const e = decodeP2pControl(p.value);
    if (!e.ok || e.value.type !== 'domain-status') return true;
    const { resource, status } = e.value;
    const domain = normaliseName(e.value.domain);
    const key = assignmentKey(resource, domain);
    const a = this.assignments.get(key);
    if (a) a.nextAt = Number.POSITIVE_INFINITY;
    const ips = a ? a.proxyIps : [];
    this.out.push({ type: 'domain', resource, domain, status, proxyIps: ips.map((ip) => formatIp(ip)) });
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i]!;
      if (w.key === key && a) {
        this.waiting.splice(i, 1);
        this.out.push({ type: 'reply', to: w.to, bytes: proxyAnswer(w.query, a.proxyIps) });
      } else i++;
    }
    return true;
  }

  /** The reply to forwarded query `id`; late or unknown replies are ignored. */
  handleForwardReply(id: number, reply: Uint8Array, _now: number): void {
    const f = this.forwards.get(id);
    if (!f || reply.length < 12 || reply[0] !== f.query[0] || reply[1] !== f.query[1]) return;
    this.forwards.delete(id);
    this.out.push({ type: 'reply', to: f.to, bytes: reply });
  }

  /** Whether forwarded query `id` still waits for its reply. */
  forwardPending(id: number): boolean {
    return this.forwards.has(id);
  }

  /** A link serving these resources just got a path or session: send their unconfirmed AssignedIps now. */
  retransmitNow(resources: Iterable<string>, now: number): void {
    const set = new Set(resources);
    for (const a of this.assignments.values())
      if (set.has(a.resource) && Number.isFinite(a.nextAt)) this.sendAssignment(a, now);
  }

  /** The resource whose proxy IP is at `addr[off, off+len)` (a destination from the TUN device). */
  resourceForProxy(addr: Uint8Array, off = 0, len: number = addr.length - off): string | undefined {
    const name = this.proxies.nameOf(addr, off, len);
    return name === undefined ? undefined : this.nameResource.get(name);
  }

  handleTimeout(now: number): void {
    for (const a of this.assignments.values()) if (a.nextAt <= now) this.sendAssignment(a, now);
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i]!;
      const a = this.assignments.get(w.key);
      if (w.deadline <= now && a) {
        this.waiting.splice(i, 1);
        this.out.push({ type: 'reply', to: w.to, bytes: proxyAnswer(w.query, a.proxyIps) });
      } else i++;
    }
    for (const [id, f] of this.forwards) {
      if (f.deadline > now) continue;
      this.forwards.delete(id);
      const bytes = errorReply(f.query, RCODE_SERVFAIL);
      if (bytes) this.out.push({ type: 'reply', to: f.to, bytes });
    }
  }

  pollTimeout(): number {
    let at = Number.POSITIVE_INFINITY;
    for (const a of this.assignments.values()) at = Math.min(at, a.nextAt);
    for (const w of this.waiting) at = Math.min(at, w.deadline);
    for (const f of this.forwards.values()) at = Math.min(at, f.deadline);
    return at;
  }

  pollOutput(): DnsStubOutput<A> | undefined {
    return this.out.shift();
  }

  private sendAssignment(a: Assignment, now: number): void {
    a.nextAt = now + ASSIGNED_IPS_RETRANSMIT_MS;
    const packet = encodeP2pControl({
      type: 'assigned-ips',
      resource: a.resource,
      domain: a.domain,
      proxyIps: a.proxyIps,
    });
    if (packet.ok) this.out.push({ type: 'control', resource: a.resource, packet: packet.value });
  }
}
