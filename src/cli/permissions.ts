import { readFileSync } from 'node:fs';

/** `CAP_NET_ADMIN` is capability number 12 (linux/capability.h). */
export const CAP_NET_ADMIN = 12;

/** The message and exit code of the official gateway (`spec/portal-protocol.md` §6.4). */
export const PERMISSION_MESSAGE =
  'firezone-gateway needs to be executed as `root` or with the `CAP_NET_ADMIN` capability.\n' +
  'See https://www.firezone.dev/kb/deploy/gateways#permissions for details.';

/** True if the `CapEff:` line of a /proc/<pid>/status text has CAP_NET_ADMIN. */
export function hasNetAdminInStatus(status: string): boolean {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(status);
  if (!m) return false;
  return ((BigInt(`0x${m[1]}`) >> BigInt(CAP_NET_ADMIN)) & 1n) === 1n;
}

/** Root (effective uid 0) or CAP_NET_ADMIN in the effective set. */
export function hasNecessaryPermissions(
  euid: number = process.geteuid?.() ?? -1,
  readStatus: () => string = () => readFileSync('/proc/self/status', 'utf8'),
): boolean {
  if (euid === 0) return true;
  try {
    return hasNetAdminInStatus(readStatus());
  } catch {
    // No /proc (not Linux, or a locked-down container): we cannot prove the capability.
    return false;
  }
}
