import { err, ok, type Result, type WireError } from '../result.js';
import { formatIp, parseIp } from './address.js';

/** A route destination: network address (host bits zero) and prefix length. */
export interface IpPrefix {
  /** 4 or 16 bytes. */
  readonly address: Uint8Array;
  readonly prefixLength: number;
}

export type PrefixErrorCode =
  | 'prefix.bad-syntax'
  | 'prefix.bad-address'
  | 'prefix.bad-length'
  | 'prefix.host-bits';
export type PrefixError = WireError<PrefixErrorCode>;

/**
 * Parses `address/length` (`100.64.0.0/11`, `fd00:2021:1111::/107`). Host bits must be zero:
 * the kernel rejects such routes (EINVAL), and silently masking them would hide a typo.
 */
export function parsePrefix(text: string): Result<IpPrefix, PrefixError> {
  const slash = text.indexOf('/');
  if (slash === -1 || slash !== text.lastIndexOf('/')) {
    return err({ code: 'prefix.bad-syntax', message: `'${text}' is not ADDRESS/LENGTH, e.g. 100.64.0.0/11` });
  }
  const address = parseIp(text.slice(0, slash));
  if (!address) {
    return err({ code: 'prefix.bad-address', message: `'${text.slice(0, slash)}' is not an IP address` });
  }
  const lenText = text.slice(slash + 1);
  const bits = address.length * 8;
  const prefixLength = Number(lenText);
  if (!/^[0-9]{1,3}$/.test(lenText) || prefixLength > bits) {
    return err({
      code: 'prefix.bad-length',
      message: `prefix length '${lenText}' in '${text}': expected 0 to ${bits}`,
    });
  }
  for (let bit = prefixLength; bit < bits; bit++) {
    if (address[bit >> 3]! & (0x80 >> (bit & 7))) {
      return err({
        code: 'prefix.host-bits',
        message: `'${text}' has host bits set: expected ${formatPrefix(maskPrefix(address, prefixLength))}`,
      });
    }
  }
  return ok({ address, prefixLength });
}

/** `address/length` text, the address formatted as RFC 5952 / dotted quad. */
export function formatPrefix(p: IpPrefix): string {
  return `${formatIp(p.address)}/${p.prefixLength}`;
}

/** True when both prefixes have the same family, length and network bytes. */
export function prefixEquals(a: IpPrefix, b: IpPrefix): boolean {
  if (a.prefixLength !== b.prefixLength || a.address.length !== b.address.length) return false;
  for (let i = 0; i < a.address.length; i++) if (a.address[i] !== b.address[i]) return false;
  return true;
}

function maskPrefix(address: Uint8Array, prefixLength: number): IpPrefix {
  const masked = address.slice();
  for (let bit = prefixLength; bit < masked.length * 8; bit++) masked[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { address: masked, prefixLength };
}
