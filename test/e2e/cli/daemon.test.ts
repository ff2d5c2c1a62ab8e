import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SHUTDOWN_GRACE_MS } from '../../../src/cli/main.js';
import {
  NOBODY,
  nobodyApp,
  removeNobodyApp,
  startGateway,
  waitForLog,
} from '../../support/gateway-process.js';
import { Netns } from '../../support/netns.js';
import { hasCommand, rootAvailable } from '../../support/privileges.js';

/**
 * The daemon's process contract with a real TUN device, each run in a namespace of its own:
 * `tun-firezone` and the tunnel sockets exist while it runs and go away with it.
 */
const HEALTH = ['--health-check-addr', '127.0.0.1:0'];
/** No portal listens there: the session keeps retrying in the background, which is all these tests need. */
const NO_PORTAL = ['--api-url', 'ws://127.0.0.1:9'];
let ns: Netns | undefined;

afterEach(() => {
  ns?.destroy();
  ns = undefined;
});
afterAll(() => removeNobodyApp());

function linkExists(n: Netns, name: string): boolean {
  return n.ip('-o', 'link', 'show').includes(`: ${name}:`);
}

describe.runIf(rootAvailable('the daemon process tests'))('firezone-gateway daemon', () => {
  it('creates tun-firezone (MTU 1280) and binds the tunnel UDP port 52625 for IPv4 and IPv6', async () => {
    ns = Netns.create('gwd');
    const r = startGateway(['tok', ...NO_PORTAL, ...HEALTH], { ns, env: { FIREZONE_ID: 'gw-test' } });
    await waitForLog(r, /Health check listening/);
    const link = JSON.parse(ns.ip('-j', 'link', 'show', 'tun-firezone'))[0];
    expect(link.mtu).toBe(1280);
    const udp = ns.exec('ss', ['-H', '-u', '-l', '-n']);
    expect(udp).toMatch(/0\.0\.0\.0:52625/);
    expect(udp).toMatch(/\[::\]:52625|\*:52625/);
    r.child.kill('SIGTERM');
    expect((await r.exit).code).toBe(0);
  });

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'serves /healthz, then on %s exits 0 within the grace period and removes the interface',
    async (sig) => {
      ns = Netns.create('gwd');
      const r = startGateway(['tok', ...NO_PORTAL, ...HEALTH], { ns, env: { FIREZONE_ID: 'gw-test' } });
      const m = await waitForLog(r, /"addr":"127\.0\.0\.1:(\d+)","msg":"Health check listening"/);
      const status = ns.exec(process.execPath, [
        '-e',
        `fetch('http://127.0.0.1:${m[1]}/healthz').then((r) => console.log(r.status))`,
      ]);
      expect(status.trim()).toBe('200');
      const sent = Date.now();
      r.child.kill(sig);
      const { code, at } = await r.exit;
      expect(code).toBe(0);
      expect(at - sent).toBeLessThan(SHUTDOWN_GRACE_MS);
      expect(r.stderr).toMatch(/"msg":"Goodbye!"/);
      expect(linkExists(ns, 'tun-firezone')).toBe(false);
      for (const line of r.stderr.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    },
  );

  it('leaves no interface behind when killed with SIGKILL', async () => {
    ns = Netns.create('gwd');
    const r = startGateway(['tok', ...NO_PORTAL, ...HEALTH], { ns, env: { FIREZONE_ID: 'gw-test' } });
    await waitForLog(r, /TUN device created/);
    expect(linkExists(ns, 'tun-firezone')).toBe(true);
    r.child.kill('SIGKILL');
    await r.exit;
    for (let i = 0; i < 50 && linkExists(ns, 'tun-firezone'); i++)
      await new Promise((res) => setTimeout(res, 20));
    expect(linkExists(ns, 'tun-firezone')).toBe(false);
  });

  it('runs with a libuv threadpool large enough for its readiness waits', async () => {
    ns = Netns.create('gwd');
    const r = startGateway(['tok', ...NO_PORTAL, ...HEALTH], { ns, env: { FIREZONE_ID: 'gw-test' } });
    await waitForLog(r, /Health check listening/);
    expect(r.stderr).toMatch(/"threadpool":"16"/);
    r.child.kill('SIGTERM');
    await r.exit;
  });

  it('exits 1 with a clear message when the TUN device cannot be created', async () => {
    ns = Netns.create('gwd');
    // Another kind of interface already holds the name.
    ns.ip('link', 'add', 'tun-firezone', 'type', 'veth', 'peer', 'name', 'tfz-peer');
    const r = startGateway(['tok', ...NO_PORTAL, ...HEALTH], { ns, env: { FIREZONE_ID: 'gw-test' } });
    expect((await r.exit).code).toBe(1);
    expect(r.stderr).toMatch(/GW_ERR_TUN_OPEN/);
  });

  it('starts in standalone mode with a policy file and no token, logging its public key', async () => {
    ns = Netns.create('gwd');
    const dir = mkdtempSync(join(tmpdir(), 'fz-gw-'));
    const cfg = join(dir, 'gateway.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        privateKeyFile: join(dir, 'gateway.key'),
        interface: { ipv4: '100.64.0.1' },
        resources: [],
        peers: [],
      }),
    );
    const r = startGateway(['--config', cfg, ...HEALTH], { ns });
    const m = await waitForLog(r, /"publicKey":"([A-Za-z0-9+/]{43}=)".*"msg":"Standalone gateway ready"/);
    expect(m[1]).toBeDefined();
    const addrs = JSON.parse(ns.ip('-j', 'addr', 'show', 'tun-firezone'))[0].addr_info.map(
      (a: { local: string }) => a.local,
    );
    expect(addrs).toContain('100.64.0.1');
    r.child.kill('SIGTERM');
    expect((await r.exit).code).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a bad policy file with exit 1 and a message naming the field', async () => {
    ns = Netns.create('gwd');
    const dir = mkdtempSync(join(tmpdir(), 'fz-gw-'));
    const cfg = join(dir, 'gateway.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        privateKeyFile: join(dir, 'k'),
        interface: { ipv4: '100.64.0.300' },
        resources: [],
        peers: [],
      }),
    );
    const r = startGateway(['--config', cfg, ...HEALTH], { ns });
    expect((await r.exit).code).toBe(1);
    expect(r.stderr).toMatch(/interface\.ipv4/);
    rmSync(dir, { recursive: true, force: true });
  });

  describe.runIf(hasCommand('setpriv'))('as an unprivileged user', () => {
    it('starts with CAP_NET_ADMIN as an ambient capability, as the systemd unit grants it', async () => {
      ns = Netns.create('gwd');
      const r = startGateway(['tok', ...NO_PORTAL, ...HEALTH], {
        ns,
        setpriv: [...NOBODY, '--inh-caps=+net_admin', '--ambient-caps=+net_admin'],
        app: nobodyApp(),
        env: { FIREZONE_ID: 'gw-cap' },
      });
      await waitForLog(r, /Health check listening/);
      expect(linkExists(ns, 'tun-firezone')).toBe(true);
      r.child.kill('SIGTERM');
      expect((await r.exit).code).toBe(0);
    });

    it('skips the check with --no-check, and then fails on the TUN device as the reference does', async () => {
      ns = Netns.create('gwd');
      const r = startGateway(['tok', '--no-check', ...HEALTH], {
        ns,
        setpriv: NOBODY,
        app: nobodyApp(),
        env: { FIREZONE_ID: 'gw-nocheck' },
      });
      expect((await r.exit).code).toBe(1);
      expect(r.stderr).not.toContain('needs to be executed as');
      expect(r.stderr).toMatch(/GW_ERR_TUN_OPEN/);
    });
  });
});
