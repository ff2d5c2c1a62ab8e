import { DrainQueue } from '../queue.js';
import {
  ATTR_ICE_CONTROLLED,
  ATTR_ICE_CONTROLLING,
  ATTR_PRIORITY,
  ATTR_USE_CANDIDATE,
  ATTR_USERNAME,
  ATTR_XOR_MAPPED_ADDRESS,
  CLASS_REQUEST,
  CLASS_SUCCESS,
  METHOD_BINDING,
  TRANSACTION_ID_BYTES,
} from '../stun/constants.js';
import {
  attribute,
  decodeU32,
  decodeXorAddress,
  StunBuilder,
  type StunMessage,
  shortTermKey,
  type TransportAddress,
  utf8,
  verifyIntegrity,
} from '../stun/message.js';
import {
  BASE_LOCAL_PREFERENCE,
  type Candidate,
  type CandidateKind,
  candidatePriority,
  comparePairPriority,
  formatCandidate,
  foundationOf,
  parseCandidate,
  sameAddress,
  TYPE_PREFERENCE,
} from './candidate.js';

/**
 * A sans-IO ICE agent for one connection (RFC 8445, as Firezone's str0m-based agent behaves,
 * `spec/snownet.md` §2): candidates, pairs, connectivity checks with str0m's pacing, and
 * nomination. The gateway runs it controlled (the client nominates with USE-CANDIDATE); the sim
 * client runs it controlling, with continuous re-nomination of the best succeeded pair.
 *
 * It never touches a socket or a clock: STUN comes in through `handleStun`, time through `now`,
 * and what to send, what happened and when to wake up come out of `pollTransmit`, `pollEvent`
 * and `pollTimeout`. Local candidates are either "direct" (sent from our UDP socket) or belong to
 * a relay allocation (sent as channel data through that relay): see {@link IceVia}.
 */

export interface IceCredentials {
  /** The ufrag. */
  readonly username: string;
  readonly password: string;
}

export interface IceTiming {
  readonly initialRtoMs: number;
  readonly maxRtoMs: number;
  readonly maxRetransmits: number;
}

/** Connecting and active connections: a dead pair is given up after 15.25 s (§2.7). */
export const ICE_DEFAULT_TIMING: IceTiming = { initialRtoMs: 250, maxRtoMs: 1_500, maxRetransmits: 12 };
/** Idle connections: checks every 25 s, given up after 100 s (§2.7). */
export const ICE_IDLE_TIMING: IceTiming = { initialRtoMs: 25_000, maxRtoMs: 25_000, maxRetransmits: 4 };

/** At most this many pairs per agent; the lowest-priority one makes room (str0m `form_pairs`). */
export const MAX_PAIRS = 100;
/** Optimistic server-reflexive candidates added per remote candidate (§2.6 step 2). */
const MAX_OPTIMISTIC_PER_CALL = 2;

/** How a local candidate sends: from our own socket, or as channel data through a relay. */
export type IceVia = { readonly kind: 'direct' } | { readonly kind: 'relay'; readonly relay: string };

export interface LocalCandidate extends Candidate {
  /** Where checks leave from: our host address, or our relayed address on the relay. */
  readonly base: TransportAddress;
  readonly via: IceVia;
}

export type IceState = 'checking' | 'connected' | 'disconnected';

export type IceEvent =
  | { readonly type: 'state'; readonly state: IceState }
  /** The pair to send on changed (the first nomination included). */
  | { readonly type: 'selected'; readonly local: LocalCandidate; readonly remote: TransportAddress };

export interface IceTransmit {
  readonly via: IceVia;
  readonly to: TransportAddress;
  readonly bytes: Uint8Array;
}

export interface IceAgentOptions {
  readonly controlling: boolean;
  readonly local: IceCredentials;
  readonly remote: IceCredentials;
  readonly random: (n: number) => Uint8Array;
  /**
   * The first bytes of every transaction id we send (the router puts the connection's index
   * there to find the agent of a response without a search). At most 4 bytes.
   */
  readonly transactionPrefix?: Uint8Array;
  readonly timing?: IceTiming;
}

