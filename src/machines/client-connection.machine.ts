import { assign, enqueueActions, setup } from 'xstate';
import type { ClientId, ResourceId } from '../wire/ids.js';
import type { Grant } from '../wire/policy.js';
import { type DnsResourceNatInput, dnsResourceNatMachine } from './dns-resource-nat.machine.js';

/**
 * One client's connection to the gateway, from authorization to removal: a plain WireGuard peer
 * (standalone mode) or a portal client reached through ICE. Data packets never reach this
 * machine; the router reports lifecycle changes. While the client is live, two regions run side
 * by side:
 *
 *   tunnel: authorized ──handshake started──▶ handshaking ──session──▶ connected ⇄ idle
 *               ▲                                   │                      │
 *               └───── connection failed (plain peer) ◀┴──────────────────────┘
 *   path:   direct (plain peer: wherever its authenticated packets come from)
 *           checking ──pair selected──▶ selected ⇄ disconnected
 *
 *   checking, no remote candidate for 10 s ─┐
 *   disconnected for 2 s ───────────────────┼─▶ failed ─┐
 *   WireGuard connection failed (ICE) ──────┘           │
 *   any ──all grants expired──▶ expired ────────────────┼─▶ removed (final)
 *   any ──revoked / goodbye ───▶ revoked ───────────────┘
 *
 * DNS resources: each name the client announces proxy IPs for (AssignedIps) gets a child
 * DNS-resource NAT binding actor (`dns-resource-nat.machine.ts`), keyed by the lowercased name;
 * repeats go to the same binding. The bindings end with the connection.
 *
 * `installClient` puts the peer, its grants and (portal clients) its ICE agent into the router
 * on entry; `removeClient` takes them out on reaching `removed`. An actor stopped from outside
 * runs no exit actions, so the supervisor cleans the router up itself in that case. Why it
 * ended is in `context.endReason`; a failed connection says no goodbye and its authorization
 * stays with the control plane, so the client can simply connect again (spec/snownet.md §2.9).
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
  endReason: 'expired' | 'revoked' | 'goodbye' | 'failed' | undefined;
  readonly ice: ClientIce | undefined;
  /** The client's ICE candidates as the portal relayed them (SDP `candidate:` strings). */
  remoteCandidates: readonly string[];
  /** The selected ICE path (`ip:port`, and the relay it goes through), for inspection. */
  path: { readonly remote: string; readonly relay: string | undefined } | undefined;
  /** Why the connection failed, when it did. */
  failure: string | undefined;
  /** The DNS-resource NAT binding actor of each name (lowercased) the client announced. */
  natBindings: Record<string, string>;
  /** Makes binding actor ids unique, so a new binding never collides with one that just ended. */
  natGeneration: number;
}

/** No remote candidate this long after the connection was created: it failed (§2.9). */
export const CANDIDATE_TIMEOUT_MS = 10_000;
/** ICE disconnected (no viable pair) this long: it failed (§2.9). */
export const DISCONNECT_TIMEOUT_MS = 2_000;
/** Live NAT bindings per client; AssignedIps for further names is answered Inactive. */
export const MAX_NAT_BINDINGS = 1_024;

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
  | { type: 'ice.candidates-invalidated'; candidates: readonly string[] }
  /** The ICE agent's state (router). */
  | { type: 'ice.state'; state: 'checking' | 'connected' | 'disconnected' }
  /** ICE selected the pair to send on (router). */
  | { type: 'ice.selected'; remote: string; relay: string | undefined }
  /** The client announced its proxy IPs for a name of a DNS resource it is granted (router). */
  | { type: 'control.assigned-ips'; resourceId: ResourceId; domain: string; proxyIps: readonly string[] };

/**
 * WireGuard gave up: an ICE connection has failed (the client reconnects through the portal); a
 * plain peer returns to `authorized` and may come back on its own.
 */
const WG_FAILED = [
  { guard: 'usesIce', target: '#clientConnection.failed', actions: 'recordWgFailure' },
  { target: 'authorized' },
] as const;

