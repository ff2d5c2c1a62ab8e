import { describe, expect, it } from 'vitest';
import type { DevPortal } from '../../../../src/dev/portal/server.js';
import {
  GATEWAY_TOKEN,
  gatewayUrl,
  joinGateway,
  randomKey,
  refusedUpgrade,
  TestSocket,
  usePortals,
} from './harness.js';

const { start, sockets } = usePortals();

const url = (p: DevPortal) =>
  gatewayUrl(p, { token: GATEWAY_TOKEN, external_id: 'ext', name: 'gw', public_key: randomKey() });

describe('scripted faults', () => {
  it('dropSockets terminates every gateway socket without a close frame', async () => {
    const { portal } = await start();
    const a = await joinGateway(portal, { external_id: 'a' });
    const b = await joinGateway(portal, { external_id: 'b' });
    expect(portal.faults.dropSockets()).toBe(2);
    expect((await a.socket.closed).code).toBe(1006);
    expect((await b.socket.closed).code).toBe(1006);
    await new Promise((r) => setTimeout(r, 20));
    expect(portal.gateways().map((g) => g.connected)).toEqual([false, false]);
  });

  it('rejectUpgrades answers the next N upgrades with the given status and body, then lets them through', async () => {
    const { portal } = await start();
    portal.faults.rejectUpgrades(503, 'maintenance', 2);
    expect(await refusedUpgrade(url(portal))).toEqual({ status: 503, body: 'maintenance' });
    expect(await refusedUpgrade(url(portal))).toEqual({ status: 503, body: 'maintenance' });
    const s = await TestSocket.open(url(portal));
    sockets.push(s);
  });

  it('rejectUpgrades without a count refuses every upgrade until cleared', async () => {
    const { portal } = await start();
    portal.faults.rejectUpgrades(429, 'slow down');
    for (let i = 0; i < 3; i++)
      expect(await refusedUpgrade(url(portal))).toEqual({ status: 429, body: 'slow down' });
    portal.faults.clearRejectUpgrades();
    sockets.push(await TestSocket.open(url(portal)));
  });

  it('silenceHeartbeats stops answering heartbeats while on', async () => {
    const { portal } = await start();
    const { socket } = await joinGateway(portal);
    sockets.push(socket);
    portal.faults.silenceHeartbeats(true);
    await expect(socket.request('phoenix', 'heartbeat', {}, 150)).rejects.toThrow('no matching frame');
    portal.faults.silenceHeartbeats(false);
    expect((await socket.request('phoenix', 'heartbeat', {})).payload).toEqual({
      response: {},
      status: 'ok',
    });
  });

  it('silenceJoins never answers joins, so the gateway stays unjoined', async () => {
    const { portal } = await start();
    portal.faults.silenceJoins(true);
    const s = await TestSocket.open(url(portal));
    sockets.push(s);
    await expect(s.request('gateway', 'phx_join', null, 150)).rejects.toThrow('no matching frame');
    expect(portal.gateways()[0]).toMatchObject({ connected: true, joined: false });
    portal.faults.silenceJoins(false);
    expect((await s.request('gateway', 'phx_join', null)).payload).toEqual({ response: {}, status: 'ok' });
  });

  it('disconnectTokenExpired pushes disconnect with reason token_expired', async () => {
    const { portal } = await start();
    const { socket, gatewayId } = await joinGateway(portal);
    sockets.push(socket);
    portal.faults.disconnectTokenExpired(gatewayId);
    expect(await socket.nextEvent('disconnect')).toEqual({
      topic: 'gateway',
      event: 'disconnect',
      payload: { reason: 'token_expired' },
      ref: null,
    });
  });
});