interface RemoteCandidate extends Candidate {
  discarded: boolean;
}

type PairState = 'waiting' | 'succeeded' | 'failed';

interface Pair {
  readonly local: LocalCandidate;
  readonly remote: RemoteCandidate;
  state: PairState;
  /** Transaction ids of the unanswered attempts (newest last). */
  readonly pending: string[];
  unanswered: number;
  lastAttemptAt: number;
  nextAt: number;
  /** Controlled: the client sent USE-CANDIDATE on it; controlling: our USE-CANDIDATE check succeeded. */
  nominated: boolean;
  /** When it was last nominated (it wasn't before): a tie in priority goes to the newer pair. */
  nominatedAt: number;
  /** Controlling: our checks on this pair carry USE-CANDIDATE. */
  useCandidate: boolean;
}

/** Why a STUN message was not taken (counters for the router). */
export type IceDropReason =
  | 'ice.bad-username'
  | 'ice.bad-integrity'
  | 'ice.missing-attribute'
  | 'ice.unknown-transaction'
  | 'ice.no-local-candidate'
  | 'ice.discarded-source'
  | 'ice.asymmetric-response';

export class IceAgent {
  readonly controlling: boolean;
  readonly localCredentials: IceCredentials;
  readonly remoteCredentials: IceCredentials;
  /** Counters of the messages this agent refused. */
  readonly drops: Partial<Record<IceDropReason, number>> = {};

  private readonly random: (n: number) => Uint8Array;
  private readonly prefix: Uint8Array;
  private readonly tieBreaker: Uint8Array;
  private readonly localKey: Uint8Array;
  private readonly remoteKey: Uint8Array;
  private timing: IceTiming;
  private readonly locals: LocalCandidate[] = [];
  private readonly remotes: RemoteCandidate[] = [];
  private pairs: Pair[] = [];
  private readonly byTransaction = new Map<string, Pair>();
  private readonly added = new Map<string, number>();
  private selectedPair: Pair | undefined;
  private currentState: IceState = 'checking';
  private readonly transmits = new DrainQueue<IceTransmit>();
  private readonly events = new DrainQueue<IceEvent>();

  constructor(opts: IceAgentOptions) {
    this.controlling = opts.controlling;
    this.localCredentials = opts.local;
    this.remoteCredentials = opts.remote;
    this.random = opts.random;
    this.prefix = Uint8Array.from(opts.transactionPrefix ?? []).slice(0, 4);
    this.tieBreaker = opts.random(8);
    this.localKey = shortTermKey(opts.local.password);
    this.remoteKey = shortTermKey(opts.remote.password);
    this.timing = opts.timing ?? ICE_DEFAULT_TIMING;
  }

  get state(): IceState {
    return this.currentState;
  }

  /** The pair data goes out on, if one is nominated. */
  get selected(): { local: LocalCandidate; remote: TransportAddress } | undefined {
    const p = this.selectedPair;
    return p ? { local: p.local, remote: p.remote.addr } : undefined;
  }

  get localCandidates(): readonly LocalCandidate[] {
    return this.locals;
  }

  /** Remote candidates not invalidated (prflx ones learnt from checks included). */
  get remoteCandidateCount(): number {
    let n = 0;
    for (const r of this.remotes) if (!r.discarded) n++;
    return n;
  }

  /** Switches between the connecting/active and the idle check cadence (§2.9). */
  setTiming(timing: IceTiming, now: number): void {
    if (timing === this.timing) return;
    this.timing = timing;
    for (const p of this.pairs)
      if (p.state !== 'failed') p.nextAt = Math.min(p.nextAt, this.nextAttemptAt(p, now));
  }

  // --- Candidates --------------------------------------------------------------------------

