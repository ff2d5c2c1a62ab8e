import { describe, expect, it } from 'vitest';
import { parseIp } from '../../../../src/wire/ip/address.js';
import { parsePrefix } from '../../../../src/wire/ip/prefix.js';
import {
  AF_INET,
  AF_INET6,
  FIREZONE_FWMARK,
  FIREZONE_TABLE,
  RTPROT_KERNEL,
} from '../../../../src/wire/netlink/constants.js';
import { HOST_LITTLE_ENDIAN, type NetlinkMessage } from '../../../../src/wire/netlink/message.js';
import {
  buildAddress,
  buildDumpAddresses,
  buildDumpRoutes,
  buildDumpRules,
  buildGetLinkByName,
  buildRoute,
  buildRule,
  buildSetLink,
  parseAddress,
  parseLink,
  parseRoute,
  parseRule,
} from '../../../../src/wire/netlink/rtnetlink.js';
import { hex } from './hex.js';

function message(type: number, payloadHex: string, flags = 0): NetlinkMessage {
  return { type, flags, seq: 1, pid: 0, payload: hex(payloadHex) };
}

const prefix = (text: string) => {
  const p = parsePrefix(text);
  if (!p.ok) throw new Error(p.error.message);
  return p.value;
};

// Expected bytes are little-endian (netlink uses host order; x86-64 and arm64 are little-endian).
describe.runIf(HOST_LITTLE_ENDIAN)('rtnetlink requests', () => {
  it('builds a link lookup by name (RTM_GETLINK with IFLA_IFNAME)', () => {
    expect(buildGetLinkByName(9, 'tun-firezone')).toEqual(
      hex(`
        34000000 1200 0100 09000000 00000000  # len 52, RTM_GETLINK, REQUEST, seq 9, pid 0
        00 00 0000 00000000 00000000 00000000 # ifinfomsg: all zero
        1100 0300 74756e2d666972657a6f6e6500 000000 # IFLA_IFNAME "tun-firezone\\0", padded
      `),
    );
  });

  it('builds a link change setting MTU and up (RTM_NEWLINK without CREATE)', () => {
    expect(buildSetLink(7, { ifindex: 5, mtu: 1280, up: true })).toEqual(
      hex(`
        28000000 1000 0500 07000000 00000000  # len 40, RTM_NEWLINK, REQUEST|ACK, seq 7
        00 00 0000 05000000 01000000 01000000 # AF_UNSPEC, index 5, flags IFF_UP, change IFF_UP
        0800 0400 00050000                    # IFLA_MTU 1280
      `),
    );
  });

  it('leaves the up flag alone unless asked, and sets the transmit queue length', () => {
    expect(buildSetLink(8, { ifindex: 5, txQueueLength: 10_000 })).toEqual(
      hex(`
        28000000 1000 0500 08000000 00000000
        00 00 0000 05000000 00000000 00000000 # change mask 0: IFF_UP untouched
        0800 0d00 10270000                    # IFLA_TXQLEN 10000
      `),
    );
  });

  it('builds an IPv4 /32 address add with IFA_LOCAL and IFA_ADDRESS, as ip addr add does', () => {
    const address = parseIp('100.66.0.1')!;
    expect(buildAddress(3, 'add', { ifindex: 2, address, prefixLength: 32 })).toEqual(
      hex(`
        28000000 1400 0506 03000000 00000000  # len 40, RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE
        02 20 00 00 02000000                  # AF_INET, /32, flags 0, scope universe, index 2
        0800 0200 64420001                    # IFA_LOCAL 100.66.0.1
        0800 0100 64420001                    # IFA_ADDRESS 100.66.0.1
      `),
    );
  });

  it('builds an IPv6 /128 address delete', () => {
    const address = parseIp('fd00:2021:1111::1')!;
    expect(buildAddress(4, 'delete', { ifindex: 2, address, prefixLength: 128 })).toEqual(
      hex(`
        40000000 1500 0500 04000000 00000000  # len 64, RTM_DELADDR, REQUEST|ACK
        0a 80 00 00 02000000                  # AF_INET6, /128, index 2
        1400 0200 fd002021111100000000000000000001
        1400 0100 fd002021111100000000000000000001
      `),
    );
  });

  it('builds an address dump for one interface', () => {
    expect(buildDumpAddresses(5, 0, 2)).toEqual(
      hex(`
        18000000 1600 0103 05000000 00000000  # len 24, RTM_GETADDR, REQUEST|DUMP
        00 00 00 00 02000000                  # any family, index 2 (strict-check filter)
      `),
    );
  });

  it('builds a route add into the Firezone table (static, universe, unicast, table in RTA_TABLE)', () => {
    expect(
      buildRoute(6, 'add', { destination: prefix('100.64.0.0/11'), table: FIREZONE_TABLE, ifindex: 2 }),
    ).toEqual(
      hex(`
        34000000 1800 0506 06000000 00000000  # len 52, RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE
        02 0b 00 00 00 04 00 01 00000000      # AF_INET, /11, table UNSPEC, static, universe, unicast
        0800 0f00 00fd2120                    # RTA_TABLE 0x2021fd00
        0800 0100 64400000                    # RTA_DST 100.64.0.0
        0800 0400 02000000                    # RTA_OIF 2
      `),
    );
  });

  it('builds an IPv6 route delete that matches any protocol and scope', () => {
    expect(
      buildRoute(7, 'delete', {
        destination: prefix('fd00:2021:1111::/107'),
        table: FIREZONE_TABLE,
        ifindex: 2,
      }),
    ).toEqual(
      hex(`
        40000000 1900 0500 07000000 00000000  # len 64, RTM_DELROUTE, REQUEST|ACK
        0a 6b 00 00 00 00 ff 00 00000000      # AF_INET6, /107, protocol 0, scope NOWHERE, type 0
        0800 0f00 00fd2120
        1400 0100 fd002021111100000000000000000000
        0800 0400 02000000
      `),
    );
  });

  it('puts a small table id in the header too, and omits RTA_DST for a default route', () => {
    expect(buildRoute(8, 'add', { destination: prefix('0.0.0.0/0'), table: 100, ifindex: 3 })).toEqual(
      hex(`
        2c000000 1800 0506 08000000 00000000
        02 00 00 00 64 04 00 01 00000000      # table 100 in rtm_table
        0800 0f00 64000000
        0800 0400 03000000
      `),
    );
  });

  it('builds a route dump filtered by table', () => {
    expect(buildDumpRoutes(9, AF_INET6, FIREZONE_TABLE)).toEqual(
      hex(`
        24000000 1a00 0103 09000000 00000000  # len 36, RTM_GETROUTE, REQUEST|DUMP
        0a 00 00 00 00 00 00 00 00000000
        0800 0f00 00fd2120
      `),
    );
  });

  it('builds the rule "not fwmark 0xfd002021 lookup 0x2021fd00" with FIB_RULE_INVERT', () => {
    expect(
      buildRule(10, 'add', {
        family: AF_INET,
        table: FIREZONE_TABLE,
        fwmark: FIREZONE_FWMARK,
        invert: true,
        protocol: RTPROT_KERNEL,
      }),
    ).toEqual(
      hex(`
        3c000000 2000 0506 0a000000 00000000  # len 60, RTM_NEWRULE, REQUEST|ACK|EXCL|CREATE
        02 00 00 00 00 00 00 01 02000000      # AF_INET, table UNSPEC, FR_ACT_TO_TBL, INVERT
        0800 0f00 00fd2120                    # FRA_TABLE
        0800 0a00 2120 00fd                   # FRA_FWMARK 0xfd002021
        0800 1000 ffffffff                    # FRA_FWMASK
        0500 1500 02 000000                   # FRA_PROTOCOL kernel, padded
      `),
    );
  });

  it('builds an IPv6 rule delete with an explicit priority and a rule dump', () => {
    expect(
      buildRule(11, 'delete', {
        family: AF_INET6,
        table: 1000,
        fwmark: 1,
        fwmask: 0xff,
        invert: false,
        priority: 100,
      }),
    ).toEqual(
      hex(`
        3c000000 2100 0500 0b000000 00000000  # RTM_DELRULE, REQUEST|ACK
        0a 00 00 00 00 00 00 01 00000000
        0800 0f00 e8030000
        0800 0a00 01000000
        0800 1000 ff000000
        0800 0600 64000000                    # FRA_PRIORITY 100
      `),
    );
    expect(buildDumpRules(12, AF_INET6)).toEqual(
      hex(`
        1c000000 2200 0103 0c000000 00000000
        0a 00 00 00 00 00 00 00 00000000
      `),
    );
  });
});

