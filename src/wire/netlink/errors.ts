import type { WireError } from '../result.js';

/**
 * Why bytes from a netlink socket could not be decoded. Replies come from the kernel, so these
 * mean a kernel/ABI mismatch or a bug, never an attack; the decoder still never throws.
 */
export type NetlinkErrorCode =
  /** Fewer than 16 bytes where a `nlmsghdr` should start. */
  | 'netlink.truncated-header'
  /** `nlmsg_len` below the header size or beyond the received bytes. */
  | 'netlink.bad-length'
  /** The payload is shorter than the fixed header of its message type (`ifinfomsg`, ...). */
  | 'netlink.truncated-payload'
  /** An attribute's `rta_len` is below 4 or runs past its message. */
  | 'netlink.bad-attribute'
  /** An attribute's value has the wrong size for its type (a u32 that is not 4 bytes, ...). */
  | 'netlink.bad-attribute-length'
  /** The message is not of the type the parser was asked to read. */
  | 'netlink.unexpected-type';

export type NetlinkError = WireError<NetlinkErrorCode>;

export function netlinkError(code: NetlinkErrorCode, message: string): NetlinkError {
  return { code, message };
}
