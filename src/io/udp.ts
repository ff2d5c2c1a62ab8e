import type { GatewayError } from '../errors.js';
import type { DatagramBatch } from './packet-batch.js';
import { openDgramUdp } from './udp-dgram.js';
import { openMmsgUdp } from './udp-mmsg.js';

export { UDP_RECEIVE_BUFFER_BYTES, UDP_SEND_BUFFER_BYTES } from './udp-shared.js';

/**
 * UDP sockets for the tunnel (WireGuard, STUN, TURN), with two interchangeable implementations:
 *
 * - `'mmsg'`: a socket made through libc; readiness is awaited off the main thread (async
 *   poll), received with recvmmsg(2) straight into a preallocated batch (no copy, no allocation
 *   per datagram) and sent with sendmmsg(2) from the caller's buffers in batches. It learns each
 *   datagram's destination address (IP_PKTINFO) and ECN codepoint (IP_RECVTOS /
 *   IPV6_RECVTCLASS), sends each datagram with the ECN codepoint asked for (an IP_TOS /
 *   IPV6_TCLASS control message), and supports SO_MARK.
 * - `'dgram'`: `node:dgram`. Node allocates a Buffer and an address object per datagram; they
 *   are copied into the batch. No destination address, and no ECN either way: Node exposes
 *   neither ancillary data on receive nor a per-datagram TOS on send, so received datagrams
 *   read as Not-ECT and the `ecn` argument of `send` is ignored (the outer header is Not-ECT,
 *   RFC 6040 §4.1 compatibility mode: the inner header keeps its own codepoint). SO_MARK is set
 *   through the descriptor of Node's internal handle (not public API; an error names `'mmsg'`
 *   if it is unavailable).
 *
 * `bench/io.bench.ts` measures both.
 */
export type UdpStrategy = 'dgram' | 'mmsg';

export interface UdpStats {
  datagramsReceived: number;
  /** Datagrams the kernel accepted. */
  datagramsSent: number;
  /** Batches handed to `onDatagrams`. */
  receiveBatches: number;
  /** Receive calls that failed (other than EAGAIN/EINTR). */
  receiveErrors: number;
  /** Datagrams longer than a packet buffer: dropped. */
  receiveTruncated: number;
  /** Datagrams dropped because the socket's send buffer (or Node's send queue) was full. */
  sendDrops: number;
  /** Datagrams the kernel refused otherwise (EHOSTUNREACH, EPERM from a firewall, ...). */
  sendErrors: number;
}

export interface UdpSocket {
  /** `'memory'` for the in-memory twin (`memory-udp.ts`). */
  readonly strategy: UdpStrategy | 'memory';
  readonly family: 4 | 6;
  /** The bound address as text (`0.0.0.0`, `::` or a specific one). */
  readonly localAddress: string;
  readonly localPort: number;
  /** Buffer sizes the kernel granted (getsockopt: twice the request, capped by rmem_max/wmem_max). */
  readonly receiveBufferBytes: number;
  readonly sendBufferBytes: number;
  /**
   * Starts receiving. Each wake-up fills the reused batch (datagrams at offset 0) and calls
   * `onDatagrams` once; the batch is valid only during the call. Fatal socket errors go to
   * `onError`, or are thrown (an uncaught exception) without one. Call once.
   */
  start(onDatagrams: (batch: DatagramBatch) => void, onError?: (error: GatewayError) => void): void;
  /**
   * Queues `buf[off, off + len)` for `ip` (4 or 16 bytes, the socket's family) and `port`. The
   * bytes are read when the queue is flushed: by `flush()`, when the queue is full, or at the
   * end of the current tick (a microtask). Until then the caller must not change them. Failures
   * are counted in `stats`, never thrown; a RangeError means a range outside `buf`, an address
   * of the wrong family or an `ecn` other than 0–3.
   *
   * `ecn` is the ECN codepoint for the datagram's IP header: the router passes the inner
   * packet's, so the tunnel carries it (`spec/gateway-dataplane.md` §4 step 10, RFC 6040 §4.1
   * normal mode). The rest of the TOS / traffic class byte (DSCP) is 0. Ignored by `'dgram'`.
   */
  send(buf: Uint8Array, off: number, len: number, ip: Uint8Array, port: number, ecn?: number): void;
  /** Sends everything queued now. */
  flush(): void;
  readonly stats: Readonly<UdpStats>;
  /** Stops receiving, drops the send queue, closes the socket. Idempotent. */
  close(): Promise<void>;
}

export interface OpenUdpOptions {
  readonly family: 4 | 6;
  /** Bind address; the wildcard of the family by default. */
  readonly address?: string;
  /** 0 (default) lets the kernel pick. */
  readonly port?: number;
  readonly strategy: UdpStrategy;
  /** SO_MARK, e.g. 0xfd002021 so the gateway's own traffic skips the Firezone table (§10.2). */
  readonly fwmark?: number;
  /** Datagrams per receive batch and per send flush. */
  readonly batchSize?: number;
  /** Requested buffer sizes; the kernel caps them at net.core.rmem_max / wmem_max. */
  readonly receiveBufferBytes?: number;
  readonly sendBufferBytes?: number;
}

/**
 * Opens and binds a UDP socket in the calling thread's network namespace. IPv6 sockets are
 * IPv6-only (IPV6_V6ONLY), as the reference opens one socket per family. Rejects with
 * GW_ERR_UDP_OPEN (address in use, bad address, no permission for SO_MARK, ...).
 */
export function openUdp(options: OpenUdpOptions): Promise<UdpSocket> {
  return options.strategy === 'mmsg' ? openMmsgUdp(options) : openDgramUdp(options);
}