describe.runIf(HOST_LITTLE_ENDIAN)('rtnetlink replies', () => {
  it('reads a link: index, flags, name, MTU and queue length', () => {
    const link = parseLink(
      message(
        16,
        `
        00 00 fffe 05000000 d1100100 00000000 # type ARPHRD_NONE, index 5, flags UP|POINTOPOINT|NOARP|...
        1100 0300 74756e2d666972657a6f6e6500 000000
        0800 0400 00050000
        0800 0d00 10270000
        0500 1000 00 000000                   # IFLA_OPERSTATE: ignored
      `,
      ),
    );
    expect(link).toEqual({
      ok: true,
      value: { ifindex: 5, flags: 0x110d1, name: 'tun-firezone', mtu: 1280, txQueueLength: 10_000 },
    });
  });

  it('reads IPv4 and IPv6 addresses, preferring IFA_LOCAL and the 32-bit IFA_FLAGS', () => {
    expect(
      parseAddress(
        message(
          20,
          `
          02 20 80 00 05000000
          0800 0100 64420002                  # IFA_ADDRESS (a peer would differ)
          0800 0200 64420001                  # IFA_LOCAL
          0800 0800 80020000                  # IFA_FLAGS PERMANENT|0x200
        `,
        ),
      ),
    ).toEqual({
      ok: true,
      value: {
        family: 2,
        prefixLength: 32,
        flags: 0x280,
        scope: 0,
        ifindex: 5,
        address: parseIp('100.66.0.1'),
      },
    });
    expect(
      parseAddress(message(20, `0a 80 00 00 05000000 1400 0100 fd002021111100000000000000000001`)),
    ).toMatchObject({
      ok: true,
      value: { family: 10, prefixLength: 128, address: parseIp('fd00:2021:1111::1') },
    });
  });

  it('reads a route in a big table from RTA_TABLE, and a default route without RTA_DST', () => {
    expect(
      parseRoute(
        message(
          24,
          `
          02 0b 00 00 fc 04 00 01 00000000
          0800 0f00 00fd2120
          0800 0100 64400000
          0800 0400 05000000
          0800 0600 00040000                  # RTA_PRIORITY 1024
        `,
        ),
      ),
    ).toEqual({
      ok: true,
      value: {
        family: 2,
        destination: prefix('100.64.0.0/11'),
        table: FIREZONE_TABLE,
        protocol: 4,
        scope: 0,
        type: 1,
        ifindex: 5,
        priority: 1024,
      },
    });
    expect(parseRoute(message(24, `0a 00 00 00 fe 03 00 01 00000000`))).toEqual({
      ok: true,
      value: { family: 10, destination: prefix('::/0'), table: 254, protocol: 3, scope: 0, type: 1 },
    });
  });

  it('reads a fwmark rule and notices selectors it does not model', () => {
    const rule = `
      02 00 00 00 00 00 00 01 02000000
      0800 0f00 00fd2120
      0800 0a00 2120 00fd
      0800 1000 ffffffff
      0800 0600 fd7f0000                      # FRA_PRIORITY 32765
      0500 1500 02 000000
    `;
    expect(parseRule(message(32, rule))).toEqual({
      ok: true,
      value: {
        family: 2,
        table: FIREZONE_TABLE,
        action: 1,
        flags: 2,
        fwmark: FIREZONE_FWMARK,
        fwmask: 0xffffffff,
        priority: 32765,
        protocol: 2,
        hasOtherSelectors: false,
      },
    });
    expect(parseRule(message(32, `${rule} 0800 0200 0a000000`))).toMatchObject({
      ok: true,
      value: { hasOtherSelectors: true },
    });
    // A source prefix length in the header selects packets too.
    expect(parseRule(message(32, `02 00 08 00 fe 00 00 01 00000000`))).toMatchObject({
      ok: true,
      value: { table: 254, hasOtherSelectors: true },
    });
  });

  it.each([
    ['a message of another type', () => parseLink(message(20, '00'.repeat(16))), 'netlink.unexpected-type'],
    [
      'a payload shorter than ifinfomsg',
      () => parseLink(message(16, '00'.repeat(15))),
      'netlink.truncated-payload',
    ],
    [
      'a u32 attribute of 2 bytes',
      () => parseLink(message(16, `${'00'.repeat(16)} 0600 0400 0005 0000`)),
      'netlink.bad-attribute-length',
    ],
    [
      'an IPv4 address of 16 bytes',
      () => parseAddress(message(20, `02 20 00 00 01000000 1400 0200 ${'00'.repeat(16)}`)),
      'netlink.bad-attribute-length',
    ],
    [
      'an attribute running past the message',
      () => parseRoute(message(24, `02 00 00 00 fe 00 00 01 00000000 0c00 0100 64400000`)),
      'netlink.bad-attribute',
    ],
    [
      'a protocol attribute of 4 bytes',
      () => parseRule(message(32, `02 00 00 00 00 00 00 01 00000000 0800 1500 02000000`)),
      'netlink.bad-attribute-length',
    ],
  ])('rejects %s', (_what, parse, code) => {
    expect(parse()).toMatchObject({ ok: false, error: { code } });
  });
});
