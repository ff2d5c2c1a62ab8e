import { afterAll, describe, expect, it } from 'vitest';
import { type Actor, type AnyActorRef, createActor, type SnapshotFrom } from 'xstate';
import { eventOfFrame, type OpenPortalSocket, portalSocketLogic } from '../../src/actors/portal-session.js';
import type { PortalSocketHandlers } from '../../src/io/portal-socket.js';
import {
  BACKOFF_INITIAL_MS,
  BACKOFF_MAX_ELAPSED_MS,
  BACKOFF_MAX_INTERVAL_MS,
  BACKOFF_MULTIPLIER,
  BACKOFF_RANDOMIZATION,
  CONNECT_TIMEOUT_MS,
  GATEWAY_TOPIC,
  HEARTBEAT_INTERVAL_MS,
  JOIN_TIMEOUT_MS,
  MAX_UNANSWERED_HEARTBEATS,
  portalSessionMachine,
} from '../../src/machines/portal-session.machine.js';
import { encodeFrame } from '../../src/wire/phoenix/frame.js';
import type { PortalError, PortalMessage } from '../../src/wire/portal/types.js';
import {
  applyStep,
  definedTransitions,
  FakeInvokes,
  gateCoverage,
  type ModelEvent,
  settle,
  TestClock,
  TransitionRecorder,
  transitionPaths,
} from './harness.js';

/**
 * The portal session (`spec/portal-protocol.md` §1), every transition: connect, join, heartbeats
 * and dead connections, the outbound queue, channel errors, every transient failure with its
 * backoff, every fatal one, explicit reconnects and leaving.
 *
 * The socket is the production callback actor (`portalSocketLogic`) around a recording fake
 * `open`, so what the machine receives comes through the real wiring and frame decoder: socket
 * events are played through the fake's handlers, portal frames as encoded text. The graph's
 * `xstate.error.actor.socket` is played by making the fake socket's next write throw and asking
 * the socket actor to write (a write error: the one way the callback actor fails after it
 * started). Two runs the graph cannot express (its clock does not move) are played by hand and
 * recorded into the same walked set: 15 minutes of failures (the give-up transition) and an
 * `open` that throws before any socket exists.
 */

type Snap = SnapshotFrom<typeof portalSessionMachine>;
type SessionActor = Actor<typeof portalSessionMachine>;

const PORTAL_URL = 'wss://portal.test/gateway/websocket?token=secret&external_id=gw-1&name=gw&public_key=k';
const USER_AGENT = 'Linux/6.8 connlib/1.4.17';

/** Simulated time with every pending deadline visible (TestClock shows only the next). */
class ObservedClock extends TestClock {
  private readonly timers = new Map<number, number>();

  override setTimeout(fn: (...args: unknown[]) => void, ms: number): number {
    const at = this.now() + ms;
    const id: number = super.setTimeout((...args: unknown[]) => {
      this.timers.delete(id);
      fn(...args);
    }, ms);
    this.timers.set(id, at);
    return id;
  }

  override clearTimeout(id: number): void {
    this.timers.delete(id);
    super.clearTimeout(id);
  }

  deadlines(): number[] {
    return [...this.timers.values()].sort((a, b) => a - b);
  }
}

interface Frame {
  readonly topic: string;
  readonly event: string;
  readonly payload: unknown;
  readonly ref: number | string | null;
}

/** One connection attempt: the frames written to it, whether it was closed. */
class FakeConn {
  readonly frames: Frame[] = [];
  opened = false;
  closed = false;
  /** Writes before the upgrade completed (must stay 0). */
  early = 0;
  failWrites = false;
  constructor(
    readonly url: string,
    readonly userAgent: string,
    readonly h: PortalSocketHandlers,
  ) {}
  send(text: string): void {
    if (this.failWrites) throw new Error('write failed: broken pipe');
    if (!this.opened) this.early++;
    this.frames.push(JSON.parse(text) as Frame);
  }
}

