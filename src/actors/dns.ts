import type { NameserverProbe } from '../machines/nameserver-selector.machine.js';
import {
  answerAddresses,
  buildFormerr,
  buildQuery,
  buildServfail,
  DNS_RCODE,
  DNS_TYPE,
  type DnsQuestion,
  isDnsName,
  parseDnsQuery,
  parseDnsResponse,
  truncateForUdp,
} from '../wire/dns/message.js';
import { formatIp, parseIp } from '../wire/ip/address.js';
import { err, type Result } from '../wire/result.js';
import type { Clock } from './clock.js';

/**
 * The gateway's DNS (`spec/gateway-dataplane.md` §6.2.1, §7): the forwarder behind the in-tunnel
 * DNS server on port 53535, the resolver of DNS-resource names (A and AAAA in parallel, TTL
 * cache), and the probe round of the nameserver selector. All of them talk to the nameserver the
 * selector chose, through an injected {@link DnsUpstream} (sockets in production, a simulated
 * network in tests), and keep time with the injected clock.
 */

export type DnsTransport = 'udp' | 'tcp';

export interface DnsUpstreamError {
  /** `unreachable`: refused or no route (ICMP, RST); `io`: anything else the socket said. */
  readonly code: 'timeout' | 'unreachable' | 'io' | 'too-large';
  readonly message: string;
}

/** One query/response exchange with `server` port 53. Aborting it closes its socket. */
export interface DnsUpstream {
  exchange(
    server: Uint8Array,
    query: Uint8Array,
    transport: DnsTransport,
    signal: AbortSignal,
  ): Promise<Result<Uint8Array, DnsUpstreamError>>;
}

/** Resolver lookups (per try, UDP then TCP on truncation) give up after this (§6.2.1: 5 s per try). */
export const DNS_UPSTREAM_TIMEOUT_MS = 5_000;
/**
 * Queries forwarded from the in-tunnel server give up after this and are answered SERVFAIL. The
 * reference waits 5 s; 500 ms less makes the SERVFAIL reach the client within 5 s of its query,
 * before a stub resolver's own 5 s timeout gives up on us.
 */
export const DNS_FORWARD_TIMEOUT_MS = 4_500;
/** Each probe of a nameserver gives up after this (§7.4). */
export const DNS_PROBE_TIMEOUT_MS = 2_000;
/** The name the probes ask for (an A query, recursion desired), as the reference. */
export const DNS_PROBE_NAME = 'firezone.dev';
/** Servers probed per round (20 probes in flight at most, §7.4); the rest are not used. */
export const MAX_PROBED_NAMESERVERS = 10;
/** Forwarded queries in flight; further queries are dropped unanswered (§7.3 step 2). */
export const MAX_FORWARDED_QUERIES = 1_000;

/**
 * Cache lifetimes of the resolver. Positive answers live for their TTL (the smallest TTL of the
 * CNAME chain and addresses), clamped to [5 s, 1 day]: the floor keeps clients that announce a
 * name on every query of theirs from turning each into an upstream lookup; the ceiling is
 * hickory's. Negative answers (NXDOMAIN, no records) live for the SOA's negative TTL clamped to
 * [5 s, 5 min], 5 s without an SOA. Failures (timeouts, SERVFAIL, REFUSED) are not cached.
 */
export const DNS_CACHE_MIN_TTL_S = 5;
export const DNS_CACHE_MAX_TTL_S = 86_400;
export const DNS_NEGATIVE_MAX_TTL_S = 300;
/** Cache entries (name and type); the oldest go first beyond this. */
export const DNS_CACHE_MAX_ENTRIES = 4_096;