  /**
   * Adds a local candidate and returns it with its priority and foundation (the string to
   * signal is `formatCandidate(c)`), or undefined if the agent has it already. Host and relayed
   * candidates are paired with the remote ones; server-reflexive ones are only announced (their
   * base is the host candidate). `relayedOverOtherFamily`: a relayed address of the other IP
   * family than the relay's server address (priority −1000, §2.4).
   */
  addLocalCandidate(
    c: { kind: CandidateKind; addr: TransportAddress; base: TransportAddress; via: IceVia },
    now: number,
    relayedOverOtherFamily = false,
  ): LocalCandidate | undefined {
    if (this.locals.some((l) => l.kind === c.kind && sameAddress(l.addr, c.addr) && sameVia(l.via, c.via))) {
      return undefined;
    }
    const family = c.addr.ip.length === 4 ? 'v4' : 'v6';
    const key = `${c.kind}/${family}`;
    const count = this.added.get(key) ?? 0;
    this.added.set(key, count + 1);
    const localPref = BASE_LOCAL_PREFERENCE[c.kind][family] - 2 * count - (relayedOverOtherFamily ? 1000 : 0);
    const local: LocalCandidate = {
      ...c,
      priority: candidatePriority(TYPE_PREFERENCE[c.kind], localPref),
      foundation: foundationOf(c.kind, c.base.ip),
      ufrag: this.localCredentials.username,
    };
    this.locals.push(local);
    if (c.kind === 'host' || c.kind === 'relay') {
      for (const r of this.remotes) if (!r.discarded) this.pair(local, r, now);
    }
    return local;
  }

  /** Removes local candidates (a relay went away); returns the removed ones, to be invalidated. */
  removeLocalCandidates(match: (c: LocalCandidate) => boolean): LocalCandidate[] {
    const gone = this.locals.filter(match);
    if (gone.length === 0) return gone;
    for (const g of gone) this.locals.splice(this.locals.indexOf(g), 1);
    this.dropPairs((p) => gone.includes(p.local));
    return gone;
  }

  /** Adds a remote candidate from its string; false when it is unusable or known. */
  addRemoteCandidate(text: string, now: number): boolean {
    const parsed = parseCandidate(text);
    if (!parsed.ok) return false;
    const c = parsed.value;
    if (c.ufrag !== undefined && c.ufrag !== this.remoteCredentials.username) return false;
    if (!this.addRemote(c, now)) return false;
    // Port-forwarding NATs: try each srflx address with every host port (§2.6 step 2).
    if (c.addr.ip.length === 4) this.addOptimistic(now);
    this.updateState();
    return true;
  }

  /** Invalidates a remote candidate: it and every pair using it are gone for good. */
  invalidateRemoteCandidate(text: string): boolean {
    const parsed = parseCandidate(text);
    if (!parsed.ok) return false;
    const r = this.remotes.find(
      (x) => !x.discarded && x.kind === parsed.value.kind && sameAddress(x.addr, parsed.value.addr),
    );
    if (!r) return false;
    r.discarded = true;
    this.dropPairs((p) => p.remote === r);
    return true;
  }

  private addRemote(c: Candidate, now: number): RemoteCandidate | undefined {
    // One candidate per address; an invalidated address stays invalid.
    if (this.remotes.some((r) => sameAddress(r.addr, c.addr))) return undefined;
    const r: RemoteCandidate = { ...c, discarded: false };
    this.remotes.push(r);
    for (const l of this.locals) if (l.kind === 'host' || l.kind === 'relay') this.pair(l, r, now);
    return r;
  }

  private addOptimistic(now: number): void {
    let added = 0;
    for (const s of this.remotes) {
      if (s.kind !== 'srflx' || s.discarded || s.addr.ip.length !== 4) continue;
      for (const h of this.remotes) {
        if (added >= MAX_OPTIMISTIC_PER_CALL) return;
        if (h.kind !== 'host' || h.discarded || h.addr.ip.length !== 4) continue;
        const addr = { ip: s.addr.ip, port: h.addr.port };
        if (this.remotes.some((r) => sameAddress(r.addr, addr))) continue;
        this.addRemote({ kind: 'srflx', addr, priority: s.priority, foundation: s.foundation }, now);
        added++;
      }
    }
  }

  // --- Pairs -------------------------------------------------------------------------------

