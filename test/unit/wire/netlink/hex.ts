/** Bytes from hex written in groups, with `#` comments to the end of a line. */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/#[^\n]*/g, '').replace(/\s+/g, '');
  if (digits.length % 2 !== 0 || /[^0-9a-fA-F]/.test(digits)) throw new Error(`bad hex: ${digits}`);
  return Uint8Array.from(digits.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
}
