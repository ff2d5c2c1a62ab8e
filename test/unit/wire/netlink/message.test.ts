import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIp } from '../../../../src/wire/ip/address.js';
import {
  AF_INET,
  AF_INET6,
  NLM_F_ACK,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  RTM_NEWADDR,
} from '../../../../src/wire/netlink/constants.js';
import {
  HOST_LITTLE_ENDIAN,
  NetlinkMessageBuilder,
  parseAttributes,
  parseDoneMessage,
  parseErrorMessage,
  parseMessages,
} from '../../../../src/wire/netlink/message.js';
import {
  buildAddress,
  buildRoute,
  buildRule,
  buildSetLink,
  parseAddress,
  parseLink,
  parseRoute,
  parseRule,
} from '../../../../src/wire/netlink/rtnetlink.js';
import { ipv4Arb, ipv6Arb, PROPERTY_RUNS } from '../../../support/arbitraries.js';
import { hex } from './hex.js';

/**
 * Replies captured from Linux 6.18 (strace of iproute2 in a network namespace): an error with an
 * extended ack, a capped ack, one datagram of an address dump and the dump's end.
 */
const CAPTURED = {
  // `ip route add 100.64.0.1/11 dev lo table 0x2021fd00`: EINVAL, request echoed, NLMSGERR_ATTR_MSG.
  invalidPrefix: hex(`
    74000000 0200 0002 b768026b fc240000   # len 116, NLMSG_ERROR, ACK_TLVS
    eaffffff                               # error -22 (EINVAL)
    34000000 1800 0506 b768026b 00000000   # the request's header...
    020b00000003fd0100000000 080001006440000108000f0000fd2120 0800040001000000
    2b00 0100 496e76616c69642070726566697820666f7220676976656e20707265666978206c656e677468 00 00
  `),
  // `ip addr add 100.66.0.1/32 dev lo`: success, the echoed request cut to its header.
  ack: hex(`
    24000000 0200 0001 b768026b 03250000   # len 36, NLMSG_ERROR, CAPPED
    00000000 28000000 1400 0506 b768026b 00000000
  `),
  // `ip -4 addr show dev lo`: 127.0.0.1/8 and 100.66.0.1/32 in one datagram.
  addressDump: hex(`
    4c000000 1400 2200 b868026b 0a250000
    020880fe01000000 080001007f000001 080002007f000001 070003006c6f0000 0800080080000000
    14000600fffffffffffffffff5100400f5100400
    4c000000 1400 2200 b868026b 0a250000
    0220800001000000 0800010064420001 0800020064420001 070003006c6f0000 0800080080000000
    14000600fffffffffffffffff6100400f6100400
  `),
  done: hex(`14000000 0300 2200 b868026b 0a250000 00000000`),
};

