import { readU16, writeU16 } from '../bytes.js';
import type { Result } from '../result.js';
import { adjust, finish, rangeDelta, sumWords, wordDelta } from './checksum.js';
import {
  ECN_CE,
  ECN_ECT0,
  ECN_ECT1,
  ICMP_HEADER_BYTES,
  ICMPV4_ECHO_REPLY,
  ICMPV4_ECHO_REQUEST,
  ICMPV4_TIMESTAMP,
  ICMPV4_TIMESTAMP_BYTES,
  ICMPV4_TIMESTAMP_REPLY,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  IPPROTO_AH,
  IPPROTO_DSTOPTS,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_RESERVED_255,
  IPPROTO_ROUTING,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_FLAG_MF,
  IPV4_FRAG_OFFSET_MASK,
  IPV4_MIN_HEADER_BYTES,
  IPV6_HEADER_BYTES,
  MAX_IP_PACKET_BYTES,
  MAX_TUNNEL_DATAGRAM_BYTES,
  TCP_MIN_HEADER_BYTES,
  UDP_HEADER_BYTES,
} from './constants.js';
import { IP_ERRORS, type IpError } from './errors.js';

const EMPTY = new Uint8Array(0);

/** TCP flag bits (RFC 9293 §3.1). */
export const TCP_FLAG_FIN = 0x01;
export const TCP_FLAG_SYN = 0x02;
export const TCP_FLAG_RST = 0x04;

/**
 * A strictly validated IPv4 or IPv6 packet, viewed in place inside a caller-owned buffer.
 *
 * Input: bytes at `buf[off, off+len)`, e.g. a decrypted WireGuard payload at its headroom offset.
 * `load()` validates per `spec/gateway-dataplane.md` §8.2 with the fixes of §13 and returns
 * `undefined` or a shared {@link IpError}; nothing allocates, so one instance can be reused for
 * every packet of a batch.
 *
 * Invariants once loaded:
 * - the IP length fields are consistent and `length` is the IP length. Bytes past it (WireGuard
 *   pads plaintext to 16 bytes; junk from a peer) are not part of the packet: they are never
 *   forwarded, never checksummed, and never looked at again (§13: trim rather than keep);
 * - no fragments (IPv4 MF or offset ≠ 0, IPv6 Fragment header with offset ≠ 0 or M set);
 * - the IPv4 header checksum verifies;
 * - the L4 header of TCP, UDP, ICMP and ICMPv6 is complete; UDP's length field equals the
 *   L4 length; ICMPv4 only in IPv4 and ICMPv6 only in IPv6.
 *
 * Mutators keep every checksum valid by RFC 1624 incremental update (see `checksum.ts`).
 * Accessors never throw: absent fields read as `undefined`.
 */
export class IpPacket {
  /** The buffer the packet lives in (not trimmed; see `off`/`length`). */
  buf: Uint8Array = EMPTY;
  /** Offset of the IP header in `buf`. */
  off = 0;
  /** IP length in bytes (IPv4 total length, IPv6 40 + payload length). */
  length = 0;
  version: 4 | 6 = 4;
  /** Upper-layer protocol (after IPv6 extension headers / AH). */
  protocol = 0;
  /** Offset of the upper-layer header in `buf`. */
  l4Offset = 0;
  /** Bytes from the upper-layer header to the end of the packet. */
  l4Length = 0;

  /** Parses a packet occupying `bytes` from its start (a convenience that allocates the view). */
  static parse(bytes: Uint8Array): Result<IpPacket, IpError> {
    const p = new IpPacket();
    const error = p.load(bytes);
    return error ? { ok: false, error } : { ok: true, value: p };
  }

  /** Validates `buf[off, off+len)` and points this view at it. */
  load(buf: Uint8Array, off = 0, len: number = buf.length - off): IpError | undefined {
    this.buf = buf;
    this.off = off;
    this.length = 0;
    if (len <= 0) return IP_ERRORS['ip.empty'];
    if (len > MAX_TUNNEL_DATAGRAM_BYTES) return IP_ERRORS['ip.too-large'];
    const v = buf[off]! >> 4;
    const error =
      v === 4
        ? this.loadV4(buf, off, len)
        : v === 6
          ? this.loadV6(buf, off, len)
          : IP_ERRORS['ip.bad-version'];
    if (error) {
      this.length = 0;
      return error;
    }
    return this.checkTransport();
  }

