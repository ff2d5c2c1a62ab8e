import type { StandaloneConfig } from '../cli/standalone/index.js';
import type { TunConfig } from '../io/tun.js';
import type { ClientId } from '../wire/ids.js';
import { formatIp } from '../wire/ip/address.js';
import { formatPrefix } from '../wire/ip/prefix.js';
import { FIREZONE_FWMARK, FIREZONE_TABLE } from '../wire/netlink/constants.js';
import { STANDARD_PROFILE } from '../wire/wireguard/constants.js';
import type { ClientPolicy } from './gateway.js';

/**
 * Standalone mode as a control plane: the policy file becomes the desired set of clients (plain
 * WireGuard peers that roam, standard WireGuard timers) and the TUN configuration.
 *
 * Grants whose expiry has already passed are left out, and a peer left with no grant is not
 * installed at all: a client without resources has no business with the gateway (the portal's
 * expiry sweep removes such clients too), and a reload must not reopen access for a moment
 * until the next expiry sweep closes it again.
 */
export function clientPoliciesOf(config: StandaloneConfig, wallNowMs: number): ClientPolicy[] {
  const out: ClientPolicy[] = [];
  for (const p of config.peers) {
    const grants = p.grants.filter((g) => g.expiresAtMs === undefined || g.expiresAtMs > wallNowMs);
    if (grants.length === 0) continue;
    out.push({
      spec: {
        id: p.name as ClientId,
        publicKey: p.publicKey,
        presharedKey: p.presharedKey,
        profile: STANDARD_PROFILE,
        persistentKeepaliveMs: p.persistentKeepaliveMs,
        ipv4: p.ipv4,
        ipv6: p.ipv6,
        roaming: true,
      },
      grants,
    });
  }
  return out;
}

/** The TUN configuration of the policy file: addresses, routes, and the fwmark policy rule. */
export function tunConfigOf(config: StandaloneConfig): TunConfig {
  return {
    ...(config.interface.ipv4 ? { ipv4: formatIp(config.interface.ipv4) } : {}),
    ...(config.interface.ipv6 ? { ipv6: formatIp(config.interface.ipv6) } : {}),
    routes: config.routes.map(formatPrefix),
    table: FIREZONE_TABLE,
    fwmarkRule: { mark: FIREZONE_FWMARK, table: FIREZONE_TABLE },
  };
}

/** What differs between two policy files in ways a reload cannot apply. */
export function restartNeeded(before: StandaloneConfig, after: StandaloneConfig): string[] {
  const out: string[] = [];
  if (before.listenPort !== after.listenPort) out.push('listenPort');
  if (Buffer.compare(Buffer.from(before.privateKey), Buffer.from(after.privateKey)) !== 0)
    out.push('private key');
  return out;
}
