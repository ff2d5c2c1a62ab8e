import { z } from 'zod';
import type { RelayId } from '../ids.js';
import { bytesEqual } from '../ip/address.js';
import {
  list,
  object,
  Skip,
  type SkippedEntry,
  show,
  socketAddr,
  tagged,
  text,
  unixSeconds,
  uuid,
  type WithSkips,
} from './schemas.js';
import type { Relay } from './types.js';

/**
 * Relay lists of `init.relays` and `relays_presence.connected` (`spec/portal-protocol.md` §4.4).
 *
 * - `turn` entries need every field; the portal sends one entry per address family of a relay,
 *   with the same id and credentials, and those are merged into one `Relay` with at most one
 *   IPv4 and one IPv6 address. The reference merges only consecutive entries; we group by id
 *   wherever the entries are (a safe superset), in order of first appearance.
 * - `stun` entries are dropped without a word: the reference accepts and ignores them.
 * - An unknown `type` skips that entry (a `skipped` line) where the reference drops the message.
 */

export const relayId = uuid<RelayId>('relay id');

interface TurnEntry {
  readonly id: RelayId;
  readonly addr: { readonly ip: Uint8Array; readonly port: number };
  readonly username: string;
  readonly password: string;
  readonly expiresAtMs: number;
}

const turnEntry = object('a turn relay', {
  id: relayId,
  addr: socketAddr,
  // TURN REST credentials (`<expiry>:<salt>` and a derived password): opaque, never shown.
  username: text('a TURN username (a string)', { secret: true }),
  password: text('a TURN password (a string)', { secret: true }),
  expires_at: unixSeconds,
}).transform(
  (r): TurnEntry => ({
    id: r.id,
    addr: r.addr,
    username: r.username,
    password: r.password,
    expiresAtMs: r.expires_at,
  }),
);

/** Marks an entry dropped without a `skipped` line. */
const DROPPED = null;

const relayEntry = tagged(
  'a relay object',
  'type',
  new Map<string, z.ZodType<TurnEntry | typeof DROPPED>>([
    ['turn', turnEntry],
    ['stun', z.unknown().transform(() => DROPPED)],
  ]),
  (type) => new Skip(`unknown relay type ${show(type)} (expected turn or stun); relay ignored`),
);

interface Merging {
  readonly first: TurnEntry;
  v4: TurnEntry['addr'] | undefined;
  v6: TurnEntry['addr'] | undefined;
}

/** A relay list: the TURN relays merged by id, plus the entries skipped. */
export const relayList = list('a list of relays', relayEntry).transform((entries): WithSkips<Relay[]> => {
  const byId = new Map<RelayId, Merging>();
  const skipped: SkippedEntry[] = [];
  entries.forEach((e, i) => {
    if (e === DROPPED) return;
    if (e instanceof Skip) {
      skipped.push({ path: [i], why: e.why });
      return;
    }
    const m = byId.get(e.id);
    if (m === undefined) {
      byId.set(e.id, {
        first: e,
        v4: e.addr.ip.length === 4 ? e.addr : undefined,
        v6: e.addr.ip.length === 16 ? e.addr : undefined,
      });
      return;
    }
    const f = m.first;
    if (e.username !== f.username || e.password !== f.password || e.expiresAtMs !== f.expiresAtMs) {
      skipped.push({ path: [i], why: `relay ${e.id} listed again with other credentials; entry ignored` });
      return;
    }
    const family = e.addr.ip.length === 4 ? 'v4' : 'v6';
    const have = m[family];
    if (have === undefined) m[family] = e.addr;
    else if (have.port !== e.addr.port || !bytesEqual(have.ip, 0, e.addr.ip, 0, have.ip.length)) {
      const name = family === 'v4' ? 'IPv4' : 'IPv6';
      skipped.push({ path: [i], why: `a second ${name} address for relay ${e.id}; entry ignored` });
    }
  });
  const relays = [...byId.values()].map(
    (m): Relay => ({
      id: m.first.id,
      // IPv4 first, as the portal lists them.
      addresses: [m.v4, m.v6].filter((a) => a !== undefined),
      username: m.first.username,
      password: m.first.password,
      expiresAtMs: m.first.expiresAtMs,
    }),
  );
  return { value: relays, skipped };
});
