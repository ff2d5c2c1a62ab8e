import { describe, expect, it } from 'vitest';
import { addressOf, checkRange } from '../../../src/io/native-memory.js';
import { O_CLOEXEC, O_NONBLOCK } from '../../../src/native/abi.js';
import { getLibc } from '../../../src/native/libc.js';

describe('native addresses of byte arrays', () => {
  it('are stable per buffer and offset by the view position', () => {
    const memory = new ArrayBuffer(4096);
    const whole = new Uint8Array(memory);
    const part = new Uint8Array(memory, 1000, 100);
    expect(addressOf(part) - addressOf(whole)).toBe(1000);
    expect(addressOf(whole)).toBe(addressOf(new Uint8Array(memory)));
    const other = new Uint8Array(64);
    expect(addressOf(other)).not.toBe(addressOf(whole));
  });

  it('let the kernel read and write exactly the addressed bytes', () => {
    const libc = getLibc();
    const fds = new Int32Array(2);
    expect(libc.pipe2(fds, O_NONBLOCK | O_CLOEXEC)).toBe(0);
    try {
      const src = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
      expect(libc.write(fds[1]!, addressOf(src) + 100, 50)).toBe(50);
      const dst = new Uint8Array(64);
      expect(libc.read(fds[0]!, addressOf(dst) + 7, 50)).toBe(50);
      expect([...dst.subarray(7, 57)]).toEqual([...src.subarray(100, 150)]);
      expect(dst[6]).toBe(0);
      expect(dst[57]).toBe(0);
    } finally {
      libc.close(fds[0]!);
      libc.close(fds[1]!);
    }
  });
});

describe('range checks before native writes', () => {
  it('accept ranges inside the buffer and refuse everything else', () => {
    const buf = new Uint8Array(100);
    expect(() => checkRange(buf, 0, 100)).not.toThrow();
    expect(() => checkRange(buf, 99, 1)).not.toThrow();
    for (const [off, len] of [
      [0, 0],
      [0, 101],
      [-1, 10],
      [95, 6],
      [0.5, 10],
      [0, Number.NaN],
    ] as const) {
      expect(() => checkRange(buf, off, len)).toThrow(RangeError);
    }
  });
});
