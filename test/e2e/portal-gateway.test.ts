import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePortalPolicy } from '../../src/dev/portal/policy.js';
import { type DevPortal, type Flow, startDevPortal } from '../../src/dev/portal/server.js';
import { TUNNEL_PORT } from '../../src/io/tunnel-sockets.js';
import { startGateway, waitForLog } from '../support/gateway-process.js';
import { Netns } from '../support/netns.js';
import { forwardIntoNetns, type NetnsForward } from '../support/netns-forward.js';
import { rootAvailable } from '../support/privileges.js';
import {
  ADDR,
  GatewayLab,
  gatewayLabCommandsAvailable,
  HTTP_PORT,
  httpBody,
  httpGet,
  type OurGateway,
  Pinger,
  tcpConnect,
} from './support/gateway-topology.js';

/**
 * Portal mode end to end: `firezone-gateway TOKEN --api-url ws://…` in the gateway namespace of
 * the lab joins the development portal (served by this test process on a Unix socket, forwarded
 * to 127.0.0.1 inside the gateway namespace), receives `init` and flows, and an unmodified
 * wireguard-go client, configured with the keys of the flow, reaches the resources. Until the
 * ICE layer lands the client dials the gateway's tunnel port directly.
 */
const canRun = rootAvailable('the portal gateway tests') && gatewayLabCommandsAvailable();

const IDS = {
  site: '5f1c2a43-0d4e-4f59-9c7e-3b3f1e2d9a10',
  lab: '1844956a-9aca-4bf4-903b-27c7ebf18666',
  other: '410c6258-f8fd-43fe-a8e8-7b6e788c80a6',
  alice: '8e370367-64b2-4e27-83e2-27ce03bcce23',
  relay: '41529b7d-f3e1-4b26-b01d-e34919d76e1b',
};
const TOKEN = 'e2e-gateway-token';