describe.runIf(HOST_LITTLE_ENDIAN)('netlink framing', () => {
  it('reads an error reply with the kernel extended-ack message', () => {
    const msgs = parseMessages(CAPTURED.invalidPrefix);
    expect(msgs.ok).toBe(true);
    if (!msgs.ok) return;
    expect(msgs.value).toHaveLength(1);
    expect(parseErrorMessage(msgs.value[0]!)).toEqual({
      ok: true,
      value: { errno: 22, seq: 0x6b0268b7, detail: 'Invalid prefix for given prefix length' },
    });
  });

  it('reads a capped ack as errno 0 for the request sequence number', () => {
    const msgs = parseMessages(CAPTURED.ack);
    expect(msgs.ok && parseErrorMessage(msgs.value[0]!)).toEqual({
      ok: true,
      value: { errno: 0, seq: 0x6b0268b7 },
    });
  });

  it('splits a dump datagram into its messages and reads each address', () => {
    const msgs = parseMessages(CAPTURED.addressDump);
    expect(msgs.ok).toBe(true);
    if (!msgs.ok) return;
    expect(msgs.value.map((m) => [m.type, m.flags & NLM_F_MULTI, m.seq])).toEqual([
      [RTM_NEWADDR, NLM_F_MULTI, 0x6b0268b8],
      [RTM_NEWADDR, NLM_F_MULTI, 0x6b0268b8],
    ]);
    expect(msgs.value.map((m) => parseAddress(m))).toEqual([
      {
        ok: true,
        value: {
          family: 2,
          prefixLength: 8,
          flags: 0x80,
          scope: 254,
          ifindex: 1,
          address: parseIp('127.0.0.1'),
        },
      },
      {
        ok: true,
        value: {
          family: 2,
          prefixLength: 32,
          flags: 0x80,
          scope: 0,
          ifindex: 1,
          address: parseIp('100.66.0.1'),
        },
      },
    ]);
  });

  it('reads the end of a dump, with and without an error', () => {
    const done = parseMessages(CAPTURED.done);
    expect(done.ok && done.value[0]!.type).toBe(NLMSG_DONE);
    expect(done.ok && parseDoneMessage(done.value[0]!)).toEqual({
      ok: true,
      value: { errno: 0, seq: 0x6b0268b8 },
    });
    const failed = parseMessages(hex(`14000000 0300 0200 05000000 00000000 feffffff`));
    expect(failed.ok && parseDoneMessage(failed.value[0]!)).toEqual({
      ok: true,
      value: { errno: 2, seq: 5 },
    });
    const empty = parseMessages(hex(`10000000 0300 0200 05000000 00000000`));
    expect(empty.ok && parseDoneMessage(empty.value[0]!)).toEqual({ ok: true, value: { errno: 0, seq: 5 } });
  });

  it('accepts a last message whose alignment padding is missing', () => {
    const msgs = parseMessages(hex(`11000000 1000 0000 01000000 00000000 aa`));
    expect(msgs.ok && msgs.value[0]!.payload).toEqual(Uint8Array.of(0xaa));
  });

  it.each([
    ['a datagram shorter than a header', `0c000000 0200 0000 01000000`, 'netlink.truncated-header'],
    ['a length below the header size', `08000000 0200 0000 01000000 00000000`, 'netlink.bad-length'],
    ['a length beyond the datagram', `20000000 0200 0000 01000000 00000000`, 'netlink.bad-length'],
    [
      'trailing bytes after the last message',
      `10000000 0300 0000 01000000 00000000 0000`,
      'netlink.truncated-header',
    ],
  ])('rejects %s', (_what, bytes, code) => {
    expect(parseMessages(hex(bytes))).toMatchObject({ ok: false, error: { code } });
  });

  it('rejects error replies that are too short or echo more than they hold', () => {
    const msg = (flags: number, payload: string) => ({
      type: NLMSG_ERROR,
      flags,
      seq: 1,
      pid: 0,
      payload: hex(payload),
    });
    expect(parseErrorMessage(msg(0, 'eaffffff'))).toMatchObject({
      ok: false,
      error: { code: 'netlink.truncated-payload' },
    });
    expect(parseErrorMessage(msg(0x200, `eaffffff 40000000 1800 0500 01000000 00000000`))).toMatchObject({
      ok: false,
      error: { code: 'netlink.bad-length' },
    });
    expect(parseErrorMessage({ ...msg(0, ''), type: NLMSG_DONE })).toMatchObject({
      ok: false,
      error: { code: 'netlink.unexpected-type' },
    });
  });

  it('reads attributes and masks the NESTED and NET_BYTEORDER flag bits off their type', () => {
    expect(parseAttributes(hex(`0500 0380 aa 000000 0400 0240`), 0)).toEqual({
      ok: true,
      value: [
        { type: 3, value: Uint8Array.of(0xaa) },
        { type: 2, value: new Uint8Array(0) },
      ],
    });
    expect(parseAttributes(hex(`0300 0100`), 0)).toMatchObject({
      ok: false,
      error: { code: 'netlink.bad-attribute' },
    });
    expect(parseAttributes(hex(`0400 01`), 0)).toMatchObject({
      ok: false,
      error: { code: 'netlink.bad-attribute' },
    });
  });

  it('pads attributes and fills in the length when finishing a message', () => {
    const built = new NetlinkMessageBuilder(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK, 3, 5)
      .u8(0, 1)
      .attrU8(7, 9)
      .attr(8, new Uint8Array(300))
      .finish();
    expect(built.length).toBe(16 + 8 + 8 + 304);
    const parsed = parseMessages(built);
    expect(parsed.ok && parsed.value[0]).toMatchObject({ type: RTM_NEWADDR, flags: 5, seq: 3, pid: 0 });
    expect(parsed.ok && parseAttributes(parsed.value[0]!.payload, 8)).toMatchObject({
      ok: true,
      value: [{ type: 7, value: Uint8Array.of(9) }, { type: 8 }],
    });
  });
});

