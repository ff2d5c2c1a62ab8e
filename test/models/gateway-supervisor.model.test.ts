import { afterAll, describe, expect, it } from 'vitest';
import { type AnyActorRef, createActor, fromPromise, type SnapshotFrom } from 'xstate';
import { clientConnectionMachine } from '../../src/machines/client-connection.machine.js';
import {
  clientActorId,
  type DesiredClient,
  type GatewaySupervisorEvent,
  gatewaySupervisorMachine,
  NAMESERVER_RESTART_MS,
  NAMESERVERS_ACTOR_ID,
  relayActorId,
} from '../../src/machines/gateway-supervisor.machine.js';
import {
  type NameserverProbe,
  nameserverSelectorMachine,
} from '../../src/machines/nameserver-selector.machine.js';
import { relayAllocationMachine } from '../../src/machines/relay-allocation.machine.js';
import type { ClientId, ResourceId } from '../../src/wire/ids.js';
import type { Grant } from '../../src/wire/policy.js';
import {
  applyStep,
  eventOfKey,
  FakeInvokes,
  gateCoverage,
  type ModelEvent,
  settle,
  TestClock,
  TransitionRecorder,
  transitionPaths,
} from './harness.js';

/**
 * The gateway supervisor, every transition: standalone policies (new client, changed identity,
 * changed grants, missing client, unchanged), portal upserts and revocations, client events,
 * relay lists (new, changed, disconnected, unmentioned) and relay events, the nameserver
 * selector failing and being restarted, children that finish or fail, and the stop.
 *
 * The graph is pure: it does not run children. A child that finishes or fails is a graph event
 * `xstate.done.actor.<id>` / `xstate.error.actor.<id>` (so the graph forgets the child as the real
 * supervisor does) that carries in `model.cause` what really makes the child finish or fail; the
 * replay sends the cause to the real supervisor (with the child's fake actions set to throw for
 * an error) and the real child produces the done / error event. Every step is then checked
 * against the graph's state (value and serialized context) and the observable effects.
 */

type Snap = SnapshotFrom<typeof gatewaySupervisorMachine>;

interface Model {
  /** What the step does, for the test name. */
  readonly label: string;
  /** How the graph's done / error event comes about for real. */
  readonly kind?: 'done' | 'error' | 'spawn-error';
  readonly cause?: GatewaySupervisorEvent;
  /** Which fake throws while the cause is sent. */
  readonly fail?: { readonly client?: string; readonly relay?: string; readonly selector?: boolean };
  /** A client that ends by itself: its `endReason`. */
  readonly endReason?: string;
  /** Events children must receive in this step (by client / relay id before the step). */
  readonly delivers?: readonly {
    readonly client?: string;
    readonly relay?: string;
    readonly nameservers?: true;
    readonly type: string;
  }[];
  /** A child that fails as it starts. */
  readonly spawnFailed?: { readonly client?: string; readonly relay?: string };
}
type Event = ModelEvent & { model: Model };

const NAMESERVERS = ['10.53.0.1'];
const INPUT = { nameservers: NAMESERVERS };
const CLIENTS = ['c1', 'c2'] as const;
const grant = (id: string): Grant => ({
  resource: { type: 'internet', id: id as ResourceId },
  expiresAtMs: undefined,
});
const GRANTS: Record<string, readonly Grant[]> = { g1: [grant('res-1')], g2: [grant('res-2')], none: [] };
const RESTART_AFTER = `xstate.after.${NAMESERVER_RESTART_MS}.gatewaySupervisor.running.nameservers.restarting`;

const desired = (clientId: string, identity: string, grantsKey: string): DesiredClient => ({
  clientId: clientId as ClientId,
  identity,
  grantsKey,
  grants: GRANTS[grantsKey] ?? [],
});

function desiredOf(s: Snap): DesiredClient[] {
  return Object.entries(s.context.clients).map(([id, c]) => desired(id, c.identity, c.grantsKey));
}

