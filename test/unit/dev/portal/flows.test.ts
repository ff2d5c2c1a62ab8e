import { describe, expect, it } from 'vitest';
import { deriveIceCredentials } from '../../../../src/dev/portal/credentials.js';
import { DEFAULT_FLOW_LIFETIME_S, type DevPortal } from '../../../../src/dev/portal/server.js';
import {
  ALICE_KEY,
  BOB_KEY,
  type Frame,
  GATEWAY_TOKEN,
  gatewayUrl,
  IDS,
  joinGateway,
  NOW_MS,
  randomKey,
  TestSocket,
  usePortals,
} from './harness.js';

const { start, sockets } = usePortals();

async function gateway(p: DevPortal, params: Parameters<typeof joinGateway>[1] = {}) {
  const g = await joinGateway(p, params);
  sockets.push(g.socket);
  return g;
}

const NOW_S = NOW_MS / 1000;
const B64_KEY = /^[A-Za-z0-9+/]{43}=$/;

/** Plays the gateway: answers the next `authorize_flow` with `flow_authorized`; returns the push. */
async function acknowledgeNextFlow(
  socket: TestSocket,
  from = socket.received.length,
): Promise<{ push: Frame; reply: Frame }> {
  const push = await socket.next((f) => f.event === 'authorize_flow', 3000, from);
  const reply = await socket.request('gateway', 'flow_authorized', {
    ref: (push.payload as { ref: string }).ref,
  });
  return { push, reply };
}

