import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseResolvConf } from '../../../../src/wire/dns/resolv-conf.js';
import { formatIp } from '../../../../src/wire/ip/address.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';

const servers = (text: string) => parseResolvConf(text).nameservers.map((ip) => formatIp(ip));

describe('parseResolvConf', () => {
  it('reads a systemd-resolved style file', () => {
    const text = [
      '# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).',
      '# Do not edit.',
      '',
      'nameserver 10.0.0.2',
      'nameserver 2001:4860:4860::8888',
      'search corp.example.com example.com',
      'options edns0 trust-ad',
      '',
    ].join('\n');
    expect(parseResolvConf(text)).toEqual({
      nameservers: [
        new Uint8Array([10, 0, 0, 2]),
        new Uint8Array([0x20, 0x01, 0x48, 0x60, 0x48, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0x88, 0x88]),
      ],
      skipped: [],
    });
  });

  it('reads the loopback fixture used by the e2e tests', () => {
    expect(servers('# Test daemons resolve through loopback only\nnameserver 127.0.0.1\n')).toEqual([
      '127.0.0.1',
    ]);
  });

  it('tolerates tabs, surrounding spaces, CRLF and trailing comments and tokens', () => {
    const text =
      '  nameserver\t192.0.2.1   # primary\r\n\tnameserver 192.0.2.2;secondary\r\nnameserver 192.0.2.3 extra\r\n';
    expect(servers(text)).toEqual(['192.0.2.1', '192.0.2.2', '192.0.2.3']);
  });

  it('ignores comment lines in either style and commented-out servers', () => {
    expect(servers('#nameserver 192.0.2.1\n; nameserver 192.0.2.2\n  # nameserver 192.0.2.3\n')).toEqual([]);
  });

  it('collapses duplicates, keeping the first position', () => {
    const text =
      'nameserver 192.0.2.2\nnameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver ::1\nnameserver 0::1\n';
    expect(servers(text)).toEqual(['192.0.2.2', '192.0.2.1', '::1']);
  });

  it('ignores other directives, including look-alikes', () => {
    const text =
      'domain example.com\nsearch a b\noptions ndots:2\nsortlist 10.0.0.0\nnameservers 192.0.2.9\nNAMESERVER 192.0.2.8\n';
    expect(parseResolvConf(text)).toEqual({ nameservers: [], skipped: [] });
  });

  it('skips zone ids, bad addresses and empty nameserver lines with the line and a reason', () => {
    const text = [
      'nameserver fe80::1%eth0',
      'nameserver 192.0.2.1',
      'nameserver 192.0.2.256',
      '  nameserver   # nothing',
      'nameserver dns.example.com',
      'nameserver 010.0.0.1',
    ].join('\n');
    const r = parseResolvConf(text);
    expect(r.nameservers.map((ip) => formatIp(ip))).toEqual(['192.0.2.1']);
    expect(r.skipped.map((s) => [s.line, s.text])).toEqual([
      [1, 'nameserver fe80::1%eth0'],
      [3, 'nameserver 192.0.2.256'],
      [4, 'nameserver   # nothing'],
      [5, 'nameserver dns.example.com'],
      [6, 'nameserver 010.0.0.1'],
    ]);
    expect(r.skipped[0]!.reason).toMatch(/zone/);
    expect(r.skipped[2]!.reason).toMatch(/without an address/);
    expect(r.skipped[3]!.reason).toMatch(/not an IPv4 or IPv6 address: dns\.example\.com/);
  });

  it('reads an empty file as no servers', () => {
    expect(parseResolvConf('')).toEqual({ nameservers: [], skipped: [] });
  });

  it('never throws, and every server is a 4- or 16-byte address listed once', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.ipV4().map((ip) => `nameserver ${ip}`),
      fc.ipV6().map((ip) => ` nameserver\t${ip} # x`),
      fc.string({ maxLength: 40 }).map((s) => `nameserver ${s}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), fc.constantFrom('\n', '\r\n', '\r'), (lines, eol) => {
        const r = parseResolvConf(lines.join(eol));
        const keys = r.nameservers.map((ip) => {
          expect([4, 16]).toContain(ip.length);
          return formatIp(ip);
        });
        expect(new Set(keys).size).toBe(keys.length);
        for (const s of r.skipped) expect(s.line).toBeGreaterThanOrEqual(1);
      }),
      { numRuns: Math.min(PROPERTY_RUNS, 20_000) },
    );
  });

  it('finds every generated server line', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.ipV4(), fc.ipV6()), { maxLength: 8 }), (ips) => {
        const r = parseResolvConf(ips.map((ip) => `nameserver ${ip}`).join('\n'));
        expect(r.skipped).toEqual([]);
        const want = [
          ...new Set(ips.map((ip) => formatIp(parseResolvConf(`nameserver ${ip}`).nameservers[0]!))),
        ];
        expect(r.nameservers.map((ip) => formatIp(ip))).toEqual(want);
      }),
      { numRuns: Math.min(PROPERTY_RUNS, 20_000) },
    );
  });
});
