import dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import {
  ASSIGNED_IPS_RETRANSMIT_MS,
  classifyQuery,
  DnsStub,
  type DnsStubOutput,
  errorReply,
  FORWARD_TIMEOUT_MS,
  looksLikeControl,
  matchResource,
  PROXY_ANSWER_TIMEOUT_MS,
  PROXY_ANSWER_TTL_S,
  ProxyIpAllocator,
  proxyAnswer,
  RCODE_REFUSED,
  RCODE_SERVFAIL,
} from '../../../../src/dev/client/dns-stub.js';
import type { ResourceId } from '../../../../src/wire/ids.js';
import { formatIp, parseIp } from '../../../../src/wire/ip/address.js';
import { IpPacket } from '../../../../src/wire/ip/packet.js';
import { decodeP2pControl, encodeP2pControl } from '../../../../src/wire/p2p/control.js';
import { PROXY_RANGE_V4, PROXY_RANGE_V6, prefixContains } from '../../../../src/wire/policy.js';

const SVC = '1844956a-9aca-4bf4-903b-27c7ebf18666';
const EXACT = '410c6258-f8fd-43fe-a8e8-7b6e788c80a6';
const RESOURCES = [
  { id: SVC, address: '*.svc.test' },
  { id: EXACT, address: 'db.svc.test' },
];

function query(
  name: string,
  type: dnsPacket.RecordType,
  o: { id?: number; edns?: boolean; questions?: number } = {},
): Uint8Array {
  const questions = Array.from({ length: o.questions ?? 1 }, () => ({ type, name, class: 'IN' as const }));
  const b = dnsPacket.encode({
    type: 'query',
    id: o.id ?? 0x1234,
    flags: dnsPacket.RECURSION_DESIRED,
    questions,
    additionals: o.edns
      ? [
          {
            type: 'OPT',
            name: '.',
            udpPayloadSize: 4096,
            extendedRcode: 0,
            ednsVersion: 0,
            flags: 0,
            flag_do: false,
            options: [],
          },
        ]
      : [],
  });
  return new Uint8Array(b);
}

/** dns-packet decodes the RCODE too; its types do not say so. */
const decode = (b: Uint8Array) =>
  dnsPacket.decode(Buffer.from(b)) as dnsPacket.DecodedPacket & { rcode: string };

