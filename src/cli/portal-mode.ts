import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { arch, hostname, platform, release } from 'node:os';
import type { InspectionEvent } from 'xstate';
import type { Clock } from '../actors/clock.js';
import type { DnsUpstream } from '../actors/dns.js';
import { Gateway, type GatewayLog } from '../actors/gateway.js';
import { PortalRuntime } from '../actors/portal-runtime.js';
import type { OpenPortalSocket } from '../actors/portal-session.js';
import { GatewayError } from '../errors.js';
import { sourceAddressTowards } from '../io/route-source.js';
import type { TunDevice } from '../io/tun.js';
import type { UdpSocket } from '../io/udp.js';
import { formatKey } from '../wire/keys.js';
import { buildLoginUrl, userAgent } from '../wire/portal/login-url.js';
import type { TransportAddress } from '../wire/stun/message.js';
import { clampPrivateKey, publicKeyOf } from '../wire/wireguard/crypto.js';
import { GATEWAY_VERSION } from './version.js';

/**
 * Portal mode (`spec/portal-protocol.md` §6.2 from "connect" on): a fresh WireGuard key for this
 * process, the login URL, the gateway runtime, and the portal session driving it. The process
 * exits 1 when the session fails for good and 0 after a signal (leaving the portal first).
 */
export interface PortalModeOptions {
  readonly apiUrl: URL;
  readonly token: string;
  readonly gatewayId: string;
  /** FIREZONE_NAME; the host name when absent. */
  readonly name: string | undefined;
  readonly clock: Clock;
  readonly log: GatewayLog & { debug?(obj: object, msg: string): void };
  readonly gatewayLog: GatewayLog;
  readonly tun: Pick<TunDevice, 'start' | 'write' | 'readNow' | 'close' | 'configure'>;
  readonly udp4: UdpSocket | undefined;
  readonly udp6: UdpSocket | undefined;
  readonly open?: OpenPortalSocket;
  readonly jitter?: () => number;
  readonly random?: (n: number) => Uint8Array;
  /** DNS-resource lookups of the legacy flow; the gateway's resolver by default. */
  readonly resolve?: (name: string) => Promise<Uint8Array[]>;
  /** Upstream DNS (resolv.conf's nameservers and the sockets to reach them). */
  readonly dns?: { readonly nameservers: readonly string[]; readonly upstream: DnsUpstream };
  /** The TUN device carries the tunnel addresses of an `init` (the DNS server binds to them). */
  readonly interfaceReady?: (addresses: readonly string[]) => void;
  readonly inspect?: (event: InspectionEvent) => void;
  /** Our address towards a relay (tests on simulated I/O); the kernel's choice by default. */
  readonly hostAddressTowards?: (server: TransportAddress) => Promise<Uint8Array | undefined>;
}

export interface PortalMode {
  readonly gateway: Gateway;
  readonly runtime: PortalRuntime;
  /** Runs until the session fails (→ 1) or `shutdown` resolves (leave → 0). */
  run(shutdown: Promise<string>): Promise<number>;
}

/** The User-Agent of this host (§1.2), e.g. `Debian/12 connlib/1.4.17 (x64; 6.1.0-18-amd64)`. */
export function hostUserAgent(osRelease = readOsRelease()): string {
  return userAgent({ ...osRelease, arch: arch(), kernel: release() });
}

/**
 * The distribution and its version from `/etc/os-release` (`ID`, `VERSION_ID`), as the
 * reference's os_info reports them; `Linux/<kernel>` when the file is missing or says nothing.
 */
export function readOsRelease(path = '/etc/os-release'): { type: string; version: string } {
  const fallback = { type: platform() === 'linux' ? 'Linux' : platform(), version: release() };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
  const field = (name: string) => {
    const m = new RegExp(`^${name}=(?:"([^"]*)"|'([^']*)'|(\\S*))\\s*$`, 'm').exec(text);
    return (m?.[1] ?? m?.[2] ?? m?.[3] ?? '').replace(/[^0-9A-Za-z._-]/g, '');
  };
  const id = field('ID');
  if (id === '') return fallback;
  return { type: id.charAt(0).toUpperCase() + id.slice(1), version: field('VERSION_ID') || 'unknown' };
}

export function startPortalMode(o: PortalModeOptions): PortalMode {
  const random = o.random ?? ((n: number) => new Uint8Array(randomBytes(n)));
  // One key per process start, as the reference: a restart is a new WireGuard identity.
  const privateKey = clampPrivateKey(random(32));
  const publicKey = publicKeyOf(privateKey);
  const url = buildLoginUrl({
    apiUrl: o.apiUrl.href,
    token: o.token,
    gatewayId: o.gatewayId,
    name: o.name ?? hostname(),
    publicKeyBase64: formatKey(publicKey),
  });
  if (!url.ok) throw new GatewayError('GW_ERR_CONFIG', url.error.message);
  const ua = hostUserAgent();
  let runtime: PortalRuntime | undefined;
  const gateway = new Gateway({
    privateKey,
    clock: o.clock,
    tun: o.tun,
    udp4: o.udp4,
    udp6: o.udp6,
    log: o.gatewayLog,
    random,
    onClientRemoved: (id, reason) => runtime?.control.clientRemoved(id, reason),
    onCandidates: (id, added, removed) => runtime?.control.localCandidates(id, added, removed),
    hostAddressTowards: o.hostAddressTowards ?? ((server) => sourceAddressTowards(server.ip)),
    software: `firezone-gateway/${GATEWAY_VERSION}`,
    ...(o.dns ? { dns: o.dns } : {}),
    ...(o.inspect ? { inspect: o.inspect } : {}),
  });
  runtime = new PortalRuntime({
    url: url.value.href,
    userAgent: ua,
    clock: o.clock,
    log: o.log,
    gateway,
    configureTun: (cfg) => o.tun.configure(cfg),
    resolve: o.resolve ?? ((name) => gateway.resolveName(name)),
    ...(o.interfaceReady ? { interfaceReady: o.interfaceReady } : {}),
    random,
    ...(o.open ? { open: o.open } : {}),
    ...(o.jitter ? { jitter: o.jitter } : {}),
    ...(o.inspect ? { inspect: o.inspect } : {}),
  });
  const rt = runtime;
  o.log.info({ publicKey: formatKey(publicKey), userAgent: ua }, 'Portal mode: connecting');
  return {
    gateway,
    runtime: rt,
    async run(shutdown) {
      gateway.start();
      rt.start();
      const first = await Promise.race([
        rt.done.then((outcome) => ({ outcome })),
        shutdown.then((signal) => ({ signal })),
      ]);
      if ('signal' in first) {
        o.log.info({ signal: first.signal }, 'Received signal, leaving the portal');
        rt.leave();
        await rt.done;
        return 0;
      }
      const fatal = first.outcome.fatal;
      if (!fatal) return 0;
      o.log.error(fatal.fields, fatal.message);
      return 1;
    },
  };
}