interface Run {
  readonly clock: ObservedClock;
  readonly actor: SessionActor;
  readonly recorder: TransitionRecorder;
  readonly invokes: FakeInvokes;
  readonly conns: FakeConn[];
  /** Connections whose socket actor failed: xstate does not run a failed callback actor's cleanup. */
  readonly crashed: FakeConn[];
  readonly statuses: { status: string; detail?: string }[];
  readonly delivered: { message: PortalMessage; skipped: readonly string[] }[];
  readonly invalid: { event: string; error: PortalError }[];
  readonly replies: { event: string; outcome: string }[];
  /** Every jitter value the machine drew, in order. */
  readonly jitters: number[];
}

/** `openFailures`: how many times `open` throws (before any socket exists) before it works. */
function startRun(jitter: () => number, openFailures = 0): Run {
  const clock = new ObservedClock();
  const recorder = new TransitionRecorder();
  const conns: FakeConn[] = [];
  const statuses: Run['statuses'] = [];
  const delivered: Run['delivered'] = [];
  const invalid: Run['invalid'] = [];
  const replies: Run['replies'] = [];
  const jitters: number[] = [];
  let failuresLeft = openFailures;
  const open: OpenPortalSocket = (url, userAgent, handlers) => {
    if (failuresLeft > 0) {
      failuresLeft--;
      throw new TypeError('Invalid URL');
    }
    const c = new FakeConn(url, userAgent, handlers);
    conns.push(c);
    return {
      send: (text) => c.send(text),
      close: () => {
        c.closed = true;
      },
    };
  };
  const actor = createActor(
    portalSessionMachine.provide({
      actors: { portalSocket: portalSocketLogic(open) },
      actions: {
        deliver: (_, p) => delivered.push({ message: p.message, skipped: p.skipped }),
        reportInvalid: (_, p) => invalid.push({ event: p.event, error: p.error }),
        reportReply: (_, p) => replies.push({ event: p.event, outcome: p.outcome }),
        reportStatus: (_, p) => statuses.push(p.detail === undefined ? { status: p.status } : { ...p }),
      },
    }),
    {
      clock,
      input: {
        url: PORTAL_URL,
        userAgent: USER_AGENT,
        jitter: () => {
          const j = jitter();
          jitters.push(j);
          return j;
        },
        now: () => clock.now(),
      },
      inspect: recorder.inspect,
    },
  );
  recorder.root = actor;
  const invokes = new FakeInvokes();
  return {
    clock,
    actor,
    recorder,
    invokes,
    conns,
    crashed: [],
    statuses,
    delivered,
    invalid,
    replies,
    jitters,
  };
}

/** Deterministic jitter in [0, 1) (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// The model's events.

const SEND: ModelEvent = {
  type: 'portal.send',
  event: 'broadcast_ice_candidates',
  payload: { client_ids: ['c1'], candidates: ['candidate:1 1 UDP 2130706431 10.0.0.1 51820 typ host'] },
};
const LEAVE: ModelEvent = { type: 'portal.leave' };
const RECONNECT: ModelEvent = { type: 'portal.reconnect' };
const CLOSED: ModelEvent = { type: 'socket.closed', reason: 'connection reset by peer' };
const CRASH: ModelEvent = { type: 'xstate.error.actor.socket', error: 'write failed: broken pipe' };

const INIT_FRAME = encodeFrame({
  topic: GATEWAY_TOPIC,
  event: 'init',
  ref: null,
  payload: {
    interface: { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' },
    config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
    relays: [],
  },
});
const INVALID_FRAME = encodeFrame({
  topic: GATEWAY_TOPIC,
  event: 'init',
  ref: null,
  payload: { relays: 'x' },
});
/** A push the socket decodes, with the frame text the replay writes. */
const pushed = (text: string): ModelEvent => ({ ...eventOfFrame(text), frame: text });

