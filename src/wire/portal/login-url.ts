import { sha256 } from '@noble/hashes/sha2.js';
import type { Result, WireError } from '../result.js';

/**
 * The gateway's portal URL and User-Agent (`spec/portal-protocol.md` §1.1–§1.2).
 *
 * We report the 1.4.x protocol of the official gateway: the portal reads the version from the
 * User-Agent and uses it to pick messages and compatible clients (§7.2), and a 1.4.x gateway
 * must (and we do) speak the legacy 1.3.x flow too.
 */
export const GATEWAY_PROTOCOL_VERSION = '1.4.17';

export type LoginUrlError = WireError<'portal-url.bad-scheme' | 'portal-url.no-host' | 'portal-url.invalid'>;

export interface LoginParams {
  readonly apiUrl: string;
  readonly token: string;
  readonly gatewayId: string;
  readonly name: string;
  readonly publicKeyBase64: string;
}

const SCHEMES: Readonly<Record<string, string>> = {
  'ws:': 'ws:',
  'wss:': 'wss:',
  'http:': 'ws:',
  'https:': 'wss:',
};

/**
 * `<ws|wss>://host[:port]/<base path>/gateway/websocket?token=…&external_id=…&name=…&public_key=…`.
 * Any query of the base URL is dropped; parameters are form-urlencoded in this order. Unlike the
 * reference (which dials 443 for `ws://host` without a port), the default port follows the
 * scheme: 80 for ws, 443 for wss.
 */
export function buildLoginUrl(p: LoginParams): Result<URL, LoginUrlError> {
  let url: URL;
  try {
    url = new URL(p.apiUrl);
  } catch {
    return { ok: false, error: { code: 'portal-url.invalid', message: `'${p.apiUrl}' is not a URL` } };
  }
  const scheme = SCHEMES[url.protocol];
  if (!scheme) {
    return {
      ok: false,
      error: {
        code: 'portal-url.bad-scheme',
        message: `portal URL scheme '${url.protocol.slice(0, -1)}' is not one of ws, wss, http, https`,
      },
    };
  }
  if (url.hostname === '')
    return {
      ok: false,
      error: { code: 'portal-url.no-host', message: `portal URL '${p.apiUrl}' has no host` },
    };
  const segments = url.pathname
    .split('/')
    .filter((s, i, all) => !(s === '' && (i === 0 || i === all.length - 1)));
  const out = new URL(`${scheme}//${url.host}`);
  out.pathname = `/${[...segments, 'gateway', 'websocket'].join('/')}`;
  const q = [
    ['token', p.token],
    ['external_id', externalIdOf(p.gatewayId)],
    ['name', p.name],
    ['public_key', p.publicKeyBase64],
  ]
    .map(([k, v]) => `${k}=${formEncode(v!)}`)
    .join('&');
  out.search = `?${q}`;
  return { ok: true, value: out };
}

/**
 * `application/x-www-form-urlencoded`: ASCII letters, digits and `*-._` stay, space becomes `+`,
 * everything else is %XX of its UTF-8 bytes.
 */
export function formEncode(s: string): string {
  let out = '';
  for (const b of new TextEncoder().encode(s)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9*\-._]/.test(c)) out += c;
    else if (b === 0x20) out += '+';
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const UUID_FORMS = [
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i,
  /^[0-9a-f]{32}$/i,
  /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i,
  /^\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}$/i,
];

/**
 * The portal's `external_id` (§1.1 step 3): an ID that parses as a UUID (any form the reference's
 * uuid crate accepts) is sent as the lower-case hex SHA-256 of the ID text as given; anything
 * else is sent unchanged.
 */
export function externalIdOf(gatewayId: string): string {
  if (!UUID_FORMS.some((re) => re.test(gatewayId))) return gatewayId;
  return Array.from(sha256(new TextEncoder().encode(gatewayId)), (b) => b.toString(16).padStart(2, '0')).join(
    '',
  );
}

/**
 * `"{os_type}/{os_version} connlib/{version} ({arch}; {kernel})"`, non-ASCII removed (§1.2). The
 * portal takes the version from the first token starting with `connlib/`.
 */
export function userAgent(
  os: { type: string; version: string; arch?: string; kernel?: string },
  version = GATEWAY_PROTOCOL_VERSION,
): string {
  const extra =
    os.arch && os.kernel
      ? ` (${os.arch}; ${os.kernel})`
      : os.arch
        ? ` (${os.arch})`
        : os.kernel
          ? ` (${os.kernel})`
          : '';
  return `${os.type}/${os.version} connlib/${version}${extra}`.replace(/[^\x20-\x7e]/g, '');
}
