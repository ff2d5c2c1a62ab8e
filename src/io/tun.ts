import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import {
  IFF_NO_PI,
  IFF_TUN,
  IFNAMSIZ,
  IFREQ_BYTES,
  IFREQ_FLAGS_OFFSET,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  POLLERR,
  POLLIN,
  POLLNVAL,
  TUNSETIFF,
} from '../native/abi.js';
import { getLibc, type Libc } from '../native/libc.js';
import { parseIpv4, parseIpv6 } from '../wire/ip/address.js';
import { formatPrefix, type IpPrefix, parsePrefix, prefixEquals } from '../wire/ip/prefix.js';
import {
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  FIB_RULE_INVERT,
  FIREZONE_TABLE,
  FR_ACT_TO_TBL,
  RTN_UNICAST,
  RTPROT_KERNEL,
} from '../wire/netlink/constants.js';
import {
  type AddressInfo,
  buildAddress,
  buildDumpAddresses,
  buildDumpRoutes,
  buildDumpRules,
  buildGetLinkByName,
  buildRoute,
  buildRule,
  buildSetLink,
  familyOf,
  parseAddress,
  parseLink,
  parseRoute,
  parseRule,
  type RuleInfo,
} from '../wire/netlink/rtnetlink.js';
import { addressOf, checkRange } from './native-memory.js';
import { Rtnetlink } from './netlink.js';
import { ERRNO, errnoName, osError } from './os-error.js';
import {
  createPacketBatch,
  DEFAULT_BATCH_PACKETS,
  PACKET_HEADROOM_BYTES,
  type PacketBatch,
  TUN_READ_MAX_BYTES,
} from './packet-batch.js';
import { ReadinessWaiter } from './readiness.js';

/** Interface name and MTU of the reference (`spec/gateway-dataplane.md` §1, §10.1). */
export const DEFAULT_TUN_NAME = 'tun-firezone';
export const DEFAULT_TUN_MTU_BYTES = 1280;
/** Transmit queue length the reference sets (best effort): room for bursts towards the gateway. */
export const TUN_TX_QUEUE_PACKETS = 10_000;
/**
 * Failed reads (other than EAGAIN/EINTR) in a row before the device counts as broken, so a
 * persistent error cannot spin the loop forever (wireguard-go's "death spiral" guard).
 */
export const MAX_CONSECUTIVE_READ_ERRORS = 100;

/** Desired layer-3 configuration of the TUN device; `configure()` makes the kernel match it. */
export interface TunConfig {
  /** The gateway's tunnel IPv4 address, installed as /32. Absent: no IPv4 address. */
  readonly ipv4?: string;
  /** The gateway's tunnel IPv6 address, installed as /128. Absent: no IPv6 address. */
  readonly ipv6?: string;
  /** CIDRs routed into the device in `table` (e.g. 100.64.0.0/11, fd00:2021:1111::/107). */
  readonly routes?: readonly string[];
  /** Routing table for `routes`; defaults to the Firezone table 0x2021fd00. */
  readonly table?: number;
  /**
   * Installs "packets NOT marked `mark` → lookup `table`" for each family that has an address,
   * so everything except the gateway's own (marked) sockets can reach the tunnel routes.
   */
  readonly fwmarkRule?: { readonly mark: number; readonly table: number };
}

export interface TunStats {
  /** Packets handed to `onPackets`. */
  packetsRead: number;
  packetsWritten: number;
  /** Writes the kernel refused for lack of room (EAGAIN, ENOBUFS): the packet is dropped. */
  writeDrops: number;
  /** Writes that failed otherwise (e.g. EINVAL for a malformed packet, EIO when down); dropped. */
  writeErrors: number;
  /** Reads that failed with an error other than EAGAIN/EINTR. */
  readErrors: number;
  /** Readiness notifications (each one drains up to a batch). */
  wakeups: number;
}

/**
 * The TUN device: one non-blocking queue (`IFF_TUN | IFF_NO_PI`), raw IP packets in and out.
 *
 * Not persistent: the kernel removes the interface when its descriptor is closed, including when
 * the process dies (SIGTERM, SIGKILL), so no stale interface survives a crash.
 */
