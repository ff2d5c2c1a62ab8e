import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PortalPolicyError } from '../../../../src/dev/portal/errors.js';
import { loadPortalPolicy, parsePortalPolicy, parseRelaySpec } from '../../../../src/dev/portal/policy.js';
import { ALICE_PSK_BASE, IDS, policyJson } from './harness.js';

function problemsOf(json: unknown): string[] {
  try {
    parsePortalPolicy(json, 'p.json');
  } catch (e) {
    expect(e).toBeInstanceOf(PortalPolicyError);
    expect((e as PortalPolicyError).code).toBe('GW_ERR_CONFIG');
    return [...(e as PortalPolicyError).problems];
  }
  throw new Error('the policy was accepted');
}

type Json = Record<string, unknown> & {
  sites: Record<string, unknown>[];
  resources: Record<string, unknown>[];
  clients: Record<string, unknown>[];
  relays: Record<string, unknown>[];
};
const example = () => policyJson() as Json;

describe('the policy file', () => {
  it('parses the example with defaults, normalised addresses and a legacy flag from the version', () => {
    const p = parsePortalPolicy({
      ...example(),
      relays: [
        { id: IDS.relay.toUpperCase(), addr: ['[2001:DB8::7]:3478', '203.0.113.7:3478'], secret: 's' },
      ],
    });
    expect(p.accountSlug).toBe('acme');
    expect(p.relays).toEqual([
      { id: IDS.relay, addrs: ['203.0.113.7:3478', '[2001:db8::7]:3478'], secret: 's' },
    ]);
    const [alice, bob] = p.clients;
    expect(alice).toMatchObject({ version: '1.4.0', legacy: false, ipv4: '100.64.0.1' });
    expect(alice!.resources).toEqual([
      { id: IDS.cidr, expiresAt: undefined },
      { id: IDS.dns, expiresAt: 1_758_790_800 },
      { id: IDS.otherSite, expiresAt: undefined },
    ]);
    expect(Buffer.from(alice!.pskBase!).toString('base64')).toBe(ALICE_PSK_BASE);
    expect(bob).toMatchObject({
      version: '1.3.14',
      legacy: true,
      pskBase: undefined,
      ipv6: 'fd00:2021:1111::e:4b01',
    });
    expect(p.resources.find((r) => r.type === 'internet')).toEqual({
      id: IDS.internet,
      siteId: IDS.site,
      type: 'internet',
      name: 'Internet',
    });
  });

  it('needs only accountSlug and sites', () => {
    expect(parsePortalPolicy({ accountSlug: 'a', sites: [] })).toEqual({
      accountSlug: 'a',
      sites: [],
      resources: [],
      clients: [],
      relays: [],
    });
  });

  it('names the path and the value of each malformed field', () => {
    const j = example();
    j.sites[0]!.id = 'not-a-uuid';
    j.resources[0]!.address = '172.20.0.1/16';
    j.resources[1]!.filters = [{ protocol: 'tcp', port_range_start: 500, port_range_end: 400 }];
    j.clients[0]!.ipv4 = '100.100.0.1';
    j.clients[0]!.version = 'one';
    j.relays[0]!.addr = '2001:db8::7:3478';
    j.extra = true;
    const problems = problemsOf(j);
    expect(problems).toEqual(
      expect.arrayContaining([
        "p.json: sites[0].id: 'not-a-uuid' is not a UUID (8-4-4-4-12 hex digits)",
        "p.json: resources[0].address: '172.20.0.1/16' has host bits set: expected 172.20.0.0/16",
        'p.json: resources[1].filters[0]: port range 500-400 is empty: start exceeds end',
        "p.json: clients[0].ipv4: '100.100.0.1' is not in 100.64.0.0/11",
        "p.json: clients[0].version: 'one' is not a version such as '1.4.0' or '1.3.14'",
        "p.json: relays[0].addr: '2001:db8::7:3478' is not ip:port (IPv6 in brackets: [2001:db8::7]:3478)",
        'p.json: (top level): Unrecognized key: "extra"',
      ]),
    );
  });

  it('refuses a relay with two addresses of one family and a client older than 1.3', () => {
    const j = example();
    j.relays[0]!.addr = ['203.0.113.7:3478', '203.0.113.8:3478'];
    j.clients[1]!.version = '1.2.9';
    expect(problemsOf(j)).toEqual([
      "p.json: clients[1].version: '1.2.9': clients older than 1.3.0 cannot use a 1.4 gateway",
      'p.json: relays[0].addr: at most one IPv4 address per relay',
    ]);
  });

  it('reports duplicates and unknown references once the shape is right, never showing tokens', () => {
    const j = example();
    j.sites[1]!.gatewayTokens = ['client-token-alice'];
    j.clients[1]!.id = IDS.alice;
    j.clients[1]!.ipv4 = '100.64.0.1';
    j.resources[3]!.siteId = '11111111-1111-1111-1111-111111111111';
    j.clients[0]!.resources = [IDS.cidr, IDS.cidr, '22222222-2222-2222-2222-222222222222'];
    const problems = problemsOf(j);
    expect(problems).toEqual([
      `p.json: clients[1].id: '${IDS.alice}' is already used by clients[0].id`,
      "p.json: clients[1].ipv4: '100.64.0.1' is already used by clients[0].ipv4",
      'p.json: clients[0].token: the token (not shown) is already used by sites[1].gatewayTokens[0]',
      "p.json: resources[3].siteId: '11111111-1111-1111-1111-111111111111' is not the id of any site",
      `p.json: clients[0].resources[1]: '${IDS.cidr}' is listed twice`,
      "p.json: clients[0].resources[2]: '22222222-2222-2222-2222-222222222222' is not the id of any resource",
    ]);
    expect(problems.join('\n')).not.toContain('client-token-alice');
  });

  it('never echoes a malformed pskBase', () => {
    const j = example();
    j.clients[0]!.pskBase = 'c2VjcmV0LXNlY3JldA==';
    const problems = problemsOf(j);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^p\.json: clients\[0\]\.pskBase: the value \(not shown\)/);
    expect(problems[0]).not.toContain('c2VjcmV0');
  });

  it('loads a file and reports unreadable files and bad JSON as GW_ERR_CONFIG', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dev-portal-'));
    try {
      const good = join(dir, 'good.json');
      await writeFile(good, JSON.stringify(policyJson()));
      expect((await loadPortalPolicy(good)).sites).toHaveLength(2);
      const bad = join(dir, 'bad.json');
      await writeFile(bad, '{"accountSlug":');
      await expect(loadPortalPolicy(bad)).rejects.toMatchObject({
        code: 'GW_ERR_CONFIG',
        message: expect.stringContaining(`${bad}: not valid JSON`),
      });
      await expect(loadPortalPolicy(join(dir, 'missing.json'))).rejects.toMatchObject({
        code: 'GW_ERR_CONFIG',
        message: expect.stringContaining('cannot read the policy file'),
      });
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('validates relay definitions given at run time', () => {
    expect(parseRelaySpec({ id: IDS.relay, addr: '198.51.100.30:3478', secret: 's' })).toEqual({
      ok: true,
      value: { id: IDS.relay, addrs: ['198.51.100.30:3478'], secret: 's' },
    });
    expect(parseRelaySpec({ id: IDS.relay, addr: '198.51.100.30:0', secret: 's' })).toEqual({
      ok: false,
      problems: ["addr: '198.51.100.30:0': port 0 is not from 1 to 65535"],
    });
  });
});
