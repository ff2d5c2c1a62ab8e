/**
 * IP-layer numbers. Specification constants (IANA/RFC) first, then the limits the Firezone data
 * plane imposes (`spec/gateway-dataplane.md` §1).
 */

// --- Specification constants -------------------------------------------------------------

/** IANA protocol numbers (also IPv6 next-header values). */
export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_AH = 51;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_DSTOPTS = 60;
/** Reserved; Firezone uses it for in-tunnel control packets (`spec/snownet.md` §4). */
export const IPPROTO_RESERVED_255 = 255;

export const IPV4_MIN_HEADER_BYTES = 20;
export const IPV6_HEADER_BYTES = 40;
export const UDP_HEADER_BYTES = 8;
export const TCP_MIN_HEADER_BYTES = 20;
export const ICMP_HEADER_BYTES = 8;
/** ICMPv4 timestamp and timestamp reply (types 13, 14) are exactly 20 bytes (RFC 792). */
export const ICMPV4_TIMESTAMP_BYTES = 20;

/** IPv4 flags/fragment-offset word: DF, MF and the 13-bit offset. */
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
export const IPV4_FRAG_OFFSET_MASK = 0x1fff;

export const ICMPV4_ECHO_REPLY = 0;
export const ICMPV4_DEST_UNREACHABLE = 3;
export const ICMPV4_ECHO_REQUEST = 8;
export const ICMPV4_TIME_EXCEEDED = 11;
export const ICMPV4_TIMESTAMP = 13;
export const ICMPV4_TIMESTAMP_REPLY = 14;
/** Destination unreachable codes (RFC 792, RFC 1812 §5.2.7.1). */
export const ICMPV4_CODE_NET_UNREACHABLE = 0;
export const ICMPV4_CODE_ADMIN_PROHIBITED = 13;

export const ICMPV6_DEST_UNREACHABLE = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
/** Destination unreachable codes (RFC 4443 §3.1). */
export const ICMPV6_CODE_ADMIN_PROHIBITED = 1;
export const ICMPV6_CODE_ADDRESS_UNREACHABLE = 3;

/** ECN codepoints (RFC 3168 §5). */
export const ECN_NOT_ECT = 0b00;
export const ECN_ECT1 = 0b01;
export const ECN_ECT0 = 0b10;
export const ECN_CE = 0b11;

/** RFC 8200 §5: every IPv6 link carries at least 1280 bytes. */
export const IPV6_MIN_MTU_BYTES = 1280;

// --- Firezone data-plane limits -----------------------------------------------------------

/** Largest IP packet the gateway accepts or emits; also the TUN MTU (`MAX_IP_SIZE`). */
export const MAX_IP_PACKET_BYTES = 1280;
/** WireGuard data-message overhead: 16-byte header + 16-byte Poly1305 tag. */
export const WIREGUARD_OVERHEAD_BYTES = 32;
/** TURN channel-data header (RFC 8656 §12.4). */
export const CHANNEL_DATA_HEADER_BYTES = 4;
/**
 * Largest UDP datagram the gateway accepts from the network: 1280 + 32 + 4 = 1316 bytes
 * (`MAX_FZ_PAYLOAD`). Also the size of a pooled packet buffer.
 */
export const MAX_TUNNEL_DATAGRAM_BYTES =
  MAX_IP_PACKET_BYTES + WIREGUARD_OVERHEAD_BYTES + CHANNEL_DATA_HEADER_BYTES;

/** TTL / hop limit of the ICMP errors the gateway originates (`spec/gateway-dataplane.md` §3 step 9). */
export const ICMP_ERROR_TTL = 20;
/**
 * How much of the offending packet an ICMPv6 error quotes: as much as fits without exceeding the
 * IPv6 minimum MTU (RFC 4443 §2.4 (c)): 1280 − 40 (IPv6) − 8 (ICMPv6) = 1232 bytes. The reference
 * quotes at most 1200 because of an etherparse header-size constant; we follow the RFC.
 */
export const ICMPV6_ERROR_MAX_QUOTE_BYTES = IPV6_MIN_MTU_BYTES - IPV6_HEADER_BYTES - ICMP_HEADER_BYTES;
/** ICMPv4 errors quote the offending IP header plus the first 8 bytes of its payload (RFC 792). */
export const ICMPV4_ERROR_QUOTE_PAYLOAD_BYTES = 8;
