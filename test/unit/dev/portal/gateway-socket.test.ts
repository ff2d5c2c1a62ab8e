import { hmac } from '@noble/hashes/hmac.js';
import { sha1 } from '@noble/hashes/legacy.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { GatewayInfo } from '../../../../src/dev/portal/server.js';
import {
  GATEWAY_TOKEN,
  gatewayUrl,
  IDS,
  joinGateway,
  NOW_MS,
  RELAY_SECRET,
  randomKey,
  refusedUpgrade,
  TestSocket,
  usePortals,
} from './harness.js';

const { start } = usePortals();

const VALID = { token: GATEWAY_TOKEN, external_id: 'gw-ext-1', name: 'gw-eu-1' };

describe('gateway socket upgrade (§1.3)', () => {
  it('refuses an upgrade without a token with 401 "Missing token"', async () => {
    const { portal } = await start();
    const r = await refusedUpgrade(
      gatewayUrl(portal, { ...VALID, token: undefined, public_key: randomKey() }),
    );
    expect(r).toEqual({ status: 401, body: 'Missing token' });
  });

  it('refuses an unknown token with 401 "Invalid token"', async () => {
    const { portal } = await start();
    const r = await refusedUpgrade(gatewayUrl(portal, { ...VALID, token: 'nope', public_key: randomKey() }));
    expect(r).toEqual({ status: 401, body: 'Invalid token' });
  });

  it('refuses missing parameters with 422 naming each of them', async () => {
    const { portal } = await start();
    const r = await refusedUpgrade(gatewayUrl(portal, { token: GATEWAY_TOKEN }));
    expect(r).toEqual({
      status: 422,
      body: "Invalid or missing connection parameters: external_id can't be blank; name can't be blank; public_key can't be blank",
    });
  });

  it('refuses a public key that is not 44 base64 characters with 422', async () => {
    const { portal } = await start();
    const short = await refusedUpgrade(gatewayUrl(portal, { ...VALID, public_key: 'abc=' }));
    expect(short).toEqual({
      status: 422,
      body: 'Invalid or missing connection parameters: public_key should be 44 character(s)',
    });
    const notBase64 = await refusedUpgrade(
      gatewayUrl(portal, { ...VALID, public_key: `${'!'.repeat(43)}=` }),
    );
    expect(notBase64).toEqual({
      status: 422,
      body: 'Invalid or missing connection parameters: public_key must be a base64-encoded string',
    });
  });

  it('refuses a blank name after trimming and a name longer than 255 characters with 422', async () => {
    const { portal } = await start();
    expect(
      await refusedUpgrade(gatewayUrl(portal, { ...VALID, name: '   ', public_key: randomKey() })),
    ).toEqual({
      status: 422,
      body: "Invalid or missing connection parameters: name can't be blank",
    });
    expect(
      await refusedUpgrade(gatewayUrl(portal, { ...VALID, name: 'x'.repeat(256), public_key: randomKey() })),
    ).toEqual({
      status: 422,
      body: 'Invalid or missing connection parameters: name should be at most 255 character(s)',
    });
  });

  it('refuses a User-Agent without a connlib/<semver> or gateway/<semver> token with 422', async () => {
    const { portal } = await start();
    const body =
      'Invalid or missing connection parameters: user_agent must contain connlib/<version> or gateway/<version>';
    for (const ua of [null, 'curl/8.5.0', 'Ubuntu/22.4.0 connlib/1.4 (x86_64)', 'Linux connlib/latest']) {
      const r = await refusedUpgrade(gatewayUrl(portal, { ...VALID, public_key: randomKey() }), ua);
      expect(r, `User-Agent ${ua}`).toEqual({ status: 422, body });
    }
  });

  it('accepts a gateway/<semver> User-Agent token (1.4.17 and later)', async () => {
    const { portal } = await start();
    const s = await TestSocket.open(
      gatewayUrl(portal, { ...VALID, public_key: randomKey() }),
      'Debian/12 gateway/1.5.0 (x86_64)',
    );
    expect(portal.gateways()[0]!.version).toBe('1.5.0');
    s.close();
  });

  it('refuses a public key another gateway row already uses with 422', async () => {
    const { portal } = await start();
    const key = randomKey();
    const first = await joinGateway(portal, { external_id: 'a', public_key: key });
    const r = await refusedUpgrade(gatewayUrl(portal, { ...VALID, external_id: 'b', public_key: key }));
    expect(r).toEqual({
      status: 422,
      body: 'Invalid or missing connection parameters: public_key has already been taken',
    });
    first.socket.close();
  });

  it('answers plain HTTP requests without an upgrade with 400 on the socket paths and 404 elsewhere', async () => {
    const { portal } = await start();
    const base = portal.url.replace('ws:', 'http:');
    const a = await fetch(`${base}/gateway/websocket`);
    expect(a.status).toBe(400);
    const b = await fetch(`${base}/nothing`);
    expect(b.status).toBe(404);
    expect(await refusedUpgrade(`${portal.url}/nothing`)).toEqual({ status: 404, body: 'Not Found' });
  });
});

