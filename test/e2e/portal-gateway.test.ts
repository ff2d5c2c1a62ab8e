import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePortalPolicy } from '../../src/dev/portal/policy.js';
import { type DevPortal, startDevPortal } from '../../src/dev/portal/server.js';
import { TUNNEL_PORT } from '../../src/io/tunnel-sockets.js';
import {
  ATTR_PRIORITY,
  ATTR_USERNAME,
  CLASS_REQUEST,
  METHOD_BINDING,
} from '../../src/wire/stun/constants.js';
import { StunBuilder, shortTermKey } from '../../src/wire/stun/message.js';
import { type Coturn, requireCoturn, startCoturn } from '../support/coturn.js';
import { startGateway, waitForLog } from '../support/gateway-process.js';
import { Netns } from '../support/netns.js';
import { forwardIntoNetns, type NetnsForward } from '../support/netns-forward.js';
import { hasCommand, rootAvailable } from '../support/privileges.js';
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
import {
  addRelayNetwork,
  blockDirectUdp,
  blockedDatagrams,
  RELAY_ADDRS,
  SimClientProcess,
  unblockDirectUdp,
} from './support/ice-lab.js';

/**
 * Portal mode end to end: `firezone-gateway TOKEN --api-url ws://…` in the gateway namespace of
 * the lab joins the development portal (served by this test process on a Unix socket, forwarded
 * to 127.0.0.1 inside the gateway and client namespaces), allocates on two coturn relays, and the
 * simulated Firezone client (`src/dev/client`, its own TUN device in the client namespace) asks
 * the portal for flows and connects with ICE and WireGuard: directly first, then, with direct UDP
 * blocked by nftables, through a relay, and through the other relay when its relay dies.
 */
const canRun =
  rootAvailable('the portal gateway tests') &&
  gatewayLabCommandsAvailable() &&
  requireCoturn() &&
  (hasCommand('nft') || failInCi('nft (nftables) is missing; .ci/run installs it'));

function failInCi(message: string): boolean {
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`skipping the portal gateway tests: ${message}`);
  return false;
}

