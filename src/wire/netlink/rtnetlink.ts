import type { IpPrefix } from '../ip/prefix.js';
import { err, ok, type Result } from '../result.js';
import {
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  FIB_RULE_HDR_BYTES,
  FIB_RULE_INVERT,
  FR_ACT_TO_TBL,
  FRA_FWMARK,
  FRA_FWMASK,
  FRA_OTHER_SELECTORS,
  FRA_PRIORITY,
  FRA_PROTOCOL,
  FRA_TABLE,
  IFA_ADDRESS,
  IFA_FLAGS,
  IFA_LOCAL,
  IFADDRMSG_BYTES,
  IFF_UP,
  IFINFOMSG_BYTES,
  IFLA_IFNAME,
  IFLA_MTU,
  IFLA_TXQLEN,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAX_U8,
  RT_TABLE_UNSPEC,
  RTA_DST,
  RTA_OIF,
  RTA_PRIORITY,
  RTA_TABLE,
  RTM_DELADDR,
  RTM_DELROUTE,
  RTM_DELRULE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_GETRULE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  RTM_NEWRULE,
  RTMSG_BYTES,
  RTN_UNICAST,
  RTPROT_STATIC,
} from './constants.js';
import { type NetlinkError, netlinkError } from './errors.js';
import {
  attributeString,
  attributeU8,
  attributeU32,
  type NetlinkAttribute,
  type NetlinkMessage,
  NetlinkMessageBuilder,
  parseAttributes,
  readHostI32,
  readHostU32,
} from './message.js';

/**
 * rtnetlink requests and replies for the TUN device's configuration
 * (`spec/gateway-dataplane.md` §10.2): links, addresses, routes and policy rules.
 *
 * Builders return the bytes of one request; the caller picks `seq` and matches the reply's.
 * Modifying requests carry NLM_F_ACK so success is confirmed, and "add" requests carry
 * NLM_F_CREATE|NLM_F_EXCL so a duplicate reports EEXIST instead of silently succeeding (which
 * the caller may then ignore). Parsers read one reply message and never throw.
 */

/** An IP family as rtnetlink numbers it, from an address length. */
export function familyOf(address: Uint8Array): typeof AF_INET | typeof AF_INET6 {
  return address.length === 4 ? AF_INET : AF_INET6;
}

function addressBytesFor(family: number): number {
  return family === AF_INET ? 4 : 16;
}

// --- Links ---------------------------------------------------------------------------------

/** `RTM_GETLINK` for one interface by name; the reply is one `RTM_NEWLINK` or an error (ENODEV). */
export function buildGetLinkByName(seq: number, name: string): Uint8Array {
  return new NetlinkMessageBuilder(RTM_GETLINK, NLM_F_REQUEST, seq, IFINFOMSG_BYTES)
    .attrString(IFLA_IFNAME, name)
    .finish();
}

export interface LinkChange {
  readonly ifindex: number;
  readonly mtu?: number;
  readonly txQueueLength?: number;
  /** true: set IFF_UP; false: clear it; absent: leave it. */
  readonly up?: boolean;
}

/** `RTM_NEWLINK` without NLM_F_CREATE: changes an existing link (what `ip link set` sends). */
export function buildSetLink(seq: number, change: LinkChange): Uint8Array {
  const b = new NetlinkMessageBuilder(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, IFINFOMSG_BYTES)
    .u8(0, AF_UNSPEC)
    .i32(4, change.ifindex)
    .u32(8, change.up ? IFF_UP : 0)
    .u32(12, change.up === undefined ? 0 : IFF_UP);
  if (change.mtu !== undefined) b.attrU32(IFLA_MTU, change.mtu);
  if (change.txQueueLength !== undefined) b.attrU32(IFLA_TXQLEN, change.txQueueLength);
  return b.finish();
}

export interface LinkInfo {
  readonly ifindex: number;
  /** `IFF_*` flags (IFF_UP = 1). */
  readonly flags: number;
  readonly name?: string;
  readonly mtu?: number;
  readonly txQueueLength?: number;
}

export function parseLink(msg: NetlinkMessage): Result<LinkInfo, NetlinkError> {
  const head = fixedHeader(msg, RTM_NEWLINK, 'RTM_NEWLINK', IFINFOMSG_BYTES);
  if (!head.ok) return head;
  const p = msg.payload;
  const attrs = parseAttributes(p, IFINFOMSG_BYTES);
  if (!attrs.ok) return attrs;
  let name: string | undefined;
  let mtu: number | undefined;
  let txQueueLength: number | undefined;
  for (const a of attrs.value) {
    if (a.type === IFLA_IFNAME) name = attributeString(a);
    else if (a.type === IFLA_MTU) {
      const v = attributeU32(a, 'IFLA_MTU');
      if (!v.ok) return v;
      mtu = v.value;
    } else if (a.type === IFLA_TXQLEN) {
      const v = attributeU32(a, 'IFLA_TXQLEN');
      if (!v.ok) return v;
      txQueueLength = v.value;
    }
  }
  return ok({
    ifindex: readHostI32(p, 4),
    flags: readHostU32(p, 8),
    ...(name === undefined ? {} : { name }),
    ...(mtu === undefined ? {} : { mtu }),
    ...(txQueueLength === undefined ? {} : { txQueueLength }),
  });
}

