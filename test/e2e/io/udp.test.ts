import type { Socket } from 'node:dgram';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type DatagramBatch, datagramDestination, datagramSource } from '../../../src/io/packet-batch.js';
import { openUdp, type UdpSocket, type UdpStrategy } from '../../../src/io/udp.js';
import { formatIp, parseIp } from '../../../src/wire/ip/address.js';
import { Netns } from '../../support/netns.js';
import { rootAvailable } from '../../support/privileges.js';
import { dgramIn, sendDgram, waitFor } from './helpers.js';
import { inNetns } from './netns-thread.js';

interface Received {
  data: Uint8Array;
  from: string;
  port: number;
  to: string | undefined;
  toPort: number;
  ecn: number;
}

/** Copies what `socket` receives (its batch is reused after each callback). */
function collect(socket: UdpSocket): Received[] {
  const got: Received[] = [];
  socket.start((batch: DatagramBatch) => {
    for (let i = 0; i < batch.count; i++) {
      expect(batch.offsets[i]).toBe(0);
      got.push({
        data: batch.bufs[i]!.slice(0, batch.lengths[i]),
        from: formatIp(datagramSource(batch, i)),
        port: batch.srcPorts[i]!,
        to: batch.dstKnown ? formatIp(datagramDestination(batch, i)) : undefined,
        toPort: batch.dstPorts[i]!,
        ecn: batch.ecn[i]!,
      });
    }
  });
  return got;
}

function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
}

const cases = [
  ['mmsg', 4, '127.0.0.1'],
  ['mmsg', 6, '::1'],
  ['dgram', 4, '127.0.0.1'],
  ['dgram', 6, '::1'],
] as const satisfies readonly (readonly [UdpStrategy, 4 | 6, string])[];