  private loadV4(b: Uint8Array, o: number, len: number): IpError | undefined {
    this.version = 4;
    if (len < IPV4_MIN_HEADER_BYTES) return IP_ERRORS['ipv4.truncated'];
    const ihl = (b[o]! & 0x0f) * 4;
    if (ihl < IPV4_MIN_HEADER_BYTES || ihl > len) return IP_ERRORS['ipv4.bad-ihl'];
    const total = readU16(b, o + 2);
    if (total > MAX_IP_PACKET_BYTES) return IP_ERRORS['ip.too-large'];
    if (total < ihl || total > len) return IP_ERRORS['ipv4.bad-total-length'];
    const frag = readU16(b, o + 6);
    if ((frag & IPV4_FLAG_MF) !== 0 || (frag & IPV4_FRAG_OFFSET_MASK) !== 0) return IP_ERRORS['ip.fragment'];
    if (finish(sumWords(b, o, ihl)) !== 0) return IP_ERRORS['ipv4.bad-header-checksum'];
    this.length = total;
    let proto = b[o + 9]!;
    let l4 = ihl;
    while (proto === IPPROTO_AH) {
      // RFC 4302 §2.2: payload length in 4-byte words, minus 2.
      if (l4 + 2 > total) return IP_ERRORS['ah.truncated'];
      const ahLen = (b[o + l4 + 1]! + 2) * 4;
      if (l4 + ahLen > total) return IP_ERRORS['ah.truncated'];
      proto = b[o + l4]!;
      l4 += ahLen;
    }
    this.protocol = proto;
    this.l4Offset = o + l4;
    this.l4Length = total - l4;
    return undefined;
  }

  private loadV6(b: Uint8Array, o: number, len: number): IpError | undefined {
    this.version = 6;
    if (len < IPV6_HEADER_BYTES) return IP_ERRORS['ipv6.truncated'];
    // A payload length of 0 means an empty payload: jumbograms (RFC 2675) cannot fit in 1280 bytes.
    const total = IPV6_HEADER_BYTES + readU16(b, o + 4);
    if (total > MAX_IP_PACKET_BYTES) return IP_ERRORS['ip.too-large'];
    if (total > len) return IP_ERRORS['ipv6.truncated'];
    this.length = total;
    let nh = b[o + 6]!;
    let at = IPV6_HEADER_BYTES;
    let first = true;
    for (;;) {
      let extLen: number;
      if (nh === IPPROTO_HOPOPTS || nh === IPPROTO_ROUTING || nh === IPPROTO_DSTOPTS) {
        if (nh === IPPROTO_HOPOPTS && !first) return IP_ERRORS['ipv6.misplaced-hop-by-hop'];
        if (at + 2 > total) return IP_ERRORS['ipv6.bad-extension-header'];
        extLen = (b[o + at + 1]! + 1) * 8;
      } else if (nh === IPPROTO_FRAGMENT) {
        if (at + 8 > total) return IP_ERRORS['ipv6.bad-extension-header'];
        const fo = readU16(b, o + at + 2);
        // Offset (upper 13 bits) or M flag (bit 0) set: a real fragment. An atomic fragment
        // (both zero, RFC 6946) is a whole packet and is parsed through.
        if ((fo & 0xfff9) !== 0) return IP_ERRORS['ip.fragment'];
        extLen = 8;
      } else if (nh === IPPROTO_AH) {
        if (at + 2 > total) return IP_ERRORS['ah.truncated'];
        extLen = (b[o + at + 1]! + 2) * 4;
        if (at + extLen > total) return IP_ERRORS['ah.truncated'];
      } else {
        break;
      }
      if (at + extLen > total) return IP_ERRORS['ipv6.bad-extension-header'];
      nh = b[o + at]!;
      at += extLen;
      first = false;
    }
    this.protocol = nh;
    this.l4Offset = o + at;
    this.l4Length = total - at;
    return undefined;
  }

