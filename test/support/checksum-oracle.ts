/**
 * An independent checksum checker for tests: written plainly (DataView, one word at a time, no
 * unrolling, no incremental tricks) and sharing no code with src/wire/ip, so a bug in the
 * production routines cannot hide itself.
 */

function onesSum(words: number[]): number {
  let s = 0;
  for (const w of words) {
    s += w;
    s = (s & 0xffff) + (s >>> 16);
  }
  return s;
}

function wordsOf(bytes: Uint8Array, start: number, end: number): number[] {
  const out: number[] = [];
  for (let i = start; i < end; i += 2) out.push((bytes[i]! << 8) | (i + 1 < end ? bytes[i + 1]! : 0));
  return out;
}

export interface ChecksumReport {
  ipv4Header: boolean | 'n/a';
  l4: boolean | 'n/a' | 'unchecked-udp';
  protocol: number;
}

/** Checks the IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6 checksum of a whole IP packet. */
export function checkChecksums(pkt: Uint8Array): ChecksumReport {
  const version = pkt[0]! >> 4;
  let proto: number;
  let l4Start: number;
  let end: number;
  let pseudo: number[];
  let ipv4Header: boolean | 'n/a' = 'n/a';
  if (version === 4) {
    const ihl = (pkt[0]! & 15) * 4;
    end = (pkt[2]! << 8) | pkt[3]!;
    ipv4Header = onesSum(wordsOf(pkt, 0, ihl)) === 0xffff;
    proto = pkt[9]!;
    l4Start = ihl;
    if (proto === 51) {
      proto = pkt[l4Start]!;
      l4Start += (pkt[l4Start + 1]! + 2) * 4;
    }
    const len = end - l4Start;
    pseudo = [...wordsOf(pkt, 12, 20), proto, len];
  } else {
    end = 40 + ((pkt[4]! << 8) | pkt[5]!);
    proto = pkt[6]!;
    l4Start = 40;
    while ([0, 43, 60, 44, 51].includes(proto)) {
      const next = pkt[l4Start]!;
      const len = proto === 44 ? 8 : proto === 51 ? (pkt[l4Start + 1]! + 2) * 4 : (pkt[l4Start + 1]! + 1) * 8;
      proto = next;
      l4Start += len;
    }
    const len = end - l4Start;
    pseudo = [...wordsOf(pkt, 8, 40), len >>> 16, len & 0xffff, 0, proto];
  }
  const body = wordsOf(pkt, l4Start, end);
  let l4: ChecksumReport['l4'] = 'n/a';
  if (proto === 6 || proto === 17 || (proto === 58 && version === 6)) {
    if (proto === 17 && version === 4 && pkt[l4Start + 6] === 0 && pkt[l4Start + 7] === 0)
      l4 = 'unchecked-udp';
    else l4 = onesSum([...pseudo, ...body]) === 0xffff;
  } else if (proto === 1 && version === 4) {
    l4 = onesSum(body) === 0xffff;
  }
  return { ipv4Header, l4, protocol: proto };
}

/** True if every checksum the packet carries verifies. */
export function allChecksumsValid(pkt: Uint8Array): boolean {
  const r = checkChecksums(pkt);
  return r.ipv4Header !== false && r.l4 !== false;
}

/** Computes a fresh checksum field value over the given words (for the builders). */
export function checksumOf(words: number[]): number {
  return ~onesSum(words) & 0xffff;
}

export { wordsOf };
