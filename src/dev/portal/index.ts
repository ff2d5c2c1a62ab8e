/**
 * The development portal (`server.ts`): a loopback imitation of the Firezone portal's gateway
 * channel, driven by a policy file (`policy.ts`), for tests, the demo and the simulated client.
 * `main.ts` is its command line.
 */
export {
  coturnCredentials,
  deriveIceCredentials,
  derivePresharedKey,
  type IceCredentials,
} from './credentials.js';
export { DevPortalError, type DevPortalErrorCode, PortalPolicyError } from './errors.js';
export {
  loadPortalPolicy,
  type PortalFilter,
  type PortalPolicy,
  type PortalPolicyClient,
  type PortalPolicyRelay,
  type PortalPolicyResource,
  type PortalPolicySite,
  parsePortalPolicy,
} from './policy.js';
export {
  type AllowAccessOptions,
  type AuthorizationInfo,
  type AuthorizeFlowOptions,
  DEFAULT_FLOW_LIFETIME_S,
  DEFAULT_FLOW_TIMEOUT_MS,
  DevPortal,
  type DevPortalEvents,
  type DevPortalFaults,
  type DevPortalLogger,
  type DevPortalOptions,
  type Domain,
  type Flow,
  type FrameRecord,
  type GatewayInfo,
  IDLE_TIMEOUT_MS,
  type RelaySpec,
  startDevPortal,
  type Timers,
} from './server.js';