// --- Addresses -------------------------------------------------------------------------------

export interface AddressSpec {
  readonly ifindex: number;
  /** 4 or 16 bytes. */
  readonly address: Uint8Array;
  readonly prefixLength: number;
}

/**
 * `RTM_NEWADDR` (CREATE|EXCL) or `RTM_DELADDR`. Like `ip addr add`, IFA_LOCAL and IFA_ADDRESS
 * both carry the address (they differ only for point-to-point peers, which we never set).
 */
export function buildAddress(seq: number, op: 'add' | 'delete', spec: AddressSpec): Uint8Array {
  const flags =
    op === 'add' ? NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL : NLM_F_REQUEST | NLM_F_ACK;
  return new NetlinkMessageBuilder(op === 'add' ? RTM_NEWADDR : RTM_DELADDR, flags, seq, IFADDRMSG_BYTES)
    .u8(0, familyOf(spec.address))
    .u8(1, spec.prefixLength)
    .u8(2, 0)
    .u8(3, RT_SCOPE_UNIVERSE)
    .u32(4, spec.ifindex)
    .attr(IFA_LOCAL, spec.address)
    .attr(IFA_ADDRESS, spec.address)
    .finish();
}

/**
 * `RTM_GETADDR` dump. `ifindex` is a kernel-side filter only with NETLINK_GET_STRICT_CHK;
 * callers filter the replies again.
 */
export function buildDumpAddresses(seq: number, family: number = AF_UNSPEC, ifindex = 0): Uint8Array {
  return new NetlinkMessageBuilder(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, IFADDRMSG_BYTES)
    .u8(0, family)
    .u32(4, ifindex)
    .finish();
}

export interface AddressInfo {
  readonly family: number;
  readonly prefixLength: number;
  /** IFA_FLAGS when present (it holds all 32 bits), else the u8 header field. */
  readonly flags: number;
  readonly scope: number;
  readonly ifindex: number;
  /** The interface's own address: IFA_LOCAL when present (IPv4), else IFA_ADDRESS (IPv6). */
  readonly address?: Uint8Array;
}

export function parseAddress(msg: NetlinkMessage): Result<AddressInfo, NetlinkError> {
  const head = fixedHeader(msg, RTM_NEWADDR, 'RTM_NEWADDR', IFADDRMSG_BYTES);
  if (!head.ok) return head;
  const p = msg.payload;
  const family = p[0]!;
  const attrs = parseAttributes(p, IFADDRMSG_BYTES);
  if (!attrs.ok) return attrs;
  let local: Uint8Array | undefined;
  let address: Uint8Array | undefined;
  let flags = p[2]!;
  for (const a of attrs.value) {
    if (a.type === IFA_LOCAL || a.type === IFA_ADDRESS) {
      const v = addressValue(a, family, a.type === IFA_LOCAL ? 'IFA_LOCAL' : 'IFA_ADDRESS');
      if (!v.ok) return v;
      if (a.type === IFA_LOCAL) local = v.value;
      else address = v.value;
    } else if (a.type === IFA_FLAGS) {
      const v = attributeU32(a, 'IFA_FLAGS');
      if (!v.ok) return v;
      flags = v.value;
    }
  }
  const own = local ?? address;
  return ok({
    family,
    prefixLength: p[1]!,
    flags,
    scope: p[3]!,
    ifindex: readHostU32(p, 4),
    ...(own === undefined ? {} : { address: own }),
  });
}

// --- Routes ----------------------------------------------------------------------------------

export interface RouteSpec {
  readonly destination: IpPrefix;
  readonly table: number;
  /** Output interface (the TUN device). */
  readonly ifindex: number;
}

/**
 * `RTM_NEWROUTE` (CREATE|EXCL; protocol static, scope universe, unicast, as the reference adds
 * them, `spec/gateway-dataplane.md` §10.2 step 6) or `RTM_DELROUTE`. Deletion leaves protocol
 * and type 0 and sets scope RT_SCOPE_NOWHERE (255), the "match any" values `ip route del` uses.
 * Table ids above 255 go in RTA_TABLE with RT_TABLE_UNSPEC in the header.
 */
