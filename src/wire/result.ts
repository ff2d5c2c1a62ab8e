/**
 * The result of decoding something that came from outside the process.
 *
 * Decoders never throw on bad input: they return `{ ok: false, error }` where `error` carries a
 * literal `code` (`'ip.truncated'`, `'p2p.bad-json'`). The codes double as drop-counter names.
 */
export type Result<T, E> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: E };

/** A decode error: a stable literal `code` and a human-readable message for logs. */
export interface WireError<C extends string = string> {
  readonly code: C;
  readonly message: string;
}

export function ok<T>(value: T): { readonly ok: true; readonly value: T } {
  return { ok: true, value };
}

export function err<E>(error: E): { readonly ok: false; readonly error: E } {
  return { ok: false, error };
}
