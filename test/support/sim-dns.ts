import dnsPacket from 'dns-packet';
import type { TestClock } from '../../src/actors/clock.js';
import type { DnsTransport, DnsUpstream, DnsUpstreamError } from '../../src/actors/dns.js';
import { formatIp } from '../../src/wire/ip/address.js';
import type { Result } from '../../src/wire/result.js';

/**
 * Nameservers on a simulated network with the simulated clock: each answers after its delay from
 * its own zone, or is dead (silent: the exchange times out; refused: it fails at once, as an ICMP
 * port unreachable does). No sockets: tests of the DNS layer run hours in milliseconds.
 */
export interface SimZoneRecord {
  readonly a?: readonly string[];
  readonly aaaa?: readonly string[];
  readonly cname?: string;
  readonly srv?: readonly { target: string; port: number }[];
  readonly txt?: readonly string[];
  readonly ttl?: number;
}

export interface SimNameserver {
  delayMs: number;
  state: 'up' | 'silent' | 'refused' | 'servfail';
  zone: Map<string, SimZoneRecord>;
  /** Questions received (name/TYPE/transport), for assertions. */
  readonly queries: string[];
  /** Pad answers with this many bytes of TXT (to test truncation). */
  bigTxt?: number;
}

export class SimDnsNetwork implements DnsUpstream {
  readonly servers = new Map<string, SimNameserver>();

  constructor(private readonly clock: TestClock) {}

  add(ip: string, o: Partial<Omit<SimNameserver, 'queries'>> = {}): SimNameserver {
    const s: SimNameserver = {
      delayMs: o.delayMs ?? 10,
      state: o.state ?? 'up',
      zone: o.zone ?? new Map([['firezone.dev', { a: ['192.0.2.1'], ttl: 300 }]]),
      queries: [],
    };
    this.servers.set(ip, s);
    return s;
  }

  exchange(
    server: Uint8Array,
    query: Uint8Array,
    transport: DnsTransport,
    signal: AbortSignal,
  ): Promise<Result<Uint8Array, DnsUpstreamError>> {
    const s = this.servers.get(formatIp(server));
    return new Promise((resolve) => {
      if (!s || s.state === 'refused') {
        resolve({ ok: false, error: { code: 'unreachable', message: 'ECONNREFUSED' } });
        return;
      }
      let q: dnsPacket.Packet;
      try {
        q = dnsPacket.decode(Buffer.from(query));
      } catch {
        return; // a real server ignores garbage: the exchange times out
      }
      const question = q.questions?.[0];
      s.queries.push(`${question?.name}/${question?.type}/${transport}`);
      if (s.state === 'silent') return;
      // Delay 0: at once, for tests whose clock does not run.
      if (s.delayMs === 0) {
        queueMicrotask(() => resolve({ ok: true, value: answer(s, q) }));
        return;
      }
      const timer = this.clock.setTimeout(() => resolve({ ok: true, value: answer(s, q) }), s.delayMs);
      signal.addEventListener('abort', () => this.clock.clearTimeout(timer));
    });
  }
}

function answer(s: SimNameserver, q: dnsPacket.Packet): Uint8Array {
  const question = q.questions![0]!;
  const name = question.name.toLowerCase();
  const rec = s.zone.get(name);
  const ttl = rec?.ttl ?? 60;
  const answers: dnsPacket.Answer[] = [];
  let rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' = rec ? 'NOERROR' : 'NXDOMAIN';
  if (s.state === 'servfail') rcode = 'SERVFAIL';
  else if (rec) {
    let owner = name;
    let r: SimZoneRecord | undefined = rec;
    if (rec.cname) {
      answers.push({ type: 'CNAME', name: owner, ttl, data: rec.cname });
      owner = rec.cname;
      r = s.zone.get(rec.cname);
    }
    const t = r?.ttl ?? ttl;
    if (question.type === 'A')
      for (const a of r?.a ?? []) answers.push({ type: 'A', name: owner, ttl: t, data: a });
    if (question.type === 'AAAA')
      for (const a of r?.aaaa ?? []) answers.push({ type: 'AAAA', name: owner, ttl: t, data: a });
    if (question.type === 'SRV')
      for (const x of r?.srv ?? [])
        answers.push({ type: 'SRV', name: owner, ttl: t, data: { target: x.target, port: x.port } });
    if (question.type === 'TXT') {
      for (const x of r?.txt ?? []) answers.push({ type: 'TXT', name: owner, ttl: t, data: x });
      if (s.bigTxt) answers.push({ type: 'TXT', name: owner, ttl: t, data: 'x'.repeat(200) });
      for (let n = 200; s.bigTxt && n < s.bigTxt; n += 200)
        answers.push({ type: 'TXT', name: owner, ttl: t, data: 'y'.repeat(200) });
    }
  }
  const authorities: dnsPacket.Answer[] =
    answers.length === 0 && rcode !== 'SERVFAIL'
      ? [
          {
            type: 'SOA',
            name: 'test',
            ttl: 30,
            data: {
              mname: 'ns.test',
              rname: 'hostmaster.test',
              serial: 1,
              refresh: 60,
              retry: 60,
              expire: 60,
              minimum: 20,
            },
          },
        ]
      : [];
  const bytes = dnsPacket.encode({
    id: q.id ?? 0,
    type: 'response',
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcodeBits(rcode),
    questions: [question],
    answers,
    authorities,
  });
  return new Uint8Array(bytes);
}

function rcodeBits(rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL'): number {
  return rcode === 'NOERROR' ? 0 : rcode === 'SERVFAIL' ? 2 : 3;
}

/** Lets promise chains settle (several turns of the event loop, no simulated time). */
export async function settleAsync(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** Advances the simulated clock by `ms` in steps, letting promises settle after each step. */
export async function advanceAsync(clock: TestClock, ms: number, stepMs = 50): Promise<void> {
  const end = clock.now() + ms;
  await settleAsync();
  while (clock.now() < end) {
    const next = Math.min(end, clock.nextDeadline() ?? end, clock.now() + stepMs);
    clock.advance(Math.max(0, next - clock.now()));
    await settleAsync();
  }
}
