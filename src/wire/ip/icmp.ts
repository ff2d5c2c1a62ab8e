import { readU16, writeU16 } from '../bytes.js';
import type { Result } from '../result.js';
import { finish, sumWords } from './checksum.js';
import {
  ICMP_ERROR_TTL,
  ICMP_HEADER_BYTES,
  ICMPV4_CODE_ADMIN_PROHIBITED,
  ICMPV4_CODE_NET_UNREACHABLE,
  ICMPV4_DEST_UNREACHABLE,
  ICMPV4_ECHO_REPLY,
  ICMPV4_ECHO_REQUEST,
  ICMPV4_ERROR_QUOTE_PAYLOAD_BYTES,
  ICMPV4_TIME_EXCEEDED,
  ICMPV6_CODE_ADDRESS_UNREACHABLE,
  ICMPV6_CODE_ADMIN_PROHIBITED,
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_ERROR_MAX_QUOTE_BYTES,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_TIME_EXCEEDED,
  IPPROTO_AH,
  IPPROTO_DSTOPTS,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_ROUTING,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_FLAG_DF,
  IPV4_MIN_HEADER_BYTES,
  IPV6_HEADER_BYTES,
  MAX_IP_PACKET_BYTES,
} from './constants.js';
import { IP_ERRORS, type IpError } from './errors.js';
import { type IpPacket, recomputeChecksums } from './packet.js';

/**
 * Why the gateway refuses a packet, which decides the ICMP code of the reply
 * (`spec/gateway-dataplane.md` §3 step 9). Clients act on the difference, so keep it exact.
 */
export type UnreachableReason =
  /** Bad source, no matching resource, or port/protocol not allowed. ICMPv4 3/13, ICMPv6 1/1. */
  | 'prohibited'
  /** DNS proxy IP without a translation, or a family mismatch. ICMPv4 3/0, ICMPv6 1/3. */
  | 'unreachable';

/** Largest packet {@link buildUnreachable} writes. */
export const MAX_ICMP_ERROR_BYTES = MAX_IP_PACKET_BYTES;

/**
 * Why no ICMP error is built. These are not failures: RFC 1122 §3.2.2 / RFC 4443 §2.4 (e) forbid
 * errors about ICMP errors and about packets whose source is not a single host.
 */
export type IcmpSuppressedCode = 'icmp.about-icmp-error' | 'icmp.source-not-unicast';

export interface IcmpSuppressed {
  readonly code: IcmpSuppressedCode;
  readonly message: string;
}

const SUPPRESSED: { readonly [C in IcmpSuppressedCode]: IcmpSuppressed } = Object.freeze({
  'icmp.about-icmp-error': Object.freeze({
    code: 'icmp.about-icmp-error' as const,
    message: 'no ICMP error is sent about an ICMP error',
  }),
  'icmp.source-not-unicast': Object.freeze({
    code: 'icmp.source-not-unicast' as const,
    message: 'no ICMP error is sent to an unspecified, multicast or broadcast source',
  }),
});

/**
 * Builds an ICMP destination-unreachable for `original` into `out` at `outOff` and returns its
 * length, or why none may be sent. `out` needs room for {@link MAX_ICMP_ERROR_BYTES}.
 *
 * The reply goes from the original destination to the original source, TTL/hop limit 20; IPv4
 * uses identification 0 with DF set. Quote: IPv4 → the original IP header plus 8 bytes (RFC 792);
 * IPv6 → as much as fits in 1280 bytes (RFC 4443 §2.4 (c)).
 */
