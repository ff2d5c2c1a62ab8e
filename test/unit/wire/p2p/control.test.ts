import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ResourceId } from '../../../../src/wire/ids.js';
import { formatIp, parseIp } from '../../../../src/wire/ip/address.js';
import { IpPacket } from '../../../../src/wire/ip/packet.js';
import {
  decodeP2pControl,
  encodeP2pControl,
  P2P_MAX_BODY_BYTES,
  type P2pControlEvent,
} from '../../../../src/wire/p2p/control.js';
import { ipv4Arb, ipv6Arb, PROPERTY_RUNS } from '../../../support/arbitraries.js';

const RESOURCE = 'ec18cd0b-11ac-47e4-80a4-af6ac3fae473' as ResourceId;

/** A control packet with a hand-written body, as a Client would send it. */
function controlPacket(type: number, body: string | Uint8Array): Uint8Array {
  const b = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  const out = new Uint8Array(48 + b.length);
  out[0] = 0x60;
  out[4] = (8 + b.length) >> 8;
  out[5] = (8 + b.length) & 0xff;
  out[6] = 255;
  out[40] = type;
  out.set(b, 48);
  return out;
}

function decode(bytes: Uint8Array) {
  const p = IpPacket.parse(bytes);
  if (!p.ok) throw new Error(p.error.code);
  return decodeP2pControl(p.value);
}

