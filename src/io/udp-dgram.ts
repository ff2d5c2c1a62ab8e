import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { GatewayError } from '../errors.js';
import { SO_MARK, SOL_SOCKET } from '../native/abi.js';
import { getLibc } from '../native/libc.js';
import { formatIp, parseIpv4, parseIpv6 } from '../wire/ip/address.js';
import { checkRange } from './native-memory.js';
import { osError } from './os-error.js';
import {
  ADDRESS_SLOT_BYTES,
  createDatagramBatch,
  type DatagramBatch,
  PACKET_BUFFER_BYTES,
} from './packet-batch.js';
import type { OpenUdpOptions, UdpSocket, UdpStats } from './udp.js';
import { checkDestination, checkEcn, newUdpStats, openError, planUdp, type UdpPlan } from './udp-shared.js';

/**
 * Sends waiting in Node's queue (the kernel buffer was full) beyond which new datagrams are
 * dropped, so a stalled socket cannot grow the queue without bound.
 */
export const DGRAM_MAX_QUEUED_SENDS = 1024;
/** How long close() waits for sends still in flight (the reference flushes for up to 1 s, §9). */
export const DGRAM_CLOSE_DRAIN_MS = 1_000;
/** Distinct peer addresses whose parsed bytes are cached before the cache starts over. */
const ADDRESS_CACHE_ENTRIES = 1024;

/** The `'dgram'` strategy: see `UdpSocket` in `udp.ts`. */
export async function openDgramUdp(options: OpenUdpOptions): Promise<UdpSocket> {
  const plan = planUdp(options);
  const socket = createSocket({
    type: plan.family === 4 ? 'udp4' : 'udp6',
    ipv6Only: plan.family === 6,
    recvBufferSize: plan.receiveBufferBytes,
    sendBufferSize: plan.sendBufferBytes,
  });
  const where = plan.family === 4 ? `${plan.addressText}:${plan.port}` : `[${plan.addressText}]:${plan.port}`;
  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      socket.close();
      reject(
        new GatewayError('GW_ERR_UDP_OPEN', `bind UDP ${where} failed: ${error.code ?? error.message}`, {
          cause: error,
        }),
      );
    };
    socket.once('error', onError);
    socket.bind({ address: plan.addressText, port: plan.port, exclusive: true }, () => {
      socket.off('error', onError);
      resolve();
    });
  });
  if (plan.fwmark !== undefined) {
    const fd = descriptorOf(socket);
    if (fd === undefined) {
      socket.close();
      throw openError(
        `fwmark on a node:dgram socket needs its descriptor, which this Node.js version does not expose; use strategy 'mmsg'`,
      );
    }
    const libc = getLibc();
    if (libc.setsockopt(fd, SOL_SOCKET, SO_MARK, new Int32Array([plan.fwmark | 0]), 4) !== 0) {
      const errno = libc.errno();
      socket.close();
      throw osError('GW_ERR_UDP_OPEN', `set SO_MARK 0x${plan.fwmark.toString(16)} on ${where}`, errno);
    }
  }
  return new DgramUdp(socket, plan);
}

/**
 * The descriptor behind a bound `dgram.Socket`, read from Node's internal handle (the UDPWrap's
 * `fd`, reached through the socket's `state symbol`). Not public API, hence the fallback: undefined.
 */
