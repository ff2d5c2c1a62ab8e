import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PortalRuntime } from '../../../src/actors/portal-runtime.js';
import type { PortalSocketHandlers } from '../../../src/io/portal-socket.js';
import { PORTAL_EVENTS } from '../../../src/wire/portal/decode.js';
import { PROPERTY_RUNS } from '../../support/arbitraries.js';
import { world } from '../../support/sim-gateway.js';

/**
 * Every real portal message of `test/fixtures/portal/` through the whole portal path: frame
 * decoding, the session actor (joined), the control plane, and the gateway's actors and router
 * on simulated I/O. 2025-09 messages must all be applied; 2026-08 ones (a newer portal) must be
 * applied or refused with a clear log line. Nothing may throw, end the session, or log an error.
 */
const DIR = fileURLToPath(new URL('../../fixtures/portal/', import.meta.url));
const FILES = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort();

/** An init with a relay, so flows can be authorized after it. */
const INIT = {
  topic: 'gateway',
  event: 'init',
  ref: null,
  payload: {
    interface: { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' },
    config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
    relays: [
      {
        id: '41529b7d-f3e1-4b26-b01d-e34919d76e1b',
        type: 'turn',
        addr: '127.0.0.1:3478',
        username: '1766444400:salt',
        password: 'pw',
        expires_at: 1766444400,
      },
    ],
    authorizations: [],
  },
};

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

function setup() {
  const w = world();
  const lines: { level: string; msg: string; obj: object }[] = [];
  const log = (level: string) => (obj: object, msg: string) => lines.push({ level, msg, obj });
  let handlers: PortalSocketHandlers | undefined;
  const sent: Record<string, unknown>[] = [];
  const runtime = new PortalRuntime({
    url: 'wss://portal.test/gateway/websocket?token=t',
    userAgent: 'Linux/6 connlib/1.4.17',
    clock: w.clock,
    log: { info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug') },
    gateway: w.gateway,
    configureTun: async () => undefined,
    resolve: async () => [Uint8Array.of(172, 20, 1, 10)],
    random: w.rnd,
    open: (_url, _ua, h) => {
      handlers = h;
      return { send: (t) => sent.push(JSON.parse(t) as Record<string, unknown>), close: () => undefined };
    },
  });
  runtime.start();
  handlers!.open();
  handlers!.text(
    JSON.stringify({ topic: 'gateway', event: 'phx_reply', ref: 0, payload: { status: 'ok', response: {} } }),
  );
  handlers!.text(JSON.stringify(INIT));
  stops.push(async () => {
    runtime.leave();
    await w.gateway.stop();
  });
  const handle = vi.spyOn(runtime.control, 'handle');
  const frame = (text: string) => handlers!.text(text);
  return { runtime, lines, sent, handle, frame };
}

/** The fixture as a frame the portal sends: topic and ref filled in where the file omits them. */
function frameOf(file: string): string {
  const f = JSON.parse(readFileSync(join(DIR, file), 'utf8')) as Record<string, unknown>;
  return JSON.stringify({ topic: 'gateway', ref: null, ...f });
}

describe('portal fixtures through the session actor and the control plane', () => {
  it('has fixtures of both snapshots', () => {
    expect(FILES.filter((f) => f.startsWith('2025-09')).length).toBeGreaterThan(3);
    expect(FILES.filter((f) => f.startsWith('2026-08')).length).toBeGreaterThan(3);
  });

  for (const file of FILES.filter((f) => f.startsWith('2025-09'))) {
    it(`applies ${file}`, async () => {
      const s = setup();
      s.frame(frameOf(file));
      // The legacy flow resolves names asynchronously.
      await new Promise((r) => setImmediate(r));
      expect(s.handle).toHaveBeenCalledTimes(1);
      expect(s.lines.filter((l) => l.msg === 'Dropping invalid portal message')).toEqual([]);
      expect(s.lines.filter((l) => l.level === 'error')).toEqual([]);
      expect(JSON.stringify(s.runtime.state)).toContain('joined');
    });
  }

  for (const file of FILES.filter((f) => f.startsWith('2026-08'))) {
    it(`applies or clearly refuses ${file}`, async () => {
      const s = setup();
      s.frame(frameOf(file));
      await new Promise((r) => setImmediate(r));
      const refused = s.lines.filter(
        (l) => l.msg === 'Ignoring unsupported portal message' || l.msg === 'Dropping invalid portal message',
      );
      expect(s.handle.mock.calls.length + refused.length).toBe(1);
      for (const r of refused) expect(JSON.stringify(r.obj)).toMatch(/"err":"[^"]+"/);
      expect(s.lines.filter((l) => l.level === 'error')).toEqual([]);
      expect(JSON.stringify(s.runtime.state)).toContain('joined');
    });
  }
});

/** Every JSON path of `v` (object keys and array indices). */
function pathsOf(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (typeof v !== 'object' || v === null) return [prefix];
  const keys = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  return [
    prefix,
    ...keys.flatMap((k) => pathsOf((v as Record<string | number, unknown>)[k], [...prefix, k])),
  ];
}

function replaceAt(v: unknown, path: (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  const copy = (Array.isArray(v) ? [...v] : { ...(v as object) }) as Record<string | number, unknown>;
  copy[path[0]!] = replaceAt(copy[path[0]!], path.slice(1), value);
  return copy;
}

describe('portal messages from a hostile or broken portal', () => {
  const fixtures = FILES.map(
    (f) => JSON.parse(readFileSync(join(DIR, f), 'utf8')) as { event: string; payload: unknown },
  );
  const mutated = fc
    .record({ i: fc.nat(fixtures.length - 1), pick: fc.nat(), value: fc.jsonValue() })
    .map(({ i, pick, value }) => {
      const f = fixtures[i]!;
      const paths = pathsOf(f.payload);
      return { event: f.event, payload: replaceAt(f.payload, paths[pick % paths.length]!, value) };
    });
  const random = fc.record({ event: fc.constantFrom(...PORTAL_EVENTS), payload: fc.jsonValue() });
  // Each run goes through decoding, the session, the control plane and the gateway's actors.
  const runs = Math.max(1_000, Math.floor(PROPERTY_RUNS / 10));

  it(`never throws and never ends the session (${runs} messages, one gateway)`, () => {
    const s = setup();
    fc.assert(
      fc.property(fc.oneof(mutated, random), fc.boolean(), (m, asText) => {
        const frame = { topic: 'gateway', ref: null, event: m.event, payload: m.payload };
        // Also whole frames of arbitrary text.
        s.frame(asText ? JSON.stringify(frame) : JSON.stringify(frame).slice(0, 40));
        expect(JSON.stringify(s.runtime.state)).toContain('joined');
      }),
      { numRuns: runs },
    );
    expect(s.lines.some((l) => l.msg === 'Dropping invalid portal message')).toBe(true);
  });
});
