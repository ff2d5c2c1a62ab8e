/**
 * Netlink and rtnetlink numbers (Linux UAPI: `linux/netlink.h`, `linux/rtnetlink.h`,
 * `linux/if_link.h`, `linux/if_addr.h`, `linux/fib_rules.h`). They are part of the kernel ABI and
 * identical on every architecture. Specification constants come first, then the values this
 * gateway uses (`spec/gateway-dataplane.md` §1, §10).
 */

// --- Specification constants: framing (linux/netlink.h) ----------------------------------

/** `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32. */
export const NLMSG_HEADER_BYTES = 16;
/** Messages and attributes are padded to 4 bytes (`NLMSG_ALIGNTO`, `RTA_ALIGNTO`). */
export const NETLINK_ALIGN_BYTES = 4;
/** `struct rtattr` / `struct nlattr`: len u16, type u16. */
export const RTATTR_HEADER_BYTES = 4;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
export const NLM_F_DUMP_INTR = 0x10;
/** GET requests. */
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
/** NEW requests. */
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** Flags on an NLMSG_ERROR reply: the echoed request is cut to its header / TLVs follow. */
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;

/** Extended-ack attributes after `struct nlmsgerr` (linux/netlink.h `enum nlmsgerr_attrs`). */
export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;

/** Attribute type bits that are flags, not part of the type. */
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/** Socket options at level SOL_NETLINK. */
export const SOL_NETLINK = 270;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_GET_STRICT_CHK = 12;
export const NETLINK_ROUTE = 0;

// --- Specification constants: rtnetlink message types (linux/rtnetlink.h) ----------------

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWRULE = 32;
export const RTM_DELRULE = 33;
export const RTM_GETRULE = 34;

/** Address families as they appear in rtnetlink headers. */
export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

// --- Links (linux/if_link.h, linux/if.h) --------------------------------------------------

/** `struct ifinfomsg`: family u8, pad u8, type u16, index i32, flags u32, change u32. */
export const IFINFOMSG_BYTES = 16;
export const IFF_UP = 0x1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_TXQLEN = 13;
/** Interface names are at most 15 bytes plus the NUL (`IFNAMSIZ`). */
export const IFNAMSIZ = 16;

// --- Addresses (linux/if_addr.h) -----------------------------------------------------------

/** `struct ifaddrmsg`: family u8, prefixlen u8, flags u8, scope u8, index u32. */
export const IFADDRMSG_BYTES = 8;
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_FLAGS = 8;
export const IFA_F_NODAD = 0x02;
export const IFA_F_PERMANENT = 0x80;

// --- Routes (linux/rtnetlink.h) --------------------------------------------------------------

/** `struct rtmsg`: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags u32. */
export const RTMSG_BYTES = 12;
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_PRIORITY = 6;
export const RTA_TABLE = 15;
/** Table ids above 255 do not fit the u8 header field; it is then RT_TABLE_UNSPEC plus RTA_TABLE. */
export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_MAIN = 254;
export const RT_TABLE_MAX_U8 = 255;
export const RTPROT_KERNEL = 2;
export const RTPROT_STATIC = 4;
export const RT_SCOPE_UNIVERSE = 0;
/** On RTM_DELROUTE: match a route of any scope. */
export const RT_SCOPE_NOWHERE = 255;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RTN_UNICAST = 1;

// --- Policy rules (linux/fib_rules.h) ---------------------------------------------------------

/** `struct fib_rule_hdr`: family, dst_len, src_len, tos, table, res1, res2, action (u8 each), flags u32. */
export const FIB_RULE_HDR_BYTES = 12;
export const FRA_PRIORITY = 6;
export const FRA_FWMARK = 10;
export const FRA_TABLE = 15;
export const FRA_FWMASK = 16;
export const FRA_PROTOCOL = 21;
/**
 * Rule attributes that select packets other than by fwmark: DST 1, SRC 2, IIFNAME 3, FLOW 11,
 * TUN_ID 12, OIFNAME 17, L3MDEV 19, UID_RANGE 20, IP_PROTO 22, SPORT_RANGE 23, DPORT_RANGE 24,
 * DSCP 25, FLOWLABEL 26. The kernel dumps each only when it is set.
 */
export const FRA_OTHER_SELECTORS: ReadonlySet<number> = new Set([
  1, 2, 3, 11, 12, 17, 19, 20, 22, 23, 24, 25, 26,
]);
export const FR_ACT_TO_TBL = 1;
/** The rule matches packets that do NOT match its selectors (`ip rule add not ...`). */
export const FIB_RULE_INVERT = 0x2;

// --- Firezone values (spec/gateway-dataplane.md §1) ------------------------------------------

/** Routing table holding the tunnel routes (`FIREZONE_TABLE`). */
export const FIREZONE_TABLE = 0x2021fd00;
/** fwmark on the gateway's own sockets, so they bypass the Firezone table (`FIREZONE_MARK`). */
export const FIREZONE_FWMARK = 0xfd002021;
