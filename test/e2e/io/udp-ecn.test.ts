import type { ChildProcess } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DatagramBatch } from '../../../src/io/packet-batch.js';
import { openUdp, type UdpSocket, type UdpStrategy } from '../../../src/io/udp.js';
import {
  AF_INET,
  AF_INET6,
  IP_TOS,
  IPPROTO_IP,
  IPPROTO_IPV6,
  IPV6_TCLASS,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCKADDR_IN_BYTES,
  SOCKADDR_IN6_BYTES,
} from '../../../src/native/abi.js';
import { getLibc } from '../../../src/native/libc.js';
import { parseIp } from '../../../src/wire/ip/address.js';
import { ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT } from '../../../src/wire/ip/constants.js';
import { Netns } from '../../support/netns.js';
import { rootAvailable } from '../../support/privileges.js';
import { waitFor } from './helpers.js';
import { inNetns } from './netns-thread.js';

/**
 * ECN across the tunnel's outer UDP header (`spec/gateway-dataplane.md` §3 step 10, §4 step 10):
 * what the sockets report for received datagrams, and what actually goes on the wire.
 */

const CODEPOINTS = [ECN_NOT_ECT, ECN_ECT1, ECN_ECT0, ECN_CE];
/** DSCP EF (46) in the upper six bits: the ECN field must be read without it. */
const DSCP_EF_TOS = 46 << 2;

interface Got {
  readonly tag: number;
  readonly ecn: number;
}

/** Records each datagram's first byte (a tag) and the ECN codepoint the batch reports. */
function collect(socket: UdpSocket): Got[] {
  const got: Got[] = [];
  socket.start((batch: DatagramBatch) => {
    for (let i = 0; i < batch.count; i++) got.push({ tag: batch.bufs[i]![0]!, ecn: batch.ecn[i]! });
  });
  return got;
}

const loopbacks = [
  [4, '127.0.0.1'],
  [6, '::1'],
] as const;

