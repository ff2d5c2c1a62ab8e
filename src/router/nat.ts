import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from '../wire/ip/constants.js';
import { type IcmpErrorInfo, rewriteIcmpErrorForNat } from '../wire/ip/icmp.js';
import { type IpPacket, TCP_FLAG_RST } from '../wire/ip/packet.js';
import { IpMap, v4Key } from './ip-map.js';

/** Idle lifetimes of NAT sessions (`spec/gateway-dataplane.md` §1): TCP 2 h, UDP and ICMP 2 min. */
export const NAT_TCP_IDLE_MS = 7_200_000;
export const NAT_UDP_IDLE_MS = 120_000;
export const NAT_ICMP_IDLE_MS = 120_000;

/** Offsets inside the /11 and /107 proxy ranges fit in 21 bits (`spec/gateway-dataplane.md` §1). */
const PROXY_OFFSET_SPACE = 2 ** 21;
const KIND_TCP = 0;
const KIND_UDP = 1;
const KIND_ICMP = 2;

/** The 21-bit offset of an address inside its proxy range (the low 21 bits). */
export function proxyOffset(buf: Uint8Array, off: number, len: number): number {
  const e = off + len;
  return ((buf[e - 3]! & 0x1f) << 16) | (buf[e - 2]! << 8) | buf[e - 1]!;
}

/** Where one proxy IP is mapped: the real IP and its NAT key. */
export interface NatTarget {
  readonly realAddr: Uint8Array;
}

interface Session {
  readonly kind: number;
  readonly insideId: number;
  readonly proxyAddr: Uint8Array;
  readonly proxyOff: number;
  readonly outsideId: number;
  readonly realAddr: Uint8Array;
  readonly insideKey: number;
  readonly outsideKey: number;
  lastSeen: number;
}

export type NatOutcome = 'ok' | 'passthrough' | 'nat.expired' | 'nat.exhausted' | 'nat.unsupported';

/**
 * One client's DNS-resource NAT (`spec/gateway-dataplane.md` §6.4): a bijection between inside
 * keys (protocol, source port or echo id, proxy IP) and outside keys (protocol, port or id,
 * real IP). The client's source address is never rewritten: the host's masquerade does that.
 *
 * Deliberate improvements on the reference (§13): sessions are refreshed by packets in both
 * directions, not only outbound ones, and "expired" marks (which make late packets of a closed
 * session drop instead of leaking the real address) are pruned after another idle lifetime
 * instead of accumulating for the client's lifetime.
 */
export class NatTable {
  private readonly byInside = new Map<number, Session>();
  private readonly byOutside = new Map<number, Session>();
  /** Outside keys of sessions closed by RST or idleness, with the time they were closed. */
  private readonly expired = new Map<number, number>();
  /** IPv6 real addresses get small indices so outside keys stay numbers. */
  private readonly realIndex = new IpMap<number>();
  private nextRealIndex = 0;

  get size(): number {
    return this.byInside.size;
  }

  /** True when a live session uses proxy IP `proxyAddr` (setup rule of §6.3 step 4). */
  hasSessionFor(proxyAddr: Uint8Array): boolean {
    for (const s of this.byInside.values()) if (equal(s.proxyAddr, proxyAddr)) return true;
    return false;
  }

  /**
   * Outbound: the packet goes to a proxy IP mapped to `target.realAddr`. Reuses the session of its
   * inside key if it points at the same real IP, else allocates an outside id by walking up from
   * the inside id (then from 1), rewrites destination and source port / echo id, and handles RST.
   */
  translateOutbound(p: IpPacket, target: NatTarget, now: number): NatOutcome {
    const kind = kindOf(p);
    if (kind < 0) return 'nat.unsupported';
    const insideId = kind === KIND_ICMP ? p.echoId! : p.srcPort!;
    const fam = p.version === 4 ? 0 : 1;
    const dstOff = p.dstOffset;
    const pOff = proxyOffset(p.buf, dstOff, p.addressLength);
    const insideKey = ((fam * 4 + kind) * 65536 + insideId) * PROXY_OFFSET_SPACE + pOff;
    let s = this.byInside.get(insideKey);
    if (s && !equal(s.realAddr, target.realAddr)) s = undefined; // re-resolved: a new session
    if (!s) {
      const realKey = this.realKeyFor(target.realAddr, true)!;
      let outsideId = -1;
      for (let id = insideId; id <= 65535; id++) {
        if (!this.byOutside.has(outsideKeyOf(fam, kind, id, realKey))) {
          outsideId = id;
          break;
        }
      }
      for (let id = 1; outsideId < 0 && id < insideId; id++) {
        if (!this.byOutside.has(outsideKeyOf(fam, kind, id, realKey))) outsideId = id;
      }
      if (outsideId < 0) return 'nat.exhausted';
      const outsideKey = outsideKeyOf(fam, kind, outsideId, realKey);
      const displaced = this.byInside.get(insideKey);
      if (displaced) this.byOutside.delete(displaced.outsideKey);
      s = {
        kind,
        insideId,
        proxyAddr: p.buf.slice(dstOff, dstOff + p.addressLength),
        proxyOff: pOff,
        outsideId,
        realAddr: Uint8Array.from(target.realAddr),
        insideKey,
        outsideKey,
        lastSeen: now,
      };
      this.byInside.set(insideKey, s);
      this.byOutside.set(outsideKey, s);
      this.expired.delete(outsideKey);
    }
    s.lastSeen = now;
    p.translateDestination(s.realAddr, s.outsideId);
    if (kind === KIND_TCP && (p.tcpFlags! & TCP_FLAG_RST) !== 0) this.close(s, now);
    return 'ok';
  }