describe('gateway rows', () => {
  it('keeps the row, its id and tunnel addresses across reconnects, updating name and public key', async () => {
    const { portal } = await start();
    const a = await joinGateway(portal, { external_id: 'ext-1', name: 'first' });
    const before = portal.gateway(a.gatewayId)!;
    a.socket.close();
    await a.socket.closed;
    const newKey = randomKey();
    const b = await joinGateway(portal, { external_id: 'ext-1', name: 'renamed', public_key: newKey });
    expect(b.gatewayId).toBe(a.gatewayId);
    const after = portal.gateway(b.gatewayId)!;
    expect(after).toMatchObject({ ipv4: before.ipv4, ipv6: before.ipv6, name: 'renamed', publicKey: newKey });
    expect(portal.gateways()).toHaveLength(1);
    b.socket.close();
  });

  it('gives each new row the next tunnel addresses, skipping the clients’ addresses and never reusing one', async () => {
    const { portal } = await start();
    const g1 = await joinGateway(portal, { external_id: 'g1' });
    const g2 = await joinGateway(portal, { external_id: 'g2' });
    // Alice has 100.64.0.1 / fd00:2021:1111::1.
    expect(portal.gateway(g1.gatewayId)).toMatchObject({ ipv4: '100.64.0.2', ipv6: 'fd00:2021:1111::2' });
    expect(portal.gateway(g2.gatewayId)).toMatchObject({ ipv4: '100.64.0.3', ipv6: 'fd00:2021:1111::3' });
    // Same external_id in another site is another row.
    const g3 = await joinGateway(portal, { external_id: 'g1', token: 'gw-token-branch' });
    expect(g3.gatewayId).not.toBe(g1.gatewayId);
    expect(portal.gateway(g3.gatewayId)).toMatchObject({ siteId: IDS.site2, ipv4: '100.64.0.4' });
    for (const g of [g1, g2, g3]) g.socket.close();
  });

  it('lists rows with their connection state and emits connect, join and disconnect events', async () => {
    const { portal } = await start();
    const seen: string[] = [];
    portal.events.on('gateway.connect', (g: GatewayInfo) => seen.push(`connect ${g.joined}`));
    portal.events.on('gateway.join', (g: GatewayInfo) => seen.push(`join ${g.joined}`));
    portal.events.on('gateway.disconnect', (g: GatewayInfo) => seen.push(`disconnect ${g.connected}`));
    const s = await TestSocket.open(gatewayUrl(portal, { ...VALID, public_key: randomKey() }));
    expect(portal.gateways()[0]).toMatchObject({
      connected: true,
      joined: false,
      externalId: 'gw-ext-1',
      siteId: IDS.site,
    });
    await s.request('gateway', 'phx_join', null);
    expect(portal.gateways()[0]).toMatchObject({ connected: true, joined: true, version: '1.4.17' });
    s.close();
    await s.closed;
    await new Promise((r) => setTimeout(r, 50));
    expect(portal.gateways()[0]).toMatchObject({ connected: false, joined: false });
    expect(seen).toEqual(['connect false', 'join true', 'disconnect false']);
  });
});

