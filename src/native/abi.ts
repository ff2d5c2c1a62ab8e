/**
 * Linux userspace ABI numbers and struct layouts for the LP64 little-endian architectures this
 * gateway supports (x86-64 and arm64, which share them: generic ioctl encoding, asm-generic
 * socket options). `getLibc()` refuses to load elsewhere, so nothing here is guessed at runtime.
 */

// --- open(2), pipe2(2), socket(2) flags --------------------------------------------------------

export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = O_NONBLOCK;
export const SOCK_CLOEXEC = O_CLOEXEC;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;

// --- Socket options -------------------------------------------------------------------------

export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_MARK = 36;
export const IPPROTO_IP = 0;
export const IPPROTO_IPV6 = 41;
export const IP_TOS = 1;
export const IP_PKTINFO = 8;
export const IP_RECVTOS = 13;
export const IPV6_V6ONLY = 26;
export const IPV6_RECVPKTINFO = 49;
export const IPV6_PKTINFO = 50;
export const IPV6_RECVTCLASS = 66;
export const IPV6_TCLASS = 67;

// --- send/recv flags, poll events ---------------------------------------------------------------

export const MSG_CTRUNC = 0x08;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;

export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;

// --- TUN (linux/if_tun.h) ----------------------------------------------------------------------

/** `_IOW('T', 202, int)`. */
export const TUNSETIFF = 0x400454ca;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;

// --- Struct layouts (bytes and field offsets) ----------------------------------------------------

/** `struct ifreq`: char ifr_name[16], then a 24-byte union whose first short is ifr_flags. */
export const IFREQ_BYTES = 40;
export const IFREQ_FLAGS_OFFSET = 16;
export const IFNAMSIZ = 16;

/** `struct pollfd`: int fd, short events, short revents. */
export const POLLFD_BYTES = 8;

/** `struct iovec`: void *iov_base, size_t iov_len. */
export const IOVEC_BYTES = 16;

/**
 * `struct mmsghdr`: a `struct msghdr` (56 bytes) then unsigned msg_len, padded to 64.
 * msghdr: void *msg_name @0, socklen_t msg_namelen @8, struct iovec *msg_iov @16,
 * size_t msg_iovlen @24, void *msg_control @32, size_t msg_controllen @40, int msg_flags @48.
 */
export const MMSGHDR_BYTES = 64;
export const MSGHDR_NAME_OFFSET = 0;
export const MSGHDR_NAMELEN_OFFSET = 8;
export const MSGHDR_IOV_OFFSET = 16;
export const MSGHDR_IOVLEN_OFFSET = 24;
export const MSGHDR_CONTROL_OFFSET = 32;
export const MSGHDR_CONTROLLEN_OFFSET = 40;
export const MSGHDR_FLAGS_OFFSET = 48;
export const MMSGHDR_LEN_OFFSET = 56;

/** `struct sockaddr_in`: family u16, port u16 (network order), addr[4], zero[8]. */
export const SOCKADDR_IN_BYTES = 16;
/** `struct sockaddr_in6`: family u16, port u16 (network order), flowinfo u32, addr[16], scope_id u32. */
export const SOCKADDR_IN6_BYTES = 28;
/** `struct sockaddr_nl`: family u16, pad u16, pid u32, groups u32. */
export const SOCKADDR_NL_BYTES = 12;

/** `struct cmsghdr`: size_t cmsg_len, int cmsg_level, int cmsg_type; data 8-byte aligned after it. */
export const CMSGHDR_BYTES = 16;
export const CMSGHDR_LEVEL_OFFSET = 8;
export const CMSGHDR_TYPE_OFFSET = 12;
/** `CMSG_ALIGN`: control messages follow each other at multiples of sizeof(size_t). */
export const CMSG_ALIGN_BYTES = 8;
/**
 * Control message payloads for the traffic class: IP_TOS arrives as one byte (the whole TOS
 * byte) and is sent as an int; IPV6_TCLASS is an int both ways (RFC 3542 §6.5).
 */
export const IP_TOS_RECV_BYTES = 1;
export const TOS_INT_BYTES = 4;
/** `struct in_pktinfo`: int ipi_ifindex, in_addr ipi_spec_dst, in_addr ipi_addr (the destination). */
export const IN_PKTINFO_BYTES = 12;
export const IN_PKTINFO_ADDR_OFFSET = 8;
/** `struct in6_pktinfo`: in6_addr ipi6_addr (the destination), unsigned ipi6_ifindex. */
export const IN6_PKTINFO_BYTES = 20;
export const IN6_PKTINFO_ADDR_OFFSET = 0;