export interface DnsCounters {
  /** Queries the in-tunnel server received (well-formed or not). */
  queries: number;
  /** Answers relayed from the nameserver. */
  answered: number;
  /** SERVFAIL because no nameserver was selected. */
  servfailNoNameserver: number;
  /** SERVFAIL because the nameserver did not answer in time, or not properly. */
  servfailUpstream: number;
  /** Malformed queries answered with FORMERR. */
  formerr: number;
  /** Malformed queries dropped (not even a header to answer). */
  malformedDropped: number;
  /** Queries dropped because too many were in flight. */
  overloadDropped: number;
  /** UDP answers over 1200 bytes sent truncated. */
  truncated: number;
  /** Resolver lookups sent upstream / answered from the cache / failed. */
  lookups: number;
  cacheHits: number;
  lookupFailures: number;
}

export interface DnsServiceOptions {
  readonly upstream: DnsUpstream;
  readonly clock: Pick<Clock, 'now' | 'setTimeout' | 'clearTimeout'>;
  /** The nameserver in use (the selector's choice), if any. */
  readonly selected: () => string | undefined;
  /** `server` did not answer: the selector moves on. */
  readonly unresponsive: (server: string) => void;
  readonly random: (n: number) => Uint8Array;
}

/** A failed lookup: what went wrong, for logs and the binding's `lastError`. */
export class DnsLookupError extends Error {
  override readonly name = 'DnsLookupError';
}

interface CacheEntry {
  readonly expiresAt: number;
  readonly addrs: readonly Uint8Array[];
}

export class DnsService {
  readonly counters: DnsCounters = {
    queries: 0,
    answered: 0,
    servfailNoNameserver: 0,
    servfailUpstream: 0,
    formerr: 0,
    malformedDropped: 0,
    overloadDropped: 0,
    truncated: 0,
    lookups: 0,
    cacheHits: 0,
    lookupFailures: 0,
  };
  private readonly o: DnsServiceOptions;
  private inFlight = 0;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly pending = new Map<string, Promise<readonly Uint8Array[]>>();

  constructor(o: DnsServiceOptions) {
    this.o = o;
  }

  // --- In-tunnel DNS server (§7.3) -----------------------------------------------------------

  /**
   * Answers one query that arrived on port 53535 over `transport`: the nameserver's answer, a
   * SERVFAIL, a FORMERR, or nothing (dropped). Never rejects.
   */
  async handleQuery(bytes: Uint8Array, transport: DnsTransport): Promise<Uint8Array | undefined> {
    this.counters.queries++;
    const q = parseDnsQuery(bytes);
    if (!q.ok) {
      const formerr = buildFormerr(bytes);
      if (formerr) this.counters.formerr++;
      else this.counters.malformedDropped++;
      return formerr;
    }
    if (this.inFlight >= MAX_FORWARDED_QUERIES) {
      this.counters.overloadDropped++;
      return undefined;
    }
    const server = this.o.selected();
    if (server === undefined) {
      this.counters.servfailNoNameserver++;
      return buildServfail(q.value);
    }
    this.inFlight++;
    try {
      const r = await this.exchange(server, bytes, transport, DNS_FORWARD_TIMEOUT_MS);
      if (!r.ok) {
        this.upstreamFailed(server, r.error);
        this.counters.servfailUpstream++;
        return buildServfail(q.value);
      }
      const resp = parseDnsResponse(r.value, { id: q.value.id, question: q.value.question });
      if (!resp.ok) {
        this.counters.servfailUpstream++;
        return buildServfail(q.value);
      }
      this.counters.answered++;
      if (transport === 'udp') {
        const out = truncateForUdp(r.value);
        if (out.length !== r.value.length) this.counters.truncated++;
        return out;
      }
      return r.value;
    } finally {
      this.inFlight--;
    }
  }

  // --- Resolver for DNS resources (§6.2.1) ---------------------------------------------------

