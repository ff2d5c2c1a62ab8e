import { assign, enqueueActions, fromCallback, setup } from 'xstate';
import type { PortalError, PortalMessage } from '../wire/portal/types.js';

/**
 * The gateway's session with the portal (`spec/portal-protocol.md` §1): one WebSocket, the
 * Phoenix channel `gateway` on it, heartbeats, and reconnection with backoff.
 *
 *   disconnected ──(backoff)──▶ online[connecting ─open─▶ joining ─join ok─▶ joined]
 *        ▲                         │ closed / timeout / phx_close / dead heartbeats
 *        └─────────────────────────┘
 *   fatal (exit 1): any 4xx on the upgrade, an error reply to the join, `token_expired`,
 *   or 15 minutes of failures. portal.leave → leaving → stopped.
 *
 * I/O (the WebSocket) is the invoked `portalSocket` actor, provided by src/actors; it decodes
 * frames into events. Time comes from the injected clock (`now`, the one the whole actor system
 * runs on) and randomness from `jitter`, so the machine replays deterministically in tests.
 * Outbound messages queue while not joined (at most 32: the reference discards the whole queue
 * when it overflows) and go out after the join.
 */

export const HEARTBEAT_INTERVAL_MS = 30_000;
/** A join without a reply within 5 s is retried with a new connection (§1.5). */
export const JOIN_TIMEOUT_MS = 5_000;
/** TCP + TLS + WebSocket upgrade (the later reference's 15 s; the seed had 5 s for TCP alone). */
export const CONNECT_TIMEOUT_MS = 15_000;
/** More than this many unanswered heartbeats means the connection is dead (§9, 1.5.1). */
export const MAX_UNANSWERED_HEARTBEATS = 3;
/** Backoff of the `backoff` crate defaults the reference uses (§1.8). */
export const BACKOFF_INITIAL_MS = 500;
export const BACKOFF_MULTIPLIER = 1.5;
export const BACKOFF_RANDOMIZATION = 0.5;
export const BACKOFF_MAX_INTERVAL_MS = 60_000;
export const BACKOFF_MAX_ELAPSED_MS = 15 * 60_000;
/** The outbound queue is discarded when it holds more than this (§1.7). */
export const MAX_BUFFERED_MESSAGES = 32;
/** Replies not seen within this many heartbeat ticks are given up on (logged). */
const REPLY_TIMEOUT_TICKS = 2;

export const GATEWAY_TOPIC = 'gateway';

export interface PortalSessionInput {
  /** The login URL (§1.1) and User-Agent (§1.2). */
  readonly url: string;
  readonly userAgent: string;
  /** A number in [0, 1): the backoff's randomisation. */
  readonly jitter: () => number;
  /** Monotonic ms from the actor system's clock. */
  readonly now: () => number;
}

export type FatalReason =
  | { readonly kind: 'rejected'; readonly status: number; readonly body: string }
  | { readonly kind: 'login-failed'; readonly reason: string }
  | { readonly kind: 'token-expired' }
  | { readonly kind: 'max-retries'; readonly elapsedMs: number; readonly lastError: string };

export interface PortalSessionContext {
  readonly url: string;
  readonly userAgent: string;
  readonly jitter: () => number;
  readonly now: () => number;
  /** One counter for every outbound frame, never reset (§1.4). */
  nextRef: number;
  joinRef: number | undefined;
  /** Application messages waiting for the join, serialised (ref assigned when queued). */
  outbox: { ref: number; event: string; text: string }[];
  /** Sent application messages awaiting a reply: ref → event and the tick it was sent at. */
  pending: Record<string, { event: string; tick: number }>;
  ticks: number;
  unansweredHeartbeats: number;
  /** When the current run of failures began (ms), undefined while healthy. */
  failingSince: number | undefined;
  attempt: number;
  nextDelayMs: number;
  /** Set when the next retry would end past the 15-minute window: the session gives up. */
  giveUp: boolean;
  lastError: string;
  fatal: FatalReason | undefined;
  /** Successful joins so far (the first init differs from a re-init in logs). */
  joins: number;
}

export type PortalSessionEvent =
  | { type: 'socket.open' }
  | { type: 'socket.rejected'; status: number; body: string }
  | { type: 'socket.closed'; reason: string }
  | {
      type: 'phoenix.reply';
      topic: string;
      ref: number | string | null;
      status: 'ok' | 'error';
      response: unknown;
    }
  | { type: 'phoenix.error'; topic: string }
  | { type: 'phoenix.close'; topic: string }
  | { type: 'phoenix.disconnect'; reason: string }
  | { type: 'portal.message'; message: PortalMessage; skipped: readonly string[] }
  | { type: 'portal.invalid'; event: string; error: PortalError }
  /** The control plane sends an application message (queued until joined). */
  | { type: 'portal.send'; event: string; payload: unknown }
  /** The control plane wants a fresh connection (no relays known, §2.2). */
  | { type: 'portal.reconnect' }
  | { type: 'portal.leave' };

