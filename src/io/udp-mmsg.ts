import { GatewayError } from '../errors.js';
import {
  AF_INET,
  AF_INET6,
  CMSG_ALIGN_BYTES,
  CMSGHDR_BYTES,
  CMSGHDR_LEVEL_OFFSET,
  CMSGHDR_TYPE_OFFSET,
  IN_PKTINFO_ADDR_OFFSET,
  IN_PKTINFO_BYTES,
  IN6_PKTINFO_ADDR_OFFSET,
  IN6_PKTINFO_BYTES,
  IOVEC_BYTES,
  IP_PKTINFO,
  IP_RECVTOS,
  IP_TOS,
  IP_TOS_RECV_BYTES,
  IPPROTO_IP,
  IPPROTO_IPV6,
  IPV6_PKTINFO,
  IPV6_RECVPKTINFO,
  IPV6_RECVTCLASS,
  IPV6_TCLASS,
  IPV6_V6ONLY,
  MMSGHDR_BYTES,
  MMSGHDR_LEN_OFFSET,
  MSG_DONTWAIT,
  MSG_TRUNC,
  MSGHDR_CONTROL_OFFSET,
  MSGHDR_CONTROLLEN_OFFSET,
  MSGHDR_FLAGS_OFFSET,
  MSGHDR_IOV_OFFSET,
  MSGHDR_IOVLEN_OFFSET,
  MSGHDR_NAME_OFFSET,
  MSGHDR_NAMELEN_OFFSET,
  POLLIN,
  POLLNVAL,
  SO_MARK,
  SO_RCVBUF,
  SO_SNDBUF,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCKADDR_IN_BYTES,
  SOCKADDR_IN6_BYTES,
  SOL_SOCKET,
  TOS_INT_BYTES,
} from '../native/abi.js';
import { getLibc, type Libc, nativeAddress } from '../native/libc.js';
import { formatIp } from '../wire/ip/address.js';
import { addressOf, checkRange } from './native-memory.js';
import { ERRNO, osError } from './os-error.js';
import {
  ADDRESS_SLOT_BYTES,
  createDatagramBatch,
  type DatagramBatch,
  PACKET_BUFFER_BYTES,
} from './packet-batch.js';
import { ReadinessWaiter } from './readiness.js';
import type { OpenUdpOptions, UdpSocket, UdpStats } from './udp.js';
import {
  checkDestination,
  checkEcn,
  ECN_MASK,
  MAX_CONSECUTIVE_RECEIVE_ERRORS,
  newUdpStats,
  planUdp,
  type UdpPlan,
} from './udp-shared.js';

/** Bytes reserved per message for the peer address (a sockaddr_in6, rounded up to 8). */
const NAME_SLOT_BYTES = 32;

/** `CMSG_SPACE(dataBytes)`: a control message with its payload, padded for the next one. */
function cmsgSpace(dataBytes: number): number {
  return CMSGHDR_BYTES + ((dataBytes + CMSG_ALIGN_BYTES - 1) & -CMSG_ALIGN_BYTES);
}

/**
 * Bytes reserved per received message for ancillary data: the pktinfo message then the
 * traffic class message, the two we ask for, in the order the kernel writes them
 * (`ip_cmsg_recv_offset`, `ip6_datagram_recv_specific_ctl`). IPv6 needs 40 + 24 = 64, IPv4
 * 32 + 24 = 56. A message that does not fit is cut (MSG_CTRUNC) and then ignored.
 */
const CONTROL_SLOT_BYTES = Math.max(
  cmsgSpace(IN_PKTINFO_BYTES) + cmsgSpace(IP_TOS_RECV_BYTES),
  cmsgSpace(IN6_PKTINFO_BYTES) + cmsgSpace(TOS_INT_BYTES),
);
/** Bytes per sent message for its one optional control message: IP_TOS / IPV6_TCLASS, an int. */
const SEND_CONTROL_SLOT_BYTES = cmsgSpace(TOS_INT_BYTES);