describe('authorize_flow (§2.2, §3.1)', () => {
  it('pushes authorize_flow with derived PSK and ICE credentials and resolves on flow_authorized', async () => {
    const { portal } = await start();
    const { socket, gatewayId, publicKey } = await gateway(portal);
    const flow = portal.authorizeFlow(IDS.alice, IDS.cidr);
    const { push, reply } = await acknowledgeNextFlow(socket);
    const ice = deriveIceCredentials({
      clientId: IDS.alice,
      clientPublicKey: ALICE_KEY,
      gatewayId,
      gatewayPublicKey: publicKey,
    });
    const p = push.payload as { ref: string; client: { preshared_key: string } };
    expect(push).toEqual({
      topic: 'gateway',
      event: 'authorize_flow',
      ref: null,
      payload: {
        ref: expect.any(String),
        resource: { id: IDS.cidr, type: 'cidr', name: 'Office LAN', address: '172.20.0.0/16', filters: [] },
        client: {
          id: IDS.alice,
          public_key: ALICE_KEY,
          preshared_key: expect.stringMatching(B64_KEY),
          ipv4: '100.64.0.1',
          ipv6: 'fd00:2021:1111::1',
        },
        client_ice_credentials: ice.client,
        gateway_ice_credentials: ice.gateway,
        expires_at: NOW_S + DEFAULT_FLOW_LIFETIME_S,
      },
    });
    expect(Object.keys(push.payload as object)).toEqual([
      'ref',
      'resource',
      'client',
      'client_ice_credentials',
      'gateway_ice_credentials',
      'expires_at',
    ]);
    expect(reply.payload).toEqual({ response: {}, status: 'ok' });
    expect(await flow).toEqual({
      kind: 'flow',
      ref: p.ref,
      clientId: IDS.alice,
      resourceId: IDS.cidr,
      siteId: IDS.site,
      gatewayId,
      gatewayPublicKey: publicKey,
      gatewayIpv4: '100.64.0.2',
      gatewayIpv6: 'fd00:2021:1111::2',
      clientPublicKey: ALICE_KEY,
      clientIpv4: '100.64.0.1',
      clientIpv6: 'fd00:2021:1111::1',
      presharedKey: p.client.preshared_key,
      clientIce: ice.client,
      gatewayIce: ice.gateway,
      expiresAt: NOW_S + DEFAULT_FLOW_LIFETIME_S,
    });
  });

  it('derives the same PSK and ICE credentials for the same pair of keys, and new ones for a new gateway key', async () => {
    const { portal } = await start();
    const g = await gateway(portal, { external_id: 'same' });
    const first = portal.authorizeFlow(IDS.alice, IDS.dns);
    await acknowledgeNextFlow(g.socket);
    const mark = g.socket.received.length;
    const second = portal.authorizeFlow(IDS.alice, IDS.cidr);
    await acknowledgeNextFlow(g.socket, mark);
    const [a, b] = [await first, await second];
    expect(b.presharedKey).toBe(a.presharedKey);
    expect(b.gatewayIce).toEqual(a.gatewayIce);
    expect(b.ref).not.toBe(a.ref);
    // The grant's expiry is the flow's (§2.2 expires_at).
    expect(a.expiresAt).toBe(1_758_790_800);

    g.socket.close();
    await g.socket.closed;
    const again = await gateway(portal, { external_id: 'same', public_key: randomKey() });
    expect(again.gatewayId).toBe(g.gatewayId);
    const third = portal.authorizeFlow(IDS.alice, IDS.cidr);
    await acknowledgeNextFlow(again.socket);
    const c = await third;
    expect(c.presharedKey).not.toBe(a.presharedKey);
    expect(c.gatewayIce).not.toEqual(a.gatewayIce);
  });

  it('answers a forged ref, a ref of another gateway or of the other kind with invalid_ref and keeps waiting', async () => {
    const { portal } = await start();
    const g1 = await gateway(portal, { external_id: 'g1' });
    const g2 = await gateway(portal, { external_id: 'g2' });
    const outcome = portal
      .authorizeFlow(IDS.alice, IDS.cidr, { gatewayId: g1.gatewayId, timeoutMs: 300 })
      .catch((e: unknown) => e);
    const push = await g1.socket.nextEvent('authorize_flow');
    const ref = (push.payload as { ref: string }).ref;
    const invalid = { response: { reason: 'invalid_ref' }, status: 'error' };
    const forged = `${ref.slice(0, -2)}${ref.endsWith('AA') ? 'BB' : 'AA'}`;
    expect((await g1.socket.request('gateway', 'flow_authorized', { ref: forged })).payload).toEqual(invalid);
    expect((await g1.socket.request('gateway', 'flow_authorized', { ref: 'not-a-ref' })).payload).toEqual(
      invalid,
    );
    expect((await g1.socket.request('gateway', 'flow_authorized', { ref: 42 })).payload).toEqual(invalid);
    expect((await g2.socket.request('gateway', 'flow_authorized', { ref })).payload).toEqual(invalid);
    expect(
      (
        await g1.socket.request('gateway', 'connection_ready', {
          ref,
          gateway_payload: { ConnectionAccepted: { ice_parameters: { username: 'a', password: 'b' } } },
        })
      ).payload,
    ).toEqual(invalid);
    expect(await outcome).toMatchObject({ code: 'DEV_PORTAL_TIMEOUT' });
    expect(portal.gateway(g1.gatewayId)!.authorizations).toEqual([]);
  });

  it('answers flow_authorized without a ref with unknown_message', async () => {
    const { portal } = await start();
    const { socket } = await gateway(portal);
    const reply = await socket.request('gateway', 'flow_authorized', { reference: 'x' });
    expect(reply.payload).toEqual({ response: { reason: 'unknown_message' }, status: 'error' });
  });

  it('rejects with DEV_PORTAL_OFFLINE when the resource’s site has no joined gateway', async () => {
    const { portal } = await start();
    await gateway(portal); // site 1 only
    await expect(portal.authorizeFlow(IDS.alice, IDS.otherSite)).rejects.toMatchObject({
      code: 'DEV_PORTAL_OFFLINE',
    });
    const s = await TestSocket.open(
      gatewayUrl(portal, { token: 'gw-token-branch', external_id: 'x', name: 'n', public_key: randomKey() }),
    );
    sockets.push(s);
    // Connected but not joined is not enough.
    await expect(portal.authorizeFlow(IDS.alice, IDS.otherSite)).rejects.toMatchObject({
      code: 'DEV_PORTAL_OFFLINE',
    });
    await expect(
      portal.authorizeFlow('00000000-0000-0000-0000-000000000000', IDS.cidr),
    ).rejects.toMatchObject({
      code: 'DEV_PORTAL_UNKNOWN_CLIENT',
    });
    await expect(
      portal.authorizeFlow(IDS.alice, '00000000-0000-0000-0000-000000000000'),
    ).rejects.toMatchObject({
      code: 'DEV_PORTAL_UNKNOWN_RESOURCE',
    });
  });

  it('picks the requested gateway, else one the client is connected to, else the highest version', async () => {
    const { portal } = await start();
    const old = await gateway(portal, { external_id: 'old' });
    const s = await TestSocket.open(
      gatewayUrl(portal, { token: GATEWAY_TOKEN, external_id: 'new', name: 'n', public_key: randomKey() }),
      'Linux connlib/1.4.18',
    );
    sockets.push(s);
    await s.request('gateway', 'phx_join', null);
    const newer = portal.gateways().find((g) => g.externalId === 'new')!;
    const pick = async (opts: Parameters<DevPortal['authorizeFlow']>[2]) => {
      const f = portal.authorizeFlow(IDS.alice, IDS.cidr, { ...opts, timeoutMs: 50 });
      return f.catch(() => undefined).then(() => undefined);
    };
    let mark = portal.frameCursor();
    await pick({});
    expect(portal.frames(mark).find((f) => f.frame?.event === 'authorize_flow')!.peerId).toBe(newer.id);
    mark = portal.frameCursor();
    await pick({ connectedGatewayIds: [old.gatewayId] });
    expect(portal.frames(mark).find((f) => f.frame?.event === 'authorize_flow')!.peerId).toBe(old.gatewayId);
    mark = portal.frameCursor();
    await pick({ gatewayId: old.gatewayId });
    expect(portal.frames(mark).find((f) => f.frame?.event === 'authorize_flow')!.peerId).toBe(old.gatewayId);
  });
});

