import fc from 'fast-check';
import type { L4Spec, PacketSpec } from './packet-builder.js';

/** Property-test run count: 100k in CI (`CI=true`), fewer locally; `PROPERTY_RUNS` overrides. */
export const PROPERTY_RUNS = Number(
  process.env.PROPERTY_RUNS ?? (process.env.CI === 'true' ? 100_000 : 5_000),
);

export const ipv4Arb = fc.uint8Array({ minLength: 4, maxLength: 4 });
export const ipv6Arb = fc.uint8Array({ minLength: 16, maxLength: 16 });
const port = fc.integer({ min: 0, max: 0xffff });
const payload = (max: number) => fc.uint8Array({ maxLength: max });

const ICMP_ECHO_V4 = [0, 8];
const ICMP_ECHO_V6 = [128, 129];

function l4Arb(v6: boolean): fc.Arbitrary<L4Spec> {
  const icmpType = v6
    ? fc.oneof(fc.constantFrom(...ICMP_ECHO_V6, 1, 2, 3, 4, 133, 135), fc.integer({ min: 0, max: 255 }))
    : fc.oneof(fc.constantFrom(...ICMP_ECHO_V4, 3, 5, 11, 12), fc.integer({ min: 0, max: 255 }));
  return fc.oneof(
    fc.record({
      kind: fc.constant('tcp' as const),
      srcPort: port,
      dstPort: port,
      flags: fc.integer({ min: 0, max: 255 }),
      options: fc.integer({ min: 0, max: 10 }).map((n) => new Uint8Array(n * 4).fill(1)),
      payload: payload(300),
    }),
    fc.record({
      kind: fc.constant('udp' as const),
      srcPort: port,
      dstPort: port,
      payload: payload(300),
      zeroChecksum: v6 ? fc.constant(false) : fc.boolean(),
    }),
    fc
      .record({
        kind: fc.constant('icmp' as const),
        type: icmpType,
        code: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })),
        rest: fc.uint8Array({ minLength: 4, maxLength: 4 }),
        payload: payload(300),
      })
      // ICMPv4 timestamp messages must be exactly 20 bytes; give them that size.
      .map((s) =>
        !v6 && (s.type === 13 || s.type === 14) && s.code === 0 ? { ...s, payload: new Uint8Array(12) } : s,
      ),
    fc.record({
      kind: fc.constant('raw' as const),
      protocol: fc
        .integer({ min: 0, max: 255 })
        .filter((p) => ![0, 1, 6, 17, 43, 44, 51, 58, 60].includes(p)),
      payload: payload(300),
    }),
  );
}

const extBody = (words: number) => new Uint8Array(words * 8 + 6);

function ipv6ExtArb(): fc.Arbitrary<{ type: number; body: Uint8Array }[]> {
  const later = fc.oneof(
    fc.integer({ min: 0, max: 3 }).map((n) => ({ type: 60, body: extBody(n) })),
    fc.integer({ min: 0, max: 3 }).map((n) => ({ type: 43, body: extBody(n) })),
    // Atomic fragment: offset 0, M clear (RFC 6946).
    fc.constant({ type: 44, body: new Uint8Array([0, 0, 0, 0, 0, 1]) }),
  );
  return fc
    .tuple(fc.boolean(), fc.array(later, { maxLength: 2 }))
    .map(([hbh, rest]) => (hbh ? [{ type: 0, body: extBody(0) }, ...rest] : rest));
}

/** Any well-formed packet the parser must accept. */
export const packetSpecArb: fc.Arbitrary<PacketSpec> = fc.oneof(
  fc.record({
    src: ipv4Arb,
    dst: ipv4Arb,
    l4: l4Arb(false),
    ttl: fc.integer({ min: 0, max: 255 }),
    tos: fc.integer({ min: 0, max: 255 }),
    ipv4Options: fc.integer({ min: 0, max: 10 }).map((n) => new Uint8Array(n * 4).fill(1)),
    ipv4Flags: fc.constantFrom(0, 0x4000),
  }),
  fc.record({
    src: ipv6Arb,
    dst: ipv6Arb,
    l4: l4Arb(true),
    ttl: fc.integer({ min: 0, max: 255 }),
    tos: fc.integer({ min: 0, max: 255 }),
    ipv6Ext: ipv6ExtArb(),
  }),
);

export type Mutation =
  | { op: 'setSource' | 'setDestination'; addr: Uint8Array }
  | { op: 'setSrcPort' | 'setDstPort' | 'setEchoId'; value: number }
  | { op: 'translateDestination' | 'translateSource'; addr: Uint8Array; id: number }
  | { op: 'applyOuterEcn'; ecn: number };

const addrArb = fc.oneof(ipv4Arb, ipv6Arb);
export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constantFrom('setSource' as const, 'setDestination' as const), addr: addrArb }),
  fc.record({
    op: fc.constantFrom('setSrcPort' as const, 'setDstPort' as const, 'setEchoId' as const),
    value: port,
  }),
  fc.record({
    op: fc.constantFrom('translateDestination' as const, 'translateSource' as const),
    addr: addrArb,
    id: port,
  }),
  fc.record({ op: fc.constant('applyOuterEcn' as const), ecn: fc.integer({ min: 0, max: 3 }) }),
);
