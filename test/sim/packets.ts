import { checkChecksums } from '../support/checksum-oracle.js';
import { buildPacket, type L4Spec } from '../support/packet-builder.js';

/**
 * A small, independent IP reader for the simulation's checks: it shares no code with
 * `src/wire/ip`, so what the gateway writes and what the clients receive is judged by
 * something other than the gateway's own parser. Only what the checks need: addresses,
 * protocol, ports, TCP flags, ICMP type/code/identifier, the L4 payload, and p2p control events.
 */

export interface Seen {
  readonly bytes: Uint8Array;
  readonly version: 4 | 6;
  /** Addresses as lower-case hex (the model's keys). */
  readonly src: string;
  readonly dst: string;
  readonly proto: number;
  readonly ttl: number;
  readonly sport: number | undefined;
  readonly dport: number | undefined;
  readonly tcpFlags: number | undefined;
  readonly icmpType: number | undefined;
  readonly icmpCode: number | undefined;
  /** Echo identifier and sequence (echo request/reply only). */
  readonly icmpId: number | undefined;
  readonly icmpSeq: number | undefined;
  /** Bytes after the L4 header (UDP/TCP payload; ICMP: after the 8-byte header). */
  readonly payload: Uint8Array;
  /** Every checksum the packet carries verifies (independent oracle). */
  readonly checksumsOk: boolean;
  /** A p2p control event (IPv6 `::` → `::`, next header 255). */
  readonly control: { readonly type: number; readonly body: string } | undefined;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

export function unhex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

/** `a.b.c.d` or a compressed IPv6 text, for messages. */
export function showIp(h: string): string {
  const b = unhex(h);
  if (b.length === 4) return [...b].join('.');
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return words
    .join(':')
    .replace(/(^|:)0(:0)+(:|$)/, '::')
    .replace(/:::+/, '::');
}

export function readPacket(bytes: Uint8Array): Seen | undefined {
  if (bytes.length < 1) return undefined;
  const version = bytes[0]! >> 4;
  let proto: number;
  let l4: number;
  let end: number;
  let src: Uint8Array;
  let dst: Uint8Array;
  let ttl: number;
  if (version === 4) {
    if (bytes.length < 20) return undefined;
    const ihl = (bytes[0]! & 15) * 4;
    end = (bytes[2]! << 8) | bytes[3]!;
    proto = bytes[9]!;
    ttl = bytes[8]!;
    l4 = ihl;
    src = bytes.subarray(12, 16);
    dst = bytes.subarray(16, 20);
  } else if (version === 6) {
    if (bytes.length < 40) return undefined;
    end = 40 + ((bytes[4]! << 8) | bytes[5]!);
    proto = bytes[6]!;
    ttl = bytes[7]!;
    l4 = 40;
    src = bytes.subarray(8, 24);
    dst = bytes.subarray(24, 40);
  } else return undefined;
  if (end > bytes.length) return undefined;
  const u16 = (o: number) => (bytes[o]! << 8) | bytes[o + 1]!;
  let sport: number | undefined;
  let dport: number | undefined;
  let tcpFlags: number | undefined;
  let icmpType: number | undefined;
  let icmpCode: number | undefined;
  let icmpId: number | undefined;
  let icmpSeq: number | undefined;
  let payload = bytes.subarray(end, end);
  let control: Seen['control'];
  if (proto === 6 && end - l4 >= 20) {
    sport = u16(l4);
    dport = u16(l4 + 2);
    tcpFlags = bytes[l4 + 13]!;
    payload = bytes.subarray(l4 + (bytes[l4 + 12]! >> 4) * 4, end);
  } else if (proto === 17 && end - l4 >= 8) {
    sport = u16(l4);
    dport = u16(l4 + 2);
    payload = bytes.subarray(l4 + 8, end);
  } else if ((proto === 1 || proto === 58) && end - l4 >= 8) {
    icmpType = bytes[l4]!;
    icmpCode = bytes[l4 + 1]!;
    if ([0, 8, 128, 129].includes(icmpType)) {
      icmpId = u16(l4 + 4);
      icmpSeq = u16(l4 + 6);
    }
    payload = bytes.subarray(l4 + 8, end);
  } else if (version === 6 && proto === 255 && src.every((x) => x === 0) && dst.every((x) => x === 0)) {
    const body = bytes.subarray(40, end);
    if (body.length >= 8) control = { type: body[0]!, body: Buffer.from(body.subarray(8)).toString('utf8') };
  }
  const cs = checkChecksums(bytes.subarray(0, end));
  return {
    bytes: bytes.slice(0, end),
    version,
    src: hex(src),
    dst: hex(dst),
    proto,
    ttl,
    sport,
    dport,
    tcpFlags,
    icmpType,
    icmpCode,
    icmpId,
    icmpSeq,
    payload: payload.slice(),
    checksumsOk: control !== undefined || (cs.ipv4Header !== false && cs.l4 !== false),
    control,
  };
}

/** One line for messages: `udp 100.64.0.10:4000 → 172.20.1.10:7`. */
export function describe(p: Seen | undefined): string {
  if (!p) return '(unparseable)';
  if (p.control) return `control type ${p.control.type} ${p.control.body}`;
  const s = showIp(p.src);
  const d = showIp(p.dst);
  if (p.icmpType !== undefined)
    return `icmp${p.version === 6 ? 'v6' : ''} ${p.icmpType}/${p.icmpCode} ${s} → ${d}${p.icmpId !== undefined ? ` id ${p.icmpId}` : ''}`;
  const name = p.proto === 6 ? 'tcp' : p.proto === 17 ? 'udp' : `proto ${p.proto}`;
  const flags = p.tcpFlags !== undefined ? ` flags 0x${p.tcpFlags.toString(16)}` : '';
  return `${name} ${s}:${p.sport} → ${d}:${p.dport}${flags}`;
}

export const TCP_SYN = 0x02;
export const TCP_SYN_ACK = 0x12;
export const TCP_RST_ACK = 0x14;

/** The resource's answer to `p` (see {@link respond}). */
export function echoIcmp(p: Seen): Uint8Array {
  const v6 = p.version === 6;
  return buildPacket({
    src: unhex(p.dst),
    dst: unhex(p.src),
    l4: {
      kind: 'icmp',
      type: v6 ? 129 : 0,
      code: 0,
      rest: Uint8Array.of(p.icmpId! >> 8, p.icmpId! & 0xff, p.icmpSeq! >> 8, p.icmpSeq! & 0xff),
      payload: p.payload,
    },
  });
}

/** An ICMP destination unreachable / port unreachable from `p`'s destination, quoting `p`. */
export function portUnreachable(p: Seen): Uint8Array {
  const v6 = p.version === 6;
  const quote = v6 ? p.bytes.subarray(0, Math.min(p.bytes.length, 1232)) : p.bytes.subarray(0, 28);
  return buildPacket({
    src: unhex(p.dst),
    dst: unhex(p.src),
    l4: { kind: 'icmp', type: v6 ? 1 : 3, code: v6 ? 4 : 3, payload: quote },
  });
}

export function mirrored(p: Seen, l4: L4Spec): Uint8Array {
  return buildPacket({ src: unhex(p.dst), dst: unhex(p.src), l4 });
}