describe('p2p control events', () => {
  it('decodes an AssignedIps event as a Client sends it', () => {
    const r = decode(
      controlPacket(
        0,
        '{"resource":"EC18CD0B-11AC-47E4-80A4-AF6AC3FAE473","domain":"wiki.corp.example.","proxy_ips":["100.96.0.9","100.96.0.10","fd00:2021:1111:8000::8","fd00:2021:1111:8000::9"]}',
      ),
    );
    expect(r.ok).toBe(true);
    if (!r.ok || r.value.type !== 'assigned-ips') return;
    expect(r.value.resource).toBe(RESOURCE);
    expect(r.value.domain).toBe('wiki.corp.example');
    expect(r.value.proxyIps.map((ip) => formatIp(ip))).toEqual([
      '100.96.0.9',
      '100.96.0.10',
      'fd00:2021:1111:8000::8',
      'fd00:2021:1111:8000::9',
    ]);
  });

  it('encodes DomainStatus with the exact JSON and packet layout', () => {
    const r = encodeP2pControl({
      type: 'domain-status',
      resource: RESOURCE,
      domain: 'wiki.corp.example',
      status: 'Active',
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const b = r.value;
    expect([b[0], b[6], b[7]]).toEqual([0x60, 255, 0]);
    expect(b.subarray(8, 40).every((x) => x === 0)).toBe(true);
    expect([...b.subarray(40, 48)]).toEqual([1, 0, 0, 0, 0, 0, 0, 0]);
    expect(new TextDecoder().decode(b.subarray(48))).toBe(
      `{"resource":"${RESOURCE}","domain":"wiki.corp.example","status":"Active"}`,
    );
    expect(((b[4]! << 8) | b[5]!) + 40).toBe(b.length);
  });

  it('round-trips every event type', () => {
    const events: P2pControlEvent[] = [
      { type: 'goodbye' },
      { type: 'domain-status', resource: RESOURCE, domain: 'a.b', status: 'Inactive' },
      {
        type: 'assigned-ips',
        resource: RESOURCE,
        domain: '_sip._tcp.x.y',
        proxyIps: [parseIp('100.96.0.1')!],
      },
    ];
    for (const e of events) {
      const enc = encodeP2pControl(e);
      if (!enc.ok) throw new Error(enc.error.code);
      expect(decode(enc.value)).toEqual({ ok: true, value: e });
    }
  });

  it('fits the largest AssignedIps a Client can send: a 253-character name and 8 long IPv6 proxy IPs', () => {
    const label = 'a'.repeat(63);
    const domain = `${label}.${label}.${label}.${'b'.repeat(61)}`;
    expect(domain.length).toBe(253);
    const proxyIps = [
      ...['100.127.255.251', '100.127.255.252', '100.127.255.253', '100.127.255.254'],
      ...['fd00:2021:1111:8000:ffff:ffff:ffff:fff1', 'fd00:2021:1111:8000:ffff:ffff:ffff:fff2'],
      ...['fd00:2021:1111:8000:ffff:ffff:ffff:fff3', 'fd00:2021:1111:8000:ffff:ffff:ffff:fff4'],
    ].map((t) => parseIp(t)!);
    const e: P2pControlEvent = { type: 'assigned-ips', resource: RESOURCE, domain, proxyIps };
    const enc = encodeP2pControl(e);
    if (!enc.ok) throw new Error(enc.error.code);
    expect(enc.value.length).toBeLessThanOrEqual(1280);
    // {"resource":"…","domain":"…","proxy_ips":[…]}: 13 + 12 + 15 + 2 bytes of JSON framing, 7 commas.
    expect(enc.value.length).toBe(48 + 36 + 253 + 4 * 17 + 4 * 41 + 13 + 12 + 15 + 2 + 7);
    expect(decode(enc.value)).toEqual({ ok: true, value: e });
  });

  it('refuses to encode an event that would exceed 1280 bytes', () => {
    const proxyIps = Array.from({ length: 40 }, () => parseIp('fd00:2021:1111:8000:ffff:ffff:ffff:ffff')!);
    const r = encodeP2pControl({ type: 'assigned-ips', resource: RESOURCE, domain: 'x.y', proxyIps });
    expect(r.ok ? 'encoded' : r.error.code).toBe('p2p.too-large');
    expect(P2P_MAX_BODY_BYTES).toBe(1232);
  });

  it('reads an unknown status as Inactive', () => {
    const r = decode(controlPacket(1, `{"resource":"${RESOURCE}","domain":"a.b","status":"Paused"}`));
    expect(r.ok && r.value.type === 'domain-status' && r.value.status).toBe('Inactive');
  });

  it('ignores the reserved header bytes and a Goodbye body', () => {
    const p = controlPacket(2, 'ignored');
    p.fill(0xff, 41, 48);
    expect(decode(p)).toEqual({ ok: true, value: { type: 'goodbye' } });
  });

  it.each([
    [
      'a payload shorter than the header',
      () =>
        controlPacket(0, '')
          .subarray(0, 44)
          .map((b, i) => (i === 5 ? 4 : b)),
      'p2p.truncated',
    ],
    ['an unknown event type', () => controlPacket(9, '{}'), 'p2p.unknown-type'],
    ['a body that is not JSON', () => controlPacket(0, '{"resource":'), 'p2p.bad-json'],
    ['a body that is not UTF-8', () => controlPacket(0, new Uint8Array([0x7b, 0xff, 0x7d])), 'p2p.bad-json'],
    ['a JSON array', () => controlPacket(0, '[]'), 'p2p.bad-json'],
    [
      'a resource that is not a UUID',
      () => controlPacket(0, '{"resource":"r1","domain":"a.b","proxy_ips":[]}'),
      'p2p.bad-resource',
    ],
    [
      'a missing domain',
      () => controlPacket(0, `{"resource":"${RESOURCE}","proxy_ips":[]}`),
      'p2p.bad-domain',
    ],
    [
      'an empty label',
      () => controlPacket(0, `{"resource":"${RESOURCE}","domain":"a..b","proxy_ips":[]}`),
      'p2p.bad-domain',
    ],
    [
      'a label of 64 characters',
      () => controlPacket(1, `{"resource":"${RESOURCE}","domain":"${'a'.repeat(64)}.b","status":"Active"}`),
      'p2p.bad-domain',
    ],
    [
      'a domain with a space',
      () => controlPacket(1, `{"resource":"${RESOURCE}","domain":"a b.c","status":"Active"}`),
      'p2p.bad-domain',
    ],
    [
      'proxy_ips that is not an array',
      () => controlPacket(0, `{"resource":"${RESOURCE}","domain":"a.b","proxy_ips":"1.2.3.4"}`),
      'p2p.bad-proxy-ips',
    ],
    [
      'a proxy IP that is not an address',
      () => controlPacket(0, `{"resource":"${RESOURCE}","domain":"a.b","proxy_ips":["1.2.3.400"]}`),
      'p2p.bad-proxy-ips',
    ],
  ])('rejects %s with a typed error', (_n, make, code) => {
    const r = decode(make());
    expect(r.ok ? 'decoded' : r.error.code).toBe(code);
  });

  it('refuses packets that are not control packets', () => {
    const p = controlPacket(0, '{}');
    p[39] = 1; // destination ::1
    expect(decode(p)).toMatchObject({ ok: false, error: { code: 'p2p.not-control' } });
  });

  it('never throws on any body and round-trips any valid AssignedIps', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 300 }), (type, body) => {
        const r = decode(controlPacket(type, body));
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: PROPERTY_RUNS },
    );
    const label = fc.stringMatching(/^[a-z0-9_-]{1,20}$/);
    fc.assert(
      fc.property(
        fc.uuid({ version: 4 }),
        fc.array(label, { minLength: 1, maxLength: 5 }),
        fc.array(fc.oneof(ipv4Arb, ipv6Arb), { maxLength: 8 }),
        (uuid, labels, proxyIps) => {
          const e: P2pControlEvent = {
            type: 'assigned-ips',
            resource: uuid as ResourceId,
            domain: labels.join('.'),
            proxyIps,
          };
          const enc = encodeP2pControl(e);
          if (!enc.ok) throw new Error(enc.error.code);
          expect(decode(enc.value)).toEqual({ ok: true, value: e });
        },
      ),
      { numRuns: Math.min(PROPERTY_RUNS, 20_000) },
    );
  });
});
