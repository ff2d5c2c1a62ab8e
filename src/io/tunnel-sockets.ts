import { GatewayError } from '../errors.js';
import { FIREZONE_FWMARK } from '../wire/netlink/constants.js';
import { openUdp, type UdpSocket, type UdpStrategy } from './udp.js';

/**
 * The tunnel's UDP port: 49152 + 3473 ("FIRE"), preferred by the reference gateway; when it is
 * taken, the kernel picks one (`spec/snownet.md` §5.3).
 */
export const TUNNEL_PORT = 52625;

/**
 * mmsg moves 2–3 times more datagrams per second than node:dgram in `bench/io.bench.ts`, learns
 * each datagram's destination address, and carries the fwmark without private Node APIs.
 */
export const DEFAULT_UDP_STRATEGY: UdpStrategy = 'mmsg';

export interface TunnelSockets {
  readonly v4: UdpSocket | undefined;
  readonly v6: UdpSocket | undefined;
  close(): Promise<void>;
}

export interface TunnelSocketLog {
  warn(obj: object, msg: string): void;
}

/**
 * One wildcard-bound socket per family, marked with the Firezone fwmark so tunnel traffic skips
 * the gateway's own routing table (`spec/gateway-dataplane.md` §10.2). A family that cannot be
 * opened (IPv6 disabled) is logged and left out; if neither opens, that is fatal.
 */
export async function openTunnelSockets(
  log: TunnelSocketLog,
  opts: { port?: number; strategy?: UdpStrategy } = {},
): Promise<TunnelSockets> {
  const port = opts.port ?? TUNNEL_PORT;
  const strategy = opts.strategy ?? DEFAULT_UDP_STRATEGY;
  const open = async (family: 4 | 6): Promise<UdpSocket | GatewayError> => {
    const attempt = (p: number) => openUdp({ family, port: p, strategy, fwmark: FIREZONE_FWMARK });
    try {
      return await attempt(port);
    } catch (first) {
      if (port === 0) return first as GatewayError;
      try {
        const s = await attempt(0);
        log.warn(
          { family, port, chosen: s.localPort, err: (first as Error).message },
          'Tunnel port taken, using another',
        );
        return s;
      } catch (second) {
        return second as GatewayError;
      }
    }
  };
  const [v4, v6] = await Promise.all([open(4), open(6)]);
  if (v4 instanceof Error && v6 instanceof Error) {
    throw new GatewayError(
      'GW_ERR_UDP_OPEN',
      `cannot open the tunnel UDP sockets: IPv4: ${v4.message}; IPv6: ${v6.message}`,
    );
  }
  for (const [family, r] of [
    [4, v4],
    [6, v6],
  ] as const) {
    if (r instanceof Error) log.warn({ family, err: r.message }, 'No tunnel socket for this address family');
  }
  const s4 = v4 instanceof Error ? undefined : v4;
  const s6 = v6 instanceof Error ? undefined : v6;
  return {
    v4: s4,
    v6: s6,
    close: async () => {
      await Promise.all([s4?.close(), s6?.close()]);
    },
  };
}
