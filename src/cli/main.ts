import { arch, platform, release } from 'node:os';
import { realClock } from '../actors/clock.js';
import { Gateway } from '../actors/gateway.js';
import { clientPoliciesOf, restartNeeded, tunConfigOf } from '../actors/standalone.js';
import { exitCodeFor, GatewayError } from '../errors.js';
import type { DnsListener } from '../io/dns-server.js';
import { createDnsUpstream } from '../io/dns-upstream.js';
import { type HealthRoute, type HealthServer, startHealthServer } from '../io/health.js';
import { createMetricsRegistry } from '../io/metrics.js';
import { openTun, type TunDevice } from '../io/tun.js';
import { openTunnelSockets, TUNNEL_PORT, type TunnelSockets } from '../io/tunnel-sockets.js';
import { formatIp } from '../wire/ip/address.js';
import { formatKey } from '../wire/keys.js';
import { dnsListenerFor, loadNameservers } from './dns.js';
import { resolveGatewayId } from './gateway-id.js';
import { raiseSocketBufferLimits } from './kernel-buffers.js';
import { componentLogger, createLogger, type Logger } from './logging.js';
import { type CliOutput, type Env, parseCli } from './options.js';
import { hasNecessaryPermissions, PERMISSION_MESSAGE } from './permissions.js';
import { type PortalMode, startPortalMode } from './portal-mode.js';
import { formatSocketAddress } from './socket-address.js';
import { loadStandaloneConfig, type StandaloneConfig, StandaloneConfigError } from './standalone/index.js';
import { validateApiUrl } from './startup-checks.js';
import { GATEWAY_VERSION } from './version.js';

/** Graceful shutdown must finish within this; after it the process exits anyway. */
export const SHUTDOWN_GRACE_MS = 2_000;

export interface MainContext {
  readonly argv: readonly string[];
  readonly env: Env;
  readonly out: CliOutput;
  /** Resolves when SIGINT or SIGTERM arrives (the name of the signal). */
  readonly shutdownSignal: Promise<string>;
  /** Registers what SIGHUP does (reload the standalone policy file). */
  readonly onReload?: (handler: () => void) => void;
  readonly hasPermissions?: () => boolean;
  readonly gatewayIdPath?: string;
  readonly procSys?: string;
  readonly logger?: Logger;
}

/**
 * The startup sequence of `spec/portal-protocol.md` §6.2, as far as this build has it:
 * parse → permission check → logging → portal URL / config check → kernel buffers → gateway ID
 * → TUN device and tunnel sockets → health check → run until a signal. Returns the exit code.
 * Shutdown closes the TUN device, so `tun-firezone` disappears with the process.
 */
export async function main(ctx: MainContext): Promise<number> {
  const parsed = parseCli(ctx.argv, ctx.env, ctx.out);
  if (parsed.kind === 'exit') return parsed.code;
  const opts = parsed.options;

  if (!opts.noCheck && !(ctx.hasPermissions ?? hasNecessaryPermissions)()) {
    ctx.out.stderr(`${PERMISSION_MESSAGE}\n`);
    return 1;
  }

  const log = ctx.logger ?? createLogger(opts.logFilter);
  log.info(
    {
      version: GATEWAY_VERSION,
      arch: arch(),
      os: platform(),
      kernel: release(),
      node: process.version,
      threadpool: process.env.UV_THREADPOOL_SIZE ?? 'default',
    },
    'firezone-gateway started',
  );

  let health: HealthServer | undefined;
  let tun: TunDevice | undefined;
  let sockets: TunnelSockets | undefined;
  let gateway: Gateway | undefined;
  let dnsListener: DnsListener | undefined;
  try {
    let config: StandaloneConfig | undefined;
    if (opts.config !== undefined) {
      config = await loadStandaloneConfig(opts.config);
      log.info(
        { config: config.path, peers: config.peers.length, resources: config.resources.length },
        'Standalone mode: policy file loaded',
      );
    } else {
      validateApiUrl(opts.apiUrl);
    }
    if (!opts.noIncBuf) await raiseSocketBufferLimits(log, ctx.procSys);
    let gatewayId: string | undefined;
    if (!config) {
      const gid = await resolveGatewayId(opts.firezoneId, ctx.gatewayIdPath);
      gatewayId = gid.id;
      log.info({ source: gid.source }, 'Gateway ID determined');
    }
    const dnsLog = componentLogger(log, opts.logFilter, 'dns');
    const dns = {
      nameservers: await loadNameservers(opts.resolvConf, dnsLog),
      upstream: createDnsUpstream(),
    };
    // In portal mode the device is configured by `init`; in standalone mode by the file.
    tun = await openTun({ logger: componentLogger(log, opts.logFilter, 'tun') });
    log.info({ name: tun.name, mtu: tun.mtu }, 'TUN device created');
    sockets = await openTunnelSockets(componentLogger(log, opts.logFilter, 'udp'), {
      port: config?.listenPort ?? TUNNEL_PORT,
    });
    log.info({ ipv4Port: sockets.v4?.localPort, ipv6Port: sockets.v6?.localPort }, 'Tunnel sockets bound');
    const routes: Record<string, HealthRoute> = {};
    let portal: PortalMode | undefined;
    if (config) {
      await tun.configure(tunConfigOf(config));
      const g = new Gateway({
        privateKey: config.privateKey,
        clock: realClock,
        tun,
        udp4: sockets.v4,
        udp6: sockets.v6,
        log: componentLogger(log, opts.logFilter, 'gateway'),
        dns,
      });
      gateway = g;
      g.setInterface(config.interface.ipv4, config.interface.ipv6);
      g.start();
      const listener = dnsListenerFor(g, dnsLog);
      dnsListener = listener;
      await listener.listen(listenAddresses(config.interface));
      g.applyPolicy(clientPoliciesOf(config, realClock.wallNow()));
      routes['/metrics'] = metricsRoute(g);
      ctx.onReload?.(reloader(g, config, tun, log, listener));
    } else {
      portal = startPortalMode({
        apiUrl: opts.apiUrl,
        token: opts.token ?? '',
        gatewayId: gatewayId ?? '',
        name: opts.firezoneName,
        clock: realClock,
        log: componentLogger(log, opts.logFilter, 'portal'),
        gatewayLog: componentLogger(log, opts.logFilter, 'gateway'),
        tun,
        udp4: sockets.v4,
        udp6: sockets.v6,
        dns,
        interfaceReady: (addresses) => void dnsListener?.listen(addresses),
      });
      gateway = portal.gateway;
      dnsListener = dnsListenerFor(portal.gateway, dnsLog);
      routes['/metrics'] = metricsRoute(portal.gateway);
      ctx.onReload?.(() => log.info('SIGHUP ignored: nothing to reload in portal mode'));
    }
    const addr = opts.healthCheckAddr;
    try {
      health = await startHealthServer(addr.host, addr.port, routes);
      const bound = health.address;
      log.info(
        { addr: formatSocketAddress({ host: bound.address, port: bound.port, family: addr.family }) },
        'Health check listening',
      );
    } catch (e) {
      // The reference ignores this silently; we say it, and keep the data plane running.
      log.error(
        { addr: formatSocketAddress(addr), err: (e as Error).message },
        'Health check could not listen',
      );
    }
    if (portal) return await portal.run(ctx.shutdownSignal);
    if (gateway && config) {
      log.info(
        {
          publicKey: formatKey(gateway.publicKey),
          listenPort: sockets.v4?.localPort ?? sockets.v6?.localPort,
          privateKeySource: config.privateKeySource,
          peers: config.peers.map((p) => p.name),
        },
        'Standalone gateway ready',
      );
    }
    const signal = await ctx.shutdownSignal;
    log.info({ signal }, 'Received signal, shutting down');
    return 0;
  } catch (e) {
    if (e instanceof GatewayError) {
      log.error(
        { code: e.code, ...(e instanceof StandaloneConfigError ? { problems: e.problems } : {}) },
        e.message,
      );
      return exitCodeFor(e);
    }
    throw e;
  } finally {
    await health?.close();
    await dnsListener?.close();
    if (gateway) await gateway.stop();
    else {
      await sockets?.close();
      await tun?.close();
    }
    log.info('Goodbye!');
    log.flush();
  }
}

