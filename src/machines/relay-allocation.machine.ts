import { assign, setup } from 'xstate';
import type { TurnCommand } from '../wire/turn/client.js';

/**
 * One TURN relay's allocation (`spec/snownet.md` §3.2, §3.6): find the server that answers,
 * allocate, keep the NAT binding and the allocation alive, and back off and retry when the relay
 * stops answering, until it is given up. The TURN protocol itself (authentication, retransmission,
 * channels, 437 repair) runs in the router's TURN client; this machine decides what to do next
 * and the gateway runtime carries its commands out (`relayCommand`).
 *
 *   probing ──bound──▶ allocating ──allocated──▶ allocated ⟲ keep-alive (25 s), refresh (lifetime/2)
 *      ▲                   │ failed                   │ failed / deleted
 *      └──── backoff ◀─────┴──────────────────────────┘
 *              │ attempts used up, or credentials refused
 *              ▼
 *            failed (final)           any ──relay.remove──▶ freed (final)
 *
 * Reaching `failed` or `freed` frees the relay in the router: its relayed candidates are
 * withdrawn and the connections that used it move to another relay.
 */

export type RelayCommand = TurnCommand;

export interface RelayAllocationInput {
  readonly relayId: string;
}

export interface RelayAllocationContext {
  readonly relayId: string;
  /** Failed rounds in a row (reset by a successful allocation). */
  attempts: number;
  lifetimeS: number;
  lastError: string | undefined;
}

export type RelayAllocationEvent =
  | { type: 'relay.bound' }
  | { type: 'relay.allocated'; lifetimeS: number }
  | { type: 'relay.refreshed'; lifetimeS: number }
  | { type: 'relay.deleted' }
  | { type: 'relay.failed'; request: string; reason: 'timeout' | 'auth' | 'error'; message: string }
  /** The portal's relay list was updated without this relay in it: test that it is alive (§3.6). */
  | { type: 'relay.poke' }
  /** The relay is gone from the portal's list, or replaced. */
  | { type: 'relay.remove' };

/** NAT keep-alive and liveness probe of the active server (§3.2 step 6). */
export const RELAY_KEEPALIVE_MS = 25_000;
/** Rounds of probe → allocate that may fail in a row before the relay is given up. */
export const RELAY_MAX_ATTEMPTS = 5;
/** Backoff before round n (1-based): 1 s, 2 s, 4 s, … capped. */
export const RELAY_BACKOFF_BASE_MS = 1_000;
export const RELAY_BACKOFF_MAX_MS = 30_000;
/** A lifetime the server did not state (never 0: the refresh timer needs a period). */
const DEFAULT_LIFETIME_S = 600;

export function relayBackoffMs(attempts: number): number {
  return Math.min(RELAY_BACKOFF_MAX_MS, RELAY_BACKOFF_BASE_MS * 2 ** Math.max(0, attempts - 1));
}

