import { err, ok, type Result } from '../result.js';
import {
  NETLINK_ALIGN_BYTES,
  NLA_TYPE_MASK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HEADER_BYTES,
  NLMSGERR_ATTR_MSG,
  RTATTR_HEADER_BYTES,
} from './constants.js';
import { type NetlinkError, netlinkError } from './errors.js';

/**
 * Netlink framing: `nlmsghdr` + fixed family header + `rtattr`s, each padded to 4 bytes.
 *
 * Netlink integers are in the host's byte order (netlink(7)), unlike anything else on the wire,
 * so every multi-byte access here goes through a DataView with `HOST_LITTLE_ENDIAN`.
 */

/** True on little-endian hosts (x86-64, arm64): netlink uses host byte order. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Rounds `n` up to the 4-byte netlink alignment (`NLMSG_ALIGN`, `RTA_ALIGN`). */
export function netlinkAlign(n: number): number {
  // Arithmetic, not `& ~3`: lengths read from the wire go up to 2^32 - 1, beyond int32 bit math.
  return n + ((NETLINK_ALIGN_BYTES - (n % NETLINK_ALIGN_BYTES)) % NETLINK_ALIGN_BYTES);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Host-order reads at `at`; callers have checked the bounds. */
export function readHostU16(b: Uint8Array, at: number): number {
  return view(b).getUint16(at, HOST_LITTLE_ENDIAN);
}
export function readHostU32(b: Uint8Array, at: number): number {
  return view(b).getUint32(at, HOST_LITTLE_ENDIAN);
}
export function readHostI32(b: Uint8Array, at: number): number {
  return view(b).getInt32(at, HOST_LITTLE_ENDIAN);
}

// --- Building ------------------------------------------------------------------------------

/**
 * Builds one request: header, a fixed family header (`ifinfomsg`, `rtmsg`, ...) whose fields
 * the caller sets with `u8`/`u16`/`u32`, then attributes. `finish()` fills in `nlmsg_len`.
 * Requests are built only when configuration changes, so this favours clarity over speed.
 */
export class NetlinkMessageBuilder {
  private buf: Uint8Array;
  private dv: DataView;
  private len: number;

  constructor(type: number, flags: number, seq: number, fixedHeaderBytes: number) {
    this.buf = new Uint8Array(256);
    this.dv = view(this.buf);
    this.len = NLMSG_HEADER_BYTES + netlinkAlign(fixedHeaderBytes);
    this.dv.setUint16(4, type, HOST_LITTLE_ENDIAN);
    this.dv.setUint16(6, flags, HOST_LITTLE_ENDIAN);
    this.dv.setUint32(8, seq >>> 0, HOST_LITTLE_ENDIAN);
    // nlmsg_pid stays 0: the kernel fills in the sender's port id.
  }

  /** Sets a field of the fixed family header; `at` counts from the end of `nlmsghdr`. */
  u8(at: number, value: number): this {
    this.buf[NLMSG_HEADER_BYTES + at] = value;
    return this;
  }
  u16(at: number, value: number): this {
    this.dv.setUint16(NLMSG_HEADER_BYTES + at, value, HOST_LITTLE_ENDIAN);
    return this;
  }
  u32(at: number, value: number): this {
    this.dv.setUint32(NLMSG_HEADER_BYTES + at, value >>> 0, HOST_LITTLE_ENDIAN);
    return this;
  }
  i32(at: number, value: number): this {
    this.dv.setInt32(NLMSG_HEADER_BYTES + at, value | 0, HOST_LITTLE_ENDIAN);
    return this;
  }

  /** Appends an attribute with raw value bytes (padded with zeros to 4 bytes). */
  attr(type: number, value: Uint8Array): this {
    const total = RTATTR_HEADER_BYTES + value.length;
    this.reserve(netlinkAlign(total));
    this.dv.setUint16(this.len, total, HOST_LITTLE_ENDIAN);
    this.dv.setUint16(this.len + 2, type, HOST_LITTLE_ENDIAN);
    this.buf.set(value, this.len + RTATTR_HEADER_BYTES);
    this.len += netlinkAlign(total);
    return this;
  }

  attrU8(type: number, value: number): this {
    return this.attr(type, Uint8Array.of(value));
  }

  attrU32(type: number, value: number): this {
    const b = new Uint8Array(4);
    view(b).setUint32(0, value >>> 0, HOST_LITTLE_ENDIAN);
    return this.attr(type, b);
  }

  /** A NUL-terminated string attribute (`NLA_NUL_STRING`, as `IFLA_IFNAME` expects). */
  attrString(type: number, value: string): this {
    const bytes = utf8Encoder.encode(value);
    const b = new Uint8Array(bytes.length + 1);
    b.set(bytes);
    return this.attr(type, b);
  }

  finish(): Uint8Array {
    this.dv.setUint32(0, this.len, HOST_LITTLE_ENDIAN);
    return this.buf.slice(0, this.len);
  }

  private reserve(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + extra));
    bigger.set(this.buf);
    this.buf = bigger;
    this.dv = view(bigger);
  }
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

