import type { Socket } from 'node:dgram';
import type { Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GatewayError } from '../../../src/errors.js';
import { createPacketBatch, PACKET_HEADROOM_BYTES, type PacketBatch } from '../../../src/io/packet-batch.js';
import { openTun, type TunDevice } from '../../../src/io/tun.js';
import { openUdp } from '../../../src/io/udp.js';
import { formatIp, parseIp } from '../../../src/wire/ip/address.js';
import { FIREZONE_FWMARK, FIREZONE_TABLE } from '../../../src/wire/netlink/constants.js';
import { allChecksumsValid } from '../../support/checksum-oracle.js';
import { Netns } from '../../support/netns.js';
import { buildPacket } from '../../support/packet-builder.js';
import { rootAvailable } from '../../support/privileges.js';
import { dgramIn, ipJson, linkExists, sendDgram, waitFor } from './helpers.js';
import { inNetns } from './netns-thread.js';

const TUN = 'tun-fzt';
const GATEWAY4 = '100.66.0.1';
const GATEWAY6 = 'fd00:2021:1111::1';
const CLIENT4 = '100.64.0.5';
const CLIENT6 = 'fd00:2021:1111::5';
const TUNNEL_ROUTES = ['100.64.0.0/11', 'fd00:2021:1111::/107'];
const FIREZONE = {
  ipv4: GATEWAY4,
  ipv6: GATEWAY6,
  routes: TUNNEL_ROUTES,
  fwmarkRule: { mark: FIREZONE_FWMARK, table: FIREZONE_TABLE },
};

/** Copies of the packets a TUN device read (the batch itself is reused after each callback). */
function collect(tun: TunDevice): Uint8Array[] {
  const packets: Uint8Array[] = [];
  tun.start((batch: PacketBatch) => {
    for (let i = 0; i < batch.count; i++) {
      expect(batch.offsets[i]).toBe(PACKET_HEADROOM_BYTES);
      packets.push(batch.bufs[i]!.slice(batch.offsets[i]!, batch.offsets[i]! + batch.lengths[i]!));
    }
  });
  return packets;
}

/** UDP packets to `port`, ignoring what the kernel sends on its own (IPv6 router solicitations). */
function udpTo(packets: Uint8Array[], port: number): Uint8Array[] {
  return packets.filter((p) => {
    const v6 = p[0]! >> 4 === 6;
    const proto = v6 ? p[6] : p[9];
    const l4 = v6 ? 40 : (p[0]! & 0xf) * 4;
    return proto === 17 && ((p[l4 + 2]! << 8) | p[l4 + 3]!) === port;
  });
}

