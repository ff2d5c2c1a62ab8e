import { describe, expect, it } from 'vitest';
import { decodeFrame } from '../../../../src/wire/phoenix/frame.js';
import { decodePortalMessage } from '../../../../src/wire/portal/decode.js';
import type { DecodedPortalMessage } from '../../../../src/wire/portal/types.js';
import { b64, ip, loadFixtures, prefix } from './helpers.js';

/**
 * The captured portal frames (`test/fixtures/portal`): `2025-09.*` is what the portal of the
 * target era sends (every one must decode, with the values checked below); `2026-08.*` is the
 * newest tree, which must decode or be refused as unsupported, never crash.
 */

const fixtures = loadFixtures();

/** Decodes a fixture the way the portal session will: frame first, then the push's payload. */
function decodeFixture(text: string) {
  const frame = decodeFrame(text);
  if (!frame.ok) throw new Error(`frame refused: ${frame.error.code}`);
  expect(frame.value).toMatchObject({ kind: 'push', topic: 'gateway', ref: null });
  if (frame.value.kind !== 'push') throw new Error('not a push');
  return decodePortalMessage(frame.value.event, frame.value.payload);
}

function ok(text: string): DecodedPortalMessage {
  const r = decodeFixture(text);
  if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
  return r.value;
}

/** The expected decoding of each 2025-09 fixture. */
const EXPECTED_2025_09: Record<string, (d: DecodedPortalMessage) => void> = {
  '2025-09.authorize_flow.1.json': ({ message: m, skipped }) => {
    if (m.type !== 'authorize_flow') throw new Error(m.type);
    expect(skipped).toEqual([]);
    expect(m.ref).toMatch(/^SFMyNTY\.g2gDbQAAAkxn.*\.5-aLUjF4RiPoYASwWYfSmWuTEc4cT0u8J9cyBUiP9BY$/);
    expect(m.resource).toMatchObject({
      type: 'cidr',
      id: 'c7793628-8579-465b-83e3-1a5d4af4db3b',
      name: 'MyCorp Network',
      filters: [],
    });
    if (m.resource.type !== 'cidr') throw new Error(m.resource.type);
    expect(prefix(m.resource.address)).toBe('172.20.0.0/16');
    expect(m.client.id).toBe('3abd725a-733b-4801-ac16-72f26cd98a24');
    expect(m.client.publicKey).toHaveLength(32);
    expect(b64(m.client.publicKey)).toBe('fiAjSBWDgQfD1CFJkTwOf4zg+1QhH0eTT+oLaVIMpH8=');
    expect(m.client.presharedKey).toHaveLength(32);
    expect(b64(m.client.presharedKey)).toBe('BzPiNE9qszKczZcZzGsyieLYeJ2EQfkfdibls/l3beM=');
    expect(ip(m.client.ipv4)).toBe('100.93.74.51');
    expect(ip(m.client.ipv6)).toBe('fd00:2021:1111::f:853b');
    expect(m.clientIce).toEqual({ username: 'hgwh', password: 'j2fqufatn7xlrrvv6fsvea' });
    expect(m.gatewayIce).toEqual({ username: 'ejqt', password: 'zfjrrjdkbci42t2axyd45a' });
    expect(m.expiresAtMs).toBe(1_729_813_989_000);
  },
  '2025-09.init.1.json': ({ message: m, skipped }) => {
    if (m.type !== 'init') throw new Error(m.type);
    expect(skipped).toEqual([]);
    expect(ip(m.interface.ipv4)).toBe('100.115.164.78');
    expect(ip(m.interface.ipv6)).toBe('fd00:2021:1111::2c:f6ab');
    expect(m.relays).toEqual([]);
    expect(m.accountSlug).toBeUndefined();
    expect(m.authorizations).toEqual([]);
  },
  '2025-09.invalidate_ice_candidates.1.json': ({ message: m, skipped }) => {
    expect(skipped).toEqual([]);
    expect(m).toEqual({
      type: 'invalidate_ice_candidates',
      clientId: '2b1524e6-239e-4570-bc73-70a188e12101',
      candidates: ['candidate:7854631899965427361 1 udp 1694498559 172.28.0.100 47717 typ srflx'],
    });
  },
  '2025-09.relays_presence.1.json': ({ message: m, skipped }) => {
    if (m.type !== 'relays_presence') throw new Error(m.type);
    expect(skipped).toEqual([]);
    expect(m.disconnectedIds).toEqual([
      'e95f9517-2152-4677-a16a-fbb2687050a3',
      'b0724bd1-a8cc-4faf-88cd-f21159cfec47',
    ]);
    expect(m.connected).toHaveLength(1);
    const relay = m.connected[0]!;
    expect(relay).toMatchObject({
      id: '0a133356-7a9e-4b9a-b413-0d95a5720fd8',
      username: '1719367575:ZQHcVGkdnfgGmcP1',
      password: 'ZWYiBeFHOJyYq0mcwAXjRpcuXIJJpzWlOXVdxwttrWg',
      expiresAtMs: 1_719_367_575_000,
    });
    expect(relay.addresses.map((a) => `${ip(a.ip)}:${a.port}`)).toEqual(['172.28.0.101:3478']);
  },
  '2025-09.request_connection.1.json': ({ message: m, skipped }) => {
    if (m.type !== 'request_connection') throw new Error(m.type);
    // The top-level `relays` (one stun, one turn) is not part of the message: ignored, not skipped.
    expect(skipped).toEqual([]);
    expect(m.ref).toBe('78e1159d-9dc6-480d-b2ef-1fcec2cd5730');
    expect(m.resource).toMatchObject({
      type: 'cidr',
      id: 'ea6570d1-47c7-49d2-9dc3-efff1c0c9e0b',
      name: '172.20.0.1/16',
      filters: [],
    });
    if (m.resource.type !== 'cidr') throw new Error(m.resource.type);
    expect(prefix(m.resource.address)).toBe('172.20.0.0/16');
    expect(m.clientId).toBe('3a25ff38-f8d7-47de-9b30-c7c40c206083');
    expect(m.clientIce).toEqual({
      username: 'PvCPFevCOgkvVCtH',
      password: 'xEwoXEzHuSyrcgOCSRnwOXQVnbnbeGeF',
    });
    expect(m.domain).toBeUndefined();
    expect(b64(m.peer.publicKey)).toBe('OR2dYCLwMEtwqtjOxSm4SU7BbHJDfM8ZCqK7HKXXxDw=');
    expect(b64(m.peer.presharedKey)).toBe('sMeTuiJ3mezfpVdan948CmisIWbwBZ1z7jBNnbVtfVg=');
    expect(ip(m.peer.ipv4)).toBe('100.114.114.30');
    expect(ip(m.peer.ipv6)).toBe('fd00:2021:1111::3a:ab1b');
    expect(m.expiresAtMs).toBe(1_719_367_575_000);
  },
  '2025-09.request_connection.2.json': ({ message: m, skipped }) => {
    if (m.type !== 'request_connection') throw new Error(m.type);
    expect(skipped).toEqual([]);
    expect(m.resource).toEqual({
      type: 'dns',
      id: '619fbe83-bc95-4635-9a08-68da9a944c88',
      name: '?.httpbin',
      pattern: '?.httpbin',
      filters: [
        { protocol: 'tcp', portStart: 80, portEnd: 80 },
        { protocol: 'tcp', portStart: 433, portEnd: 433 },
        { protocol: 'udp', portStart: 53, portEnd: 53 },
        { protocol: 'icmp' },
      ],
    });
    expect(m.clientId).toBe('2e5c0210-3ac0-49cd-bfc9-8005046291de');
    expect(m.clientIce).toEqual({ username: 'aYaH', password: 'MMceouYA5jGIPkxbvIiLvD' });
    expect(m.domain?.name).toBe('download.httpbin');
    expect(m.domain?.proxyIps.map(ip)).toEqual([
      '100.96.0.1',
      '100.96.0.2',
      '100.96.0.3',
      '100.96.0.4',
      'fd00:2021:1111:8000::',
      'fd00:2021:1111:8000::1',
      'fd00:2021:1111:8000::2',
      'fd00:2021:1111:8000::3',
    ]);
    expect(b64(m.peer.publicKey)).toBe('zHtdIFPDm8QQkqjbmAc1r8O1WegviA6UeUTP6rpminA=');
    expect(m.peer.presharedKey).toHaveLength(32);
    expect(ip(m.peer.ipv4)).toBe('100.87.247.184');
    expect(ip(m.peer.ipv6)).toBe('fd00:2021:1111::4:4616');
    expect(m.expiresAtMs).toBe(1_718_663_242_000);
  },
  '2025-09.resource_updated.1.json': ({ message: m, skipped }) => {
    expect(skipped).toEqual([]);
    expect(m).toEqual({
      type: 'resource_updated',
      resource: {
        type: 'dns',
        id: '57f9ebbb-21d5-4f9f-bf86-b25122fc7a43',
        name: '?.httpbin',
        pattern: '?.httpbin',
        // A tcp filter without a range is every TCP port (§4.2).
        filters: [{ protocol: 'icmp' }, { protocol: 'tcp', portStart: 0, portEnd: 65535 }],
      },
    });
  },
};