  /**
   * Inbound, not an ICMP error: a packet from a real IP to an outside port / echo id of a live
   * session gets the proxy IP as source and the inside id as destination port / echo id.
   */
  translateInbound(p: IpPacket, now: number): NatOutcome {
    if (this.byOutside.size === 0 && this.expired.size === 0) return 'passthrough';
    const kind = kindOf(p);
    if (kind < 0) return 'passthrough';
    const realKey = this.realKeyAt(p.buf, p.srcOffset, p.addressLength);
    if (realKey < 0) return 'passthrough';
    const id = kind === KIND_ICMP ? p.echoId! : p.dstPort!;
    const key = outsideKeyOf(p.version === 4 ? 0 : 1, kind, id, realKey);
    const s = this.byOutside.get(key);
    if (!s) return this.expired.has(key) ? 'nat.expired' : 'passthrough';
    s.lastSeen = now;
    p.translateSource(s.proxyAddr, s.insideId);
    if (kind === KIND_TCP && (p.tcpFlags! & TCP_FLAG_RST) !== 0) this.close(s, now);
    return 'ok';
  }

  /**
   * Inbound ICMP error about one of our translated packets (§6.5): the quote holds the packet as
   * it left (source port = outside id, destination = real IP). A hit rewrites the error for the
   * client: source = proxy IP, quoted destination = proxy IP, quoted source port / id = inside id.
   */
  translateIcmpError(p: IpPacket, info: IcmpErrorInfo, now: number): NatOutcome {
    if (this.byOutside.size === 0 && this.expired.size === 0) return 'passthrough';
    const q = info.quotedProtocol;
    const kind =
      q === IPPROTO_TCP
        ? KIND_TCP
        : q === IPPROTO_UDP
          ? KIND_UDP
          : q === IPPROTO_ICMP || q === IPPROTO_ICMPV6
            ? KIND_ICMP
            : -1;
    const id = kind === KIND_ICMP ? info.quotedEchoId : info.quotedSrcPort;
    if (kind < 0 || id < 0) return 'passthrough';
    const realKey = this.realKeyAt(p.buf, info.quotedDstOffset, p.addressLength);
    if (realKey < 0) return 'passthrough';
    const key = outsideKeyOf(p.version === 4 ? 0 : 1, kind, id, realKey);
    const s = this.byOutside.get(key);
    if (!s) return this.expired.has(key) ? 'nat.expired' : 'passthrough';
    s.lastSeen = now;
    rewriteIcmpErrorForNat(p, info, s.proxyAddr, s.insideId);
    return 'ok';
  }

  /** Closes sessions idle for their lifetime, and forgets expired marks after another one. */
  sweep(now: number): void {
    for (const s of this.byInside.values()) {
      if (now - s.lastSeen >= idleFor(s.kind)) this.close(s, now);
    }
    for (const [key, at] of this.expired) {
      if (now - at >= NAT_TCP_IDLE_MS) this.expired.delete(key);
    }
  }

  /** Drops every session and mark (the client renumbered its proxy IPs, §6.3 step 1). */
  clear(): void {
    this.byInside.clear();
    this.byOutside.clear();
    this.expired.clear();
  }

  private close(s: Session, now: number): void {
    this.byInside.delete(s.insideKey);
    this.byOutside.delete(s.outsideKey);
    this.expired.set(s.outsideKey, now);
  }

  private realKeyFor(addr: Uint8Array, create: boolean): number | undefined {
    if (addr.length === 4) return v4Key(addr, 0);
    let i = this.realIndex.getAddress(addr);
    if (i === undefined && create) {
      i = this.nextRealIndex++;
      this.realIndex.set(addr, i);
    }
    return i;
  }

  /** The outside-key part for a real address in a packet, or -1 if it was never a NAT target. */
  private realKeyAt(buf: Uint8Array, off: number, len: number): number {
    if (len === 4) return v4Key(buf, off);
    return this.realIndex.get(buf, off, 16) ?? -1;
  }
}

function kindOf(p: IpPacket): number {
  if (p.isTcp) return KIND_TCP;
  if (p.isUdp) return KIND_UDP;
  if (p.isEcho) return KIND_ICMP;
  return -1;
}

function outsideKeyOf(fam: number, kind: number, id: number, realKey: number): number {
  // IPv4: kind · id · address in 50 bits. IPv6: above 2^51, kind · id · index (index < 2^24).
  return fam === 0
    ? (kind * 65536 + id) * 0x1_0000_0000 + realKey
    : 2 ** 51 + (kind * 65536 + id) * 0x100_0000 + realKey;
}

function idleFor(kind: number): number {
  return kind === KIND_TCP ? NAT_TCP_IDLE_MS : kind === KIND_UDP ? NAT_UDP_IDLE_MS : NAT_ICMP_IDLE_MS;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
