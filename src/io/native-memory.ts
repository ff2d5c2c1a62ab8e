import { nativeAddress } from '../native/libc.js';

/**
 * Native addresses of JavaScript byte arrays, so packet bytes go to the kernel by address with no
 * copy and no per-packet view allocation (`write(fd, address + offset, length)`).
 *
 * The address of each backing ArrayBuffer is looked up once and cached in a WeakMap, keyed by
 * the buffer itself so the entry dies with it. Backing stores never move, so a cached address
 * stays valid while the buffer lives; the caller holds the view, which holds the buffer, for the
 * duration of the call. Packet batches share one ArrayBuffer, so the one-entry cache in front of
 * the map answers almost every lookup.
 */
const addresses = new WeakMap<ArrayBufferLike, number>();
let lastMemory: ArrayBufferLike | undefined;
let lastAddress = 0;

/** The native address of `view[0]`. */
export function addressOf(view: Uint8Array): number {
  const memory = view.buffer;
  if (memory !== lastMemory) {
    let address = addresses.get(memory);
    if (address === undefined) {
      address = nativeAddress(memory);
      addresses.set(memory, address);
    }
    lastMemory = memory;
    lastAddress = address;
  }
  return lastAddress + view.byteOffset;
}

/**
 * Throws a RangeError unless `[off, off + len)` lies inside `buf` with `len > 0`. Addresses
 * bypass JavaScript's bounds checks, so every native write checks here first: a wrong length
 * would otherwise send unrelated process memory to the kernel.
 */
export function checkRange(buf: Uint8Array, off: number, len: number): void {
  if (!(off >= 0 && len > 0 && off + len <= buf.length && Number.isInteger(off) && Number.isInteger(len))) {
    throw new RangeError(`bytes [${off}, ${off + len}) are not inside a ${buf.length}-byte buffer`);
  }
}