describe.runIf(rootAvailable('UDP ECN e2e tests'))(
  'ECN on the tunnel sockets (loopback in a namespace)',
  () => {
    let ns: Netns;
    const open: UdpSocket[] = [];
    const children: ChildProcess[] = [];

    beforeAll(() => {
      ns = Netns.create('ecn');
    });

    afterEach(async () => {
      for (const s of open.splice(0)) await s.close();
      for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill();
    });

    afterAll(() => {
      ns.destroy();
    });

    async function udp(
      strategy: UdpStrategy,
      family: 4 | 6,
      extra: { address?: string; batchSize?: number } = {},
    ): Promise<UdpSocket> {
      const s = await inNetns(ns.name, () => openUdp({ strategy, family, ...extra }));
      open.push(s);
      return s;
    }

    /**
     * Sends one datagram per `tos` value from a bare libc socket with IP_TOS / IPV6_TCLASS set
     * per socket (setsockopt, not a control message): a sender that shares no code with ours.
     * Datagram `i` carries the tag `i`.
     */
    async function sendWithSocketTos(family: 4 | 6, address: string, port: number, tos: readonly number[]) {
      const libc = getLibc();
      const fd = await inNetns(ns.name, () =>
        libc.socket(family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0),
      );
      expect(fd).toBeGreaterThanOrEqual(0);
      try {
        const name = new Uint8Array(SOCKADDR_IN6_BYTES);
        const af = family === 4 ? AF_INET : AF_INET6;
        name[0] = af & 0xff;
        name[1] = af >> 8;
        name[2] = port >> 8;
        name[3] = port & 0xff;
        name.set(parseIp(address)!, family === 4 ? 4 : 8);
        const nameBytes = family === 4 ? SOCKADDR_IN_BYTES : SOCKADDR_IN6_BYTES;
        for (const [i, value] of tos.entries()) {
          const level = family === 4 ? IPPROTO_IP : IPPROTO_IPV6;
          const option = family === 4 ? IP_TOS : IPV6_TCLASS;
          expect(libc.setsockopt(fd, level, option, new Int32Array([value]), 4)).toBe(0);
          expect(libc.sendto(fd, Uint8Array.of(i), 1, 0, name, nameBytes)).toBe(1);
        }
      } finally {
        libc.close(fd);
      }
    }

    /**
     * Captures UDP to `port` on the namespace's loopback with tcpdump and returns a function that
     * reads, per captured datagram, its UDP payload length and the ECN bits of its IP header.
     */
    async function capture(port: number): Promise<() => { length: number; ecn: number }[]> {
      const child = ns.spawn('tcpdump', [
        '-i',
        'lo',
        '-nn',
        '-v',
        '-l',
        '--immediate-mode',
        `udp dst port ${port}`,
      ]);
      children.push(child);
      let out = '';
      let err = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
      });
      await waitFor('tcpdump to listen', () => err.includes('listening on'), 10_000);
      return () => {
        // `-v` prints an IPv4 packet over two lines (the second indented), an IPv6 packet on one.
        const records = out.replace(/\n\s+/g, ' ').split('\n').filter(Boolean);
        return records.map((line) => {
          // IPv4: "IP (tos 0x2,ECT(0), ttl 64, ..."; IPv6: "IP6 (class 0x02, flowlabel ..." (class
          // printed only when nonzero).
          const tos = /\(tos 0x([0-9a-f]+)/.exec(line) ?? /\(class 0x([0-9a-f]+)/.exec(line);
          const length = /UDP, length (\d+)/.exec(line);
          if (!length) throw new Error(`unexpected tcpdump line: ${line}`);
          return { length: Number(length[1]), ecn: tos ? Number.parseInt(tos[1]!, 16) & 3 : 0 };
        });
      };
    }

    describe.each(loopbacks)('IPv%i', (family, loopback) => {
      const lo = parseIp(loopback)!;

      it('mmsg reports the ECN codepoint of every received datagram, whatever the DSCP', async () => {
        const s = await udp('mmsg', family, { address: loopback });
        const got = collect(s);
        const tos = [...CODEPOINTS, ...CODEPOINTS.map((cp) => DSCP_EF_TOS | cp)];
        await sendWithSocketTos(family, loopback, s.localPort, tos);
        await waitFor('eight datagrams', () => got.length === tos.length);
        expect(got).toEqual(tos.map((t, tag) => ({ tag, ecn: t & 3 })));
      });

      it('dgram cannot learn the codepoint: every datagram reads as Not-ECT', async () => {
        const s = await udp('dgram', family, { address: loopback });
        const got = collect(s);
        await sendWithSocketTos(family, loopback, s.localPort, CODEPOINTS);
        await waitFor('four datagrams', () => got.length === 4);
        expect(got).toEqual(CODEPOINTS.map((_, tag) => ({ tag, ecn: ECN_NOT_ECT })));
      });

      it('mmsg sends each datagram with the codepoint asked for, as seen by a receiver and on the wire', async () => {
        const receiver = await udp('mmsg', family, { address: loopback });
        const got = collect(receiver);
        const captured = await capture(receiver.localPort);
        const sender = await udp('mmsg', family, { address: loopback });
        // Payload length 10 + codepoint, so each captured datagram says which send it was (and
        // one buffer per datagram: the bytes are read at the flush).
        for (const cp of CODEPOINTS) {
          sender.send(new Uint8Array(10 + cp).fill(cp), 0, 10 + cp, lo, receiver.localPort, cp);
        }
        sender.flush();
        await waitFor('four datagrams', () => got.length === 4);
        expect(got).toEqual(CODEPOINTS.map((cp) => ({ tag: cp, ecn: cp })));
        await waitFor('four captured datagrams', () => captured().length >= 4);
        expect(captured()).toEqual(CODEPOINTS.map((cp) => ({ length: 10 + cp, ecn: cp })));
        expect(sender.stats).toMatchObject({ datagramsSent: 4, sendErrors: 0, sendDrops: 0 });
      });

      it('mmsg marks only the datagrams that ask for it, across many batches', async () => {
        const receiver = await udp('mmsg', family, { address: loopback, batchSize: 64 });
        const got = collect(receiver);
        const sender = await udp('mmsg', family, { address: loopback, batchSize: 16 });
        // A pattern that is not periodic in the batch size, so every message slot of the sender
        // is reused with and without a control message.
        const ecnOf = (i: number) => (i % 7 < 4 ? (i * 5) % 4 : ECN_NOT_ECT);
        const payloads = Array.from({ length: 300 }, (_, i) => Uint8Array.of(i & 0xff, i >> 8));
        for (const [i, p] of payloads.entries()) sender.send(p, 0, 2, lo, receiver.localPort, ecnOf(i));
        sender.flush();
        await waitFor('300 datagrams', () => got.length === 300);
        expect(got.map((g) => g.ecn)).toEqual(payloads.map((_, i) => ecnOf(i)));
        expect(got.map((g) => g.tag)).toEqual(payloads.map((_, i) => i & 0xff));
      });

      it('dgram ignores the codepoint: its datagrams leave Not-ECT', async () => {
        const receiver = await udp('mmsg', family, { address: loopback });
        const got = collect(receiver);
        const sender = await udp('dgram', family, { address: loopback });
        for (const cp of CODEPOINTS) sender.send(Uint8Array.of(cp), 0, 1, lo, receiver.localPort, cp);
        sender.flush();
        await waitFor('four datagrams', () => got.length === 4);
        expect(got).toEqual(CODEPOINTS.map((cp) => ({ tag: cp, ecn: ECN_NOT_ECT })));
      });

      it.each(['mmsg', 'dgram'] as const)('%s refuses a value that is not a codepoint', async (strategy) => {
        const s = await udp(strategy, family);
        for (const bad of [4, -1, 1.5, 0xfc | ECN_CE, Number.NaN]) {
          expect(() => s.send(Uint8Array.of(1), 0, 1, lo, 9, bad)).toThrow(RangeError);
        }
        s.flush();
        expect(s.stats.datagramsSent).toBe(0);
      });
    });
  },
);