/** Which outbound frame a reply answers; the replay re-resolves the ref on the real actor. */
type ReplyTo = 'join' | 'pending' | 'heartbeat';
function refFor(to: ReplyTo, s: Snap): number {
  const c = s.context;
  if (to === 'join') return c.joinRef ?? -1;
  if (to === 'pending') return Number(Object.keys(c.pending)[0] ?? -1);
  return c.nextRef - 1;
}
const reply = (
  s: Snap,
  to: ReplyTo,
  status: 'ok' | 'error',
  response: unknown,
  topic = GATEWAY_TOPIC,
): ModelEvent => ({ type: 'phoenix.reply', topic, ref: refFor(to, s), status, response, replyTo: to });
const errorReply = (s: Snap, to: ReplyTo, reason: string) => reply(s, to, 'error', { reason });

function events(s: Snap): ModelEvent[] {
  const hasPending = Object.keys(s.context.pending).length > 0;
  const online = [CLOSED, RECONNECT, CRASH, SEND, LEAVE];
  if (s.matches({ online: 'connecting' }))
    return [
      { type: 'socket.open' },
      { type: 'socket.rejected', status: 401, body: '{"error":"invalid_token"}' },
      { type: 'socket.rejected', status: 503, body: 'unavailable' },
      { type: 'xstate.after.connectTimeout.portalSession.online.connecting' },
      ...online,
    ];
  if (s.matches({ online: 'joining' }))
    return [
      reply(s, 'join', 'ok', {}),
      errorReply(s, 'join', 'disabled'),
      // A late heartbeat reply, and a late reply to a message sent before a re-join.
      reply(s, 'heartbeat', 'ok', {}, 'phoenix'),
      ...(hasPending ? [reply(s, 'pending', 'ok', {})] : []),
      { type: 'phoenix.close', topic: GATEWAY_TOPIC },
      { type: 'phoenix.disconnect', reason: 'token_expired' },
      { type: 'xstate.after.joinTimeout.portalSession.online.joining' },
      ...online,
    ];
  if (s.matches({ online: 'joined' }))
    return [
      { type: 'xstate.after.heartbeat.portalSession.online.joined.alive' },
      reply(s, 'heartbeat', 'ok', {}, 'phoenix'),
      errorReply(s, hasPending ? 'pending' : 'heartbeat', 'unmatched topic'),
      ...(hasPending ? [reply(s, 'pending', 'ok', {}), errorReply(s, 'pending', 'invalid_ref')] : []),
      { type: 'phoenix.error', topic: GATEWAY_TOPIC },
      { type: 'phoenix.close', topic: GATEWAY_TOPIC },
      { type: 'phoenix.disconnect', reason: 'token_expired' },
      // Ignored: another topic's close, a disconnect for another reason.
      { type: 'phoenix.close', topic: 'relay' },
      { type: 'phoenix.disconnect', reason: 'shutdown' },
      pushed(INIT_FRAME),
      pushed(INVALID_FRAME),
      ...online,
    ];
  if (s.matches('disconnected'))
    return [{ type: 'xstate.after.backoff.portalSession.disconnected' }, SEND, LEAVE];
  return [];
}

/** Heartbeats count exactly only while joined (they reset on the join); the rest in small buckets. */
const serializeState = (s: Snap) =>
  JSON.stringify([
    s.value,
    Math.min(s.context.outbox.length, 2),
    Math.min(Object.keys(s.context.pending).length, 1),
    s.matches({ online: 'joined' })
      ? s.context.unansweredHeartbeats
      : Math.min(s.context.unansweredHeartbeats, 1),
    Math.min(s.context.attempt, 2),
    s.context.fatal?.kind ?? null,
  ]);

const GRAPH_INPUT = { url: PORTAL_URL, userAgent: USER_AGENT, jitter: () => 0.5, now: () => 0 };

// ---------------------------------------------------------------------------------------------
// Replay.

const child = (s: Snap): AnyActorRef => {
  const ref = (s.children as Record<string, AnyActorRef | undefined>).socket;
  if (!ref) throw new Error('no socket actor is running');
  return ref;
};
const liveConns = (run: Run) => run.conns.filter((c) => !c.closed);
function liveConn(run: Run): FakeConn {
  const live = liveConns(run);
  if (live.length !== 1) throw new Error(`${live.length} live connections`);
  return live[0]!;
}