export function buildUnreachable(
  original: IpPacket,
  reason: UnreachableReason,
  out: Uint8Array,
  outOff = 0,
): number | IcmpSuppressed {
  if (original.isIcmpError) return SUPPRESSED['icmp.about-icmp-error'];
  if (!isUnicastSource(original)) return SUPPRESSED['icmp.source-not-unicast'];
  const b = original.buf;
  const o = original.off;
  if (original.version === 4) {
    const ihl = (b[o]! & 0x0f) * 4;
    const quote = Math.min(original.length, ihl + ICMPV4_ERROR_QUOTE_PAYLOAD_BYTES);
    const total = IPV4_MIN_HEADER_BYTES + ICMP_HEADER_BYTES + quote;
    const i = outOff + IPV4_MIN_HEADER_BYTES;
    out.fill(0, outOff, outOff + IPV4_MIN_HEADER_BYTES + ICMP_HEADER_BYTES);
    out[outOff] = 0x45;
    writeU16(out, outOff + 2, total);
    out[outOff + 6] = IPV4_FLAG_DF >> 8;
    out[outOff + 8] = ICMP_ERROR_TTL;
    out[outOff + 9] = IPPROTO_ICMP;
    out.set(b.subarray(o + 16, o + 20), outOff + 12);
    out.set(b.subarray(o + 12, o + 16), outOff + 16);
    out[i] = ICMPV4_DEST_UNREACHABLE;
    out[i + 1] = reason === 'prohibited' ? ICMPV4_CODE_ADMIN_PROHIBITED : ICMPV4_CODE_NET_UNREACHABLE;
    out.set(b.subarray(o, o + quote), i + ICMP_HEADER_BYTES);
    const ic = finish(sumWords(out, i, ICMP_HEADER_BYTES + quote));
    writeU16(out, i + 2, ic);
    const hc = finish(sumWords(out, outOff, IPV4_MIN_HEADER_BYTES));
    writeU16(out, outOff + 10, hc);
    return total;
  }
  const quote = Math.min(original.length, ICMPV6_ERROR_MAX_QUOTE_BYTES);
  const payload = ICMP_HEADER_BYTES + quote;
  const i = outOff + IPV6_HEADER_BYTES;
  out.fill(0, outOff, outOff + IPV6_HEADER_BYTES + ICMP_HEADER_BYTES);
  out[outOff] = 0x60;
  writeU16(out, outOff + 4, payload);
  out[outOff + 6] = IPPROTO_ICMPV6;
  out[outOff + 7] = ICMP_ERROR_TTL;
  out.set(b.subarray(o + 24, o + 40), outOff + 8);
  out.set(b.subarray(o + 8, o + 24), outOff + 24);
  out[i] = ICMPV6_DEST_UNREACHABLE;
  out[i + 1] = reason === 'prohibited' ? ICMPV6_CODE_ADMIN_PROHIBITED : ICMPV6_CODE_ADDRESS_UNREACHABLE;
  out.set(b.subarray(o, o + quote), i + ICMP_HEADER_BYTES);
  // RFC 4443 §2.3: the checksum covers the IPv6 pseudo-header.
  let acc = sumWords(out, outOff + 8, 32);
  acc += payload + IPPROTO_ICMPV6;
  const c = finish(sumWords(out, i, payload, acc));
  writeU16(out, i + 2, c);
  return IPV6_HEADER_BYTES + payload;
}

function isUnicastSource(p: IpPacket): boolean {
  const b = p.buf;
  const s = p.srcOffset;
  if (p.version === 4) {
    const a = b[s]!;
    if (a >= 224) return false; // multicast 224/4, reserved 240/4, broadcast 255.255.255.255
    return !(a === 0 && b[s + 1] === 0 && b[s + 2] === 0 && b[s + 3] === 0);
  }
  if (b[s] === 0xff) return false; // multicast ff00::/8
  for (let k = 0; k < 16; k++) if (b[s + k] !== 0) return true;
  return false;
}

/**
 * What an ICMP error says about the packet it quotes (`spec/gateway-dataplane.md` §6.5).
 * Offsets point into the error packet's buffer; the quote may be truncated.
 */
export interface IcmpErrorInfo {
  type: number;
  code: number;
  /** Offset and length of the quoted packet. */
  quoteOffset: number;
  quoteLength: number;
  /** IP version of the quoted packet (always the error's own family). */
  quotedVersion: 4 | 6;
  /** Upper-layer protocol of the quoted packet. */
  quotedProtocol: number;
  quotedSrcOffset: number;
  quotedDstOffset: number;
  /** Offset of the quoted upper-layer header, or -1 if the quote stops before it. */
  quotedL4Offset: number;
  /** Quoted TCP/UDP ports, or -1 when the quote lacks them or the protocol has none. */
  quotedSrcPort: number;
  quotedDstPort: number;
  /** Quoted ICMP echo request/reply identifier, or -1. */
  quotedEchoId: number;
}

export function emptyIcmpErrorInfo(): IcmpErrorInfo {
  return {
    type: 0,
    code: 0,
    quoteOffset: 0,
    quoteLength: 0,
    quotedVersion: 4,
    quotedProtocol: 0,
    quotedSrcOffset: 0,
    quotedDstOffset: 0,
    quotedL4Offset: -1,
    quotedSrcPort: -1,
    quotedDstPort: -1,
    quotedEchoId: -1,
  };
}

/**
 * True for the ICMP errors the NAT translates: ICMPv4 destination unreachable (codes 0–15) and
 * time exceeded (0–1); ICMPv6 destination unreachable (0–6), packet too big (0) and time
 * exceeded (0–1).
 */
export function isTranslatableIcmpError(version: 4 | 6, type: number, code: number): boolean {
  if (version === 4) {
    return (type === ICMPV4_DEST_UNREACHABLE && code <= 15) || (type === ICMPV4_TIME_EXCEEDED && code <= 1);
  }
  return (
    (type === ICMPV6_DEST_UNREACHABLE && code <= 6) ||
    (type === ICMPV6_PACKET_TOO_BIG && code === 0) ||
    (type === ICMPV6_TIME_EXCEEDED && code <= 1)
  );
}

/**
 * Reads the quoted packet of a translatable ICMP error into `out` (reused; nothing allocates).
 * The quote is parsed leniently (a truncated quote is normal) but must hold the whole quoted IP
 * header of the error's own family. What the quote lacks reads as -1.
 */
