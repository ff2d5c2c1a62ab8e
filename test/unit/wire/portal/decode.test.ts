import { describe, expect, it } from 'vitest';
import { decodePortalMessage, PORTAL_EVENTS } from '../../../../src/wire/portal/decode.js';
import {
  allowAccess,
  authorizeFlow,
  b64,
  CLIENT_ID,
  cidrResource,
  DELETE,
  decodeErr,
  decodeOk,
  edited,
  init,
  ip,
  PRESHARED_KEY,
  PUBLIC_KEY,
  prefix,
  REF,
  RELAY_ID,
  RESOURCE_ID,
  requestConnection,
  turn,
} from './helpers.js';

const OTHER_RELAY = 'f3e96854-f1f6-4e43-b751-9aa6c27b1fda';

describe('init', () => {
  it('decodes interface, relays, account slug and authorizations', () => {
    const { message: m, skipped } = decodeOk('init', init());
    expect(skipped).toEqual([]);
    expect(ip(m.interface.ipv4)).toBe('100.71.20.9');
    expect(ip(m.interface.ipv6)).toBe('fd00:2021:1111::13:7a2e');
    expect(m.accountSlug).toBe('acme');
    expect(m.authorizations).toEqual([
      { clientId: CLIENT_ID, resourceId: RESOURCE_ID, expiresAtMs: 1_758_790_800_000 },
    ]);
    expect(m.relays).toHaveLength(1);
  });

  it('keeps the authorizations of several clients, ids lower-cased', () => {
    const other = 'c654a3ff-6e0d-4a64-930a-1312fab876d8';
    const { message: m } = decodeOk(
      'init',
      edited(init(), 'authorizations', [
        { client_id: CLIENT_ID.toUpperCase(), resource_id: RESOURCE_ID, expires_at: 1758790800 },
        { client_id: CLIENT_ID, resource_id: 'ec18cd0b-11ac-47e4-80a4-af6ac3fae473', expires_at: 1758790900 },
        { client_id: other, resource_id: RESOURCE_ID, expires_at: 1758791000 },
      ]),
    );
    expect(m.authorizations.map((a) => [a.clientId, a.resourceId, a.expiresAtMs])).toEqual([
      [CLIENT_ID, RESOURCE_ID, 1_758_790_800_000],
      [CLIENT_ID, 'ec18cd0b-11ac-47e4-80a4-af6ac3fae473', 1_758_790_900_000],
      [other, RESOURCE_ID, 1_758_791_000_000],
    ]);
  });

  it('defaults absent relays and authorizations to empty lists and ignores extra fields', () => {
    const p = {
      interface: { ipv4: '100.71.20.9', ipv6: 'fd00:2021:1111::13:7a2e', upstream_dns: [] },
      config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
      flow_logs: { api_url: 'https://flow-api.firezone.dev', upload_interval_secs: 60 },
    };
    const { message: m } = decodeOk('init', p);
    expect(m.relays).toEqual([]);
    expect(m.authorizations).toEqual([]);
    expect(m.accountSlug).toBeUndefined();
    expect(decodeOk('init', edited(init(), 'account_slug', null)).message.accountSlug).toBeUndefined();
  });

  it('requires config, even though it is ignored', () => {
    const e = decodeErr('init', edited(init(), 'config', DELETE));
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.config' });
    expect(e.message).toContain('missing: expected a config object');
    expect(decodeErr('init', edited(init(), 'config', null)).path).toBe('payload.config');
  });

  it('requires an IPv4 address in interface.ipv4 and an IPv6 address in interface.ipv6', () => {
    const e = decodeErr('init', edited(init(), 'interface.ipv4', 'fd00::1'));
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.interface.ipv4' });
    expect(e.message).toContain("'fd00::1' is not an IPv4 address");
    expect(decodeErr('init', edited(init(), 'interface.ipv6', '100.64.0.1')).path).toBe(
      'payload.interface.ipv6',
    );
    expect(decodeErr('init', edited(init(), 'interface.ipv6', DELETE)).path).toBe('payload.interface.ipv6');
    expect(decodeErr('init', edited(init(), 'interface.ipv4', '100.64.0.1/32')).path).toBe(
      'payload.interface.ipv4',
    );
  });

  it('requires client_id, resource_id and expires_at in every authorization', () => {
    for (const k of ['client_id', 'resource_id', 'expires_at']) {
      const e = decodeErr('init', edited(init(), `authorizations.0.${k}`, DELETE));
      expect(e.path).toBe(`payload.authorizations[0].${k}`);
    }
    const e = decodeErr('init', edited(init(), 'authorizations.0.expires_at', 1758790800.5));
    expect(e.message).toContain('1758790800.5 is not integer Unix seconds');
  });

  it('refuses null for the list fields, as the reference does', () => {
    expect(decodeErr('init', edited(init(), 'relays', null)).path).toBe('payload.relays');
    expect(decodeErr('init', edited(init(), 'authorizations', null)).path).toBe('payload.authorizations');
  });
});

