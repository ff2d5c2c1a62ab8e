import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Netns } from '../support/netns.js';
import { rootAvailable } from '../support/privileges.js';
import {
  type Dnsmasq,
  digIn,
  dnsLabCommandsAvailable,
  startDnsmasq,
  startUdpDelayRelay,
  type UdpDelayRelay,
} from './support/dns-lab.js';

/**
 * Self-test of the DNS lab (`support/dns-lab.ts`): dnsmasq answers from its hosts file and
 * records, re-reads the hosts file on `setHosts`, can be stopped and started again, and the delay
 * relay slows a lookup down by its delay each way.
 */
const canRun = rootAvailable('the DNS lab self-test') && dnsLabCommandsAvailable('the DNS lab self-test');

const SERVER = '127.0.0.1';
const RELAY = '127.0.0.2';
const DELAY_MS = 150;

describe.runIf(canRun)('DNS lab: dnsmasq, a delay relay and dig in a namespace', () => {
  let ns: Netns | undefined;
  let dnsmasq: Dnsmasq | undefined;
  let relay: UdpDelayRelay | undefined;
  const dig = (...args: string[]) => digIn(ns!, [`@${SERVER}`, ...args]);

  beforeAll(async () => {
    ns = Netns.create('dns');
    dnsmasq = await startDnsmasq(ns, {
      listen: SERVER,
      ttlS: 5,
      hosts: { 'web.svc.test': ['10.1.2.3', 'fd00::5'], 'api.svc.test': ['10.1.2.4'] },
      srv: [{ name: '_http._tcp.svc.test', target: 'web.svc.test', port: 8080, priority: 1, weight: 2 }],
      txt: [{ name: 'web.svc.test', text: 'hello, world' }],
      probe: true,
      localDomains: ['svc.test'],
    });
  });

  afterAll(async () => {
    await relay?.stop();
    await dnsmasq?.stop();
    ns?.destroy();
  });

  it('answers A, AAAA, SRV and TXT from its configuration, with the TTL asked for', async () => {
    const a = await dig('web.svc.test', 'A');
    expect(a.status).toBe('NOERROR');
    expect(a.answers).toEqual(['10.1.2.3']);
    expect(a.output).toMatch(/web\.svc\.test\.\s+5\s+IN\s+A/);
    expect((await dig('web.svc.test', 'AAAA')).answers).toEqual(['fd00::5']);
    const srv = await dig('_http._tcp.svc.test', 'SRV');
    expect(srv.status).toBe('NOERROR');
    expect(srv.answers).toEqual(['1 2 8080 web.svc.test.']);
    const txt = await dig('web.svc.test', 'TXT');
    expect(txt.answers).toEqual(['"hello, world"']);
    expect((await dig('firezone.dev', 'A')).answers).toEqual(['192.0.2.1']);
  });

  it('says NXDOMAIN for unknown names in its local domain and REFUSED elsewhere', async () => {
    expect((await dig('nope.svc.test', 'A')).status).toBe('NXDOMAIN');
    expect((await dig('example.com', 'A')).status).toBe('REFUSED');
  });

  it('logs the queries, without its own readiness probes', () => {
    const q = dnsmasq!.queries();
    expect(q).toContain('web.svc.test');
    expect(q).toContain('_http._tcp.svc.test');
    expect(q).not.toContain('version.bind');
    expect(dnsmasq!.queryLog().find((e) => e.name === '_http._tcp.svc.test')).toMatchObject({
      type: 'SRV',
      from: SERVER,
    });
  });

  it('re-reads its hosts file on setHosts', async () => {
    await dnsmasq!.setHosts({ 'web.svc.test': ['10.1.2.30', '10.1.2.31'], 'api.svc.test': ['10.1.2.4'] });
    expect((await dig('web.svc.test', 'A')).answers.sort()).toEqual(['10.1.2.30', '10.1.2.31']);
    expect((await dig('web.svc.test', 'AAAA')).answers).toEqual([]);
    expect((await dig('firezone.dev', 'A')).answers).toEqual(['192.0.2.1']);
  });

  it('fails fast while stopped and answers again once started', async () => {
    await dnsmasq!.stop();
    const down = await dig('web.svc.test', 'A');
    expect(down.status).toBe('UNREACHABLE');
    expect(down.ms).toBeLessThan(1_500);
    await dnsmasq!.start();
    const up = await dig('web.svc.test', 'A');
    expect(up.status).toBe('NOERROR');
    expect(up.answers.sort()).toEqual(['10.1.2.30', '10.1.2.31']);
  });

  it('the delay relay adds its delay each way', async () => {
    const direct = await dig('api.svc.test', 'A');
    relay = await startUdpDelayRelay(ns!, { listen: RELAY, upstream: SERVER, delayMs: DELAY_MS });
    const slow = await digIn(ns!, [`@${RELAY}`, 'api.svc.test', 'A']);
    expect(slow.status).toBe('NOERROR');
    expect(slow.answers).toEqual(['10.1.2.4']);
    expect(slow.ms).toBeGreaterThanOrEqual(2 * DELAY_MS);
    expect(slow.ms).toBeGreaterThanOrEqual(direct.ms + DELAY_MS);
    expect(relay.queries()).toEqual(['api.svc.test']);
    // Two clients at once: each reply reaches its own querier.
    const [x, y] = await Promise.all([
      digIn(ns!, [`@${RELAY}`, 'web.svc.test', 'A']),
      digIn(ns!, [`@${RELAY}`, '_http._tcp.svc.test', 'SRV']),
    ]);
    expect(x.answers.sort()).toEqual(['10.1.2.30', '10.1.2.31']);
    expect(y.answers).toEqual(['1 2 8080 web.svc.test.']);
    expect(relay.queries()).toHaveLength(3);
  });
});
