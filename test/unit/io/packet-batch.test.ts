import { describe, expect, it } from 'vitest';
import {
  ADDRESS_SLOT_BYTES,
  createDatagramBatch,
  createPacketBatch,
  DEFAULT_BATCH_PACKETS,
  datagramDestination,
  datagramSource,
  MAX_IP_PACKET_BYTES,
  PACKET_BUFFER_BYTES,
  PACKET_HEADROOM_BYTES,
  PACKET_TAILROOM_BYTES,
  POLY1305_TAG_BYTES,
  TUN_READ_MAX_BYTES,
  TURN_CHANNEL_DATA_HEADER_BYTES,
  WIREGUARD_DATA_HEADER_BYTES,
} from '../../../src/io/packet-batch.js';
import { AEAD_TAG_BYTES, DATA_HEADER_BYTES } from '../../../src/wire/wireguard/constants.js';

describe('packet buffers', () => {
  it('leave room to seal a TUN packet in place and relay it through TURN', () => {
    expect(PACKET_HEADROOM_BYTES).toBe(TURN_CHANNEL_DATA_HEADER_BYTES + WIREGUARD_DATA_HEADER_BYTES);
    expect(PACKET_HEADROOM_BYTES).toBe(20);
    // The sizes agree with the WireGuard core's.
    expect(WIREGUARD_DATA_HEADER_BYTES).toBe(DATA_HEADER_BYTES);
    expect(POLY1305_TAG_BYTES).toBe(AEAD_TAG_BYTES);
    // A full 1280-byte packet read at the headroom keeps at least the tag's room after it.
    expect(PACKET_BUFFER_BYTES - PACKET_HEADROOM_BYTES - MAX_IP_PACKET_BYTES).toBeGreaterThanOrEqual(
      PACKET_TAILROOM_BYTES,
    );
    // Every byte a TUN read may fill leaves the tailroom free.
    expect(PACKET_HEADROOM_BYTES + TUN_READ_MAX_BYTES + PACKET_TAILROOM_BYTES).toBe(PACKET_BUFFER_BYTES);
    expect(TUN_READ_MAX_BYTES).toBeGreaterThanOrEqual(MAX_IP_PACKET_BYTES);
  });

  it('hold the largest datagram a 1500-byte path carries, so a relayed WireGuard packet fits', () => {
    const largestRelayedWireGuard =
      TURN_CHANNEL_DATA_HEADER_BYTES + DATA_HEADER_BYTES + MAX_IP_PACKET_BYTES + AEAD_TAG_BYTES;
    expect(largestRelayedWireGuard).toBe(1316);
    expect(PACKET_BUFFER_BYTES).toBeGreaterThanOrEqual(1500 - 20 - 8);
  });
});

describe('packet batches', () => {
  it('are consecutive, non-overlapping slices of one ArrayBuffer', () => {
    const batch = createPacketBatch(8);
    expect(batch.capacity).toBe(8);
    expect(batch.count).toBe(0);
    expect(batch.memory.byteLength).toBe(8 * PACKET_BUFFER_BYTES);
    batch.bufs.forEach((buf, i) => {
      expect(buf.buffer).toBe(batch.memory);
      expect(buf.byteOffset).toBe(i * PACKET_BUFFER_BYTES);
      expect(buf.length).toBe(PACKET_BUFFER_BYTES);
    });
    batch.bufs[3]!.fill(0xff);
    expect(batch.bufs[2]!.every((b) => b === 0)).toBe(true);
    expect(batch.bufs[4]!.every((b) => b === 0)).toBe(true);
    expect(batch.offsets).toHaveLength(8);
    expect(batch.lengths).toHaveLength(8);
  });

  it('default to the TUN batch size and refuse nonsensical capacities', () => {
    expect(createPacketBatch().capacity).toBe(DEFAULT_BATCH_PACKETS);
    for (const bad of [0, -1, 1.5, 5000, Number.NaN])
      expect(() => createPacketBatch(bad)).toThrow(RangeError);
  });

  it('keep datagram addresses in 16-byte slots and hand out views of the right length', () => {
    const v4 = createDatagramBatch(4, 4);
    expect(v4.srcAddrs).toHaveLength(4 * ADDRESS_SLOT_BYTES);
    v4.srcAddrs.set([192, 0, 2, 7], 2 * ADDRESS_SLOT_BYTES);
    expect([...datagramSource(v4, 2)]).toEqual([192, 0, 2, 7]);
    const v6 = createDatagramBatch(6, 4);
    v6.dstAddrs[ADDRESS_SLOT_BYTES + 15] = 1;
    expect(datagramDestination(v6, 1)).toHaveLength(16);
    expect(datagramDestination(v6, 1)[15]).toBe(1);
    expect(v6.dstKnown).toBe(false);
    expect(v6.family).toBe(6);
  });

  it('keep one ECN codepoint per datagram, Not-ECT until a socket reports one', () => {
    const batch = createDatagramBatch(4, 5);
    expect(batch.ecn).toBeInstanceOf(Uint8Array);
    expect([...batch.ecn]).toEqual([0, 0, 0, 0, 0]);
  });
});