describe('relays', () => {
  it('merges the IPv4 and IPv6 entries of one relay into a dual-stack relay', () => {
    const { message: m, skipped } = decodeOk('init', init());
    expect(skipped).toEqual([]);
    expect(m.relays).toHaveLength(1);
    const r = m.relays[0]!;
    expect(r).toMatchObject({
      id: RELAY_ID,
      username: '1766444400:r2Nv0QkH3yWm6bq1bH0mJt0lBqvN0gQ3c0ZrC4sQ2bU',
      password: 'q3w2sJk0XGmT1yq0pU5b7tA9xQx0Wc1pWzj0Xc2Hf4Q',
      expiresAtMs: 1_766_444_400_000,
    });
    expect(r.addresses.map((a) => [ip(a.ip), a.port])).toEqual([
      ['203.0.113.7', 3478],
      ['2001:db8::7', 3478],
    ]);
  });

  it('merges entries of the same id wherever they are, IPv4 first, relays in order of first appearance', () => {
    const relays = [
      turn('[2001:db8::7]:3478'),
      turn('198.51.100.30:3478', { id: OTHER_RELAY }),
      turn('203.0.113.7:3479', { id: RELAY_ID.toUpperCase() }),
    ];
    const { message: m, skipped } = decodeOk('init', edited(init(), 'relays', relays));
    expect(skipped).toEqual([]);
    expect(m.relays.map((r) => [r.id, r.addresses.map((a) => `${ip(a.ip)} ${a.port}`)])).toEqual([
      [RELAY_ID, ['203.0.113.7 3479', '2001:db8::7 3478']],
      [OTHER_RELAY, ['198.51.100.30 3478']],
    ]);
  });

  it('skips a second address of the same family and an entry with other credentials', () => {
    const relays = [
      turn('203.0.113.7:3478'),
      turn('203.0.113.7:3478'),
      turn('203.0.113.8:3478'),
      turn('[2001:db8::7]:3478', { password: 'another-password' }),
    ];
    const { message: m, skipped } = decodeOk('init', edited(init(), 'relays', relays));
    expect(m.relays).toHaveLength(1);
    expect(m.relays[0]!.addresses.map((a) => ip(a.ip))).toEqual(['203.0.113.7']);
    expect(skipped).toEqual([
      `payload.relays[2]: a second IPv4 address for relay ${RELAY_ID}; entry ignored`,
      `payload.relays[3]: relay ${RELAY_ID} listed again with other credentials; entry ignored`,
    ]);
    expect(skipped.join()).not.toContain('another-password');
  });

  it('drops stun entries silently and skips unknown relay types with a line', () => {
    const relays = [
      { id: OTHER_RELAY, type: 'stun', addr: '172.28.0.101:3478' },
      turn('203.0.113.7:3478'),
      { id: OTHER_RELAY, type: 'quic-relay', addr: '172.28.0.101:443' },
    ];
    const { message: m, skipped } = decodeOk('init', edited(init(), 'relays', relays));
    expect(m.relays.map((r) => r.id)).toEqual([RELAY_ID]);
    expect(skipped).toEqual([
      "payload.relays[2]: unknown relay type 'quic-relay' (expected turn or stun); relay ignored",
    ]);
  });

  it('requires every field of a turn entry', () => {
    for (const k of ['id', 'addr', 'username', 'password', 'expires_at']) {
      const e = decodeErr('init', edited(init(), `relays.1.${k}`, DELETE));
      expect(e).toMatchObject({ code: 'portal.invalid', path: `payload.relays[1].${k}` });
    }
    expect(decodeErr('init', edited(init(), 'relays.0.type', DELETE)).path).toBe('payload.relays[0].type');
  });

  it.each([
    ['an address without port', '203.0.113.7'],
    ['an unbracketed IPv6 address', '2001:db8::7:3478'],
    ['a bracketed IPv4 address', '[203.0.113.7]:3478'],
    ['a port above 65535', '203.0.113.7:65536'],
    ['a host name', 'relay.example.com:3478'],
  ])('refuses %s as a relay address', (_name, addr) => {
    const e = decodeErr('init', edited(init(), 'relays.0.addr', addr));
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.relays[0].addr' });
    expect(e.message).toContain('socket address');
  });

  it('never shows TURN credentials in messages', () => {
    const e = decodeErr('init', edited(init(), 'relays.0.password', 123456789));
    expect(e.path).toBe('payload.relays[0].password');
    expect(e.message).not.toContain('123456789');
  });

  it('needs both disconnected_ids and connected in relays_presence', () => {
    const p = {
      disconnected_ids: [RELAY_ID.toUpperCase()],
      connected: [turn('198.51.100.30:3478', { id: OTHER_RELAY })],
    };
    const { message: m } = decodeOk('relays_presence', p);
    expect(m.disconnectedIds).toEqual([RELAY_ID]);
    expect(m.connected.map((r) => r.id)).toEqual([OTHER_RELAY]);
    expect(decodeErr('relays_presence', edited(p, 'disconnected_ids', DELETE)).path).toBe(
      'payload.disconnected_ids',
    );
    expect(decodeErr('relays_presence', edited(p, 'connected', DELETE)).path).toBe('payload.connected');
    expect(decodeErr('relays_presence', edited(p, 'disconnected_ids', ['nope'])).path).toBe(
      'payload.disconnected_ids[0]',
    );
  });

  it('skips unknown relay types in relays_presence.connected', () => {
    const p = { disconnected_ids: [], connected: [{ id: OTHER_RELAY, type: 'future' }] };
    const { message: m, skipped } = decodeOk('relays_presence', p);
    expect(m.connected).toEqual([]);
    expect(skipped).toEqual([
      "payload.connected[0]: unknown relay type 'future' (expected turn or stun); relay ignored",
    ]);
  });
});