  private checkTransport(): IpError | undefined {
    const b = this.buf;
    const l4 = this.l4Offset;
    const n = this.l4Length;
    let error: IpError | undefined;
    switch (this.protocol) {
      case IPPROTO_UDP:
        if (n < UDP_HEADER_BYTES) error = IP_ERRORS['udp.truncated'];
        // Stricter than the reference (which accepted 0 and any smaller value): the UDP length
        // must cover exactly the IP payload, so checksums and NAT never see stray bytes.
        else if (readU16(b, l4 + 4) !== n) error = IP_ERRORS['udp.bad-length'];
        break;
      case IPPROTO_TCP: {
        if (n < TCP_MIN_HEADER_BYTES) {
          error = IP_ERRORS['tcp.truncated'];
          break;
        }
        const doff = (b[l4 + 12]! >> 4) * 4;
        if (doff < TCP_MIN_HEADER_BYTES || doff > n) error = IP_ERRORS['tcp.bad-data-offset'];
        break;
      }
      case IPPROTO_ICMP: {
        if (this.version !== 4) error = IP_ERRORS['icmp.wrong-family'];
        else if (n < ICMP_HEADER_BYTES) error = IP_ERRORS['icmp.truncated'];
        else {
          const t = b[l4]!;
          if (
            (t === ICMPV4_TIMESTAMP || t === ICMPV4_TIMESTAMP_REPLY) &&
            b[l4 + 1] === 0 &&
            n !== ICMPV4_TIMESTAMP_BYTES
          )
            error = IP_ERRORS['icmp.bad-timestamp-length'];
        }
        break;
      }
      case IPPROTO_ICMPV6:
        if (this.version !== 6) error = IP_ERRORS['icmp.wrong-family'];
        else if (n < ICMP_HEADER_BYTES) error = IP_ERRORS['icmp.truncated'];
        break;
    }
    if (error) this.length = 0;
    return error;
  }

  // --- Accessors ---------------------------------------------------------------------------

  /** The packet bytes as a fresh view (allocates; for tests, logs and hand-off, not the hot path). */
  get bytes(): Uint8Array {
    return this.buf.subarray(this.off, this.off + this.length);
  }

  get addressLength(): 4 | 16 {
    return this.version === 4 ? 4 : 16;
  }

  get srcOffset(): number {
    return this.off + (this.version === 4 ? 12 : 8);
  }

  get dstOffset(): number {
    return this.off + (this.version === 4 ? 16 : 24);
  }

  /** Source address as a fresh 4- or 16-byte array (allocates). */
  source(): Uint8Array {
    return this.buf.slice(this.srcOffset, this.srcOffset + this.addressLength);
  }

  /** Destination address as a fresh 4- or 16-byte array (allocates). */
  destination(): Uint8Array {
    return this.buf.slice(this.dstOffset, this.dstOffset + this.addressLength);
  }

  /** ECN codepoint: low two bits of the IPv4 TOS / IPv6 traffic class. */
  get ecn(): number {
    return this.version === 4 ? this.buf[this.off + 1]! & 0x03 : (this.buf[this.off + 1]! >> 4) & 0x03;
  }

  /** IPv4 TTL or IPv6 hop limit. */
  get ttl(): number {
    return this.buf[this.off + (this.version === 4 ? 8 : 7)]!;
  }

  get isTcp(): boolean {
    return this.protocol === IPPROTO_TCP;
  }

  get isUdp(): boolean {
    return this.protocol === IPPROTO_UDP;
  }

  /** ICMPv4 in IPv4 or ICMPv6 in IPv6 (the parser rejects the cross combinations). */
  get isIcmp(): boolean {
    return this.protocol === (this.version === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6);
  }

  get srcPort(): number | undefined {
    if (this.protocol !== IPPROTO_TCP && this.protocol !== IPPROTO_UDP) return undefined;
    return readU16(this.buf, this.l4Offset);
  }

  get dstPort(): number | undefined {
    if (this.protocol !== IPPROTO_TCP && this.protocol !== IPPROTO_UDP) return undefined;
    return readU16(this.buf, this.l4Offset + 2);
  }

  /** TCP flags byte (FIN, SYN, RST, ...); `undefined` for other protocols. */
  get tcpFlags(): number | undefined {
    return this.protocol === IPPROTO_TCP ? this.buf[this.l4Offset + 13]! : undefined;
  }

  get icmpType(): number | undefined {
    return this.isIcmp ? this.buf[this.l4Offset]! : undefined;
  }

  get icmpCode(): number | undefined {
    return this.isIcmp ? this.buf[this.l4Offset + 1]! : undefined;
  }