/** The `'mmsg'` strategy: see `UdpSocket` in `udp.ts`. */
export async function openMmsgUdp(options: OpenUdpOptions): Promise<UdpSocket> {
  const plan = planUdp(options);
  const libc = getLibc();
  const v4 = plan.family === 4;
  const fd = libc.socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw osError('GW_ERR_UDP_OPEN', `create IPv${plan.family} UDP socket`, libc.errno());
  try {
    const where = `${v4 ? plan.addressText : `[${plan.addressText}]`}:${plan.port}`;
    if (!v4) setIntOption(libc, fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, `set IPV6_V6ONLY on ${where}`);
    setIntOption(libc, fd, SOL_SOCKET, SO_RCVBUF, plan.receiveBufferBytes, `set SO_RCVBUF on ${where}`);
    setIntOption(libc, fd, SOL_SOCKET, SO_SNDBUF, plan.sendBufferBytes, `set SO_SNDBUF on ${where}`);
    if (plan.fwmark !== undefined) {
      setIntOption(
        libc,
        fd,
        SOL_SOCKET,
        SO_MARK,
        plan.fwmark,
        `set SO_MARK 0x${plan.fwmark.toString(16)} on ${where}`,
        'needs CAP_NET_ADMIN',
      );
    }
    if (v4) {
      setIntOption(libc, fd, IPPROTO_IP, IP_PKTINFO, 1, `set IP_PKTINFO on ${where}`);
      setIntOption(libc, fd, IPPROTO_IP, IP_RECVTOS, 1, `set IP_RECVTOS on ${where}`);
    } else {
      setIntOption(libc, fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, `set IPV6_RECVPKTINFO on ${where}`);
      setIntOption(libc, fd, IPPROTO_IPV6, IPV6_RECVTCLASS, 1, `set IPV6_RECVTCLASS on ${where}`);
    }
    const name = new Uint8Array(NAME_SLOT_BYTES);
    writeSockaddr(name, 0, plan.family, plan.address, plan.port);
    const nameBytes = v4 ? SOCKADDR_IN_BYTES : SOCKADDR_IN6_BYTES;
    if (libc.bind(fd, name, nameBytes) !== 0)
      throw osError('GW_ERR_UDP_OPEN', `bind UDP ${where}`, libc.errno());
    const length = new Uint32Array([NAME_SLOT_BYTES]);
    if (libc.getsockname(fd, name, length) !== 0) {
      throw osError('GW_ERR_UDP_OPEN', `read the bound address of ${where}`, libc.errno());
    }
    const port = (name[2]! << 8) | name[3]!;
    const receiveBufferBytes = getIntOption(libc, fd, SOL_SOCKET, SO_RCVBUF, `read SO_RCVBUF of ${where}`);
    const sendBufferBytes = getIntOption(libc, fd, SOL_SOCKET, SO_SNDBUF, `read SO_SNDBUF of ${where}`);
    return new MmsgUdp(libc, fd, plan, port, receiveBufferBytes, sendBufferBytes);
  } catch (error) {
    libc.close(fd);
    throw error;
  }
}

function setIntOption(
  libc: Libc,
  fd: number,
  level: number,
  option: number,
  value: number,
  what: string,
  hint?: string,
): void {
  if (libc.setsockopt(fd, level, option, new Int32Array([value | 0]), 4) !== 0) {
    const errno = libc.errno();
    throw osError('GW_ERR_UDP_OPEN', what, errno, errno === ERRNO.EPERM ? hint : undefined);
  }
}

function getIntOption(libc: Libc, fd: number, level: number, option: number, what: string): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  if (libc.getsockopt(fd, level, option, value, length) !== 0)
    throw osError('GW_ERR_UDP_OPEN', what, libc.errno());
  return value[0]!;
}

/** Writes a sockaddr_in / sockaddr_in6 (family in host order, port in network order) at `at`. */
function writeSockaddr(b: Uint8Array, at: number, family: 4 | 6, address: Uint8Array, port: number): void {
  const af = family === 4 ? AF_INET : AF_INET6;
  b[at] = af & 0xff;
  b[at + 1] = af >> 8;
  b[at + 2] = port >> 8;
  b[at + 3] = port & 0xff;
  b.set(address, at + (family === 4 ? 4 : 8));
}

/** Stores a 64-bit pointer or size_t (little-endian) at byte offset `at` (8-aligned). */
function setU64(u32: Uint32Array, at: number, value: number): void {
  u32[at >> 2] = value >>> 0;
  u32[(at >> 2) + 1] = (value / 0x1_0000_0000) >>> 0;
}