function domainStatus(resource: string, domain: string, status: 'Active' | 'Inactive'): Uint8Array {
  const r = encodeP2pControl({ type: 'domain-status', resource: resource as ResourceId, domain, status });
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

function drain<A>(stub: DnsStub<A>): DnsStubOutput<A>[] {
  const out: DnsStubOutput<A>[] = [];
  for (let o = stub.pollOutput(); o; o = stub.pollOutput()) out.push(o);
  return out;
}

function assignedIps(o: DnsStubOutput<unknown>) {
  if (o.type !== 'control') throw new Error(`not a control output: ${o.type}`);
  const p = IpPacket.parse(o.packet);
  if (!p.ok) throw new Error(p.error.message);
  const e = decodeP2pControl(p.value);
  if (!e.ok || e.value.type !== 'assigned-ips') throw new Error('not AssignedIps');
  return {
    resource: e.value.resource,
    domain: e.value.domain,
    proxyIps: e.value.proxyIps.map((ip) => formatIp(ip)),
  };
}

describe('ProxyIpAllocator', () => {
  it('gives each name 4 + 4 sequential proxies inside the proxy ranges, stable and case-insensitive', () => {
    const a = new ProxyIpAllocator();
    const first = a.ipsFor('Web.Svc.Test.');
    expect(first.v4.map((ip) => formatIp(ip))).toEqual([
      '100.96.0.1',
      '100.96.0.2',
      '100.96.0.3',
      '100.96.0.4',
    ]);
    expect(first.v6.map((ip) => formatIp(ip))).toEqual([
      'fd00:2021:1111:8000::1',
      'fd00:2021:1111:8000::2',
      'fd00:2021:1111:8000::3',
      'fd00:2021:1111:8000::4',
    ]);
    const second = a.ipsFor('api.svc.test');
    expect(formatIp(second.v4[0]!)).toBe('100.96.0.5');
    expect(formatIp(second.v6[3]!)).toBe('fd00:2021:1111:8000::8');
    expect(a.ipsFor('web.svc.test').v4.map((ip) => formatIp(ip))).toEqual(first.v4.map((ip) => formatIp(ip)));
    for (const ip of [...first.v4, ...second.v4]) expect(prefixContains(PROXY_RANGE_V4, ip, 0, 4)).toBe(true);
    for (const ip of [...first.v6, ...second.v6])
      expect(prefixContains(PROXY_RANGE_V6, ip, 0, 16)).toBe(true);
  });

  it('maps a proxy address back to its name, and nothing else', () => {
    const a = new ProxyIpAllocator();
    a.ipsFor('web.svc.test');
    a.ipsFor('api.svc.test');
    expect(a.nameOf(parseIp('100.96.0.3')!)).toBe('web.svc.test');
    expect(a.nameOf(parseIp('100.96.0.5')!)).toBe('api.svc.test');
    expect(a.nameOf(parseIp('fd00:2021:1111:8000::8')!)).toBe('api.svc.test');
    expect(a.nameOf(parseIp('100.96.0.9')!)).toBeUndefined();
    expect(a.nameOf(parseIp('100.96.0.0')!)).toBeUndefined();
    expect(a.nameOf(parseIp('100.64.0.1')!)).toBeUndefined();
    expect(a.nameOf(parseIp('fd00:2021:1111::1')!)).toBeUndefined();
    // At an offset inside a packet.
    const pkt = new Uint8Array(20);
    pkt.set(parseIp('100.96.0.6')!, 16);
    expect(a.nameOf(pkt, 16, 4)).toBe('api.svc.test');
  });
});

describe('matchResource / classifyQuery', () => {
  it('prefers an exact name over a pattern', () => {
    expect(matchResource('db.svc.test', RESOURCES)?.id).toBe(EXACT);
    expect(matchResource('web.svc.test', RESOURCES)?.id).toBe(SVC);
    expect(matchResource('svc.test', RESOURCES)?.id).toBe(SVC);
    expect(matchResource('a.b.svc.test', RESOURCES)).toBeUndefined();
  });

  it('answers A/AAAA itself, forwards other types, refuses other names', () => {
    expect(classifyQuery(query('Web.svc.test', 'A'), RESOURCES)).toEqual({
      kind: 'proxy',
      resource: SVC,
      domain: 'web.svc.test',
      qtype: 'A',
    });
    expect(classifyQuery(query('web.svc.test', 'AAAA'), RESOURCES)).toMatchObject({
      kind: 'proxy',
      qtype: 'AAAA',
    });
    expect(classifyQuery(query('_http.svc.test', 'SRV'), RESOURCES)).toEqual({
      kind: 'forward',
      resource: SVC,
      domain: '_http.svc.test',
      qtype: 'SRV',
    });
    expect(classifyQuery(query('web.svc.test', 'TXT'), RESOURCES)).toMatchObject({ kind: 'forward' });
    expect(classifyQuery(query('web.svc.test', 'MX'), RESOURCES)).toMatchObject({ kind: 'forward' });
    expect(classifyQuery(query('example.com', 'A'), RESOURCES)).toEqual({
      kind: 'refused',
      domain: 'example.com',
    });
    expect(classifyQuery(query('web.svc.test', 'A', { questions: 2 }), RESOURCES)).toEqual({
      kind: 'formerr',
    });
    expect(classifyQuery(Uint8Array.of(1, 2, 3), RESOURCES)).toEqual({ kind: 'malformed' });
    const response = query('web.svc.test', 'A');
    response[2]! |= 0x80;
    expect(classifyQuery(response, RESOURCES)).toEqual({ kind: 'malformed' });
  });
});

describe('answers', () => {
  it('builds A and AAAA answers with the query id, question, a small TTL and OPT when asked', () => {
    const ips = new ProxyIpAllocator().ipsFor('web.svc.test');
    const all = [...ips.v4, ...ips.v6];
    const a = decode(proxyAnswer(query('Web.svc.test', 'A', { id: 77, edns: true }), all));
    expect(a.id).toBe(77);
    expect(a.type).toBe('response');
    expect(a.flag_rd).toBe(true);
    expect(a.rcode).toBe('NOERROR');
    expect(a.questions).toEqual([{ name: 'Web.svc.test', type: 'A', class: 'IN' }]);
    expect(a.answers!.map((r) => [r.type, (r as { data: string }).data, (r as { ttl: number }).ttl])).toEqual(
      ips.v4.map((ip) => ['A', formatIp(ip), PROXY_ANSWER_TTL_S]),
    );
    expect(a.additionals!.map((r) => r.type)).toEqual(['OPT']);
    const aaaa = decode(proxyAnswer(query('web.svc.test', 'AAAA'), all));
    expect(aaaa.answers!.map((r) => (r as { data: string }).data)).toEqual(ips.v6.map((ip) => formatIp(ip)));
    expect(aaaa.additionals).toEqual([]);
  });

  it('builds error replies that echo the question', () => {
    const q = query('example.com', 'TXT', { id: 9, edns: true });
    const r = decode(errorReply(q, RCODE_REFUSED)!);
    expect(r.id).toBe(9);
    expect(r.type).toBe('response');
    expect(r.rcode).toBe('REFUSED');
    expect(r.flag_rd).toBe(true);
    expect(r.questions).toEqual([{ name: 'example.com', type: 'TXT', class: 'IN' }]);
    expect(r.answers).toEqual([]);
    expect(r.additionals).toEqual([]);
    expect(decode(errorReply(q, RCODE_SERVFAIL)!).rcode).toBe('SERVFAIL');
    expect(errorReply(Uint8Array.of(1, 2), RCODE_SERVFAIL)).toBeUndefined();
  });
});

describe('DnsStub', () => {
  it('asks for a flow, sends AssignedIps with all 8 proxies, retransmits, answers on DomainStatus', () => {
    const stub = new DnsStub<string>(RESOURCES);
    stub.handleQuery(query('Web.svc.test', 'A', { id: 5 }), 'q1', 1_000);
    const out = drain(stub);
    expect(out[0]).toEqual({ type: 'flow', resource: SVC });
    expect(assignedIps(out[1]!)).toEqual({
      resource: SVC,
      domain: 'web.svc.test',
      proxyIps: [
        '100.96.0.1',
        '100.96.0.2',
        '100.96.0.3',
        '100.96.0.4',
        'fd00:2021:1111:8000::1',
        'fd00:2021:1111:8000::2',
        'fd00:2021:1111:8000::3',
        'fd00:2021:1111:8000::4',
      ],
    });
    expect(out).toHaveLength(2);
    expect(stub.pollTimeout()).toBe(1_000 + ASSIGNED_IPS_RETRANSMIT_MS);

    stub.handleTimeout(1_000 + ASSIGNED_IPS_RETRANSMIT_MS - 1);
    expect(drain(stub)).toEqual([]);
    stub.handleTimeout(1_000 + ASSIGNED_IPS_RETRANSMIT_MS);
    const again = drain(stub);
    expect(again).toHaveLength(1);
    expect(assignedIps(again[0]!).domain).toBe('web.svc.test');

    // Packets to the proxies route to the resource.
    expect(stub.resourceForProxy(parseIp('100.96.0.2')!)).toBe(SVC);
    expect(stub.resourceForProxy(parseIp('fd00:2021:1111:8000::4')!)).toBe(SVC);
    expect(stub.resourceForProxy(parseIp('100.96.0.5')!)).toBeUndefined();

    // An ordinary packet is not consumed; a DomainStatus is, and releases the answer.
    expect(stub.handleTunnelPacket(Uint8Array.of(0x45, 0, 0, 20), 3_100)).toBe(false);
    expect(stub.handleTunnelPacket(domainStatus(SVC, 'web.svc.test', 'Active'), 3_100)).toBe(true);
    const done = drain(stub);
    expect(done[0]).toEqual({
      type: 'domain',
      resource: SVC,
      domain: 'web.svc.test',
      status: 'Active',
      proxyIps: assignedIps(out[1]!).proxyIps,
    });
    expect(done[1]).toMatchObject({ type: 'reply', to: 'q1' });
    const reply = decode((done[1] as { bytes: Uint8Array }).bytes);
    expect(reply.id).toBe(5);
    expect(reply.answers!.map((r) => (r as { data: string }).data)).toEqual([
      '100.96.0.1',
      '100.96.0.2',
      '100.96.0.3',
      '100.96.0.4',
    ]);
    // Confirmed: no more retransmissions.
    expect(stub.pollTimeout()).toBe(Number.POSITIVE_INFINITY);
  });

  it('sends a fresh AssignedIps for every query and keeps the proxies of a name', () => {
    const stub = new DnsStub<string>(RESOURCES);
    stub.handleQuery(query('web.svc.test', 'A'), 'q1', 0);
    const first = drain(stub).filter((o) => o.type === 'control');
    stub.handleTunnelPacket(domainStatus(SVC, 'web.svc.test', 'Active'), 10);
    drain(stub);
    stub.handleQuery(query('WEB.svc.test', 'AAAA'), 'q2', 20);
    const second = drain(stub);
    expect(second.filter((o) => o.type === 'control').map((o) => assignedIps(o))).toEqual(
      first.map((o) => assignedIps(o)),
    );
    expect(stub.pollTimeout()).toBe(20 + ASSIGNED_IPS_RETRANSMIT_MS);
    stub.handleTunnelPacket(domainStatus(SVC, 'web.svc.test', 'Inactive'), 30);
    const out = drain(stub);
    expect(out[0]).toMatchObject({ type: 'domain', status: 'Inactive' });
    const reply = decode((out[1] as { bytes: Uint8Array }).bytes);
    expect(reply.answers!.map((r) => [r.type, (r as { data: string }).data])).toEqual([
      ['AAAA', 'fd00:2021:1111:8000::1'],
      ['AAAA', 'fd00:2021:1111:8000::2'],
      ['AAAA', 'fd00:2021:1111:8000::3'],
      ['AAAA', 'fd00:2021:1111:8000::4'],
    ]);
  });

  it('answers after 5 s without a DomainStatus, and keeps retransmitting', () => {
    const stub = new DnsStub<string>(RESOURCES);
    stub.handleQuery(query('api.svc.test', 'A'), 'q1', 0);
    drain(stub);
    for (let t = ASSIGNED_IPS_RETRANSMIT_MS; t < PROXY_ANSWER_TIMEOUT_MS; t += ASSIGNED_IPS_RETRANSMIT_MS) {
      stub.handleTimeout(t);
      expect(drain(stub).map((o) => o.type)).toEqual(['control']);
    }
    expect(stub.pollTimeout()).toBe(PROXY_ANSWER_TIMEOUT_MS);
    stub.handleTimeout(PROXY_ANSWER_TIMEOUT_MS);
    const out = drain(stub);
    expect(out.map((o) => o.type)).toEqual(['reply']);
    expect(decode((out[0] as { bytes: Uint8Array }).bytes).answers).toHaveLength(4);
    expect(stub.pollTimeout()).toBe(3 * ASSIGNED_IPS_RETRANSMIT_MS);
  });

  it('retransmits unconfirmed AssignedIps at once when a link gets a path', () => {
    const stub = new DnsStub<string>(RESOURCES);
    stub.handleQuery(query('web.svc.test', 'A'), 'q1', 0);
    stub.handleQuery(query('db.svc.test', 'A'), 'q2', 0);
    drain(stub);
    stub.retransmitNow([EXACT], 100);
    const out = drain(stub);
    expect(out.map((o) => assignedIps(o).resource)).toEqual([EXACT]);
    stub.handleTunnelPacket(domainStatus(EXACT, 'db.svc.test', 'Active'), 200);
    drain(stub);
    stub.retransmitNow([EXACT], 300);
    expect(drain(stub)).toEqual([]);
  });

  it('ignores DomainStatus for something it never assigned, but reports it', () => {
    const stub = new DnsStub<string>(RESOURCES);
    expect(stub.handleTunnelPacket(domainStatus(SVC, 'x.svc.test', 'Active'), 0)).toBe(true);
    expect(drain(stub)).toEqual([
      { type: 'domain', resource: SVC, domain: 'x.svc.test', status: 'Active', proxyIps: [] },
    ]);
    const goodbye = encodeP2pControl({ type: 'goodbye' });
    expect(goodbye.ok && looksLikeControl(goodbye.value)).toBe(true);
    expect(goodbye.ok && stub.handleTunnelPacket(goodbye.value, 0)).toBe(true);
    expect(drain(stub)).toEqual([]);
  });

  it('forwards SRV/TXT to the gateway and relays the reply; SERVFAIL after 5 s', () => {
    const stub = new DnsStub<string>(RESOURCES);
    const srv = query('_http.svc.test', 'SRV', { id: 42 });
    stub.handleQuery(srv, 'q1', 0);
    const out = drain(stub);
    expect(out[0]).toEqual({ type: 'flow', resource: SVC });
    expect(out[1]).toMatchObject({ type: 'forward', resource: SVC, query: srv });
    const id = (out[1] as { id: number }).id;
    expect(stub.forwardPending(id)).toBe(true);
    const answer = new Uint8Array(
      dnsPacket.encode({
        type: 'response',
        id: 42,
        questions: [{ name: '_http.svc.test', type: 'SRV' }],
        answers: [{ type: 'SRV', name: '_http.svc.test', data: { target: 'web.svc.test', port: 80 } }],
      }),
    );
    const wrongId = answer.slice();
    wrongId[1] = 0;
    stub.handleForwardReply(id, wrongId, 10);
    expect(drain(stub)).toEqual([]);
    stub.handleForwardReply(id, answer, 10);
    expect(drain(stub)).toEqual([{ type: 'reply', to: 'q1', bytes: answer }]);
    expect(stub.forwardPending(id)).toBe(false);
    stub.handleForwardReply(id, answer, 20);
    expect(drain(stub)).toEqual([]);

    const txt = query('web.svc.test', 'TXT', { id: 43 });
    stub.handleQuery(txt, 'q2', 100);
    const id2 = (drain(stub)[1] as { id: number }).id;
    expect(stub.pollTimeout()).toBe(100 + FORWARD_TIMEOUT_MS);
    stub.handleTimeout(100 + FORWARD_TIMEOUT_MS);
    const failed = drain(stub);
    expect(failed).toHaveLength(1);
    const r = decode((failed[0] as { bytes: Uint8Array }).bytes);
    expect([r.id, r.rcode]).toEqual([43, 'SERVFAIL']);
    expect(stub.forwardPending(id2)).toBe(false);
  });

  it('refuses other names and follows resource updates', () => {
    const stub = new DnsStub<string>([]);
    stub.handleQuery(query('web.svc.test', 'A', { id: 3 }), 'q1', 0);
    const out = drain(stub);
    expect(out).toHaveLength(1);
    expect(decode((out[0] as { bytes: Uint8Array }).bytes).rcode).toBe('REFUSED');
    stub.setResources(RESOURCES);
    stub.handleQuery(query('web.svc.test', 'A'), 'q1', 0);
    expect(drain(stub).map((o) => o.type)).toEqual(['flow', 'control']);
    // Garbage is dropped silently.
    stub.handleQuery(Uint8Array.of(0, 1), 'q1', 0);
    expect(drain(stub)).toEqual([]);
  });
});
