import { assign, enqueueActions, sendTo, setup } from 'xstate';
import type { ClientId } from '../wire/ids.js';
import type { Grant } from '../wire/policy.js';
import {
  type ClientConnectionEvent,
  type ClientConnectionInput,
  type ClientIce,
  clientConnectionMachine,
} from './client-connection.machine.js';
import { type NameserverSelectorEvent, nameserverSelectorMachine } from './nameserver-selector.machine.js';
import { type RelayAllocationEvent, relayAllocationMachine } from './relay-allocation.machine.js';

/**
 * The root of the actor system. It owns one client-connection actor per authorized client and
 * reconciles them with the desired policy (the whole standalone policy file, or one portal
 * authorization at a time):
 * new clients are spawned, removed ones revoked, changed grants sent on, and a client whose
 * connection parameters changed (key, preshared key, tunnel addresses) is replaced.
 *
 * It also owns one relay-allocation actor per TURN relay the portal offers, reconciled with every
 * `init` / `relays_presence` (spec/snownet.md §3.6): new relays are allocated, disconnected ones
 * freed, changed ones replaced, and the ones not mentioned poked to test that they are alive.
 *
 * Supervision (DESIGN.md): client connections are not restarted. When one fails (an error in
 * one of its actions) its router state is cleaned up and it is forgotten; the next policy that
 * lists it creates it again. No failure of one client reaches another.
 *
 * The nameserver selector runs as long as the gateway does (id `nameservers`); if it fails it is
 * started again a second later.
 *
 *   running ──gateway.stop──▶ stopping ──▶ stopped (final)
 *   running.nameservers: watching ──selector failed──▶ restarting ──1 s──▶ watching
 */
export interface DesiredClient {
  readonly clientId: ClientId;
  /** Fingerprint of what requires a new connection when it changes (keys, tunnel IPs, profile). */
  readonly identity: string;
  /** Fingerprint of the grants, to skip no-op updates. */
  readonly grantsKey: string;
  readonly grants: readonly Grant[];
  /** Portal clients: the ICE credentials of the connection (part of `identity`). */
  readonly ice?: ClientIce | undefined;
}

export interface SupervisedClient {
  readonly actorId: string;
  readonly identity: string;
  readonly grantsKey: string;
}

/** A relay as the portal lists it; `key` fingerprints its servers and credentials. */
export interface DesiredRelay {
  readonly relayId: string;
  readonly key: string;
}

export interface SupervisedRelay {
  readonly actorId: string;
  readonly key: string;
}

export interface GatewaySupervisorContext {
  clients: Record<string, SupervisedClient>;
  relays: Record<string, SupervisedRelay>;
  /** Makes every spawned actor id unique, so a replacement never collides with its predecessor. */
  generation: number;
  /** Client ids whose actors failed, most recent last (bounded; for diagnostics). */
  failures: string[];
  /** The upstream nameservers for the selector (resolv.conf), as text. */
  readonly nameservers: readonly string[];
  /** Times the nameserver selector failed and was restarted. */
  nameserverRestarts: number;
}

export interface GatewaySupervisorInput {
  readonly nameservers?: readonly string[];
}

/** The nameserver selector's actor id (the DNS layer reads its selection through it). */
export const NAMESERVERS_ACTOR_ID = 'nameservers';
/** Pause before a failed nameserver selector is started again. */
export const NAMESERVER_RESTART_MS = 1_000;

export type GatewaySupervisorEvent =
  /** The complete desired set (standalone mode): clients not listed are revoked. */
  | { type: 'policy.apply'; clients: readonly DesiredClient[] }
  /** One client added or changed (portal mode: one authorization at a time). */
  | { type: 'client.upsert'; client: DesiredClient }
  | { type: 'client.revoke'; clientId: ClientId }
  /** Lifecycle news for one client's actor (router events, ICE candidates from the portal). */
  | { type: 'client.event'; clientId: ClientId; event: ClientConnectionEvent }
  /** The portal's relay news: `connected` added or kept, `disconnected` freed, others poked. */
  | { type: 'relays.update'; connected: readonly DesiredRelay[]; disconnected: readonly string[] }
  /** What a relay's TURN client reported, for its allocation actor. */
  | { type: 'relay.event'; relayId: string; event: RelayAllocationEvent }
  /** News for the nameserver selector (a server stopped answering, re-evaluate now). */
  | { type: 'nameservers.event'; event: NameserverSelectorEvent }
  | { type: 'gateway.stop' };

const MAX_FAILURES_KEPT = 50;

/**
 * Enqueues the named `cleanupClient` action. Actions declared in the same `setup()` cannot name
 * each other in their types, so this is the one place that casts.
 */
function cleanup(enqueue: (action: never) => void, clientId: string, goodbye: boolean): void {
  enqueue({ type: 'cleanupClient', params: { clientId, goodbye } } as never);
}