/** Prometheus metrics of a running gateway, for the health server. */
function metricsRoute(g: Gateway): HealthRoute {
  const registry = createMetricsRegistry({
    dropCounters: () => g.router.dropCounters(),
    traffic: () => g.router.traffic,
    clients: () => g.router.clientCount,
    dns: () => ({ ...g.dns.counters }),
    nameserverAvailable: () => g.selectedNameserver() !== undefined,
  });
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() });
}

/** Entry point of the `firezone-gateway` binary. */
export function run(): void {
  const shutdownSignal = new Promise<string>((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      resolve(sig);
      // A second signal, or a shutdown that hangs, must not keep the process alive.
      setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref();
    };
    process.once('SIGINT', on);
    process.once('SIGTERM', on);
  });
  // Without a handler SIGHUP would terminate the process.
  let onHup: () => void = () => undefined;
  process.on('SIGHUP', () => onHup());
  main({
    argv: process.argv.slice(2),
    env: process.env,
    out: { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) },
    shutdownSignal,
    onReload: (handler) => {
      onHup = handler;
    },
  }).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`firezone-gateway: unexpected error: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}

/**
 * SIGHUP in standalone mode: re-read the policy file and apply it atomically. A bad file is
 * rejected with every problem logged and the running policy kept. Reloads run one at a time.
 */
function reloader(
  gateway: Gateway,
  initial: StandaloneConfig,
  tun: TunDevice,
  log: Logger,
  dnsListener: DnsListener,
): () => void {
  let current = initial;
  let chain: Promise<void> = Promise.resolve();
  const reload = async () => {
    let next: StandaloneConfig;
    try {
      next = await loadStandaloneConfig(current.path);
    } catch (e) {
      const problems = e instanceof StandaloneConfigError ? e.problems : [(e as Error).message];
      log.error({ config: current.path, problems }, 'Policy file rejected; the running policy stays');
      return;
    }
    const needsRestart = restartNeeded(current, next);
    if (needsRestart.length > 0) {
      log.warn({ changed: needsRestart }, 'These settings take effect only after a restart');
    }
    await tun.configure(tunConfigOf(next));
    gateway.setInterface(next.interface.ipv4, next.interface.ipv6);
    await dnsListener.listen(listenAddresses(next.interface));
    gateway.applyPolicy(clientPoliciesOf(next, realClock.wallNow()));
    current = next;
    log.info({ config: next.path, peers: next.peers.map((p) => p.name) }, 'Policy file reloaded');
  };
  return () => {
    chain = chain.then(reload, reload).catch((e: unknown) => {
      log.error({ err: (e as Error).message }, 'Reloading the policy file failed');
    });
  };
}

/** The in-tunnel DNS server's addresses: the gateway's tunnel addresses. */
function listenAddresses(iface: {
  readonly ipv4: Uint8Array | undefined;
  readonly ipv6: Uint8Array | undefined;
}): string[] {
  return [iface.ipv4, iface.ipv6].filter((a): a is Uint8Array => a !== undefined).map((a) => formatIp(a));
}