describe.runIf(rootAvailable('UDP e2e tests'))('UDP sockets on loopback in a network namespace', () => {
  let ns: Netns;
  const open: UdpSocket[] = [];
  const peers: Socket[] = [];

  beforeAll(() => {
    ns = Netns.create('udp');
    // For the fwmark test: marked packets to 198.51.100.0/24 hit a prohibit route, others go to lo.
    ns.ip('rule', 'add', 'fwmark', '0x77', 'lookup', '77');
    ns.ip('route', 'add', 'prohibit', '198.51.100.0/24', 'table', '77');
    ns.ip('route', 'add', '198.51.100.0/24', 'dev', 'lo');
  });

  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    for (const p of peers.splice(0)) p.close();
  });

  afterAll(() => {
    ns.destroy();
  });

  async function udp(
    strategy: UdpStrategy,
    family: 4 | 6,
    extra: { address?: string; port?: number; fwmark?: number; batchSize?: number } = {},
  ) {
    const s = await inNetns(ns.name, () => openUdp({ strategy, family, ...extra }));
    open.push(s);
    return s;
  }

  async function peer(family: 4 | 6, address: string) {
    const p = await dgramIn(ns, family, address);
    peers.push(p.socket);
    return p;
  }

  describe.each(cases)('%s, IPv%i', (strategy, family, loopback) => {
    const lo = parseIp(loopback)!;
    const largest = 1536;

    it('receives datagrams byte-exact at offset 0, with source and destination', async () => {
      const s = await udp(strategy, family, { address: loopback });
      expect(s.strategy).toBe(strategy);
      expect(s.localAddress).toBe(loopback);
      expect(s.localPort).toBeGreaterThan(0);
      const got = collect(s);
      const p = await peer(family, loopback);
      const sizes = [1, 64, 1316, largest];
      for (const [i, n] of sizes.entries()) await sendDgram(p.socket, bytes(n, i), s.localPort, loopback);
      await waitFor('four datagrams', () => got.length === 4);
      expect(got.map((g) => g.data)).toEqual(sizes.map((n, i) => bytes(n, i)));
      for (const g of got) {
        // node:dgram sends Not-ECT (ECN both ways: udp-ecn.test.ts).
        expect(g).toMatchObject({ from: loopback, port: p.port, toPort: s.localPort, ecn: 0 });
        // Only the libc socket learns the destination (IP_PKTINFO); node:dgram cannot.
        expect(g.to).toBe(strategy === 'mmsg' ? loopback : undefined);
      }
      expect(s.stats).toMatchObject({ datagramsReceived: 4, receiveErrors: 0, receiveTruncated: 0 });
    });

    it('sends from any offset of the caller buffer, flushed explicitly or at the end of the tick', async () => {
      const s = await udp(strategy, family);
      const p = await peer(family, loopback);
      const frame = bytes(2000, 7);
      s.send(frame, 100, 1316, lo, p.port);
      s.send(frame, 0, 1, lo, p.port);
      s.flush();
      s.send(frame, 1999, 1, lo, p.port); // no flush: goes out at the end of this tick
      await waitFor('three datagrams', () => p.received.length === 3);
      expect(p.received.map((d) => new Uint8Array(d.data))).toEqual([
        frame.subarray(100, 1416),
        frame.subarray(0, 1),
        frame.subarray(1999, 2000),
      ]);
      expect(p.received[0]!.port).toBe(s.localPort);
      await waitFor('send completions', () => s.stats.datagramsSent === 3);
      expect(s.stats).toMatchObject({ sendErrors: 0, sendDrops: 0 });
      expect(() => s.send(frame, 0, 10, new Uint8Array(family === 4 ? 16 : 4), p.port)).toThrow(RangeError);
      expect(() => s.send(frame, 1995, 10, lo, p.port)).toThrow(RangeError);
    });

    it('drops and counts datagrams longer than a packet buffer', async () => {
      const s = await udp(strategy, family, { address: loopback });
      const got = collect(s);
      const p = await peer(family, loopback);
      await sendDgram(p.socket, bytes(largest + 1, 1), s.localPort, loopback);
      await sendDgram(p.socket, bytes(10, 2), s.localPort, loopback);
      await waitFor('the short datagram', () => got.length === 1);
      expect(got[0]!.data).toEqual(bytes(10, 2));
      expect(s.stats.receiveTruncated).toBe(1);
    });

    it('receives a burst of 1000 in order, in far fewer batches', async () => {
      const s = await udp(strategy, family, { address: loopback, batchSize: 64 });
      const got = collect(s);
      const sender = await udp('mmsg', family, { address: loopback, batchSize: 100 });
      const payloads = Array.from({ length: 1000 }, (_, i) => Uint8Array.of(i >> 8, i & 0xff, 0x55));
      for (const pl of payloads) sender.send(pl, 0, pl.length, lo, s.localPort);
      sender.flush();
      await waitFor('1000 datagrams', () => got.length === 1000);
      expect(got.map((g) => g.data)).toEqual(payloads);
      expect(s.stats.receiveBatches).toBeLessThan(1000);
    });

    it('flushes queued datagrams when closed, and counts sends after that as errors', async () => {
      const s = await udp(strategy, family);
      const p = await peer(family, loopback);
      s.send(Uint8Array.of(1, 2, 3), 0, 3, lo, p.port);
      const closing = s.close();
      expect(s.close()).toBe(closing);
      await closing;
      await waitFor('the goodbye', () => p.received.length === 1);
      s.send(Uint8Array.of(1), 0, 1, lo, p.port);
      expect(s.stats.sendErrors).toBe(1);
    });

    it('lets an IPv4 and an IPv6 socket share a port (IPv6 sockets are IPv6-only)', async () => {
      const s = await udp(strategy, family);
      const other = await udp(strategy, family === 4 ? 6 : 4, { port: s.localPort });
      expect(other.localPort).toBe(s.localPort);
    });

    it('refuses a port in use with GW_ERR_UDP_OPEN', async () => {
      const s = await udp(strategy, family, { address: loopback });
      await expect(
        inNetns(ns.name, () => openUdp({ strategy, family, address: loopback, port: s.localPort })),
      ).rejects.toMatchObject({
        code: 'GW_ERR_UDP_OPEN',
        message: expect.stringContaining('EADDRINUSE'),
      });
    });

    it('reports the buffer sizes the kernel granted', async () => {
      const s = await udp(strategy, family);
      // Linux doubles the request and caps it at net.core.rmem_max / wmem_max.
      expect(s.receiveBufferBytes).toBeGreaterThanOrEqual(4096);
      expect(s.sendBufferBytes).toBeGreaterThanOrEqual(4096);
      expect(s.receiveBufferBytes).toBeLessThanOrEqual(2 * 134_217_728);
    });
  });

  describe.each(['mmsg', 'dgram'] as const)('%s with a fwmark', (strategy) => {
    it('marks what it sends (SO_MARK), so policy routing sees the mark', async () => {
      const marked = await udp(strategy, 4, { fwmark: 0x77 });
      const unmarked = await udp(strategy, 4);
      const target = parseIp('198.51.100.7')!;
      marked.send(Uint8Array.of(1), 0, 1, target, 9);
      unmarked.send(Uint8Array.of(1), 0, 1, target, 9);
      marked.flush();
      unmarked.flush();
      await waitFor('both outcomes', () => marked.stats.sendErrors + unmarked.stats.datagramsSent === 2);
      expect(marked.stats).toMatchObject({ sendErrors: 1, datagramsSent: 0 });
      expect(unmarked.stats).toMatchObject({ sendErrors: 0, datagramsSent: 1 });
    });
  });
});