describe('authorize_flow', () => {
  it('decodes the spec example', () => {
    const { message: m, skipped } = decodeOk('authorize_flow', authorizeFlow());
    expect(skipped).toEqual([]);
    expect(m.ref).toBe(REF);
    expect(m.resource).toMatchObject({ type: 'cidr', id: RESOURCE_ID, name: 'Office LAN', filters: [] });
    expect(m.client.id).toBe(CLIENT_ID);
    expect(b64(m.client.publicKey)).toBe(PUBLIC_KEY);
    expect(b64(m.client.presharedKey)).toBe(PRESHARED_KEY);
    expect(ip(m.client.ipv4)).toBe('100.88.3.41');
    expect(ip(m.client.ipv6)).toBe('fd00:2021:1111::9:1c0d');
    expect(m.clientIce).toEqual({ username: 'hyik', password: 'k3rnzmulp3ccejwamasyfw' });
    expect(m.gatewayIce).toEqual({ username: '52nj', password: '2hozxefbrdyashwpoq3v6w' });
    expect(m.expiresAtMs).toBe(1_758_790_800_000);
  });

  it('lower-cases UUIDs', () => {
    const p = edited(
      edited(authorizeFlow(), 'client.id', CLIENT_ID.toUpperCase()),
      'resource.id',
      RESOURCE_ID.toUpperCase(),
    );
    const { message: m } = decodeOk('authorize_flow', p);
    expect([m.client.id, m.resource.id]).toEqual([CLIENT_ID, RESOURCE_ID]);
  });

  it.each([
    ['null', null],
    ['absent', DELETE],
  ])('reads a %s expires_at as "never"', (_name, v) => {
    expect(
      decodeOk('authorize_flow', edited(authorizeFlow(), 'expires_at', v)).message.expiresAtMs,
    ).toBeUndefined();
  });

  it.each([
    ['a float', 1758790800.5],
    ['a string', '1758790800'],
    ['negative', -1],
    ['beyond what a Date holds', 8_640_000_000_001],
  ])('refuses an expires_at that is %s', (_name, v) => {
    const e = decodeErr('authorize_flow', edited(authorizeFlow(), 'expires_at', v));
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.expires_at' });
    expect(e.message).toContain('integer Unix seconds');
  });

  it('names the path of a missing required field and what it expected', () => {
    const e = decodeErr('authorize_flow', edited(authorizeFlow(), 'client.public_key', DELETE));
    expect(e).toEqual({
      code: 'portal.invalid',
      path: 'payload.client.public_key',
      message:
        'authorize_flow: payload.client.public_key: missing: expected a WireGuard public key: 44 base64 characters (32 bytes)',
    });
    for (const path of [
      'ref',
      'resource',
      'client',
      'client.id',
      'client.preshared_key',
      'client.ipv4',
      'client.ipv6',
      'client_ice_credentials',
      'client_ice_credentials.username',
      'gateway_ice_credentials',
      'gateway_ice_credentials.password',
    ]) {
      const err = decodeErr('authorize_flow', edited(authorizeFlow(), path, DELETE));
      expect(err.path).toBe(`payload.${path}`);
      expect(err.message).toContain('missing: expected');
    }
  });

  it('counts further problems without listing them', () => {
    const e = decodeErr('authorize_flow', {});
    expect(e.path).toBe('payload.ref');
    expect(e.message).toMatch(/\(and 4 more problems\)$/);
  });

  it.each([
    ['31 bytes', Buffer.alloc(31, 7).toString('base64')],
    ['33 bytes', Buffer.alloc(33, 7).toString('base64')],
    ['unpadded', PUBLIC_KEY.slice(0, 43)],
    ['URL-safe base64', 'DNSOs6t_0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0='],
  ])('refuses a public key of %s without showing it', (_name, bad) => {
    const e = decodeErr('authorize_flow', edited(authorizeFlow(), 'client.public_key', bad));
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.client.public_key' });
    expect(e.message).toContain('32 bytes');
    expect(e.message).toContain('not shown');
    expect(e.message).not.toContain(bad);
  });

  it('never shows the preshared key, the ref or ICE passwords', () => {
    const psk = Buffer.alloc(16, 9).toString('base64');
    expect(
      decodeErr('authorize_flow', edited(authorizeFlow(), 'client.preshared_key', psk)).message,
    ).not.toContain(psk);
    const e = decodeErr('authorize_flow', edited(authorizeFlow(), 'ref', 9876543210));
    expect(e.path).toBe('payload.ref');
    expect(e.message).not.toContain('9876543210');
    const pw = decodeErr(
      'authorize_flow',
      edited(authorizeFlow(), 'gateway_ice_credentials.password', 31415926),
    );
    expect(pw.message).not.toContain('31415926');
  });

  it('refuses a resource of an unknown type, naming the type', () => {
    const e = decodeErr('authorize_flow', edited(authorizeFlow(), 'resource.type', 'ip_range'));
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.resource.type' });
    expect(e.message).toContain("unknown resource type 'ip_range': expected cidr, dns or internet");
  });

  it('refuses a payload that is not an object', () => {
    for (const p of [null, 5, 'x', [], undefined]) {
      const e = decodeErr('authorize_flow', p);
      expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload' });
    }
  });
});