type SocketState = 'open' | 'closing' | 'closed';

/**
 * Native memory layout, per direction, for `capacity` messages (one ArrayBuffer each):
 *   [capacity × mmsghdr][capacity × iovec][capacity × name slot][capacity × control slot]
 * Every pointer inside is written once here; a receive only resets the value-result lengths
 * (msg_namelen, msg_controllen) and a send only writes the iovec, the peer address and
 * msg_controllen (0, or one prewritten IP_TOS / IPV6_TCLASS message when the datagram carries
 * an ECN codepoint; then also its value).
 */
class MmsgUdp implements UdpSocket {
  readonly strategy = 'mmsg' as const;
  readonly family: 4 | 6;
  readonly localAddress: string;
  readonly stats: UdpStats = newUdpStats();
  private readonly capacity: number;
  private readonly nameBytes: number;
  private readonly batch: DatagramBatch;
  private readonly recvAddress: number;
  private readonly recvU32: Uint32Array;
  private readonly recvU8: Uint8Array;
  private readonly recvNameBase: number;
  private readonly recvControlBase: number;
  private readonly sendAddress: number;
  private readonly sendU32: Uint32Array;
  private readonly sendU8: Uint8Array;
  private readonly sendIovBase: number;
  private readonly sendNameBase: number;
  private readonly sendControlBase: number;
  /** Control message level and types of this family: IPPROTO_IP or IPPROTO_IPV6. */
  private readonly cmsgLevel: number;
  private readonly pktinfoType: number;
  private readonly tosType: number;
  /** Queued send buffers, kept referenced so their memory cannot be collected before the flush. */
  private readonly sendBufs: (Uint8Array | undefined)[];
  private queued = 0;
  private flushScheduled = false;
  private readonly flushTask = (): void => {
    this.flushScheduled = false;
    this.flush();
  };
  private waiter: ReadinessWaiter | undefined;
  private onDatagrams: ((batch: DatagramBatch) => void) | undefined;
  private onError: ((error: GatewayError) => void) | undefined;
  private consecutiveErrors = 0;
  private state: SocketState = 'open';
  private closing: Promise<void> | undefined;

