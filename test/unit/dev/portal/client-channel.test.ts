import { describe, expect, it } from 'vitest';
import { deriveIceCredentials } from '../../../../src/dev/portal/credentials.js';
import type { DevPortal } from '../../../../src/dev/portal/server.js';
import {
  ALICE_KEY,
  ALICE_TOKEN,
  IDS,
  joinClient,
  joinGateway,
  NOW_MS,
  refusedUpgrade,
  usePortals,
} from './harness.js';

const { start, sockets } = usePortals();

async function both(p: DevPortal) {
  const g = await joinGateway(p);
  const c = await joinClient(p, ALICE_TOKEN);
  sockets.push(g.socket, c.socket);
  return { g, c };
}

const NOW_S = NOW_MS / 1000;

describe('client socket', () => {
  it('refuses a missing or unknown client token with 401', async () => {
    const { portal } = await start();
    expect(await refusedUpgrade(`${portal.url}/client/websocket`)).toEqual({
      status: 401,
      body: 'Missing token',
    });
    expect(await refusedUpgrade(`${portal.url}/client/websocket?token=gw-token-hq`)).toEqual({
      status: 401,
      body: 'Invalid token',
    });
  });

  it('pushes init with the client’s addresses, relay credentials and non-expired resources after the join', async () => {
    const h = await start();
    const { init, socket } = await joinClient(h.portal, ALICE_TOKEN);
    sockets.push(socket);
    const expires = NOW_S + 90 * 24 * 3600;
    expect(init.payload).toEqual({
      interface: { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' },
      relays: [
        expect.objectContaining({
          id: IDS.relay,
          addr: '203.0.113.7:3478',
          username: `${expires}:${IDS.alice}`,
        }),
        expect.objectContaining({
          id: IDS.relay,
          addr: '[2001:db8::7]:3478',
          username: `${expires}:${IDS.alice}`,
        }),
      ],
      resources: [
        { id: IDS.cidr, type: 'cidr', address: '172.20.0.0/16', name: 'Office LAN' },
        { id: IDS.dns, type: 'dns', address: '*.corp.example', name: 'internal apps' },
        { id: IDS.otherSite, type: 'cidr', address: '10.9.0.0/16', name: 'lab' },
      ],
    });
    h.setNow(1_758_790_800_000);
    const later = await joinClient(h.portal, ALICE_TOKEN);
    sockets.push(later.socket);
    expect((later.init.payload as { resources: { id: string }[] }).resources.map((r) => r.id)).toEqual([
      IDS.cidr,
      IDS.otherSite,
    ]);
  });

  it('answers an unknown client event with unknown_message', async () => {
    const { portal } = await start();
    const { socket } = await joinClient(portal, ALICE_TOKEN);
    sockets.push(socket);
    const reply = await socket.request('client', 'request_connection', {});
    expect(reply.payload).toEqual({ response: { reason: 'unknown_message' }, status: 'error' });
  });
});

describe('create_flow', () => {
  it('authorizes the flow on a gateway and pushes flow_created with what the client needs', async () => {
    const { portal } = await start();
    const { g, c } = await both(portal);
    c.socket.send('client', 'create_flow', { resource_id: IDS.cidr, connected_gateway_ids: [] });
    const push = await g.socket.nextEvent('authorize_flow');
    await g.socket.request('gateway', 'flow_authorized', { ref: (push.payload as { ref: string }).ref });
    const created = await c.socket.nextEvent('flow_created');
    const ice = deriveIceCredentials({
      clientId: IDS.alice,
      clientPublicKey: ALICE_KEY,
      gatewayId: g.gatewayId,
      gatewayPublicKey: g.publicKey,
    });
    expect(created).toEqual({
      topic: 'client',
      event: 'flow_created',
      ref: null,
      payload: {
        resource_id: IDS.cidr,
        gateway_id: g.gatewayId,
        site_id: IDS.site,
        gateway_public_key: g.publicKey,
        gateway_ipv4: '100.64.0.2',
        gateway_ipv6: 'fd00:2021:1111::2',
        preshared_key: (push.payload as { client: { preshared_key: string } }).client.preshared_key,
        client_ice_credentials: ice.client,
        gateway_ice_credentials: ice.gateway,
      },
    });
  });

  it('answers not_found for a resource the client is not granted, and offline when no gateway takes it', async () => {
    const { portal } = await start({ flowTimeoutMs: 100 });
    const { c } = await both(portal);
    const notGranted = await c.socket.request('client', 'create_flow', { resource_id: IDS.internet });
    expect(notGranted.payload).toEqual({ response: { reason: 'not_found' }, status: 'error' });
    const noGateway = await c.socket.request('client', 'create_flow', { resource_id: IDS.otherSite });
    expect(noGateway.payload).toEqual({ response: { reason: 'offline' }, status: 'error' });
    // The gateway never answers: offline once the flow times out.
    const silent = await c.socket.request('client', 'create_flow', { resource_id: IDS.cidr });
    expect(silent.payload).toEqual({ response: { reason: 'offline' }, status: 'error' });
    const malformed = await c.socket.request('client', 'create_flow', { resource: IDS.cidr });
    expect(malformed.payload).toEqual({ response: { reason: 'unknown_message' }, status: 'error' });
  });
});

describe('ICE candidate relaying (§2.6, §3.3)', () => {
  const candidates = ['candidate:7efffeff3a9c51d2e0b4 1 udp 2130706175 198.51.100.20 51820 typ host'];

  it('forwards the client’s candidates and invalidations to each named gateway', async () => {
    const { portal } = await start();
    const { g, c } = await both(portal);
    c.socket.send('client', 'broadcast_ice_candidates', { gateway_ids: [g.gatewayId], candidates });
    expect((await g.socket.nextEvent('ice_candidates')).payload).toEqual({
      client_id: IDS.alice,
      candidates,
    });
    c.socket.send('client', 'broadcast_invalidated_ice_candidates', {
      gateway_ids: [g.gatewayId],
      candidates,
    });
    expect((await g.socket.nextEvent('invalidate_ice_candidates')).payload).toEqual({
      client_id: IDS.alice,
      candidates,
    });
  });

  it('forwards the gateway’s candidates and invalidations to each named client, without replying', async () => {
    const { portal } = await start();
    const { g, c } = await both(portal);
    const ref = g.socket.send('gateway', 'broadcast_ice_candidates', { client_ids: [IDS.alice], candidates });
    expect(await c.socket.nextEvent('ice_candidates')).toEqual({
      topic: 'client',
      event: 'ice_candidates',
      payload: { gateway_id: g.gatewayId, candidates },
      ref: null,
    });
    g.socket.send('gateway', 'broadcast_invalidated_ice_candidates', {
      client_ids: [IDS.alice, IDS.bob],
      candidates,
    });
    expect((await c.socket.nextEvent('invalidate_ice_candidates')).payload).toEqual({
      gateway_id: g.gatewayId,
      candidates,
    });
    await g.socket.request('phoenix', 'heartbeat', {});
    expect(g.socket.received.some((r) => r.frame.event === 'phx_reply' && r.frame.ref === ref)).toBe(false);
    const bad = await g.socket.request('gateway', 'broadcast_ice_candidates', {
      client_ids: 'x',
      candidates,
    });
    expect(bad.payload).toEqual({ response: { reason: 'unknown_message' }, status: 'error' });
  });
});