describe('resources and filters', () => {
  const decodeResource = (resource: unknown) => decodeOk('resource_updated', resource);

  it('maps cidr, dns and internet resources', () => {
    const cidr = decodeResource(cidrResource([{ protocol: 'icmp' }])).message.resource;
    expect(cidr).toMatchObject({
      type: 'cidr',
      id: RESOURCE_ID,
      name: 'Office LAN',
      filters: [{ protocol: 'icmp' }],
    });
    if (cidr.type === 'cidr') expect(prefix(cidr.address)).toBe('172.20.0.0/16');
    const v6 = decodeResource({ ...cidrResource(), address: 'fd00:1::/64' }).message.resource;
    if (v6.type === 'cidr') expect(prefix(v6.address)).toBe('fd00:1::/64');
    expect(
      decodeResource({
        id: RESOURCE_ID,
        type: 'dns',
        name: 'build farm',
        address: 'ci-??.corp.example',
        filters: [],
      }).message.resource,
    ).toEqual({
      type: 'dns',
      id: RESOURCE_ID,
      name: 'build farm',
      pattern: 'ci-??.corp.example',
      filters: [],
    });
    expect(
      decodeResource({ id: RESOURCE_ID, type: 'internet', name: 'Internet', address: 'junk' }).message
        .resource,
    ).toEqual({
      type: 'internet',
      id: RESOURCE_ID,
    });
  });

  it('fills absent port bounds with 0 and 65535', () => {
    const filters = [
      { protocol: 'tcp' },
      { protocol: 'udp', port_range_start: 53 },
      { protocol: 'tcp', port_range_end: 80 },
      { protocol: 'udp', port_range_start: 0, port_range_end: 0 },
    ];
    expect(decodeResource(cidrResource(filters)).message.resource).toMatchObject({
      filters: [
        { protocol: 'tcp', portStart: 0, portEnd: 65535 },
        { protocol: 'udp', portStart: 53, portEnd: 65535 },
        { protocol: 'tcp', portStart: 0, portEnd: 80 },
        { protocol: 'udp', portStart: 0, portEnd: 0 },
      ],
    });
  });

  it('refuses the whole message for an empty port range, with its own code', () => {
    const e = decodeErr(
      'authorize_flow',
      edited(authorizeFlow(), 'resource.filters', [
        { protocol: 'icmp' },
        { protocol: 'tcp', port_range_start: 443, port_range_end: 80 },
      ]),
    );
    expect(e).toMatchObject({ code: 'portal.bad-port-range', path: 'payload.resource.filters[1]' });
    expect(e.message).toContain('tcp port range 443-80 is empty');
    expect(
      decodeErr(
        'resource_updated',
        cidrResource([
          { protocol: 'udp', port_range_start: 70 },
          { protocol: 'udp', port_range_start: 65535, port_range_end: 1 },
        ]),
      ).code,
    ).toBe('portal.bad-port-range');
  });

  it.each([
    ['above 65535', 65536],
    ['negative', -1],
    ['a float', 80.5],
    ['a string', '80'],
    ['null', null],
  ])('refuses a port bound that is %s', (_name, v) => {
    const e = decodeErr('resource_updated', cidrResource([{ protocol: 'tcp', port_range_start: v }]));
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.filters[0].port_range_start' });
  });

  it('skips a filter of an unknown protocol and keeps the others', () => {
    const { message: m, skipped } = decodeOk(
      'authorize_flow',
      edited(authorizeFlow(), 'resource.filters', [
        { protocol: 'tcp', port_range_start: 443, port_range_end: 443 },
        { protocol: 'sctp', port_range_start: 9 },
      ]),
    );
    expect(m.resource).toMatchObject({ filters: [{ protocol: 'tcp', portStart: 443, portEnd: 443 }] });
    expect(skipped).toEqual([
      "payload.resource.filters[1]: unknown filter protocol 'sctp' (expected tcp, udp or icmp); filter ignored",
    ]);
  });

  it('refuses a resource whose every filter is unknown, rather than permitting everything', () => {
    const e = decodeErr('resource_updated', cidrResource([{ protocol: 'sctp' }, { protocol: 'gre' }]));
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.filters' });
    expect(e.message).toContain('would permit everything');
  });

  it('requires a string protocol in each filter', () => {
    expect(decodeErr('resource_updated', cidrResource([{ port_range_start: 1 }])).path).toBe(
      'payload.filters[0].protocol',
    );
    expect(decodeErr('resource_updated', cidrResource([{ protocol: 6 }])).path).toBe(
      'payload.filters[0].protocol',
    );
    expect(decodeErr('resource_updated', cidrResource(['tcp'])).path).toBe('payload.filters[0]');
  });

  it('requires filters on cidr and dns resources', () => {
    expect(decodeErr('resource_updated', edited(cidrResource(), 'filters', DELETE)).path).toBe(
      'payload.filters',
    );
    const dns = { id: RESOURCE_ID, type: 'dns', name: 'x', address: '*.corp.example' };
    expect(decodeErr('resource_updated', dns).path).toBe('payload.filters');
  });

  it.each([
    ['host bits set', '172.20.0.1/16', 'host bits set'],
    ['no prefix length', '172.20.0.0', 'ADDRESS/LENGTH'],
    ['a prefix too long', '172.20.0.0/33', 'expected 0 to 32'],
  ])('refuses a cidr address with %s', (_name, address, hint) => {
    const e = decodeErr('resource_updated', { ...cidrResource(), address });
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.address' });
    expect(e.message).toContain(hint);
  });

  it('requires id, name and address where the type needs them', () => {
    expect(decodeErr('resource_updated', edited(cidrResource(), 'id', 'not-a-uuid')).message).toContain(
      "'not-a-uuid' is not a resource id (a UUID)",
    );
    expect(decodeErr('resource_updated', edited(cidrResource(), 'name', DELETE)).path).toBe('payload.name');
    expect(
      decodeErr('resource_updated', { id: RESOURCE_ID, type: 'dns', name: 'x', address: '', filters: [] })
        .path,
    ).toBe('payload.address');
    expect(decodeErr('resource_updated', { type: 'internet' }).path).toBe('payload.id');
  });

  it('refuses an unknown resource type in resource_updated', () => {
    const e = decodeErr('resource_updated', { id: RESOURCE_ID, type: 'ip' });
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.type' });
    expect(e.message).toContain("'ip'");
  });
});