/** The frame text a portal event comes from. */
function textOf(ev: ModelEvent): string {
  switch (ev.type) {
    case 'phoenix.reply':
      return encodeFrame({
        topic: ev.topic as string,
        event: 'phx_reply',
        payload: { status: ev.status, response: ev.response },
        ref: ev.ref as number,
      });
    case 'phoenix.error':
      return encodeFrame({ topic: ev.topic as string, event: 'phx_error', payload: {}, ref: null });
    case 'phoenix.close':
      return encodeFrame({ topic: ev.topic as string, event: 'phx_close', payload: {}, ref: null });
    case 'phoenix.disconnect':
      return encodeFrame({
        topic: GATEWAY_TOPIC,
        event: 'disconnect',
        payload: { reason: ev.reason },
        ref: null,
      });
    default:
      return ev.frame as string;
  }
}

/** The machine's event without the model's bookkeeping. */
function machineEvent(ev: ModelEvent): ModelEvent {
  const { replyTo: _r, frame: _f, ...rest } = ev;
  return rest as ModelEvent;
}

/** Plays one graph step on the real actor; returns the event as played (refs re-resolved). */
async function replayStep(run: Run, step: ModelEvent): Promise<ModelEvent> {
  const s = run.actor.getSnapshot();
  let ev = step;
  if (ev.type === 'phoenix.reply' && ev.replyTo) ev = { ...ev, ref: refFor(ev.replyTo as ReplyTo, s) };
  switch (ev.type) {
    case 'socket.open': {
      const c = liveConn(run);
      c.opened = true;
      c.h.open();
      break;
    }
    case 'socket.rejected':
      liveConn(run).h.rejected(ev.status as number, ev.body as string);
      break;
    case 'socket.closed':
      liveConn(run).h.closed(ev.reason as string);
      break;
    case 'phoenix.reply':
    case 'phoenix.error':
    case 'phoenix.close':
    case 'phoenix.disconnect':
    case 'portal.message':
    case 'portal.invalid': {
      const text = textOf(ev);
      // What the socket actor hands the machine is exactly the graph's event.
      expect(eventOfFrame(text)).toEqual(machineEvent(ev));
      liveConn(run).h.text(text);
      break;
    }
    case 'xstate.error.actor.socket': {
      const c = liveConn(run);
      c.failWrites = true;
      run.crashed.push(c);
      child(s).send({ type: 'send', text: '{}' });
      break;
    }
    default:
      // Timers (`xstate.after.*`) and the control plane's portal.send / reconnect / leave.
      await applyStep({ event: ev }, { actor: run.actor, clock: run.clock, invokes: run.invokes });
      return ev;
  }
  await settle();
  return ev;
}

// ---------------------------------------------------------------------------------------------
// Oracles.

const TRANSITIONS = new Map(definedTransitions(portalSessionMachine).map((t) => [t.key, t]));
const GIVE_UP = 'portalSession.disconnected | (always) | #0';
const target = (key: string) => TRANSITIONS.get(key)?.target ?? '?';

/** Backoff interval before the `attempt`-th retry (attempt ≥ 2; the first retry is immediate). */
const backoffInterval = (attempt: number) =>
  Math.min(BACKOFF_INITIAL_MS * BACKOFF_MULTIPLIER ** (attempt - 2), BACKOFF_MAX_INTERVAL_MS);

const joinFrame = (ref: number): Frame => ({ topic: GATEWAY_TOPIC, event: 'phx_join', payload: null, ref });
const heartbeatFrame = (ref: number): Frame => ({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref });

