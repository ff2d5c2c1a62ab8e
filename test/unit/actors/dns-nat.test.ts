import { afterEach, describe, expect, it } from 'vitest';
import { TestClock } from '../../../src/actors/clock.js';
import type { Gateway } from '../../../src/actors/gateway.js';
import { NAT_BINDING_IDLE_MS } from '../../../src/machines/dns-resource-nat.machine.js';
import type { ResourceId } from '../../../src/wire/ids.js';
import { formatIp, parseIp } from '../../../src/wire/ip/address.js';
import { IpPacket } from '../../../src/wire/ip/packet.js';
import { decodeP2pControl, encodeP2pControl } from '../../../src/wire/p2p/control.js';
import { buildPacket } from '../../support/packet-builder.js';
import { dnsResource, grants, resource } from '../../support/router-sim.js';
import { SimDnsNetwork, settleAsync } from '../../support/sim-dns.js';
import { type SimPeer, world } from '../../support/sim-gateway.js';

/**
 * DNS-resource NAT end to end on simulated I/O: a client announces proxy IPs for a name
 * (AssignedIps through the tunnel), the gateway's binding actor resolves the name through the
 * selected nameserver, maps the proxies in the router and answers DomainStatus.
 */

const NS = '10.53.0.1';
const SVC = '7f0a6c1e-3b8d-4a51-9f3e-2c1d0b9a8e71' as ResourceId;
const OTHER = '0b2f5d0e-8c7a-4e6b-9d1c-5a4f3e2d1c0b' as ResourceId;
const PROXIES = ['100.96.0.1', '100.96.0.2', '100.96.0.3', '100.96.0.4'];
const PROXIES6 = ['fd00:2021:1111:8000::1', 'fd00:2021:1111:8000::2'];

let current: Gateway | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

async function setup(o: { filters?: boolean } = {}) {
  const clock = new TestClock();
  const dns = new SimDnsNetwork(clock);
  const ns = dns.add(NS, { delayMs: 5 });
  ns.zone.set('web.svc.test', { a: ['172.20.1.10'], aaaa: ['fd20::10'], ttl: 30 });
  ns.zone.set('api.svc.test', { a: ['172.20.1.30'], ttl: 30 });
  const w = world({ clock, dns: { nameservers: [NS], upstream: dns } });
  current = w.gateway;
  const alice = w.peer('alice');
  const svc = dnsResource(
    SVC,
    '*.svc.test',
    o.filters ? [{ protocol: 'tcp', portStart: 80, portEnd: 80 }] : [],
  );
  w.gateway.applyPolicy([alice.policy(grants(svc, resource('lab', '172.20.9.0/24')))]);
  w.connect(alice);
  /** Runs simulated time with promise settling in between. */
  const run = async (ms: number, step = 10) => {
    const end = clock.now() + ms;
    await settleAsync();
    while (clock.now() < end) {
      w.run(Math.min(step, end - clock.now()));
      await settleAsync();
    }
  };
  await run(100);
  expect(w.gateway.selectedNameserver()).toBe(NS);
  ns.queries.length = 0;
  const statuses = () =>
    alice.received
      .filter((p) => p.isP2pControl)
      .map((p) => decodeP2pControl(p))
      .map((r) =>
        r.ok && r.value.type === 'domain-status' ? `${r.value.domain}:${r.value.status}` : 'other',
      );
  const assign = (
    domain: string,
    proxies: string[] = [...PROXIES, ...PROXIES6],
    resourceId: ResourceId = SVC,
  ) => {
    const enc = encodeP2pControl({
      type: 'assigned-ips',
      resource: resourceId,
      domain,
      proxyIps: proxies.map((p) => parseIp(p)!),
    });
    if (!enc.ok) throw new Error(enc.error.message);
    alice.send(enc.value);
  };
  const lookups = () => ns.queries.filter((q) => !q.startsWith('firezone.dev/'));
  /** Sends TCP from the client to `dst:port` and returns where the gateway wrote it (real dst:srcport), or undefined. */
  const tcpTo = (a: SimPeer, dst: string, srcPort: number, flags = 0x02) => {
    const before = w.tun.written.length;
    a.send(
      buildPacket({ src: a.tunnelIp, dst: parseIp(dst)!, l4: { kind: 'tcp', srcPort, dstPort: 80, flags } }),
    );
    w.settle();
    const out = w.tun.written.slice(before).map((b) => IpPacket.parse(b));
    const p = out[0];
    return p?.ok
      ? `${formatIp(p.value.buf, p.value.dstOffset, p.value.addressLength)}:${p.value.srcPort}`
      : undefined;
  };
  const binding = (domain: string) => w.gateway.natBindingSnapshot('alice', domain);
  return { w, clock, ns, alice, run, statuses, assign, lookups, tcpTo, binding };
}