describe('request_connection (legacy)', () => {
  it('decodes a DNS resource request with its domain and proxy IPs', () => {
    const { message: m, skipped } = decodeOk('request_connection', requestConnection());
    expect(skipped).toEqual([]);
    expect(m.ref).toBe(REF);
    expect(m.clientId).toBe('c654a3ff-6e0d-4a64-930a-1312fab876d8');
    expect(m.clientIce).toEqual({ username: '4ysn', password: 'a83rsv8n8yz56pv0s5iduv' });
    expect(m.resource).toEqual({
      type: 'dns',
      id: 'ec18cd0b-11ac-47e4-80a4-af6ac3fae473',
      name: 'internal apps',
      pattern: '*.corp.example',
      filters: [{ protocol: 'tcp', portStart: 443, portEnd: 443 }, { protocol: 'icmp' }],
    });
    expect(m.domain?.name).toBe('wiki.corp.example');
    expect(m.domain?.proxyIps.map(ip)).toEqual([
      '100.96.0.9',
      '100.96.0.10',
      'fd00:2021:1111:8000::8',
      'fd00:2021:1111:8000::9',
    ]);
    expect(b64(m.peer.publicKey)).toBe('b1OvSjJspDn8pdygByfqAhjY1Bpc8DlBYiA59CRudec=');
    expect(b64(m.peer.presharedKey)).toBe('jlj+GHGJUqEV8NYvIpIaWap45QaNGPo/7lotzEloeps=');
    expect([ip(m.peer.ipv4), ip(m.peer.ipv6)]).toEqual(['100.102.7.200', 'fd00:2021:1111::e:4b01']);
    expect(m.peer).not.toHaveProperty('persistentKeepalive');
    expect(m.expiresAtMs).toBe(1_758_790_800_000);
  });

  it('strips one trailing dot from the domain name', () => {
    const { message: m } = decodeOk(
      'request_connection',
      edited(requestConnection(), 'client.payload.domain.name', 'wiki.corp.example.'),
    );
    expect(m.domain?.name).toBe('wiki.corp.example');
  });

  it.each([
    ['absent', DELETE],
    ['null', null],
  ])('decodes a request with the domain %s', (_name, v) => {
    const { message: m } = decodeOk(
      'request_connection',
      edited(requestConnection(), 'client.payload.domain', v),
    );
    expect(m.domain).toBeUndefined();
  });

  it('ignores a top-level relays list, whatever it holds', () => {
    const { message: m, skipped } = decodeOk('request_connection', {
      ...requestConnection(),
      relays: 'garbage',
    });
    expect(skipped).toEqual([]);
    expect(m).not.toHaveProperty('relays');
  });

  it('names the bad entry of proxy_ips and a bad domain name', () => {
    const e = decodeErr(
      'request_connection',
      edited(requestConnection(), 'client.payload.domain.proxy_ips', ['100.96.0.9', '100.96.0.300']),
    );
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.client.payload.domain.proxy_ips[1]' });
    expect(e.message).toContain("'100.96.0.300' is not an IP address");
    for (const name of ['', '.', 'a..b', 'with space.example', `${'a'.repeat(64)}.example`]) {
      expect(
        decodeErr('request_connection', edited(requestConnection(), 'client.payload.domain.name', name)).path,
      ).toBe('payload.client.payload.domain.name');
    }
  });

  it('requires the ICE parameters and the peer', () => {
    for (const path of [
      'client.payload.ice_parameters',
      'client.payload',
      'client.peer',
      'client.peer.preshared_key',
      'client.id',
      'ref',
      'resource',
    ]) {
      expect(decodeErr('request_connection', edited(requestConnection(), path, DELETE)).path).toBe(
        `payload.${path}`,
      );
    }
  });

  it('refuses an unknown resource type, naming it', () => {
    const e = decodeErr('request_connection', edited(requestConnection(), 'resource.type', 'future'));
    expect(e).toMatchObject({ code: 'portal.invalid', path: 'payload.resource.type' });
    expect(e.message).toContain("'future'");
  });
});

