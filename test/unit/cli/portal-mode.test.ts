import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TestClock } from '../../../src/actors/clock.js';
import {
  hostUserAgent,
  type PortalMode,
  readOsRelease,
  startPortalMode,
} from '../../../src/cli/portal-mode.js';
import { parsePortalPolicy } from '../../../src/dev/portal/policy.js';
import { type DevPortal, startDevPortal } from '../../../src/dev/portal/server.js';
import { MemoryTun } from '../../../src/io/memory-tun.js';
import { MemoryUdpNetwork } from '../../../src/io/memory-udp.js';
import { SimDnsNetwork } from '../../support/sim-dns.js';
import { GATEWAY_TOKEN, IDS, policyJson } from '../dev/portal/harness.js';

/**
 * Portal mode against the development portal: a real WebSocket to a real (loopback) server, with
 * the gateway's actor system on a simulated clock. The clock only moves while the session waits
 * out a backoff, never while a connection attempt is in flight, so 16 minutes of failures take
 * well under a second.
 */
interface Lines {
  level: string;
  msg: string;
  obj: Record<string, unknown>;
}

const running: { mode: PortalMode; portal: DevPortal; stop: () => void }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    r.stop();
    await r.mode.gateway.stop();
    await r.portal.close();
  }
});

async function setup(token = GATEWAY_TOKEN) {
  const clock = new TestClock();
  const dns = new SimDnsNetwork(clock);
  dns.add('10.53.0.1', { delayMs: 0 }).zone.set('app.corp.example', { a: ['172.20.7.7'], ttl: 60 });
  const portal = await startDevPortal(parsePortalPolicy(policyJson()), { now: () => clock.wallNow() });
  const lines: Lines[] = [];
  const log = (level: string) => (obj: object, msg: string) =>
    lines.push({ level, msg, obj: obj as Record<string, unknown> });
  const logger = { info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug') };
  const net = new MemoryUdpNetwork();
  const tun = new MemoryTun();
  const mode = startPortalMode({
    apiUrl: new URL(portal.url),
    token,
    gatewayId: 'gw-unit-test',
    name: 'unit-gw',
    clock,
    log: logger,
    gatewayLog: logger,
    tun,
    udp4: net.open({ family: 4, address: '10.10.0.1', port: 52625 }),
    udp6: undefined,
    jitter: () => 0.5,
    dns: { nameservers: ['10.53.0.1'], upstream: dns },
  });
  let signal!: (s: string) => void;
  const shutdown = new Promise<string>((r) => {
    signal = r;
  });
  const exit = mode.run(shutdown);
  running.push({ mode, portal, stop: () => signal('SIGTERM') });
  return { clock, portal, mode, tun, lines, exit, dns, stop: () => signal('SIGTERM') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (real time) until `cond` holds. */
async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

const sessionState = (mode: PortalMode) => JSON.stringify(mode.runtime.state);
const active = (mode: PortalMode) => mode.runtime.session.getSnapshot().status === 'active';

/**
 * Lets simulated time pass while the session is between attempts; waits in real time while an
 * attempt is in flight. Stops after `ms` of simulated time or when the session ends.
 */
async function runFor(s: Awaited<ReturnType<typeof setup>>, ms: number): Promise<void> {
  const end = s.clock.now() + ms;
  while (active(s.mode) && s.clock.now() < end) {
    const state = sessionState(s.mode);
    if (state === '"disconnected"' || state.includes('joined')) {
      if (!s.clock.advanceToNext()) break;
    } else await sleep(1);
  }
}

describe('portal mode against the dev portal', () => {
  it('joins, applies init (TUN addresses and routes), and leaves on a signal with exit 0', async () => {
    const s = await setup();
    await until(() => sessionState(s.mode).includes('joined'), 'the join');
    await until(() => s.lines.some((l) => l.msg === 'Applied init'), 'init');
    await s.mode.runtime.control.settled();
    expect(s.tun.configurations.at(-1)).toMatchObject({ routes: ['100.64.0.0/11', 'fd00:2021:1111::/107'] });
    const gw = s.portal.gateways()[0]!;
    expect(gw.joined).toBe(true);
    expect(s.lines.find((l) => l.msg === 'Applied init')!.obj).toMatchObject({ first: true, relays: 1 });
    s.stop();
    expect(await s.exit).toBe(0);
    await until(() => !s.portal.gateways()[0]!.connected, 'the portal to see the close');
  });

  it('HTTP 500 for 14 minutes, then the portal answers: joined, still running', async () => {
    const s = await setup();
    s.portal.faults.rejectUpgrades(500, 'internal server error');
    await runFor(s, 14 * 60_000);
    expect(active(s.mode)).toBe(true);
    const attempts = s.lines.filter((l) => l.msg === 'Portal connection lost; reconnecting').length;
    expect(attempts).toBeGreaterThan(15);
    s.portal.faults.clearRejectUpgrades();
    await runFor(s, 61_000);
    await until(() => sessionState(s.mode).includes('joined'), 'the join');
    expect(s.portal.gateways()[0]!.joined).toBe(true);
  });

  it('16 minutes of HTTP 500: gives up, and the process would exit 1 with the reason logged', async () => {
    const s = await setup();
    s.portal.faults.rejectUpgrades(500, 'internal server error');
    await runFor(s, 16 * 60_000);
    expect(await s.exit).toBe(1);
    const fatal = s.lines.find((l) => l.level === 'error')!;
    expect(fatal.msg).toBe('Could not reach the portal for too long; giving up');
    expect(fatal.obj.lastError).toBe('HTTP 500');
    expect(fatal.obj.elapsedMs as number).toBeGreaterThan(14 * 60_000);
    expect(fatal.obj.elapsedMs as number).toBeLessThanOrEqual(15 * 60_000);
  });

  it('a bad token (HTTP 401) ends the session at once: exit 1 with the status and body logged', async () => {
    const s = await setup('not-the-token');
    expect(await s.exit).toBe(1);
    const fatal = s.lines.find((l) => l.level === 'error')!;
    expect(fatal.msg).toBe('The portal refused the connection');
    expect(fatal.obj.status).toBe(401);
    expect(String(fatal.obj.body)).not.toBe('');
    // The token never reaches the log.
    expect(JSON.stringify(s.lines)).not.toContain('not-the-token');
  });

  it('the portal drops the socket: reconnects at once, re-joins, and gets a new init', async () => {
    const s = await setup();
    await until(() => s.lines.filter((l) => l.msg === 'Applied init').length === 1, 'init');
    expect(s.portal.faults.dropSockets()).toBe(1);
    await runFor(s, 1_000);
    await until(() => s.lines.filter((l) => l.msg === 'Applied init').length === 2, 'the second init');
    expect(s.lines.filter((l) => l.msg === 'Applied init')[1]!.obj.first).toBe(false);
  });

  it('a flow: authorize_flow is answered with flow_authorized and the client actor exists', async () => {
    const s = await setup();
    await until(() => s.lines.some((l) => l.msg === 'Applied init'), 'init');
    const flow = await s.portal.authorizeFlow(IDS.alice, IDS.cidr);
    expect(flow.kind).toBe('flow');
    expect(s.mode.gateway.supervisedClients()).toEqual([IDS.alice]);
    expect(s.mode.gateway.clientSnapshot(IDS.alice)!.context.ice).toEqual({
      local: flow.gatewayIce,
      remote: flow.clientIce,
    });
  });

  it('the legacy flow: a 1.3 client gets request_connection → connection_ready', async () => {
    const s = await setup();
    await until(() => s.lines.some((l) => l.msg === 'Applied init'), 'init');
    const flow = await s.portal.authorizeFlow(IDS.bob, IDS.cidr);
    expect(flow.kind).toBe('legacy');
    expect(s.mode.gateway.supervisedClients()).toEqual([IDS.bob]);
  });

  it('the legacy flow for a DNS resource resolves the name through the selected nameserver', async () => {
    const s = await setup();
    await until(() => s.lines.some((l) => l.msg === 'Applied init'), 'init');
    await until(() => s.mode.gateway.selectedNameserver() === '10.53.0.1', 'the nameserver selection');
    const flow = await s.portal.authorizeFlow(IDS.bob, IDS.dns, {
      domain: { name: 'app.corp.example', proxyIps: ['100.96.0.9'] },
    });
    expect(flow.kind).toBe('legacy');
    expect(s.dns.servers.get('10.53.0.1')!.queries).toEqual(
      expect.arrayContaining(['app.corp.example/A/udp', 'app.corp.example/AAAA/udp']),
    );
    expect(s.lines.some((l) => l.msg === 'Connection accepted (legacy)')).toBe(true);
    expect(s.mode.gateway.router.natAllowed(IDS.bob as never, IDS.dns as never, 'app.corp.example')).toBe(
      true,
    );
  });

  it('token_expired from the portal is fatal', async () => {
    const s = await setup();
    await until(() => sessionState(s.mode).includes('joined'), 'the join');
    s.portal.faults.disconnectTokenExpired(s.portal.gateways()[0]!.id);
    expect(await s.exit).toBe(1);
    expect(s.lines.find((l) => l.level === 'error')!.msg).toBe('The portal says the token expired');
  });
});

describe('the User-Agent (§1.2)', () => {
  it('names the distribution from /etc/os-release and carries connlib/<version>', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fz-osr-'));
    try {
      const path = join(dir, 'os-release');
      writeFileSync(path, 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n');
      expect(readOsRelease(path)).toEqual({ type: 'Debian', version: '12' });
      writeFileSync(path, "ID='ubuntu'\nVERSION_ID=22.04\n");
      expect(readOsRelease(path)).toEqual({ type: 'Ubuntu', version: '22.04' });
      writeFileSync(path, 'ID=arch\n');
      expect(readOsRelease(path)).toEqual({ type: 'Arch', version: 'unknown' });
      expect(readOsRelease(join(dir, 'missing')).type).toBe('Linux');
      expect(hostUserAgent({ type: 'Debian', version: '12' })).toMatch(
        /^Debian\/12 connlib\/1\.4\.\d+ \(.+; .+\)$/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