export const clientConnectionMachine = setup({
  types: {
    context: {} as ClientConnectionContext,
    events: {} as ClientConnectionEvent,
    input: {} as ClientConnectionInput,
  },
  actors: { natBinding: dnsResourceNatMachine },
  actions: {
    /** Adds the peer to the router and installs its grants. Provided by src/actors. */
    installClient: notProvided('installClient'),
    /** Replaces the client's grants in the router. */
    updateGrants: notProvided('updateGrants'),
    /** Hands the portal's ICE candidates (added or invalidated) to the router's ICE agent. */
    feedCandidates: notProvided('feedCandidates'),
    /** Removes the client from the router (saying goodbye to a Firezone client). */
    removeClient: notProvided('removeClient'),
    /** Logs a binding actor that failed (a bug; the client goes on). Provided by src/actors. */
    natBindingFailed: () => undefined,
    /** Answers AssignedIps with DomainStatus Inactive without a binding (too many names). */
    refuseNat: notProvided('refuseNat'),
    /** Hands AssignedIps to the name's binding actor, spawning it for a new name. */
    bindNat: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'control.assigned-ips') return;
      const domain = event.domain.toLowerCase();
      const existing = context.natBindings[domain];
      if (existing) {
        enqueue.sendTo(existing, {
          type: 'nat.assigned',
          resourceId: event.resourceId,
          proxyIps: event.proxyIps,
        });
        return;
      }
      if (Object.keys(context.natBindings).length >= MAX_NAT_BINDINGS) {
        enqueue({ type: 'refuseNat' } as never);
        return;
      }
      const id = `nat:${context.natGeneration}:${domain}`;
      const input: DnsResourceNatInput = {
        clientId: context.clientId,
        resourceId: event.resourceId,
        domain,
        proxyIps: event.proxyIps,
      };
      enqueue.spawnChild('natBinding', { id, input });
      enqueue.assign({
        natBindings: { ...context.natBindings, [domain]: id },
        natGeneration: context.natGeneration + 1,
      });
    }),
    /** A binding that ended or failed is stopped, so the actor system lets go of it. */
    stopEndedBinding: enqueueActions(({ event, enqueue }) => {
      const actorId = (event as { actorId?: string }).actorId;
      if (actorId) enqueue.stopChild(actorId);
    }),
    /** A binding ended (idle) or failed: forget it; the next AssignedIps for the name starts a new one. */
    forgetNatBinding: assign({
      natBindings: ({ context, event }) => {
        const actorId = (event as { actorId?: string }).actorId;
        const entry = Object.entries(context.natBindings).find(([, id]) => id === actorId);
        if (!entry) return context.natBindings;
        const { [entry[0]]: _gone, ...rest } = context.natBindings;
        return rest;
      },
    }),
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
    recordWgFailure: assign({
      failure: ({ event }) =>
        event.type === 'wg.connection-failed' ? `WireGuard: ${event.reason}` : undefined,
    }),
    recordPath: assign({
      path: ({ context, event }) =>
        event.type === 'ice.selected' ? { remote: event.remote, relay: event.relay } : context.path,
    }),
    recordInitiator: assign({
      initiator: ({ event }) => (event.type === 'wg.session-established' ? event.initiator : undefined),
    }),
  },
  guards: {
    noGrantsLeft: ({ event }) => event.type === 'grants.expired' && event.remaining === 0,
    revokesEverything: ({ event }) => event.type === 'policy.update' && event.grants.length === 0,
    usesIce: ({ context }) => context.ice !== undefined,
    noRemoteCandidates: ({ context }) => context.remoteCandidates.length === 0,
    iceDisconnected: ({ event }) => event.type === 'ice.state' && event.state === 'disconnected',
    iceConnected: ({ event }) => event.type === 'ice.state' && event.state === 'connected',
    iceChecking: ({ event }) => event.type === 'ice.state' && event.state === 'checking',
  },
  delays: {
    candidateTimeout: CANDIDATE_TIMEOUT_MS,
    disconnectTimeout: DISCONNECT_TIMEOUT_MS,
  },
}).createMachine({
  id: 'clientConnection',
  description:
    'One client from authorization to removal: a plain WireGuard peer in standalone mode, or a portal ' +
    'client reached through ICE (directly or through a relay). The router reports lifecycle changes ' +
    '(handshakes, sessions, idleness, expiry, ICE state and the selected pair) and never single packets. ' +
    'While live, the tunnel region follows the WireGuard session and the path region the ICE agent. On ' +
    'entry the client, its grants and its ICE agent go into the router (`installClient`); reaching ' +
    '`removed` takes them out. A failed WireGuard session of a plain peer returns to `authorized`, where ' +
    'the peer may simply come back; an ICE connection that fails (no candidates in 10 s, disconnected ' +
    'for 2 s, WireGuard gave up) ends, silently, and the client reconnects through the portal. Each name ' +
    'of a DNS resource the client announces proxy IPs for (AssignedIps) gets a child NAT binding actor; ' +
    'repeats go to it, and the bindings end with the connection.',
  context: ({ input }) => ({
    clientId: input.clientId,
    grants: input.grants,
    initiator: undefined,
    endReason: undefined,
    ice: input.ice,
    remoteCandidates: [],
    path: undefined,
    failure: undefined,
    natBindings: {},
    natGeneration: 0,
  }),
  initial: 'live',
  entry: 'installClient',
  on: {
    'policy.update': [
      { guard: 'revokesEverything', target: '.revoked' },
      { actions: ['storeGrants', 'updateGrants'] },
    ],
    'policy.revoke': { target: '.revoked' },
    'control.goodbye': { target: '.revoked', actions: assign({ endReason: 'goodbye' }) },
    'grants.expired': [{ guard: 'noGrantsLeft', target: '.expired' }, { actions: 'dropExpiredGrants' }],
    // The agent in the router checks them; the context keeps them for inspection.
    'ice.candidates': { actions: ['addCandidates', 'feedCandidates'] },
    'ice.candidates-invalidated': { actions: ['removeCandidates', 'feedCandidates'] },
    'control.assigned-ips': { actions: 'bindNat' },
    'xstate.done.actor.*': { actions: ['forgetNatBinding', 'stopEndedBinding'] },
    'xstate.error.actor.*': { actions: ['forgetNatBinding', 'natBindingFailed', 'stopEndedBinding'] },
  },
  states: {
    live: {
      type: 'parallel',
      states: {
        tunnel: {
          initial: 'authorized',
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
                'wg.connection-failed': WG_FAILED,
              },
            },
            connected: {
              on: {
                'traffic.idle': { target: 'idle' },
                'wg.session-established': { actions: 'recordInitiator' },
                'wg.connection-failed': WG_FAILED,
              },
            },
            idle: {
              on: {
                'traffic.active': { target: 'connected' },
                'wg.session-established': { actions: 'recordInitiator' },
                'wg.connection-failed': WG_FAILED,
              },
            },
          },
        },
        path: {
          initial: 'pending',
          states: {
            pending: {
              always: [{ guard: 'usesIce', target: 'checking' }, { target: 'direct' }],
            },
            direct: {},
            checking: {
              after: {
                candidateTimeout: {
                  guard: 'noRemoteCandidates',
                  target: '#clientConnection.failed',
                  actions: assign({ failure: 'no remote ICE candidate within 10 s' }),
                },
              },
              on: {
                'ice.selected': { target: 'selected', actions: 'recordPath' },
                'ice.state': { guard: 'iceDisconnected', target: 'disconnected' },
              },
            },
            selected: {
              on: {
                'ice.selected': { actions: 'recordPath' },
                'ice.state': { guard: 'iceDisconnected', target: 'disconnected' },
              },
            },
            disconnected: {
              after: {
                disconnectTimeout: {
                  target: '#clientConnection.failed',
                  actions: assign({ failure: 'ICE disconnected for 2 s' }),
                },
              },
              on: {
                'ice.selected': { target: 'selected', actions: 'recordPath' },
                'ice.state': [
                  { guard: 'iceConnected', target: 'selected' },
                  { guard: 'iceChecking', target: 'checking' },
                ],
              },
            },
          },
        },
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
    failed: {
      entry: assign({ endReason: 'failed' }),
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