describe('allow_access (legacy)', () => {
  it('decodes an allow_access with a null payload', () => {
    const { message: m } = decodeOk('allow_access', allowAccess());
    expect(m).toMatchObject({
      type: 'allow_access',
      ref: REF,
      clientId: 'c654a3ff-6e0d-4a64-930a-1312fab876d8',
      resource: { type: 'cidr', id: '410c6258-f8fd-43fe-a8e8-7b6e788c80a6', name: 'lab', filters: [] },
      expiresAtMs: 1_758_790_800_000,
      domain: undefined,
    });
    expect([ip(m.clientIpv4), ip(m.clientIpv6)]).toEqual(['100.102.7.200', 'fd00:2021:1111::e:4b01']);
    expect(decodeOk('allow_access', edited(allowAccess(), 'payload', DELETE)).message.domain).toBeUndefined();
  });

  it('decodes an allow_access with a domain payload', () => {
    const p = edited(allowAccess(), 'payload', { name: 'wiki.corp.example', proxy_ips: ['100.96.0.9'] });
    const { message: m } = decodeOk('allow_access', p);
    expect(m.domain?.name).toBe('wiki.corp.example');
    expect(m.domain?.proxyIps.map(ip)).toEqual(['100.96.0.9']);
  });

  it('requires the client addresses in their families', () => {
    expect(
      decodeErr('allow_access', edited(allowAccess(), 'client_ipv4', 'fd00:2021:1111::e:4b01')).path,
    ).toBe('payload.client_ipv4');
    expect(decodeErr('allow_access', edited(allowAccess(), 'client_ipv6', DELETE)).path).toBe(
      'payload.client_ipv6',
    );
    expect(decodeErr('allow_access', edited(allowAccess(), 'payload', 'wiki')).path).toBe('payload.payload');
  });
});