function descriptorOf(socket: Socket): number | undefined {
  const key = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  const state =
    key === undefined ? undefined : (socket as unknown as Record<symbol, { handle?: { fd?: unknown } }>)[key];
  const fd = state?.handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

type SocketState = 'open' | 'closing' | 'closed';

class DgramUdp implements UdpSocket {
  readonly strategy = 'dgram' as const;
  readonly family: 4 | 6;
  readonly localAddress: string;
  readonly localPort: number;
  readonly receiveBufferBytes: number;
  readonly sendBufferBytes: number;
  readonly stats: UdpStats = newUdpStats();
  private readonly capacity: number;
  private readonly batch: DatagramBatch;
  private readonly addressCache = new Map<string, Uint8Array>();
  private deliverScheduled = false;
  private readonly deliverTask = (): void => {
    this.deliverScheduled = false;
    this.deliver();
  };
  private readonly onMessage = (msg: Buffer, rinfo: RemoteInfo): void => this.receive(msg, rinfo);
  private onDatagrams: ((batch: DatagramBatch) => void) | undefined;
  // Send queue: references and copies of the caller's arguments until the flush.
  private readonly sendBufs: (Uint8Array | undefined)[];
  private readonly sendOffsets: Int32Array;
  private readonly sendLengths: Int32Array;
  private readonly sendAddrs: Uint8Array;
  private readonly sendPorts: Uint16Array;
  private queued = 0;
  private flushScheduled = false;
  private readonly flushTask = (): void => {
    this.flushScheduled = false;
    this.flush();
  };
  private readonly lastPeer = new Uint8Array(16);
  private lastPeerText = '';
  /** Sends handed to Node whose outcome is not known yet (Node resolves the address first). */
  private inFlight = 0;
  private drained: (() => void) | undefined;
  private readonly onSent = (error: Error | null): void => {
    if (--this.inFlight === 0) this.drained?.();
    if (!error) this.stats.datagramsSent++;
    else if (
      (error as NodeJS.ErrnoException).code === 'EAGAIN' ||
      (error as NodeJS.ErrnoException).code === 'ENOBUFS'
    ) {
      this.stats.sendDrops++;
    } else this.stats.sendErrors++;
  };
  private state: SocketState = 'open';
  private closing: Promise<void> | undefined;

  constructor(
    private readonly socket: Socket,
    plan: UdpPlan,
  ) {
    this.family = plan.family;
    const bound = socket.address();
    this.localAddress = bound.address;
    this.localPort = bound.port;
    this.receiveBufferBytes = socket.getRecvBufferSize();
    this.sendBufferBytes = socket.getSendBufferSize();
    const n = plan.batchSize;
    this.capacity = n;
    // `batch.ecn` stays all 0 (Not-ECT): Node does not pass on the TOS / traffic class.
    this.batch = createDatagramBatch(plan.family, n);
    this.batch.dstPorts.fill(this.localPort);
    this.sendBufs = new Array<Uint8Array | undefined>(n).fill(undefined);
    this.sendOffsets = new Int32Array(n);
    this.sendLengths = new Int32Array(n);
    this.sendAddrs = new Uint8Array(n * ADDRESS_SLOT_BYTES);
    this.sendPorts = new Uint16Array(n);
    // Receive errors arrive as 'error' events (sends report through their callback): count them.
    socket.on('error', () => {
      this.stats.receiveErrors++;
    });
  }

  start(onDatagrams: (batch: DatagramBatch) => void, _onError?: (error: GatewayError) => void): void {
    if (this.state !== 'open')
      throw new GatewayError('GW_ERR_UDP_IO', `UDP socket ${this.describe()} is closed`);
    if (this.onDatagrams)
      throw new GatewayError('GW_ERR_UDP_IO', `UDP socket ${this.describe()} is already started`);
    // node:dgram has no fatal receive errors to report: each one is an 'error' event, counted.
    this.onDatagrams = onDatagrams;
    this.socket.on('message', this.onMessage);
  }

  /**
   * `ecn` is checked and then ignored: node:dgram has no per-datagram TOS / traffic class, so
   * every datagram leaves Not-ECT (see `UdpStrategy`).
   */
  send(buf: Uint8Array, off: number, len: number, ip: Uint8Array, port: number, ecn = 0): void {
    checkRange(buf, off, len);
    checkDestination(this.family, ip, port);
    checkEcn(ecn);
    if (this.state !== 'open') {
      this.stats.sendErrors++;
      return;
    }
    const i = this.queued;
    this.sendBufs[i] = buf;
    this.sendOffsets[i] = off;
    this.sendLengths[i] = len;
    this.sendAddrs.set(ip, i * ADDRESS_SLOT_BYTES);
    this.sendPorts[i] = port;
    this.queued = i + 1;
    if (this.queued === this.capacity) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushTask);
    }
  }

  flush(): void {
    const n = this.queued;
    for (let i = 0; i < n; i++) {
      const buf = this.sendBufs[i]!;
      this.sendBufs[i] = undefined;
      if (this.socket.getSendQueueCount() >= DGRAM_MAX_QUEUED_SENDS) {
        this.stats.sendDrops++;
        continue;
      }
      // Node may keep the bytes queued after send() returns (kernel buffer full), so it gets a
      // copy: the caller may reuse its buffer once flush() returns.
      const copy = Buffer.copyBytesFrom(buf, this.sendOffsets[i]!, this.sendLengths[i]!);
      this.inFlight++;
      this.socket.send(copy, this.sendPorts[i]!, this.peerText(i), this.onSent);
    }
    this.queued = 0;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.flush();
    this.state = 'closing';
    this.socket.off('message', this.onMessage);
    // Node sends only after an asynchronous address lookup: closing now would drop the last
    // datagrams (goodbyes). Wait for them, but not forever.
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, DGRAM_CLOSE_DRAIN_MS);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
    this.state = 'closed';
  }

  private describe(): string {
    return this.family === 4
      ? `${this.localAddress}:${this.localPort}`
      : `[${this.localAddress}]:${this.localPort}`;
  }

  private receive(msg: Buffer, rinfo: RemoteInfo): void {
    if (msg.length > PACKET_BUFFER_BYTES) {
      this.stats.receiveTruncated++;
      return;
    }
    const address = this.parsePeer(rinfo.address);
    if (!address) {
      this.stats.receiveErrors++;
      return;
    }
    if (this.batch.count === this.capacity) this.deliver();
    const batch = this.batch;
    const i = batch.count;
    batch.bufs[i]!.set(msg);
    batch.offsets[i] = 0;
    batch.lengths[i] = msg.length;
    batch.srcAddrs.set(address, i * ADDRESS_SLOT_BYTES);
    batch.srcPorts[i] = rinfo.port;
    batch.count = i + 1;
    // Everything libuv read in this loop iteration arrives before the check phase: one batch.
    if (!this.deliverScheduled) {
      this.deliverScheduled = true;
      setImmediate(this.deliverTask);
    }
  }

  private deliver(): void {
    const batch = this.batch;
    if (batch.count === 0 || this.state !== 'open') return;
    this.stats.receiveBatches++;
    this.stats.datagramsReceived += batch.count;
    try {
      this.onDatagrams!(batch);
    } finally {
      batch.count = 0;
    }
  }

  private parsePeer(text: string): Uint8Array | undefined {
    let bytes = this.addressCache.get(text);
    if (bytes) return bytes;
    // Link-local peers carry a zone (`fe80::1%eth0`); the address bytes are what we keep.
    const zone = text.indexOf('%');
    const bare = zone === -1 ? text : text.slice(0, zone);
    bytes = this.family === 4 ? parseIpv4(bare) : parseIpv6(bare);
    if (!bytes) return undefined;
    if (this.addressCache.size >= ADDRESS_CACHE_ENTRIES) this.addressCache.clear();
    this.addressCache.set(text, bytes);
    return bytes;
  }

  private peerText(i: number): string {
    const at = i * ADDRESS_SLOT_BYTES;
    const len = this.family === 4 ? 4 : 16;
    let same = this.lastPeerText !== '';
    for (let b = 0; same && b < len; b++) same = this.sendAddrs[at + b] === this.lastPeer[b];
    if (!same) {
      for (let b = 0; b < len; b++) this.lastPeer[b] = this.sendAddrs[at + b]!;
      this.lastPeerText = formatIp(this.sendAddrs, at, len);
    }
    return this.lastPeerText;
  }
}
