import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Actor, createActor, fromPromise } from 'xstate';
import { TestClock } from '../../../src/actors/clock.js';
import { DNS_FORWARD_TIMEOUT_MS, DnsService } from '../../../src/actors/dns.js';
import { gatewaySupervisorMachine } from '../../../src/machines/gateway-supervisor.machine.js';
import {
  NAMESERVER_REEVALUATE_MS,
  type NameserverProbe,
  nameserverSelectorMachine,
} from '../../../src/machines/nameserver-selector.machine.js';
import { formatIp } from '../../../src/wire/ip/address.js';
import { PROPERTY_RUNS } from '../../support/arbitraries.js';
import { advanceAsync, SimDnsNetwork, settleAsync } from '../../support/sim-dns.js';
import { seededRandom } from '../../support/wg-pair.js';

/**
 * The DNS layer on a simulated network and clock: the nameserver selector with real probe rounds,
 * the in-tunnel forwarder (SERVFAIL, FORMERR, truncation) and the DNS-resource resolver (TTL
 * cache, clamps, negative answers, coalescing).
 */

const FAST = '10.53.0.1';
const SLOW = '10.53.0.2';

function harness(servers: string[]) {
  const clock = new TestClock();
  const net = new SimDnsNetwork(clock);
  let selector: Actor<typeof nameserverSelectorMachine> | undefined;
  const dns = new DnsService({
    upstream: net,
    clock,
    selected: () => selector?.getSnapshot().context.selected,
    unresponsive: (server) => selector?.send({ type: 'nameserver.unresponsive', server }),
    random: seededRandom(3),
  });
  selector = createActor(
    nameserverSelectorMachine.provide({
      actors: { probeRound: fromPromise(({ input }) => dns.probeRound(input.servers)) },
    }),
    { clock, input: { servers } },
  );
  const state = () => selector!.getSnapshot().value;
  const selected = () => selector!.getSnapshot().context.selected;
  return { clock, net, dns, selector, state, selected };
}

function query(name: string, type: dnsPacket.RecordType, id = 0x1234): Uint8Array {
  return new Uint8Array(
    dnsPacket.encode({ id, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type }] }),
  );
}

function decode(bytes: Uint8Array | undefined): dnsPacket.DecodedPacket & { rcode?: string } {
  if (!bytes) throw new Error('no answer');
  return dnsPacket.decode(Buffer.from(bytes)) as dnsPacket.DecodedPacket & { rcode?: string };
}

