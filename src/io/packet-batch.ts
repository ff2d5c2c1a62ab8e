import { MAX_IP_PACKET_BYTES } from '../wire/ip/constants.js';

/**
 * Preallocated, reusable batches of packet buffers: what the TUN device and the UDP sockets fill
 * and the router consumes, one wake-up at a time.
 *
 * Every buffer is `PACKET_BUFFER_BYTES` long and all buffers of a batch are consecutive slices of
 * one ArrayBuffer (so the native layer computes their addresses once). Nothing is allocated per
 * packet or per batch: the producer overwrites the same buffers on each drain, so a batch is
 * valid only until the callback it was handed to returns. Copy what must outlive it.
 *
 * Layout of one buffer (headroom instead of copies, as wireguard-go's send path does):
 *
 *   TUN packet:  [ 20 headroom ][ IP packet ≤ 1280 ][ ≥ 16 tailroom ... ]
 *   after seal:  [ 4 TURN ][ 16 WG header ][ ciphertext ][ 16 Poly1305 tag ]
 *   datagram:    [ datagram from offset 0 ... ] (decryption later happens in place)
 *
 * so the router encrypts a TUN packet in place, prepends the WireGuard data header and, for a
 * relayed path, the TURN channel-data header, without moving the payload.
 */

// --- Specification constants ------------------------------------------------------------------

/** TURN ChannelData header: channel number u16 + length u16 (RFC 8656 §12.4). */
export const TURN_CHANNEL_DATA_HEADER_BYTES = 4;
/** WireGuard transport data header: type u32, receiver u32, counter u64 (WireGuard paper §5.4.6). */
export const WIREGUARD_DATA_HEADER_BYTES = 16;
/** ChaCha20-Poly1305 authentication tag (RFC 8439 §2.8). */
export const POLY1305_TAG_BYTES = 16;

// --- Implementation constants -----------------------------------------------------------------

/** Room before a TUN packet for the headers the router prepends in place. */
export const PACKET_HEADROOM_BYTES = TURN_CHANNEL_DATA_HEADER_BYTES + WIREGUARD_DATA_HEADER_BYTES;
/** Room that must stay free after a TUN packet for the AEAD tag. */
export const PACKET_TAILROOM_BYTES = POLY1305_TAG_BYTES;
/**
 * Length of every packet buffer. It must hold headroom + a 1280-byte packet + tag (1316 bytes);
 * it is 1536 so a receive buffer also holds any datagram a 1500-byte path carries (1472 bytes of
 * IPv4 UDP payload), e.g. a TURN Data indication wrapping a full WireGuard packet. Larger
 * datagrams are truncated by the kernel and dropped (counted).
 */
export const PACKET_BUFFER_BYTES = 1536;
/** Longest read from the TUN device at `PACKET_HEADROOM_BYTES`, leaving the tailroom free. */
export const TUN_READ_MAX_BYTES = PACKET_BUFFER_BYTES - PACKET_HEADROOM_BYTES - PACKET_TAILROOM_BYTES;
/** Packets per drain unless configured otherwise (the reference reads ≤ 100 per tick, §2). */
export const DEFAULT_BATCH_PACKETS = 128;
/** Address slots are 16 bytes for both families; an IPv4 address fills the first 4. */
export const ADDRESS_SLOT_BYTES = 16;

/** Largest packet the data plane forwards (`spec/gateway-dataplane.md` §1). */
export { MAX_IP_PACKET_BYTES };

/**
 * A batch of packets. Packet `i` (for `i < count`) is `bufs[i]` from `offsets[i]` for
 * `lengths[i]` bytes. A consumer may rewrite bytes and offsets/lengths in place (to encrypt or
 * NAT) and hand the same batch to a writer.
 */
