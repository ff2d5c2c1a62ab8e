import { readU16, writeU16 } from '../bytes.js';
import { err, ok, type Result } from '../result.js';
import { CHANNEL_DATA_HEADER_BYTES, CHANNEL_MAX, CHANNEL_MIN } from './constants.js';
import type { StunError } from './message.js';

/**
 * TURN ChannelData (RFC 8656 §12.4): channel number, payload length, payload. Firezone sends it
 * unpadded and accepts it only when the length field covers exactly the rest of the datagram
 * (`spec/snownet.md` §2.12, §3.5); so do we.
 */
export interface ChannelData {
  readonly channel: number;
  /** Offset and length of the payload within the buffer passed in. */
  readonly payloadOffset: number;
  readonly payloadLength: number;
}

/** First byte 0x40–0x4F: a channel of 0x4000–0x4FFF, the only ones Firezone binds. */
export function looksLikeChannelData(buf: Uint8Array, off: number, len: number): boolean {
  return len >= CHANNEL_DATA_HEADER_BYTES && (buf[off]! & 0xf0) === 0x40;
}

export function decodeChannelData(buf: Uint8Array, off: number, len: number): Result<ChannelData, StunError> {
  if (len < CHANNEL_DATA_HEADER_BYTES) {
    return err({ code: 'stun.truncated', message: `${len} bytes, channel data has a 4-byte header` });
  }
  const channel = readU16(buf, off);
  if (channel < CHANNEL_MIN || channel > CHANNEL_MAX) {
    return err({
      code: 'stun.bad-value',
      message: `channel 0x${channel.toString(16)} is outside 0x4000–0x4FFF`,
    });
  }
  const length = readU16(buf, off + 2);
  if (length !== len - CHANNEL_DATA_HEADER_BYTES) {
    return err({
      code: 'stun.bad-length',
      message: `channel data length ${length} does not match the ${len - CHANNEL_DATA_HEADER_BYTES} bytes after the header`,
    });
  }
  return ok({ channel, payloadOffset: off + CHANNEL_DATA_HEADER_BYTES, payloadLength: length });
}

/** Writes the 4-byte header in front of a payload of `length` bytes at `off + 4`. */
export function writeChannelDataHeader(buf: Uint8Array, off: number, channel: number, length: number): void {
  writeU16(buf, off, channel);
  writeU16(buf, off + 2, length);
}
