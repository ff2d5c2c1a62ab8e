import { assign, enqueueActions, setup } from 'xstate';
import type { ClientId } from '../wire/ids.js';
import type { Grant } from '../wire/policy.js';
import { type ClientConnectionEvent, clientConnectionMachine } from './client-connection.machine.js';

/**
 * The root of the actor system. It owns one client-connection actor per authorized client and
 * reconciles them with the desired policy (the standalone policy file now, the portal later):
 * new clients are spawned, removed ones revoked, changed grants sent on, and a client whose
 * connection parameters changed (key, preshared key, tunnel addresses) is replaced.
 *
 * Supervision (DESIGN.md): client connections are not restarted. When one fails (an error in
 * one of its actions) its router state is cleaned up and it is forgotten; the next policy that
 * lists it creates it again. No failure of one client reaches another.
 *
 *   running ──gateway.stop──▶ stopping ──▶ stopped (final)
 */
export interface DesiredClient {
  readonly clientId: ClientId;
  /** Fingerprint of what requires a new connection when it changes (keys, tunnel IPs, profile). */
  readonly identity: string;
  /** Fingerprint of the grants, to skip no-op updates. */
  readonly grantsKey: string;
  readonly grants: readonly Grant[];
}

export interface SupervisedClient {
  readonly actorId: string;
  readonly identity: string;
  readonly grantsKey: string;
}

export interface GatewaySupervisorContext {
  clients: Record<string, SupervisedClient>;
  /** Makes every spawned actor id unique, so a replacement never collides with its predecessor. */
  generation: number;
  /** Client ids whose actors failed, most recent last (bounded; for diagnostics). */
  failures: string[];
}

export type GatewaySupervisorEvent =
  | { type: 'policy.apply'; clients: readonly DesiredClient[] }
  | { type: 'router.event'; clientId: ClientId; event: ClientConnectionEvent }
  | { type: 'gateway.stop' };

const MAX_FAILURES_KEPT = 50;

/**
 * Enqueues the named `cleanupClient` action. Actions declared in the same `setup()` cannot name
 * each other in their types, so this is the one place that casts.
 */
function cleanup(enqueue: (action: never) => void, clientId: string, goodbye: boolean): void {
  enqueue({ type: 'cleanupClient', params: { clientId, goodbye } } as never);
}

export function clientActorId(clientId: string, generation: number): string {
  return `client:${clientId}#${generation}`;
}

/** The client id inside an actor id made by {@link clientActorId}. */
export function clientIdOf(actorId: string): string {
  return actorId.slice('client:'.length, actorId.lastIndexOf('#'));
}

export const gatewaySupervisorMachine = setup({
  types: {
    context: {} as GatewaySupervisorContext,
    events: {} as GatewaySupervisorEvent,
  },
  actors: { clientConnection: clientConnectionMachine },
  actions: {
    /** Removes a client's router state after its actor was stopped or failed. Provided by src/actors. */
    cleanupClient: (_, _params: { clientId: string; goodbye: boolean }) => {
      throw new Error("gateway-supervisor action 'cleanupClient' was not provided");
    },
    reconcile: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'policy.apply') return;
      let generation = context.generation;
      const next: Record<string, SupervisedClient> = {};
      const desired = new Map(event.clients.map((c) => [c.clientId as string, c]));
      for (const [id, current] of Object.entries(context.clients)) {
        const want = desired.get(id);
        if (!want) {
          // Revoked: the actor removes itself from the router and reaches its final state.
          enqueue.sendTo(current.actorId, { type: 'policy.revoke' });
          next[id] = current;
          continue;
        }
        if (want.identity !== current.identity) {
          enqueue.stopChild(current.actorId);
          cleanup(enqueue, id, false);
          const actorId = clientActorId(id, ++generation);
          enqueue.spawnChild('clientConnection', {
            id: actorId,
            input: { clientId: want.clientId, grants: want.grants },
          });
          next[id] = { actorId, identity: want.identity, grantsKey: want.grantsKey };
        } else {
          if (want.grantsKey !== current.grantsKey)
            enqueue.sendTo(current.actorId, { type: 'policy.update', grants: want.grants });
          next[id] = { ...current, grantsKey: want.grantsKey };
        }
        desired.delete(id);
      }
      for (const want of desired.values()) {
        const actorId = clientActorId(want.clientId, ++generation);
        enqueue.spawnChild('clientConnection', {
          id: actorId,
          input: { clientId: want.clientId, grants: want.grants },
        });
        next[want.clientId] = { actorId, identity: want.identity, grantsKey: want.grantsKey };
      }
      enqueue.assign({ clients: next, generation });
    }),
    forward: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'router.event') return;
      const c = context.clients[event.clientId];
      if (c) enqueue.sendTo(c.actorId, event.event);
    }),
    forgetChild: assign({
      clients: ({ context, event }) => {
        const actorId = (event as { actorId?: string }).actorId;
        if (!actorId) return context.clients;
        const id = clientIdOf(actorId);
        if (context.clients[id]?.actorId !== actorId) return context.clients; // already replaced
        const { [id]: _gone, ...rest } = context.clients;
        return rest;
      },
    }),
    recordFailure: assign({
      failures: ({ context, event }) => {
        const actorId = (event as { actorId?: string }).actorId;
        return actorId
          ? [...context.failures, clientIdOf(actorId)].slice(-MAX_FAILURES_KEPT)
          : context.failures;
      },
    }),
    cleanupFailedChild: enqueueActions(({ context, event, enqueue }) => {
      const actorId = (event as { actorId?: string }).actorId;
      if (!actorId) return;
      const id = clientIdOf(actorId);
      if (context.clients[id]?.actorId === actorId) cleanup(enqueue, id, false);
    }),
    stopAllClients: enqueueActions(({ context, enqueue }) => {
      for (const [id, c] of Object.entries(context.clients)) {
        enqueue.stopChild(c.actorId);
        // A Firezone client hears "goodbye" over the tunnel (spec/portal-protocol.md §1.10).
        cleanup(enqueue, id, true);
      }
      enqueue.assign({ clients: {} });
    }),
  },
}).createMachine({
  id: 'gatewaySupervisor',
  description:
    'The root of the actor system: one client-connection actor per authorized client, reconciled with the ' +
    'desired policy (spawn new clients, revoke missing ones, update grants, replace a client whose keys or ' +
    'tunnel addresses changed). Client connections are not restarted: one that fails is cleaned out of the ' +
    'router and forgotten, so a failure never reaches another client.',
  context: { clients: {}, generation: 0, failures: [] },
  initial: 'running',
  states: {
    running: {
      on: {
        'policy.apply': { actions: 'reconcile' },
        'router.event': { actions: 'forward' },
        'xstate.done.actor.*': { actions: 'forgetChild' },
        'xstate.error.actor.*': { actions: ['cleanupFailedChild', 'recordFailure', 'forgetChild'] },
        'gateway.stop': { target: 'stopping' },
      },
    },
    stopping: {
      entry: 'stopAllClients',
      always: { target: 'stopped' },
    },
    stopped: { type: 'final' },
  },
});