/** Invariants of the state the actor is in now: live sockets, frames, pending timers, output. */
function checkState(run: Run): void {
  const s = run.actor.getSnapshot();
  const c = s.context;
  const now = run.clock.now();
  const deadlines = run.clock.deadlines();
  const live = liveConns(run);
  // One socket while online, none otherwise; frames only after the upgrade; never a phx_leave (§1.5).
  if (s.matches('online')) {
    expect(live.length).toBe(1);
    expect(live[0]).toBe(run.conns.at(-1));
    expect([live[0]!.url, live[0]!.userAgent]).toEqual([PORTAL_URL, USER_AGENT]);
  } else expect(live).toEqual([]);
  expect(run.conns.map((x) => x.early)).toEqual(run.conns.map(() => 0));
  expect(run.conns.flatMap((x) => x.frames).filter((f) => f.event === 'phx_leave')).toEqual([]);
  if (s.matches({ online: 'connecting' })) {
    expect(live[0]!.frames).toEqual([]);
    expect(deadlines).toEqual([now + CONNECT_TIMEOUT_MS]);
  } else if (s.matches({ online: 'joining' })) {
    // The join went out last: nothing else is written while it is outstanding (§1.5).
    expect(c.joinRef).toBeDefined();
    expect(live[0]!.frames.at(-1)).toEqual(joinFrame(c.joinRef!));
    expect(deadlines).toEqual([now + JOIN_TIMEOUT_MS]);
  } else if (s.matches({ online: 'joined' })) {
    expect(c.outbox).toEqual([]);
    expect(c.joinRef).toBeUndefined();
    expect(c.unansweredHeartbeats).toBeLessThanOrEqual(MAX_UNANSWERED_HEARTBEATS + 1);
    expect(deadlines).toEqual([now + HEARTBEAT_INTERVAL_MS]);
  } else if (s.matches('disconnected')) {
    // Resting only between two failures: a backoff within ±50 % of 0.5 s × 1.5ⁿ (≤ 60 s), ending
    // before the 15-minute give-up deadline of this run of failures.
    const interval = backoffInterval(c.attempt);
    expect(c.attempt).toBeGreaterThanOrEqual(2);
    expect(c.nextDelayMs).toBe(
      Math.round(interval * (1 - BACKOFF_RANDOMIZATION + 2 * BACKOFF_RANDOMIZATION * run.jitters.at(-1)!)),
    );
    expect(c.nextDelayMs).toBeGreaterThanOrEqual(Math.floor(interval * (1 - BACKOFF_RANDOMIZATION)));
    expect(c.nextDelayMs).toBeLessThanOrEqual(Math.ceil(interval * (1 + BACKOFF_RANDOMIZATION)));
    expect(c.failingSince).toBeDefined();
    expect(now + c.nextDelayMs).toBeLessThanOrEqual(c.failingSince! + BACKOFF_MAX_ELAPSED_MS);
    expect(deadlines).toEqual([now + c.nextDelayMs]);
    expect(run.statuses.at(-1)).toEqual({
      status: 'hiccup',
      detail: `${c.lastError}; retrying in ${c.nextDelayMs} ms`,
    });
  } else if (s.matches('failed')) {
    expect(s.status).toBe('done');
    expect(c.fatal).toBeDefined();
    expect(s.output).toEqual({ fatal: c.fatal });
    expect(deadlines).toEqual([]);
    expect(run.statuses.at(-1)).toEqual({ status: 'failed' });
  } else if (s.matches('stopped')) {
    expect(s.status).toBe('done');
    expect(s.output).toEqual({ fatal: undefined });
    expect(deadlines).toEqual([]);
    expect(run.statuses.at(-1)).toEqual({ status: 'leaving' });
  } else throw new Error(`unexpected state ${JSON.stringify(s.value)}`);
}

interface Before {
  readonly snap: Snap;
  readonly conns: number;
  readonly conn: FakeConn | undefined;
  readonly frames: number;
  readonly statuses: number;
  readonly delivered: number;
  readonly invalid: number;
  readonly replies: number;
  readonly log: number;
}
function observe(run: Run): Before {
  const conn = liveConns(run)[0];
  return {
    snap: run.actor.getSnapshot(),
    conns: run.conns.length,
    conn,
    frames: conn?.frames.length ?? 0,
    statuses: run.statuses.length,
    delivered: run.delivered.length,
    invalid: run.invalid.length,
    replies: run.replies.length,
    log: run.recorder.log.length,
  };
}