  private pair(local: LocalCandidate, remote: RemoteCandidate, now: number): Pair | undefined {
    if (local.addr.ip.length !== remote.addr.ip.length) return undefined;
    const existing = this.pairs.find((p) => p.local === local && p.remote === remote);
    if (existing) return existing;
    const p: Pair = {
      local,
      remote,
      state: 'waiting',
      pending: [],
      unanswered: 0,
      lastAttemptAt: now,
      nextAt: now,
      nominated: false,
      nominatedAt: Number.NEGATIVE_INFINITY,
      useCandidate: false,
    };
    this.pairs.push(p);
    if (this.pairs.length > MAX_PAIRS) {
      let worst = this.pairs[0]!;
      for (const q of this.pairs) if (this.comparePairs(q, worst) < 0) worst = q;
      this.dropPairs((q) => q === worst);
      if (worst === p) return undefined;
    }
    return p;
  }

  private comparePairs(a: Pair, b: Pair): number {
    const [aG, aD] = this.controlling
      ? [a.local.priority, a.remote.priority]
      : [a.remote.priority, a.local.priority];
    const [bG, bD] = this.controlling
      ? [b.local.priority, b.remote.priority]
      : [b.remote.priority, b.local.priority];
    return comparePairPriority(aG, aD, bG, bD);
  }

  private dropPairs(match: (p: Pair) => boolean): void {
    const keep: Pair[] = [];
    for (const p of this.pairs) {
      if (match(p)) {
        for (const t of p.pending) this.byTransaction.delete(t);
      } else keep.push(p);
    }
    this.pairs = keep;
    this.evaluate();
  }

  // --- STUN in -----------------------------------------------------------------------------

  /**
   * A STUN message that arrived through `via` from `from`. Returns true when this agent took
   * it (a check for our ufrag, or the answer to one of our checks); a message for another
   * agent, or a forged one, returns false and is counted in `drops` where it was ours by name.
   */
  handleStun(msg: StunMessage, via: IceVia, from: TransportAddress, now: number): boolean {
    if (msg.method !== METHOD_BINDING) return false;
    if (msg.cls === CLASS_REQUEST) return this.handleRequest(msg, via, from, now);
    if (msg.cls === CLASS_SUCCESS) return this.handleResponse(msg, from, now);
    return false;
  }

  /** Whether a request's USERNAME names this agent (`<our ufrag>:<their ufrag>`). */
  isForUs(msg: StunMessage): boolean {
    const u = attribute(msg, ATTR_USERNAME);
    return (
      u !== undefined && utf8(u) === `${this.localCredentials.username}:${this.remoteCredentials.username}`
    );
  }

  private count(reason: IceDropReason): false {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
    return false;
  }

  private handleRequest(msg: StunMessage, via: IceVia, from: TransportAddress, now: number): boolean {
    if (!this.isForUs(msg)) return this.count('ice.bad-username');
    if (!verifyIntegrity(msg, this.localKey)) return this.count('ice.bad-integrity');
    const prio = attribute(msg, ATTR_PRIORITY);
    const priority = prio ? decodeU32(prio) : undefined;
    if (!priority?.ok) return this.count('ice.missing-attribute');
    const local = this.localFor(via, from);
    if (!local) return this.count('ice.no-local-candidate');
    let remote = this.remotes.find((r) => sameAddress(r.addr, from));
    // A source whose candidate was invalidated stays ignored (§2.7).
    if (remote?.discarded) return this.count('ice.discarded-source');
    if (!remote) {
      // An unknown source: a peer-reflexive candidate (RFC 8445 §7.3.1.3).
      remote = this.addRemote(
        {
          kind: 'prflx',
          addr: { ip: Uint8Array.from(from.ip), port: from.port },
          priority: priority.value,
          foundation: foundationOf('prflx', from.ip),
        },
        now,
      );
      if (!remote) return this.count('ice.discarded-source');
    }
    // Answer from the base the request reached, to its source (§2.7).
    const reply = new StunBuilder(METHOD_BINDING, CLASS_SUCCESS, msg.transactionId)
      .addXorAddress(ATTR_XOR_MAPPED_ADDRESS, from)
      .integrity(this.localKey)
      .fingerprint()
      .build();
    this.transmits.push({ via: local.via, to: remote.addr, bytes: reply });
    const p = this.pair(local, remote, now);
    if (p) {
      if (p.state === 'failed') {
        // Their check got through: the pair lives again (RFC 8445 §7.3.1.4).
        p.state = 'waiting';
        p.unanswered = 0;
        for (const t of p.pending) this.byTransaction.delete(t);
        p.pending.length = 0;
      }
      // Triggered check: answer their check with ours at once unless the pair works already.
      if (p.state !== 'succeeded') p.nextAt = Math.min(p.nextAt, now);
      if (!this.controlling && attribute(msg, ATTR_USE_CANDIDATE) !== undefined) this.nominate(p, now);
    }
    this.evaluate();
    return true;
  }