export interface TunDevice {
  readonly name: string;
  readonly ifindex: number;
  readonly mtu: number;
  /**
   * Makes addresses, routes and the fwmark rule match `cfg` (`spec/gateway-dataplane.md` §10.2):
   * sets the MTU and brings the link up, adds missing addresses and removes every other one,
   * adds missing routes in the table and removes the device's routes there that are no longer
   * listed, adds the rule unless an identical one exists. Idempotent; calls run in order.
   * Rejects with GW_ERR_CONFIG for malformed input and GW_ERR_NETLINK when the kernel refuses.
   */
  configure(cfg: TunConfig): Promise<void>;
  /**
   * Starts reading. Readiness is awaited off the main thread (holding one libuv threadpool
   * thread, see `readiness.ts`); on the main thread the device is
   * drained with non-blocking reads into a reused batch (packets at offset
   * `PACKET_HEADROOM_BYTES`), `onPackets` is called once per drain, then the wait is re-armed.
   * The batch is valid only during the call. Fatal errors (descriptor closed, POLLERR) stop the
   * reader and go to `onError`, or are thrown (becoming an uncaught exception) without one.
   * Call once.
   */
  start(onPackets: (batch: PacketBatch) => void, onError?: (error: GatewayError) => void): void;
  /**
   * Writes one IP packet (`buf[off, off + len)`). Returns false when it was dropped: counted in
   * `writeDrops` (no room) or `writeErrors`. Throws a RangeError for a range outside `buf`.
   */
  write(buf: Uint8Array, off: number, len: number): boolean;
  /** Writes packets `0 .. count-1` of `batch`; returns how many were written. */
  writeBatch(batch: PacketBatch): number;
  /**
   * Reads what the kernel has queued right now, without waiting for readiness, and hands it to
   * the consumer as a batch; returns how many packets. For latency: an answer the kernel produced
   * while we were writing (forwarding runs in the writer's context) is picked up without the
   * round trip through the readiness thread. A no-op while a batch is being handled.
   */
  readNow(): number;
  readonly stats: Readonly<TunStats>;
  /** Stops the reader, then closes the descriptors (the interface disappears). Idempotent. */
  close(): Promise<void>;
}

export interface OpenTunOptions {
  readonly name?: string;
  readonly mtu?: number;
  /** Packets per drain. */
  readonly batchSize?: number;
  /** Receives warnings about best-effort steps (queue length, an unavailable address family). */
  readonly logger?: Pick<Logger, 'warn'>;
}

/**
 * Creates the TUN device in the calling thread's network namespace, sets its MTU and transmit
 * queue length through rtnetlink, and returns it down and unconfigured (see `configure`).
 * Rejects with GW_ERR_TUN_OPEN (no /dev/net/tun, no CAP_NET_ADMIN, name in use) or GW_ERR_NETLINK.
 */
export async function openTun(options: OpenTunOptions = {}): Promise<TunDevice> {
  const name = options.name ?? DEFAULT_TUN_NAME;
  const mtu = options.mtu ?? DEFAULT_TUN_MTU_BYTES;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_PACKETS;
  checkName(name);
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > TUN_READ_MAX_BYTES) {
    throw new GatewayError(
      'GW_ERR_TUN_OPEN',
      `TUN MTU ${mtu}: expected an integer from 576 to ${TUN_READ_MAX_BYTES}`,
    );
  }
  const libc = getLibc();
  const fd = createTun(libc, name);
  let netlink: Rtnetlink | undefined;
  try {
    netlink = Rtnetlink.open();
    const link = await netlink.get(
      (seq) => buildGetLinkByName(seq, name),
      parseLink,
      `look up interface ${name}`,
    );
    if (!link)
      throw new GatewayError('GW_ERR_TUN_OPEN', `interface ${name} vanished right after it was created`);
    await netlink.call(
      (seq) => buildSetLink(seq, { ifindex: link.ifindex, mtu }),
      `set MTU ${mtu} on ${name}`,
    );
    try {
      await netlink.call(
        (seq) => buildSetLink(seq, { ifindex: link.ifindex, txQueueLength: TUN_TX_QUEUE_PACKETS }),
        `set transmit queue length ${TUN_TX_QUEUE_PACKETS} on ${name}`,
      );
    } catch (error) {
      if (!(error instanceof GatewayError)) throw error;
      // Best effort, as in the reference: a shorter queue only drops bursts sooner.
      options.logger?.warn(
        { interface: name, err: (error as Error).message },
        'Could not set TUN transmit queue length',
      );
    }
    return new LinuxTun(libc, fd, name, link.ifindex, mtu, netlink, batchSize, options.logger);
  } catch (error) {
    await netlink?.close();
    libc.close(fd);
    throw error;
  }
}

