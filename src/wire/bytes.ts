/** Big-endian (network order) 16-bit access. Small enough for V8 to inline on the hot path. */
export function readU16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

export function writeU16(b: Uint8Array, at: number, value: number): void {
  b[at] = value >> 8;
  b[at + 1] = value;
}
