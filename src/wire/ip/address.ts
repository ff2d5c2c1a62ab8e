/**
 * IP address text ⇄ bytes, without Node's `net` module (src/wire is sans-IO).
 *
 * Addresses are `Uint8Array`s of 4 or 16 bytes in network order. Formatting follows RFC 5952
 * (lower case, longest run of two or more zero groups compressed, first on ties; IPv4-mapped
 * addresses keep the dotted quad), which is also what the portal and Node print.
 */

export const IPV4_ADDRESS_BYTES = 4;
export const IPV6_ADDRESS_BYTES = 16;

/** Parses a dotted-quad IPv4 address (no leading zeros, no shorthand forms). */
export function parseIpv4(text: string): Uint8Array | undefined {
  const out = new Uint8Array(4);
  return parseIpv4Into(text, out, 0) ? out : undefined;
}

function parseIpv4Into(text: string, out: Uint8Array, off: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (p.length === 0 || p.length > 3 || !/^[0-9]+$/.test(p)) return false;
    if (p.length > 1 && p[0] === '0') return false;
    const v = Number(p);
    if (v > 255) return false;
    out[off + i] = v;
  }
  return true;
}

/** Parses an IPv6 address in any RFC 4291 §2.2 text form, including an embedded IPv4 tail. No zone ids. */
export function parseIpv6(text: string): Uint8Array | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  const out = new Uint8Array(16);
  const dbl = text.indexOf('::');
  if (dbl !== -1 && text.indexOf('::', dbl + 1) !== -1) return undefined;
  const head = dbl === -1 ? text : text.slice(0, dbl);
  const tail = dbl === -1 ? '' : text.slice(dbl + 2);
  const headGroups = head.length ? head.split(':') : [];
  const tailGroups = tail.length ? tail.split(':') : [];
  const groups: number[] = [];
  const tailVals: number[] = [];
  const all = [
    ...headGroups.map((g) => [g, groups] as const),
    ...tailGroups.map((g) => [g, tailVals] as const),
  ];
  for (let i = 0; i < all.length; i++) {
    const [g, into] = all[i]!;
    const isLast = i === all.length - 1;
    if (isLast && g.includes('.')) {
      const v4 = new Uint8Array(4);
      if (!parseIpv4Into(g, v4, 0)) return undefined;
      into.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    into.push(Number.parseInt(g, 16));
  }
  const count = groups.length + tailVals.length;
  if (dbl === -1 ? count !== 8 : count > 7) return undefined;
  const words = [...groups, ...new Array<number>(8 - count).fill(0), ...tailVals];
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i]! >> 8;
    out[2 * i + 1] = words[i]! & 0xff;
  }
  return out;
}

/** Parses either family. */
export function parseIp(text: string): Uint8Array | undefined {
  return text.includes(':') ? parseIpv6(text) : parseIpv4(text);
}

/** Formats 4 or 16 bytes at `off` of `bytes` as text. */
export function formatIp(bytes: Uint8Array, off = 0, len: number = bytes.length - off): string {
  if (len === 4) return `${bytes[off]}.${bytes[off + 1]}.${bytes[off + 2]}.${bytes[off + 3]}`;
  if (len !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, got ${len}`);
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((bytes[off + 2 * i]! << 8) | bytes[off + 2 * i + 1]!);
  // IPv4-mapped ::ffff:a.b.c.d keeps its dotted tail (RFC 5952 §5).
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return `::ffff:${bytes[off + 12]}.${bytes[off + 13]}.${bytes[off + 14]}.${bytes[off + 15]}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    w
      .slice(from, to)
      .map((x) => x.toString(16))
      .join(':');
  if (bestLen < 2) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/** True when `a[aOff, aOff+len)` equals `b[bOff, bOff+len)`. */
export function bytesEqual(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

/** True when every byte of the range is zero (the unspecified address). */
export function isZero(bytes: Uint8Array, off: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (bytes[off + i] !== 0) return false;
  return true;
}