describe('legacy flow for 1.3.x clients (§2.3, §2.4, §3.2)', () => {
  const domain = {
    name: 'wiki.corp.example',
    proxyIps: ['100.96.0.9', '100.96.0.10', '100.96.0.11', '100.96.0.12', 'fd00:2021:1111:8000::8'],
  };
  const clientIce = { username: '4ysn', password: 'a83rsv8n8yz56pv0s5iduv' };
  const psk = 'jlj+GHGJUqEV8NYvIpIaWap45QaNGPo/7lotzEloeps=';

  it('sends request_connection and resolves with the ICE parameters of connection_ready', async () => {
    const { portal } = await start();
    const { socket, gatewayId } = await gateway(portal);
    const flow = portal.authorizeFlow(IDS.bob, IDS.dns, {
      domain,
      clientIce,
      presharedKey: psk,
      expiresAt: 1_758_790_800,
    });
    const push = await socket.nextEvent('request_connection');
    const ref = (push.payload as { ref: string }).ref;
    expect(push.payload).toEqual({
      ref,
      expires_at: 1_758_790_800,
      resource: {
        id: IDS.dns,
        type: 'dns',
        name: 'internal apps',
        address: '*.corp.example',
        filters: [{ protocol: 'tcp', port_range_start: 443, port_range_end: 443 }, { protocol: 'icmp' }],
      },
      client: {
        id: IDS.bob,
        payload: { ice_parameters: clientIce, domain: { name: domain.name, proxy_ips: domain.proxyIps } },
        peer: {
          persistent_keepalive: 25,
          public_key: BOB_KEY,
          preshared_key: psk,
          ipv4: '100.66.7.200',
          ipv6: 'fd00:2021:1111::e:4b01',
        },
      },
    });
    const answer = { username: 'qthh', password: 'y0gxb8tualdu3dw8b4o8sn' };
    const reply = await socket.request('gateway', 'connection_ready', {
      ref,
      gateway_payload: { ConnectionAccepted: { ice_parameters: answer } },
    });
    expect(reply.payload).toEqual({ response: {}, status: 'ok' });
    expect(await flow).toMatchObject({
      kind: 'legacy',
      gatewayId,
      clientId: IDS.bob,
      presharedKey: psk,
      clientIce,
      gatewayIce: answer,
    });
    expect(portal.gateway(gatewayId)!.authorizations).toEqual([
      { clientId: IDS.bob, resourceId: IDS.dns, expiresAt: 1_758_790_800 },
    ]);
  });

  it('sends domain null without a domain, and random client ICE parameters and PSK by default', async () => {
    const { portal } = await start();
    const { socket } = await gateway(portal);
    const outcome = portal.authorizeFlow(IDS.bob, IDS.cidr, { timeoutMs: 200 }).catch((e: unknown) => e);
    const push = await socket.nextEvent('request_connection');
    const client = (
      push.payload as {
        client: {
          payload: { ice_parameters: { username: string; password: string }; domain: unknown };
          peer: { preshared_key: string };
        };
      }
    ).client;
    expect(client.payload.domain).toBeNull();
    expect(client.payload.ice_parameters.username).toMatch(/^[a-z0-9]{4}$/);
    expect(client.payload.ice_parameters.password).toMatch(/^[a-z0-9]{22}$/);
    expect(client.peer.preshared_key).toMatch(B64_KEY);
    expect(await outcome).toMatchObject({ code: 'DEV_PORTAL_TIMEOUT' });
  });

  it('replies ok but rejects the flow when connection_ready carries no ICE parameters', async () => {
    const { portal } = await start();
    const { socket } = await gateway(portal);
    const outcome = portal.authorizeFlow(IDS.bob, IDS.cidr).catch((e: unknown) => e);
    const push = await socket.nextEvent('request_connection');
    const reply = await socket.request('gateway', 'connection_ready', {
      ref: (push.payload as { ref: string }).ref,
      gateway_payload: { Nope: {} },
    });
    expect(reply.payload).toEqual({ response: {}, status: 'ok' });
    expect(await outcome).toMatchObject({ code: 'DEV_PORTAL_BAD_ANSWER' });
  });

  it('sends allow_access to the gateway of the last legacy connection, expecting no reply', async () => {
    const { portal } = await start();
    await gateway(portal, { external_id: 'first' });
    const second = await gateway(portal, { external_id: 'second' });
    const flow = portal.authorizeFlow(IDS.bob, IDS.dns, { gatewayId: second.gatewayId });
    const push = await second.socket.nextEvent('request_connection');
    await second.socket.request('gateway', 'connection_ready', {
      ref: (push.payload as { ref: string }).ref,
      gateway_payload: { ConnectionAccepted: { ice_parameters: { username: 'u', password: 'p' } } },
    });
    await flow;
    const { gatewayId, ref } = portal.allowAccess(IDS.bob, IDS.cidr, { expiresAt: NOW_S + 60 });
    expect(gatewayId).toBe(second.gatewayId);
    const allow = await second.socket.nextEvent('allow_access');
    expect(allow.payload).toEqual({
      ref,
      client_id: IDS.bob,
      resource: { id: IDS.cidr, type: 'cidr', name: 'Office LAN', address: '172.20.0.0/16', filters: [] },
      expires_at: NOW_S + 60,
      payload: null,
      client_ipv4: '100.66.7.200',
      client_ipv6: 'fd00:2021:1111::e:4b01',
    });
    expect(portal.gateway(second.gatewayId)!.authorizations.map((a) => a.resourceId)).toEqual([
      IDS.dns,
      IDS.cidr,
    ]);
  });
});