const IDS = {
  site: '5f1c2a43-0d4e-4f59-9c7e-3b3f1e2d9a10',
  lab: '1844956a-9aca-4bf4-903b-27c7ebf18666',
  other: '410c6258-f8fd-43fe-a8e8-7b6e788c80a6',
  alice: '8e370367-64b2-4e27-83e2-27ce03bcce23',
  relays: ['41529b7d-f3e1-4b26-b01d-e34919d76e1b', '9b1b2f38-4a1c-4a67-9d38-0f6a4c7e2b11'],
};
const TOKEN = 'e2e-gateway-token';
const CLIENT_TOKEN = 'alice-token';
const RELAY_SECRET = 'e2e-relay-secret';

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
        token: CLIENT_TOKEN,
        publicKey: clientPublicKey,
        ipv4: ADDR.clientTunnel,
        ipv6: ADDR.clientTunnel6,
        resources: [IDS.lab, IDS.other],
      },
    ],
    relays: RELAY_ADDRS.map((addr, i) => ({
      id: IDS.relays[i]!,
      addr: `${addr}:3478`,
      secret: RELAY_SECRET,
    })),
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
  let relayNs: Netns | undefined;
  const coturns: (Coturn | undefined)[] = [];
  let portal: DevPortal;
  let forward: NetnsForward | undefined;
  let clientForward: NetnsForward | undefined;
  let ours: OurGateway;
  let client: SimClientProcess | undefined;
  let socketDir: string;
  let socketPath: string;
  let apiUrl: string;

  const inits = () => ours.logs().filter((l) => l.msg === 'Applied init');
  const joinedGateway = () => portal.gateways().find((g) => g.joined);
  const selections = () => ours.logs().filter((l) => l.msg === 'ICE path selected');
  const metric = async (reason: string) => ours.dropped(reason);

  beforeAll(async () => {
    lab = await GatewayLab.create();
    relayNs = Netns.create('gwt');
    addRelayNetwork(lab, relayNs);
    for (const [i, addr] of RELAY_ADDRS.entries()) {
      coturns.push(
        await startCoturn({
          listenIp: addr,
          secret: RELAY_SECRET,
          netns: relayNs.name,
          minPort: 50_000 + i * 1_000,
          maxPort: 50_999 + i * 1_000,
          tag: `relay${i}`,
        }),
      );
    }
    socketDir = mkdtempSync(join(tmpdir(), 'fz-portal-'));
    socketPath = join(socketDir, 'portal.sock');
    portal = await startDevPortal(policy(lab.clientPublicKey), { path: socketPath });
    forward = await forwardIntoNetns(lab.gateway, socketPath);
    clientForward = await forwardIntoNetns(lab.client, socketPath);
    apiUrl = `ws://127.0.0.1:${forward.port}`;
    ours = await lab.startOursPortal(apiUrl, TOKEN);
    await eventually(
      () => ours.logs().filter((l) => l.msg === 'Relay allocation ready').length === 2,
      'both relay allocations',
    );
    client = SimClientProcess.start(
      lab.client,
      `ws://127.0.0.1:${clientForward.port}`,
      CLIENT_TOKEN,
      lab.clientPrivateKeyPath,
    );
    await client.waitFor((l) => l.event === 'session' && l.established === true, 'the WireGuard session');
    try {
      await lab.waitForPath(ADDR.lab);
    } catch (e) {
      console.log(
        'path diagnostics:',
        JSON.stringify(client.lines),
        client.stderr,
        lab.client.exec('ip', ['route', 'show', 'table', 'all']),
        lab.client.exec('ip', ['rule']),
        await ours.metrics(),
        JSON.stringify(ours.logs().slice(-30)),
      );
      throw e;
    }
  }, 60_000);

  afterAll(async () => {
    await client?.stop();
    await forward?.stop();
    await clientForward?.stop();
    await portal?.close();
    for (const c of coturns) await c?.stop();
    if (lab) {
      try {
        await lab.stop();
      } finally {
        lab.destroy();
      }
    }
    relayNs?.destroy();
    rmSync(socketDir, { recursive: true, force: true });
  });

  it('joins the portal, logs the init it applied, and allocates on both coturn relays', () => {
    const lines = ours.logs();
    expect(lines.find((l) => l.msg === 'Joined the gateway channel')).toBeDefined();
    const gw = joinedGateway()!;
    const init = inits()[0]!;
    expect(init).toMatchObject({ first: true, relays: 2, ipv4: gw.ipv4, account: 'e2e' });
    expect(lines.find((l) => l.msg === 'TUN device configured')).toMatchObject({ ipv4: gw.ipv4 });
    // The portal saw our key and a connlib User-Agent.
    expect(gw.publicKey).toBe(ours.publicKey);
    expect(gw.userAgent).toMatch(/ connlib\/1\.4\.\d+/);
    // Each relay gave us a relayed address in its own port range.
    const ready = lines.filter((l) => l.msg === 'Relay allocation ready');
    expect(ready.map((l) => (l.relayed as string[])[0]).sort()).toEqual([
      expect.stringMatching(/^10\.10\.9\.2:50\d{3}$/),
      expect.stringMatching(/^10\.10\.9\.3:51\d{3}$/),
    ]);
    // The token never reaches the log.
    expect(JSON.stringify(lines)).not.toContain(TOKEN);
  });

  it('(a) direct path: ICE selects the host pair; ping and HTTP reach the resources', async () => {
    expect(selections().at(-1)).toMatchObject({
      client: IDS.alice,
      relay: null,
      remote: expect.stringMatching(/^10\.10\.0\.2:/),
    });
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

  it('(e) bad STUN on the tunnel port is dropped and counted, never thrown', async () => {
    const authorize = portal
      .frames()
      .find((f) => f.direction === 'out' && f.frame?.event === 'authorize_flow')!;
    const payload = authorize.frame!.payload as {
      gateway_ice_credentials: { username: string; password: string };
      client_ice_credentials: { username: string };
    };
    const ufrags = `${payload.gateway_ice_credentials.username}:${payload.client_ice_credentials.username}`;
    const tx = () => globalThis.crypto.getRandomValues(new Uint8Array(12));
    const check = (key: Uint8Array, extra?: number) => {
      const b = new StunBuilder(METHOD_BINDING, CLASS_REQUEST, tx())
        .addText(ATTR_USERNAME, ufrags)
        .addU32(ATTR_PRIORITY, 1_853_824_767);
      if (extra !== undefined) b.add(extra, new Uint8Array(4));
      return b.integrity(key).build();
    };
    const good = shortTermKey(payload.gateway_ice_credentials.password);
    const valid = check(good);
    const truncated = valid.slice(0, valid.length - 8);
    const badAttribute = Uint8Array.from(valid);
    badAttribute[22] = 0xff; // the first attribute's length now overruns the message
    const datagrams = [
      truncated,
      badAttribute,
      check(shortTermKey('not-the-password-at-all')),
      check(good, 0x7f01), // an unknown comprehension-required attribute
    ];
    const before = {
      invalid: await metric('stun.invalid'),
      refused: await metric('ice.refused'),
      unknown: await metric('stun.unknown-attribute'),
    };
    const script = `
      const s = require('node:dgram').createSocket('udp4');
      const ds = ${JSON.stringify(datagrams.map((d) => Buffer.from(d).toString('base64')))};
      let n = 0;
      for (const d of ds) s.send(Buffer.from(d, 'base64'), ${TUNNEL_PORT}, '${ADDR.gatewayUnderlay}', () => { if (++n === ds.length) s.close(); });
    `;
    lab!.client.exec(process.execPath, ['-e', script]);
    await eventually(
      async () => (await metric('stun.unknown-attribute')) > before.unknown,
      'the drop counters',
    );
    expect(await metric('stun.invalid')).toBeGreaterThan(before.invalid);
    expect(await metric('ice.refused')).toBeGreaterThan(before.refused);
    // Still serving.
    expect(ours.run.child.exitCode).toBeNull();
    expect(await httpGet(lab!.client, `http://${ADDR.lab}/`)).toEqual({
      status: 200,
      body: httpBody(ADDR.lab),
    });
  });

  it('(b) relay only: with direct UDP blocked, traffic moves to a coturn channel', async () => {
    const pinger = new Pinger(lab!.client, ADDR.lab, 0.2);
    try {
      await pinger.replyAfter(Date.now(), 5_000);
      const blockedAt = Date.now();
      blockDirectUdp(lab!);
      await eventually(
        () => selections().some((l) => l.relay !== null && l.relay !== undefined),
        'a relayed path',
        45_000,
      );
      const resumed = await pinger.replyAfter(Date.now(), 30_000);
      console.log(`relay-only: traffic resumed ${resumed - blockedAt} ms after the block`);
      expect(await httpGet(lab!.client, `http://${ADDR.lab}/`)).toEqual({
        status: 200,
        body: httpBody(ADDR.lab),
      });
      // The block really was in the way, and the relays carried the traffic.
      expect(blockedDatagrams(lab!)).toBeGreaterThan(0);
      expect(selections().at(-1)!.relay).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      await pinger.stop();
    }
  });

  it('(c) relay loss: stopping the coturn in use moves the connection to the other relay', async () => {
    const used = String(selections().at(-1)!.relay);
    const index = IDS.relays.indexOf(used);
    expect(index).toBeGreaterThanOrEqual(0);
    const pinger = new Pinger(lab!.client, ADDR.lab, 0.2);
    try {
      await pinger.replyAfter(Date.now(), 5_000);
      const stoppedAt = Date.now();
      await coturns[index]!.stop();
      coturns[index] = undefined;
      try {
        await eventually(
          () => selections().some((l) => l.relay === IDS.relays[1 - index]),
          'a path through the other relay',
          75_000,
        );
      } catch (e) {
        console.log(
          'relay loss diagnostics:',
          used,
          JSON.stringify(client!.lines.slice(-20)),
          JSON.stringify(
            ours
              .logs()
              .filter((l) => /Relay|ICE|Client/.test(String(l.msg)))
              .slice(-30),
          ),
          await ours.metrics(),
        );
        throw e;
      }
      const resumed = await pinger.replyAfter(Date.now(), 30_000);
      const last = pinger.replies.filter((t) => t < resumed && t >= stoppedAt - 1_000).at(-1) ?? stoppedAt;
      console.log(
        `relay loss: longest gap ${resumed - last} ms; resumed ${resumed - stoppedAt} ms after the relay stopped`,
      );
      // The client may move before the gateway notices: the gateway learns of a dead relay from its
      // keep-alive (every 25 s, 8 s to answer), so wait for that rather than race it.
      await eventually(
        () => ours.logs().some((l) => l.msg === 'Relay freed' || l.msg === 'Relay request failed'),
        'the gateway noticing the stopped relay',
        45_000,
      );
      expect(await httpGet(lab!.client, `http://${ADDR.lab}/`)).toEqual({
        status: 200,
        body: httpBody(ADDR.lab),
      });
    } finally {
      await pinger.stop();
      unblockDirectUdp(lab!);
    }
  }, 120_000);

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