const ev = (e: GatewaySupervisorEvent, model: Model): Event => ({ ...e, model }) as Event;
/** A child finishing for real because of `cause`. */
const done = (actorId: string, output: unknown, model: Model & { cause: GatewaySupervisorEvent }): Event => ({
  type: `xstate.done.actor.${actorId}`,
  actorId,
  output,
  model: { ...model, kind: 'done' },
});
/** A child failing for real: `cause` sent while a fake of the child throws. */
const failure = (actorId: string, model: Model & { cause: GatewaySupervisorEvent }): Event => ({
  type: `xstate.error.actor.${actorId}`,
  actorId,
  error: new Error('fake action failed'),
  model: { kind: 'error', ...model },
});

function clientEvents(s: Snap): Event[] {
  const out: Event[] = [];
  const clients = s.context.clients;
  const all = desiredOf(s);
  const present = Object.keys(clients).sort();
  const newcomer = CLIENTS.find((c) => !clients[c]);
  out.push(ev({ type: 'policy.apply', clients: all }, { label: 'apply: unchanged' }));
  if (newcomer) {
    const want = desired(newcomer, 'A', 'g1');
    out.push(ev({ type: 'policy.apply', clients: [...all, want] }, { label: `apply: new ${newcomer}` }));
    out.push(ev({ type: 'client.upsert', client: want }, { label: `upsert: new ${newcomer}` }));
    out.push(
      failure(clientActorId(newcomer, s.context.generation + 1), {
        label: `upsert: new ${newcomer} whose installClient throws`,
        kind: 'spawn-error',
        cause: { type: 'client.upsert', client: want },
        fail: { client: newcomer },
        spawnFailed: { client: newcomer },
      }),
    );
    out.push(
      ev({ type: 'client.revoke', clientId: newcomer as ClientId }, { label: `revoke: unknown ${newcomer}` }),
    );
    out.push(
      ev(
        { type: 'client.event', clientId: newcomer as ClientId, event: { type: 'control.goodbye' } },
        { label: `event for unknown ${newcomer}: dropped` },
      ),
    );
  }
  // c1 changes identity and grants; whoever comes first ends (by itself or by failing) and gets events.
  const c1 = clients.c1;
  if (c1) {
    const identity = c1.identity === 'A' ? 'B' : 'A';
    const grantsKey = c1.grantsKey === 'g1' ? 'g2' : 'g1';
    const others = all.filter((c) => c.clientId !== 'c1');
    const newIdentity = desired('c1', identity, c1.grantsKey);
    const newGrants = desired('c1', c1.identity, grantsKey);
    out.push(
      ev(
        { type: 'policy.apply', clients: [...others, newIdentity] },
        { label: `apply: c1 identity ${c1.identity}→${identity}` },
      ),
      ev(
        { type: 'client.upsert', client: newIdentity },
        { label: `upsert: c1 identity ${c1.identity}→${identity}` },
      ),
      ev(
        { type: 'policy.apply', clients: [newGrants, ...others] },
        {
          label: `apply: c1 grants ${c1.grantsKey}→${grantsKey}`,
          delivers: [{ client: 'c1', type: 'policy.update' }],
        },
      ),
      ev(
        { type: 'client.upsert', client: newGrants },
        {
          label: `upsert: c1 grants ${c1.grantsKey}→${grantsKey}`,
          delivers: [{ client: 'c1', type: 'policy.update' }],
        },
      ),
    );
  }
  const target = present[0];
  const t = target ? clients[target] : undefined;
  if (target && t) {
    const id = target as ClientId;
    const output = (endReason: string) => ({ clientId: target, endReason });
    const others = desiredOf(s).filter((c) => c.clientId !== target);
    out.push(
      done(t.actorId, output('revoked'), {
        label: `revoke: ${target}`,
        cause: { type: 'client.revoke', clientId: id },
        endReason: 'revoked',
        delivers: [{ client: target, type: 'policy.revoke' }],
      }),
      done(t.actorId, output('revoked'), {
        label: `apply: ${target} missing`,
        cause: { type: 'policy.apply', clients: others },
        endReason: 'revoked',
        delivers: [{ client: target, type: 'policy.revoke' }],
      }),
      done(t.actorId, output('revoked'), {
        label: `upsert: ${target} without grants`,
        cause: { type: 'client.upsert', client: desired(target, t.identity, 'none') },
        endReason: 'revoked',
        delivers: [{ client: target, type: 'policy.update' }],
      }),
      done(t.actorId, output('goodbye'), {
        label: `event: ${target} says goodbye`,
        cause: { type: 'client.event', clientId: id, event: { type: 'control.goodbye' } },
        endReason: 'goodbye',
        delivers: [{ client: target, type: 'control.goodbye' }],
      }),
      done(t.actorId, output('expired'), {
        label: `event: ${target}'s grants expired`,
        cause: {
          type: 'client.event',
          clientId: id,
          event: {
            type: 'grants.expired',
            resources: ['res-1' as ResourceId, 'res-2' as ResourceId],
            remaining: 0,
          },
        },
        endReason: 'expired',
        delivers: [{ client: target, type: 'grants.expired' }],
      }),
      failure(t.actorId, {
        label: `event: ${target}'s feedCandidates throws`,
        cause: { type: 'client.event', clientId: id, event: { type: 'ice.candidates', candidates: ['c'] } },
        fail: { client: target },
        delivers: [{ client: target, type: 'ice.candidates' }],
      }),
      ev(
        { type: 'client.event', clientId: id, event: { type: 'wg.handshake-started', initiator: false } },
        { label: `event: ${target} handshake`, delivers: [{ client: target, type: 'wg.handshake-started' }] },
      ),
      ev(
        { type: 'client.event', clientId: id, event: { type: 'ice.candidates', candidates: ['c'] } },
        { label: `event: ${target} candidates`, delivers: [{ client: target, type: 'ice.candidates' }] },
      ),
    );
  }
  return out;
}

