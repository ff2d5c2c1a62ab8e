import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIp } from '../../../../src/wire/ip/address.js';
import { decodePortalMessage, PORTAL_EVENTS } from '../../../../src/wire/portal/decode.js';
import type { PortalErrorCode } from '../../../../src/wire/portal/types.js';
import { ipv4Arb, ipv6Arb, PROPERTY_RUNS } from '../../../support/arbitraries.js';
import {
  allowAccess,
  authorizeFlow,
  b64,
  cidrResource,
  init,
  loadFixtures,
  requestConnection,
  turn,
} from './helpers.js';

const RUNS = Math.min(PROPERTY_RUNS, 20_000);
const CODES: readonly PortalErrorCode[] = [
  'portal.invalid',
  'portal.bad-port-range',
  'portal.unsupported-event',
];
const SECRET_KEYS = new Set(['public_key', 'preshared_key', 'password', 'ref', 'username']);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Valid payloads to mutate: every captured frame plus the hand-written ones. */
const BASES: readonly { readonly event: string; readonly payload: unknown }[] = [
  ...loadFixtures().map((f) => ({ event: f.json.event, payload: f.json.payload })),
  { event: 'init', payload: init() },
  { event: 'authorize_flow', payload: authorizeFlow() },
  { event: 'request_connection', payload: requestConnection() },
  { event: 'allow_access', payload: allowAccess() },
  {
    event: 'resource_updated',
    payload: cidrResource([{ protocol: 'tcp', port_range_start: 1 }, { protocol: 'icmp' }]),
  },
  { event: 'relays_presence', payload: { disconnected_ids: [], connected: [turn('[2001:db8::7]:3478')] } },
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every container (object or list) in `v` with the path to it, `v` itself first. */
function containers(v: unknown, out: (Json[] | { [k: string]: Json })[] = []) {
  if (typeof v === 'object' && v !== null) {
    out.push(v as Json[]);
    for (const child of Object.values(v)) containers(child, out);
  }
  return out;
}

/** String values under secret keys, long enough that a chance collision with shown text is impossible. */
function secrets(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'object' && v !== null) {
    for (const [k, child] of Object.entries(v)) {
      if (SECRET_KEYS.has(k) && typeof child === 'string' && child.length >= 12) out.push(child);
      secrets(child, out);
    }
  }
  return out;
}

const mutation = fc.record({
  at: fc.nat(),
  op: fc.constantFrom('replace', 'delete', 'insert'),
  pick: fc.nat(),
  value: fc.jsonValue({ maxDepth: 3 }),
  key: fc.oneof(
    fc.string(),
    fc.constantFrom('type', 'protocol', 'id', 'addr', 'expires_at', 'filters', 'relays'),
  ),
});

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(payload: unknown, ms: readonly Mutation[]): unknown {
  let root = structuredClone(payload) as Json;
  for (const m of ms) {
    const all = containers(root);
    if (all.length === 0) {
      root = m.value as Json;
      continue;
    }
    const c = all[m.at % all.length]!;
    const keys = Array.isArray(c) ? c.map((_, i) => i) : Object.keys(c);
    const k = keys.length === 0 || m.op === 'insert' ? m.key : keys[m.pick % keys.length]!;
    if (Array.isArray(c)) {
      const i = typeof k === 'number' ? k : 0;
      if (m.op === 'delete') c.splice(i, 1);
      else if (m.op === 'insert') c.splice(m.pick % (c.length + 1), 0, m.value as Json);
      else c[i] = m.value as Json;
    } else if (m.op === 'delete') delete c[k];
    else c[k] = m.value as Json;
  }
  return root;
}

/** Checks an outcome: a well-formed message, or an error with a known code and a payload path. */
function checkOutcome(event: string, payload: unknown, r: ReturnType<typeof decodePortalMessage>): void {
  const hidden = secrets(payload);
  if (!r.ok) {
    expect(CODES).toContain(r.error.code);
    expect(r.error.message.length).toBeGreaterThan(0);
    if (r.error.code === 'portal.unsupported-event') expect(r.error.path).toBeUndefined();
    else expect(r.error.path).toMatch(/^payload/);
    for (const s of hidden) expect(r.error.message).not.toContain(s);
    return;
  }
  expect(r.value.message.type).toBe(event);
  for (const line of r.value.skipped) {
    expect(line).toMatch(/^payload/);
    for (const s of hidden) expect(line).not.toContain(s);
  }
  checkValues(r.value.message);
}

