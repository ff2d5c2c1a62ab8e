import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatIp } from '../../../../src/wire/ip/address.js';
import { parseIcmpError } from '../../../../src/wire/ip/icmp.js';
import { IpPacket } from '../../../../src/wire/ip/packet.js';
import { allChecksumsValid } from '../../../support/checksum-oracle.js';
import { readPcap } from '../../../support/pcap.js';

/** Real traffic between network namespaces; see test/fixtures/ip/capture.sh. */
const captured = readPcap(
  fileURLToPath(new URL('../../../fixtures/ip/namespace-traffic.pcap', import.meta.url)),
);

function isFragment(ip: Uint8Array): boolean {
  if (ip[0]! >> 4 === 4) return (((ip[6]! << 8) | ip[7]!) & 0x3fff) !== 0;
  return ip[6] === 44;
}

describe('packets captured from real traffic', () => {
  it('holds the traffic the capture script generates', () => {
    expect(captured.length).toBeGreaterThan(50);
  });

  it('parses every whole packet, with fields matching the bytes, and rejects every fragment', () => {
    const kinds = new Set<string>();
    for (const { index, ip } of captured) {
      const r = IpPacket.parse(ip);
      if (isFragment(ip)) {
        expect(r.ok ? 'accepted' : r.error.code, `packet ${index}`).toBe('ip.fragment');
        kinds.add(`v${ip[0]! >> 4} fragment`);
        continue;
      }
      if (!r.ok) throw new Error(`packet ${index} rejected: ${r.error.code}`);
      const p = r.value;
      expect(p.length, `packet ${index}`).toBe(ip.length);
      expect(allChecksumsValid(ip), `packet ${index}`).toBe(true);
      kinds.add(
        `v${p.version} proto ${p.protocol}${p.isIcmpError ? ' error' : ''}${p.version === 4 && ip[0] !== 0x45 ? ' options' : ''}${p.ecn ? ' ecn' : ''}`,
      );
    }
    // The capture covers both families, TCP, UDP, ICMP echo and errors, IPv4 options and ECN.
    for (const k of [
      'v4 proto 1',
      'v4 proto 1 error',
      'v4 proto 1 options',
      'v4 proto 6',
      'v4 proto 6 ecn',
      'v4 proto 17',
      'v6 proto 58',
      'v6 proto 58 error',
      'v6 proto 6',
      'v6 proto 6 ecn',
      'v6 proto 17',
      'v4 fragment',
      'v6 fragment',
    ]) {
      expect(kinds, k).toContain(k);
    }
  });

  it('finds the packet each captured ICMP error quotes', () => {
    const seen: string[] = [];
    let errors = 0;
    for (const { ip } of captured) {
      const r = IpPacket.parse(ip);
      if (!r.ok) continue;
      const p = r.value;
      const key = (src: string, dst: string, sp: number, dp: number) => `${src} ${dst} ${sp} ${dp}`;
      if (p.isIcmpError) {
        const e = parseIcmpError(p);
        if (!e.ok) throw new Error(e.error.code);
        const q = e.value;
        const n = p.addressLength;
        const tuple = key(
          formatIp(p.buf, q.quotedSrcOffset, n),
          formatIp(p.buf, q.quotedDstOffset, n),
          q.quotedEchoId >= 0 ? q.quotedEchoId : q.quotedSrcPort,
          q.quotedEchoId >= 0 ? q.quotedEchoId : q.quotedDstPort,
        );
        expect(seen).toContain(tuple);
        errors++;
      } else {
        seen.push(
          key(
            formatIp(p.source()),
            formatIp(p.destination()),
            p.srcPort ?? p.echoId ?? -1,
            p.echoId ?? p.dstPort ?? -1,
          ),
        );
      }
    }
    expect(errors).toBeGreaterThanOrEqual(6);
  });

  it('keeps checksums valid when captured packets are NAT-translated', () => {
    let translated = 0;
    for (const { ip } of captured) {
      const copy = Uint8Array.from(ip);
      const r = IpPacket.parse(copy);
      if (!r.ok || !r.value.hasL4Id) continue;
      const p = r.value;
      const real = p.version === 4 ? new Uint8Array([198, 51, 100, 23]) : new Uint8Array(16).fill(0x2a);
      expect(p.translateDestination(real, 61000)).toBeUndefined();
      expect(p.translateSource(real, 1024)).toBeUndefined();
      p.applyOuterEcn(3);
      expect(allChecksumsValid(copy)).toBe(true);
      expect(IpPacket.parse(copy).ok).toBe(true);
      translated++;
    }
    expect(translated).toBeGreaterThan(30);
  });
});