describe('nameserver selector', () => {
  it('selects the fastest server of the round, over UDP and TCP', async () => {
    const h = harness([SLOW, FAST]);
    h.net.add(SLOW, { delayMs: 300 });
    h.net.add(FAST, { delayMs: 20 });
    h.selector.start();
    expect(h.state()).toBe('probing');
    await advanceAsync(h.clock, 500);
    expect(h.state()).toBe('selected');
    expect(h.selected()).toBe(FAST);
    expect(h.selector.getSnapshot().context.ranking.map((p) => p.server)).toEqual([FAST, SLOW]);
    expect(h.net.servers.get(FAST)!.queries).toEqual(['firezone.dev/A/udp', 'firezone.dev/A/tcp']);
  });

  it('re-evaluates every 60 s, and a server that died loses its place at the next round', async () => {
    const h = harness([SLOW, FAST]);
    h.net.add(SLOW, { delayMs: 300 });
    const fast = h.net.add(FAST, { delayMs: 20 });
    h.selector.start();
    await advanceAsync(h.clock, 500);
    expect(h.selected()).toBe(FAST);
    fast.state = 'silent';
    await advanceAsync(h.clock, NAMESERVER_REEVALUATE_MS - 500 - 100);
    expect(h.selected()).toBe(FAST); // no round yet
    expect(h.selector.getSnapshot().context.rounds).toBe(1);
    await advanceAsync(h.clock, 100 + 2_500);
    expect(h.selector.getSnapshot().context.rounds).toBe(2);
    expect(h.selected()).toBe(SLOW);
    // It comes back and is faster again: the next round takes it.
    fast.state = 'up';
    await advanceAsync(h.clock, NAMESERVER_REEVALUATE_MS + 500);
    expect(h.selected()).toBe(FAST);
  });

  it('moves to the next-fastest at once when the selected server stops answering a query, and probes again', async () => {
    const h = harness([SLOW, FAST]);
    h.net.add(SLOW, {
      delayMs: 300,
      zone: new Map([
        ['firezone.dev', { a: ['192.0.2.1'] }],
        ['x.test', { a: ['192.0.2.9'] }],
      ]),
    });
    const fast = h.net.add(FAST, { delayMs: 20 });
    h.selector.start();
    await advanceAsync(h.clock, 500);
    fast.state = 'silent';
    const started = h.clock.now();
    const pending = h.dns.handleQuery(query('x.test', 'A'), 'udp');
    let answer: Uint8Array | undefined;
    void pending.then((a) => {
      answer = a;
    });
    await advanceAsync(h.clock, DNS_FORWARD_TIMEOUT_MS - 10);
    expect(answer).toBeUndefined();
    await advanceAsync(h.clock, 20);
    expect(decode(answer).rcode).toBe('SERVFAIL');
    expect(h.clock.now() - started).toBeLessThanOrEqual(DNS_FORWARD_TIMEOUT_MS + 50);
    // The slow one took over at once and a round runs; the next query is answered.
    expect(h.selected()).toBe(SLOW);
    expect(h.state()).toBe('probing');
    const next = h.dns.handleQuery(query('x.test', 'A'), 'udp');
    await advanceAsync(h.clock, 400);
    const a = decode(await next);
    expect(a.rcode).toBe('NOERROR');
    expect((a.answers?.[0] as { data?: unknown } | undefined)?.data).toBe('192.0.2.9');
    await advanceAsync(h.clock, 2_500);
    expect(h.state()).toBe('selected');
    expect(h.selected()).toBe(SLOW);
  });

  it('is unavailable while nobody answers (SERVFAIL at once) and recovers within one re-evaluation period', async () => {
    const h = harness([FAST]);
    const fast = h.net.add(FAST, { state: 'refused' });
    h.selector.start();
    await advanceAsync(h.clock, 100);
    expect(h.state()).toBe('unavailable');
    expect(h.selected()).toBeUndefined();
    const t0 = h.clock.now();
    const a = decode(await h.dns.handleQuery(query('x.test', 'SRV'), 'udp'));
    expect(h.clock.now()).toBe(t0);
    expect(a.rcode).toBe('SERVFAIL');
    expect(h.dns.counters.servfailNoNameserver).toBe(1);
    // Retries back off (1 s, 2 s, 4 s, …) but never wait longer than the re-evaluation period.
    await advanceAsync(h.clock, 10 * 60_000);
    expect(h.selector.getSnapshot().context.failedRounds).toBeGreaterThan(10);
    fast.state = 'up';
    const back = h.clock.now();
    await advanceAsync(h.clock, NAMESERVER_REEVALUATE_MS + 100, 500);
    expect(h.state()).toBe('selected');
    expect(h.clock.now() - back).toBeLessThanOrEqual(NAMESERVER_REEVALUATE_MS + 100);
  });

  it('is restarted by the supervisor one second after it fails', async () => {
    const clock = new TestClock();
    let calls = 0;
    const selector = nameserverSelectorMachine.provide({
      actors: {
        probeRound: fromPromise(
          async (): Promise<readonly NameserverProbe[]> => [{ server: FAST, rttMs: 5 }],
        ),
      },
      actions: {
        selectionChanged: () => {
          calls++;
          if (calls === 1) throw new Error('boom');
        },
      },
    });
    const supervisor = createActor(
      gatewaySupervisorMachine.provide({
        actors: { nameserverSelector: selector },
        actions: { cleanupClient: () => undefined, cleanupRelay: () => undefined },
      }),
      { clock, input: { nameservers: [FAST] } },
    );
    supervisor.start();
    await settleAsync();
    const snap = () => supervisor.getSnapshot();
    expect(snap().value).toEqual({ running: { nameservers: 'restarting' } });
    expect(snap().context.nameserverRestarts).toBe(1);
    expect(snap().children.nameservers).toBeUndefined();
    // Events for it while it is gone are not an error.
    supervisor.send({ type: 'nameservers.event', event: { type: 'nameserver.reevaluate' } });
    await advanceAsync(clock, 1_000);
    expect(snap().value).toEqual({ running: { nameservers: 'watching' } });
    await settleAsync();
    const child = snap().children.nameservers!.getSnapshot() as {
      value: unknown;
      context: { selected?: string };
    };
    expect(child.value).toBe('selected');
    expect(child.context.selected).toBe(FAST);
    expect(supervisor.getSnapshot().status).toBe('active');
  });
});