  /** True for ICMP echo request/reply with code 0 (the only ICMP the NAT and filters key on). */
  get isEcho(): boolean {
    if (!this.isIcmp || this.buf[this.l4Offset + 1] !== 0) return false;
    const t = this.buf[this.l4Offset]!;
    return this.version === 4
      ? t === ICMPV4_ECHO_REQUEST || t === ICMPV4_ECHO_REPLY
      : t === ICMPV6_ECHO_REQUEST || t === ICMPV6_ECHO_REPLY;
  }

  /** Echo identifier of an echo request/reply (code 0). */
  get echoId(): number | undefined {
    if (!this.isEcho) return undefined;
    return readU16(this.buf, this.l4Offset + 4);
  }

  /**
   * True for any ICMP error message: ICMPv4 types 3, 4, 5, 11, 12 (RFC 1812 §4.3.2.2) and ICMPv6
   * types below 128 (RFC 4443 §2.1). Nobody answers an ICMP error with another (RFC 1122 §3.2.2).
   */
  get isIcmpError(): boolean {
    if (!this.isIcmp) return false;
    const t = this.buf[this.l4Offset]!;
    return this.version === 4 ? t === 3 || t === 4 || t === 5 || t === 11 || t === 12 : t < 128;
  }

  /** Firezone p2p control packet: IPv6, source and destination `::`, next header 255 (`spec/snownet.md` §4). */
  get isP2pControl(): boolean {
    if (this.version !== 6 || this.buf[this.off + 6] !== IPPROTO_RESERVED_255) return false;
    const b = this.buf;
    for (let i = this.off + 8; i < this.off + 40; i++) if (b[i] !== 0) return false;
    return true;
  }

  // --- Mutators (checksums kept valid incrementally) ---------------------------------------

  /** Rewrites the source address; `addr` must be of the packet's family. */
  setSource(addr: Uint8Array): IpError | undefined {
    return this.setAddress(this.srcOffset, addr);
  }

  /** Rewrites the destination address; `addr` must be of the packet's family. */
  setDestination(addr: Uint8Array): IpError | undefined {
    return this.setAddress(this.dstOffset, addr);
  }

  private setAddress(at: number, addr: Uint8Array): IpError | undefined {
    const n = this.addressLength;
    if (addr.length !== n) return IP_ERRORS['ip.family-mismatch'];
    const delta = rangeDelta(this.buf, at, addr, 0, n);
    this.buf.set(addr, at);
    if (this.version === 4) this.adjustField(this.off + 10, delta);
    // Addresses are part of the TCP/UDP/ICMPv6 pseudo-header; ICMPv4 has none.
    this.adjustPseudoHeaderChecksum(delta);
    return undefined;
  }

  /** Rewrites the TCP/UDP source port. */
  setSrcPort(port: number): IpError | undefined {
    return this.setL4Word(0, port);
  }

  /** Rewrites the TCP/UDP destination port. */
  setDstPort(port: number): IpError | undefined {
    return this.setL4Word(2, port);
  }

  private setL4Word(rel: number, value: number): IpError | undefined {
    if (this.protocol !== IPPROTO_TCP && this.protocol !== IPPROTO_UDP) return IP_ERRORS['ip.no-ports'];
    const at = this.l4Offset + rel;
    const old = readU16(this.buf, at);
    writeU16(this.buf, at, value);
    this.adjustPseudoHeaderChecksum(wordDelta(old, value));
    return undefined;
  }

  /** Rewrites the identifier of an ICMP echo request/reply. */
  setEchoId(id: number): IpError | undefined {
    if (!this.isEcho) return IP_ERRORS['ip.not-echo'];
    const at = this.l4Offset + 4;
    const old = readU16(this.buf, at);
    writeU16(this.buf, at, id);
    this.adjustField(this.l4Offset + 2, wordDelta(old, id));
    return undefined;
  }

  /**
   * Outbound DNS-resource NAT (`spec/gateway-dataplane.md` §6.4): destination := real IP, source
   * port / echo id := outside id.
   */
  translateDestination(dst: Uint8Array, srcId: number): IpError | undefined {
    if (dst.length !== this.addressLength) return IP_ERRORS['ip.family-mismatch'];
    if (!this.hasL4Id) return IP_ERRORS['ip.no-ports'];
    this.setDestination(dst);
    return this.setL4Id(0, srcId);
  }