function checkName(name: string): void {
  // dev_valid_name() in net/core/dev.c: 1 to 15 bytes, not "." or "..", no '/', ':' or whitespace.
  const bytes = Buffer.byteLength(name);
  if (bytes < 1 || bytes >= IFNAMSIZ || name === '.' || name === '..' || /[/:\s]/.test(name)) {
    throw new GatewayError(
      'GW_ERR_TUN_OPEN',
      `invalid interface name '${name}': expected 1 to 15 bytes without '/', ':' or whitespace`,
    );
  }
}

function createTun(libc: Libc, name: string): number {
  const fd = libc.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const errno = libc.errno();
    const hint =
      errno === ERRNO.ENOENT
        ? 'load the tun kernel module (modprobe tun) or pass /dev/net/tun into the container'
        : 'the gateway needs root or CAP_NET_ADMIN';
    throw osError('GW_ERR_TUN_OPEN', 'open /dev/net/tun', errno, hint);
  }
  const ifr = new Uint8Array(IFREQ_BYTES);
  ifr.set(Buffer.from(name, 'utf8'));
  new DataView(ifr.buffer).setUint16(IFREQ_FLAGS_OFFSET, IFF_TUN | IFF_NO_PI, true);
  if (libc.ioctl(fd, TUNSETIFF, ifr) !== 0) {
    const errno = libc.errno();
    libc.close(fd);
    const hint =
      errno === ERRNO.EBUSY
        ? `interface ${name} is in use by another process (another gateway running?)`
        : errno === ERRNO.EINVAL
          ? `an interface named ${name} exists and is not a single-queue TUN device`
          : errno === ERRNO.EPERM
            ? 'the gateway needs root or CAP_NET_ADMIN'
            : undefined;
    throw osError('GW_ERR_TUN_OPEN', `create TUN device ${name}`, errno, hint);
  }
  return fd;
}

type DeviceState = 'open' | 'closing' | 'closed';

class LinuxTun implements TunDevice {
  readonly stats: TunStats = {
    packetsRead: 0,
    packetsWritten: 0,
    writeDrops: 0,
    writeErrors: 0,
    readErrors: 0,
    wakeups: 0,
  };
  private readonly batch: PacketBatch;
  /** Native address of each batch buffer's packet start (buffer + headroom). */
  private readonly readAddresses: Float64Array;
  private waiter: ReadinessWaiter | undefined;
  /** True while the consumer handles a batch (the batch buffers are in use). */
  private reading = false;
  private onPackets: ((batch: PacketBatch) => void) | undefined;
  private onError: ((error: GatewayError) => void) | undefined;
  private consecutiveReadErrors = 0;
  private state: DeviceState = 'open';
  private closing: Promise<void> | undefined;
  private configuring: Promise<void> = Promise.resolve();

  constructor(
    private readonly libc: Libc,
    private readonly fd: number,
    readonly name: string,
    readonly ifindex: number,
    readonly mtu: number,
    private readonly netlink: Rtnetlink,
    batchSize: number,
    private readonly logger: Pick<Logger, 'warn'> | undefined,
  ) {
    this.batch = createPacketBatch(batchSize);
    this.readAddresses = new Float64Array(batchSize);
    for (let i = 0; i < batchSize; i++)
      this.readAddresses[i] = addressOf(this.batch.bufs[i]!) + PACKET_HEADROOM_BYTES;
  }

  configure(cfg: TunConfig): Promise<void> {
    const run = this.configuring.then(
      () => this.applyConfig(cfg),
      () => this.applyConfig(cfg),
    );
    // The chain only orders configurations; each caller gets its own outcome through `run`.
    this.configuring = run.catch(() => undefined);
    return run;
  }