  private handleResponse(msg: StunMessage, from: TransportAddress, now: number): boolean {
    const key = txKey(msg.transactionId);
    const p = this.byTransaction.get(key);
    if (!p) return this.count('ice.unknown-transaction');
    if (!verifyIntegrity(msg, this.remoteKey)) return this.count('ice.bad-integrity');
    const mapped = attribute(msg, ATTR_XOR_MAPPED_ADDRESS);
    if (!mapped || !decodeXorAddress(mapped, msg.transactionId).ok)
      return this.count('ice.missing-attribute');
    if (!sameAddress(from, p.remote.addr)) return this.count('ice.asymmetric-response');
    for (const t of p.pending) this.byTransaction.delete(t);
    p.pending.length = 0;
    p.unanswered = 0;
    p.state = 'succeeded';
    p.nextAt = now + this.timing.maxRtoMs;
    if (this.controlling && p.useCandidate) this.nominate(p, now);
    if (this.controlling) this.renominate(now);
    this.evaluate();
    return true;
  }

  /** The local candidate a check arriving through `via` from `from` reached. */
  private localFor(via: IceVia, from: TransportAddress): LocalCandidate | undefined {
    const family = from.ip.length;
    return this.locals.find(
      (l) =>
        l.addr.ip.length === family &&
        (via.kind === 'direct'
          ? l.kind === 'host'
          : l.kind === 'relay' && l.via.kind === 'relay' && l.via.relay === via.relay),
    );
  }

  // --- Nomination, state -------------------------------------------------------------------

  /** Controlling: nominate the best succeeded pair whenever it changes (str0m's continuous nomination). */
  private renominate(now: number): void {
    let best: Pair | undefined;
    for (const p of this.pairs)
      if (p.state === 'succeeded' && (!best || this.comparePairs(p, best) > 0)) best = p;
    if (!best || best.useCandidate) return;
    for (const p of this.pairs) p.useCandidate = p === best;
    best.nextAt = now;
  }

  private nominate(p: Pair, now: number): void {
    if (p.nominated) return;
    p.nominated = true;
    p.nominatedAt = now;
  }

  /**
   * Picks the highest nominated pair to send on and reports changes. Between pairs of equal
   * priority the one nominated last wins: a client that moved (same kind of candidate, new
   * address) nominates its new pair, and the old one would otherwise hold on until it times out.
   */
  private evaluate(): void {
    let best: Pair | undefined;
    for (const p of this.pairs) {
      if (!p.nominated || p.state === 'failed') continue;
      const cmp = best ? this.comparePairs(p, best) : 1;
      if (cmp > 0 || (cmp === 0 && p.nominatedAt > best!.nominatedAt)) best = p;
    }
    if (best !== this.selectedPair) {
      this.selectedPair = best;
      if (best) this.events.push({ type: 'selected', local: best.local, remote: best.remote.addr });
    }
    this.updateState();
  }

  private updateState(): void {
    let next: IceState;
    if (this.selectedPair) next = 'connected';
    else if (this.pairs.some((p) => p.state !== 'failed') || this.remoteCandidateCount === 0)
      next = 'checking';
    else next = 'disconnected';
    if (next !== this.currentState) {
      this.currentState = next;
      this.events.push({ type: 'state', state: next });
    }
  }