/** Why the session left an online state, as the hiccup log line says it. */
function expectedError(ev: ModelEvent): string {
  switch (ev.type) {
    case 'socket.rejected':
      return `HTTP ${String(ev.status)}`;
    case 'socket.closed':
      return `connection closed: ${String(ev.reason)}`;
    case 'phoenix.close':
      return 'channel closed by the portal';
    case 'portal.reconnect':
      return 'reconnect requested';
    case 'xstate.after.connectTimeout.portalSession.online.connecting':
      return 'no connection within the timeout';
    case 'xstate.after.joinTimeout.portalSession.online.joining':
      return 'no reply to the join within 5 s';
    case 'xstate.after.heartbeat.portalSession.online.joined.alive':
      return 'heartbeats unanswered';
    default:
      return ev.type;
  }
}

/** What one step must have done: sockets opened and closed, frames written, reports, output. */
function checkEffects(run: Run, b: Before, ev: ModelEvent): void {
  const s = run.actor.getSnapshot();
  const c = s.context;
  const bc = b.snap.context;
  const taken = run.recorder.log.slice(b.log);
  const targets = taken.map(target);
  const enteredOnline = targets.includes('portalSession.online');
  const crashed = ev.type === 'xstate.error.actor.socket';

  // Sockets: a new one exactly when `online` is entered; the old one closed when it is left.
  expect(run.conns.length - b.conns).toBe(enteredOnline ? 1 : 0);
  const leftOnline = b.snap.matches('online') && (!s.matches('online') || enteredOnline);
  if (b.conn) {
    // A failed socket actor closes its own connection (XState runs no cleanup for it).
    expect(b.conn.closed).toBe(leftOnline || crashed);
    if (b.conn !== liveConns(run)[0]) expect(b.conn.frames.length).toBe(b.frames);
  }

  // Reports: one per state entered or transition that reports.
  const statusOf = (key: string): string[] => {
    if (key.startsWith('portalSession.online.connecting | socket.open')) return ['connected'];
    const t = target(key);
    if (t === 'portalSession.disconnected') return ['hiccup'];
    if (t === 'portalSession.failed') return ['failed'];
    if (t === 'portalSession.leaving') return ['leaving'];
    if (t === 'portalSession.online.joined') return ['joined'];
    return [];
  };
  expect(run.statuses.slice(b.statuses).map((x) => x.status)).toEqual(taken.flatMap(statusOf));
  if (targets.includes('portalSession.disconnected')) expect(c.lastError).toBe(expectedError(ev));

  // Frames written this step on the connection that is live now.
  const conn = liveConns(run)[0];
  const written = conn ? conn.frames.slice(conn === b.conn ? b.frames : 0) : [];
  let expected: Frame[] = [];
  if (ev.type === 'socket.open' || (b.snap.matches({ online: 'joined' }) && s.matches({ online: 'joining' })))
    expected = [joinFrame(bc.nextRef)];
  else if (b.snap.matches({ online: 'joining' }) && s.matches({ online: 'joined' }))
    // Queued messages go out after the join, in order, with the refs they were queued with (§1.7).
    expected = bc.outbox.map((m) => JSON.parse(m.text) as Frame);
  else if (ev.type === 'portal.send' && s.matches({ online: 'joined' }))
    expected = [{ topic: GATEWAY_TOPIC, event: ev.event as string, payload: ev.payload, ref: bc.nextRef }];
  else if (ev.type.startsWith('xstate.after.heartbeat') && s.matches({ online: 'joined' }))
    expected = [heartbeatFrame(bc.nextRef)];
  expect(written).toEqual(expected);

  // The outbound queue.
  if (ev.type === 'portal.send' && !s.matches({ online: 'joined' }) && !s.matches('stopped')) {
    expect(c.outbox.length).toBe(bc.outbox.length + 1);
    expect(JSON.parse(c.outbox.at(-1)!.text)).toEqual({
      topic: GATEWAY_TOPIC,
      event: ev.event,
      payload: ev.payload,
      ref: bc.nextRef,
    });
  } else if (!s.matches({ online: 'joined' })) expect(c.outbox).toEqual(bc.outbox);
  if (
    s.matches({ online: 'joined' }) &&
    written.length > 0 &&
    ev.type !== 'xstate.after.heartbeat.portalSession.online.joined.alive'
  )
    for (const f of written) expect(c.pending[String(f.ref)]?.event).toBe(f.event);

  // Heartbeats: counted when sent, cleared by any heartbeat reply, dead after more than 3.
  if (ev.type.startsWith('xstate.after.heartbeat')) {
    if (s.matches({ online: 'joined' })) expect(c.unansweredHeartbeats).toBe(bc.unansweredHeartbeats + 1);
    else expect(bc.unansweredHeartbeats).toBeGreaterThan(MAX_UNANSWERED_HEARTBEATS);
  }
  if (ev.type === 'phoenix.reply' && ev.topic === 'phoenix') expect(c.unansweredHeartbeats).toBe(0);

  // To the control plane and the log.
  expect(run.delivered.slice(b.delivered)).toEqual(
    ev.type === 'portal.message' ? [{ message: ev.message, skipped: ev.skipped }] : [],
  );
  expect(run.invalid.slice(b.invalid)).toEqual(
    ev.type === 'portal.invalid' ? [{ event: ev.event, error: ev.error }] : [],
  );
  const replies = run.replies.slice(b.replies);
  if (
    ev.type === 'phoenix.reply' &&
    ev.replyTo === 'pending' &&
    ev.status === 'error' &&
    !s.matches({ online: 'joining' })
  )
    expect(replies).toEqual([
      { event: SEND.event, outcome: `error: ${(ev.response as { reason: string }).reason}` },
    ]);
  else if (ev.type.startsWith('xstate.after.heartbeat') && s.matches({ online: 'joined' })) {
    // Replies not seen within two heartbeat ticks are given up on, and only those.
    const given = Object.keys(bc.pending).filter((k) => !(k in c.pending));
    expect(replies).toEqual(given.map((k) => ({ event: bc.pending[k]!.event, outcome: 'no reply' })));
    for (const p of Object.values(c.pending)) expect(c.ticks - p.tick).toBeLessThanOrEqual(2);
  } else expect(replies).toEqual([]);

  // Fatal outcomes carry their cause.
  if (s.matches('failed')) {
    if (taken.includes(GIVE_UP))
      expect(c.fatal).toEqual({
        kind: 'max-retries',
        elapsedMs: run.clock.now() - c.failingSince!,
        lastError: expectedError(ev),
      });
    else if (ev.type === 'socket.rejected')
      expect(c.fatal).toEqual({ kind: 'rejected', status: ev.status, body: ev.body });
    else if (ev.type === 'phoenix.disconnect') expect(c.fatal).toEqual({ kind: 'token-expired' });
    else if (ev.type === 'phoenix.reply')
      expect(c.fatal).toEqual({ kind: 'login-failed', reason: (ev.response as { reason: string }).reason });
  }
}

