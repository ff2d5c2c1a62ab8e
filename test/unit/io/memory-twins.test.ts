import { describe, expect, it } from 'vitest';
import { MemoryTun } from '../../../src/io/memory-tun.js';
import { MemoryUdpNetwork } from '../../../src/io/memory-udp.js';
import {
  createPacketBatch,
  type DatagramBatch,
  datagramDestination,
  datagramSource,
  PACKET_HEADROOM_BYTES,
  type PacketBatch,
} from '../../../src/io/packet-batch.js';
import { formatIp, parseIp } from '../../../src/wire/ip/address.js';
import { ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT } from '../../../src/wire/ip/constants.js';

describe('in-memory TUN device', () => {
  it('delivers injected packets in batches at the headroom offset, only on deliver()', () => {
    const tun = new MemoryTun({ batchSize: 2 });
    const seen: number[][] = [];
    tun.start((batch: PacketBatch) => {
      const sizes: number[] = [];
      for (let i = 0; i < batch.count; i++) {
        expect(batch.offsets[i]).toBe(PACKET_HEADROOM_BYTES);
        expect(batch.bufs[i]![PACKET_HEADROOM_BYTES]).toBe(0x45);
        sizes.push(batch.lengths[i]!);
      }
      seen.push(sizes);
    });
    for (const n of [20, 40, 60]) tun.inject(new Uint8Array(n).fill(0x45));
    expect(seen).toEqual([]);
    expect(tun.deliver()).toBe(3);
    expect(seen).toEqual([[20, 40], [60]]);
    expect(tun.stats).toMatchObject({ packetsRead: 3, wakeups: 2 });
  });

  it('records writes and configurations, and refuses I/O after close', async () => {
    const tun = new MemoryTun();
    await tun.configure({ ipv4: '100.66.0.1' });
    expect(tun.configurations).toEqual([{ ipv4: '100.66.0.1' }]);
    const batch = createPacketBatch(2);
    batch.bufs[0]!.set([1, 2, 3], 5);
    batch.offsets[0] = 5;
    batch.lengths[0] = 3;
    batch.count = 1;
    expect(tun.writeBatch(batch)).toBe(1);
    expect(tun.written).toEqual([Uint8Array.of(1, 2, 3)]);
    await tun.close();
    expect(tun.write(Uint8Array.of(1), 0, 1)).toBe(false);
    await expect(tun.configure({})).rejects.toMatchObject({ code: 'GW_ERR_NETLINK' });
  });
});

describe('in-memory UDP network', () => {
  it('moves datagrams between sockets on deliver(), with addresses like the real sockets', () => {
    const net = new MemoryUdpNetwork();
    const a = net.open({ family: 4, address: '192.0.2.1', port: 51820 });
    const b = net.open({ family: 4, address: '192.0.2.2' });
    const got: string[] = [];
    a.start((batch: DatagramBatch) => {
      for (let i = 0; i < batch.count; i++) {
        got.push(
          `${formatIp(datagramSource(batch, i))}:${batch.srcPorts[i]} -> ${formatIp(datagramDestination(batch, i))}:${batch.dstPorts[i]} ${batch.lengths[i]}`,
        );
      }
    });
    b.send(new Uint8Array(10), 2, 5, parseIp('192.0.2.1')!, 51820);
    b.send(new Uint8Array(10), 0, 10, parseIp('192.0.2.9')!, 51820);
    expect(got).toEqual([]);
    expect(net.deliver()).toBe(1);
    expect(got).toEqual([`192.0.2.2:${b.localPort} -> 192.0.2.1:51820 5`]);
    expect(net.undeliverable).toBe(1);
    expect(b.stats.datagramsSent).toBe(2);
  });

  it('lets a test take datagrams in flight and inject them back reordered', () => {
    const net = new MemoryUdpNetwork();
    const a = net.open({ family: 6, address: 'fd00::1' });
    const b = net.open({ family: 6, address: 'fd00::2' });
    const order: number[] = [];
    a.start((batch) => {
      for (let i = 0; i < batch.count; i++) order.push(batch.bufs[i]![0]!);
    });
    for (const v of [1, 2, 3]) b.send(Uint8Array.of(v), 0, 1, parseIp('fd00::1')!, a.localPort);
    const inFlight = net.take();
    net.inject(inFlight.reverse());
    net.deliver();
    expect(order).toEqual([3, 2, 1]);
  });

  it('carries the ECN codepoint given on send to the receiver, Not-ECT by default', () => {
    const net = new MemoryUdpNetwork();
    const a = net.open({ family: 4, address: '192.0.2.1' });
    const b = net.open({ family: 4, address: '192.0.2.2' });
    const seen: [number, number][] = [];
    a.start((batch) => {
      for (let i = 0; i < batch.count; i++) seen.push([batch.bufs[i]![0]!, batch.ecn[i]!]);
    });
    const to = parseIp('192.0.2.1')!;
    b.send(Uint8Array.of(0), 0, 1, to, a.localPort);
    for (const ecn of [ECN_ECT1, ECN_ECT0, ECN_CE, ECN_NOT_ECT]) {
      b.send(Uint8Array.of(ecn + 1), 0, 1, to, a.localPort, ecn);
    }
    net.deliver();
    expect(seen).toEqual([
      [0, ECN_NOT_ECT],
      [ECN_ECT1 + 1, ECN_ECT1],
      [ECN_ECT0 + 1, ECN_ECT0],
      [ECN_CE + 1, ECN_CE],
      [ECN_NOT_ECT + 1, ECN_NOT_ECT],
    ]);
    expect(() => b.send(Uint8Array.of(1), 0, 1, to, a.localPort, 4)).toThrow(RangeError);
  });

  it('lets a test mark datagrams CE in flight, as a congested router would', () => {
    const net = new MemoryUdpNetwork();
    const a = net.open({ family: 6, address: 'fd00::1' });
    const b = net.open({ family: 6, address: 'fd00::2' });
    const ecns: number[] = [];
    a.start((batch) => {
      for (let i = 0; i < batch.count; i++) ecns.push(batch.ecn[i]!);
    });
    b.send(Uint8Array.of(1), 0, 1, parseIp('fd00::1')!, a.localPort, ECN_ECT0);
    const [d] = net.take();
    expect(d!.ecn).toBe(ECN_ECT0);
    net.inject([{ ...d!, ecn: ECN_CE }]);
    net.deliver();
    expect(ecns).toEqual([ECN_CE]);
  });

  it('refuses wildcard and duplicate bindings', async () => {
    const net = new MemoryUdpNetwork();
    expect(() => net.open({ family: 4, address: '0.0.0.0' })).toThrow(/specific/);
    const a = net.open({ family: 4, address: '192.0.2.1', port: 5 });
    expect(() => net.open({ family: 4, address: '192.0.2.1', port: 5 })).toThrow(/in use/);
    await a.close();
    expect(net.open({ family: 4, address: '192.0.2.1', port: 5 }).localPort).toBe(5);
  });
});
