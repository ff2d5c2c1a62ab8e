import { GatewayError } from '../errors.js';
import { formatIp, parseIpv4, parseIpv6 } from '../wire/ip/address.js';
import { checkRange } from './native-memory.js';
import {
  ADDRESS_SLOT_BYTES,
  createDatagramBatch,
  type DatagramBatch,
  PACKET_BUFFER_BYTES,
} from './packet-batch.js';
import type { UdpSocket, UdpStats } from './udp.js';
import { checkDestination, checkEcn, newUdpStats } from './udp-shared.js';

/** First port handed out when a socket asks for port 0. */
const FIRST_EPHEMERAL_PORT = 49_152;

/** A datagram on the simulated network. */
export interface MemoryDatagram {
  readonly family: 4 | 6;
  readonly src: Uint8Array;
  readonly srcPort: number;
  readonly dst: Uint8Array;
  readonly dstPort: number;
  readonly data: Uint8Array;
  /** ECN codepoint (0–3) of the datagram's IP header, as given to `send`. */
  readonly ecn: number;
}

/**
 * The in-memory twin of the UDP sockets (wireguard-go's `bindtest`): sockets on one simulated
 * network exchange datagrams without the kernel, deterministically.
 *
 * Sockets bind specific addresses (no wildcard). `send()` copies the datagram at once; nothing
 * moves until `deliver()`, which flushes every socket's queue and hands each destination its
 * datagrams in batches, like the real sockets (offset 0, reused batch, `dstKnown`, and the ECN
 * codepoint given to `send` in `ecn`, as `'mmsg'` sockets carry it). A test can instead `take()`
 * the datagrams in flight to drop, delay, reorder or re-mark them (a congested router sets
 * `ecn` to CE) and `inject()` them back.
 */
export class MemoryUdpNetwork {
  private readonly sockets = new Map<string, MemoryUdpSocket>();
  private readonly inFlight: MemoryDatagram[] = [];
  private nextPort = FIRST_EPHEMERAL_PORT;
  /** Datagrams sent to an address and port no socket is bound to. */
  undeliverable = 0;

  open(options: { family: 4 | 6; address: string; port?: number; batchSize?: number }): MemoryUdpSocket {
    const address = options.family === 4 ? parseIpv4(options.address) : parseIpv6(options.address);
    if (!address || address.every((b) => b === 0)) {
      throw new GatewayError(
        'GW_ERR_UDP_OPEN',
        `memory UDP socket: '${options.address}' is not a specific IPv${options.family} address`,
      );
    }
    const port = options.port || this.nextPort++;
    const key = endpointKey(address, port);
    if (this.sockets.has(key))
      throw new GatewayError('GW_ERR_UDP_OPEN', `memory UDP socket: ${key} is in use (EADDRINUSE)`);
    const socket = new MemoryUdpSocket(this, options.family, address, port, options.batchSize ?? 128);
    this.sockets.set(key, socket);
    return socket;
  }

  /** Flushes every socket and delivers everything in flight; returns how many datagrams arrived. */
  deliver(): number {
    for (const s of this.sockets.values()) s.flush();
    const batches = new Map<MemoryUdpSocket, MemoryDatagram[]>();
    for (const d of this.inFlight.splice(0)) {
      const to = this.sockets.get(endpointKey(d.dst, d.dstPort));
      if (!to || to.family !== d.family) {
        this.undeliverable++;
        continue;
      }
      const list = batches.get(to) ?? [];
      list.push(d);
      batches.set(to, list);
    }
    let delivered = 0;
    for (const [socket, list] of batches) delivered += socket.receive(list);
    return delivered;
  }

  /** Removes and returns the datagrams in flight (after flushing every socket). */
  take(): MemoryDatagram[] {
    for (const s of this.sockets.values()) s.flush();
    return this.inFlight.splice(0);
  }

