/**
 * Branded identifiers. A `ResourceId` is a string the type system will not confuse with a
 * `ClientId`; values only come from the parsers here, so every branded id is a valid,
 * lower-case, hyphenated UUID.
 */
declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type ClientId = Brand<string, 'ClientId'>;
export type ResourceId = Brand<string, 'ResourceId'>;
export type RelayId = Brand<string, 'RelayId'>;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Returns the canonical (lower-case) form of a hyphenated UUID, or `undefined`. */
export function parseUuid(text: unknown): string | undefined {
  if (typeof text !== 'string' || !UUID_RE.test(text)) return undefined;
  return text.toLowerCase();
}