export function buildRoute(seq: number, op: 'add' | 'delete', spec: RouteSpec): Uint8Array {
  const add = op === 'add';
  const flags = add ? NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL : NLM_F_REQUEST | NLM_F_ACK;
  const b = new NetlinkMessageBuilder(add ? RTM_NEWROUTE : RTM_DELROUTE, flags, seq, RTMSG_BYTES)
    .u8(0, familyOf(spec.destination.address))
    .u8(1, spec.destination.prefixLength)
    .u8(4, spec.table > RT_TABLE_MAX_U8 ? RT_TABLE_UNSPEC : spec.table)
    .u8(5, add ? RTPROT_STATIC : 0)
    .u8(6, add ? RT_SCOPE_UNIVERSE : RT_SCOPE_NOWHERE)
    .u8(7, add ? RTN_UNICAST : 0)
    .attrU32(RTA_TABLE, spec.table);
  if (spec.destination.prefixLength > 0) b.attr(RTA_DST, spec.destination.address);
  return b.attrU32(RTA_OIF, spec.ifindex).finish();
}

/**
 * `RTM_GETROUTE` dump of one family. With NETLINK_GET_STRICT_CHK, RTA_TABLE makes the kernel
 * return only that table (and ENOENT when it does not exist yet); without it the attribute is
 * ignored and callers filter the replies themselves.
 */
export function buildDumpRoutes(seq: number, family: number, table?: number): Uint8Array {
  const b = new NetlinkMessageBuilder(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, RTMSG_BYTES).u8(
    0,
    family,
  );
  if (table !== undefined) b.attrU32(RTA_TABLE, table);
  return b.finish();
}

export interface RouteInfo {
  readonly family: number;
  readonly destination: IpPrefix;
  /** RTA_TABLE when present, else the u8 header field. */
  readonly table: number;
  readonly protocol: number;
  readonly scope: number;
  readonly type: number;
  readonly ifindex?: number;
  readonly priority?: number;
}

export function parseRoute(msg: NetlinkMessage): Result<RouteInfo, NetlinkError> {
  const head = fixedHeader(msg, RTM_NEWROUTE, 'RTM_NEWROUTE', RTMSG_BYTES);
  if (!head.ok) return head;
  const p = msg.payload;
  const family = p[0]!;
  const dstLen = p[1]!;
  const attrs = parseAttributes(p, RTMSG_BYTES);
  if (!attrs.ok) return attrs;
  let table = p[4]!;
  let dst: Uint8Array | undefined;
  let ifindex: number | undefined;
  let priority: number | undefined;
  for (const a of attrs.value) {
    if (a.type === RTA_TABLE) {
      const v = attributeU32(a, 'RTA_TABLE');
      if (!v.ok) return v;
      table = v.value;
    } else if (a.type === RTA_DST) {
      const v = addressValue(a, family, 'RTA_DST');
      if (!v.ok) return v;
      dst = v.value;
    } else if (a.type === RTA_OIF) {
      const v = attributeU32(a, 'RTA_OIF');
      if (!v.ok) return v;
      ifindex = v.value;
    } else if (a.type === RTA_PRIORITY) {
      const v = attributeU32(a, 'RTA_PRIORITY');
      if (!v.ok) return v;
      priority = v.value;
    }
  }
  // A default route (dst_len 0) has no RTA_DST; other families (MPLS, ...) get an empty address.
  const bytes = family === AF_INET || family === AF_INET6 ? addressBytesFor(family) : 0;
  return ok({
    family,
    destination: { address: dst ?? new Uint8Array(bytes), prefixLength: dstLen },
    table,
    protocol: p[5]!,
    scope: p[6]!,
    type: p[7]!,
    ...(ifindex === undefined ? {} : { ifindex }),
    ...(priority === undefined ? {} : { priority }),
  });
}

// --- Policy rules ------------------------------------------------------------------------------

export interface RuleSpec {
  readonly family: typeof AF_INET | typeof AF_INET6;
  readonly table: number;
  readonly fwmark: number;
  /** Defaults to all 32 bits, as the kernel assumes when FRA_FWMASK is absent. */
  readonly fwmask?: number;
  /** FIB_RULE_INVERT: the rule applies to packets that do NOT carry the mark. */
  readonly invert: boolean;
  /** FRA_PROTOCOL (who installed the rule); omitted when absent. */
  readonly protocol?: number;
  /** FRA_PRIORITY; absent lets the kernel pick one just above the first non-zero rule. */
  readonly priority?: number;
}

/**
 * `RTM_NEWRULE` (CREATE|EXCL) or `RTM_DELRULE`: "[not] fwmark M/mask → lookup table T".
 *
 * Beware: without FRA_PRIORITY the kernel numbers each new rule anew, so EXCL does not detect a
 * duplicate and a second add creates a second rule (seen on Linux 6.18). Dump the rules first.
 */
