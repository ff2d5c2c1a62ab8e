import { IPPROTO_TCP, IPPROTO_UDP } from '../wire/ip/constants.js';
import type { IpPacket } from '../wire/ip/packet.js';
import type { Filter } from '../wire/policy.js';

/**
 * What one destination (or, inbound, one source) permits: the union of the filter lists of every
 * resource covering it (`spec/gateway-dataplane.md` §5.3). Any contributing empty list makes it
 * permit-all, every protocol included. Otherwise: TCP and UDP port ranges, and an ICMP flag that
 * covers every ICMP type. Other protocols are denied.
 */
export class FilterEngine {
  /** Merged, sorted, inclusive ranges as [start0, end0, start1, end1, ...]. */
  private readonly tcp: Int32Array;
  private readonly udp: Int32Array;

  private constructor(
    readonly permitAll: boolean,
    tcp: number[],
    udp: number[],
    readonly icmp: boolean,
  ) {
    this.tcp = Int32Array.from(tcp);
    this.udp = Int32Array.from(udp);
  }

  static readonly PERMIT_ALL = new FilterEngine(true, [], [], true);

  /** The union of several filter lists. */
  static fromLists(lists: readonly (readonly Filter[])[]): FilterEngine {
    if (lists.some((l) => l.length === 0)) return FilterEngine.PERMIT_ALL;
    const tcp: [number, number][] = [];
    const udp: [number, number][] = [];
    let icmp = false;
    for (const list of lists) {
      for (const f of list) {
        if (f.protocol === 'icmp') icmp = true;
        else if (f.portStart <= f.portEnd) (f.protocol === 'tcp' ? tcp : udp).push([f.portStart, f.portEnd]);
      }
    }
    return new FilterEngine(false, merge(tcp), merge(udp), icmp);
  }

  /** Whether the packet passes, keyed on its destination port (outbound) or source port (inbound). */
  allows(p: IpPacket, bySource: boolean): boolean {
    if (this.permitAll) return true;
    const proto = p.protocol;
    if (proto === IPPROTO_TCP) return inRanges(this.tcp, bySource ? p.srcPort! : p.dstPort!);
    if (proto === IPPROTO_UDP) return inRanges(this.udp, bySource ? p.srcPort! : p.dstPort!);
    if (p.isIcmp) return this.icmp;
    return false;
  }

  /** The filter list this engine is equivalent to (for inspection and tests). */
  describe(): string {
    if (this.permitAll) return 'permit-all';
    const r = (a: Int32Array) => {
      const out: string[] = [];
      for (let i = 0; i < a.length; i += 2) out.push(a[i] === a[i + 1] ? `${a[i]}` : `${a[i]}-${a[i + 1]}`);
      return out.join(',');
    };
    return [
      this.tcp.length ? `tcp:${r(this.tcp)}` : '',
      this.udp.length ? `udp:${r(this.udp)}` : '',
      this.icmp ? 'icmp' : '',
    ]
      .filter(Boolean)
      .join(' ');
  }
}

function merge(ranges: [number, number][]): number[] {
  ranges.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [s, e] of ranges) {
    const n = out.length;
    if (n > 0 && s <= out[n - 1]! + 1) out[n - 1] = Math.max(out[n - 1]!, e);
    else out.push(s, e);
  }
  return out;
}

function inRanges(r: Int32Array, port: number): boolean {
  // Binary search over the starts: few ranges per resource, but a client may hold many.
  let lo = 0;
  let hi = (r.length >> 1) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (port < r[mid * 2]!) hi = mid - 1;
    else if (port > r[mid * 2 + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}