  start(onPackets: (batch: PacketBatch) => void, onError?: (error: GatewayError) => void): void {
    if (this.state !== 'open') throw new GatewayError('GW_ERR_TUN_IO', `TUN device ${this.name} is closed`);
    if (this.waiter) throw new GatewayError('GW_ERR_TUN_IO', `TUN device ${this.name} is already started`);
    this.onPackets = onPackets;
    this.onError = onError;
    this.waiter = new ReadinessWaiter(
      this.fd,
      POLLIN,
      (revents) => this.drain(revents),
      (error) => this.fail(error),
      'GW_ERR_TUN_IO',
    );
    this.waiter.arm();
  }

  write(buf: Uint8Array, off: number, len: number): boolean {
    checkRange(buf, off, len);
    if (this.state !== 'open') {
      this.stats.writeErrors++;
      return false;
    }
    const written = this.libc.write(this.fd, addressOf(buf) + off, len);
    if (written === len) {
      this.stats.packetsWritten++;
      return true;
    }
    const errno = this.libc.errno();
    if (errno === ERRNO.EAGAIN || errno === ERRNO.ENOBUFS) this.stats.writeDrops++;
    else this.stats.writeErrors++;
    return false;
  }

  writeBatch(batch: PacketBatch): number {
    let written = 0;
    for (let i = 0; i < batch.count; i++) {
      if (this.write(batch.bufs[i]!, batch.offsets[i]!, batch.lengths[i]!)) written++;
    }
    return written;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.state = 'closing';
    // Only once no thread polls the descriptor may it be closed (its number could be reused).
    await this.waiter?.close();
    await this.configuring;
    await this.netlink.close();
    this.libc.close(this.fd);
    this.state = 'closed';
  }

  /** Runs on the main thread after poll reported the descriptor ready. */
  private drain(revents: number): void {
    this.stats.wakeups++;
    if (revents & (POLLERR | POLLNVAL)) {
      this.fail(
        new GatewayError(
          'GW_ERR_TUN_IO',
          `TUN device ${this.name} reported ${revents & POLLNVAL ? 'POLLNVAL' : 'POLLERR'} (interface deleted?)`,
        ),
      );
      return;
    }
    try {
      this.readAvailable();
    } finally {
      // Re-arm even if the consumer threw, so one bad batch does not stop the device; the
      // exception itself still propagates. A no-op once close() has begun or after a failure.
      if (this.state === 'open') this.waiter!.arm();
    }
  }

  readNow(): number {
    if (this.state !== 'open' || !this.onPackets || this.reading) return 0;
    return this.readAvailable();
  }

  /** Reads what is queued (up to a batch) without waiting and hands it to the consumer. */
  private readAvailable(): number {
    const { batch, libc, fd, readAddresses } = this;
    const capacity = batch.capacity;
    let n = 0;
    while (n < capacity) {
      const got = libc.read(fd, readAddresses[n]!, TUN_READ_MAX_BYTES);
      if (got > 0) {
        batch.offsets[n] = PACKET_HEADROOM_BYTES;
        batch.lengths[n] = got;
        n++;
        continue;
      }
      if (got === 0) {
        this.fail(new GatewayError('GW_ERR_TUN_IO', 'TUN file descriptor is closed'));
        return 0;
      }
      const errno = libc.errno();
      if (errno === ERRNO.EAGAIN) break;
      if (errno === ERRNO.EINTR) continue;
      this.stats.readErrors++;
      if (++this.consecutiveReadErrors >= MAX_CONSECUTIVE_READ_ERRORS) {
        this.fail(
          osError(
            'GW_ERR_TUN_IO',
            `read from TUN device ${this.name} (${this.consecutiveReadErrors} times in a row)`,
            errno,
          ),
        );
        return 0;
      }
      break;
    }
    if (n === 0) return 0;
    this.consecutiveReadErrors = 0;
    batch.count = n;
    this.stats.packetsRead += n;
    this.reading = true;
    try {
      this.onPackets!(batch);
    } finally {
      this.reading = false;
    }
    return n;
  }

  private fail(error: GatewayError): void {
    // The waiter stays idle (not re-armed): the reader has stopped. close() still cleans up.
    if (this.state !== 'open') return;
    if (this.onError) this.onError(error);
    else throw error;
  }

