import { readFileSync } from 'node:fs';

/** One captured frame's IP packet (link-layer header stripped). */
export interface CapturedPacket {
  index: number;
  ip: Uint8Array;
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_RAW = 101;

/** Reads a classic pcap file (microsecond or nanosecond, either byte order) of Ethernet or raw IP frames. */
export function readPcap(path: string): CapturedPacket[] {
  const buf = readFileSync(path);
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && buf.readUInt32BE(0) !== 0xa1b2c3d4 && buf.readUInt32BE(0) !== 0xa1b23c4d) {
    throw new Error(`${path}: not a pcap file`);
  }
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const linktype = u32(20) & 0xffff;
  const out: CapturedPacket[] = [];
  let off = 24;
  let index = 0;
  while (off + 16 <= buf.length) {
    const incl = u32(off + 8);
    const frame = new Uint8Array(buf.subarray(off + 16, off + 16 + incl));
    off += 16 + incl;
    let ip: Uint8Array;
    if (linktype === LINKTYPE_RAW) ip = frame;
    else if (linktype === LINKTYPE_ETHERNET) {
      const ethertype = (frame[12]! << 8) | frame[13]!;
      if (ethertype !== 0x0800 && ethertype !== 0x86dd) continue;
      ip = frame.slice(14);
    } else throw new Error(`${path}: unsupported link type ${linktype}`);
    out.push({ index: index++, ip });
  }
  return out;
}