describe('reject_access and access_authorization_expiry_updated', () => {
  it('decodes reject_access', () => {
    const { message: m } = decodeOk('reject_access', {
      client_id: CLIENT_ID,
      resource_id: RESOURCE_ID.toUpperCase(),
    });
    expect(m).toEqual({ type: 'reject_access', clientId: CLIENT_ID, resourceId: RESOURCE_ID });
    expect(decodeErr('reject_access', { client_id: CLIENT_ID }).path).toBe('payload.resource_id');
  });

  it('decodes access_authorization_expiry_updated and requires its expiry', () => {
    const p = { client_id: CLIENT_ID, resource_id: RESOURCE_ID, expires_at: 1758877200 };
    expect(decodeOk('access_authorization_expiry_updated', p).message).toEqual({
      type: 'access_authorization_expiry_updated',
      clientId: CLIENT_ID,
      resourceId: RESOURCE_ID,
      expiresAtMs: 1_758_877_200_000,
    });
    for (const v of [null, DELETE, 1758877200.25]) {
      expect(decodeErr('access_authorization_expiry_updated', edited(p, 'expires_at', v)).path).toBe(
        'payload.expires_at',
      );
    }
  });
});

describe('ice_candidates and invalidate_ice_candidates', () => {
  const GOOD = [
    'candidate:3f0a9c1e2b7d4a56 1 udp 1694498559 192.0.2.44 40123 typ srflx raddr 10.0.0.5 rport 40123',
    'candidate:7efffeff3a9c51d2e0b4 1 udp 2130706175 198.51.100.20 51820 typ host',
    'candidate:02ffffff5c8e1d0a 1 udp 50331391 2001:db8::7 61234 typ relay raddr 203.0.113.20 rport 51820 ufrag hyik',
  ];

  it.each(['ice_candidates', 'invalidate_ice_candidates'] as const)(
    'decodes %s, keeping candidates verbatim',
    (event) => {
      const { message: m, skipped } = decodeOk(event, { client_id: CLIENT_ID, candidates: GOOD });
      expect(m).toEqual({ type: event, clientId: CLIENT_ID, candidates: GOOD });
      expect(skipped).toEqual([]);
    },
  );

  it('skips unparseable candidates one by one, each with a line', () => {
    const { message: m, skipped } = decodeOk('ice_candidates', {
      client_id: CLIENT_ID,
      candidates: [
        GOOD[0],
        'a=candidate:1 1 udp 1 192.0.2.1 1 typ host',
        42,
        GOOD[1],
        'candidate:1 1 udp 1 192.0.2.1 70000 typ host',
      ],
    });
    expect(m.candidates).toEqual([GOOD[0], GOOD[1]]);
    expect(skipped).toHaveLength(3);
    expect(skipped[0]).toMatch(
      /^payload\.candidates\[1\]: 'a=candidate:1 .*' is not an ICE candidate \(.*\); ignored$/,
    );
    expect(skipped[1]).toBe('payload.candidates[2]: 42 is not an ICE candidate string; ignored');
    expect(skipped[2]).toMatch(/^payload\.candidates\[4\]: .*port '70000' is not 0 to 65535/);
  });

  it('requires client_id and a list of candidates', () => {
    expect(decodeErr('ice_candidates', { candidates: [] }).path).toBe('payload.client_id');
    expect(decodeErr('ice_candidates', { client_id: CLIENT_ID, candidates: GOOD[0] }).path).toBe(
      'payload.candidates',
    );
  });
});

describe('unsupported events', () => {
  it.each([
    ['create_authorization', /authorize_flow/],
    ['authorization_created', /gateway → portal/],
    ['no_relays', /gateway → portal/],
    ['set_snownet_capabilities', /gateway → portal/],
    ['flow_authorized', /gateway → portal/],
    ['broadcast_ice_candidates', /gateway → portal/],
    ['phx_reply', /Phoenix control frame/],
    ['disconnect', /Phoenix control frame/],
    ['bogus', /expected one of init, authorize_flow/],
    ['', /expected one of/],
    ['__proto__', /expected one of/],
    ['toString', /expected one of/],
  ])('refuses %s, naming it', (event, why) => {
    const r = decodePortalMessage(event, {});
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe('portal.unsupported-event');
    expect(r.error.message).toContain(`'${event}'`);
    expect(r.error.message).toMatch(why);
    expect(r.error.path).toBeUndefined();
  });

  it('lists exactly the ten portal → gateway events of §0', () => {
    expect(PORTAL_EVENTS).toHaveLength(10);
  });
});
