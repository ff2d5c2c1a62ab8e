import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DnsListener } from '../../../src/io/dns-server.js';
import { createDnsUpstream } from '../../../src/io/dns-upstream.js';
import { parseIp } from '../../../src/wire/ip/address.js';

/**
 * The DNS sockets on loopback: the in-tunnel server's listener (UDP, TCP with length framing and
 * pipelining, rebinding) and the upstream exchanges (connected UDP, TCP, refused, aborted).
 */

const LOG = { info: () => undefined, warn: () => undefined, error: () => undefined };
const LOOPBACK = parseIp('127.0.0.1')!;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** A free loopback port (UDP and TCP both free, as far as one can tell). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

function framed(payload: Uint8Array): Buffer {
  const b = Buffer.alloc(2 + payload.length);
  b.writeUInt16BE(payload.length, 0);
  b.set(payload, 2);
  return b;
}

describe('DnsListener', () => {
  it('answers over UDP and over TCP, pipelined queries in order', async () => {
    const port = await freePort();
    const seen: string[] = [];
    const listener = new DnsListener(
      async (q, transport) => {
        seen.push(`${transport}:${q[0]}`);
        // The first TCP query takes longer: answers must still come in order.
        if (transport === 'tcp' && q[0] === 1) await new Promise((r) => setTimeout(r, 30));
        return Uint8Array.of(q[0]!, 0xaa);
      },
      LOG,
      port,
    );
    cleanups.push(() => listener.close());
    await listener.listen(['127.0.0.1']);
    expect(listener.addresses).toEqual(['127.0.0.1']);

    const udp = createSocket('udp4');
    cleanups.push(() => void udp.close());
    const udpAnswer = new Promise<Buffer>((r) => udp.once('message', r));
    udp.send(Uint8Array.of(7, 1, 2), port, '127.0.0.1');
    expect([...(await udpAnswer)]).toEqual([7, 0xaa]);

    const sock = connect(port, '127.0.0.1');
    cleanups.push(() => void sock.destroy());
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    await new Promise((r) => sock.once('connect', r));
    // Two queries in one write, the second split over two writes.
    const both = Buffer.concat([framed(Uint8Array.of(1, 9)), framed(Uint8Array.of(2, 9))]);
    sock.write(both.subarray(0, 6));
    await new Promise((r) => setTimeout(r, 10));
    sock.write(both.subarray(6));
    for (let i = 0; i < 50 && Buffer.concat(chunks).length < 8; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect([...Buffer.concat(chunks)]).toEqual([0, 2, 1, 0xaa, 0, 2, 2, 0xaa]);
    expect(seen).toEqual(['udp:7', 'tcp:1', 'tcp:2']);
  });

  it('closes a TCP connection whose query is dropped, and stops serving addresses no longer listed', async () => {
    const port = await freePort();
    const listener = new DnsListener(async () => undefined, LOG, port);
    cleanups.push(() => listener.close());
    await listener.listen(['127.0.0.1']);
    const sock = connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const closed = new Promise((r) => sock.once('close', r));
    sock.write(framed(Uint8Array.of(1, 2, 3)));
    await closed;
    await listener.listen([]);
    expect(listener.addresses).toEqual([]);
    const refused = connect(port, '127.0.0.1');
    const err = await new Promise<NodeJS.ErrnoException>((r) => refused.once('error', r));
    expect(err.code).toBe('ECONNREFUSED');
  });
});

describe('DNS upstream', () => {
  it('exchanges over connected UDP and over framed TCP', async () => {
    const port = await freePort();
    const udp = createSocket('udp4');
    udp.on('message', (m, r) => udp.send(Buffer.concat([m, Buffer.from([0xee])]), r.port, r.address));
    await new Promise<void>((r) => udp.bind(port, '127.0.0.1', () => r()));
    cleanups.push(() => void udp.close());
    const tcp = createServer((s) => {
      s.once('data', (d: Buffer) => s.write(framed(Uint8Array.of(...d.subarray(2), 0xdd))));
    });
    await new Promise<void>((r) => tcp.listen(port, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => tcp.close(() => r())));
    const up = createDnsUpstream({ port });
    const signal = new AbortController().signal;
    expect(await up.exchange(LOOPBACK, Uint8Array.of(1, 2), 'udp', signal)).toEqual({
      ok: true,
      value: Uint8Array.of(1, 2, 0xee),
    });
    expect(await up.exchange(LOOPBACK, Uint8Array.of(3, 4), 'tcp', signal)).toEqual({
      ok: true,
      value: Uint8Array.of(3, 4, 0xdd),
    });
  });

  it('reports a refused server as unreachable at once, and an aborted exchange as a timeout', async () => {
    const port = await freePort();
    const up = createDnsUpstream({ port });
    const signal = new AbortController().signal;
    const udp = await up.exchange(LOOPBACK, Uint8Array.of(1), 'udp', signal);
    expect(udp.ok === false && udp.error.code).toBe('unreachable');
    const tcp = await up.exchange(LOOPBACK, Uint8Array.of(1), 'tcp', signal);
    expect(tcp.ok === false && tcp.error.code).toBe('unreachable');
    // A silent server: the caller's deadline aborts the exchange and its socket closes.
    const silent = createSocket('udp4');
    await new Promise<void>((r) => silent.bind(port, '127.0.0.1', () => r()));
    cleanups.push(() => void silent.close());
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 20);
    const r = await up.exchange(LOOPBACK, Uint8Array.of(1), 'udp', abort.signal);
    expect(r.ok === false && r.error.code).toBe('timeout');
  });
});