// --- Parsing -------------------------------------------------------------------------------

/** One message from a netlink datagram. `payload` is a view into the received bytes. */
export interface NetlinkMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly pid: number;
  /** The bytes after `nlmsghdr`, up to `nlmsg_len` (without trailing alignment padding). */
  readonly payload: Uint8Array;
}

/**
 * Splits one received datagram into its messages. A datagram holds one or more messages back to
 * back, each starting on a 4-byte boundary; the padding after the last one may be missing.
 */
export function parseMessages(bytes: Uint8Array): Result<NetlinkMessage[], NetlinkError> {
  const out: NetlinkMessage[] = [];
  let at = 0;
  while (at < bytes.length) {
    const left = bytes.length - at;
    if (left < NLMSG_HEADER_BYTES) {
      return err(
        netlinkError('netlink.truncated-header', `${left} bytes at offset ${at}, a nlmsghdr needs 16`),
      );
    }
    const len = readHostU32(bytes, at);
    if (len < NLMSG_HEADER_BYTES || len > left) {
      return err(
        netlinkError(
          'netlink.bad-length',
          `nlmsg_len ${len} at offset ${at}: expected between 16 and the ${left} bytes left`,
        ),
      );
    }
    out.push({
      type: readHostU16(bytes, at + 4),
      flags: readHostU16(bytes, at + 6),
      seq: readHostU32(bytes, at + 8),
      pid: readHostU32(bytes, at + 12),
      payload: bytes.subarray(at + NLMSG_HEADER_BYTES, at + len),
    });
    at += netlinkAlign(len);
  }
  return ok(out);
}

/** One attribute: its type without the NESTED/NET_BYTEORDER flag bits, and its value bytes. */
export interface NetlinkAttribute {
  readonly type: number;
  readonly value: Uint8Array;
}

/** Parses the attributes filling `bytes` from `from` to the end. */
export function parseAttributes(bytes: Uint8Array, from: number): Result<NetlinkAttribute[], NetlinkError> {
  const out: NetlinkAttribute[] = [];
  let at = from;
  while (at < bytes.length) {
    const left = bytes.length - at;
    if (left < RTATTR_HEADER_BYTES) {
      return err(netlinkError('netlink.bad-attribute', `${left} stray bytes at offset ${at}`));
    }
    const len = readHostU16(bytes, at);
    if (len < RTATTR_HEADER_BYTES || len > left) {
      return err(
        netlinkError(
          'netlink.bad-attribute',
          `rta_len ${len} at offset ${at}: expected between 4 and the ${left} bytes left`,
        ),
      );
    }
    out.push({
      type: readHostU16(bytes, at + 2) & NLA_TYPE_MASK,
      value: bytes.subarray(at + RTATTR_HEADER_BYTES, at + len),
    });
    at += netlinkAlign(len);
  }
  return ok(out);
}

