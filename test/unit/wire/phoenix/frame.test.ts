import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeFrame,
  encodeFrame,
  HEARTBEAT_EVENT,
  JOIN_EVENT,
  PHOENIX_TOPIC,
  type PhoenixErrorCode,
} from '../../../../src/wire/phoenix/frame.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';

const RUNS = Math.min(PROPERTY_RUNS, 20_000);
const CONTROL_EVENTS = ['phx_reply', 'phx_error', 'phx_close', 'disconnect'];
const CODES: readonly PhoenixErrorCode[] = [
  'phoenix.not-json',
  'phoenix.not-object',
  'phoenix.bad-field',
  'phoenix.bad-reply',
];

describe('Phoenix V1 frames', () => {
  it('writes the join exactly as the reference gateway does (§1.5)', () => {
    expect(encodeFrame({ topic: 'gateway', event: JOIN_EVENT, payload: null, ref: 0 })).toBe(
      '{"topic":"gateway","event":"phx_join","payload":null,"ref":0}',
    );
    expect(encodeFrame({ topic: PHOENIX_TOPIC, event: HEARTBEAT_EVENT, payload: {}, ref: 1 })).toBe(
      '{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}',
    );
  });

  it('decodes a server push with a null ref', () => {
    const r = decodeFrame(
      '{"event":"reject_access","ref":null,"topic":"gateway","payload":{"client_id":"8e370367-64b2-4e27-83e2-27ce03bcce23"}}',
    );
    expect(r).toEqual({
      ok: true,
      value: {
        kind: 'push',
        topic: 'gateway',
        event: 'reject_access',
        payload: { client_id: '8e370367-64b2-4e27-83e2-27ce03bcce23' },
        ref: null,
      },
    });
  });

  it('reads a missing ref and payload as null, and ignores a V2 join_ref', () => {
    expect(decodeFrame('{"topic":"gateway","event":"init","join_ref":"3"}')).toEqual({
      ok: true,
      value: { kind: 'push', topic: 'gateway', event: 'init', payload: null, ref: null },
    });
  });

  it('decodes the OK reply to the join with its empty response', () => {
    expect(
      decodeFrame('{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":0,"topic":"gateway"}'),
    ).toEqual({
      ok: true,
      value: { kind: 'reply', topic: 'gateway', ref: 0, status: 'ok', response: {} },
    });
  });

  it('decodes error replies with their reason and keeps string refs', () => {
    const r = decodeFrame(
      '{"event":"phx_reply","payload":{"response":{"reason":"unmatched topic"},"status":"error"},"ref":"7","topic":"gateway"}',
    );
    expect(r).toEqual({
      ok: true,
      value: {
        kind: 'reply',
        topic: 'gateway',
        ref: '7',
        status: 'error',
        response: { reason: 'unmatched topic' },
      },
    });
  });

  it('reads a reply without response as a null response', () => {
    const r = decodeFrame('{"event":"phx_reply","payload":{"status":"ok"},"ref":3,"topic":"phoenix"}');
    expect(r.ok && r.value).toEqual({
      kind: 'reply',
      topic: 'phoenix',
      ref: 3,
      status: 'ok',
      response: null,
    });
  });

  it.each([
    ['no payload', '{"event":"phx_reply","ref":1,"topic":"gateway"}'],
    ['a null payload', '{"event":"phx_reply","payload":null,"ref":1,"topic":"gateway"}'],
    ['an unknown status', '{"event":"phx_reply","payload":{"status":"timeout"},"ref":1,"topic":"gateway"}'],
    ['a list payload', '{"event":"phx_reply","payload":["ok"],"ref":1,"topic":"gateway"}'],
  ])('refuses a reply with %s', (_name, text) => {
    const r = decodeFrame(text);
    expect(r.ok ? 'decoded' : r.error.code).toBe('phoenix.bad-reply');
  });

  it('decodes phx_error and phx_close by topic', () => {
    expect(decodeFrame('{"event":"phx_error","payload":{},"ref":null,"topic":"gateway"}')).toEqual({
      ok: true,
      value: { kind: 'error', topic: 'gateway' },
    });
    expect(decodeFrame('{"event":"phx_close","payload":{},"ref":null,"topic":"gateway"}')).toEqual({
      ok: true,
      value: { kind: 'close', topic: 'gateway' },
    });
  });

  it('decodes a disconnect with its reason, on any topic', () => {
    expect(
      decodeFrame('{"event":"disconnect","payload":{"reason":"token_expired"},"ref":null,"topic":"relay"}'),
    ).toEqual({
      ok: true,
      value: { kind: 'disconnect', topic: 'relay', reason: 'token_expired' },
    });
    for (const payload of ['{}', 'null', '5', '"token_expired"', '{"reason":1}']) {
      const r = decodeFrame(`{"event":"disconnect","payload":${payload},"ref":null,"topic":"gateway"}`);
      expect(r.ok ? 'decoded' : r.error.code).toBe('phoenix.bad-field');
    }
  });

  it.each([
    ['empty text', '', 'phoenix.not-json'],
    ['truncated JSON', '{"topic":"gateway"', 'phoenix.not-json'],
    ['a V2 array frame', '[null,null,"gateway","init",{}]', 'phoenix.not-object'],
    ['null', 'null', 'phoenix.not-object'],
    ['a number', '42', 'phoenix.not-object'],
    ['a missing topic', '{"event":"init","payload":{}}', 'phoenix.bad-field'],
    ['a numeric topic', '{"topic":1,"event":"init"}', 'phoenix.bad-field'],
    ['a missing event', '{"topic":"gateway","payload":{}}', 'phoenix.bad-field'],
    ['an object ref', '{"topic":"gateway","event":"init","ref":{}}', 'phoenix.bad-field'],
    ['a boolean ref', '{"topic":"gateway","event":"init","ref":true}', 'phoenix.bad-field'],
  ])('refuses %s with a typed error', (_name, text, code) => {
    const r = decodeFrame(text);
    expect(r.ok ? 'decoded' : r.error.code).toBe(code);
    if (!r.ok) expect(r.error.message.length).toBeGreaterThan(0);
  });

  it('round-trips any push frame', () => {
    const frame = fc.record({
      topic: fc.string(),
      event: fc.string().filter((e) => !CONTROL_EVENTS.includes(e)),
      payload: fc.jsonValue(),
      ref: fc.oneof(fc.integer({ min: 0 }), fc.string(), fc.constant(null)),
    });
    fc.assert(
      fc.property(frame, (f) => {
        const r = decodeFrame(encodeFrame(f));
        // JSON normalises the payload (-0 becomes 0); compare with what JSON itself gives back.
        const payload = JSON.parse(JSON.stringify(f.payload)) ?? null;
        expect(r).toEqual({
          ok: true,
          value: { kind: 'push', topic: f.topic, event: f.event, payload, ref: f.ref },
        });
      }),
      { numRuns: RUNS },
    );
  });

  it('never throws on any text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const r = decodeFrame(text);
        if (!r.ok) expect(CODES).toContain(r.error.code);
      }),
      { numRuns: RUNS },
    );
  });

  it('never throws on any JSON value or frame-like object', () => {
    const frameLike = fc.record(
      {
        topic: fc.oneof(fc.string(), fc.jsonValue()),
        event: fc.oneof(fc.constantFrom(...CONTROL_EVENTS, 'init'), fc.jsonValue()),
        payload: fc.oneof(
          fc.record({
            status: fc.oneof(fc.constantFrom('ok', 'error'), fc.jsonValue()),
            response: fc.jsonValue(),
          }),
          fc.record({ reason: fc.jsonValue() }),
          fc.jsonValue(),
        ),
        ref: fc.jsonValue(),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), frameLike), (v) => {
        const r = decodeFrame(JSON.stringify(v) ?? 'undefined');
        if (!r.ok) expect(CODES).toContain(r.error.code);
      }),
      { numRuns: RUNS },
    );
  });
});