function relayEvents(s: Snap): Event[] {
  const r1 = s.context.relays.r1;
  if (!r1)
    return [
      ev(
        { type: 'relays.update', connected: [{ relayId: 'r1', key: 'k1' }], disconnected: [] },
        { label: 'relays: new r1' },
      ),
      failure(relayActorId('r1', s.context.generation + 1), {
        label: 'relays: new r1 whose installRelay throws',
        kind: 'spawn-error',
        cause: { type: 'relays.update', connected: [{ relayId: 'r1', key: 'k1' }], disconnected: [] },
        fail: { relay: 'r1' },
        spawnFailed: { relay: 'r1' },
      }),
      ev(
        { type: 'relay.event', relayId: 'r1', event: { type: 'relay.bound' } },
        { label: 'event for unknown r1: dropped' },
      ),
      ev(
        { type: 'relays.update', connected: [], disconnected: ['r1'] },
        { label: 'relays: unknown r1 disconnected' },
      ),
    ];
  const key = r1.key === 'k1' ? 'k2' : 'k1';
  const output = { relayId: 'r1', lastError: undefined };
  return [
    ev(
      { type: 'relays.update', connected: [{ relayId: 'r1', key: r1.key }], disconnected: [] },
      { label: 'relays: r1 unchanged' },
    ),
    ev(
      { type: 'relays.update', connected: [{ relayId: 'r1', key }], disconnected: [] },
      { label: `relays: r1 key ${r1.key}→${key}` },
    ),
    ev(
      { type: 'relays.update', connected: [], disconnected: [] },
      { label: 'relays: r1 unmentioned', delivers: [{ relay: 'r1', type: 'relay.poke' }] },
    ),
    ev(
      { type: 'relays.update', connected: [], disconnected: ['r1'] },
      { label: 'relays: r1 disconnected', delivers: [{ relay: 'r1', type: 'relay.remove' }] },
    ),
    ev(
      { type: 'relay.event', relayId: 'r1', event: { type: 'relay.bound' } },
      { label: 'event: r1 bound', delivers: [{ relay: 'r1', type: 'relay.bound' }] },
    ),
    done(r1.actorId, output, {
      label: 'event: r1 removed',
      cause: { type: 'relay.event', relayId: 'r1', event: { type: 'relay.remove' } },
      delivers: [{ relay: 'r1', type: 'relay.remove' }],
    }),
    done(
      r1.actorId,
      { relayId: 'r1', lastError: 'allocate: 401' },
      {
        label: 'event: r1 refuses our credentials',
        cause: {
          type: 'relay.event',
          relayId: 'r1',
          event: { type: 'relay.failed', request: 'allocate', reason: 'auth', message: '401' },
        },
        delivers: [{ relay: 'r1', type: 'relay.failed' }],
      },
    ),
    failure(r1.actorId, {
      label: 'event: r1 removed, freeRelay throws',
      cause: { type: 'relay.event', relayId: 'r1', event: { type: 'relay.remove' } },
      fail: { relay: 'r1' },
      delivers: [{ relay: 'r1', type: 'relay.remove' }],
    }),
  ];
}

