import { parseIp } from '../ip/address.js';

/**
 * The `nameserver` lines of resolv.conf(5), the Gateway's upstream nameservers
 * (`spec/gateway-dataplane.md` §7.4): read once at startup, duplicates collapsed, port always 53.
 *
 * As glibc reads it: one directive per line, the keyword first and case-sensitive, tokens
 * separated by spaces or tabs, `#` and `;` start a comment (at the start of a line or after the
 * address); tokens after the address are ignored, as are other directives (`search`, `domain`,
 * `options`, ...). Unlike glibc there is no limit of three servers. A line we cannot use is
 * reported in `skipped` rather than failing the whole file.
 */

export interface ResolvConfSkip {
  /** 1-based line number. */
  readonly line: number;
  /** The line without surrounding whitespace. */
  readonly text: string;
  readonly reason: string;
}

export interface ResolvConf {
  /** 4- or 16-byte addresses in file order, each once. */
  readonly nameservers: Uint8Array[];
  readonly skipped: ResolvConfSkip[];
}

export function parseResolvConf(text: string): ResolvConf {
  const nameservers: Uint8Array[] = [];
  const skipped: ResolvConfSkip[] = [];
  const seen = new Set<string>();
  const lines = text.split(/\r?\n|\r/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const comment = raw.search(/[#;]/);
    const tokens = (comment === -1 ? raw : raw.slice(0, comment)).split(/[ \t\f\v]+/).filter(Boolean);
    if (tokens[0] !== 'nameserver') continue;
    const skip = (reason: string) => skipped.push({ line: i + 1, text: raw.trim(), reason });
    const addr = tokens[1];
    if (addr === undefined) {
      skip('nameserver line without an address');
      continue;
    }
    if (addr.includes('%')) {
      skip(`IPv6 zone ids are not supported: ${addr}`);
      continue;
    }
    const ip = parseIp(addr);
    if (!ip) {
      skip(`not an IPv4 or IPv6 address: ${addr}`);
      continue;
    }
    const key = ip.join(',');
    if (seen.has(key)) continue;
    seen.add(key);
    nameservers.push(ip);
  }
  return { nameservers, skipped };
}