describe.runIf(rootAvailable('TUN device e2e tests'))('TUN device in a network namespace', () => {
  let ns: Netns;
  let tun: TunDevice | undefined;
  const sockets: Socket[] = [];

  beforeEach(() => {
    ns = Netns.create('tun');
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close();
    await tun?.close();
    tun = undefined;
    ns.destroy();
  });

  it('is created down with MTU 1280 and a 10000-packet transmit queue, and is not persistent', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    expect(tun.name).toBe(TUN);
    expect(tun.mtu).toBe(1280);
    const [link] = ipJson(ns, '-d', 'link', 'show', TUN);
    expect(link).toMatchObject({ ifindex: tun.ifindex, mtu: 1280, txqlen: 10_000 });
    expect(link!.flags).not.toContain('UP');
    expect(link!.linkinfo).toMatchObject({
      info_kind: 'tun',
      info_data: { type: 'tun', pi: false, persist: false },
    });
  });

  it('is configured through rtnetlink: up, exactly its two addresses, the tunnel routes and the fwmark rules', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    await tun.configure(FIREZONE);

    const [link] = ipJson(ns, 'addr', 'show', 'dev', TUN);
    expect(link!.flags).toContain('UP');
    expect(link!.mtu).toBe(1280);
    const addrs = (link!.addr_info as { family: string; local: string; prefixlen: number }[]).map(
      (a) => `${a.local}/${a.prefixlen}`,
    );
    // Every other address, including the IPv6 link-local one the kernel adds on link-up, is gone.
    expect(addrs.sort()).toEqual([`${GATEWAY4}/32`, `${GATEWAY6}/128`]);

    const table = String(FIREZONE_TABLE);
    expect(ipJson(ns, '-4', 'route', 'show', 'table', table)).toEqual([
      expect.objectContaining({ dst: '100.64.0.0/11', dev: TUN, protocol: 'static' }),
    ]);
    expect(ipJson(ns, '-6', 'route', 'show', 'table', table)).toEqual([
      expect.objectContaining({ dst: 'fd00:2021:1111::/107', dev: TUN, protocol: 'static' }),
    ]);
    for (const family of ['-4', '-6']) {
      const rules = ipJson(ns, '-d', family, 'rule', 'show').filter((r) => r.table === table);
      expect(rules).toEqual([
        expect.objectContaining({ not: null, fwmark: '0xfd002021', table, protocol: 'kernel' }),
      ]);
    }
  });

  it('reconfigures idempotently: replaces addresses, adds and removes routes, never stacks rules', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    await tun.configure(FIREZONE);
    await tun.configure(FIREZONE);
    await tun.configure({
      ipv4: '100.66.0.2',
      routes: ['100.64.0.0/11', '10.99.0.0/16'],
      fwmarkRule: { mark: FIREZONE_FWMARK, table: FIREZONE_TABLE },
    });
    const [link] = ipJson(ns, 'addr', 'show', 'dev', TUN);
    expect((link!.addr_info as { local: string }[]).map((a) => a.local)).toEqual(['100.66.0.2']);
    const table = String(FIREZONE_TABLE);
    expect(
      ipJson(ns, '-4', 'route', 'show', 'table', table)
        .map((r) => r.dst)
        .sort(),
    ).toEqual(['10.99.0.0/16', '100.64.0.0/11']);
    expect(ipJson(ns, '-6', 'route', 'show', 'table', table)).toEqual([]);
    expect(ipJson(ns, '-4', 'rule', 'show').filter((r) => r.table === table)).toHaveLength(1);
    // The IPv6 rule from the first configuration stays: rules are only ever added.
    expect(ipJson(ns, '-6', 'rule', 'show').filter((r) => r.table === table)).toHaveLength(1);
  });

  it('keeps IPv4 working when IPv6 is disabled, with a warning, and fails only if no address works', async () => {
    ns.sysctl('net.ipv6.conf.all.disable_ipv6', '1');
    ns.sysctl('net.ipv6.conf.default.disable_ipv6', '1');
    const warnings: unknown[] = [];
    const logger = { warn: (fields: unknown) => warnings.push(fields) } as unknown as Pick<Logger, 'warn'>;
    tun = await inNetns(ns.name, () => openTun({ name: TUN, logger }));
    await tun.configure(FIREZONE);
    const [link] = ipJson(ns, 'addr', 'show', 'dev', TUN);
    expect((link!.addr_info as { local: string }[]).map((a) => a.local)).toEqual([GATEWAY4]);
    const table = String(FIREZONE_TABLE);
    expect(ipJson(ns, '-4', 'route', 'show', 'table', table)).toHaveLength(1);
    expect(ipJson(ns, '-4', 'rule', 'show').filter((r) => r.table === table)).toHaveLength(1);
    expect(ipJson(ns, '-6', 'rule', 'show').filter((r) => r.table === table)).toHaveLength(0);
    expect(warnings).toEqual([expect.objectContaining({ interface: TUN, family: 'IPv6' })]);
    await expect(tun.configure({ ipv6: GATEWAY6 })).rejects.toMatchObject({
      code: 'GW_ERR_NETLINK',
      message: expect.stringMatching(
        /add address fd00:2021:1111::1\/128 to tun-fzt failed: EACCES .*IPv6 is disabled/,
      ),
    });
  });

  it('delivers packets that sockets send into the tunnel routes to start(), byte-exact', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    await tun.configure(FIREZONE);
    const packets = collect(tun);
    const payloads = [Uint8Array.of(0x42), randomBytes(100, 1), randomBytes(1252, 2)];
    const v4 = await dgramIn(ns, 4);
    const v6 = await dgramIn(ns, 6);
    sockets.push(v4.socket, v6.socket);
    for (const p of payloads) await sendDgram(v4.socket, p, 9, CLIENT4);
    for (const p of [...payloads.slice(0, 2), randomBytes(1232, 3)])
      await sendDgram(v6.socket, p, 9, CLIENT6);
    await waitFor('six UDP packets', () => udpTo(packets, 9).length === 6);

    const got = udpTo(packets, 9);
    for (const [i, p] of payloads.entries()) {
      const pkt = got[i]!;
      expect(pkt[0]! >> 4).toBe(4);
      expect(formatIp(pkt.subarray(12, 16))).toBe(GATEWAY4);
      expect(formatIp(pkt.subarray(16, 20))).toBe(CLIENT4);
      expect(pkt.length).toBe(28 + p.length);
      expect((pkt[20]! << 8) | pkt[21]!).toBe(v4.port);
      expect(pkt.subarray(28)).toEqual(p);
      expect(allChecksumsValid(pkt)).toBe(true);
    }
    for (const [i, p] of [...payloads.slice(0, 2), randomBytes(1232, 3)].entries()) {
      const pkt = got[3 + i]!;
      expect(pkt[0]! >> 4).toBe(6);
      expect(formatIp(pkt.subarray(8, 24))).toBe(GATEWAY6);
      expect(formatIp(pkt.subarray(24, 40))).toBe(CLIENT6);
      expect(pkt.length).toBe(48 + p.length);
      expect(pkt.subarray(48)).toEqual(p);
      expect(allChecksumsValid(pkt)).toBe(true);
    }
    expect(tun.stats.packetsRead).toBe(packets.length);
    expect(tun.stats.wakeups).toBeGreaterThan(0);
    expect(tun.stats.readErrors).toBe(0);
  });

  it('readNow() picks up an answer the kernel produced during our write, without a readiness wake-up', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    await tun.configure(FIREZONE);
    const packets = collect(tun);
    // An echo request to the device's own address: the kernel answers while still inside write(2)
    // (the TUN receive path runs in the writer's context), routing the reply back into the device.
    const ping = buildPacket({
      src: parseIp(CLIENT4)!,
      dst: parseIp(GATEWAY4)!,
      l4: { kind: 'icmp', type: 8, code: 0, rest: Uint8Array.of(0, 7, 0, 1), payload: new Uint8Array(16) },
    });
    let viaReadNow = 0;
    for (let i = 0; i < 10; i++) {
      const wakeups = tun.stats.wakeups;
      const before = packets.length;
      expect(tun.write(ping, 0, ping.length)).toBe(true);
      const n = tun.readNow();
      if (n > 0 && tun.stats.wakeups === wakeups) viaReadNow++;
      expect(packets.length - before).toBe(n);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(viaReadNow).toBe(10);
    const reply = packets.find((p) => p[9] === 1 && p[20] === 0);
    expect(reply && formatIp(reply.subarray(16, 20))).toBe(CLIENT4);
    expect(tun.readNow()).toBe(0);
  });

  it('reads a burst in batches, many packets per wake-up', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN, batchSize: 32 }));
    await tun.configure(FIREZONE);
    let maxBatch = 0;
    let udp = 0;
    tun.start((batch) => {
      maxBatch = Math.max(maxBatch, batch.count);
      udp += udpTo(
        Array.from({ length: batch.count }, (_, i) => batch.bufs[i]!.subarray(PACKET_HEADROOM_BYTES)),
        9,
      ).length;
    });
    // The gateway's own marked socket would bypass the table; this one is unmarked.
    const sender = await inNetns(ns.name, () => openUdp({ family: 4, strategy: 'mmsg', batchSize: 256 }));
    const payload = new Uint8Array(64);
    const client = parseIp(CLIENT4)!;
    for (let i = 0; i < 2000; i++) sender.send(payload, 0, payload.length, client, 9);
    sender.flush();
    await waitFor('2000 packets', () => udp === 2000);
    await sender.close();
    expect(maxBatch).toBe(32);
    expect(tun.stats.wakeups).toBeLessThan(2000);
  });

  it('writes packets that reach sockets in the namespace, one at a time and in batches', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    await tun.configure(FIREZONE);
    const v4 = await dgramIn(ns, 4);
    const v6 = await dgramIn(ns, 6);
    sockets.push(v4.socket, v6.socket);
    // The kernel finishes setting up an IPv6 address in the background (DAD is skipped on a
    // point-to-point device, but only once its work item runs): packets to a tentative address
    // are dropped, so wait until it is usable.
    await waitFor('the IPv6 address to be usable', () =>
      ipJson<{ addr_info?: { local?: string; tentative?: boolean }[] }[]>(
        ns,
        '-6',
        'addr',
        'show',
        'dev',
        TUN,
      )
        .flatMap((l) => l.addr_info ?? [])
        .some((a) => a.local === GATEWAY6 && a.tentative !== true),
    );
    const one = buildPacket({
      src: parseIp(CLIENT4)!,
      dst: parseIp(GATEWAY4)!,
      l4: { kind: 'udp', srcPort: 5000, dstPort: v4.port, payload: randomBytes(1252, 4) },
    });
    // Written from inside a larger buffer, as the router does after decrypting in place.
    const framed = new Uint8Array(one.length + 40);
    framed.set(one, 16);
    expect(tun.write(framed, 16, one.length)).toBe(true);

    const batch = createPacketBatch(4);
    for (let i = 0; i < 3; i++) {
      const pkt = buildPacket({
        src: parseIp(CLIENT6)!,
        dst: parseIp(GATEWAY6)!,
        l4: { kind: 'udp', srcPort: 6000 + i, dstPort: v6.port, payload: randomBytes(10 * (i + 1), i) },
      });
      batch.bufs[i]!.set(pkt, PACKET_HEADROOM_BYTES);
      batch.offsets[i] = PACKET_HEADROOM_BYTES;
      batch.lengths[i] = pkt.length;
    }
    batch.count = 3;
    expect(tun.writeBatch(batch)).toBe(3);

    await waitFor(
      'one IPv4 and three IPv6 datagrams',
      () => v4.received.length === 1 && v6.received.length === 3,
    ).catch((e: Error) => {
      throw new Error(
        `${e.message}: got ${v4.received.length} IPv4 and ${v6.received.length} IPv6; TUN stats ${JSON.stringify(
          tun!.stats,
        )}; ${ns.ip('-6', 'addr', 'show', 'dev', TUN).trim()}`,
      );
    });
    expect(v4.received[0]).toMatchObject({ address: CLIENT4, port: 5000 });
    expect(new Uint8Array(v4.received[0]!.data)).toEqual(randomBytes(1252, 4));
    expect(v6.received.map((d) => [d.address, d.port, d.data.length])).toEqual([
      [CLIENT6, 6000, 10],
      [CLIENT6, 6001, 20],
      [CLIENT6, 6002, 30],
    ]);
    expect(tun.stats).toMatchObject({ packetsWritten: 4, writeDrops: 0, writeErrors: 0 });
  });

  it('counts a packet the kernel refuses as a write error instead of throwing', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    await tun.configure(FIREZONE);
    // Not an IP packet at all: the TUN driver rejects it (EINVAL) without disturbing later writes.
    expect(tun.write(new Uint8Array(20), 0, 20)).toBe(false);
    expect(tun.stats.writeErrors).toBe(1);
    expect(() => tun!.write(new Uint8Array(10), 5, 10)).toThrow(RangeError);
  });

  it('routes a socket marked with the gateway fwmark around the tunnel table', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    await tun.configure(FIREZONE);
    const packets = collect(tun);
    const [marked, unmarked] = await inNetns(ns.name, async () => [
      await openUdp({ family: 4, strategy: 'mmsg', fwmark: FIREZONE_FWMARK }),
      await openUdp({ family: 4, strategy: 'mmsg' }),
    ]);
    const client = parseIp(CLIENT4)!;
    marked!.send(Uint8Array.of(1), 0, 1, client, 9);
    unmarked!.send(Uint8Array.of(2), 0, 1, client, 9);
    marked!.flush();
    unmarked!.flush();
    await waitFor('the unmarked packet', () => udpTo(packets, 9).length === 1);
    // The main table has no route to the tunnel range: the marked datagram is unroutable.
    expect(marked!.stats).toMatchObject({ datagramsSent: 0, sendErrors: 1 });
    expect(unmarked!.stats.datagramsSent).toBe(1);
    expect(udpTo(packets, 9)[0]!.at(-1)).toBe(2);
    await marked!.close();
    await unmarked!.close();
  });

  it('refuses a second device with the same name and explains why', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    const second = inNetns(ns.name, () => openTun({ name: TUN }));
    await expect(second).rejects.toBeInstanceOf(GatewayError);
    await expect(second).rejects.toMatchObject({
      code: 'GW_ERR_TUN_OPEN',
      message: expect.stringMatching(/create TUN device tun-fzt failed: EBUSY .*in use by another process/),
    });
  });

  it('rejects invalid names and configurations before touching the kernel', async () => {
    await expect(openTun({ name: 'a-name-that-is-too-long' })).rejects.toMatchObject({
      code: 'GW_ERR_TUN_OPEN',
    });
    await expect(openTun({ name: 'bad/name' })).rejects.toMatchObject({ code: 'GW_ERR_TUN_OPEN' });
    await expect(openTun({ name: TUN, mtu: 100 })).rejects.toMatchObject({ code: 'GW_ERR_TUN_OPEN' });
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    for (const bad of [
      { ipv4: '100.66.0' },
      { ipv6: '100.66.0.1' },
      { routes: ['100.64.0.1/11'] },
      { routes: ['100.64.0.0/11'], table: 254 },
      { fwmarkRule: { mark: 0, table: FIREZONE_TABLE } },
    ]) {
      await expect(tun.configure(bad)).rejects.toMatchObject({ code: 'GW_ERR_CONFIG' });
    }
    // Nothing was changed by the rejected configurations.
    expect(ipJson(ns, 'addr', 'show', 'dev', TUN)[0]!.flags).not.toContain('UP');
  });

  it('reports a fatal error when the interface is deleted under it, and still closes cleanly', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    const errors: GatewayError[] = [];
    tun.start(
      () => undefined,
      (e) => errors.push(e),
    );
    ns.ip('link', 'del', TUN);
    await waitFor('the fatal error', () => errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'GW_ERR_TUN_IO', message: expect.stringContaining('POLLERR') });
    await tun.close();
  });

  it('close() stops the reader and removes the interface; calling it again is harmless', async () => {
    tun = await inNetns(ns.name, () => openTun({ name: TUN }));
    await tun.configure(FIREZONE);
    collect(tun);
    const closing = tun.close();
    expect(tun.close()).toBe(closing);
    await closing;
    await waitFor('the interface to disappear', () => !linkExists(ns, TUN));
    expect(tun.write(new Uint8Array(40), 0, 40)).toBe(false);
    expect(() => tun!.start(() => undefined)).toThrow(GatewayError);
  });
});

/** Deterministic bytes for payload comparisons. */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}