describe('portal fixtures', () => {
  it('finds the captured frames of both eras', () => {
    expect(fixtures.filter((f) => f.file.startsWith('2025-09.')).map((f) => f.file)).toEqual(
      Object.keys(EXPECTED_2025_09).sort(),
    );
    expect(fixtures.filter((f) => f.file.startsWith('2026-08.')).length).toBeGreaterThan(0);
  });

  for (const [file, check] of Object.entries(EXPECTED_2025_09)) {
    it(`decodes ${file} with the expected values`, () => {
      const f = fixtures.find((x) => x.file === file);
      if (!f) throw new Error(`${file} is missing`);
      check(ok(f.text));
    });
  }

  for (const f of fixtures.filter((x) => x.file.startsWith('2026-08.'))) {
    it(`decodes ${f.file} or refuses it as unsupported`, () => {
      const frame = decodeFrame(f.text);
      // The captured gateway → portal messages are bare {event, payload} without topic and ref,
      // which is not a frame: decodeFrame refuses them with a typed error, and the event is
      // still refused on its own.
      if (!frame.ok) {
        expect(frame.error.code).toBe('phoenix.bad-field');
        expect(f.json.topic).toBeUndefined();
      }
      const r = decodePortalMessage(f.json.event, f.json.payload);
      if (!r.ok) {
        expect(r.error.code).toBe('portal.unsupported-event');
        expect(r.error.message).toContain(f.json.event);
      }
    });
  }

  it('decodes the 2026-08 init, ignoring flow_logs', () => {
    const f = fixtures.find((x) => x.file === '2026-08.init.1.json');
    if (!f) throw new Error('2026-08.init.1.json is missing');
    const { message: m } = ok(f.text);
    if (m.type !== 'init') throw new Error(m.type);
    expect(ip(m.interface.ipv4)).toBe('100.115.164.78');
    expect(m).not.toHaveProperty('flowLogs');
  });

  it('refuses the newer create_authorization, naming it', () => {
    const f = fixtures.find((x) => x.file === '2026-08.create_authorization.1.json');
    if (!f) throw new Error('2026-08.create_authorization.1.json is missing');
    const r = decodeFixture(f.text);
    expect(r.ok ? 'decoded' : r.error.code).toBe('portal.unsupported-event');
    if (!r.ok) expect(r.error.message).toMatch(/'create_authorization'.*authorize_flow/);
  });

  it('decodes the 2026-08 frames that exist in both eras to the same messages', () => {
    for (const f of fixtures.filter((x) => x.file.startsWith('2026-08.'))) {
      const older = fixtures.find((x) => x.file === f.file.replace('2026-08.', '2025-09.'));
      if (!older || f.file.includes('init')) continue;
      expect(ok(f.text)).toEqual(ok(older.text));
    }
  });
});