describe('gateway channel (§1.5, §1.6, §2.1)', () => {
  it('answers the join with ok {} and pushes init exactly in the shape of §2.1', async () => {
    const { portal } = await start();
    const s = await TestSocket.open(gatewayUrl(portal, { ...VALID, public_key: randomKey() }));
    s.ws.send('{"topic":"gateway","event":"phx_join","payload":null,"ref":0}');
    const init = await s.nextEvent('init');
    const gatewayId = portal.gateways()[0]!.id;
    const expires = NOW_MS / 1000 + 90 * 24 * 3600;
    const username = `${expires}:${gatewayId}`;
    const password = Buffer.from(hmac(sha1, utf8ToBytes(RELAY_SECRET), utf8ToBytes(username))).toString(
      'base64',
    );
    const relay = (addr: string) => ({
      id: IDS.relay,
      type: 'turn',
      addr,
      username,
      password,
      expires_at: expires,
    });
    expect(s.received.map((r) => r.text)).toEqual([
      '{"topic":"gateway","event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":0}',
      JSON.stringify({
        topic: 'gateway',
        event: 'init',
        payload: {
          account_slug: 'acme',
          authorizations: [],
          config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
          interface: { ipv4: '100.64.0.2', ipv6: 'fd00:2021:1111::2' },
          relays: [relay('203.0.113.7:3478'), relay('[2001:db8::7]:3478')],
        },
        ref: null,
      }),
    ]);
    expect(init.ref).toBeNull();
    s.close();
  });

  it('answers a heartbeat on topic phoenix with ok {} and the same ref, joined or not', async () => {
    const { portal } = await start();
    const s = await TestSocket.open(gatewayUrl(portal, { ...VALID, public_key: randomKey() }));
    s.ws.send('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":7}');
    await s.nextEvent('phx_reply', 'phoenix');
    expect(s.received[0]!.text).toBe(
      '{"topic":"phoenix","event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":7}',
    );
    s.close();
  });

  it('answers an unknown event on the joined topic with unknown_message', async () => {
    const { portal } = await start();
    const { socket } = await joinGateway(portal);
    const reply = await socket.request('gateway', 'no_relays', {});
    expect(reply.payload).toEqual({ response: { reason: 'unknown_message' }, status: 'error' });
    socket.close();
  });

  it('answers a frame for a topic that is not joined, and a join of another topic, with unmatched topic', async () => {
    const { portal } = await start();
    const s = await TestSocket.open(gatewayUrl(portal, { ...VALID, public_key: randomKey() }));
    const before = await s.request('gateway', 'flow_authorized', { ref: 'x' });
    expect(before).toEqual({
      topic: 'gateway',
      event: 'phx_reply',
      payload: { response: { reason: 'unmatched topic' }, status: 'error' },
      ref: 0,
    });
    const otherJoin = await s.request('client', 'phx_join', {});
    expect(otherJoin.payload).toEqual({ response: { reason: 'unmatched topic' }, status: 'error' });
    const otherPhoenix = await s.request('phoenix', 'something', {});
    expect(otherPhoenix.payload).toEqual({ response: { reason: 'unmatched topic' }, status: 'error' });
    s.close();
  });

  it('closes the old channel with phx_close before answering a duplicate join, then sends a new init', async () => {
    const { portal } = await start();
    const { socket } = await joinGateway(portal);
    const from = socket.received.length;
    const ref = socket.send('gateway', 'phx_join', null);
    await socket.next((f) => f.event === 'init', 3000, from);
    expect(socket.received.slice(from).map((r) => r.frame)).toEqual([
      { topic: 'gateway', event: 'phx_close', payload: {}, ref: 0 },
      { topic: 'gateway', event: 'phx_reply', payload: { response: {}, status: 'ok' }, ref },
      expect.objectContaining({ event: 'init', ref: null }),
    ]);
    socket.close();
  });

  it('drops and counts undecodable frames without replying or closing the socket', async () => {
    const { portal } = await start();
    const { socket } = await joinGateway(portal);
    const dropped: string[] = [];
    portal.events.on('dropped', (d) => dropped.push(d.code));
    socket.ws.send('not json');
    socket.ws.send('[1,2,3]');
    socket.ws.send('{"event":"x","payload":{},"ref":1}');
    socket.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    socket.ws.send('{"topic":"gateway","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":2}');
    const hb = await socket.request('phoenix', 'heartbeat', {});
    expect((hb.payload as { status: string }).status).toBe('ok');
    expect(dropped).toEqual([
      'phoenix.not-json',
      'phoenix.not-object',
      'phoenix.bad-field',
      'frame.binary',
      'frame.unexpected-control',
    ]);
    expect(portal.dropped()).toMatchObject({ 'phoenix.not-json': 1, 'frame.binary': 1 });
    expect(socket.ws.readyState).toBe(WebSocket.OPEN);
    socket.close();
  });

  it('records every frame in and out with a timestamp and lets a test wait for one', async () => {
    const { portal } = await start();
    const { socket, gatewayId } = await joinGateway(portal);
    const mark = portal.frameCursor();
    socket.send('phoenix', 'heartbeat', {});
    const rec = await portal.waitForFrame(
      (f) => f.direction === 'out' && f.frame?.topic === 'phoenix',
      2000,
      mark,
    );
    expect(rec).toMatchObject({ peer: 'gateway', peerId: gatewayId, at: NOW_MS });
    const all = portal.frames();
    expect(all.map((f) => `${f.direction} ${f.frame?.event}`)).toEqual([
      'in phx_join',
      'out phx_reply',
      'out init',
      'in heartbeat',
      'out phx_reply',
    ]);
    await expect(portal.waitForFrame((f) => f.frame?.event === 'never', 50)).rejects.toMatchObject({
      code: 'DEV_PORTAL_TIMEOUT',
    });
    socket.close();
  });
});

describe('idle timeout (§1.3)', () => {
  it('closes a socket that sends nothing for the idle timeout', async () => {
    const { portal } = await start({ idleTimeoutMs: 150 });
    const { socket } = await joinGateway(portal);
    const t0 = Date.now();
    const { code } = await socket.closed;
    expect(code).toBe(1000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
  });

  it('keeps a socket open while it sends heartbeats more often than the idle timeout', async () => {
    const { portal } = await start({ idleTimeoutMs: 200 });
    const { socket } = await joinGateway(portal);
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 80));
      socket.send('phoenix', 'heartbeat', {});
    }
    expect(socket.ws.readyState).toBe(WebSocket.OPEN);
    socket.close();
  });
});
