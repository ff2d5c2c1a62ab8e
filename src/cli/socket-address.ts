import { formatIp, parseIp } from '../wire/ip/address.js';

export interface SocketAddress {
  /** IP literal without brackets. */
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** Parses `IP:PORT` or `[IPv6]:PORT`, as Rust's `SocketAddr` does. */
export function parseSocketAddress(text: string): SocketAddress | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const ip = parseIp(m[1]!);
  const port = Number(m[2]);
  if (!ip || port > 65535) return undefined;
  return { host: formatIp(ip), port, family: ip.length === 4 ? 4 : 6 };
}

export function formatSocketAddress(a: SocketAddress): string {
  return a.family === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
