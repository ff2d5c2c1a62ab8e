/**
 * A map keyed by an IP address read straight out of a packet buffer, without allocating:
 * IPv4 addresses become a uint32 key, IPv6 addresses are hashed into buckets whose entries are
 * compared byte for byte. Used for the per-packet lookups (client by tunnel IP, NAT real IPs).
 */
export class IpMap<V> {
  private readonly v4 = new Map<number, V>();
  private readonly v6 = new Map<number, { key: Uint8Array; value: V }[]>();
  private count6 = 0;

  get size(): number {
    return this.v4.size + this.count6;
  }

  get(buf: Uint8Array, off: number, len: number): V | undefined {
    if (len === 4) return this.v4.get(v4Key(buf, off));
    const bucket = this.v6.get(v6Hash(buf, off));
    if (!bucket) return undefined;
    for (let i = 0; i < bucket.length; i++) {
      const e = bucket[i]!;
      if (equal16(e.key, buf, off)) return e.value;
    }
    return undefined;
  }

  /** Convenience for whole 4- or 16-byte addresses. */
  getAddress(addr: Uint8Array): V | undefined {
    return this.get(addr, 0, addr.length);
  }

  set(addr: Uint8Array, value: V): void {
    if (addr.length === 4) {
      this.v4.set(v4Key(addr, 0), value);
      return;
    }
    if (addr.length !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, got ${addr.length}`);
    const h = v6Hash(addr, 0);
    let bucket = this.v6.get(h);
    if (!bucket) {
      bucket = [];
      this.v6.set(h, bucket);
    }
    for (const e of bucket) {
      if (equal16(e.key, addr, 0)) {
        e.value = value;
        return;
      }
    }
    bucket.push({ key: Uint8Array.from(addr), value });
    this.count6++;
  }

  delete(addr: Uint8Array): boolean {
    if (addr.length === 4) return this.v4.delete(v4Key(addr, 0));
    const h = v6Hash(addr, 0);
    const bucket = this.v6.get(h);
    if (!bucket) return false;
    const i = bucket.findIndex((e) => equal16(e.key, addr, 0));
    if (i < 0) return false;
    bucket.splice(i, 1);
    if (bucket.length === 0) this.v6.delete(h);
    this.count6--;
    return true;
  }

  clear(): void {
    this.v4.clear();
    this.v6.clear();
    this.count6 = 0;
  }
}

export function v4Key(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

function v6Hash(b: Uint8Array, off: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < 16; i++) h = Math.imul(h ^ b[off + i]!, 0x01000193);
  return h >>> 0;
}

function equal16(a: Uint8Array, b: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[off + i]) return false;
  return true;
}