const UNRESPONSIVE = { type: 'nameserver.unresponsive', server: NAMESERVERS[0] ?? '' } as const;

function events(s: Snap): Event[] {
  if (s.status !== 'active') return [];
  const stop = ev({ type: 'gateway.stop' }, { label: 'stop' });
  if (s.matches({ running: { nameservers: 'restarting' } }))
    return [
      { type: RESTART_AFTER, model: { label: 'selector restarted' } },
      // `nameservers.event` has no transition here (nobody to tell): nothing to walk.
      stop,
    ];
  return [
    ...clientEvents(s),
    ...relayEvents(s),
    ev(
      { type: 'nameservers.event', event: UNRESPONSIVE },
      { label: 'nameservers: forwarded', delivers: [{ nameservers: true, type: UNRESPONSIVE.type }] },
    ),
    {
      type: `xstate.error.actor.${NAMESERVERS_ACTOR_ID}`,
      actorId: NAMESERVERS_ACTOR_ID,
      error: new Error('selectionChanged failed'),
      model: {
        label: 'nameservers: selector fails',
        cause: { type: 'nameservers.event', event: UNRESPONSIVE },
        fail: { selector: true },
        delivers: [{ nameservers: true, type: UNRESPONSIVE.type }],
      },
    },
    stop,
  ];
}

/** Generation counters, failures and restarts only grow: left out; the sets of clients and relays stay. */
const serializeState = (s: Snap) =>
  JSON.stringify([
    s.value,
    Object.entries(s.context.clients)
      .map(([id, c]) => `${id}:${c.identity}:${c.grantsKey}`)
      .sort(),
    Object.entries(s.context.relays)
      .map(([id, r]) => `${id}:${r.key}`)
      .sort(),
  ]);

const paths = transitionPaths(gatewaySupervisorMachine, { events, serializeState, input: INPUT });
const walked = new Set<string>();

interface Effect {
  readonly fn: string;
  readonly id: string;
  readonly goodbye?: boolean;
  readonly endReason?: string;
  readonly cmd?: string;
}

/** The supervisor with recording fakes for every side effect, and switches that make them throw. */
function world() {
  const clock = new TestClock();
  const effects: Effect[] = [];
  const fail = { clients: new Set<string>(), relays: new Set<string>(), selector: false };
  const thrower = (what: string) => {
    throw new Error(`${what} failed (model)`);
  };
  const machine = gatewaySupervisorMachine.provide({
    actors: {
      clientConnection: clientConnectionMachine.provide({
        actions: {
          installClient: ({ context }) => {
            effects.push({ fn: 'installClient', id: context.clientId });
            if (fail.clients.has(context.clientId)) thrower('installClient');
          },
          updateGrants: ({ context }) => effects.push({ fn: 'updateGrants', id: context.clientId }),
          feedCandidates: ({ context }) => {
            effects.push({ fn: 'feedCandidates', id: context.clientId });
            if (fail.clients.has(context.clientId)) thrower('feedCandidates');
          },
          removeClient: ({ context }) =>
            effects.push({ fn: 'removeClient', id: context.clientId, endReason: context.endReason ?? '' }),
          refuseNat: ({ context }) => effects.push({ fn: 'refuseNat', id: context.clientId }),
          natBindingFailed: ({ context }) => effects.push({ fn: 'natBindingFailed', id: context.clientId }),
        },
      }),
      relayAllocation: relayAllocationMachine.provide({
        actions: {
          installRelay: ({ context }) => {
            effects.push({ fn: 'installRelay', id: context.relayId });
            if (fail.relays.has(context.relayId)) thrower('installRelay');
          },
          command: ({ context }, { cmd }) => effects.push({ fn: 'command', id: context.relayId, cmd }),
          freeRelay: ({ context }) => {
            effects.push({ fn: 'freeRelay', id: context.relayId });
            if (fail.relays.has(context.relayId)) thrower('freeRelay');
          },
        },
      }),
      nameserverSelector: nameserverSelectorMachine.provide({
        // Rounds never end: the selector stays in `probing`, where `unresponsive` reaches selectionChanged.
        actors: {
          probeRound: fromPromise<readonly NameserverProbe[], { servers: readonly string[] }>(
            () => new Promise(() => undefined),
          ),
        },
        actions: {
          selectionChanged: () => {
            effects.push({ fn: 'selectionChanged', id: NAMESERVERS_ACTOR_ID });
            if (fail.selector) thrower('selectionChanged');
          },
        },
      }),
    },
    actions: {
      cleanupClient: (_, { clientId, goodbye }) =>
        effects.push({ fn: 'cleanupClient', id: clientId, goodbye }),
      cleanupRelay: (_, { relayId }) => effects.push({ fn: 'cleanupRelay', id: relayId }),
    },
  });
  const recorder = new TransitionRecorder();
  /** Events the children received: `[actor id, event type]`. */
  const received: [string, string][] = [];
  const actor = createActor(machine, {
    clock,
    input: INPUT,
    inspect: (e) => {
      recorder.inspect(e);
      if (e.type === '@xstate.event' && e.actorRef !== actor && e.event.type !== 'xstate.init')
        received.push([(e.actorRef as AnyActorRef).id, e.event.type]);
    },
  });
  recorder.root = actor;
  return { clock, effects, fail, actor, recorder, received };
}

