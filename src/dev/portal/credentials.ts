import { createHash, createHmac, pbkdf2Sync, timingSafeEqual } from 'node:crypto';

/**
 * The secrets the development portal hands out, derived as the real portal does where that
 * matters to a gateway (`spec/portal-protocol.md` §4.4, §4.7), and in coturn's REST format where
 * the real portal uses its own relays.
 */

export interface IceCredentials {
  readonly username: string;
  readonly password: string;
}

/** Relay credentials live 90 days, as the portal renders them (§4.4, §2.7). */
export const RELAY_CREDENTIAL_LIFETIME_S = 90 * 24 * 60 * 60;

/**
 * TURN REST credentials as coturn checks them with `--use-auth-secret
 * --static-auth-secret=<secret>`: username `"<expires_at>:<user>"`, password
 * `base64(HMAC-SHA1(secret, username))`. The real portal uses a SHA-256 scheme of its own
 * relays (§4.4); a gateway treats both as opaque long-term credentials (realm `firezone`).
 */
export function coturnCredentials(secret: string, user: string, expiresAtS: number): IceCredentials {
  const username = `${expiresAtS}:${user}`;
  return { username, password: createHmac('sha1', secret).update(username).digest('base64') };
}

export interface PairKeys {
  readonly clientId: string;
  /** Base64 text, as it travels (it is part of the salt / hash input). */
  readonly clientPublicKey: string;
  readonly gatewayId: string;
  readonly gatewayPublicKey: string;
}

/**
 * The WireGuard PSK of a client–gateway pair (§4.7, `psk/2` in the portal's `crypto.ex`):
 * PBKDF2-HMAC-SHA256, 1 iteration, 32 bytes, password = client psk base ‖ gateway psk base, salt
 * `WG_PSK|C_ID:<client_id>|G_ID:<gateway_id>|C_PK:<client_pubkey>|G_PK:<gateway_pubkey>`; base64.
 */
export function derivePresharedKey(
  pair: PairKeys,
  clientPskBase: Uint8Array,
  gatewayPskBase: Uint8Array,
): string {
  const salt = `WG_PSK|C_ID:${pair.clientId}|G_ID:${pair.gatewayId}|C_PK:${pair.clientPublicKey}|G_PK:${pair.gatewayPublicKey}`;
  const password = Buffer.concat([clientPskBase, gatewayPskBase]);
  return pbkdf2Sync(password, salt, 1, 32, 'sha256').toString('base64');
}

/**
 * The ICE credentials of a pair (§4.7, `generate_ice_credentials/2`): `h` =
 * base32-lower-nopad(sha256(`<client_id>:<client_pubkey>:<gateway_id>:<gateway_pubkey>`)), 52
 * characters; client ufrag `h[0..3]`, pwd `h[4..25]`; gateway ufrag `h[26..29]`, pwd `h[30..]`
 * (Elixir ranges are inclusive).
 */
export function deriveIceCredentials(pair: PairKeys): { client: IceCredentials; gateway: IceCredentials } {
  const digest = createHash('sha256')
    .update(`${pair.clientId}:${pair.clientPublicKey}:${pair.gatewayId}:${pair.gatewayPublicKey}`)
    .digest();
  const h = base32LowerNoPad(digest);
  return {
    client: { username: h.slice(0, 4), password: h.slice(4, 26) },
    gateway: { username: h.slice(26, 30), password: h.slice(30) },
  };
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** RFC 4648 §6 base32 in lower case, without padding. */
export function base32LowerNoPad(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32[(acc >> bits) & 31];
    }
  }
  if (bits > 0) out += BASE32[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * Opaque, signed `ref`s for `authorize_flow` / `request_connection` / `allow_access` (§2.2: the
 * portal signs them and the gateway echoes them verbatim). Ours are `base64url(JSON)` + `.` +
 * `base64url(HMAC-SHA256(key, that))`: any change to either part fails verification.
 */
export class RefSigner {
  readonly #key: Uint8Array;

  constructor(key: Uint8Array) {
    this.#key = key;
  }

  sign(claims: Readonly<Record<string, unknown>>): string {
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${body}.${this.#mac(body).toString('base64url')}`;
  }

  /** The claims of a ref this signer made, or `undefined`. */
  verify(ref: string): Record<string, unknown> | undefined {
    const dot = ref.indexOf('.');
    if (dot <= 0) return undefined;
    const body = ref.slice(0, dot);
    const mac = Buffer.from(ref.slice(dot + 1), 'base64url');
    const want = this.#mac(body);
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) return undefined;
    try {
      const v: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
      return typeof v === 'object' && v !== null && !Array.isArray(v)
        ? (v as Record<string, unknown>)
        : undefined;
    } catch {
      // A valid MAC over a body we did not write cannot happen; treat it as a bad ref.
      return undefined;
    }
  }

  #mac(body: string): Buffer {
    return createHmac('sha256', this.#key).update(body).digest();
  }
}