export const relayAllocationMachine = setup({
  types: {
    context: {} as RelayAllocationContext,
    events: {} as RelayAllocationEvent,
    input: {} as RelayAllocationInput,
  },
  actions: {
    /** Puts the relay's TURN client into the router. Provided by src/actors. */
    installRelay: notProvided('installRelay'),
    /** Runs one command on the relay's TURN client. Provided by src/actors. */
    command: (_, _params: { cmd: RelayCommand }) => {
      throw new Error("relay-allocation action 'command' was not provided");
    },
    /** Takes the relay out of the router (candidates withdrawn, connections moved). */
    freeRelay: notProvided('freeRelay'),
    recordLifetime: assign({
      lifetimeS: ({ context, event }) =>
        event.type === 'relay.allocated' || event.type === 'relay.refreshed'
          ? Math.max(2, event.lifetimeS || DEFAULT_LIFETIME_S)
          : context.lifetimeS,
      attempts: ({ context, event }) => (event.type === 'relay.allocated' ? 0 : context.attempts),
    }),
    recordFailure: assign({
      attempts: ({ context }) => context.attempts + 1,
      lastError: ({ context, event }) =>
        event.type === 'relay.failed' ? `${event.request}: ${event.message}` : context.lastError,
    }),
  },
  guards: {
    credentialsRefused: ({ event }) => event.type === 'relay.failed' && event.reason === 'auth',
    /** Channel binds fail per peer; they say nothing about the allocation. */
    allocationFailed: ({ event }) => event.type === 'relay.failed' && event.request !== 'channel-bind',
    attemptsUsedUp: ({ context }) => context.attempts >= RELAY_MAX_ATTEMPTS,
  },
  delays: {
    keepalive: RELAY_KEEPALIVE_MS,
    refresh: ({ context }) => (context.lifetimeS * 1000) / 2,
    backoff: ({ context }) => relayBackoffMs(context.attempts),
  },
}).createMachine({
  id: 'relayAllocation',
  description:
    'One TURN relay: probe its addresses with BINDING, allocate on the first that answers, keep the NAT ' +
    'binding alive every 25 s and refresh at half the lifetime. A failed request resets the TURN client ' +
    'and retries after a growing backoff; after 5 failed rounds in a row, or when the relay refuses our ' +
    'credentials, the relay is given up. Giving up or removal frees it: its relayed candidates are ' +
    'withdrawn from every connection and connections move to another relay.',
  context: ({ input }) => ({
    relayId: input.relayId,
    attempts: 0,
    lifetimeS: DEFAULT_LIFETIME_S,
    lastError: undefined,
  }),
  initial: 'probing',
  entry: 'installRelay',
  on: {
    'relay.remove': { target: '.freed' },
  },
  states: {
    probing: {
      entry: { type: 'command', params: { cmd: 'probe' } },
      on: {
        'relay.bound': { target: 'allocating' },
        'relay.failed': [
          { guard: 'credentialsRefused', target: 'failed', actions: 'recordFailure' },
          { guard: 'allocationFailed', target: 'backoff', actions: 'recordFailure' },
        ],
      },
    },
    allocating: {
      entry: { type: 'command', params: { cmd: 'allocate' } },
      on: {
        'relay.allocated': { target: 'allocated', actions: 'recordLifetime' },
        'relay.failed': [
          { guard: 'credentialsRefused', target: 'failed', actions: 'recordFailure' },
          { guard: 'allocationFailed', target: 'backoff', actions: 'recordFailure' },
        ],
      },
    },
    allocated: {
      initial: 'alive',
      states: {
        alive: {
          after: {
            keepalive: {
              target: 'alive',
              reenter: true,
              actions: { type: 'command', params: { cmd: 'keepalive' } },
            },
          },
        },
      },
      after: {
        refresh: {
          target: 'allocated',
          reenter: true,
          actions: { type: 'command', params: { cmd: 'refresh' } },
        },
      },
      on: {
        // The refresh timer starts again from the answer, with the lifetime the server granted now.
        'relay.refreshed': { target: 'allocated', reenter: true, actions: 'recordLifetime' },
        // The server deleted the allocation (after a 437 repair, or our own delete): allocate anew.
        'relay.deleted': { target: 'allocating' },
        'relay.poke': { actions: { type: 'command', params: { cmd: 'poke' } } },
        'relay.failed': [
          { guard: 'credentialsRefused', target: 'failed', actions: 'recordFailure' },
          { guard: 'allocationFailed', target: 'backoff', actions: 'recordFailure' },
        ],
      },
    },
    backoff: {
      entry: { type: 'command', params: { cmd: 'reset' } },
      always: { guard: 'attemptsUsedUp', target: 'failed' },
      after: { backoff: { target: 'probing' } },
      on: { 'relay.poke': { target: 'probing' } },
    },
    failed: { type: 'final', entry: 'freeRelay' },
    freed: { type: 'final', entry: 'freeRelay' },
  },
  output: ({ context }) => ({ relayId: context.relayId, lastError: context.lastError }),
});

function notProvided(name: string) {
  return () => {
    throw new Error(`relay-allocation action '${name}' was not provided`);
  };
}