type World = ReturnType<typeof world>;

const isActive = (ref: AnyActorRef) => (ref.getSnapshot() as { status: string }).status === 'active';

async function replayStep(w: World, event: Event): Promise<void> {
  const { model, ...rest } = event;
  if (!model.cause) {
    await applyStep({ event: rest }, { actor: w.actor, clock: w.clock, invokes: new FakeInvokes() });
    return;
  }
  if (model.fail?.client) w.fail.clients.add(model.fail.client);
  if (model.fail?.relay) w.fail.relays.add(model.fail.relay);
  if (model.fail?.selector) w.fail.selector = true;
  w.actor.send(model.cause);
  await settle();
  w.fail.clients.clear();
  w.fail.relays.clear();
  w.fail.selector = false;
}

/** What one step must have done, from the supervisor's context before and after and the effects. */
function checkStep(
  w: World,
  before: Snap,
  event: Event,
  effects: readonly Effect[],
  log: readonly string[],
  received: readonly [string, string][],
) {
  const s = w.actor.getSnapshot();
  const model = event.model;
  const B = before.context;
  const A = s.context;
  const stopped = s.value === 'stopped';
  const count = (fn: string, id?: string, extra: Partial<Effect> = {}) =>
    effects.filter(
      (e) =>
        e.fn === fn &&
        (id === undefined || e.id === id) &&
        Object.entries(extra).every(([k, v]) => e[k as keyof Effect] === v),
    ).length;
  const errorKind = model.kind === 'error' || model.kind === 'spawn-error';

  // The transitions taken: the graph's event (or, for a child, the wildcard that handles it).
  const taken = log.map(eventOfKey);
  if (model.kind === 'done') expect(taken).toContain('xstate.done.actor.*');
  else if (event.type === `xstate.error.actor.${NAMESERVERS_ACTOR_ID}`) expect(taken).toContain(event.type);
  else if (errorKind) expect(taken).toContain('xstate.error.actor.*');
  else expect(taken).toContain(event.type);
  if (model.cause) expect(taken).toContain(model.cause.type);
  if (event.type === 'gateway.stop') expect(taken).toEqual(['gateway.stop', '(always)']);

  // Clients: spawned, replaced, regranted, ended.
  let installs = 0;
  let cleanups = 0;
  let updates = 0;
  let removes = 0;
  const failedNow: string[] = [];
  for (const id of new Set([...Object.keys(B.clients), ...Object.keys(A.clients)])) {
    const b = B.clients[id];
    const a = A.clients[id];
    if (a && a.actorId !== b?.actorId) {
      expect(count('installClient', id)).toBe(1);
      installs++;
    }
    if (b && a && a.actorId !== b.actorId) {
      // Replaced: stopped from outside (no exit actions), so the supervisor cleans up; no goodbye.
      expect(count('cleanupClient', id, { goodbye: false })).toBe(1);
      expect(count('removeClient', id)).toBe(0);
      cleanups++;
    }
    if (b && a && a.actorId === b.actorId && a.grantsKey !== b.grantsKey) {
      expect(count('updateGrants', id)).toBe(1);
      updates++;
    }
    if (b && !a) {
      if (stopped) {
        expect(count('cleanupClient', id, { goodbye: true })).toBe(1);
        cleanups++;
      } else if (errorKind) {
        expect(count('cleanupClient', id, { goodbye: false })).toBe(1);
        failedNow.push(id);
        cleanups++;
      } else {
        expect(model.kind).toBe('done');
        expect(count('removeClient', id, { endReason: model.endReason ?? '' })).toBe(1);
        removes++;
      }
    }
  }
  const spawnFailedClient = model.spawnFailed?.client;
  if (spawnFailedClient) {
    // It was spawned and failed at once: cleaned up, recorded, forgotten.
    expect(B.clients[spawnFailedClient]).toBeUndefined();
    expect(A.clients[spawnFailedClient]).toBeUndefined();
    expect(count('installClient', spawnFailedClient)).toBe(1);
    expect(count('cleanupClient', spawnFailedClient, { goodbye: false })).toBe(1);
    failedNow.push(spawnFailedClient);
    installs++;
    cleanups++;
  }
  expect(count('installClient')).toBe(installs);
  expect(count('cleanupClient')).toBe(cleanups);
  expect(count('updateGrants')).toBe(updates);
  expect(count('removeClient')).toBe(removes);
  expect(count('feedCandidates')).toBe(model.delivers?.some((d) => d.type === 'ice.candidates') ? 1 : 0);
  expect(count('refuseNat') + count('natBindingFailed')).toBe(0);

  // Relays: allocated, replaced, freed (by themselves) or cleaned up (failed, stopped).
  let relayInstalls = 0;
  let probes = 0;
  let relayCleanups = 0;
  let frees = 0;
  for (const id of new Set([...Object.keys(B.relays), ...Object.keys(A.relays)])) {
    const b = B.relays[id];
    const a = A.relays[id];
    if (a && a.actorId !== b?.actorId) {
      expect(count('installRelay', id)).toBe(1);
      expect(count('command', id, { cmd: 'probe' })).toBe(1);
      relayInstalls++;
      probes++;
    }
    if (b && !a) {
      if (stopped) {
        expect(count('cleanupRelay', id)).toBe(1);
        relayCleanups++;
      } else if (errorKind) {
        // freeRelay threw on the way to `freed`: the supervisor frees it instead.
        expect(count('freeRelay', id)).toBe(1);
        expect(count('cleanupRelay', id)).toBe(1);
        failedNow.push(b.actorId);
        frees++;
        relayCleanups++;
      } else {
        expect(count('freeRelay', id)).toBe(1);
        frees++;
      }
    }
  }
  const spawnFailedRelay = model.spawnFailed?.relay;
  if (spawnFailedRelay) {
    expect(B.relays[spawnFailedRelay]).toBeUndefined();
    expect(A.relays[spawnFailedRelay]).toBeUndefined();
    expect(count('installRelay', spawnFailedRelay)).toBe(1);
    expect(count('cleanupRelay', spawnFailedRelay)).toBe(1);
    failedNow.push(relayActorId(spawnFailedRelay, A.generation));
    relayInstalls++;
    relayCleanups++;
  }
  expect(count('installRelay')).toBe(relayInstalls);
  expect(count('cleanupRelay')).toBe(relayCleanups);
  expect(count('freeRelay')).toBe(frees);
  // A new relay probes; `relay.bound` makes a probing relay allocate (once: then it is allocating).
  const allocates = count('command', undefined, { cmd: 'allocate' });
  expect(allocates).toBeLessThanOrEqual(model.delivers?.some((d) => d.type === 'relay.bound') ? 1 : 0);
  expect(count('command')).toBe(probes + allocates);

  // Failures: exactly the children that failed in this step.
  expect(A.failures).toEqual([...B.failures, ...failedNow]);

  // What the children were told: exactly this (stopping one is not telling it anything).
  const told = received.filter(([, type]) => type !== 'xstate.stop');
  expect(told).toHaveLength(model.delivers?.length ?? 0);
  for (const d of model.delivers ?? []) {
    const actorId = d.nameservers
      ? NAMESERVERS_ACTOR_ID
      : d.client
        ? B.clients[d.client]?.actorId
        : B.relays[d.relay ?? '']?.actorId;
    expect(received).toContainEqual([actorId, d.type]);
  }

  // The nameserver selector: forwarded to while watching, restarted a second after it failed.
  const watching = s.matches({ running: { nameservers: 'watching' } });
  const restarting = s.matches({ running: { nameservers: 'restarting' } });
  const wasRestarting = before.matches({ running: { nameservers: 'restarting' } });
  expect(count('selectionChanged')).toBe(
    event.type === 'nameservers.event' && !wasRestarting ? 1 : model.fail?.selector ? 1 : 0,
  );
  if (restarting && !wasRestarting) {
    expect(A.nameserverRestarts).toBe(B.nameserverRestarts + 1);
    expect(w.clock.nextDeadline()).toBe(w.clock.now() + NAMESERVER_RESTART_MS);
  } else expect(A.nameserverRestarts).toBe(B.nameserverRestarts);
  if (restarting) expect(w.clock.nextDeadline()).toBeDefined();
  else expect(w.clock.nextDeadline()).toBeUndefined();

  // Children that ended or failed are stopped and let go of (no leak under client churn).
  expect(Object.values(s.children).every((ref) => ref && isActive(ref as AnyActorRef))).toBe(true);
  // Live children are exactly the supervised ones.
  const live = Object.entries(s.children)
    .filter(([, ref]) => ref && isActive(ref as AnyActorRef))
    .map(([id]) => id)
    .sort();
  const supervised = [
    ...Object.values(A.clients).map((c) => c.actorId),
    ...Object.values(A.relays).map((r) => r.actorId),
    ...(watching ? [NAMESERVERS_ACTOR_ID] : []),
  ].sort();
  expect(live).toEqual(supervised);
  if (watching) {
    const selector = s.children[NAMESERVERS_ACTOR_ID] as AnyActorRef;
    expect((selector.getSnapshot() as { context: { servers: unknown } }).context.servers).toEqual(
      NAMESERVERS,
    );
  }
  if (stopped) {
    expect(s.status).toBe('done');
    expect(A.clients).toEqual({});
    expect(A.relays).toEqual({});
    expect(live).toEqual([]);
  } else expect(s.status).toBe('active');
}

