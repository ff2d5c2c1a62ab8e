import { describe, expect, it } from 'vitest';
import {
  decodeChannelData,
  looksLikeChannelData,
  writeChannelDataHeader,
} from '../../../../src/wire/stun/channel-data.js';
import {
  ATTR_SOFTWARE,
  ATTR_XOR_MAPPED_ADDRESS,
  CHANNEL_MAX,
  CHANNEL_MIN,
  CLASS_REQUEST,
  CLASS_SUCCESS,
  METHOD_BINDING,
} from '../../../../src/wire/stun/constants.js';
import { decodeStun, looksLikeStun, StunBuilder } from '../../../../src/wire/stun/message.js';
import { v4 } from '../../../support/packet-builder.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A channel-data frame: 4-byte header, then the payload, unpadded. */
function frame(channel: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  writeChannelDataHeader(out, 0, channel, payload.length);
  out.set(payload, 4);
  return out;
}

function codeOf(buf: Uint8Array, off = 0, len = buf.length - off): string {
  const r = decodeChannelData(buf, off, len);
  return r.ok ? 'ok' : r.error.code;
}

/** The four WireGuard message types (first byte, then three zero bytes) at their real sizes. */
function wireguardMessages(): Uint8Array[] {
  const sized = (type: number, size: number) => {
    const m = new Uint8Array(size).fill(0xa5);
    m.set([type, 0, 0, 0]);
    return m;
  };
  // Initiation 148, response 92, cookie reply 64, transport data 32 + payload.
  return [sized(1, 148), sized(2, 92), sized(3, 64), sized(4, 32), sized(4, 32 + 1280)];
}

describe('channel data', () => {
  it('round-trips the header and payload for every channel 0x4000–0x4FFF', () => {
    for (let channel = CHANNEL_MIN; channel <= CHANNEL_MAX; channel++) {
      const payload = Uint8Array.from({ length: channel % 67 }, (_, i) => (i * 7 + channel) & 0xff);
      const bytes = frame(channel, payload);
      const r = decodeChannelData(bytes, 0, bytes.length);
      if (!r.ok) expect.fail(`channel 0x${channel.toString(16)}: ${r.error.code}`);
      expect(r.value.channel).toBe(channel);
      expect(r.value.payloadOffset).toBe(4);
      expect(r.value.payloadLength).toBe(payload.length);
      expect(hex(bytes.subarray(r.value.payloadOffset, r.value.payloadOffset + r.value.payloadLength))).toBe(
        hex(payload),
      );
    }
  });

  it('decodes a frame at an offset inside a larger buffer, with offsets into that buffer', () => {
    const payload = new Uint8Array([1, 2, 3, 4, 5]);
    const buf = new Uint8Array(32).fill(0xee);
    writeChannelDataHeader(buf, 16, 0x4abc, payload.length);
    buf.set(payload, 20);
    const r = decodeChannelData(buf, 16, 4 + payload.length);
    expect(r).toEqual({ ok: true, value: { channel: 0x4abc, payloadOffset: 20, payloadLength: 5 } });
  });

  it('writes the header in network byte order', () => {
    expect(hex(frame(0x4001, new Uint8Array([0xff, 0xfe])))).toBe('40010002fffe');
  });

  it('accepts an empty payload', () => {
    expect(decodeChannelData(frame(0x4000, new Uint8Array(0)), 0, 4)).toEqual({
      ok: true,
      value: { channel: 0x4000, payloadOffset: 4, payloadLength: 0 },
    });
  });

  it('rejects fewer than 4 bytes as stun.truncated', () => {
    const bytes = frame(0x4000, new Uint8Array(0));
    for (let n = 0; n < 4; n++) expect(codeOf(bytes, 0, n)).toBe('stun.truncated');
  });

  it('rejects a length field one byte longer or shorter than the datagram as stun.bad-length', () => {
    for (const size of [0, 1, 3, 4, 5, 100, 1312]) {
      const bytes = frame(0x4123, new Uint8Array(size));
      expect(codeOf(bytes), `${size}`).toBe('ok');
      expect(codeOf(bytes, 0, bytes.length - 1), `${size} - 1`).toBe(
        size === 0 ? 'stun.truncated' : 'stun.bad-length',
      );
      const longer = new Uint8Array(bytes.length + 1);
      longer.set(bytes);
      expect(codeOf(longer), `${size} + 1`).toBe('stun.bad-length');
    }
  });

  it('rejects padding to a multiple of 4 (Firezone sends and accepts channel data unpadded)', () => {
    // RFC 8656 §12.5 lets UDP senders pad; snownet.md §2.12 and §3.5 take the length as exact.
    for (const size of [1, 2, 3, 5, 6, 7]) {
      const bytes = frame(0x4000, new Uint8Array(size).fill(9));
      const padded = new Uint8Array((bytes.length + 3) & ~3);
      padded.set(bytes);
      expect(codeOf(padded), `${size}`).toBe('stun.bad-length');
    }
  });

  it('rejects channel numbers outside 0x4000–0x4FFF', () => {
    for (const channel of [0x0000, 0x0001, 0x3fff, 0x5000, 0x7ffe, 0x7fff, 0x8000, 0xffff]) {
      const r = decodeChannelData(frame(channel, new Uint8Array(8)), 0, 12);
      expect(r.ok ? 'ok' : r.error.code, `0x${channel.toString(16)}`).toBe('stun.bad-value');
    }
  });

  it('looks like channel data exactly when the first byte is 0x40–0x4F', () => {
    for (let first = 0; first < 256; first++) {
      const bytes = new Uint8Array([first, 0x00, 0x00, 0x00]);
      expect(looksLikeChannelData(bytes, 0, 4), `0x${first.toString(16)}`).toBe(
        first >= 0x40 && first <= 0x4f,
      );
      // It never claims a datagram too short for the header.
      expect(looksLikeChannelData(bytes, 0, 3)).toBe(false);
    }
  });

  it('looks only at the byte at the offset', () => {
    const buf = new Uint8Array([0x40, 0x01, 0x41, 0x00, 0x00, 0x00]);
    expect(looksLikeChannelData(buf, 1, 5)).toBe(false);
    expect(looksLikeChannelData(buf, 2, 4)).toBe(true);
  });
});

