import { arch, platform, release } from 'node:os';
import { exitCodeFor, GatewayError } from '../errors.js';
import { type HealthServer, startHealthServer } from '../io/health.js';
import { openTun, type TunDevice } from '../io/tun.js';
import { openTunnelSockets, type TunnelSockets } from '../io/tunnel-sockets.js';
import { resolveGatewayId } from './gateway-id.js';
import { raiseSocketBufferLimits } from './kernel-buffers.js';
import { componentLogger, createLogger, type Logger } from './logging.js';
import { type CliOutput, type Env, parseCli } from './options.js';
import { hasNecessaryPermissions, PERMISSION_MESSAGE } from './permissions.js';
import { formatSocketAddress } from './socket-address.js';
import { readConfigFile, validateApiUrl } from './startup-checks.js';
import { GATEWAY_VERSION } from './version.js';

/** Graceful shutdown must finish within this; after it the process exits anyway. */
export const SHUTDOWN_GRACE_MS = 2_000;

export interface MainContext {
  readonly argv: readonly string[];
  readonly env: Env;
  readonly out: CliOutput;
  /** Resolves when SIGINT or SIGTERM arrives (the name of the signal). */
  readonly shutdownSignal: Promise<string>;
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
  try {
    const standalone = opts.config !== undefined;
    if (standalone) {
      await readConfigFile(opts.config!);
      log.info({ config: opts.config }, 'Standalone mode: using a local policy file');
    } else {
      validateApiUrl(opts.apiUrl);
    }
    if (!opts.noIncBuf) await raiseSocketBufferLimits(log, ctx.procSys);
    if (!standalone) {
      const gid = await resolveGatewayId(opts.firezoneId, ctx.gatewayIdPath);
      log.info({ source: gid.source }, 'Gateway ID determined');
    }
    // Created at startup and configured later (portal `init`, or the policy file); the router
    // attaches to the device and the sockets.
    tun = await openTun({ logger: componentLogger(log, opts.logFilter, 'tun') });
    log.info({ name: tun.name, mtu: tun.mtu }, 'TUN device created');
    sockets = await openTunnelSockets(componentLogger(log, opts.logFilter, 'udp'));
    log.info({ ipv4Port: sockets.v4?.localPort, ipv6Port: sockets.v6?.localPort }, 'Tunnel sockets bound');
    const addr = opts.healthCheckAddr;
    try {
      health = await startHealthServer(addr.host, addr.port);
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
    log.warn('No control plane in this build yet: serving the health check only');
    const signal = await ctx.shutdownSignal;
    log.info({ signal }, 'Received signal, shutting down');
    return 0;
  } catch (e) {
    if (e instanceof GatewayError) {
      log.error({ code: e.code }, e.message);
      return exitCodeFor(e);
    }
    throw e;
  } finally {
    await health?.close();
    await sockets?.close();
    await tun?.close();
    log.info('Goodbye!');
    log.flush();
  }
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
  main({
    argv: process.argv.slice(2),
    env: process.env,
    out: { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) },
    shutdownSignal,
  }).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`firezone-gateway: unexpected error: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