export interface PacketBatch {
  /** Number of packets in the batch, ≤ `capacity`. */
  count: number;
  readonly capacity: number;
  /** `capacity` buffers of `PACKET_BUFFER_BYTES`, consecutive slices of `memory`. */
  readonly bufs: readonly Uint8Array[];
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;
  /** The ArrayBuffer backing every buffer (buffer `i` starts at `i * PACKET_BUFFER_BYTES`). */
  readonly memory: ArrayBuffer;
}

/**
 * A batch of received datagrams: packet fields as in `PacketBatch` (offsets are 0) plus the
 * addressing of each datagram. Addresses sit in 16-byte slots (`ADDRESS_SLOT_BYTES`): datagram
 * `i`'s source is `srcAddrs[16 i ..]`, 4 bytes for IPv4 and 16 for IPv6, per `family`.
 */
export interface DatagramBatch extends PacketBatch {
  readonly family: 4 | 6;
  readonly srcAddrs: Uint8Array;
  readonly srcPorts: Uint16Array;
  /**
   * The local address each datagram was sent to (from IP_PKTINFO / IPV6_PKTINFO), which tells
   * a wildcard-bound socket which of its addresses a peer used. Valid only when `dstKnown`.
   */
  readonly dstAddrs: Uint8Array;
  /** The local port (the socket's), repeated per datagram. */
  readonly dstPorts: Uint16Array;
  /** False when the socket cannot learn the destination address (`node:dgram`). */
  dstKnown: boolean;
  /**
   * The ECN codepoint (0–3: Not-ECT, ECT(1), ECT(0), CE; RFC 3168 §5) of the outer IP header
   * each datagram arrived in, from the IP_TOS / IPV6_TCLASS control message, for the router's
   * merge into the decrypted packet (`spec/gateway-dataplane.md` §3 step 10). 0 (Not-ECT) when
   * the socket cannot learn it (`node:dgram`) or the kernel did not report it.
   */
  readonly ecn: Uint8Array;
}

/** Allocates a batch of `capacity` buffers (the only allocation a batch ever makes). */
export function createPacketBatch(capacity: number = DEFAULT_BATCH_PACKETS): PacketBatch {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 4096) {
    throw new RangeError(`batch capacity ${capacity}: expected an integer from 1 to 4096`);
  }
  const memory = new ArrayBuffer(capacity * PACKET_BUFFER_BYTES);
  const bufs: Uint8Array[] = [];
  for (let i = 0; i < capacity; i++)
    bufs.push(new Uint8Array(memory, i * PACKET_BUFFER_BYTES, PACKET_BUFFER_BYTES));
  return {
    count: 0,
    capacity,
    bufs,
    offsets: new Int32Array(capacity),
    lengths: new Int32Array(capacity),
    memory,
  };
}

/** Allocates a datagram batch for a socket of `family`. */
export function createDatagramBatch(family: 4 | 6, capacity: number = DEFAULT_BATCH_PACKETS): DatagramBatch {
  const base = createPacketBatch(capacity);
  return {
    ...base,
    family,
    srcAddrs: new Uint8Array(capacity * ADDRESS_SLOT_BYTES),
    srcPorts: new Uint16Array(capacity),
    dstAddrs: new Uint8Array(capacity * ADDRESS_SLOT_BYTES),
    dstPorts: new Uint16Array(capacity),
    dstKnown: false,
    ecn: new Uint8Array(capacity),
  };
}

/** The source address of datagram `i` as a view (4 or 16 bytes). Allocates a view: not per packet. */
export function datagramSource(batch: DatagramBatch, i: number): Uint8Array {
  const at = i * ADDRESS_SLOT_BYTES;
  return batch.srcAddrs.subarray(at, at + (batch.family === 4 ? 4 : 16));
}

/** The destination (local) address of datagram `i` as a view; meaningful only when `dstKnown`. */
export function datagramDestination(batch: DatagramBatch, i: number): Uint8Array {
  const at = i * ADDRESS_SLOT_BYTES;
  return batch.dstAddrs.subarray(at, at + (batch.family === 4 ? 4 : 16));
}
