import { z } from 'zod';
import type { Brand } from '../ids.js';
import { parseUuid } from '../ids.js';
import { parseIp, parseIpv4, parseIpv6 } from '../ip/address.js';
import { parseKey } from '../keys.js';
import type { IceCredentials, PortalErrorCode } from './types.js';

/**
 * Building blocks of the portal message schemas (`spec/portal-protocol.md` §4.1).
 *
 * Zod gives the structure (objects that ignore unknown keys, lists, JSON paths in issues); every
 * leaf is a `field` whose issue message says what was expected and shows what came instead,
 * except for secrets, of which only the JSON type is named. Where one list entry may be dropped
 * rather than the whole message (an unknown filter protocol, relay type, a bad ICE candidate)
 * the entry decodes to a `Skip`, which the enclosing level turns into a `skipped` line.
 */

export type Path = readonly (string | number)[];

/** A list entry left out of a decoded message: where, and why (one human sentence). */
export interface SkippedEntry {
  readonly path: Path;
  readonly why: string;
}

/** A value with the entries skipped while decoding it, paths relative to the value. */
export interface WithSkips<T> {
  readonly value: T;
  readonly skipped: readonly SkippedEntry[];
}

/** What a list entry decodes to when it is left out (not a failure of the message). */
export class Skip {
  constructor(readonly why: string) {}
}

/** What a `field` parser returns for a bad value; `reason` is appended to the message. */
export class Invalid {
  constructor(readonly reason?: string) {}
}

/** Zod's context inside a transform. */
export type Ctx = z.core.$RefinementCtx<unknown>;

/** The issue `params` key carrying a `PortalErrorCode` other than `portal.invalid`. */
export const PORTAL_CODE = 'portalCode';

/** Records a problem at `path` (relative to the value being transformed); returns `z.NEVER`. */
export function problem(ctx: Ctx, message: string, path: Path = [], code?: PortalErrorCode): never {
  ctx.addIssue({
    code: 'custom',
    message,
    path: [...path],
    ...(code === undefined ? {} : { params: { [PORTAL_CODE]: code } }),
  });
  return z.NEVER;
}

/**
 * A leaf: `parse` gets the raw JSON value (`undefined` when the key is missing) and returns the
 * decoded value or an `Invalid`. `expected` completes "… is not <expected>" / "missing: expected
 * <expected>". A `secret` value is never shown. A field that may be absent needs `.optional()`
 * (Zod refuses an absent key whose schema is not optional, even if it returns `undefined`).
 */
export function field<T>(
  expected: string,
  parse: (v: unknown) => T | Invalid,
  opts: { secret?: boolean } = {},
) {
  return z.unknown().transform((v, ctx): T => {
    const r = parse(v);
    if (!(r instanceof Invalid)) return r;
    const why = r.reason === undefined ? '' : `: ${r.reason}`;
    return problem(
      ctx,
      v === undefined ? `missing: expected ${expected}` : `${show(v, opts.secret)} is not ${expected}${why}`,
    );
  });
}

/** An object whose unknown keys are ignored (§2: the reference ignores extra fields). */
export function object<S extends z.core.$ZodLooseShape>(expected: string, shape: S) {
  return z.object(shape, {
    error: (iss) =>
      iss.input === undefined ? `missing: expected ${expected}` : `${show(iss.input)} is not ${expected}`,
  });
}

/** A list of `item`s. */
export function list<T extends z.ZodType>(expected: string, item: T) {
  return z.array(item, {
    error: (iss) =>
      iss.input === undefined ? `missing: expected ${expected}` : `${show(iss.input)} is not ${expected}`,
  });
}

/** A list whose entries may decode to `Skip`: the kept values, and a skipped line per dropped entry. */
export function listWithSkips<T>(expected: string, item: z.ZodType<T | Skip>) {
  return list(expected, item).transform((entries): WithSkips<T[]> => {
    const value: T[] = [];
    const skipped: SkippedEntry[] = [];
    entries.forEach((e, i) => {
      if (e instanceof Skip) skipped.push({ path: [i], why: e.why });
      else value.push(e);
    });
    return { value, skipped };
  });
}