export function readIcmpError(p: IpPacket, out: IcmpErrorInfo): IpError | undefined {
  if (!p.isIcmp) return IP_ERRORS['ip.not-icmp-error'];
  const b = p.buf;
  const l4 = p.l4Offset;
  const type = b[l4]!;
  const code = b[l4 + 1]!;
  if (!isTranslatableIcmpError(p.version, type, code)) return IP_ERRORS['ip.not-icmp-error'];
  const q = l4 + ICMP_HEADER_BYTES;
  const end = p.off + p.length;
  const qlen = end - q;
  out.type = type;
  out.code = code;
  out.quoteOffset = q;
  out.quoteLength = qlen;
  out.quotedVersion = p.version;
  out.quotedL4Offset = -1;
  out.quotedSrcPort = -1;
  out.quotedDstPort = -1;
  out.quotedEchoId = -1;
  if (qlen < 1 || b[q]! >> 4 !== p.version) return IP_ERRORS['ip.icmp-error-quote'];
  let proto: number;
  let at: number;
  if (p.version === 4) {
    const ihl = (b[q]! & 0x0f) * 4;
    if (ihl < IPV4_MIN_HEADER_BYTES || ihl > qlen) return IP_ERRORS['ip.icmp-error-quote'];
    proto = b[q + 9]!;
    at = q + ihl;
    out.quotedSrcOffset = q + 12;
    out.quotedDstOffset = q + 16;
    if (proto === IPPROTO_AH && at + 2 <= end) {
      proto = b[at]!;
      at += (b[at + 1]! + 2) * 4;
    }
  } else {
    if (qlen < IPV6_HEADER_BYTES) return IP_ERRORS['ip.icmp-error-quote'];
    out.quotedSrcOffset = q + 8;
    out.quotedDstOffset = q + 24;
    proto = b[q + 6]!;
    at = q + IPV6_HEADER_BYTES;
    while (at + 2 <= end) {
      if (proto === IPPROTO_HOPOPTS || proto === IPPROTO_ROUTING || proto === IPPROTO_DSTOPTS) {
        const n = (b[at + 1]! + 1) * 8;
        proto = b[at]!;
        at += n;
      } else if (proto === IPPROTO_FRAGMENT) {
        proto = b[at]!;
        at += 8;
      } else if (proto === IPPROTO_AH) {
        const n = (b[at + 1]! + 2) * 4;
        proto = b[at]!;
        at += n;
      } else break;
    }
  }
  out.quotedProtocol = proto;
  if (at > end) return undefined;
  out.quotedL4Offset = at;
  const avail = end - at;
  if ((proto === IPPROTO_TCP || proto === IPPROTO_UDP) && avail >= 4) {
    out.quotedSrcPort = readU16(b, at);
    out.quotedDstPort = readU16(b, at + 2);
  } else if (
    proto === (p.version === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6) &&
    avail >= ICMP_HEADER_BYTES &&
    b[at + 1] === 0 &&
    isEchoType(p.version, b[at]!)
  ) {
    out.quotedEchoId = readU16(b, at + 4);
  }
  return undefined;
}

function isEchoType(version: 4 | 6, t: number): boolean {
  return version === 4
    ? t === ICMPV4_ECHO_REQUEST || t === ICMPV4_ECHO_REPLY
    : t === ICMPV6_ECHO_REQUEST || t === ICMPV6_ECHO_REPLY;
}

/** {@link readIcmpError} into a fresh object (allocates; for tests and cold paths). */
export function parseIcmpError(p: IpPacket): Result<IcmpErrorInfo, IpError> {
  const info = emptyIcmpErrorInfo();
  const error = readIcmpError(p, info);
  return error ? { ok: false, error } : { ok: true, value: info };
}

/**
 * Rewrites, in place, an ICMP error about a packet the NAT translated, so the client sees it
 * about the packet it sent (`spec/gateway-dataplane.md` §6.5): source := the proxy IP, TTL/hop
 * limit := 20, the quoted destination := the proxy IP, the quoted source port or echo id := the
 * inside id; the outer checksums are recomputed (the quoted packet's own are left as they are,
 * as the reference does). `info` comes from {@link readIcmpError} on this packet.
 */
export function rewriteIcmpErrorForNat(
  p: IpPacket,
  info: IcmpErrorInfo,
  proxyAddr: Uint8Array,
  insideId: number,
): void {
  const b = p.buf;
  b.set(proxyAddr, p.srcOffset);
  b[p.off + (p.version === 4 ? 8 : 7)] = ICMP_ERROR_TTL;
  b.set(proxyAddr, info.quotedDstOffset);
  const end = p.off + p.length;
  const at = info.quotedEchoId >= 0 ? info.quotedL4Offset + 4 : info.quotedL4Offset;
  if (info.quotedL4Offset >= 0 && at + 2 <= end) writeU16(b, at, insideId);
  recomputeChecksums(p);
}
