import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { formatIp } from '../../../../src/wire/ip/address.js';
import { formatPrefix, type IpPrefix } from '../../../../src/wire/ip/prefix.js';
import { decodePortalMessage } from '../../../../src/wire/portal/decode.js';
import type {
  DecodedPortalMessage,
  PortalError,
  PortalMessage,
  PortalMessageType,
} from '../../../../src/wire/portal/types.js';

/**
 * The captured portal frames (`test/fixtures/portal`, a copy of the project's shared
 * `fixtures/portal`; `portal-fixtures-copy.test.ts` keeps the copy in sync where the shared
 * directory exists). A missing directory throws while the test file loads: it must fail, never skip.
 */
export const FIXTURE_DIR = fileURLToPath(new URL('../../../fixtures/portal/', import.meta.url));

export interface Fixture {
  readonly file: string;
  readonly text: string;
  readonly json: { readonly event: string; readonly payload: unknown; readonly [k: string]: unknown };
}

export function loadFixtures(): Fixture[] {
  return readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const text = readFileSync(`${FIXTURE_DIR}${file}`, 'utf8');
      return { file, text, json: JSON.parse(text) as Fixture['json'] };
    });
}

/** The member of `PortalMessage` whose `type` admits `T` (one member covers both ICE events). */
type MessageOf<T extends PortalMessageType, M = PortalMessage> = M extends { readonly type: infer U }
  ? T extends U
    ? M
    : never
  : never;

/** Decodes and asserts success; narrows to the expected message type. */
export function decodeOk<T extends PortalMessageType>(
  type: T,
  payload: unknown,
  event: string = type,
): { message: MessageOf<T>; skipped: readonly string[] } {
  const r = decodePortalMessage(event, payload);
  if (!r.ok) throw new Error(`expected ${event} to decode, got ${r.error.code}: ${r.error.message}`);
  expect(r.value.message.type).toBe(type);
  return r.value as DecodedPortalMessage & { message: MessageOf<T> };
}

/** Decodes and asserts failure. */
export function decodeErr(event: string, payload: unknown): PortalError {
  const r = decodePortalMessage(event, payload);
  if (r.ok) throw new Error(`expected ${event} to be refused, got ${JSON.stringify(r.value.message.type)}`);
  return r.error;
}

export const ip = (b: Uint8Array): string => formatIp(b);
export const prefix = (p: IpPrefix): string => formatPrefix(p);
export const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

/** Marks a key to delete in `edited`. */
export const DELETE = Symbol('delete');

/**
 * A deep copy of a JSON value with the value at `path` (`'client.public_key'`,
 * `'relays.1.addr'`) replaced, or deleted with `DELETE`: a variation of a valid payload.
 */
export function edited(value: unknown, path: string, replacement: unknown): unknown {
  const copy = structuredClone(value);
  const keys = path.split('.');
  let at = copy as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) at = at[k] as Record<string, unknown>;
  const last = keys[keys.length - 1]!;
  if (replacement === DELETE) delete at[last];
  else at[last] = replacement;
  return copy;
}

// Valid building blocks (spec/portal-protocol.md §2 examples).
export const CLIENT_ID = '8e370367-64b2-4e27-83e2-27ce03bcce23';
export const RESOURCE_ID = '1844956a-9aca-4bf4-903b-27c7ebf18666';
export const RELAY_ID = '41529b7d-f3e1-4b26-b01d-e34919d76e1b';
export const PUBLIC_KEY = 'DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0=';
export const PRESHARED_KEY = 'GSe3SsFmtndY5G4/q4P0HlP9oMDAA79fIIBbJ+nQvZ0=';
export const REF = 'SFMyNTY.g2gDbQAAAkx-signature';

export const cidrResource = (filters: unknown[] = []) => ({
  id: RESOURCE_ID,
  type: 'cidr',
  name: 'Office LAN',
  address: '172.20.0.0/16',
  filters,
});

export const turn = (addr: string, over: Record<string, unknown> = {}) => ({
  id: RELAY_ID,
  type: 'turn',
  addr,
  username: '1766444400:r2Nv0QkH3yWm6bq1bH0mJt0lBqvN0gQ3c0ZrC4sQ2bU',
  password: 'q3w2sJk0XGmT1yq0pU5b7tA9xQx0Wc1pWzj0Xc2Hf4Q',
  expires_at: 1766444400,
  ...over,
});

export const authorizeFlow = () => ({
  ref: REF,
  resource: cidrResource(),
  client: {
    id: CLIENT_ID,
    public_key: PUBLIC_KEY,
    preshared_key: PRESHARED_KEY,
    ipv4: '100.88.3.41',
    ipv6: 'fd00:2021:1111::9:1c0d',
  },
  client_ice_credentials: { username: 'hyik', password: 'k3rnzmulp3ccejwamasyfw' },
  gateway_ice_credentials: { username: '52nj', password: '2hozxefbrdyashwpoq3v6w' },
  expires_at: 1758790800,
});

export const requestConnection = () => ({
  ref: REF,
  expires_at: 1758790800,
  resource: {
    id: 'ec18cd0b-11ac-47e4-80a4-af6ac3fae473',
    type: 'dns',
    name: 'internal apps',
    address: '*.corp.example',
    filters: [{ protocol: 'tcp', port_range_start: 443, port_range_end: 443 }, { protocol: 'icmp' }],
  },
  client: {
    id: 'c654a3ff-6e0d-4a64-930a-1312fab876d8',
    payload: {
      ice_parameters: { username: '4ysn', password: 'a83rsv8n8yz56pv0s5iduv' },
      domain: {
        name: 'wiki.corp.example',
        proxy_ips: ['100.96.0.9', '100.96.0.10', 'fd00:2021:1111:8000::8', 'fd00:2021:1111:8000::9'],
      },
    },
    peer: {
      persistent_keepalive: 25,
      public_key: 'b1OvSjJspDn8pdygByfqAhjY1Bpc8DlBYiA59CRudec=',
      preshared_key: 'jlj+GHGJUqEV8NYvIpIaWap45QaNGPo/7lotzEloeps=',
      ipv4: '100.102.7.200',
      ipv6: 'fd00:2021:1111::e:4b01',
    },
  },
});

export const allowAccess = () => ({
  ref: REF,
  client_id: 'c654a3ff-6e0d-4a64-930a-1312fab876d8',
  resource: {
    id: '410c6258-f8fd-43fe-a8e8-7b6e788c80a6',
    type: 'cidr',
    name: 'lab',
    address: '172.20.0.0/16',
    filters: [],
  },
  expires_at: 1758790800,
  payload: null,
  client_ipv4: '100.102.7.200',
  client_ipv6: 'fd00:2021:1111::e:4b01',
});

export const init = () => ({
  account_slug: 'acme',
  authorizations: [{ client_id: CLIENT_ID, resource_id: RESOURCE_ID, expires_at: 1758790800 }],
  config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
  interface: { ipv4: '100.71.20.9', ipv6: 'fd00:2021:1111::13:7a2e' },
  relays: [turn('203.0.113.7:3478'), turn('[2001:db8::7]:3478')],
});
