import type { Result, WireError } from '../result.js';

/**
 * Phoenix channel frames as the reference gateway speaks them (`spec/portal-protocol.md` §1.4):
 * V1 JSON objects `{"topic","event","payload","ref"}` in WebSocket text frames (no `vsn`
 * parameter), integer refs from one counter, server pushes with `"ref": null`.
 */
export interface PhoenixFrame {
  readonly topic: string;
  readonly event: string;
  readonly payload: unknown;
  /** Our refs are integers; replies echo them; server pushes carry null. */
  readonly ref: number | string | null;
}

/** The control frames of a channel, decoded; everything else is an application message. */
export type PhoenixMessage =
  | {
      readonly kind: 'reply';
      readonly topic: string;
      readonly ref: number | string | null;
      readonly status: 'ok' | 'error';
      readonly response: unknown;
    }
  | { readonly kind: 'error'; readonly topic: string }
  | { readonly kind: 'close'; readonly topic: string }
  | { readonly kind: 'disconnect'; readonly topic: string; readonly reason: string }
  | {
      readonly kind: 'push';
      readonly topic: string;
      readonly event: string;
      readonly payload: unknown;
      readonly ref: number | string | null;
    };

export type PhoenixErrorCode =
  | 'phoenix.not-json'
  | 'phoenix.not-object'
  | 'phoenix.bad-field'
  | 'phoenix.bad-reply';
export type PhoenixError = WireError<PhoenixErrorCode>;

export const PHOENIX_TOPIC = 'phoenix';
export const HEARTBEAT_EVENT = 'heartbeat';
export const JOIN_EVENT = 'phx_join';
export const LEAVE_EVENT = 'phx_leave';

export function encodeFrame(frame: PhoenixFrame): string {
  // Key order as the reference serialises: topic, event, payload, ref.
  return JSON.stringify({ topic: frame.topic, event: frame.event, payload: frame.payload, ref: frame.ref });
}

function fail(code: PhoenixErrorCode, message: string): { ok: false; error: PhoenixError } {
  return { ok: false, error: { code, message } };
}

/** Decodes one text frame. Unknown extra keys (a V2 `join_ref`) are ignored. */
export function decodeFrame(text: string): Result<PhoenixMessage, PhoenixError> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return fail('phoenix.not-json', `frame is not JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return fail('phoenix.not-object', 'frame is not a JSON object');
  const o = v as Record<string, unknown>;
  if (typeof o.topic !== 'string') return fail('phoenix.bad-field', 'frame has no string "topic"');
  if (typeof o.event !== 'string') return fail('phoenix.bad-field', 'frame has no string "event"');
  const ref = o.ref ?? null;
  if (ref !== null && typeof ref !== 'number' && typeof ref !== 'string')
    return fail('phoenix.bad-field', '"ref" is neither a number, a string nor null');
  const topic = o.topic;
  switch (o.event) {
    case 'phx_reply': {
      const p = o.payload as Record<string, unknown> | null | undefined;
      if (typeof p !== 'object' || p === null || (p.status !== 'ok' && p.status !== 'error')) {
        return fail('phoenix.bad-reply', 'phx_reply payload needs "status" "ok" or "error"');
      }
      return {
        ok: true,
        value: { kind: 'reply', topic, ref, status: p.status, response: p.response ?? null },
      };
    }
    case 'phx_error':
      return { ok: true, value: { kind: 'error', topic } };
    case 'phx_close':
      return { ok: true, value: { kind: 'close', topic } };
    case 'disconnect': {
      const reason = (o.payload as { reason?: unknown } | null)?.reason;
      if (typeof reason !== 'string')
        return fail('phoenix.bad-field', 'disconnect payload has no string "reason"');
      return { ok: true, value: { kind: 'disconnect', topic, reason } };
    }
    default:
      return { ok: true, value: { kind: 'push', topic, event: o.event, payload: o.payload ?? null, ref } };
  }
}