/** The value of a u32 attribute, or an error naming the attribute when it is not 4 bytes. */
export function attributeU32(a: NetlinkAttribute, name: string): Result<number, NetlinkError> {
  if (a.value.length !== 4) {
    return err(
      netlinkError('netlink.bad-attribute-length', `${name} has ${a.value.length} bytes, expected 4`),
    );
  }
  return ok(readHostU32(a.value, 0));
}

export function attributeU8(a: NetlinkAttribute, name: string): Result<number, NetlinkError> {
  if (a.value.length !== 1) {
    return err(
      netlinkError('netlink.bad-attribute-length', `${name} has ${a.value.length} bytes, expected 1`),
    );
  }
  return ok(a.value[0]!);
}

/** A string attribute up to its first NUL (or its end when the kernel sent none). */
export function attributeString(a: NetlinkAttribute): string {
  const nul = a.value.indexOf(0);
  return utf8Decoder.decode(nul === -1 ? a.value : a.value.subarray(0, nul));
}

/**
 * The outcome of a request, from an `NLMSG_ERROR` (error 0 = the ack) or an `NLMSG_DONE`.
 * `errno` is positive (`EEXIST` = 17), 0 on success. `seq` is the sequence number of the
 * request it answers. `detail` is the kernel's extended-ack text (NETLINK_EXT_ACK), if any.
 */
export interface NetlinkStatus {
  readonly errno: number;
  readonly seq: number;
  readonly detail?: string;
}

/** Reads an `NLMSG_ERROR` (`struct nlmsgerr`: int error, the request's header, [request payload], TLVs). */
export function parseErrorMessage(msg: NetlinkMessage): Result<NetlinkStatus, NetlinkError> {
  if (msg.type !== NLMSG_ERROR) {
    return err(netlinkError('netlink.unexpected-type', `message type ${msg.type}, expected NLMSG_ERROR (2)`));
  }
  const p = msg.payload;
  if (p.length < 4 + NLMSG_HEADER_BYTES) {
    return err(
      netlinkError('netlink.truncated-payload', `NLMSG_ERROR payload has ${p.length} bytes, expected ≥ 20`),
    );
  }
  const errno = 0 - readHostI32(p, 0);
  const seq = readHostU32(p, 4 + 8);
  if (!(msg.flags & NLM_F_ACK_TLVS)) return ok({ errno, seq });
  // The echoed request is only its header when capped (always for acks), else all of it.
  const echoed = msg.flags & NLM_F_CAPPED ? NLMSG_HEADER_BYTES : readHostU32(p, 4);
  const tlvAt = 4 + netlinkAlign(echoed);
  if (echoed < NLMSG_HEADER_BYTES || tlvAt > p.length) {
    return err(
      netlinkError(
        'netlink.bad-length',
        `NLMSG_ERROR echoes ${echoed} request bytes, ${p.length - 4} present`,
      ),
    );
  }
  return withDetail(errno, seq, p, tlvAt);
}

/** Reads an `NLMSG_DONE`, which ends a dump: an int error (negative errno), then optional TLVs. */
export function parseDoneMessage(msg: NetlinkMessage): Result<NetlinkStatus, NetlinkError> {
  if (msg.type !== NLMSG_DONE) {
    return err(netlinkError('netlink.unexpected-type', `message type ${msg.type}, expected NLMSG_DONE (3)`));
  }
  // Kernels before 2.6.x sent an empty NLMSG_DONE; treat it as success.
  if (msg.payload.length < 4) return ok({ errno: 0, seq: msg.seq });
  const errno = 0 - readHostI32(msg.payload, 0);
  if (!(msg.flags & NLM_F_ACK_TLVS)) return ok({ errno, seq: msg.seq });
  return withDetail(errno, msg.seq, msg.payload, 4);
}

function withDetail(
  errno: number,
  seq: number,
  p: Uint8Array,
  tlvAt: number,
): Result<NetlinkStatus, NetlinkError> {
  const attrs = parseAttributes(p, tlvAt);
  if (!attrs.ok) return attrs;
  const msgAttr = attrs.value.find((a) => a.type === NLMSGERR_ATTR_MSG);
  return ok(msgAttr ? { errno, seq, detail: attributeString(msgAttr) } : { errno, seq });
}
