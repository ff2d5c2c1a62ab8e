import { assign, setup } from 'xstate';
import type { ClientId, ResourceId } from '../wire/ids.js';
import type { Grant } from '../wire/policy.js';

/**
 * One client's connection to the gateway, from authorization to removal: a plain WireGuard peer
 * (standalone mode) or a portal client, whose ICE credentials and candidates are recorded here
 * for the ICE agent. Data packets never reach this machine; the router reports lifecycle changes.
 *
 *   authorized ──handshake started──▶ handshaking ──session──▶ connected ⇄ idle
 *        ▲                                 │                      │
 *        └────────── connection failed ◀───┴──────────────────────┘
 *   any ──all grants expired──▶ expired ─┐
 *   any ──revoked / goodbye ───▶ revoked ┴─▶ removed (final)
 *
 * `installClient` puts the peer and its grants into the router on entry; `removeClient` takes
 * them out on reaching `removed`. An actor stopped from outside runs no exit actions, so the
 * supervisor cleans the router up itself in that case. Why it ended is in `context.endReason`.
 */
/** A portal connection's ICE credentials: ours (local) and the client's (remote). */
export interface ClientIce {
  readonly local: { readonly username: string; readonly password: string };
  readonly remote: { readonly username: string; readonly password: string };
}

/** Remote candidates kept per connection; the portal relays what the client sends, so cap it. */
export const MAX_REMOTE_CANDIDATES = 64;

export interface ClientConnectionInput {
  readonly clientId: ClientId;
  readonly grants: readonly Grant[];
  /** Portal clients only (standalone peers have no ICE). */
  readonly ice?: ClientIce | undefined;
}

export interface ClientConnectionContext {
  readonly clientId: ClientId;
  grants: readonly Grant[];
  /** Whether the current session was started by the gateway. */
  initiator: boolean | undefined;
  endReason: 'expired' | 'revoked' | 'goodbye' | undefined;
  readonly ice: ClientIce | undefined;
  /** The client's ICE candidates as the portal relayed them (SDP `candidate:` strings). */
  remoteCandidates: readonly string[];
}

export type ClientConnectionEvent =
  | { type: 'wg.handshake-started'; initiator: boolean }
  | { type: 'wg.session-established'; initiator: boolean }
  | { type: 'wg.connection-failed'; reason: string }
  | { type: 'traffic.idle' }
  | { type: 'traffic.active' }
  | { type: 'grants.expired'; resources: readonly ResourceId[]; remaining: number }
  | { type: 'policy.update'; grants: readonly Grant[] }
  | { type: 'policy.revoke' }
  | { type: 'control.goodbye' }
  | { type: 'ice.candidates'; candidates: readonly string[] }
  | { type: 'ice.candidates-invalidated'; candidates: readonly string[] };

export const clientConnectionMachine = setup({
  types: {
    context: {} as ClientConnectionContext,
    events: {} as ClientConnectionEvent,
    input: {} as ClientConnectionInput,
  },
  actions: {
    /** Adds the peer to the router and installs its grants. Provided by src/actors. */
    installClient: notProvided('installClient'),
    /** Replaces the client's grants in the router. */
    updateGrants: notProvided('updateGrants'),
    /** Removes the client from the router (saying goodbye to a Firezone client). */
    removeClient: notProvided('removeClient'),
    storeGrants: assign({
      grants: ({ event }) => (event.type === 'policy.update' ? event.grants : []),
    }),
    dropExpiredGrants: assign({
      grants: ({ context, event }) =>
        event.type === 'grants.expired'
          ? context.grants.filter((g) => !event.resources.includes(g.resource.id))
          : context.grants,
    }),
    addCandidates: assign({
      remoteCandidates: ({ context, event }) => {
        if (event.type !== 'ice.candidates') return context.remoteCandidates;
        const fresh = event.candidates.filter((c) => !context.remoteCandidates.includes(c));
        return [...context.remoteCandidates, ...fresh].slice(-MAX_REMOTE_CANDIDATES);
      },
    }),
    removeCandidates: assign({
      remoteCandidates: ({ context, event }) =>
        event.type === 'ice.candidates-invalidated'
          ? context.remoteCandidates.filter((c) => !event.candidates.includes(c))
          : context.remoteCandidates,
    }),
    recordInitiator: assign({
      initiator: ({ event }) => (event.type === 'wg.session-established' ? event.initiator : undefined),
    }),
  },
  guards: {
    noGrantsLeft: ({ event }) => event.type === 'grants.expired' && event.remaining === 0,
    revokesEverything: ({ event }) => event.type === 'policy.update' && event.grants.length === 0,
  },
}).createMachine({
  id: 'clientConnection',
  description:
    'One client from authorization to removal: a plain WireGuard peer in standalone mode, or a portal ' +
    'client with the ICE credentials and remote candidates of its connection recorded (the ICE agent is ' +
    'not part of this build yet). The router reports lifecycle changes (handshakes, sessions, idleness, ' +
    'expiry) and never single packets. On entry the client and its grants go into the router ' +
    '(`installClient`); reaching `removed` takes them out. A failed connection returns to `authorized`, ' +
    'where the peer may simply come back: authorization, not the WireGuard session, decides whether a ' +
    'client exists.',
  context: ({ input }) => ({
    clientId: input.clientId,
    grants: input.grants,
    initiator: undefined,
    endReason: undefined,
    ice: input.ice,
    remoteCandidates: [],
  }),
  initial: 'authorized',
  entry: 'installClient',
  on: {
    'policy.update': [
      { guard: 'revokesEverything', target: '.revoked' },
      { actions: ['storeGrants', 'updateGrants'] },
    ],
    'policy.revoke': { target: '.revoked' },
    'control.goodbye': { target: '.revoked', actions: assign({ endReason: 'goodbye' }) },
    'grants.expired': [{ guard: 'noGrantsLeft', target: '.expired' }, { actions: 'dropExpiredGrants' }],
    // Recorded for the ICE agent; the path itself is still the WireGuard peer's own.
    'ice.candidates': { actions: 'addCandidates' },
    'ice.candidates-invalidated': { actions: 'removeCandidates' },
  },
  states: {
    authorized: {
      on: {
        'wg.handshake-started': { target: 'handshaking' },
        'wg.session-established': { target: 'connected', actions: 'recordInitiator' },
      },
    },
    handshaking: {
      on: {
        'wg.session-established': { target: 'connected', actions: 'recordInitiator' },
        'wg.connection-failed': { target: 'authorized' },
      },
    },
    connected: {
      on: {
        'traffic.idle': { target: 'idle' },
        'wg.session-established': { actions: 'recordInitiator' },
        'wg.connection-failed': { target: 'authorized' },
      },
    },
    idle: {
      on: {
        'traffic.active': { target: 'connected' },
        'wg.session-established': { actions: 'recordInitiator' },
        'wg.connection-failed': { target: 'authorized' },
      },
    },
    expired: {
      entry: assign({ endReason: 'expired', grants: [] }),
      always: { target: 'removed' },
    },
    revoked: {
      entry: assign({ endReason: ({ context }) => context.endReason ?? 'revoked', grants: [] }),
      always: { target: 'removed' },
    },
    removed: { type: 'final', entry: 'removeClient' },
  },
  output: ({ context }) => ({ clientId: context.clientId, endReason: context.endReason }),
});

/** An action that must be provided by the actor layer; running it unprovided is a bug. */
function notProvided(name: string) {
  return () => {
    throw new Error(`client-connection action '${name}' was not provided`);
  };
}