  // --- Checks out, timers ------------------------------------------------------------------

  handleTimeout(now: number): void {
    let changed = false;
    for (const p of this.pairs) {
      if (p.state === 'failed' || p.nextAt > now) continue;
      if (p.unanswered >= this.timing.maxRetransmits) {
        if (now - p.lastAttemptAt >= this.timing.maxRtoMs) {
          p.state = 'failed';
          p.nominated = false;
          for (const t of p.pending) this.byTransaction.delete(t);
          p.pending.length = 0;
          changed = true;
        } else p.nextAt = p.lastAttemptAt + this.timing.maxRtoMs;
        continue;
      }
      this.sendCheck(p, now);
    }
    if (changed) {
      if (this.controlling) this.renominateAfterFailure(now);
      this.evaluate();
    }
  }

  private renominateAfterFailure(now: number): void {
    if (this.pairs.some((p) => p.useCandidate && p.state !== 'failed')) return;
    for (const p of this.pairs) p.useCandidate = false;
    this.renominate(now);
  }

  pollTimeout(): number {
    let at = Number.POSITIVE_INFINITY;
    for (const p of this.pairs) if (p.state !== 'failed' && p.nextAt < at) at = p.nextAt;
    return at;
  }

  pollTransmit(): IceTransmit | undefined {
    return this.transmits.poll();
  }

  pollEvent(): IceEvent | undefined {
    return this.events.poll();
  }

  private sendCheck(p: Pair, now: number): void {
    const id = this.transactionId();
    // The priority a peer-reflexive candidate learnt from this check would get (RFC 8445 §7.1.1).
    const localPref = (p.local.priority >>> 8) & 0xffff;
    const b = new StunBuilder(METHOD_BINDING, CLASS_REQUEST, id)
      .addText(ATTR_USERNAME, `${this.remoteCredentials.username}:${this.localCredentials.username}`)
      .addU32(ATTR_PRIORITY, candidatePriority(TYPE_PREFERENCE.prflx, localPref));
    if (this.controlling && p.useCandidate) b.add(ATTR_USE_CANDIDATE, new Uint8Array(0));
    b.add(this.controlling ? ATTR_ICE_CONTROLLING : ATTR_ICE_CONTROLLED, this.tieBreaker);
    const bytes = b.integrity(this.remoteKey).fingerprint().build();
    const key = txKey(id);
    p.pending.push(key);
    this.byTransaction.set(key, p);
    if (p.pending.length > this.timing.maxRetransmits) this.byTransaction.delete(p.pending.shift()!);
    p.unanswered++;
    p.lastAttemptAt = now;
    p.nextAt = this.nextAttemptAt(p, now);
    this.transmits.push({ via: p.local.via, to: p.remote.addr, bytes });
  }

  /** str0m's pacing: `initial_rto << (n−1)` after the n-th unanswered attempt, capped; steady cadence once answered. */
  private nextAttemptAt(p: Pair, now: number): number {
    const t = this.timing;
    if (p.unanswered === 0) return Math.max(now, p.lastAttemptAt + t.maxRtoMs);
    const delay = Math.min(t.initialRtoMs * 2 ** (p.unanswered - 1), t.maxRtoMs);
    return p.lastAttemptAt + delay;
  }

  private transactionId(): Uint8Array {
    const id = this.random(TRANSACTION_ID_BYTES);
    id.set(this.prefix, 0);
    return id;
  }

  /** The candidate strings of the local candidates, highest priority first (what to announce). */
  candidateStrings(): string[] {
    return [...this.locals].sort((a, b) => b.priority - a.priority).map(formatCandidate);
  }
}

function sameVia(a: IceVia, b: IceVia): boolean {
  return a.kind === b.kind && (a.kind === 'direct' || (b.kind === 'relay' && a.relay === b.relay));
}

function txKey(id: Uint8Array): string {
  let s = '';
  for (const b of id) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}