  /**
   * The A and AAAA addresses of `name`, looked up in parallel and merged (IPv4 first, answer
   * order within a family). A family that fails counts as empty; rejects with a
   * {@link DnsLookupError} when neither family has an address.
   */
  async resolve(name: string): Promise<Uint8Array[]> {
    // Clients send names in the dotted text form; one that is not a valid name is not looked up.
    if (!isDnsName(name.replace(/\.$/, '')))
      throw new DnsLookupError(`not a DNS name: ${JSON.stringify(name)}`);
    const [a, aaaa] = await Promise.allSettled([
      this.lookup(name, DNS_TYPE.A),
      this.lookup(name, DNS_TYPE.AAAA),
    ]);
    const addrs = [
      ...(a.status === 'fulfilled' ? a.value : []),
      ...(aaaa.status === 'fulfilled' ? aaaa.value : []),
    ];
    if (addrs.length > 0) return addrs;
    const why = [a, aaaa]
      .map((r) => (r.status === 'rejected' ? (r.reason as Error).message : undefined))
      .find((m) => m !== undefined);
    throw new DnsLookupError(why ?? `${name}: no A or AAAA records`);
  }

  /** The addresses of one record type: from the cache while its TTL lasts, else from upstream. */
  lookup(name: string, type: number): Promise<readonly Uint8Array[]> {
    const key = `${type}:${name.toLowerCase().replace(/\.$/, '')}`;
    const now = this.o.clock.now();
    const hit = this.cache.get(key);
    if (hit && hit.expiresAt > now) {
      this.counters.cacheHits++;
      return Promise.resolve(hit.addrs);
    }
    if (hit) this.cache.delete(key);
    const running = this.pending.get(key);
    if (running) return running;
    const p = this.lookupUpstream(name, type).then(
      (entry) => {
        this.pending.delete(key);
        this.store(key, entry);
        return entry.addrs;
      },
      (e: unknown) => {
        this.pending.delete(key);
        this.counters.lookupFailures++;
        throw e;
      },
    );
    this.pending.set(key, p);
    return p;
  }

  /** Cached entries (for tests and inspection). */
  get cacheSize(): number {
    return this.cache.size;
  }

  private async lookupUpstream(name: string, type: number): Promise<CacheEntry> {
    const server = this.o.selected();
    if (server === undefined) throw new DnsLookupError('no nameserver available');
    this.counters.lookups++;
    const id = this.randomId();
    const question: DnsQuestion = { name, type, class: 1 };
    const query = buildQuery({ id, name, type });
    let transport: DnsTransport = 'udp';
    for (;;) {
      const r = await this.exchange(server, query, transport, DNS_UPSTREAM_TIMEOUT_MS);
      if (!r.ok) {
        this.upstreamFailed(server, r.error);
        throw new DnsLookupError(`${name}: ${server} ${r.error.message}`);
      }
      const resp = parseDnsResponse(r.value, { id, question });
      if (!resp.ok) throw new DnsLookupError(`${name}: ${server} sent a bad answer (${resp.error.message})`);
      // Truncated over UDP: ask again over TCP for the whole answer.
      if (resp.value.tc && transport === 'udp') {
        transport = 'tcp';
        continue;
      }
      const rcode = resp.value.rcode;
      if (rcode !== DNS_RCODE.NOERROR && rcode !== DNS_RCODE.NXDOMAIN) {
        throw new DnsLookupError(`${name}: ${server} answered ${rcodeName(rcode)}`);
      }
      const found = answerAddresses(resp.value, type === DNS_TYPE.A ? 4 : 6);
      const now = this.o.clock.now();
      if (found.addrs.length > 0) {
        const ttl = clamp(found.ttlS ?? DNS_CACHE_MIN_TTL_S, DNS_CACHE_MIN_TTL_S, DNS_CACHE_MAX_TTL_S);
        return { expiresAt: now + ttl * 1000, addrs: found.addrs };
      }
      const ttl = clamp(found.ttlS ?? DNS_CACHE_MIN_TTL_S, DNS_CACHE_MIN_TTL_S, DNS_NEGATIVE_MAX_TTL_S);
      return { expiresAt: now + ttl * 1000, addrs: [] };
    }
  }