describe('in-tunnel DNS forwarding', () => {
  async function ready() {
    const h = harness([FAST]);
    const s = h.net.add(FAST, {
      delayMs: 20,
      zone: new Map([
        ['firezone.dev', { a: ['192.0.2.1'] }],
        ['_http._tcp.web.svc.test', { srv: [{ target: 'web.svc.test', port: 80 }] }],
        ['web.svc.test', { a: ['172.20.1.10'], txt: ['hello'] }],
      ]),
    });
    h.selector.start();
    await advanceAsync(h.clock, 200);
    expect(h.selected()).toBe(FAST);
    return { ...h, server: s };
  }

  it('relays the query unchanged and the answer with the same ID, over UDP and TCP', async () => {
    const h = await ready();
    for (const transport of ['udp', 'tcp'] as const) {
      const pending = h.dns.handleQuery(query('_http._tcp.web.svc.test', 'SRV', 0x4242), transport);
      await advanceAsync(h.clock, 50);
      const a = decode(await pending);
      expect(a.id).toBe(0x4242);
      expect(a.rcode).toBe('NOERROR');
      expect(a.answers?.[0]).toMatchObject({ type: 'SRV', data: { target: 'web.svc.test', port: 80 } });
    }
    expect(h.server.queries.slice(-2)).toEqual([
      '_http._tcp.web.svc.test/SRV/udp',
      '_http._tcp.web.svc.test/SRV/tcp',
    ]);
    expect(h.dns.counters.answered).toBe(2);
  });

  it('truncates UDP answers over 1200 bytes with TC set; TCP gets the whole answer', async () => {
    const h = await ready();
    h.server.bigTxt = 3000;
    const udp = h.dns.handleQuery(query('web.svc.test', 'TXT'), 'udp');
    const tcp = h.dns.handleQuery(query('web.svc.test', 'TXT'), 'tcp');
    await advanceAsync(h.clock, 50);
    const u = (await udp)!;
    const t = (await tcp)!;
    expect(u.length).toBeLessThanOrEqual(1200);
    expect(decode(u).flag_tc).toBe(true);
    expect(decode(u).answers).toEqual([]);
    expect(decode(u).questions?.[0]?.name).toBe('web.svc.test');
    expect(t.length).toBeGreaterThan(3000);
    expect(decode(t).flag_tc).toBe(false);
    expect(h.dns.counters.truncated).toBe(1);
  });

  it('answers FORMERR to a malformed query and drops what has no header', async () => {
    const h = await ready();
    const bad = query('web.svc.test', 'A');
    const cut = bad.slice(0, bad.length - 3);
    const a = decode(await h.dns.handleQuery(cut, 'udp'));
    expect(a.rcode).toBe('FORMERR');
    expect(a.id).toBe(0x1234);
    expect(await h.dns.handleQuery(Uint8Array.of(1, 2, 3), 'udp')).toBeUndefined();
    // A response sent to the server is not answered either.
    const resp = new Uint8Array(
      dnsPacket.encode({ id: 9, type: 'response', questions: [{ name: 'a.test', type: 'A' }] }),
    );
    expect(await h.dns.handleQuery(resp, 'udp')).toBeUndefined();
    expect(h.dns.counters).toMatchObject({ formerr: 1, malformedDropped: 2 });
    expect(h.server.queries.filter((q) => !q.startsWith('firezone.dev'))).toEqual([]);
  });

  it('answers SERVFAIL when the nameserver answers something else than the question', async () => {
    const h = await ready();
    // A server that answers with another ID (e.g. a spoofed or stale packet).
    const wrong: SimDnsNetwork['exchange'] = async (_s, q) => {
      const p = dnsPacket.decode(Buffer.from(q));
      return {
        ok: true,
        value: new Uint8Array(
          dnsPacket.encode({ id: (p.id ?? 0) ^ 1, type: 'response', questions: p.questions ?? [] }),
        ),
      };
    };
    (h.net as { exchange: SimDnsNetwork['exchange'] }).exchange = wrong;
    const a = decode(await h.dns.handleQuery(query('web.svc.test', 'A'), 'udp'));
    expect(a.rcode).toBe('SERVFAIL');
    expect(a.id).toBe(0x1234);
    expect(h.dns.counters.servfailUpstream).toBe(1);
  });
});