/** Every decoded value has its documented shape: byte lengths, lower-case ids, whole-second times. */
function checkValues(v: unknown, key = ''): void {
  if (v instanceof Uint8Array) {
    const ok = /key/i.test(key) ? v.length === 32 : v.length === 4 || v.length === 16;
    expect(ok, `${key}: ${v.length} bytes`).toBe(true);
  } else if (Array.isArray(v)) {
    for (const x of v) checkValues(x, key);
  } else if (typeof v === 'object' && v !== null) {
    for (const [k, x] of Object.entries(v)) checkValues(x, k);
  } else if (/^(id|clientId|resourceId)$/.test(key) || key === 'disconnectedIds') {
    expect(v).toMatch(UUID_RE);
  } else if (key === 'expiresAtMs' && v !== undefined) {
    expect(Number.isSafeInteger(v) && (v as number) % 1000 === 0).toBe(true);
  } else if (key === 'port' || key === 'portStart' || key === 'portEnd') {
    expect(Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535).toBe(true);
  }
}

describe('decodePortalMessage properties', () => {
  const events = fc.constantFrom(...PORTAL_EVENTS, 'create_authorization', 'no_relays', 'phx_reply', 'bogus');

  it('never throws on any JSON payload', () => {
    fc.assert(
      fc.property(events, fc.jsonValue(), (event, payload) => {
        checkOutcome(event, payload, decodePortalMessage(event, payload));
      }),
      { numRuns: RUNS },
    );
  });

  it('never throws on mutated valid payloads, and never shows their secrets', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...BASES),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        ({ event, payload }, ms) => {
          const mutated = mutate(payload, ms);
          checkOutcome(event, mutated, decodePortalMessage(event, mutated));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('decodes any well-formed authorize_flow to the values it carries', () => {
    const key = fc.uint8Array({ minLength: 32, maxLength: 32 });
    fc.assert(
      fc.property(
        fc.uuid(),
        fc.uuid(),
        key,
        key,
        ipv4Arb,
        ipv6Arb,
        fc.option(fc.integer({ min: 0, max: 8_640_000_000_000 }), { nil: undefined }),
        fc.string(),
        (clientId, resourceId, pk, psk, v4, v6, expiresAt, ref) => {
          const payload = {
            ref,
            resource: { id: resourceId.toUpperCase(), type: 'internet' },
            client: {
              id: clientId,
              public_key: b64(pk),
              preshared_key: b64(psk),
              ipv4: formatIp(v4),
              ipv6: formatIp(v6),
            },
            client_ice_credentials: { username: 'a', password: 'b' },
            gateway_ice_credentials: { username: 'c', password: 'd' },
            ...(expiresAt === undefined ? {} : { expires_at: expiresAt }),
          };
          const r = decodePortalMessage('authorize_flow', payload);
          if (!r.ok || r.value.message.type !== 'authorize_flow') throw new Error(JSON.stringify(r));
          const m = r.value.message;
          expect(m.ref).toBe(ref);
          expect(m.resource).toEqual({ type: 'internet', id: resourceId.toLowerCase() });
          expect(m.client).toEqual({
            id: clientId.toLowerCase(),
            publicKey: pk,
            presharedKey: psk,
            ipv4: v4,
            ipv6: v6,
          });
          expect(m.expiresAtMs).toBe(expiresAt === undefined ? undefined : expiresAt * 1000);
        },
      ),
      { numRuns: Math.min(PROPERTY_RUNS, 5_000) },
    );
  });

  it('merges any relay list into relays with distinct ids and at most one address per family', () => {
    const ids = ['41529b7d-f3e1-4b26-b01d-e34919d76e1b', 'f3e96854-f1f6-4e43-b751-9aa6c27b1fda'];
    const entry = fc.record({
      id: fc.constantFrom(...ids),
      ip: fc.oneof(ipv4Arb, ipv6Arb),
      port: fc.integer({ min: 0, max: 65535 }),
      type: fc.constantFrom('turn', 'turn', 'stun', 'other'),
    });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 8 }), (entries) => {
        const relays = entries.map((e) => {
          const addr = e.ip.length === 4 ? `${formatIp(e.ip)}:${e.port}` : `[${formatIp(e.ip)}]:${e.port}`;
          return { ...turn(addr, { id: e.id }), type: e.type };
        });
        const r = decodePortalMessage('relays_presence', { disconnected_ids: [], connected: relays });
        if (!r.ok || r.value.message.type !== 'relays_presence') throw new Error(JSON.stringify(r));
        const got = r.value.message.connected;
        expect(new Set(got.map((x) => x.id)).size).toBe(got.length);
        expect(got.map((x) => x.id)).toEqual([
          ...new Set(entries.filter((e) => e.type === 'turn').map((e) => e.id)),
        ]);
        for (const relay of got) {
          const families = relay.addresses.map((a) => a.ip.length);
          expect(families.length).toBeGreaterThan(0);
          expect(new Set(families).size).toBe(families.length);
          expect(families).toEqual([...families].sort((a, b) => a - b));
        }
        expect(r.value.skipped.filter((l) => l.includes("type 'other'"))).toHaveLength(
          entries.filter((e) => e.type === 'other').length,
        );
      }),
      { numRuns: Math.min(PROPERTY_RUNS, 5_000) },
    );
  });
});