function cleanupRelay(enqueue: (action: never) => void, relayId: string): void {
  enqueue({ type: 'cleanupRelay', params: { relayId } } as never);
}

/** The part of XState's action enqueuer that {@link reconcileOne} uses. */
interface Enqueue {
  (action: never): void;
  sendTo(actorId: string, event: ClientConnectionEvent): void;
  stopChild(actorId: string): void;
  spawnChild(src: 'clientConnection', options: { id: string; input: ClientConnectionInput }): void;
}

/**
 * Brings one client's actor in line with what is wanted: spawn it, replace it (its connection
 * parameters changed), or send it new grants. Returns its new supervision entry.
 */
function reconcileOne(
  enqueue: Enqueue,
  current: SupervisedClient | undefined,
  want: DesiredClient,
  generation: number,
): { entry: SupervisedClient; generation: number } {
  if (current && want.identity === current.identity) {
    if (want.grantsKey !== current.grantsKey)
      enqueue.sendTo(current.actorId, { type: 'policy.update', grants: want.grants });
    return { entry: { ...current, grantsKey: want.grantsKey }, generation };
  }
  if (current) {
    enqueue.stopChild(current.actorId);
    cleanup(enqueue, want.clientId, false);
  }
  const actorId = clientActorId(want.clientId, generation + 1);
  enqueue.spawnChild('clientConnection', {
    id: actorId,
    input: { clientId: want.clientId, grants: want.grants, ice: want.ice },
  });
  return {
    entry: { actorId, identity: want.identity, grantsKey: want.grantsKey },
    generation: generation + 1,
  };
}

export function relayActorId(relayId: string, generation: number): string {
  return `relay:${relayId}#${generation}`;
}

function isRelayActor(actorId: string): boolean {
  return actorId.startsWith('relay:');
}