/** After the root actor stops nothing may be left: no open socket, no timer. */
function checkStopped(run: Run): void {
  run.actor.stop();
  expect(liveConns(run)).toEqual([]);
  expect(run.clock.deadlines()).toEqual([]);
}

// ---------------------------------------------------------------------------------------------

const paths = transitionPaths(portalSessionMachine, { events, serializeState, input: GRAPH_INPUT });
const walked = new Set<string>();

describe('model: portal session', () => {
  it('has paths, and the pushes decode as the model says', () => {
    expect(paths.length).toBeGreaterThan(50);
    expect(pushed(INIT_FRAME).type).toBe('portal.message');
    expect(pushed(INVALID_FRAME).type).toBe('portal.invalid');
  });

  for (const [i, path] of paths.entries()) {
    it(path.description, async () => {
      const run = startRun(prng(i + 1));
      run.actor.start();
      await settle();
      checkState(run);
      for (const step of path.steps) {
        const b = observe(run);
        const ev = await replayStep(run, step.event as ModelEvent);
        const s = run.actor.getSnapshot();
        expect(s.value).toEqual(step.value);
        if (step.key !== undefined) expect(serializeState(s)).toBe(step.key);
        checkState(run);
        checkEffects(run, b, ev);
      }
      checkStopped(run);
      for (const k of run.recorder.walked) walked.add(k);
    });
  }

  // The graph's clock never moves, so it cannot reach the 15-minute limit: played here.
  for (const [name, jitter] of [
    ['no randomisation', () => 0.5],
    ['shortest delays', () => 0],
    ['longest delays', () => 0.999_999],
    ['random delays', prng(42)],
  ] as const) {
    it(`HTTP 503 for 15 minutes: backoff, then gives up before the limit is passed (${name})`, async () => {
      const run = startRun(jitter);
      run.actor.start();
      await settle();
      const delays: number[] = [];
      let failures = 0;
      while (run.actor.getSnapshot().status === 'active') {
        checkState(run);
        const b = observe(run);
        const s = run.actor.getSnapshot();
        if (s.matches({ online: 'connecting' })) {
          failures++;
          const ev = { type: 'socket.rejected', status: 503, body: 'unavailable' };
          liveConn(run).h.rejected(503, 'unavailable');
          await settle();
          checkEffects(run, b, ev);
        } else {
          expect(s.matches('disconnected')).toBe(true);
          delays.push(s.context.nextDelayMs);
          const ev = { type: 'xstate.after.backoff.portalSession.disconnected' };
          await applyStep({ event: ev }, { actor: run.actor, clock: run.clock, invokes: run.invokes });
          checkEffects(run, b, ev);
        }
      }
      checkState(run);
      const s = run.actor.getSnapshot();
      // The first failure retries at once, the second after 0.5 s ± 50 %, and so on.
      expect(delays[0]).toBe(Math.round(BACKOFF_INITIAL_MS * (0.5 + run.jitters[0]!)));
      expect(Math.max(...delays)).toBeLessThanOrEqual(BACKOFF_MAX_INTERVAL_MS * (1 + BACKOFF_RANDOMIZATION));
      expect(failures).toBe(delays.length + 2);
      const elapsed = run.clock.now() - s.context.failingSince!;
      expect(s.output).toEqual({ fatal: { kind: 'max-retries', elapsedMs: elapsed, lastError: 'HTTP 503' } });
      // Given up only because the next retry would end past 15 minutes.
      expect(elapsed).toBeLessThanOrEqual(BACKOFF_MAX_ELAPSED_MS);
      expect(elapsed + s.context.nextDelayMs).toBeGreaterThan(BACKOFF_MAX_ELAPSED_MS);
      expect(run.recorder.walked).toContain(GIVE_UP);
      checkStopped(run);
      for (const k of run.recorder.walked) walked.add(k);
    });
  }

  it('an `open` that throws (no socket at all) is a transient failure like any other', async () => {
    const run = startRun(() => 0.5, 2);
    run.actor.start();
    await settle();
    // Failed twice: once retried at once, then resting for the first backoff.
    expect(run.actor.getSnapshot().value).toBe('disconnected');
    expect(run.conns).toEqual([]);
    expect(run.actor.getSnapshot().context).toMatchObject({
      attempt: 2,
      lastError: 'xstate.error.actor.socket',
    });
    checkState(run);
    await applyStep(
      { event: { type: 'xstate.after.backoff.portalSession.disconnected' } },
      { actor: run.actor, clock: run.clock, invokes: run.invokes },
    );
    expect(run.actor.getSnapshot().value).toEqual({ online: 'connecting' });
    expect(run.clock.now()).toBe(BACKOFF_INITIAL_MS);
    checkState(run);
    checkStopped(run);
    for (const k of run.recorder.walked) walked.add(k);
  });

  afterAll(() => {
    gateCoverage('portal-session', portalSessionMachine, walked, paths.length);
  });
});