describe('other portal pushes (§2.5–§2.9)', () => {
  it('sends reject_access to the gateways holding the pair and forgets it', async () => {
    const { portal } = await start();
    const { socket, gatewayId } = await gateway(portal);
    const f = portal.authorizeFlow(IDS.alice, IDS.cidr);
    await acknowledgeNextFlow(socket);
    await f;
    expect(portal.rejectAccess(IDS.alice, IDS.cidr)).toEqual([gatewayId]);
    const push = await socket.nextEvent('reject_access');
    expect(push).toEqual({
      topic: 'gateway',
      event: 'reject_access',
      payload: { client_id: IDS.alice, resource_id: IDS.cidr },
      ref: null,
    });
    expect(portal.gateway(gatewayId)!.authorizations).toEqual([]);
    expect(portal.rejectAccess(IDS.alice, IDS.cidr)).toEqual([]);
  });

  it('sends resource_updated with the whole changed resource to every joined gateway of its site', async () => {
    const { portal } = await start();
    const a = await gateway(portal, { external_id: 'a' });
    const other = await gateway(portal, { external_id: 'o', token: 'gw-token-branch' });
    const filters = [{ protocol: 'udp' as const, port_range_start: 53, port_range_end: 53 }];
    expect(portal.updateResource(IDS.dns, { filters })).toEqual([a.gatewayId]);
    const push = await a.socket.nextEvent('resource_updated');
    expect(push.payload).toEqual({
      id: IDS.dns,
      type: 'dns',
      name: 'internal apps',
      address: '*.corp.example',
      filters,
    });
    expect(other.socket.received.some((r) => r.frame.event === 'resource_updated')).toBe(false);
    // The new filters are used from then on.
    const flow = portal.authorizeFlow(IDS.alice, IDS.dns);
    const { push: auth } = await acknowledgeNextFlow(a.socket);
    await flow;
    expect((auth.payload as { resource: { filters: unknown } }).resource.filters).toEqual(filters);
    portal.updateResource(IDS.internet, { name: 'Everything' });
    expect(
      (await a.socket.nextEvent('resource_updated', 'gateway', 3000, a.socket.received.length - 1)).payload,
    ).toEqual({
      id: IDS.internet,
      type: 'internet',
    });
  });

  it('sends access_authorization_expiry_updated and moves the cached expiry', async () => {
    const { portal } = await start();
    const { socket, gatewayId } = await gateway(portal);
    const f = portal.authorizeFlow(IDS.alice, IDS.dns);
    await acknowledgeNextFlow(socket);
    await f;
    expect(portal.updateExpiry(IDS.alice, IDS.dns, 1_758_877_200)).toEqual([gatewayId]);
    const push = await socket.nextEvent('access_authorization_expiry_updated');
    expect(push.payload).toEqual({ client_id: IDS.alice, resource_id: IDS.dns, expires_at: 1_758_877_200 });
    expect(portal.gateway(gatewayId)!.authorizations).toEqual([
      { clientId: IDS.alice, resourceId: IDS.dns, expiresAt: 1_758_877_200 },
    ]);
  });

  it('sends relays_presence with the full current selection and uses it in later inits', async () => {
    const { portal } = await start();
    const { socket, gatewayId } = await gateway(portal);
    const fresh = 'f3e96854-f1f6-4e43-b751-9aa6c27b1fda';
    portal.relaysPresence([IDS.relay], [{ id: fresh, addr: '198.51.100.30:3478', secret: 's2' }]);
    const push = await socket.nextEvent('relays_presence');
    const expires = NOW_S + 90 * 24 * 3600;
    expect(push.payload).toEqual({
      disconnected_ids: [IDS.relay],
      connected: [
        {
          id: fresh,
          type: 'turn',
          addr: '198.51.100.30:3478',
          username: `${expires}:${gatewayId}`,
          password: expect.any(String),
          expires_at: expires,
        },
      ],
    });
    const mark = socket.received.length;
    portal.reInit(gatewayId);
    const init = await socket.next((f) => f.event === 'init', 3000, mark);
    expect((init.payload as { relays: { id: string }[] }).relays.map((r) => r.id)).toEqual([fresh]);
    // Back again by id.
    portal.relaysPresence([], [IDS.relay]);
    const again = await socket.next((f) => f.event === 'relays_presence', 3000, mark);
    expect((again.payload as { connected: { id: string }[] }).connected.map((r) => r.id)).toEqual([
      fresh,
      IDS.relay,
      IDS.relay,
    ]);
    expect(() => portal.relaysPresence([], ['00000000-0000-0000-0000-000000000000'])).toThrow(
      expect.objectContaining({ code: 'DEV_PORTAL_UNKNOWN_RELAY' }),
    );
    expect(() => portal.relaysPresence([], [{ id: fresh, addr: 'nope', secret: 's' }])).toThrow(
      expect.objectContaining({ code: 'DEV_PORTAL_BAD_RELAY' }),
    );
  });

  it('pushes raw fixtures verbatim with push()', async () => {
    const { portal } = await start();
    const { socket, gatewayId } = await gateway(portal);
    const fixture = {
      client_id: IDS.alice,
      candidates: ['candidate:1 1 udp 1 192.0.2.1 1 typ host'],
      extra: 1,
    };
    portal.push(gatewayId, 'ice_candidates', fixture);
    const got = socket.received.length;
    const push = await socket.nextEvent('ice_candidates', 'gateway', 3000, got - 1);
    expect(push).toEqual({ topic: 'gateway', event: 'ice_candidates', payload: fixture, ref: null });
    expect(() => portal.push('nope', 'x', {})).toThrow(
      expect.objectContaining({ code: 'DEV_PORTAL_UNKNOWN_GATEWAY' }),
    );
  });
});