  private async applyConfig(cfg: TunConfig): Promise<void> {
    const plan = planConfig(cfg, this.name);
    const nl = this.netlink;
    const { ifindex, name } = this;

    await nl.call((seq) => buildSetLink(seq, { ifindex, mtu: this.mtu, up: true }), `bring ${name} up`);

    // Addresses: add the wanted ones first, then remove the rest, so the device is never left
    // without an address in between (the kernel drops IPv4 routes through a device whose last
    // IPv4 address goes away). As in the reference (§10.2 step 5), one family may fail (IPv6
    // disabled on the host) as long as another succeeds; its routes and rule are then skipped.
    const current = (
      await nl.dump(
        (seq) => buildDumpAddresses(seq, AF_UNSPEC, ifindex),
        parseAddress,
        `list addresses of ${name}`,
      )
    ).filter((a) => a.ifindex === ifindex);
    const failed = new Map<number, GatewayError>();
    for (const want of plan.addresses) {
      if (current.some((a) => sameAddress(a, want))) continue;
      try {
        await nl.call(
          (seq) =>
            buildAddress(seq, 'add', { ifindex, address: want.address, prefixLength: want.prefixLength }),
          `add address ${formatPrefix(want)} to ${name}`,
          [ERRNO.EEXIST],
        );
      } catch (error) {
        if (!(error instanceof GatewayError)) throw error;
        // Collected, then either rethrown below (no address at all) or logged.
        failed.set(familyOf(want.address), error);
      }
    }
    if (failed.size > 0 && failed.size === plan.addresses.length) throw failed.values().next().value;
    for (const [family, error] of failed) {
      this.logger?.warn(
        { interface: name, family: familyName(family), err: error.message },
        'TUN address family unavailable',
      );
    }
    for (const have of current) {
      if (!have.address || plan.addresses.some((want) => sameAddress(have, want))) continue;
      const prefix = { address: have.address, prefixLength: have.prefixLength };
      await nl.call(
        (seq) => buildAddress(seq, 'delete', { ifindex, ...prefix }),
        `remove address ${formatPrefix(prefix)} from ${name}`,
        [ERRNO.EADDRNOTAVAIL],
      );
    }

    for (const family of [AF_INET, AF_INET6] as const) {
      if (failed.has(family)) continue;
      await this.applyRoutes(family, plan);
    }

    if (plan.rule) {
      const { mark, table } = plan.rule;
      for (const family of plan.ruleFamilies) {
        if (failed.has(family)) continue;
        const rules = await nl.dump(
          (seq) => buildDumpRules(seq, family),
          parseRule,
          `list ${familyName(family)} policy rules`,
        );
        if (rules.some((r) => isFwmarkRule(r, family, mark, table))) continue;
        // The kernel numbers a rule without priority anew each time, so EXCL cannot detect a
        // duplicate: the dump above is what keeps re-configuration from stacking rules. The
        // protocol is "kernel" like the reference's rule (`spec/gateway-dataplane.md` §10.2 step 5).
        await nl.call(
          (seq) =>
            buildRule(seq, 'add', { family, table, fwmark: mark, invert: true, protocol: RTPROT_KERNEL }),
          `add rule "not fwmark ${hex(mark)} lookup ${table}" (${familyName(family)})`,
          [ERRNO.EEXIST],
        );
      }
    }
  }

  /** Makes the device's routes of `family` in the plan's table exactly the planned ones. */
  private async applyRoutes(family: typeof AF_INET | typeof AF_INET6, plan: ConfigPlan): Promise<void> {
    const nl = this.netlink;
    const { ifindex, name } = this;
    const { table } = plan;
    const wanted = plan.routes.filter((r) => familyOf(r.address) === family);
    const routes = (
      await nl.dump(
        (seq) => buildDumpRoutes(seq, family, table),
        parseRoute,
        `list ${familyName(family)} routes in table ${table}`,
        // ENOENT: the table does not exist yet (strict dump filtering); EAFNOSUPPORT: no IPv6.
        [ERRNO.ENOENT, ERRNO.EAFNOSUPPORT],
      )
    ).filter((r) => r.table === table && r.ifindex === ifindex && r.type === RTN_UNICAST);
    for (const want of wanted) {
      if (routes.some((r) => prefixEquals(r.destination, want))) continue;
      // "Not supported" means no IPv6 on this host or device: skipped, as the reference does (§10.2 step 6).
      const unsupported = family === AF_INET6 ? [ERRNO.EACCES, ERRNO.EAFNOSUPPORT, ERRNO.EOPNOTSUPP] : [];
      const errno = await nl.call(
        (seq) => buildRoute(seq, 'add', { destination: want, table, ifindex }),
        `add route ${formatPrefix(want)} dev ${name} table ${table}`,
        [ERRNO.EEXIST, ...unsupported],
      );
      if (unsupported.includes(errno)) {
        this.logger?.warn(
          { interface: name, route: formatPrefix(want), errno: errnoName(errno) },
          'TUN route not supported',
        );
      }
    }
    for (const have of routes) {
      if (wanted.some((w) => prefixEquals(w, have.destination))) continue;
      await nl.call(
        (seq) => buildRoute(seq, 'delete', { destination: have.destination, table, ifindex }),
        `remove route ${formatPrefix(have.destination)} dev ${name} table ${table}`,
        [ERRNO.ESRCH, ERRNO.ENOENT],
      );
    }
  }
}