/** Commands the session sends its socket actor. */
export type PortalSocketCommand = { type: 'send'; text: string } | { type: 'close' };

function frame(topic: string, event: string, payload: unknown, ref: number): string {
  return JSON.stringify({ topic, event, payload, ref });
}

/** Why an online state ended, for logs and the fatal reason. */
function describe(e: { type: string; status?: unknown; reason?: unknown }): string {
  // `status` is numeric on socket.rejected and a string on phoenix.reply; only the former is read.
  switch (e.type) {
    case 'socket.rejected':
      return `HTTP ${String(e.status)}`;
    case 'socket.closed':
      return `connection closed: ${String(e.reason)}`;
    case 'phoenix.close':
      return 'channel closed by the portal';
    case 'portal.reconnect':
      return 'reconnect requested';
    case 'xstate.after.connectTimeout.portalSession.online.connecting':
      return 'no connection within the timeout';
    case 'xstate.after.joinTimeout.portalSession.online.joining':
      return 'no reply to the join within 5 s';
    default:
      return e.type.startsWith('xstate.after.heartbeat') ? 'heartbeats unanswered' : e.type;
  }
}

export const portalSessionMachine = setup({
  types: {
    context: {} as PortalSessionContext,
    events: {} as PortalSessionEvent,
    input: {} as PortalSessionInput,
    output: {} as { fatal: FatalReason | undefined },
  },
  actors: {
    /** The WebSocket: opened on start, frames in as events, `send`/`close` commands, closed on stop. */
    portalSocket: fromCallback<PortalSocketCommand, { url: string; userAgent: string }>(() => {
      throw new Error("portal-session actor 'portalSocket' was not provided");
    }),
  },
  actions: {
    /** Hands a decoded portal message to the control plane (provided by src/actors). */
    deliver: (_, _params: { message: PortalMessage; skipped: readonly string[] }) => {
      throw new Error("portal-session action 'deliver' was not provided");
    },
    /** Reports a message the gateway cannot use (logged, rate-limited by the actor layer). */
    reportInvalid: (_, _params: { event: string; error: PortalError }) => {
      throw new Error("portal-session action 'reportInvalid' was not provided");
    },
    /** Reports a reply error or a reply that never came (logged). */
    reportReply: (_, _params: { event: string; outcome: string }) => {
      throw new Error("portal-session action 'reportReply' was not provided");
    },
    /** Reports a state change worth a log line (connected, joined, hiccup with its backoff). */
    reportStatus: (_, _params: { status: string; detail?: string }) => {
      throw new Error("portal-session action 'reportStatus' was not provided");
    },
    sendJoin: enqueueActions(({ context, enqueue }) => {
      const ref = context.nextRef;
      // The join goes first; queued messages wait for its reply (§1.5).
      enqueue.sendTo('socket', { type: 'send', text: frame(GATEWAY_TOPIC, 'phx_join', null, ref) });
      enqueue.assign({ nextRef: ref + 1, joinRef: ref });
    }),
    flushOutbox: enqueueActions(({ context, enqueue }) => {
      if (context.outbox.length === 0) return;
      const pending = { ...context.pending };
      for (const m of context.outbox) {
        enqueue.sendTo('socket', { type: 'send', text: m.text });
        pending[String(m.ref)] = { event: m.event, tick: context.ticks };
      }
      enqueue.assign({ outbox: [], pending });
    }),
    queueMessage: assign(({ context, event }) => {
      if (event.type !== 'portal.send') return {};
      const ref = context.nextRef;
      const m = { ref, event: event.event, text: frame(GATEWAY_TOPIC, event.event, event.payload, ref) };
      // The reference discards the whole queue when it overflows (§1.7).
      const outbox = context.outbox.length > MAX_BUFFERED_MESSAGES ? [m] : [...context.outbox, m];
      return { nextRef: ref + 1, outbox };
    }),
    sendHeartbeat: enqueueActions(({ context, enqueue }) => {
      const ref = context.nextRef;
      enqueue.sendTo('socket', { type: 'send', text: frame('phoenix', 'heartbeat', {}, ref) });
      enqueue.assign({
        nextRef: ref + 1,
        unansweredHeartbeats: context.unansweredHeartbeats + 1,
        ticks: context.ticks + 1,
      });
    }),
    expireReplies: enqueueActions(({ context, enqueue }) => {
      const pending: PortalSessionContext['pending'] = {};
      for (const [ref, p] of Object.entries(context.pending)) {
        if (context.ticks - p.tick > REPLY_TIMEOUT_TICKS)
          enqueue({ type: 'reportReply', params: { event: p.event, outcome: 'no reply' } } as never);
        else pending[ref] = p;
      }
      enqueue.assign({ pending });
    }),
    settleReply: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'phoenix.reply') return;
      if (event.topic === 'phoenix') {
        enqueue.assign({ unansweredHeartbeats: 0 });
        return;
      }
      const key = String(event.ref);
      const p = context.pending[key];
      if (!p) return;
      if (event.status === 'error') {
        const reason = (event.response as { reason?: unknown } | null)?.reason;
        enqueue({
          type: 'reportReply',
          params: { event: p.event, outcome: `error: ${String(reason ?? 'unknown')}` },
        } as never);
      }
      const { [key]: _settled, ...rest } = context.pending;
      enqueue.assign({ pending: rest });
    }),
    /**
     * After a failure: the first retry after a healthy period is immediate, then exponential
     * backoff; when the next retry would end more than 15 minutes after the run of failures
     * began, give up (§1.8).
     */
    planRetry: assign(({ context, event }) => {
      const now = context.now();
      const since = context.failingSince ?? now;
      const first = context.failingSince === undefined;
      const interval = Math.min(
        BACKOFF_INITIAL_MS * BACKOFF_MULTIPLIER ** Math.max(0, context.attempt - 1),
        BACKOFF_MAX_INTERVAL_MS,
      );
      const delay = first
        ? 0
        : Math.round(interval * (1 - BACKOFF_RANDOMIZATION + 2 * BACKOFF_RANDOMIZATION * context.jitter()));
      return {
        failingSince: since,
        attempt: first ? 1 : context.attempt + 1,
        nextDelayMs: delay,
        giveUp: !first && now - since + delay > BACKOFF_MAX_ELAPSED_MS,
        lastError: describe(event),
        joinRef: undefined,
        unansweredHeartbeats: 0,
        // Replies to what the lost connection carried will not come.
        pending: {},
      };
    }),
    /** A completed upgrade ends the run of failures (§1.8 step 3). */
    resetBackoff: assign({ failingSince: undefined, attempt: 0, nextDelayMs: 0, giveUp: false }),
    recordJoin: assign({
      joinRef: undefined,
      joins: ({ context }) => context.joins + 1,
      unansweredHeartbeats: 0,
    }),
    setFatal: assign({
      fatal: ({ event }): FatalReason => {
        if (event.type === 'socket.rejected')
          return { kind: 'rejected', status: event.status, body: event.body };
        if (event.type === 'phoenix.disconnect') return { kind: 'token-expired' };
        const reason =
          event.type === 'phoenix.reply'
            ? (event.response as { reason?: unknown } | null)?.reason
            : undefined;
        return { kind: 'login-failed', reason: String(reason ?? 'unknown') };
      },
    }),
    setGaveUp: assign({
      fatal: ({ context }): FatalReason => {
        const now = context.now();
        return {
          kind: 'max-retries',
          elapsedMs: now - (context.failingSince ?? now),
          lastError: context.lastError,
        };
      },
    }),
  },
  guards: {
    isClientError: ({ event }) =>
      event.type === 'socket.rejected' && event.status >= 400 && event.status < 500,
    isJoinReply: ({ context, event }) =>
      event.type === 'phoenix.reply' && event.topic === GATEWAY_TOPIC && event.ref === context.joinRef,
    isJoinAccepted: ({ context, event }) =>
      event.type === 'phoenix.reply' &&
      event.topic === GATEWAY_TOPIC &&
      event.ref === context.joinRef &&
      event.status === 'ok',
    isUnmatchedTopic: ({ event }) =>
      event.type === 'phoenix.reply' &&
      event.status === 'error' &&
      (event.response as { reason?: unknown } | null)?.reason === 'unmatched topic',
    isGatewayTopic: ({ event }) => 'topic' in event && event.topic === GATEWAY_TOPIC,
    isTokenExpired: ({ event }) => event.type === 'phoenix.disconnect' && event.reason === 'token_expired',
    retriesExhausted: ({ context }) => context.giveUp,
    retryNow: ({ context }) => context.nextDelayMs === 0,
    connectionDead: ({ context }) => context.unansweredHeartbeats > MAX_UNANSWERED_HEARTBEATS,
  },
  delays: {
    backoff: ({ context }) => context.nextDelayMs,
    connectTimeout: CONNECT_TIMEOUT_MS,
    joinTimeout: JOIN_TIMEOUT_MS,
    heartbeat: HEARTBEAT_INTERVAL_MS,
  },
}).createMachine({
  id: 'portalSession',
  description:
    "The gateway's WebSocket session with the portal: connect, join the `gateway` channel, keep it alive " +
    'with heartbeats, and reconnect with exponential backoff (0.5 s × 1.5ⁿ ±50 %, at most 60 s) when it ' +
    'breaks. Tunnels keep forwarding meanwhile. A 4xx on the upgrade, an error reply to the join, ' +
    '`token_expired` or 15 minutes of failures end the session for good (the process exits 1).',
  context: ({ input }) => ({
    url: input.url,
    userAgent: input.userAgent,
    jitter: input.jitter,
    now: input.now,
    nextRef: 0,
    joinRef: undefined,
    outbox: [],
    pending: {},
    ticks: 0,
    unansweredHeartbeats: 0,
    failingSince: undefined,
    attempt: 0,
    nextDelayMs: 0,
    giveUp: false,
    lastError: '',
    fatal: undefined,
    joins: 0,
  }),
  initial: 'online',
  on: {
    'portal.send': { actions: 'queueMessage' },
    'portal.leave': { target: '.leaving' },
  },
  states: {
    disconnected: {
      entry: {
        type: 'reportStatus',
        params: ({ context }) => ({
          status: 'hiccup',
          detail: `${context.lastError}; retrying in ${context.nextDelayMs} ms`,
        }),
      },
      always: [
        { guard: 'retriesExhausted', target: 'failed', actions: 'setGaveUp' },
        { guard: 'retryNow', target: 'online' },
      ],
      after: { backoff: { target: 'online' } },
    },
    online: {
      invoke: {
        id: 'socket',
        src: 'portalSocket',
        input: ({ context }) => ({ url: context.url, userAgent: context.userAgent }),
        onError: { target: 'disconnected', actions: 'planRetry' },
      },
      initial: 'connecting',
      on: {
        'socket.rejected': [
          { guard: 'isClientError', target: 'failed', actions: 'setFatal' },
          { target: 'disconnected', actions: 'planRetry' },
        ],
        'socket.closed': { target: 'disconnected', actions: 'planRetry' },
        'phoenix.close': { guard: 'isGatewayTopic', target: 'disconnected', actions: 'planRetry' },
        'phoenix.disconnect': { guard: 'isTokenExpired', target: 'failed', actions: 'setFatal' },
        'portal.reconnect': { target: 'disconnected', actions: ['resetBackoff', 'planRetry'] },
        'portal.message': {
          actions: {
            type: 'deliver',
            params: ({ event }) => ({ message: event.message, skipped: event.skipped }),
          },
        },
        'portal.invalid': {
          actions: {
            type: 'reportInvalid',
            params: ({ event }) => ({ event: event.event, error: event.error }),
          },
        },
      },
      states: {
        connecting: {
          on: {
            'socket.open': {
              target: 'joining',
              actions: ['resetBackoff', { type: 'reportStatus', params: { status: 'connected' } }],
            },
          },
          after: { connectTimeout: { target: '#portalSession.disconnected', actions: 'planRetry' } },
        },
        joining: {
          entry: 'sendJoin',
          on: {
            'phoenix.reply': [
              { guard: 'isJoinAccepted', target: 'joined' },
              // An error reply to the join: the portal refuses this gateway (LoginFailed, §1.5).
              { guard: 'isJoinReply', target: '#portalSession.failed', actions: 'setFatal' },
              { actions: 'settleReply' },
            ],
          },
          after: { joinTimeout: { target: '#portalSession.disconnected', actions: 'planRetry' } },
        },
        joined: {
          entry: ['recordJoin', 'flushOutbox', { type: 'reportStatus', params: { status: 'joined' } }],
          on: {
            'portal.send': { actions: ['queueMessage', 'flushOutbox'] },
            'phoenix.reply': [{ guard: 'isUnmatchedTopic', target: 'joining' }, { actions: 'settleReply' }],
            'phoenix.error': { guard: 'isGatewayTopic', target: 'joining' },
          },
          initial: 'alive',
          states: {
            // Re-entered on every beat so the timer restarts without re-running `joined`'s entry.
            alive: {
              after: {
                heartbeat: [
                  { guard: 'connectionDead', target: '#portalSession.disconnected', actions: 'planRetry' },
                  { target: 'alive', reenter: true, actions: ['sendHeartbeat', 'expireReplies'] },
                ],
              },
            },
          },
        },
      },
    },
    leaving: {
      entry: { type: 'reportStatus', params: { status: 'leaving' } },
      always: { target: 'stopped' },
    },
    stopped: { type: 'final' },
    failed: { type: 'final', entry: { type: 'reportStatus', params: { status: 'failed' } } },
  },
  output: ({ context }) => ({ fatal: context.fatal }),
});