  constructor(
    private readonly libc: Libc,
    private readonly fd: number,
    plan: UdpPlan,
    readonly localPort: number,
    readonly receiveBufferBytes: number,
    readonly sendBufferBytes: number,
  ) {
    this.family = plan.family;
    this.localAddress = formatIp(plan.address);
    const n = plan.batchSize;
    this.capacity = n;
    this.nameBytes = plan.family === 4 ? SOCKADDR_IN_BYTES : SOCKADDR_IN6_BYTES;
    this.cmsgLevel = plan.family === 4 ? IPPROTO_IP : IPPROTO_IPV6;
    this.pktinfoType = plan.family === 4 ? IP_PKTINFO : IPV6_PKTINFO;
    this.tosType = plan.family === 4 ? IP_TOS : IPV6_TCLASS;
    this.batch = createDatagramBatch(plan.family, n);
    this.batch.dstPorts.fill(localPort);

    const iovBase = n * MMSGHDR_BYTES;
    this.recvNameBase = iovBase + n * IOVEC_BYTES;
    this.recvControlBase = this.recvNameBase + n * NAME_SLOT_BYTES;
    const recv = new ArrayBuffer(this.recvControlBase + n * CONTROL_SLOT_BYTES);
    this.recvAddress = nativeAddress(recv);
    this.recvU32 = new Uint32Array(recv);
    this.recvU8 = new Uint8Array(recv);
    for (let i = 0; i < n; i++) {
      const hdr = i * MMSGHDR_BYTES;
      const iov = iovBase + i * IOVEC_BYTES;
      setU64(
        this.recvU32,
        hdr + MSGHDR_NAME_OFFSET,
        this.recvAddress + this.recvNameBase + i * NAME_SLOT_BYTES,
      );
      setU64(this.recvU32, hdr + MSGHDR_IOV_OFFSET, this.recvAddress + iov);
      setU64(this.recvU32, hdr + MSGHDR_IOVLEN_OFFSET, 1);
      setU64(
        this.recvU32,
        hdr + MSGHDR_CONTROL_OFFSET,
        this.recvAddress + this.recvControlBase + i * CONTROL_SLOT_BYTES,
      );
      setU64(this.recvU32, iov, addressOf(this.batch.bufs[i]!));
      setU64(this.recvU32, iov + 8, PACKET_BUFFER_BYTES);
    }

    this.sendIovBase = iovBase;
    this.sendNameBase = iovBase + n * IOVEC_BYTES;
    this.sendControlBase = this.sendNameBase + n * NAME_SLOT_BYTES;
    const send = new ArrayBuffer(this.sendControlBase + n * SEND_CONTROL_SLOT_BYTES);
    this.sendAddress = nativeAddress(send);
    this.sendU32 = new Uint32Array(send);
    this.sendU8 = new Uint8Array(send);
    const zero = new Uint8Array(plan.family === 4 ? 4 : 16);
    for (let i = 0; i < n; i++) {
      const hdr = i * MMSGHDR_BYTES;
      setU64(
        this.sendU32,
        hdr + MSGHDR_NAME_OFFSET,
        this.sendAddress + this.sendNameBase + i * NAME_SLOT_BYTES,
      );
      this.sendU32[(hdr + MSGHDR_NAMELEN_OFFSET) >> 2] = this.nameBytes;
      setU64(this.sendU32, hdr + MSGHDR_IOV_OFFSET, this.sendAddress + this.sendIovBase + i * IOVEC_BYTES);
      setU64(this.sendU32, hdr + MSGHDR_IOVLEN_OFFSET, 1);
      writeSockaddr(this.sendU8, this.sendNameBase + i * NAME_SLOT_BYTES, plan.family, zero, 0);
      // The traffic class message, attached only to datagrams with an ECN codepoint: the
      // kernel takes an int for both (ip_cmsg_send, ip6_datagram_send_ctl) and uses it as the
      // whole TOS / traffic class byte of that datagram, overriding the socket's (0).
      const ctl = this.sendControlBase + i * SEND_CONTROL_SLOT_BYTES;
      setU64(this.sendU32, hdr + MSGHDR_CONTROL_OFFSET, this.sendAddress + ctl);
      setU64(this.sendU32, ctl, CMSGHDR_BYTES + TOS_INT_BYTES);
      this.sendU32[(ctl + CMSGHDR_LEVEL_OFFSET) >> 2] = this.cmsgLevel;
      this.sendU32[(ctl + CMSGHDR_TYPE_OFFSET) >> 2] = this.tosType;
    }
    this.sendBufs = new Array<Uint8Array | undefined>(n).fill(undefined);
  }

  start(onDatagrams: (batch: DatagramBatch) => void, onError?: (error: GatewayError) => void): void {
    if (this.state !== 'open')
      throw new GatewayError('GW_ERR_UDP_IO', `UDP socket ${this.describe()} is closed`);
    if (this.waiter)
      throw new GatewayError('GW_ERR_UDP_IO', `UDP socket ${this.describe()} is already started`);
    this.onDatagrams = onDatagrams;
    this.onError = onError;
    this.waiter = new ReadinessWaiter(
      this.fd,
      POLLIN,
      (revents) => this.drain(revents),
      (error) => this.fail(error),
      'GW_ERR_UDP_IO',
    );
    this.waiter.arm();
  }