  /** Inbound reverse NAT: source := proxy IP, destination port / echo id := inside id. */
  translateSource(src: Uint8Array, dstId: number): IpError | undefined {
    if (src.length !== this.addressLength) return IP_ERRORS['ip.family-mismatch'];
    if (!this.hasL4Id) return IP_ERRORS['ip.no-ports'];
    this.setSource(src);
    return this.setL4Id(2, dstId);
  }

  /** True when the packet has an L4 id the NAT can key on (TCP/UDP port or echo identifier). */
  get hasL4Id(): boolean {
    return this.protocol === IPPROTO_TCP || this.protocol === IPPROTO_UDP || this.isEcho;
  }

  private setL4Id(portRel: number, id: number): IpError | undefined {
    return this.isEcho ? this.setEchoId(id) : this.setL4Word(portRel, id);
  }

  /**
   * Merges the outer UDP datagram's ECN into this packet (`spec/gateway-dataplane.md` §3 step 10):
   * only ECT(0)/ECT(1) inside and CE outside makes the inner packet CE. Returns true if it changed.
   */
  applyOuterEcn(outer: number): boolean {
    const inner = this.ecn;
    if (outer !== ECN_CE || (inner !== ECN_ECT0 && inner !== ECN_ECT1)) return false;
    const b = this.buf;
    const o = this.off;
    if (this.version === 4) {
      const oldWord = readU16(b, o);
      b[o + 1] = b[o + 1]! | ECN_CE;
      this.adjustField(o + 10, wordDelta(oldWord, readU16(b, o)));
    } else {
      // The IPv6 traffic class is covered by no checksum.
      b[o + 1] = b[o + 1]! | (ECN_CE << 4);
    }
    return true;
  }

  private adjustPseudoHeaderChecksum(delta: number): void {
    const at = this.l4ChecksumOffset();
    if (at < 0) return;
    if (this.protocol === IPPROTO_UDP) {
      const cur = readU16(this.buf, at);
      // IPv4 UDP checksum 0 means "none" (RFC 768) and stays none.
      if (cur === 0 && this.version === 4) return;
      const next = adjust(cur, delta); // never 0, as RFC 768 requires
      writeU16(this.buf, at, next);
      return;
    }
    if (this.protocol === IPPROTO_ICMP) return; // no pseudo-header
    this.adjustField(at, delta);
  }

  /** Offset of the L4 checksum field in `buf`, or -1. */
  l4ChecksumOffset(): number {
    switch (this.protocol) {
      case IPPROTO_TCP:
        return this.l4Offset + 16;
      case IPPROTO_UDP:
        return this.l4Offset + 6;
      case IPPROTO_ICMP:
      case IPPROTO_ICMPV6:
        return this.l4Offset + 2;
      default:
        return -1;
    }
  }

  private adjustField(at: number, delta: number): void {
    const next = adjust(readU16(this.buf, at), delta);
    writeU16(this.buf, at, next);
  }
}

/**
 * Sum of the pseudo-header (RFC 768 / RFC 9293 for IPv4, RFC 8200 §8.1 for IPv6) for the
 * packet's upper-layer protocol and length.
 */
export function pseudoHeaderSum(p: IpPacket): number {
  let acc = sumWords(p.buf, p.srcOffset, p.addressLength * 2);
  acc += p.protocol;
  acc += p.l4Length & 0xffff;
  acc += p.l4Length >>> 16;
  return acc;
}

/**
 * Full recompute of every checksum of a loaded packet: the L4 checksum (TCP, UDP, ICMP, ICMPv6)
 * and then the IPv4 header checksum. Used by the builders and by the benchmark that compares it
 * with the incremental mutators.
 */
export function recomputeChecksums(p: IpPacket): void {
  const b = p.buf;
  const at = p.l4ChecksumOffset();
  if (at >= 0) {
    b[at] = 0;
    b[at + 1] = 0;
    const base = p.protocol === IPPROTO_ICMP ? 0 : pseudoHeaderSum(p);
    let c = finish(sumWords(b, p.l4Offset, p.l4Length, base));
    if (c === 0 && p.protocol === IPPROTO_UDP) c = 0xffff;
    writeU16(b, at, c);
  }
  if (p.version === 4) {
    const o = p.off;
    const ihl = (b[o]! & 0x0f) * 4;
    b[o + 10] = 0;
    b[o + 11] = 0;
    const c = finish(sumWords(b, o, ihl));
    writeU16(b, o + 10, c);
  }
}