  private store(key: string, entry: CacheEntry): void {
    this.cache.set(key, entry);
    if (this.cache.size <= DNS_CACHE_MAX_ENTRIES) return;
    // Expired entries first, then the oldest.
    const now = this.o.clock.now();
    for (const [k, e] of this.cache) if (e.expiresAt <= now) this.cache.delete(k);
    for (const k of this.cache.keys()) {
      if (this.cache.size <= DNS_CACHE_MAX_ENTRIES) break;
      this.cache.delete(k);
    }
  }

  // --- Probe round of the nameserver selector (§7.4) -----------------------------------------

  /**
   * Probes each server (the first {@link MAX_PROBED_NAMESERVERS}) with an A query for
   * {@link DNS_PROBE_NAME} over UDP and over TCP at once. A probe counts when a proper answer
   * arrives within 2 s with NOERROR or NXDOMAIN (the server works; the name is its business);
   * a server's time is its faster probe, measured from the start of the round.
   */
  async probeRound(servers: readonly string[]): Promise<NameserverProbe[]> {
    const start = this.o.clock.now();
    const probe = async (server: string, transport: DnsTransport): Promise<number | undefined> => {
      const id = this.randomId();
      const question: DnsQuestion = { name: DNS_PROBE_NAME, type: DNS_TYPE.A, class: 1 };
      const r = await this.exchange(
        server,
        buildQuery({ id, name: DNS_PROBE_NAME, type: DNS_TYPE.A }),
        transport,
        DNS_PROBE_TIMEOUT_MS,
      );
      if (!r.ok) return undefined;
      const resp = parseDnsResponse(r.value, { id, question });
      if (!resp.ok) return undefined;
      if (resp.value.rcode !== DNS_RCODE.NOERROR && resp.value.rcode !== DNS_RCODE.NXDOMAIN) return undefined;
      return this.o.clock.now() - start;
    };
    return Promise.all(
      servers.slice(0, MAX_PROBED_NAMESERVERS).map(async (server) => {
        const [udp, tcp] = await Promise.all([probe(server, 'udp'), probe(server, 'tcp')]);
        const times = [udp, tcp].filter((t): t is number => t !== undefined);
        return { server, rttMs: times.length > 0 ? Math.min(...times) : undefined };
      }),
    );
  }

  // --- Shared --------------------------------------------------------------------------------

  /** One exchange bounded by `timeoutMs` on the injected clock; the socket is closed on timeout. */
  private exchange(
    server: string,
    query: Uint8Array,
    transport: DnsTransport,
    timeoutMs: number,
  ): Promise<Result<Uint8Array, DnsUpstreamError>> {
    const ip = parseIp(server);
    if (!ip) return Promise.resolve(err({ code: 'io', message: `not an IP address: ${server}` }));
    const abort = new AbortController();
    return new Promise((resolve) => {
      const timer = this.o.clock.setTimeout(() => {
        abort.abort();
        resolve(err({ code: 'timeout', message: `no answer within ${timeoutMs} ms` }));
      }, timeoutMs);
      this.o.upstream.exchange(ip, query, transport, abort.signal).then(
        (r) => {
          this.o.clock.clearTimeout(timer);
          resolve(r);
        },
        (e: unknown) => {
          this.o.clock.clearTimeout(timer);
          resolve(err({ code: 'io', message: (e as Error).message }));
        },
      );
    });
  }

  /** The nameserver did not answer at all: tell the selector (a DNS-level error is no reason). */
  private upstreamFailed(server: string, e: DnsUpstreamError): void {
    if (e.code === 'timeout' || e.code === 'unreachable') this.o.unresponsive(server);
  }

  private randomId(): number {
    const b = this.o.random(2);
    return (b[0]! << 8) | b[1]!;
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

function rcodeName(rcode: number): string {
  const name = Object.entries(DNS_RCODE).find(([, v]) => v === rcode)?.[0];
  return name ?? `RCODE ${rcode}`;
}

/** Addresses as text (machine context and logs). */
export function addressTexts(addrs: readonly Uint8Array[]): string[] {
  return addrs.map((a) => formatIp(a));
}
