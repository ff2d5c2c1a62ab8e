import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIp } from '../../../../src/wire/ip/address.js';
import { iceCandidateProblem } from '../../../../src/wire/portal/ice-candidate.js';
import { ipv4Arb, ipv6Arb, PROPERTY_RUNS } from '../../../support/arbitraries.js';

describe('ICE candidate strings', () => {
  it.each([
    'candidate:3f0a9c1e2b7d4a56 1 udp 1694498559 192.0.2.44 40123 typ srflx raddr 10.0.0.5 rport 40123',
    'candidate:7854631899965427361 1 udp 1694498559 172.28.0.100 47717 typ srflx',
    'candidate:7efffeff3a9c51d2e0b4 1 udp 2130706175 198.51.100.20 51820 typ host',
    'candidate:02ffffff5c8e1d0a 1 udp 50331391 203.0.113.7 61234 typ relay raddr 203.0.113.20 rport 51820',
    'candidate:1 1 UDP 2130706431 2001:db8::1 5000 typ host',
    'candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host ufrag hyik',
    'candidate:4 1 tcp 2128609279 192.168.1.100 9000 typ host tcptype passive',
    'candidate:a+b/c 256 udp 4294967295 0.0.0.0 0 typ prflx raddr :: rport 0 generation 0',
  ])('accepts %s', (c) => {
    expect(iceCandidateProblem(c)).toBeUndefined();
  });

  it.each([
    ['the a= prefix', 'a=candidate:1 1 udp 1 192.0.2.1 1 typ host', "'candidate:'"],
    ['no candidate: prefix', '1 1 udp 1 192.0.2.1 1 typ host', "'candidate:'"],
    ['too few tokens', 'candidate:1 1 udp 1 192.0.2.1 1 typ', 'at least 8'],
    ['a double space', 'candidate:1 1 udp 1  192.0.2.1 1 typ host', 'empty or non-printable'],
    ['a trailing newline', 'candidate:1 1 udp 1 192.0.2.1 1 typ host\n', 'empty or non-printable'],
    [
      'a foundation of 33 characters',
      `candidate:${'a'.repeat(33)} 1 udp 1 192.0.2.1 1 typ host`,
      'foundation',
    ],
    ['component 0', 'candidate:1 0 udp 1 192.0.2.1 1 typ host', 'component'],
    ['component 257', 'candidate:1 257 udp 1 192.0.2.1 1 typ host', 'component'],
    ['an unknown transport', 'candidate:1 1 sctp 1 192.0.2.1 1 typ host', 'transport'],
    ['a priority above 2^32-1', 'candidate:1 1 udp 4294967296 192.0.2.1 1 typ host', 'priority'],
    ['a negative priority', 'candidate:1 1 udp -1 192.0.2.1 1 typ host', 'priority'],
    ['a host name', 'candidate:1 1 udp 1 a1b2.local 1 typ host', 'address'],
    ['a bad IPv4 address', 'candidate:1 1 udp 1 192.0.2.256 1 typ host', 'address'],
    ['port 65536', 'candidate:1 1 udp 1 192.0.2.1 65536 typ host', 'port'],
    ['no typ keyword', 'candidate:1 1 udp 1 192.0.2.1 1 type host', "'typ'"],
    ['an unknown type', 'candidate:1 1 udp 1 192.0.2.1 1 typ stun', 'candidate type'],
    ['raddr without rport', 'candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr 10.0.0.1', 'together'],
    ['an attribute without value', 'candidate:1 1 udp 1 192.0.2.1 1 typ host ufrag', 'name-value pairs'],
    ['rport without raddr', 'candidate:1 1 udp 1 192.0.2.1 1 typ srflx rport 1', 'together'],
    ['a bad raddr', 'candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr x rport 1', 'raddr'],
    ['a bad rport', 'candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr 10.0.0.1 rport 99999', 'rport'],
    ['a bad tcptype', 'candidate:1 1 tcp 1 192.0.2.1 1 typ host tcptype both', 'tcptype'],
    ['a repeated attribute', 'candidate:1 1 udp 1 192.0.2.1 1 typ host ufrag a ufrag b', 'twice'],
  ])('refuses %s', (_name, c, hint) => {
    expect(iceCandidateProblem(c)).toContain(hint);
  });

  it('accepts every well-formed candidate', () => {
    const candidate = fc
      .record({
        foundation: fc.stringMatching(/^[A-Za-z0-9+/]{1,32}$/),
        component: fc.integer({ min: 1, max: 256 }),
        transport: fc.constantFrom('udp', 'tcp', 'UDP'),
        priority: fc.integer({ min: 0, max: 0xffff_ffff }),
        ip: fc.oneof(ipv4Arb, ipv6Arb).map((b) => formatIp(b)),
        port: fc.integer({ min: 0, max: 65535 }),
        type: fc.constantFrom('host', 'srflx', 'prflx', 'relay'),
        related: fc.option(
          fc.tuple(
            ipv4Arb.map((b) => formatIp(b)),
            fc.integer({ min: 0, max: 65535 }),
          ),
        ),
      })
      .map(
        (c) =>
          `candidate:${c.foundation} ${c.component} ${c.transport} ${c.priority} ${c.ip} ${c.port} typ ${c.type}` +
          (c.related ? ` raddr ${c.related[0]} rport ${c.related[1]}` : ''),
      );
    fc.assert(
      fc.property(candidate, (c) => iceCandidateProblem(c) === undefined),
      { numRuns: Math.min(PROPERTY_RUNS, 10_000) },
    );
  });

  it('never throws on any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const r = iceCandidateProblem(s);
        return r === undefined || typeof r === 'string';
      }),
      { numRuns: Math.min(PROPERTY_RUNS, 10_000) },
    );
  });
});
