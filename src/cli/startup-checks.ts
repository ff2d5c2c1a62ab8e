import { readFile } from 'node:fs/promises';
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

/**
 * Reads the standalone-mode policy file and checks that it is a JSON object. The policy schema
 * itself is validated by the standalone control plane.
 */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new GatewayError('GW_ERR_CONFIG', `cannot read config file ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new GatewayError(
      'GW_ERR_CONFIG',
      `config file ${path} is not valid JSON: ${(e as Error).message}`,
      { cause: e },
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new GatewayError('GW_ERR_CONFIG', `config file ${path} must hold a JSON object at the top level`);
  }
  return parsed as Record<string, unknown>;
}
