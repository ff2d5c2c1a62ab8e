import type { IpPrefix } from '../wire/ip/prefix.js';

/**
 * Longest-prefix match over one address family: a binary trie in typed arrays, walked bit by bit
 * from the most significant bit (≤ 32 steps for IPv4, ≤ 128 for IPv6), remembering the deepest
 * node that holds a value. Built once per policy change; looked up per packet without allocating.
 */
export class LpmTable<V> {
  private left = new Int32Array(64);
  private right = new Int32Array(64);
  /** Index into `values`, or -1. */
  private slot = new Int32Array(64).fill(-1);
  private nodes = 1;
  private readonly values: V[] = [];

  constructor(readonly addressBytes: 4 | 16) {}

  get size(): number {
    return this.values.length;
  }

  /** Inserts or replaces the value at `prefix` (which must be of this table's family). */
  insert(prefix: IpPrefix, value: V): void {
    if (prefix.address.length !== this.addressBytes)
      throw new RangeError('prefix of the wrong address family');
    let n = 0;
    for (let bit = 0; bit < prefix.prefixLength; bit++) {
      const one = (prefix.address[bit >> 3]! >> (7 - (bit & 7))) & 1;
      const children = one ? this.right : this.left;
      let next = children[n]!;
      if (next === 0) {
        next = this.allocate();
        (one ? this.right : this.left)[n] = next;
      }
      n = next;
    }
    const s = this.slot[n]!;
    if (s >= 0) this.values[s] = value;
    else {
      this.slot[n] = this.values.length;
      this.values.push(value);
    }
  }

  /** The value of the longest prefix containing `buf[off, off + addressBytes)`. */
  lookup(buf: Uint8Array, off: number): V | undefined {
    let n = 0;
    let best = this.slot[0]!;
    const bits = this.addressBytes * 8;
    for (let bit = 0; bit < bits; bit++) {
      const one = (buf[off + (bit >> 3)]! >> (7 - (bit & 7))) & 1;
      n = one ? this.right[n]! : this.left[n]!;
      if (n === 0) break;
      const s = this.slot[n]!;
      if (s >= 0) best = s;
    }
    return best >= 0 ? this.values[best] : undefined;
  }

  /** Every (prefix, value) in the table, for inspection and tests. */
  entries(): { prefix: IpPrefix; value: V }[] {
    const out: { prefix: IpPrefix; value: V }[] = [];
    const walk = (n: number, depth: number, addr: Uint8Array) => {
      const s = this.slot[n]!;
      if (s >= 0)
        out.push({ prefix: { address: Uint8Array.from(addr), prefixLength: depth }, value: this.values[s]! });
      for (const [child, one] of [
        [this.left[n]!, 0],
        [this.right[n]!, 1],
      ] as const) {
        if (child === 0) continue;
        const a = Uint8Array.from(addr);
        if (one) a[depth >> 3] = a[depth >> 3]! | (0x80 >> (depth & 7));
        walk(child, depth + 1, a);
      }
    };
    walk(0, 0, new Uint8Array(this.addressBytes));
    return out;
  }

  private allocate(): number {
    if (this.nodes === this.left.length) {
      const grow = (a: Int32Array, fill: number) => {
        const b = new Int32Array(a.length * 2).fill(fill);
        b.set(a);
        return b;
      };
      this.left = grow(this.left, 0);
      this.right = grow(this.right, 0);
      this.slot = grow(this.slot, -1);
    }
    return this.nodes++;
  }
}
