import type { WireError } from '../result.js';

/**
 * Why a packet was rejected. Each code is also the name of a drop counter, so the set is closed
 * and the error objects are shared constants: rejecting a packet allocates nothing.
 */
export type IpErrorCode =
  | 'ip.empty'
  | 'ip.too-large'
  | 'ip.bad-version'
  | 'ip.fragment'
  | 'ipv4.truncated'
  | 'ipv4.bad-ihl'
  | 'ipv4.bad-total-length'
  | 'ipv4.bad-header-checksum'
  | 'ipv6.truncated'
  | 'ipv6.bad-extension-header'
  | 'ipv6.misplaced-hop-by-hop'
  | 'ah.truncated'
  | 'udp.truncated'
  | 'udp.bad-length'
  | 'tcp.truncated'
  | 'tcp.bad-data-offset'
  | 'icmp.truncated'
  | 'icmp.wrong-family'
  | 'icmp.bad-timestamp-length'
  | 'ip.family-mismatch'
  | 'ip.no-ports'
  | 'ip.not-echo'
  | 'ip.not-icmp-error'
  | 'ip.icmp-error-quote';

export type IpError = WireError<IpErrorCode>;

const MESSAGES: Record<IpErrorCode, string> = {
  'ip.empty': 'empty packet',
  'ip.too-large': 'packet larger than 1280 bytes',
  'ip.bad-version': 'IP version is neither 4 nor 6',
  'ip.fragment': 'fragmented packets are not forwarded',
  'ipv4.truncated': 'fewer bytes than an IPv4 header',
  'ipv4.bad-ihl': 'IPv4 header length below 5 words or beyond the packet',
  'ipv4.bad-total-length': 'IPv4 total length smaller than the header or larger than the packet',
  'ipv4.bad-header-checksum': 'IPv4 header checksum does not verify',
  'ipv6.truncated': 'fewer bytes than the IPv6 header or its payload length',
  'ipv6.bad-extension-header': 'IPv6 extension header runs past the packet',
  'ipv6.misplaced-hop-by-hop': 'IPv6 hop-by-hop options header is not first',
  'ah.truncated': 'authentication header runs past the packet',
  'udp.truncated': 'fewer bytes than a UDP header',
  'udp.bad-length': 'UDP length field does not match the IP payload length',
  'tcp.truncated': 'fewer bytes than a TCP header',
  'tcp.bad-data-offset': 'TCP data offset below 5 words or beyond the segment',
  'icmp.truncated': 'fewer bytes than an ICMP header',
  'icmp.wrong-family': 'ICMPv4 inside IPv6 or ICMPv6 inside IPv4',
  'icmp.bad-timestamp-length': 'ICMP timestamp message is not exactly 20 bytes',
  'ip.family-mismatch': 'address family differs from the packet',
  'ip.no-ports': 'packet has no TCP/UDP ports',
  'ip.not-echo': 'packet is not an ICMP echo request or reply',
  'ip.not-icmp-error': 'packet is not a recognised ICMP error',
  'ip.icmp-error-quote': 'ICMP error quotes no usable packet',
};

/** The shared error object for `code`. */
export const IP_ERRORS: { readonly [C in IpErrorCode]: IpError } = Object.freeze(
  Object.fromEntries(
    (Object.keys(MESSAGES) as IpErrorCode[]).map((code) => [
      code,
      Object.freeze({ code, message: MESSAGES[code] }),
    ]),
  ) as { [C in IpErrorCode]: IpError },
);

export const IP_ERROR_CODES: readonly IpErrorCode[] = Object.freeze(Object.keys(MESSAGES) as IpErrorCode[]);