describe('model: gateway supervisor', () => {
  it('has paths', () => expect(paths.length).toBeGreaterThan(50));

  for (const path of paths) {
    const last = path.steps.at(-1)?.event as Event | undefined;
    const from = path.steps.at(-2)?.key ?? 'start';
    it(`${path.description}: ${last?.model.label} [from ${from}]`, async () => {
      const w = world();
      w.actor.start();
      await settle();
      expect(w.effects).toEqual([]);
      expect(Object.keys(w.actor.getSnapshot().children)).toEqual([NAMESERVERS_ACTOR_ID]);
      for (const step of path.steps) {
        const before = w.actor.getSnapshot();
        const fromEffect = w.effects.length;
        const fromLog = w.recorder.log.length;
        const fromReceived = w.received.length;
        const t0 = w.clock.now();
        const event = step.event as Event;
        await replayStep(w, event);
        const s = w.actor.getSnapshot();
        expect(s.value).toEqual(step.value);
        expect(serializeState(s)).toBe(step.key);
        if (event.type === RESTART_AFTER) expect(w.clock.now()).toBe(t0 + NAMESERVER_RESTART_MS);
        else expect(w.clock.now()).toBe(t0);
        checkStep(
          w,
          before,
          event,
          w.effects.slice(fromEffect),
          w.recorder.log.slice(fromLog),
          w.received.slice(fromReceived),
        );
      }
      w.actor.stop();
      for (const k of w.recorder.walked) walked.add(k);
    });
  }

  afterAll(() => {
    gateCoverage('gateway-supervisor', gatewaySupervisorMachine, walked, paths.length);
  });
});
