import { GatewayError } from '../../errors.js';

/**
 * Errors of the development portal. A bad policy file is a configuration error of the process
 * that loads it (`GW_ERR_CONFIG`, like the standalone policy file); the programmatic API throws
 * `DevPortalError`s whose literal `code` callers match on.
 */

/** `GW_ERR_CONFIG` with each problem as one line of the message and one entry of `problems`. */
export class PortalPolicyError extends GatewayError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[], options?: { cause?: unknown }) {
    super('GW_ERR_CONFIG', problems.join('\n'), options);
    this.problems = problems;
  }
}

export type DevPortalErrorCode =
  /** No client with that id in the policy file. */
  | 'DEV_PORTAL_UNKNOWN_CLIENT'
  /** No resource with that id in the policy file. */
  | 'DEV_PORTAL_UNKNOWN_RESOURCE'
  /** No gateway row with that id (it never connected). */
  | 'DEV_PORTAL_UNKNOWN_GATEWAY'
  /** No relay with that id in the policy file or given to `relaysPresence` before. */
  | 'DEV_PORTAL_UNKNOWN_RELAY'
  /** A relay definition passed to `relaysPresence` is invalid. */
  | 'DEV_PORTAL_BAD_RELAY'
  /** No connected, joined gateway can take the request (the portal's `offline`). */
  | 'DEV_PORTAL_OFFLINE'
  /** The gateway did not answer an `authorize_flow` / `request_connection` in time. */
  | 'DEV_PORTAL_TIMEOUT'
  /** The gateway answered with a valid ref but an unusable payload. */
  | 'DEV_PORTAL_BAD_ANSWER'
  /** The portal was closed while the request was pending. */
  | 'DEV_PORTAL_CLOSED';

export class DevPortalError extends Error {
  override readonly name = 'DevPortalError';
  readonly code: DevPortalErrorCode;

  constructor(code: DevPortalErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
