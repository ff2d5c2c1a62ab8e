import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';
import { GatewayError, type GatewayErrorCode } from '../errors.js';

/** errno values used for decisions in `src/io` (Linux numbering, from Node's table). */
export const ERRNO = {
  EPERM: constants.errno.EPERM,
  EINTR: constants.errno.EINTR,
  EINVAL: constants.errno.EINVAL,
  EBUSY: constants.errno.EBUSY,
  EACCES: constants.errno.EACCES,
  EAGAIN: constants.errno.EAGAIN,
  ENOENT: constants.errno.ENOENT,
  ESRCH: constants.errno.ESRCH,
  EEXIST: constants.errno.EEXIST,
  ENOBUFS: constants.errno.ENOBUFS,
  EADDRNOTAVAIL: constants.errno.EADDRNOTAVAIL,
  EAFNOSUPPORT: constants.errno.EAFNOSUPPORT,
  EOPNOTSUPP: constants.errno.EOPNOTSUPP,
  ENOPROTOOPT: constants.errno.ENOPROTOOPT,
  ENODEV: constants.errno.ENODEV,
} as const;

const systemErrors = getSystemErrorMap();

/** `EEXIST`, or `errno 1234` for a number Node does not know. */
export function errnoName(errno: number): string {
  return systemErrors.get(-errno)?.[0] ?? `errno ${errno}`;
}

/** `EEXIST (file already exists)`: name and libuv's description. */
export function describeErrno(errno: number): string {
  const entry = systemErrors.get(-errno);
  return entry ? `${entry[0]} (${entry[1]})` : `errno ${errno}`;
}

/**
 * The error for a failed system call: names the operation, its subject and the errno, e.g.
 * "add route 100.64.0.0/11 to table 539098368 failed: EPERM (operation not permitted)".
 */
export function osError(
  code: GatewayErrorCode,
  operation: string,
  errno: number,
  detail?: string,
): GatewayError & { readonly errno: number } {
  const suffix = detail ? `: ${detail}` : '';
  const error = new GatewayError(
    code,
    `${operation} failed: ${describeErrno(errno)}${suffix}`,
  ) as GatewayError & {
    errno: number;
  };
  error.errno = errno;
  return error;
}