describe('DNS-resource NAT bindings', () => {
  it('resolves the name, maps the proxy IPs per family, and answers Active', async () => {
    const t = await setup();
    t.assign('web.svc.test');
    await t.run(50);
    expect(t.statuses()).toEqual(['web.svc.test:Active']);
    expect(t.lookups().sort()).toEqual(['web.svc.test/A/udp', 'web.svc.test/AAAA/udp']);
    expect(t.binding('web.svc.test')?.value).toBe('active');
    for (const [i, p] of PROXIES.entries())
      expect(t.tcpTo(t.alice, p, 4000 + i)).toBe(`172.20.1.10:${4000 + i}`);
    expect(t.w.gateway.router.dropCounters()['proxy.no-translation'] ?? 0).toBe(0);
  });

  it('answers Inactive at once for a resource the client is not granted, without a lookup', async () => {
    const t = await setup();
    t.assign('web.other.test', PROXIES, OTHER);
    t.w.settle();
    expect(t.statuses()).toEqual(['web.other.test:Inactive']);
    expect(t.lookups()).toEqual([]);
    // A granted resource whose pattern does not cover the name: Inactive after the lookup.
    t.ns.zone.set('web.other.test', { a: ['172.20.1.99'] });
    t.assign('web.other.test');
    await t.run(50);
    expect(t.statuses()).toEqual(['web.other.test:Inactive', 'web.other.test:Inactive']);
    expect(t.binding('web.other.test')?.value).toBe('inactive');
    expect(t.tcpTo(t.alice, PROXIES[0]!, 5000)).toBeUndefined();
  });

  it('is idempotent: a repeat within the TTL changes nothing and keeps open flows', async () => {
    const t = await setup();
    t.assign('web.svc.test');
    await t.run(50);
    expect(t.tcpTo(t.alice, PROXIES[0]!, 4000)).toBe('172.20.1.10:4000');
    const natBefore = JSON.stringify(t.w.gateway.router.dropCounters());
    for (let i = 0; i < 5; i++) {
      t.assign('web.svc.test');
      await t.run(2_000);
    }
    expect(t.statuses()).toEqual(Array(6).fill('web.svc.test:Active'));
    expect(t.lookups()).toHaveLength(2); // the cache answered every repeat
    expect(t.binding('web.svc.test')?.context.resolutions).toBe(6);
    expect(t.tcpTo(t.alice, PROXIES[0]!, 4000, 0x10)).toBe('172.20.1.10:4000');
    expect(JSON.stringify(t.w.gateway.router.dropCounters())).toBe(natBefore);
  });

  it('after the TTL a new flow goes to the new address while an open flow keeps the old one', async () => {
    const t = await setup();
    t.assign('api.svc.test', PROXIES);
    await t.run(50);
    expect(t.tcpTo(t.alice, PROXIES[0]!, 4000)).toBe('172.20.1.30:4000');
    t.ns.zone.set('api.svc.test', { a: ['172.20.1.31'], ttl: 30 });
    // Before the TTL runs out a repeat still gets the cached address.
    await t.run(20_000, 1_000);
    t.tcpTo(t.alice, PROXIES[0]!, 4000, 0x10); // keep the flow alive
    t.assign('api.svc.test', PROXIES);
    await t.run(50);
    expect(t.tcpTo(t.alice, PROXIES[1]!, 4001)).toBe('172.20.1.30:4001');
    await t.run(11_000, 1_000);
    t.tcpTo(t.alice, PROXIES[0]!, 4000, 0x10);
    t.assign('api.svc.test', PROXIES);
    await t.run(50);
    expect(t.lookups().filter((q) => q.endsWith('/A/udp'))).toHaveLength(2);
    // PROXIES[0] and [1] have open flows: they keep the old address; [2] is fresh.
    expect(t.tcpTo(t.alice, PROXIES[0]!, 4000, 0x10)).toBe('172.20.1.30:4000');
    expect(t.tcpTo(t.alice, PROXIES[2]!, 4002)).toBe('172.20.1.31:4002');
    expect(t.statuses()).toEqual(Array(3).fill('api.svc.test:Active'));
  });

  it('reports Inactive when the lookup fails, retries after 1 s, 2 s and 4 s, and goes Active when the nameserver is back', async () => {
    const t = await setup();
    t.ns.state = 'servfail';
    t.assign('web.svc.test');
    await t.run(50);
    expect(t.statuses()).toEqual(['web.svc.test:Inactive']);
    expect(t.binding('web.svc.test')?.value).toBe('retrying');
    await t.run(1_000 + 2_000 + 300, 50);
    expect(t.statuses()).toEqual(Array(3).fill('web.svc.test:Inactive'));
    t.ns.state = 'up';
    await t.run(4_300, 50);
    expect(t.statuses()).toEqual([...Array(3).fill('web.svc.test:Inactive'), 'web.svc.test:Active']);
    expect(t.binding('web.svc.test')?.value).toBe('active');
    expect(t.tcpTo(t.alice, PROXIES[0]!, 4000)).toBe('172.20.1.10:4000');
  });

  it('gives up after the retries, and the next AssignedIps starts again', async () => {
    const t = await setup();
    t.ns.state = 'servfail';
    t.assign('web.svc.test');
    await t.run(10_000, 50);
    expect(t.binding('web.svc.test')?.value).toBe('failed');
    expect(t.statuses()).toEqual(Array(4).fill('web.svc.test:Inactive'));
    t.ns.state = 'up';
    t.assign('web.svc.test');
    await t.run(50);
    expect(t.statuses().at(-1)).toBe('web.svc.test:Active');
  });

  it('resets the client NAT when the proxy IPs are renumbered onto another name', async () => {
    const t = await setup();
    t.assign('web.svc.test', PROXIES);
    await t.run(50);
    expect(t.tcpTo(t.alice, PROXIES[0]!, 4000)).toBe('172.20.1.10:4000');
    t.assign('api.svc.test', PROXIES);
    await t.run(50);
    expect(t.tcpTo(t.alice, PROXIES[0]!, 4000, 0x10)).toBe('172.20.1.30:4000');
    expect(t.statuses()).toEqual(['web.svc.test:Active', 'api.svc.test:Active']);
  });

  it('ends a binding nobody asked about for 15 minutes; the translations stay', async () => {
    const t = await setup();
    t.assign('web.svc.test', PROXIES);
    await t.run(50);
    await t.run(NAT_BINDING_IDLE_MS + 1_000, 1_000);
    expect(t.w.gateway.clientSnapshot('alice')?.context.natBindings).toEqual({});
    expect(t.tcpTo(t.alice, PROXIES[0]!, 4100)).toBe('172.20.1.10:4100');
    t.assign('web.svc.test', PROXIES);
    await t.run(50);
    expect(t.binding('web.svc.test')?.value).toBe('active');
  });
});
