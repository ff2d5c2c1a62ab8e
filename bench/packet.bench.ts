/**
 * Per-packet costs of the IP layer: parse, NAT-style rewrite with incremental (RFC 1624) versus
 * full checksum recompute, and ICMP unreachable construction.
 *
 *   npm run bench            (all benchmarks)
 *   npx tsx bench/packet.bench.ts
 */
import { buildUnreachable, MAX_ICMP_ERROR_BYTES } from '../src/wire/ip/icmp.js';
import { IpPacket, recomputeChecksums } from '../src/wire/ip/packet.js';
import { buildPacket, v4, v6 } from '../test/support/packet-builder.js';
import { type BenchResult, consume, measure, report } from './harness.js';

const CLIENT4 = v4(100, 64, 0, 5);
const PROXY4 = v4(100, 96, 0, 9);
const REAL4 = v4(172, 20, 1, 9);
const CLIENT6 = v6(0xfd00, 0x2021, 0x1111, 0, 0, 0, 9, 0x1c0d);
const PROXY6 = v6(0xfd00, 0x2021, 0x1111, 0x8000, 0, 0, 0, 8);
const REAL6 = v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99);

const packets = {
  'tcp4-1280': buildPacket({
    src: CLIENT4,
    dst: PROXY4,
    l4: { kind: 'tcp', srcPort: 40000, dstPort: 443, payload: new Uint8Array(1240) },
  }),
  'udp4-64': buildPacket({
    src: CLIENT4,
    dst: PROXY4,
    l4: { kind: 'udp', srcPort: 40000, dstPort: 53, payload: new Uint8Array(36) },
  }),
  'tcp6-1280': buildPacket({
    src: CLIENT6,
    dst: PROXY6,
    l4: { kind: 'tcp', srcPort: 40000, dstPort: 443, payload: new Uint8Array(1220) },
  }),
};

const results: BenchResult[] = [];
const view = new IpPacket();

for (const [name, bytes] of Object.entries(packets)) {
  results.push(
    measure(`parse ${name}`, () => {
      view.load(bytes);
      consume(view.protocol);
    }),
  );
}

// NAT round trip as the DNS-resource NAT does it: outbound translateDestination, then inbound
// translateSource back to the proxy, so the packet is unchanged after each iteration.
for (const [name, bytes] of Object.entries(packets)) {
  const v = name.includes('6') ? { real: REAL6, proxy: PROXY6 } : { real: REAL4, proxy: PROXY4 };
  view.load(bytes);
  results.push(
    measure(`nat incremental ${name}`, () => {
      view.translateDestination(v.real, 40001);
      view.translateSource(v.proxy, 40000);
      consume(view.buf[view.off + 10]!);
    }),
  );
  results.push(
    measure(`nat full-recompute ${name}`, () => {
      view.buf.set(v.real, view.dstOffset);
      view.buf[view.l4Offset] = 40001 >> 8;
      view.buf[view.l4Offset + 1] = 40001 & 0xff;
      recomputeChecksums(view);
      view.buf.set(v.proxy, view.srcOffset);
      view.buf[view.l4Offset + 2] = 40000 >> 8;
      view.buf[view.l4Offset + 3] = 40000 & 0xff;
      recomputeChecksums(view);
      consume(view.buf[view.off + 10]!);
    }),
  );
}

const out = new Uint8Array(MAX_ICMP_ERROR_BYTES);
for (const name of ['tcp4-1280', 'tcp6-1280'] as const) {
  view.load(packets[name]);
  results.push(
    measure(`icmp-unreachable ${name}`, () => consume(buildUnreachable(view, 'prohibited', out) as number)),
  );
}

const ns = (n: string) => results.find((r) => r.name === n)!.nsPerOp;
const speedup = ns('nat full-recompute tcp4-1280') / ns('nat incremental tcp4-1280');
report(
  'packet',
  results,
  `packet: parse ${ns('parse tcp4-1280')} ns (v4) / ${ns('parse tcp6-1280')} ns (v6); NAT round trip 1280 B ` +
    `incremental ${ns('nat incremental tcp4-1280')} ns vs full recompute ${ns('nat full-recompute tcp4-1280')} ns ` +
    `(${speedup.toFixed(1)}x); ICMP unreachable ${ns('icmp-unreachable tcp4-1280')} ns (v4) / ${ns('icmp-unreachable tcp6-1280')} ns (v6)`,
);