describe('in-tunnel DNS: anything from the network', () => {
  it('never rejects and answers at most one message, whatever the bytes (random and mutated queries)', async () => {
    const h = harness([FAST]);
    h.net.add(FAST, {
      delayMs: 0,
      zone: new Map([
        ['firezone.dev', { a: ['192.0.2.1'] }],
        ['web.svc.test', { a: ['172.20.1.10'], txt: ['x'] }],
      ]),
    });
    h.selector.start();
    await settleAsync();
    expect(h.selected()).toBe(FAST);
    const valid = query('web.svc.test', 'TXT', 77);
    const mutated = fc
      .tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(valid.length))
      .map(([at, byte, cut]) => {
        const b = Uint8Array.from(valid);
        b[at] = byte;
        return b.subarray(0, Math.max(0, b.length - cut));
      });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.uint8Array({ maxLength: 600 }), mutated),
        fc.constantFrom('udp' as const, 'tcp' as const),
        async (bytes, transport) => {
          const answer = await h.dns.handleQuery(bytes, transport);
          if (answer === undefined) return;
          const a = decode(answer);
          expect(a.type).toBe('response');
          expect(a.id).toBe(bytes.length >= 2 ? (bytes[0]! << 8) | bytes[1]! : a.id);
          if (transport === 'udp') expect(answer.length).toBeLessThanOrEqual(1200);
        },
      ),
      { numRuns: Math.min(PROPERTY_RUNS, 5_000) },
    );
    expect(h.dns.counters.queries).toBeGreaterThan(0);
  });
});