describe('netlink parsers on arbitrary bytes', () => {
  const parsers = [parseErrorMessage, parseDoneMessage, parseLink, parseAddress, parseRoute, parseRule];

  it('return a value or a typed error for any datagram, never throwing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const msgs = parseMessages(bytes);
        if (!msgs.ok) {
          expect(msgs.error.code).toMatch(/^netlink\./);
          return;
        }
        for (const m of msgs.value) {
          for (const parse of parsers) {
            const r = parse(m);
            if (!r.ok) expect(r.error.code).toMatch(/^netlink\./);
          }
        }
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('return a value or a typed error for any payload of each message type', () => {
    // Random payloads behind a valid header reach the type-specific code paths far more often.
    const typed = fc.record({
      type: fc.constantFrom(NLMSG_ERROR, NLMSG_DONE, 16, 20, 24, 32),
      flags: fc.constantFrom(0, 0x100, 0x200, 0x300),
      payload: fc.oneof(
        fc.uint8Array({ maxLength: 120 }),
        // A fixed header then well-formed attributes of random types and sizes.
        fc
          .tuple(
            fc.uint8Array({ minLength: 20, maxLength: 20 }),
            fc.array(fc.tuple(fc.integer({ min: 0, max: 30 }), fc.uint8Array({ maxLength: 20 })), {
              maxLength: 6,
            }),
            fc.constantFrom(8, 12, 16, 20),
          )
          .map(([head, attrs, headBytes]) => {
            const b = new NetlinkMessageBuilder(0, 0, 0, headBytes);
            for (const [t, v] of attrs) b.attr(t, v);
            const out = b.finish().subarray(16);
            out.set(head.subarray(0, headBytes));
            return out;
          }),
      ),
    });
    fc.assert(
      fc.property(typed, ({ type, flags, payload }) => {
        for (const parse of parsers) {
          const r = parse({ type, flags, seq: 0, pid: 0, payload });
          if (!r.ok) expect(r.error.code).toMatch(/^netlink\./);
        }
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });
});

describe('netlink requests read back with the reply parsers', () => {
  // NEW* requests and the kernel's dump replies share one format, so each builder's output must
  // parse back into what it was built from.
  const only = (bytes: Uint8Array) => {
    const msgs = parseMessages(bytes);
    if (!msgs.ok || msgs.value.length !== 1) throw new Error('expected one message');
    return msgs.value[0]!;
  };
  const u32 = fc.integer({ min: 1, max: 0xffffffff });

  it('round-trips links, addresses, routes and rules', () => {
    fc.assert(
      fc.property(
        fc.record({
          ifindex: fc.integer({ min: 1, max: 0x7fffffff }),
          mtu: fc.integer({ min: 68, max: 65535 }),
          txq: fc.integer({ min: 0, max: 100_000 }),
          address: fc.oneof(ipv4Arb, ipv6Arb),
          prefixBits: fc.integer({ min: 0, max: 128 }),
          table: u32,
          mark: u32,
          invert: fc.boolean(),
        }),
        ({ ifindex, mtu, txq, address, prefixBits, table, mark, invert }) => {
          expect(parseLink(only(buildSetLink(1, { ifindex, mtu, txQueueLength: txq, up: true })))).toEqual({
            ok: true,
            value: { ifindex, flags: 1, mtu, txQueueLength: txq },
          });
          const prefixLength = prefixBits % (address.length * 8 + 1);
          const a = parseAddress({
            ...only(buildAddress(1, 'add', { ifindex, address, prefixLength })),
            type: RTM_NEWADDR,
          });
          expect(a).toMatchObject({ ok: true, value: { prefixLength, ifindex, address } });
          // A route destination has its host bits clear.
          const network = address.slice();
          for (let bit = prefixLength; bit < network.length * 8; bit++)
            network[bit >> 3]! &= ~(0x80 >> (bit & 7));
          const r = parseRoute({
            ...only(
              buildRoute(1, 'add', { destination: { address: network, prefixLength }, table, ifindex }),
            ),
            type: 24,
          });
          expect(r).toMatchObject({
            ok: true,
            value: {
              destination: { address: network, prefixLength },
              table,
              ifindex,
              family: network.length === 4 ? AF_INET : AF_INET6,
            },
          });
          const family = address.length === 4 ? AF_INET : AF_INET6;
          const rule = parseRule({
            ...only(buildRule(1, 'add', { family, table, fwmark: mark, invert })),
            type: 32,
          });
          expect(rule).toEqual({
            ok: true,
            value: {
              family,
              table,
              action: 1,
              flags: invert ? 2 : 0,
              fwmark: mark,
              fwmask: 0xffffffff,
              hasOtherSelectors: false,
            },
          });
        },
      ),
      { numRuns: Math.min(PROPERTY_RUNS, 20_000) },
    );
  });
});
