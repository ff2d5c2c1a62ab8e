/**
 * Thrown errors. Decoders never throw (they return typed results, see `wire/result.ts`); these
 * are for startup and I/O failures that end an operation or the process. Callers match on `code`.
 */
export type GatewayErrorCode =
  | 'GW_ERR_USAGE'
  | 'GW_ERR_CONFIG'
  | 'GW_ERR_PERMISSION'
  | 'GW_ERR_GATEWAY_ID'
  /** libc cannot be bound through koffi (wrong platform, missing library). */
  | 'GW_ERR_NATIVE'
  /** Opening or creating the TUN device failed. */
  | 'GW_ERR_TUN_OPEN'
  /** The TUN device failed while running (its descriptor closed, poll reported an error). */
  | 'GW_ERR_TUN_IO'
  /** An rtnetlink request failed or went unanswered (address, route, rule, link changes). */
  | 'GW_ERR_NETLINK'
  /** Creating, configuring or binding a UDP socket failed. */
  | 'GW_ERR_UDP_OPEN'
  /** A UDP socket failed while running. */
  | 'GW_ERR_UDP_IO';

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly code: GatewayErrorCode;

  constructor(code: GatewayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The process exit code a fatal error maps to (`spec/portal-protocol.md` §6.7). */
export function exitCodeFor(error: GatewayError): number {
  return error.code === 'GW_ERR_USAGE' ? 2 : 1;
}