function policy(clientPublicKey: string) {
  return parsePortalPolicy({
    accountSlug: 'e2e',
    sites: [{ id: IDS.site, name: 'lab', gatewayTokens: [TOKEN] }],
    resources: [
      {
        id: IDS.lab,
        siteId: IDS.site,
        type: 'cidr',
        name: 'lab',
        address: '172.20.1.0/24',
        filters: [
          { protocol: 'tcp', port_range_start: HTTP_PORT, port_range_end: HTTP_PORT },
          { protocol: 'icmp' },
        ],
      },
      { id: IDS.other, siteId: IDS.site, type: 'cidr', name: 'other', address: '172.20.2.0/24', filters: [] },
    ],
    clients: [
      {
        id: IDS.alice,
        token: 'alice-token',
        publicKey: clientPublicKey,
        ipv4: ADDR.clientTunnel,
        ipv6: ADDR.clientTunnel6,
        resources: [IDS.lab, IDS.other],
      },
    ],
    // Not dialled until the ICE layer lands; the gateway requires one to accept flows.
    relays: [{ id: IDS.relay, addr: '127.0.0.1:3478', secret: 'e2e-relay-secret' }],
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe.runIf(canRun)('portal gateway (firezone-gateway TOKEN --api-url)', () => {
  let lab: GatewayLab | undefined;
  let portal: DevPortal;
  let forward: NetnsForward | undefined;
  let ours: OurGateway;
  let socketDir: string;
  let socketPath: string;
  let apiUrl: string;
  let labFlow: Flow;

  const inits = () => ours.logs().filter((l) => l.msg === 'Applied init');
  const joinedGateway = () => portal.gateways().find((g) => g.joined);

  beforeAll(async () => {
    lab = await GatewayLab.create();
    socketDir = mkdtempSync(join(tmpdir(), 'fz-portal-'));
    socketPath = join(socketDir, 'portal.sock');
    portal = await startDevPortal(policy(lab.clientPublicKey), { path: socketPath });
    forward = await forwardIntoNetns(lab.gateway, socketPath);
    apiUrl = `ws://127.0.0.1:${forward.port}`;
    ours = await lab.startOursPortal(apiUrl, TOKEN);
    labFlow = await portal.authorizeFlow(IDS.alice, IDS.lab);
    await portal.authorizeFlow(IDS.alice, IDS.other);
    await lab.startClientTunnel({
      publicKey: labFlow.gatewayPublicKey,
      presharedKey: labFlow.presharedKey,
      port: TUNNEL_PORT,
      gatewayTunnel: labFlow.gatewayIpv4,
      gatewayTunnel6: labFlow.gatewayIpv6,
    });
    await lab.waitForPath(ADDR.lab);
  });

  afterAll(async () => {
    await forward?.stop();
    await portal?.close();
    if (lab) {
      try {
        await lab.stop();
      } finally {
        lab.destroy();
      }
    }
    rmSync(socketDir, { recursive: true, force: true });
  });

  it('joins the portal and logs the init it applied', () => {
    const lines = ours.logs();
    expect(lines.find((l) => l.msg === 'Joined the gateway channel')).toBeDefined();
    const init = inits()[0]!;
    expect(init).toMatchObject({ first: true, relays: 1, ipv4: labFlow.gatewayIpv4, account: 'e2e' });
    expect(lines.find((l) => l.msg === 'TUN device configured')).toMatchObject({ ipv4: labFlow.gatewayIpv4 });
    // The portal saw our key and a connlib User-Agent.
    const gw = joinedGateway()!;
    expect(gw.publicKey).toBe(ours.publicKey);
    expect(gw.userAgent).toMatch(/ connlib\/1\.4\.\d+/);
    // The token never reaches the log.
    expect(JSON.stringify(lines)).not.toContain(TOKEN);
  });

  it('forwards the authorized flows: HTTP to lab, and to other', async () => {
    expect(await httpGet(lab!.client, `http://${ADDR.lab}/`)).toEqual({
      status: 200,
      body: httpBody(ADDR.lab),
    });
    expect(await httpGet(lab!.client, `http://${ADDR.other}/`)).toEqual({
      status: 200,
      body: httpBody(ADDR.other),
    });
    // The lab's filter allows TCP 80 and ICMP only.
    expect(await tcpConnect(lab!.client, ADDR.lab, 22)).toBe('EHOSTUNREACH');
  });

  it('reconnects after the portal drops the socket; the re-init revokes what it no longer lists', async () => {
    const before = inits().length;
    expect(portal.revokeFlow(IDS.alice, IDS.other)).toBe(true);
    expect(portal.faults.dropSockets()).toBe(1);
    await eventually(() => inits().length > before, 'the re-init');
    expect(inits().at(-1)).toMatchObject({ first: false, revokedResources: 1, revokedClients: 0 });
    // ICMP administratively prohibited: a hard error for a connecting socket.
    expect(await tcpConnect(lab!.client, ADDR.other, HTTP_PORT)).toBe('EHOSTUNREACH');
    expect(await httpGet(lab!.client, `http://${ADDR.lab}/`)).toEqual({
      status: 200,
      body: httpBody(ADDR.lab),
    });
  });

  it('keeps forwarding while the portal is unreachable for 2 minutes, then rejoins', async () => {
    const pinger = new Pinger(lab!.client, ADDR.lab, 1);
    try {
      await pinger.replyAfter(Date.now(), 5_000);
      const gone = Date.now();
      await forward!.stop();
      portal.faults.dropSockets();
      await sleep(120_000);
      const during = pinger.replies.filter((t) => t > gone);
      // One ping a second for two minutes: every one answered (a few in flight at the edges).
      expect(during.length).toBeGreaterThanOrEqual(115);
      const gaps = during.slice(1).map((t, i) => t - during[i]!);
      expect(Math.max(...gaps)).toBeLessThan(2_500);
      const hiccups = ours.logs().filter((l) => l.msg === 'Portal connection lost; reconnecting');
      expect(hiccups.length).toBeGreaterThan(5);
      // The portal comes back on the same address: the gateway rejoins within its backoff (≤ 60 s).
      const before = inits().length;
      forward = await forwardIntoNetns(lab!.gateway, socketPath, forward!.port);
      await eventually(() => inits().length > before, 'the rejoin', 90_000);
      await pinger.replyAfter(Date.now(), 5_000);
    } finally {
      await pinger.stop();
    }
  });

  it('a restarted portal that lost its flows revokes the client entirely', async () => {
    await portal.close();
    portal = await startDevPortal(policy(lab!.clientPublicKey), { path: socketPath });
    const before = inits().length;
    await eventually(() => inits().length > before, 'the init of the new portal', 90_000);
    expect(inits().at(-1)).toMatchObject({ authorizations: 0, revokedClients: 1 });
    await eventually(
      () => ours.logs().some((l) => l.msg === 'Client removed' && l.client === IDS.alice),
      'the client removal',
    );
    expect((await httpGet(lab!.client, `http://${ADDR.lab}/`, 2_000)).error).toBeDefined();
  });

  it('leaves the portal on SIGTERM with a WebSocket close (1000) and exits 0', async () => {
    const gw = joinedGateway()!;
    const closed = new Promise<number>((resolve) =>
      portal.events.on('gateway.disconnect', (info, { code }) => {
        if (info.id === gw.id) resolve(code);
      }),
    );
    ours.run.child.kill('SIGTERM');
    expect((await ours.run.exit).code).toBe(0);
    expect(await closed).toBe(1000);
  });
});

describe.runIf(rootAvailable('the portal rejection test'))('portal gateway: a refused token', () => {
  it('exits 1 with the HTTP status and body in the log', async () => {
    const ns = Netns.create('gwp');
    const dir = mkdtempSync(join(tmpdir(), 'fz-portal-'));
    const path = join(dir, 'portal.sock');
    const portal = await startDevPortal(policy('DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0='), { path });
    const fwd = await forwardIntoNetns(ns, path);
    try {
      const r = startGateway(
        [
          'wrong-token',
          '--api-url',
          `ws://127.0.0.1:${fwd.port}`,
          '--firezone-id',
          'e2e-401',
          '--health-check-addr',
          '127.0.0.1:0',
        ],
        { ns },
      );
      const { code } = await r.exit;
      expect(code).toBe(1);
      const m = await waitForLog(r, /"msg":"The portal refused the connection"/);
      const line = JSON.parse(r.stderr.split('\n').find((l) => l.includes(m[0]))!) as Record<string, unknown>;
      expect(line.status).toBe(401);
      expect(String(line.body)).not.toBe('');
      expect(r.stderr).not.toContain('wrong-token');
    } finally {
      await fwd.stop();
      await portal.close();
      ns.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