/**
 * A JSON object tagged by `key` (`type`, `protocol`): decoded by the schema registered for its
 * tag, or handed to `onUnknown` (which skips the entry or records a problem). Tags are looked up
 * in a `Map`, so `__proto__` or `constructor` are just unknown tags.
 */
export function tagged<T, U = Skip>(
  expected: string,
  key: string,
  variants: ReadonlyMap<string, z.ZodType<T>>,
  onUnknown: (tag: string, ctx: Ctx) => U,
) {
  const tags = [...variants.keys()].join(', ');
  return z.unknown().transform((v, ctx): T | U => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      return problem(
        ctx,
        v === undefined ? `missing: expected ${expected}` : `${show(v)} is not ${expected}`,
      );
    }
    const tag = (v as Record<string, unknown>)[key];
    if (typeof tag !== 'string') {
      return problem(
        ctx,
        tag === undefined ? `missing: expected one of ${tags}` : `${show(tag)} is not one of ${tags}`,
        [key],
      );
    }
    const schema = variants.get(tag);
    return schema === undefined ? onUnknown(tag, ctx) : reparse(schema, v, ctx);
  });
}

/** The skipped entries of a nested value, re-rooted under `at`. */
export function under(at: Path, skipped: readonly SkippedEntry[]): SkippedEntry[] {
  return skipped.map((s) => ({ path: [...at, ...s.path], why: s.why }));
}

/** Parses `v` with `schema` from inside a transform, re-recording its issues there. */
export function reparse<T>(schema: z.ZodType<T>, v: unknown, ctx: Ctx): T {
  const r = schema.safeParse(v);
  if (r.success) return r.data;
  for (const issue of r.error.issues) {
    // Messages are final by now; only the portal code in `params` needs carrying over.
    const params = issue.code === 'custom' ? issue.params : undefined;
    ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path, ...(params ? { params } : {}) });
  }
  return z.NEVER;
}

// ---------------------------------------------------------------------------------------------
// Leaves (§4.1).

/** Largest Unix time in seconds a JavaScript `Date` can hold (±8.64e15 ms, ECMA-262 §21.4.1.1). */
export const MAX_UNIX_SECONDS = 8_640_000_000_000;
/** RFC 1035 §2.3.4 limits, for the textual form without the trailing dot. */
const MAX_DOMAIN_CHARS = 253;
const MAX_LABEL_CHARS = 63;
const MAX_PORT = 65535;
const SHOWN_CHARS = 80;
/** A WireGuard key's text: never shown, even in a field where it does not belong. */
const KEYLIKE_RE = /^[A-Za-z0-9+/]{43}=$/;

/** A UUID, lower-cased and branded (`ClientId`, `ResourceId`, `RelayId`). */
export function uuid<B extends Brand<string, string>>(what: string) {
  return field(`a ${what} (a UUID)`, (v) => (parseUuid(v) as B | undefined) ?? new Invalid());
}

/** A WireGuard key: standard base64 of exactly 32 bytes; its value never appears in messages. */
export function key(what: string) {
  return field(
    `a ${what}: 44 base64 characters (32 bytes)`,
    (v) => {
      const r = parseKey(v);
      return r.ok ? r.value : new Invalid();
    },
    { secret: true },
  );
}

export const ipv4 = field('an IPv4 address', (v) => (typeof v === 'string' && parseIpv4(v)) || new Invalid());
export const ipv6 = field('an IPv6 address', (v) => (typeof v === 'string' && parseIpv6(v)) || new Invalid());
export const ip = field('an IP address', (v) => (typeof v === 'string' && parseIp(v)) || new Invalid());

/** A string of any content (opaque refs, ICE and TURN credentials). Only strings are accepted. */
export function text(what: string, opts: { secret?: boolean } = {}) {
  return field(what, (v) => (typeof v === 'string' ? v : new Invalid()), opts);
}