describe('init authorizations: the flow cache (§4.6)', () => {
  it('lists the flows the gateway acknowledged, minus revoked and expired ones, across reconnects', async () => {
    const h = await start();
    const { portal } = h;
    const g = await gateway(portal, { external_id: 'resync' });
    const f1 = portal.authorizeFlow(IDS.alice, IDS.cidr, { expiresAt: NOW_S + 3600 });
    await acknowledgeNextFlow(g.socket);
    await f1;
    let mark = g.socket.received.length;
    const f2 = portal.authorizeFlow(IDS.alice, IDS.dns, { expiresAt: NOW_S + 60 });
    await acknowledgeNextFlow(g.socket, mark);
    await f2;
    // An authorization the gateway never acknowledged is not cached.
    const unanswered = portal.authorizeFlow(IDS.alice, IDS.internet, { timeoutMs: 20 });
    await expect(unanswered).rejects.toMatchObject({ code: 'DEV_PORTAL_TIMEOUT' });
    // A shorter re-authorization keeps the max expiry.
    mark = g.socket.received.length;
    const f3 = portal.authorizeFlow(IDS.alice, IDS.cidr, { expiresAt: NOW_S + 10 });
    await acknowledgeNextFlow(g.socket, mark);
    await f3;

    const initAfter = async (socket: TestSocket, act: () => void) => {
      const from = socket.received.length;
      act();
      return (await socket.next((f) => f.event === 'init', 3000, from)).payload as {
        authorizations: unknown[];
      };
    };
    expect((await initAfter(g.socket, () => portal.reInit(g.gatewayId))).authorizations).toEqual([
      { client_id: IDS.alice, resource_id: IDS.cidr, expires_at: NOW_S + 3600 },
      { client_id: IDS.alice, resource_id: IDS.dns, expires_at: NOW_S + 60 },
    ]);

    expect(portal.revokeFlow(IDS.alice, IDS.cidr)).toBe(true);
    expect(g.socket.received.some((r) => r.frame.event === 'reject_access')).toBe(false);
    expect((await initAfter(g.socket, () => portal.reInit())).authorizations).toEqual([
      { client_id: IDS.alice, resource_id: IDS.dns, expires_at: NOW_S + 60 },
    ]);

    // The cache belongs to the row: a reconnect gets the same list.
    g.socket.close();
    await g.socket.closed;
    const again = await gateway(portal, { external_id: 'resync' });
    expect((again.init.payload as { authorizations: unknown[] }).authorizations).toEqual([
      { client_id: IDS.alice, resource_id: IDS.dns, expires_at: NOW_S + 60 },
    ]);

    h.setNow(NOW_MS + 60_000);
    expect((await initAfter(again.socket, () => portal.reInit(again.gatewayId))).authorizations).toEqual([]);
  });
});
