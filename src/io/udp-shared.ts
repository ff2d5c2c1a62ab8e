import { GatewayError } from '../errors.js';
import { formatIp, parseIpv4, parseIpv6 } from '../wire/ip/address.js';
import { DEFAULT_BATCH_PACKETS } from './packet-batch.js';
import type { OpenUdpOptions, UdpStats } from './udp.js';

/** Tunnel socket buffer requests (`spec/gateway-dataplane.md` §1): receive 128 MiB, send 16 MiB. */
export const UDP_RECEIVE_BUFFER_BYTES = 134_217_728;
export const UDP_SEND_BUFFER_BYTES = 16_777_216;

/** `OpenUdpOptions` checked and with defaults applied. */
export interface UdpPlan {
  readonly family: 4 | 6;
  readonly address: Uint8Array;
  readonly addressText: string;
  readonly port: number;
  readonly batchSize: number;
  readonly receiveBufferBytes: number;
  readonly sendBufferBytes: number;
  readonly fwmark: number | undefined;
}

export function planUdp(options: OpenUdpOptions): UdpPlan {
  const { family } = options;
  if (family !== 4 && family !== 6) throw openError(`family ${String(family)}: expected 4 or 6`);
  const text = options.address ?? (family === 4 ? '0.0.0.0' : '::');
  const address = family === 4 ? parseIpv4(text) : parseIpv6(text);
  if (!address) throw openError(`address '${text}' is not an IPv${family} address`);
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 0xffff)
    throw openError(`port ${port}: expected 0 to 65535`);
  const batchSize = options.batchSize ?? DEFAULT_BATCH_PACKETS;
  // sendmmsg/recvmmsg take at most UIO_MAXIOV (1024) messages per call.
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1024) {
    throw openError(`batchSize ${batchSize}: expected 1 to 1024`);
  }
  const fwmark = options.fwmark;
  if (fwmark !== undefined && (!Number.isInteger(fwmark) || fwmark < 0 || fwmark > 0xffffffff)) {
    throw openError(`fwmark ${fwmark}: expected 0 to 0xffffffff`);
  }
  return {
    family,
    address,
    addressText: formatIp(address),
    port,
    batchSize,
    receiveBufferBytes: options.receiveBufferBytes ?? UDP_RECEIVE_BUFFER_BYTES,
    sendBufferBytes: options.sendBufferBytes ?? UDP_SEND_BUFFER_BYTES,
    fwmark,
  };
}

export function newUdpStats(): UdpStats {
  return {
    datagramsReceived: 0,
    datagramsSent: 0,
    receiveBatches: 0,
    receiveErrors: 0,
    receiveTruncated: 0,
    sendDrops: 0,
    sendErrors: 0,
  };
}

/** Throws a RangeError unless `ip` is an address of `family` and `port` a port. */
export function checkDestination(family: 4 | 6, ip: Uint8Array, port: number): void {
  if (ip.length !== (family === 4 ? 4 : 16) || !(port >= 0 && port <= 0xffff)) {
    throw new RangeError(
      `destination of ${ip.length} bytes, port ${port}: an IPv${family} socket needs ${family === 4 ? 4 : 16} bytes and a port`,
    );
  }
}

/** The ECN field: the low two bits of the IPv4 TOS / IPv6 traffic class byte (RFC 3168 §5). */
export const ECN_MASK = 0b11;

/** Throws a RangeError unless `ecn` is an ECN codepoint (0–3). */
export function checkEcn(ecn: number): void {
  if ((ecn & ECN_MASK) !== ecn) throw new RangeError(`ECN codepoint ${ecn}: expected 0, 1, 2 or 3`);
}

export function openError(message: string): GatewayError {
  return new GatewayError('GW_ERR_UDP_OPEN', `UDP socket: ${message}`);
}

/** Failed datagrams in a row (other than EAGAIN/EINTR) before a socket counts as broken. */
export const MAX_CONSECUTIVE_RECEIVE_ERRORS = 100;
