import { readFile } from 'node:fs/promises';
import type { Gateway, GatewayLog } from '../actors/gateway.js';
import { GatewayError } from '../errors.js';
import { DnsListener } from '../io/dns-server.js';
import { parseResolvConf } from '../wire/dns/resolv-conf.js';
import { formatIp } from '../wire/ip/address.js';

/**
 * The upstream nameservers (`spec/gateway-dataplane.md` §7.4): the `nameserver` lines of
 * resolv.conf, read once at startup. A file that cannot be read stops the gateway before it
 * touches the network (exit 1), as the reference does; an empty list is allowed (every query then
 * gets SERVFAIL, and DNS resources stay Inactive) and said loudly.
 */
export async function loadNameservers(path: string, log: GatewayLog): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new GatewayError(
      'GW_ERR_CONFIG',
      `cannot read the nameservers from ${path}: ${(e as Error).message}`,
    );
  }
  const parsed = parseResolvConf(text);
  for (const s of parsed.skipped)
    log.warn({ file: path, line: s.line, text: s.text, reason: s.reason }, 'Nameserver line skipped');
  const servers = parsed.nameservers.map((ip) => formatIp(ip));
  if (servers.length === 0)
    log.warn({ file: path }, 'No nameservers configured; DNS queries will get SERVFAIL');
  else log.info({ file: path, nameservers: servers }, 'Nameservers loaded');
  return servers;
}

/** The in-tunnel DNS server (port 53535) of a gateway, on whatever tunnel addresses it has. */
export function dnsListenerFor(gateway: Gateway, log: GatewayLog): DnsListener {
  return new DnsListener((query, transport) => gateway.dnsQuery(query, transport), log);
}
