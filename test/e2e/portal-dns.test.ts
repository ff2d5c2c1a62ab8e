import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePortalPolicy } from '../../src/dev/portal/policy.js';
import { type DevPortal, startDevPortal } from '../../src/dev/portal/server.js';
import { type Coturn, requireCoturn, startCoturn } from '../support/coturn.js';
import { Netns, vethPair } from '../support/netns.js';
import { forwardIntoNetns, type NetnsForward } from '../support/netns-forward.js';
import { rootAvailable } from '../support/privileges.js';
import {
  type DigResult,
  type Dnsmasq,
  digIn,
  dnsLabCommandsAvailable,
  startDnsmasq,
  startUdpDelayRelay,
  type UdpDelayRelay,
} from './support/dns-lab.js';
import {
  ADDR,
  GatewayLab,
  gatewayLabCommandsAvailable,
  HTTP_PORT,
  httpBody,
  httpGet,
  type OurGateway,
  tcpConnect,
} from './support/gateway-topology.js';
import { addRelayNetwork, RELAY_ADDRS, SimClientProcess } from './support/ice-lab.js';

/**
 * DNS end to end (`spec/gateway-dataplane.md` §6–§7): the gateway in portal mode resolves through
 * dnsmasq, which runs in a namespace of its own behind the gateway namespace, next to a UDP delay
 * relay in front of the same dnsmasq (a slower second nameserver, listed first in the gateway's
 * resolv.conf). The sim client resolves `web.svc.test` with its own stub resolver (proxy IPs,
 * AssignedIps through the tunnel), and reaches the site through the proxy IPs; SRV and TXT go to
 * the gateway's DNS server on port 53535 through the tunnel.
 *
 *   client ── gateway ──veth── dns: 10.10.53.2 dnsmasq, 10.10.53.3 delay relay (+150 ms) → dnsmasq
 *                     └─veth── resource: 172.20.1.10, 172.20.2.10 (HTTP)
 */
const canRun =
  rootAvailable('the DNS tests') &&
  gatewayLabCommandsAvailable() &&
  requireCoturn() &&
  dnsLabCommandsAvailable('the portal DNS tests');

const IDS = {
  site: '5f1c2a43-0d4e-4f59-9c7e-3b3f1e2d9a10',
  svc: 'c0a8e1d2-5b6f-4e3a-9c7d-1e2f3a4b5c6d',
  alice: '8e370367-64b2-4e27-83e2-27ce03bcce23',
  relay: '41529b7d-f3e1-4b26-b01d-e34919d76e1b',
};
const TOKEN = 'e2e-dns-gateway-token';
const CLIENT_TOKEN = 'alice-dns-token';
const RELAY_SECRET = 'e2e-dns-relay-secret';
const DNS_GW = '10.10.53.1';
const FAST_NS = '10.10.53.2';
const SLOW_NS = '10.10.53.3';
/** dnsmasq's TTL: at the resolver's floor, so a change shows after 5 s. */
const TTL_S = 5;
const OLD_WEB = ADDR.lab;
const NEW_WEB = ADDR.other;