  /** Puts datagrams (e.g. from `take()`) back in flight. */
  inject(datagrams: readonly MemoryDatagram[]): void {
    this.inFlight.push(...datagrams);
  }

  /** @internal */
  enqueue(d: MemoryDatagram): void {
    this.inFlight.push(d);
  }

  /** @internal */
  unbind(socket: MemoryUdpSocket): void {
    this.sockets.delete(endpointKey(socket.address, socket.localPort));
  }
}

function endpointKey(address: Uint8Array, port: number): string {
  return `${formatIp(address)}#${port}`;
}

export class MemoryUdpSocket implements UdpSocket {
  readonly strategy = 'memory' as const;
  readonly localAddress: string;
  readonly receiveBufferBytes = 0;
  readonly sendBufferBytes = 0;
  readonly stats: UdpStats = newUdpStats();
  private readonly batch: DatagramBatch;
  private readonly queue: MemoryDatagram[] = [];
  private onDatagrams: ((batch: DatagramBatch) => void) | undefined;
  private closed = false;

  constructor(
    private readonly network: MemoryUdpNetwork,
    readonly family: 4 | 6,
    readonly address: Uint8Array,
    readonly localPort: number,
    batchSize: number,
  ) {
    this.localAddress = formatIp(address);
    this.batch = createDatagramBatch(family, batchSize);
    this.batch.dstPorts.fill(localPort);
  }

  start(onDatagrams: (batch: DatagramBatch) => void): void {
    if (this.closed)
      throw new GatewayError('GW_ERR_UDP_IO', `memory UDP socket ${this.localAddress} is closed`);
    if (this.onDatagrams)
      throw new GatewayError('GW_ERR_UDP_IO', `memory UDP socket ${this.localAddress} is already started`);
    this.onDatagrams = onDatagrams;
  }

  send(buf: Uint8Array, off: number, len: number, ip: Uint8Array, port: number, ecn = 0): void {
    checkRange(buf, off, len);
    checkDestination(this.family, ip, port);
    checkEcn(ecn);
    if (this.closed) {
      this.stats.sendErrors++;
      return;
    }
    this.queue.push({
      family: this.family,
      src: this.address,
      srcPort: this.localPort,
      dst: ip.slice(),
      dstPort: port,
      data: buf.slice(off, off + len),
      ecn,
    });
  }

  flush(): void {
    this.stats.datagramsSent += this.queue.length;
    for (const d of this.queue.splice(0)) this.network.enqueue(d);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.flush();
      this.closed = true;
      this.network.unbind(this);
    }
    return Promise.resolve();
  }

  /** @internal Hands `datagrams` to `onDatagrams` in batches; datagrams are dropped until `start()`. */
  receive(datagrams: readonly MemoryDatagram[]): number {
    const onDatagrams = this.onDatagrams;
    if (!onDatagrams || this.closed) return 0;
    const batch = this.batch;
    let at = 0;
    let delivered = 0;
    while (at < datagrams.length) {
      let n = 0;
      for (; n < batch.capacity && at < datagrams.length; at++) {
        const d = datagrams[at]!;
        if (d.data.length > PACKET_BUFFER_BYTES) {
          this.stats.receiveTruncated++;
          continue;
        }
        batch.bufs[n]!.set(d.data);
        batch.offsets[n] = 0;
        batch.lengths[n] = d.data.length;
        batch.srcAddrs.set(d.src, n * ADDRESS_SLOT_BYTES);
        batch.srcPorts[n] = d.srcPort;
        batch.dstAddrs.set(d.dst, n * ADDRESS_SLOT_BYTES);
        batch.ecn[n] = d.ecn;
        n++;
      }
      if (n === 0) continue;
      batch.count = n;
      batch.dstKnown = true;
      this.stats.receiveBatches++;
      this.stats.datagramsReceived += n;
      delivered += n;
      onDatagrams(batch);
    }
    return delivered;
  }
}
