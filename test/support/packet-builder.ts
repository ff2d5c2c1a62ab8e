import { checksumOf, wordsOf } from './checksum-oracle.js';

/**
 * Test packet builder, independent of src/wire/ip: it computes every checksum with the oracle's
 * routines. Addresses are byte arrays; the result is exactly the IP packet.
 */
export type L4Spec =
  | {
      kind: 'tcp';
      srcPort: number;
      dstPort: number;
      flags?: number;
      options?: Uint8Array;
      payload?: Uint8Array;
    }
  | { kind: 'udp'; srcPort: number; dstPort: number; payload?: Uint8Array; zeroChecksum?: boolean }
  | { kind: 'icmp'; type: number; code: number; rest?: Uint8Array; payload?: Uint8Array }
  | { kind: 'raw'; protocol: number; payload?: Uint8Array };

export interface PacketSpec {
  src: Uint8Array;
  dst: Uint8Array;
  l4: L4Spec;
  ttl?: number;
  tos?: number;
  /** IPv4 options (multiple of 4 bytes). */
  ipv4Options?: Uint8Array;
  ipv4Flags?: number;
  /** IPv6 extension headers, each `{ type, body }` where body length + 2 is a multiple of 8 (fragment: 6 bytes). */
  ipv6Ext?: { type: number; body: Uint8Array }[];
}

const EMPTY = new Uint8Array(0);

function protoOf(l4: L4Spec, v6: boolean): number {
  switch (l4.kind) {
    case 'tcp':
      return 6;
    case 'udp':
      return 17;
    case 'icmp':
      return v6 ? 58 : 1;
    case 'raw':
      return l4.protocol;
  }
}

function l4Bytes(l4: L4Spec): Uint8Array {
  switch (l4.kind) {
    case 'tcp': {
      const opts = l4.options ?? EMPTY;
      const hl = 20 + opts.length;
      const out = new Uint8Array(hl + (l4.payload?.length ?? 0));
      const dv = new DataView(out.buffer);
      dv.setUint16(0, l4.srcPort);
      dv.setUint16(2, l4.dstPort);
      dv.setUint32(4, 0x01020304);
      dv.setUint32(8, 0);
      out[12] = (hl / 4) << 4;
      out[13] = l4.flags ?? 0x02;
      dv.setUint16(14, 64240);
      out.set(opts, 20);
      if (l4.payload) out.set(l4.payload, hl);
      return out;
    }
    case 'udp': {
      const out = new Uint8Array(8 + (l4.payload?.length ?? 0));
      const dv = new DataView(out.buffer);
      dv.setUint16(0, l4.srcPort);
      dv.setUint16(2, l4.dstPort);
      dv.setUint16(4, out.length);
      if (l4.payload) out.set(l4.payload, 8);
      return out;
    }
    case 'icmp': {
      const rest = l4.rest ?? new Uint8Array(4);
      const out = new Uint8Array(4 + rest.length + (l4.payload?.length ?? 0));
      out[0] = l4.type;
      out[1] = l4.code;
      out.set(rest, 4);
      if (l4.payload) out.set(l4.payload, 4 + rest.length);
      return out;
    }
    case 'raw':
      return l4.payload ?? EMPTY;
  }
}

function checksumOffset(l4: L4Spec): number {
  return l4.kind === 'tcp' ? 16 : l4.kind === 'udp' ? 6 : l4.kind === 'icmp' ? 2 : -1;
}

export function buildPacket(spec: PacketSpec): Uint8Array {
  const v6 = spec.src.length === 16;
  const proto = protoOf(spec.l4, v6);
  const l4 = l4Bytes(spec.l4);
  if (!v6) {
    const opts = spec.ipv4Options ?? EMPTY;
    const ihl = 20 + opts.length;
    const pkt = new Uint8Array(ihl + l4.length);
    const dv = new DataView(pkt.buffer);
    pkt[0] = 0x40 | (ihl / 4);
    pkt[1] = spec.tos ?? 0;
    dv.setUint16(2, pkt.length);
    dv.setUint16(4, 0x1234);
    dv.setUint16(6, spec.ipv4Flags ?? 0x4000);
    pkt[8] = spec.ttl ?? 64;
    pkt[9] = proto;
    pkt.set(spec.src, 12);
    pkt.set(spec.dst, 16);
    pkt.set(opts, 20);
    pkt.set(l4, ihl);
    const co = checksumOffset(spec.l4);
    const skipUdp = spec.l4.kind === 'udp' && spec.l4.zeroChecksum;
    if (co >= 0 && !skipUdp) {
      const pseudo = proto === 1 ? [] : [...wordsOf(pkt, 12, 20), proto, l4.length];
      let c = checksumOf([...pseudo, ...wordsOf(l4, 0, l4.length)]);
      if (c === 0 && proto === 17) c = 0xffff;
      dv.setUint16(ihl + co, c);
    }
    dv.setUint16(10, checksumOf(wordsOf(pkt, 0, ihl)));
    return pkt;
  }
  const exts = spec.ipv6Ext ?? [];
  const extLen = exts.reduce((n, e) => n + 2 + e.body.length, 0);
  const pkt = new Uint8Array(40 + extLen + l4.length);
  const dv = new DataView(pkt.buffer);
  const tc = spec.tos ?? 0;
  dv.setUint32(0, (6 << 28) | (tc << 20) | 0x12345);
  dv.setUint16(4, extLen + l4.length);
  pkt[6] = exts.length ? exts[0]!.type : proto;
  pkt[7] = spec.ttl ?? 64;
  pkt.set(spec.src, 8);
  pkt.set(spec.dst, 24);
  let at = 40;
  exts.forEach((e, i) => {
    pkt[at] = i + 1 < exts.length ? exts[i + 1]!.type : proto;
    pkt[at + 1] =
      e.type === 44 ? 0 : e.type === 51 ? (2 + e.body.length) / 4 - 2 : (2 + e.body.length) / 8 - 1;
    pkt.set(e.body, at + 2);
    at += 2 + e.body.length;
  });
  pkt.set(l4, at);
  const co = checksumOffset(spec.l4);
  const skipUdp = spec.l4.kind === 'udp' && spec.l4.zeroChecksum;
  if (co >= 0 && !skipUdp) {
    const pseudo = [...wordsOf(pkt, 8, 40), l4.length >>> 16, l4.length & 0xffff, 0, proto];
    let c = checksumOf([...pseudo, ...wordsOf(l4, 0, l4.length)]);
    if (c === 0 && proto === 17) c = 0xffff;
    dv.setUint16(at + co, c);
  }
  return pkt;
}

export const v4 = (a: number, b: number, c: number, d: number) => new Uint8Array([a, b, c, d]);
export function v6(...words: number[]): Uint8Array {
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}
/** An ICMP echo `rest` field (identifier, sequence). */
export function echoRest(id: number, seq = 1): Uint8Array {
  return new Uint8Array([id >> 8, id & 0xff, seq >> 8, seq & 0xff]);
}