export function buildRule(seq: number, op: 'add' | 'delete', spec: RuleSpec): Uint8Array {
  const add = op === 'add';
  const flags = add ? NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL : NLM_F_REQUEST | NLM_F_ACK;
  const b = new NetlinkMessageBuilder(add ? RTM_NEWRULE : RTM_DELRULE, flags, seq, FIB_RULE_HDR_BYTES)
    .u8(0, spec.family)
    .u8(4, spec.table > RT_TABLE_MAX_U8 ? RT_TABLE_UNSPEC : spec.table)
    .u8(7, FR_ACT_TO_TBL)
    .u32(8, spec.invert ? FIB_RULE_INVERT : 0)
    .attrU32(FRA_TABLE, spec.table)
    .attrU32(FRA_FWMARK, spec.fwmark)
    .attrU32(FRA_FWMASK, spec.fwmask ?? 0xffffffff);
  if (spec.priority !== undefined) b.attrU32(FRA_PRIORITY, spec.priority);
  if (spec.protocol !== undefined) b.attrU8(FRA_PROTOCOL, spec.protocol);
  return b.finish();
}

/** `RTM_GETRULE` dump of one family. */
export function buildDumpRules(seq: number, family: number): Uint8Array {
  return new NetlinkMessageBuilder(RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, seq, FIB_RULE_HDR_BYTES)
    .u8(0, family)
    .finish();
}

export interface RuleInfo {
  readonly family: number;
  /** FRA_TABLE when present, else the u8 header field. */
  readonly table: number;
  readonly action: number;
  /** `FIB_RULE_*` flags (FIB_RULE_INVERT = 2). */
  readonly flags: number;
  readonly fwmark?: number;
  readonly fwmask?: number;
  readonly priority?: number;
  readonly protocol?: number;
  /** Selectors this module does not model (source/destination prefix, iif, ...) are present. */
  readonly hasOtherSelectors: boolean;
}

export function parseRule(msg: NetlinkMessage): Result<RuleInfo, NetlinkError> {
  const head = fixedHeader(msg, RTM_NEWRULE, 'RTM_NEWRULE', FIB_RULE_HDR_BYTES);
  if (!head.ok) return head;
  const p = msg.payload;
  const attrs = parseAttributes(p, FIB_RULE_HDR_BYTES);
  if (!attrs.ok) return attrs;
  let table = p[4]!;
  const extra: { fwmark?: number; fwmask?: number; priority?: number; protocol?: number } = {};
  // Source/destination prefix lengths and TOS in the header are selectors too.
  let hasOtherSelectors = p[1] !== 0 || p[2] !== 0 || p[3] !== 0;
  for (const a of attrs.value) {
    if (FRA_OTHER_SELECTORS.has(a.type)) hasOtherSelectors = true;
    else if (a.type === FRA_TABLE) {
      const v = attributeU32(a, 'FRA_TABLE');
      if (!v.ok) return v;
      table = v.value;
    } else if (a.type === FRA_FWMARK || a.type === FRA_FWMASK || a.type === FRA_PRIORITY) {
      const name = a.type === FRA_FWMARK ? 'fwmark' : a.type === FRA_FWMASK ? 'fwmask' : 'priority';
      const v = attributeU32(a, `FRA_${name.toUpperCase()}`);
      if (!v.ok) return v;
      extra[name] = v.value;
    } else if (a.type === FRA_PROTOCOL) {
      const v = attributeU8(a, 'FRA_PROTOCOL');
      if (!v.ok) return v;
      extra.protocol = v.value;
    }
  }
  return ok({
    family: p[0]!,
    table,
    action: p[7]!,
    flags: readHostU32(p, 8),
    ...extra,
    hasOtherSelectors,
  });
}

// --- Shared --------------------------------------------------------------------------------

function fixedHeader(
  msg: NetlinkMessage,
  type: number,
  typeName: string,
  bytes: number,
): Result<true, NetlinkError> {
  if (msg.type !== type) {
    return err(
      netlinkError('netlink.unexpected-type', `message type ${msg.type}, expected ${typeName} (${type})`),
    );
  }
  if (msg.payload.length < bytes) {
    return err(
      netlinkError(
        'netlink.truncated-payload',
        `${typeName} payload has ${msg.payload.length} bytes, its header needs ${bytes}`,
      ),
    );
  }
  return ok(true);
}

function addressValue(a: NetlinkAttribute, family: number, name: string): Result<Uint8Array, NetlinkError> {
  const want = family === AF_INET ? 4 : family === AF_INET6 ? 16 : a.value.length;
  if (a.value.length !== want) {
    return err(
      netlinkError(
        'netlink.bad-attribute-length',
        `${name} has ${a.value.length} bytes, family ${family} needs ${want}`,
      ),
    );
  }
  return ok(a.value.slice());
}