function relayIdOf(actorId: string): string {
  return actorId.slice('relay:'.length, actorId.lastIndexOf('#'));
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
    input: {} as GatewaySupervisorInput | undefined,
  },
  actors: {
    clientConnection: clientConnectionMachine,
    relayAllocation: relayAllocationMachine,
    nameserverSelector: nameserverSelectorMachine,
  },
  actions: {
    /** Removes a client's router state after its actor was stopped or failed. Provided by src/actors. */
    cleanupClient: (_, _params: { clientId: string; goodbye: boolean }) => {
      throw new Error("gateway-supervisor action 'cleanupClient' was not provided");
    },
    /** Frees a relay in the router after its actor failed. Provided by src/actors. */
    cleanupRelay: (_, _params: { relayId: string }) => {
      throw new Error("gateway-supervisor action 'cleanupRelay' was not provided");
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
        const step = reconcileOne(enqueue, current, want, generation);
        generation = step.generation;
        next[id] = step.entry;
        desired.delete(id);
      }
      for (const want of desired.values()) {
        const step = reconcileOne(enqueue, undefined, want, generation);
        generation = step.generation;
        next[want.clientId] = step.entry;
      }
      enqueue.assign({ clients: next, generation });
    }),
    upsert: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'client.upsert') return;
      const id = event.client.clientId;
      const step = reconcileOne(enqueue, context.clients[id], event.client, context.generation);
      enqueue.assign({ clients: { ...context.clients, [id]: step.entry }, generation: step.generation });
    }),
    revoke: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'client.revoke') return;
      const current = context.clients[event.clientId];
      if (current) enqueue.sendTo(current.actorId, { type: 'policy.revoke' });
    }),
    forward: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'client.event') return;
      const c = context.clients[event.clientId];
      if (c) enqueue.sendTo(c.actorId, event.event);
    }),
    updateRelays: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'relays.update') return;
      let generation = context.generation;
      const next = { ...context.relays };
      const gone = new Set(event.disconnected);
      for (const id of gone) {
        const r = next[id];
        if (!r) continue;
        enqueue.sendTo(r.actorId, { type: 'relay.remove' });
        delete next[id];
      }
      const listed = new Set<string>();
      for (const want of event.connected) {
        listed.add(want.relayId);
        const current = next[want.relayId];
        if (current && current.key === want.key) continue;
        // New, or new credentials / addresses: a fresh allocation replaces the old one.
        if (current) enqueue.stopChild(current.actorId);
        generation++;
        const actorId = relayActorId(want.relayId, generation);
        enqueue.spawnChild('relayAllocation', { id: actorId, input: { relayId: want.relayId } });
        next[want.relayId] = { actorId, key: want.key };
      }
      for (const [id, r] of Object.entries(next)) {
        if (!listed.has(id) && !gone.has(id)) enqueue.sendTo(r.actorId, { type: 'relay.poke' });
      }
      enqueue.assign({ relays: next, generation });
    }),
    forwardNameservers: sendTo(NAMESERVERS_ACTOR_ID, ({ event }) =>
      event.type === 'nameservers.event' ? event.event : { type: 'nameserver.reevaluate' as const },
    ),
    /** A child that ended or failed is stopped, so the actor system lets go of it. */
    stopEnded: enqueueActions(({ event, enqueue }) => {
      const actorId = (event as { actorId?: string }).actorId;
      if (actorId) enqueue.stopChild(actorId);
    }),
    forwardRelay: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'relay.event') return;
      const r = context.relays[event.relayId];
      if (r) enqueue.sendTo(r.actorId, event.event);
    }),
    forgetRelay: assign({
      relays: ({ context, event }) => {
        const actorId = (event as { actorId?: string }).actorId;
        if (!actorId || !isRelayActor(actorId)) return context.relays;
        const id = relayIdOf(actorId);
        if (context.relays[id]?.actorId !== actorId) return context.relays;
        const { [id]: _gone, ...rest } = context.relays;
        return rest;
      },
    }),
    forgetChild: assign({
      clients: ({ context, event }) => {
        const actorId = (event as { actorId?: string }).actorId;
        if (!actorId || isRelayActor(actorId)) return context.clients;
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
          ? [...context.failures, isRelayActor(actorId) ? actorId : clientIdOf(actorId)].slice(
              -MAX_FAILURES_KEPT,
            )
          : context.failures;
      },
    }),
    cleanupFailedChild: enqueueActions(({ context, event, enqueue }) => {
      const actorId = (event as { actorId?: string }).actorId;
      if (!actorId) return;
      if (isRelayActor(actorId)) {
        const id = relayIdOf(actorId);
        if (context.relays[id]?.actorId === actorId) cleanupRelay(enqueue, id);
        return;
      }
      const id = clientIdOf(actorId);
      if (context.clients[id]?.actorId === actorId) cleanup(enqueue, id, false);
    }),
    stopAllClients: enqueueActions(({ context, enqueue }) => {
      for (const [id, c] of Object.entries(context.clients)) {
        enqueue.stopChild(c.actorId);
        // A Firezone client hears "goodbye" over the tunnel (spec/portal-protocol.md §1.10).
        cleanup(enqueue, id, true);
      }
      for (const [id, r] of Object.entries(context.relays)) {
        enqueue.stopChild(r.actorId);
        cleanupRelay(enqueue, id);
      }
      enqueue.assign({ clients: {}, relays: {} });
    }),
  },
}).createMachine({
  id: 'gatewaySupervisor',
  description:
    'The root of the actor system: one client-connection actor per authorized client. Standalone mode ' +
    'applies the whole desired policy at once (spawn new clients, revoke missing ones, update grants, ' +
    'replace a client whose keys, tunnel addresses or ICE credentials changed); portal mode upserts or ' +
    'revokes one client per message. One relay-allocation actor runs per TURN relay the portal offers: ' +
    'new relays are allocated, disconnected ones freed, changed ones replaced, unmentioned ones poked. ' +
    'Client connections are not restarted: one that fails is cleaned out ' +
    'of the router and forgotten, so a failure never reaches another client. The nameserver selector ' +
    'runs for the whole life of the gateway and is started again 1 s after it fails.',
  context: ({ input }) => ({
    clients: {},
    relays: {},
    generation: 0,
    failures: [],
    nameservers: input?.nameservers ?? [],
    nameserverRestarts: 0,
  }),
  initial: 'running',
  states: {
    running: {
      type: 'parallel',
      states: {
        nameservers: {
          initial: 'watching',
          states: {
            watching: {
              // While the selector restarts there is nobody to tell; the new one probes anyway.
              on: { 'nameservers.event': { actions: 'forwardNameservers' } },
              invoke: {
                id: NAMESERVERS_ACTOR_ID,
                src: 'nameserverSelector',
                input: ({ context }) => ({ servers: context.nameservers }),
                onError: {
                  target: 'restarting',
                  actions: assign({ nameserverRestarts: ({ context }) => context.nameserverRestarts + 1 }),
                },
              },
            },
            restarting: {
              after: { [NAMESERVER_RESTART_MS]: { target: 'watching' } },
            },
          },
        },
      },
      on: {
        'policy.apply': { actions: 'reconcile' },
        'client.upsert': { actions: 'upsert' },
        'client.revoke': { actions: 'revoke' },
        'client.event': { actions: 'forward' },
        'relays.update': { actions: 'updateRelays' },
        'relay.event': { actions: 'forwardRelay' },
        'xstate.done.actor.*': { actions: ['forgetChild', 'forgetRelay', 'stopEnded'] },
        'xstate.error.actor.*': {
          actions: ['cleanupFailedChild', 'recordFailure', 'forgetChild', 'forgetRelay', 'stopEnded'],
        },
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