interface ConfigPlan {
  readonly addresses: readonly IpPrefix[];
  readonly routes: readonly IpPrefix[];
  readonly table: number;
  readonly rule?: { readonly mark: number; readonly table: number };
  readonly ruleFamilies: readonly (typeof AF_INET | typeof AF_INET6)[];
}

/** Validates `cfg` before anything is changed: a typo must not leave the device half-configured. */
function planConfig(cfg: TunConfig, name: string): ConfigPlan {
  const addresses: IpPrefix[] = [];
  const ruleFamilies: (typeof AF_INET | typeof AF_INET6)[] = [];
  if (cfg.ipv4 !== undefined) {
    const address = parseIpv4(cfg.ipv4);
    if (!address) throw configError(name, `ipv4 '${cfg.ipv4}' is not an IPv4 address`);
    addresses.push({ address, prefixLength: 32 });
    ruleFamilies.push(AF_INET);
  }
  if (cfg.ipv6 !== undefined) {
    const address = parseIpv6(cfg.ipv6);
    if (!address) throw configError(name, `ipv6 '${cfg.ipv6}' is not an IPv6 address`);
    addresses.push({ address, prefixLength: 128 });
    ruleFamilies.push(AF_INET6);
  }
  const routes: IpPrefix[] = [];
  for (const text of cfg.routes ?? []) {
    const r = parsePrefix(text);
    if (!r.ok) throw configError(name, `route ${r.error.message}`);
    if (!routes.some((p) => prefixEquals(p, r.value))) routes.push(r.value);
  }
  const table = cfg.table ?? FIREZONE_TABLE;
  checkTable(name, 'table', table);
  if (cfg.fwmarkRule) {
    checkTable(name, 'fwmarkRule.table', cfg.fwmarkRule.table);
    const { mark } = cfg.fwmarkRule;
    if (!Number.isInteger(mark) || mark < 1 || mark > 0xffffffff) {
      throw configError(name, `fwmarkRule.mark ${mark}: expected an integer from 1 to 0xffffffff`);
    }
    return { addresses, routes, table, rule: { mark, table: cfg.fwmarkRule.table }, ruleFamilies };
  }
  return { addresses, routes, table, ruleFamilies };
}

function checkTable(name: string, field: string, table: number): void {
  // 0 is "unspecified"; 253-255 are the kernel's default, main and local tables.
  if (!Number.isInteger(table) || table < 1 || table > 0xffffffff || (table >= 253 && table <= 255)) {
    throw configError(name, `${field} ${table}: expected an integer from 1 to 0xffffffff other than 253-255`);
  }
}

function configError(name: string, message: string): GatewayError {
  return new GatewayError('GW_ERR_CONFIG', `TUN ${name} configuration: ${message}`);
}

function sameAddress(a: AddressInfo, want: IpPrefix): boolean {
  return (
    a.address !== undefined &&
    a.prefixLength === want.prefixLength &&
    prefixEquals({ address: a.address, prefixLength: a.prefixLength }, want)
  );
}

function isFwmarkRule(r: RuleInfo, family: number, mark: number, table: number): boolean {
  return (
    r.family === family &&
    r.table === table &&
    r.action === FR_ACT_TO_TBL &&
    (r.flags & FIB_RULE_INVERT) !== 0 &&
    r.fwmark === mark &&
    (r.fwmask === undefined || r.fwmask === 0xffffffff) &&
    !r.hasOtherSelectors
  );
}

function familyName(family: number): string {
  return family === AF_INET ? 'IPv4' : 'IPv6';
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