function policy(clientPublicKey: string) {
  return parsePortalPolicy({
    accountSlug: 'e2e',
    sites: [{ id: IDS.site, name: 'lab', gatewayTokens: [TOKEN] }],
    resources: [
      {
        id: IDS.svc,
        siteId: IDS.site,
        type: 'dns',
        name: 'services',
        address: '*.svc.test',
        filters: [
          { protocol: 'tcp', port_range_start: HTTP_PORT, port_range_end: HTTP_PORT },
          { protocol: 'icmp' },
        ],
      },
    ],
    clients: [
      {
        id: IDS.alice,
        token: CLIENT_TOKEN,
        publicKey: clientPublicKey,
        ipv4: ADDR.clientTunnel,
        ipv6: ADDR.clientTunnel6,
        resources: [IDS.svc],
      },
    ],
    relays: [{ id: IDS.relay, addr: `${RELAY_ADDRS[0]}:3478`, secret: RELAY_SECRET }],
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(
  f: () => Promise<T | undefined> | T | undefined,
  what: string,
  ms: number,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(200);
  }
}

/**
 * A long-lived HTTP flow from the client namespace: one kept-alive connection to `host`, a GET
 * every 300 ms, one JSON line per answer (`{ port, body }`, port = our local port).
 */
const KEEPALIVE_FLOW = `
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const tick = () => {
  const req = http.get({ host: process.argv[1], port: 80, path: '/', agent }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d) => (body += d));
    res.on('end', () => { console.log(JSON.stringify({ port: req.socket.localPort, body })); setTimeout(tick, 300); });
  });
  req.on('error', (e) => { console.log(JSON.stringify({ error: e.code || e.message })); setTimeout(tick, 300); });
};
tick();
`;

describe.runIf(canRun)('portal DNS: nameserver selection, the DNS server on 53535, DNS-resource NAT', () => {
  let lab: GatewayLab | undefined;
  let relayNs: Netns | undefined;
  let dnsNs: Netns | undefined;
  let coturn: Coturn | undefined;
  let dnsmasq: Dnsmasq | undefined;
  let slow: UdpDelayRelay | undefined;
  let portal: DevPortal;
  let forward: NetnsForward | undefined;
  let clientForward: NetnsForward | undefined;
  let ours: OurGateway;
  let client: SimClientProcess | undefined;
  let flow: ChildProcess | undefined;
  let dir: string;

  const stub = (args: string[]) => digIn(lab!.client, ['@127.0.0.1', ...args]);
  const gatewayDns = (args: string[], server: string = ADDR.gatewayTunnel) =>
    digIn(lab!.client, [`@${server}`, '-p', '53535', ...args], { timeS: 8 });
  const nameserverLogs = () => ours.logs().filter((l) => l.msg === 'Nameserver selected');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fz-dns-'));
    lab = await GatewayLab.create();
    relayNs = Netns.create('gwt');
    addRelayNetwork(lab, relayNs);
    coturn = await startCoturn({
      listenIp: RELAY_ADDRS[0],
      secret: RELAY_SECRET,
      netns: relayNs.name,
      minPort: 52_000,
      maxPort: 52_999,
      tag: 'dnsrelay',
    });
    dnsNs = Netns.create('gwd');
    vethPair(lab.gateway, [`${DNS_GW}/24`], dnsNs, [`${FAST_NS}/24`, `${SLOW_NS}/24`]);
    dnsmasq = await startDnsmasq(dnsNs, {
      listen: FAST_NS,
      ttlS: TTL_S,
      hosts: { 'web.svc.test': [OLD_WEB] },
      srv: [{ name: '_http._tcp.web.svc.test', target: 'web.svc.test', port: HTTP_PORT }],
      txt: [{ name: 'web.svc.test', text: 'v=web1' }],
      probe: true,
      localDomains: ['svc.test'],
    });
    slow = await startUdpDelayRelay(dnsNs, { listen: SLOW_NS, upstream: FAST_NS, delayMs: 150 });
    const resolvConf = join(dir, 'resolv.conf');
    // The slow one first: order must not matter, speed must.
    writeFileSync(resolvConf, `nameserver ${SLOW_NS}\nnameserver ${FAST_NS}\n`);
    const socketPath = join(dir, 'portal.sock');
    portal = await startDevPortal(policy(lab.clientPublicKey), { path: socketPath });
    forward = await forwardIntoNetns(lab.gateway, socketPath);
    clientForward = await forwardIntoNetns(lab.client, socketPath);
    ours = await lab.startOursPortal(`ws://127.0.0.1:${forward.port}`, TOKEN, 'e2e-dns-gateway', [
      '--resolv-conf',
      resolvConf,
    ]);
    await eventually(() => nameserverLogs().length > 0 || undefined, 'a nameserver selection', 15_000);
    await eventually(
      () =>
        ours.logs().some((l) => l.msg === 'DNS server listening' && l.address === ADDR.gatewayTunnel) ||
        undefined,
      'the DNS server on the tunnel address',
      15_000,
    );
    client = SimClientProcess.start(
      lab.client,
      `ws://127.0.0.1:${clientForward.port}`,
      CLIENT_TOKEN,
      lab.clientPrivateKeyPath,
      ['--dns-listen', '127.0.0.1:53'],
    );
    await client.waitFor((l) => l.event === 'joined', 'the client joining');
  }, 90_000);

  afterAll(async () => {
    flow?.kill('SIGKILL');
    await client?.stop();
    await forward?.stop();
    await clientForward?.stop();
    await portal?.close();
    await slow?.stop();
    await dnsmasq?.stop();
    await coturn?.stop();
    if (lab) {
      try {
        await lab.stop();
      } finally {
        lab.destroy();
      }
    }
    relayNs?.destroy();
    dnsNs?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  let proxies: string[] = [];

  it('selects the faster nameserver although the slow one is listed first', () => {
    const first = nameserverLogs()[0]!;
    expect(first.nameserver).toBe(FAST_NS);
    expect(first.ranking).toEqual([FAST_NS, SLOW_NS]);
  });

  it('resolves web.svc.test to proxy IPs, and HTTP through them reaches the real address', async () => {
    const a = await stub(['web.svc.test', 'A']);
    expect(a.status).toBe('NOERROR');
    expect(a.answers).toHaveLength(4);
    for (const ip of a.answers) expect(ip).toMatch(/^100\.(9[6-9]|1[01][0-9]|12[0-7])\./);
    proxies = a.answers;
    const status = await client!.waitFor(
      (l) => l.event === 'domain' && l.domain === 'web.svc.test',
      'DomainStatus for web.svc.test',
    );
    expect(status.status).toBe('Active');
    expect(await httpGet(lab!.client, `http://${proxies[0]}/`)).toEqual({
      status: 200,
      body: httpBody(OLD_WEB),
    });
    const aaaa = await stub(['web.svc.test', 'AAAA']);
    expect(aaaa.answers).toHaveLength(4);
    expect(aaaa.answers.every((ip) => ip.startsWith('fd00:2021:1111:8'))).toBe(true);
    const setUp = ours.logs().filter((l) => l.msg === 'DNS resource NAT set up');
    expect(setUp.at(-1)).toMatchObject({ domain: 'web.svc.test', addresses: [OLD_WEB], status: 'Active' });
  });

  it('answers a port outside the filter with ICMP prohibited', async () => {
    const before = await ours.dropped('filter.denied');
    expect(await tcpConnect(lab!.client, proxies[3]!, 8080)).toBe('EHOSTUNREACH');
    expect(await ours.dropped('filter.denied')).toBeGreaterThan(before);
  });

  it('answers SRV and TXT for the resource name on 53535, over UDP and TCP, IPv4 and IPv6', async () => {
    const srv = await gatewayDns(['_http._tcp.web.svc.test', 'SRV']);
    expect(srv.status).toBe('NOERROR');
    expect(srv.answers).toEqual([`0 0 ${HTTP_PORT} web.svc.test.`]);
    const txt = await gatewayDns(['+tcp', 'web.svc.test', 'TXT']);
    expect(txt.status).toBe('NOERROR');
    expect(txt.answers).toEqual(['"v=web1"']);
    const v6 = await gatewayDns(['web.svc.test', 'TXT'], ADDR.gatewayTunnel6);
    expect(v6.answers).toEqual(['"v=web1"']);
    // Through the client's stub too, which forwards queries for resource names (`*.svc.test`
    // covers web.svc.test, not _http._tcp.web.svc.test) to the gateway, as a Firezone client does.
    expect((await stub(['web.svc.test', 'TXT'])).answers).toEqual(['"v=web1"']);
    // The queries reached the fast nameserver, never the slow one (only probes went there).
    expect(dnsmasq!.queries()).toContain('_http._tcp.web.svc.test');
    expect(slow!.queries().filter((q) => q !== 'firezone.dev')).toEqual([]);
  });

  it('after the TTL a new flow goes to the new address while an open flow keeps the old one', async () => {
    flow = lab!.client.spawn(process.execPath, ['-e', KEEPALIVE_FLOW, proxies[0]!]);
    const lines: { port?: number; body?: string; error?: string }[] = [];
    let buf = '';
    flow.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        lines.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
    });
    await eventually(() => lines.length >= 2 || undefined, 'the open flow answering', 10_000);
    const port = lines[0]!.port;
    await dnsmasq!.setHosts({ 'web.svc.test': [NEW_WEB] });
    const changedAt = Date.now();
    // Within the TTL the gateway still maps the name onto the old address.
    await stub(['web.svc.test', 'A']);
    expect(await httpGet(lab!.client, `http://${proxies[1]}/`)).toEqual({
      status: 200,
      body: httpBody(OLD_WEB),
    });
    await sleep(Math.max(0, TTL_S * 1000 + 1_000 - (Date.now() - changedAt)));
    // A new query of the name makes the client announce it again: the gateway looks it up anew.
    const seen = lines.length;
    const again = await stub(['web.svc.test', 'A']);
    expect(again.answers).toEqual(proxies);
    await eventually(
      () =>
        ours
          .logs()
          .some(
            (l) =>
              l.msg === 'DNS resource NAT set up' &&
              JSON.stringify(l.addresses) === JSON.stringify([NEW_WEB]),
          ) || undefined,
      'the gateway mapping the name onto the new address',
      10_000,
    );
    // A proxy without open flows goes to the new address...
    expect(await httpGet(lab!.client, `http://${proxies[2]}/`)).toEqual({
      status: 200,
      body: httpBody(NEW_WEB),
    });
    // ...while the open flow (proxy 0) and proxy 1, whose connection may still be open, keep the old one.
    await eventually(() => lines.length >= seen + 3 || undefined, 'the open flow going on', 10_000);
    const after = lines.slice(seen);
    expect(after.every((l) => l.body === httpBody(OLD_WEB) && l.port === port)).toBe(true);
    flow.kill('SIGKILL');
    flow = undefined;
  });

  it('answers SERVFAIL within 5 s when dnsmasq stops, and answers again within one re-evaluation period after it starts', async () => {
    await dnsmasq!.stop();
    const servfails: DigResult[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await gatewayDns(['_http._tcp.web.svc.test', 'SRV']);
      servfails.push(r);
      await sleep(1_500);
    }
    for (const r of servfails) {
      expect(r.status).toBe('SERVFAIL');
      expect(r.ms).toBeLessThan(5_000);
    }
    await eventually(
      () => ours.logs().some((l) => l.msg === 'No nameserver answers; DNS queries get SERVFAIL') || undefined,
      'the gateway noticing that no nameserver answers',
      15_000,
    );
    const quick = await gatewayDns(['web.svc.test', 'TXT']);
    expect(quick.status).toBe('SERVFAIL');
    expect(quick.ms).toBeLessThan(1_000);
    await dnsmasq!.start();
    const started = Date.now();
    const answered = await eventually(
      async () => {
        const r = await gatewayDns(['_http._tcp.web.svc.test', 'SRV']);
        return r.status === 'NOERROR' ? r : undefined;
      },
      'an answer after dnsmasq came back',
      75_000,
    );
    const took = Date.now() - started;
    console.log(
      `DNS: SERVFAIL in ${servfails.map((r) => r.ms).join('/')} ms; answered again ${took} ms after dnsmasq restarted`,
    );
    expect(answered.answers).toEqual([`0 0 ${HTTP_PORT} web.svc.test.`]);
    expect(took).toBeLessThanOrEqual(60_000 + 5_000);
    expect(nameserverLogs().at(-1)!.nameserver).toBe(FAST_NS);
  }, 120_000);
});