describe('DNS-resource resolver', () => {
  async function ready(
    zone: [
      string,
      Parameters<SimDnsNetwork['add']>[1] extends infer O
        ? O extends { zone?: Map<string, infer R> }
          ? R
          : never
        : never,
    ][],
  ) {
    const h = harness([FAST]);
    const s = h.net.add(FAST, {
      delayMs: 20,
      zone: new Map([['firezone.dev', { a: ['192.0.2.1'] }], ...zone]),
    });
    h.selector.start();
    await advanceAsync(h.clock, 200);
    s.queries.length = 0;
    // Lookups only (the selector's probes of firezone.dev go on every minute).
    const lookups = () => s.queries.filter((q) => !q.startsWith('firezone.dev/'));
    const resolve = async (name: string) => {
      const p = h.dns.resolve(name).then(
        (a) => a.map((x) => formatIp(x)),
        (e: Error) => `error: ${e.message}`,
      );
      await advanceAsync(h.clock, 60);
      return p;
    };
    return { ...h, server: s, resolve, lookups };
  }

  it('looks up A and AAAA in parallel and merges them, IPv4 first', async () => {
    const h = await ready([
      ['web.svc.test', { a: ['172.20.1.10', '172.20.1.11'], aaaa: ['fd20::10'], ttl: 60 }],
    ]);
    expect(await h.resolve('web.svc.test')).toEqual(['172.20.1.10', '172.20.1.11', 'fd20::10']);
    expect(h.server.queries.sort()).toEqual(['web.svc.test/A/udp', 'web.svc.test/AAAA/udp']);
  });

  it('follows CNAMEs and treats a family without records as empty', async () => {
    const h = await ready([
      ['app.svc.test', { cname: 'web.svc.test' }],
      ['web.svc.test', { a: ['172.20.1.10'], ttl: 60 }],
    ]);
    expect(await h.resolve('app.svc.test')).toEqual(['172.20.1.10']);
  });

  it('answers from the cache for the TTL, then asks again', async () => {
    const h = await ready([['web.svc.test', { a: ['172.20.1.10'], aaaa: ['fd20::10'], ttl: 30 }]]);
    await h.resolve('web.svc.test');
    expect(h.lookups()).toHaveLength(2);
    h.server.zone.set('web.svc.test', { a: ['172.20.1.20'], aaaa: ['fd20::10'], ttl: 30 });
    await advanceAsync(h.clock, 29_000);
    expect(await h.resolve('web.svc.test')).toEqual(['172.20.1.10', 'fd20::10']);
    expect(h.lookups()).toHaveLength(2);
    expect(h.dns.counters.cacheHits).toBe(2);
    await advanceAsync(h.clock, 1_000);
    expect(await h.resolve('web.svc.test')).toEqual(['172.20.1.20', 'fd20::10']);
    expect(h.lookups()).toHaveLength(4);
  });

  it('clamps short TTLs up to 5 s and long ones down to a day', async () => {
    const h = await ready([
      ['short.svc.test', { a: ['172.20.1.1'], aaaa: ['fd20::1'], ttl: 0 }],
      ['long.svc.test', { a: ['172.20.1.2'], aaaa: ['fd20::2'], ttl: 7 * 86_400 }],
    ]);
    await h.resolve('short.svc.test');
    await h.resolve('long.svc.test');
    expect(h.lookups()).toHaveLength(4);
    await advanceAsync(h.clock, 4_500);
    await h.resolve('short.svc.test');
    expect(h.lookups()).toHaveLength(4);
    await advanceAsync(h.clock, 1_000);
    await h.resolve('short.svc.test');
    expect(h.lookups()).toHaveLength(6);
    await advanceAsync(h.clock, 86_400_000 - 10_000, 30_000);
    await h.resolve('long.svc.test');
    expect(h.lookups()).toHaveLength(6);
    await advanceAsync(h.clock, 10_000);
    await h.resolve('long.svc.test');
    expect(h.lookups()).toHaveLength(8);
  });

  it('fails for a name without records and caches that for the negative TTL', async () => {
    const h = await ready([]);
    expect(await h.resolve('nope.svc.test')).toMatch(/^error: .*no A or AAAA records/);
    expect(h.lookups()).toHaveLength(2);
    // SOA TTL 30, minimum 20: cached for 20 s.
    await advanceAsync(h.clock, 19_000);
    await h.resolve('nope.svc.test');
    expect(h.lookups()).toHaveLength(2);
    await advanceAsync(h.clock, 1_000);
    h.server.zone.set('nope.svc.test', { a: ['172.20.1.3'] });
    expect(await h.resolve('nope.svc.test')).toEqual(['172.20.1.3']);
  });

  it('does not cache failures, and fails at once without a nameserver', async () => {
    const h = await ready([['web.svc.test', { a: ['172.20.1.10'] }]]);
    h.server.state = 'servfail';
    expect(await h.resolve('web.svc.test')).toMatch(/answered SERVFAIL/);
    h.server.state = 'up';
    expect(await h.resolve('web.svc.test')).toEqual(['172.20.1.10']);
    const none = harness([]);
    none.selector.start();
    await settleAsync();
    await expect(none.dns.resolve('web.svc.test')).rejects.toThrow('no nameserver available');
  });

  it('coalesces concurrent lookups of the same name into one query per type', async () => {
    const h = await ready([['web.svc.test', { a: ['172.20.1.10'] }]]);
    const all = Promise.all([
      h.dns.resolve('web.svc.test'),
      h.dns.resolve('WEB.svc.test.'),
      h.dns.resolve('web.svc.test'),
    ]);
    await advanceAsync(h.clock, 60);
    expect((await all).map((a) => a.length)).toEqual([1, 1, 1]);
    expect(h.lookups()).toHaveLength(2);
  });
});