describe('demultiplexing one socket (snownet.md §2.12)', () => {
  it('never takes a WireGuard message for channel data or for STUN', () => {
    for (const wg of wireguardMessages()) {
      expect(looksLikeChannelData(wg, 0, wg.length), `type ${wg[0]}`).toBe(false);
      expect(decodeChannelData(wg, 0, wg.length).ok, `type ${wg[0]}`).toBe(false);
      expect(looksLikeStun(wg, 0, wg.length), `type ${wg[0]}`).toBe(false);
      expect(decodeStun(wg).ok, `type ${wg[0]}`).toBe(false);
    }
  });

  it('never takes a STUN message for channel data', () => {
    const txid = new Uint8Array(12).fill(7);
    const messages = [
      new StunBuilder(METHOD_BINDING, CLASS_REQUEST, txid).build(),
      new StunBuilder(METHOD_BINDING, CLASS_SUCCESS, txid)
        .addXorAddress(ATTR_XOR_MAPPED_ADDRESS, { ip: v4(203, 0, 113, 9), port: 3478 })
        .addText(ATTR_SOFTWARE, 'x')
        .fingerprint()
        .build(),
      // The largest method and class: the highest first byte a STUN message can have (0x3F).
      new StunBuilder(0xfff, 3, txid).build(),
    ];
    for (const m of messages) {
      expect(looksLikeStun(m, 0, m.length)).toBe(true);
      expect(looksLikeChannelData(m, 0, m.length)).toBe(false);
      expect(decodeChannelData(m, 0, m.length).ok).toBe(false);
    }
  });

  it('never takes channel data for STUN', () => {
    for (const channel of [CHANNEL_MIN, 0x4800, CHANNEL_MAX]) {
      const bytes = frame(channel, new Uint8Array(36));
      expect(looksLikeStun(bytes, 0, bytes.length)).toBe(false);
      expect(decodeStun(bytes).ok).toBe(false);
    }
  });
});