  send(buf: Uint8Array, off: number, len: number, ip: Uint8Array, port: number, ecn = 0): void {
    checkRange(buf, off, len);
    checkDestination(this.family, ip, port);
    checkEcn(ecn);
    if (this.state !== 'open') {
      this.stats.sendErrors++;
      return;
    }
    const i = this.queued;
    const u32 = this.sendU32;
    const iov = this.sendIovBase + i * IOVEC_BYTES;
    setU64(u32, iov, addressOf(buf) + off);
    u32[(iov + 8) >> 2] = len;
    // msg_controllen is a size_t whose high half stays 0: the low half switches the message on.
    const controlLength = (i * MMSGHDR_BYTES + MSGHDR_CONTROLLEN_OFFSET) >> 2;
    if (ecn === 0) u32[controlLength] = 0;
    else {
      u32[controlLength] = SEND_CONTROL_SLOT_BYTES;
      u32[(this.sendControlBase + i * SEND_CONTROL_SLOT_BYTES + CMSGHDR_BYTES) >> 2] = ecn;
    }
    const name = this.sendNameBase + i * NAME_SLOT_BYTES;
    const u8 = this.sendU8;
    u8[name + 2] = port >> 8;
    u8[name + 3] = port & 0xff;
    const at = name + (this.family === 4 ? 4 : 8);
    for (let b = 0; b < ip.length; b++) u8[at + b] = ip[b]!;
    this.sendBufs[i] = buf;
    this.queued = i + 1;
    if (this.queued === this.capacity) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushTask);
    }
  }

  flush(): void {
    const n = this.queued;
    if (n === 0) return;
    let i = 0;
    while (i < n) {
      const sent = this.libc.sendmmsg(this.fd, this.sendAddress + i * MMSGHDR_BYTES, n - i, 0);
      if (sent > 0) {
        this.stats.datagramsSent += sent;
        i += sent;
        continue;
      }
      const errno = this.libc.errno();
      if (errno === ERRNO.EINTR) continue;
      if (errno === ERRNO.EAGAIN || errno === ERRNO.ENOBUFS) {
        // The send buffer is full: UDP gives no delivery promise, so drop rather than queue
        // without bound (the reference's socket threads drop on a full queue as well).
        this.stats.sendDrops += n - i;
        break;
      }
      // The error belongs to datagram i (unreachable, filtered, too big): skip just that one.
      this.stats.sendErrors++;
      i++;
    }
    for (let k = 0; k < n; k++) this.sendBufs[k] = undefined;
    this.queued = 0;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // Last datagrams (e.g. goodbyes sent during shutdown) still go out.
    this.flush();
    this.state = 'closing';
    await this.waiter?.close();
    this.libc.close(this.fd);
    this.state = 'closed';
  }

  private describe(): string {
    return this.family === 4
      ? `${this.localAddress}:${this.localPort}`
      : `[${this.localAddress}]:${this.localPort}`;
  }

  /** Runs on the main thread after poll reported the socket readable: one recvmmsg, one batch. */
  private drain(revents: number): void {
    if (revents & POLLNVAL) {
      this.fail(new GatewayError('GW_ERR_UDP_IO', `UDP socket ${this.describe()} reported POLLNVAL`));
      return;
    }
    const n = this.capacity;
    const u32 = this.recvU32;
    const nameLengthOffset = MSGHDR_NAMELEN_OFFSET >> 2;
    const controlLengthOffset = MSGHDR_CONTROLLEN_OFFSET >> 2;
    for (let i = 0, hdr = 0; i < n; i++, hdr += MMSGHDR_BYTES >> 2) {
      u32[hdr + nameLengthOffset] = this.nameBytes;
      u32[hdr + controlLengthOffset] = CONTROL_SLOT_BYTES;
    }
    let got = this.libc.recvmmsg(this.fd, this.recvAddress, n, MSG_DONTWAIT, null);
    while (got < 0) {
      const errno = this.libc.errno();
      if (errno === ERRNO.EAGAIN) {
        this.waiter!.arm();
        return;
      }
      if (errno !== ERRNO.EINTR) {
        // A pending socket error (e.g. an ICMP error) is reported once by the next receive.
        this.stats.receiveErrors++;
        if (++this.consecutiveErrors >= MAX_CONSECUTIVE_RECEIVE_ERRORS) {
          this.fail(
            osError(
              'GW_ERR_UDP_IO',
              `receive on UDP socket ${this.describe()} (${this.consecutiveErrors} times in a row)`,
              errno,
            ),
          );
          return;
        }
        this.waiter!.arm();
        return;
      }
      got = this.libc.recvmmsg(this.fd, this.recvAddress, n, MSG_DONTWAIT, null);
    }
    this.consecutiveErrors = 0;
    const count = this.collect(got);
    this.stats.receiveBatches++;
    this.stats.datagramsReceived += count;
    if (count === 0) {
      this.waiter!.arm();
      return;
    }
    const batch = this.batch;
    batch.count = count;
    try {
      this.onDatagrams!(batch);
    } finally {
      // Re-arm even if the consumer threw (the exception still propagates); no-op once closing.
      this.waiter!.arm();
    }
  }

  /**
   * Moves lengths, peer and local addresses and ECN codepoints of the `got` received messages
   * into the batch. Truncated datagrams (longer than a buffer) are dropped; later ones move down
   * to keep the batch dense (a copy, but only on that rare path). Returns the batch count.
   */
  private collect(got: number): number {
    const { batch, recvU32: u32, recvU8: u8, family, cmsgLevel, pktinfoType, tosType } = this;
    const v4 = family === 4;
    let kept = 0;
    let anyDestination = false;
    const pktinfoLength = CMSGHDR_BYTES + (v4 ? IN_PKTINFO_BYTES : IN6_PKTINFO_BYTES);
    const pktinfoAddress = CMSGHDR_BYTES + (v4 ? IN_PKTINFO_ADDR_OFFSET : IN6_PKTINFO_ADDR_OFFSET);
    const addressBytes = v4 ? 4 : 16;
    // IPv4 reports the TOS byte alone, IPv6 the traffic class as an int: either way the ECN
    // bits are the low two of the first (little-endian) data byte.
    const tosLength = CMSGHDR_BYTES + (v4 ? IP_TOS_RECV_BYTES : TOS_INT_BYTES);
    const tosAt = cmsgSpace(v4 ? IN_PKTINFO_BYTES : IN6_PKTINFO_BYTES);
    for (let k = 0; k < got; k++) {
      const hdr = k * MMSGHDR_BYTES;
      const len = u32[(hdr + MMSGHDR_LEN_OFFSET) >> 2]!;
      const flags = u32[(hdr + MSGHDR_FLAGS_OFFSET) >> 2]!;
      if (flags & MSG_TRUNC) {
        this.stats.receiveTruncated++;
        continue;
      }
      if (kept !== k) batch.bufs[kept]!.set(batch.bufs[k]!.subarray(0, len));
      batch.offsets[kept] = 0;
      batch.lengths[kept] = len;
      const name = this.recvNameBase + k * NAME_SLOT_BYTES;
      batch.srcPorts[kept] = (u8[name + 2]! << 8) | u8[name + 3]!;
      const slot = kept * ADDRESS_SLOT_BYTES;
      const src = batch.srcAddrs;
      if (v4) for (let b = 0; b < 4; b++) src[slot + b] = u8[name + 4 + b]!;
      else for (let b = 0; b < 16; b++) src[slot + b] = u8[name + 8 + b]!;
      // The two control messages we asked for, where the kernel puts them: pktinfo first, the
      // traffic class next (`CONTROL_SLOT_BYTES`). One the kernel could not fit (MSG_CTRUNC) is
      // cut short, so `controlLength` does not cover it and it is not read. A datagram without
      // a traffic class message reads as Not-ECT.
      const ctl = this.recvControlBase + k * CONTROL_SLOT_BYTES;
      const controlLength = u32[(hdr + MSGHDR_CONTROLLEN_OFFSET) >> 2]!;
      if (
        controlLength >= pktinfoLength &&
        u32[(ctl + CMSGHDR_LEVEL_OFFSET) >> 2] === cmsgLevel &&
        u32[(ctl + CMSGHDR_TYPE_OFFSET) >> 2] === pktinfoType
      ) {
        const at = ctl + pktinfoAddress;
        const dst = batch.dstAddrs;
        for (let b = 0; b < addressBytes; b++) dst[slot + b] = u8[at + b]!;
        anyDestination = true;
      }
      const tos = ctl + tosAt;
      const ecn =
        controlLength >= tosAt + tosLength &&
        u32[(tos + CMSGHDR_LEVEL_OFFSET) >> 2] === cmsgLevel &&
        u32[(tos + CMSGHDR_TYPE_OFFSET) >> 2] === tosType
          ? u8[tos + CMSGHDR_BYTES]! & ECN_MASK
          : 0;
      batch.ecn[kept] = ecn;
      kept++;
    }
    batch.dstKnown = anyDestination;
    return kept;
  }

  private fail(error: GatewayError): void {
    if (this.state !== 'open') return;
    if (this.onError) this.onError(error);
    else throw error;
  }
}
