import { GatewayError } from '../errors.js';

const PORTAL_SCHEMES = new Set(['ws:', 'wss:', 'http:', 'https:']);

/**
 * The portal URL must be ws/wss/http/https with a host (`spec/portal-protocol.md` §1.1 step 1);
 * anything else is fatal before touching the network.
 */
export function validateApiUrl(url: URL): void {
  if (!PORTAL_SCHEMES.has(url.protocol)) {
    throw new GatewayError(
      'GW_ERR_CONFIG',
      `invalid portal URL '${url.href}': scheme '${url.protocol.slice(0, -1)}' is not one of ws, wss, http, https`,
    );
  }
  if (url.hostname === '')
    throw new GatewayError('GW_ERR_CONFIG', `invalid portal URL '${url.href}': it has no host`);
}