/** `{"username", "password"}` (`IceCredentials`); the password is a secret. */
export function iceCredentials(what: string) {
  return object(`${what}: an object with username and password`, {
    username: text('an ICE username (a string)'),
    password: text('an ICE password (a string)', { secret: true }),
  }).transform((c): IceCredentials => ({ username: c.username, password: c.password }));
}

/** Integer Unix seconds → wall-clock ms (§4.1: floats and strings are rejected). */
export function parseUnixSeconds(v: unknown): number | Invalid {
  if (typeof v !== 'number' || !Number.isInteger(v)) return new Invalid();
  if (v < 0 || v > MAX_UNIX_SECONDS) return new Invalid(`outside 0 to ${MAX_UNIX_SECONDS}`);
  return v * 1000;
}
const SECONDS = 'integer Unix seconds';
export const unixSeconds = field(SECONDS, parseUnixSeconds);
/** An optional expiry: null or absent means never (`undefined`). */
export const optionalUnixSeconds = field(`${SECONDS} or null`, (v) =>
  v === null ? undefined : parseUnixSeconds(v),
).optional();

/** `"ip:port"` or `"[v6]:port"` (§4.1). */
export function parseSocketAddr(v: unknown): { readonly ip: Uint8Array; readonly port: number } | Invalid {
  if (typeof v !== 'string') return new Invalid();
  const colon = v.lastIndexOf(':');
  if (colon === -1) return new Invalid('no port');
  const host = v.slice(0, colon);
  const port = parsePort(v.slice(colon + 1));
  if (port === undefined) return new Invalid(`port: expected 0 to ${MAX_PORT}`);
  const bracketed = host.startsWith('[') && host.endsWith(']');
  const addr = bracketed ? parseIpv6(host.slice(1, -1)) : parseIpv4(host);
  if (!addr) return new Invalid(bracketed ? 'bad IPv6 address' : 'expected an IPv4 address or [IPv6]');
  return { ip: addr, port };
}
export const socketAddr = field('a socket address ("ip:port" or "[ipv6]:port")', parseSocketAddr);

/** A decimal port 0–65535 without sign or leading zeros, or `undefined`. */
export function parsePort(s: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_PORT ? n : undefined;
}

/**
 * A DNS name as plain text (`dns_types::DomainName`): one trailing dot is dropped; labels of 1 to
 * 63 printable ASCII characters without spaces, at most 253 characters in all.
 */
export function parseDomain(v: unknown): string | Invalid {
  if (typeof v !== 'string') return new Invalid();
  const d = v.endsWith('.') ? v.slice(0, -1) : v;
  if (d.length === 0) return new Invalid('it is empty');
  if (d.length > MAX_DOMAIN_CHARS) return new Invalid(`longer than ${MAX_DOMAIN_CHARS} characters`);
  for (const label of d.split('.')) {
    if (label.length === 0) return new Invalid('it has an empty label');
    if (label.length > MAX_LABEL_CHARS)
      return new Invalid(`a label is longer than ${MAX_LABEL_CHARS} characters`);
    if (!/^[\x21-\x7e]+$/.test(label)) return new Invalid('only printable ASCII without spaces is allowed');
  }
  return d;
}
export const domain = field('a domain name', parseDomain);

/**
 * A value for a message: strings quoted (cut to 80 characters, escaped when not plain ASCII),
 * numbers and booleans as they are, other JSON by type. A `secret`, or a string that looks like
 * a key (a PSK sent in the wrong field), is only named by its type.
 */
export function show(v: unknown, secret = false): string {
  if (typeof v === 'string') {
    if (secret || KEYLIKE_RE.test(v)) return 'a string (not shown)';
    const cut = v.length > SHOWN_CHARS ? `${v.slice(0, SHOWN_CHARS)}…` : v;
    return /^[\x20-\x7e]*$/.test(cut) && !cut.includes("'") ? `'${cut}'` : JSON.stringify(cut);
  }
  if (typeof v === 'number' || typeof v === 'boolean') return secret ? `a ${typeof v}` : String(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : typeof v;
}
