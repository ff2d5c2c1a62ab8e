import { afterAll, describe, expect, it } from 'vitest';
import { type AnyActorRef, createActor, type SnapshotFrom } from 'xstate';
import {
  CANDIDATE_TIMEOUT_MS,
  type ClientConnectionInput,
  clientConnectionMachine,
  DISCONNECT_TIMEOUT_MS,
  MAX_NAT_BINDINGS,
} from '../../src/machines/client-connection.machine.js';
import { dnsResourceNatMachine, NAT_BINDING_IDLE_MS } from '../../src/machines/dns-resource-nat.machine.js';
import type { ClientId, ResourceId } from '../../src/wire/ids.js';
import type { Grant } from '../../src/wire/policy.js';
import {
  applyStep,
  FakeInvokes,
  gateCoverage,
  type ModelEvent,
  type ModelPath,
  settle,
  TestClock,
  TransitionRecorder,
  transitionPaths,
} from './harness.js';

/**
 * One client connection, every transition, for a plain WireGuard peer (no ICE: the path is
 * `direct`) and for a portal client (ICE: `checking` ⇄ `selected` ⇄ `disconnected`): the tunnel
 * region through handshakes, sessions, idleness and failures; the path region through pair
 * selection, disconnection and both timeouts; grants that change, partly expire and all expire;
 * revocation and goodbye; ICE candidates; DNS-resource NAT bindings that are spawned, fed again,
 * end after their idle time or fail. The walked sets of both inputs are merged for the gate.
 *
 * The graph is pure: it does not run the spawned NAT bindings. A binding that ends or fails is a
 * graph event `xstate.done.actor.<id>` / `xstate.error.actor.<id>` (so the graph forgets it as the
 * real machine does); the replay makes the real child end (the clock runs for the binding's idle
 * time: offered only while the path region has no timer of its own) or fail (its lookup answers
 * and the fake `applyNat` throws for {@link FAILING_DOMAIN}), and the child's own done / error
 * event reaches the connection. Every step is checked against the graph's state (value and
 * serialized context) and the observable effects.
 */

type Snap = SnapshotFrom<typeof clientConnectionMachine>;

const grant = (id: string): Grant => ({
  resource: { type: 'internet', id: id as ResourceId },
  expiresAtMs: undefined,
});
const GRANTS: readonly Grant[] = [grant('res-1'), grant('res-2')];
const PLAIN: ClientConnectionInput = { clientId: 'peer-1' as ClientId, grants: GRANTS };
const PORTAL: ClientConnectionInput = {
  clientId: 'client-1' as ClientId,
  grants: GRANTS,
  ice: {
    local: { username: 'gwuf', password: 'gateway-password-0123456789' },
    remote: { username: 'cluf', password: 'client-password-0123456789' },
  },
};

/** A name whose binding answers (and ends after its idle time); the client announces it in capitals. */
const GOOD_DOMAIN = 'app.example.test';
/** A name whose binding fails: the fake `applyNat` throws for it. */
const FAILING_DOMAIN = 'broken.example.test';
/** Bindings spawned per path at most (bounds `natGeneration`). */
const MAX_GENERATION = 2;
const DNS_RESOURCE = 'res-dns' as ResourceId;
const PROXY_A = ['100.96.0.1'];
const PROXY_B = ['100.96.0.2'];
const REAL_ADDRS = ['192.0.2.10'];
const CANDIDATE = 'candidate:1 1 udp 2130706431 198.51.100.7 52000 typ host';

const CANDIDATE_TIMEOUT = 'xstate.after.candidateTimeout.clientConnection.live.path.checking';
const DISCONNECT_TIMEOUT = 'xstate.after.disconnectTimeout.clientConnection.live.path.disconnected';

/** How a NAT binding's graph event comes about for real. */
interface NatModel {
  readonly kind: 'idle' | 'fail';
  readonly domain: string;
}
type Event = ModelEvent & { model?: NatModel };

interface Value {
  readonly live?: { readonly tunnel: string; readonly path: string };
}
const regions = (s: { value: unknown }) => (s.value as Value).live;

function natEvents(s: Snap): Event[] {
  const out: Event[] = [];
  const c = s.context;
  const bindings = c.natBindings;
  const canSpawn = c.natGeneration < MAX_GENERATION;
  const good = bindings[GOOD_DOMAIN];
  if (good || canSpawn) {
    out.push({
      type: 'control.assigned-ips',
      resourceId: DNS_RESOURCE,
      domain: GOOD_DOMAIN.toUpperCase(),
      proxyIps: good ? PROXY_B : PROXY_A,
    });
  }
  if (!bindings[FAILING_DOMAIN] && canSpawn) {
    out.push({
      type: 'control.assigned-ips',
      resourceId: DNS_RESOURCE,
      domain: FAILING_DOMAIN,
      proxyIps: PROXY_A,
    });
  }
  // The idle end needs 15 minutes of clock: only while the path region has no timer running.
  const path = regions(s)?.path;
  if (good && path !== 'checking' && path !== 'disconnected') {
    out.push({
      type: `xstate.done.actor.${good}`,
      actorId: good,
      output: { domain: GOOD_DOMAIN, resolutions: 1 },
      model: { kind: 'idle', domain: GOOD_DOMAIN },
    });
  }
  const failing = bindings[FAILING_DOMAIN];
  if (failing) {
    out.push({
      type: `xstate.error.actor.${failing}`,
      actorId: failing,
      error: new Error(`applyNat failed for ${FAILING_DOMAIN}`),
      model: { kind: 'fail', domain: FAILING_DOMAIN },
    });
  }
  return out;
}

/**
 * Events by state. The tunnel and path regions are walked in full with the initial grants, no
 * candidates and no bindings (the core). Grants, candidates and NAT bindings each vary on a side
 * branch that leaves the core from `authorized` (candidates: while `checking`; bindings: where the
 * path has no timer, so a binding may idle to its end) and offers only its own events there, so
 * the dimensions do not multiply. Ending events are offered everywhere.
 */
function events(s: Snap): Event[] {
  const live = regions(s);
  if (s.status !== 'active' || !live) return [];
  const c = s.context;
  const out: Event[] = [];
  const grantsChanged = c.grants.length !== GRANTS.length;
  const withCandidates = c.remoteCandidates.length > 0;
  const withBindings = c.natGeneration > 0;
  const core = !grantsChanged && !withCandidates && !withBindings;
  const branchFrom = core && live.tunnel === 'authorized';
  if (core) out.push(...tunnelEvents(live.tunnel), ...pathEvents(live.path));
  if (branchFrom || grantsChanged) {
    out.push(
      grantsChanged
        ? { type: 'policy.update', grants: GRANTS }
        : { type: 'grants.expired', resources: [GRANTS[0]?.resource.id], remaining: GRANTS.length - 1 },
    );
  }
  if ((branchFrom && live.path !== 'selected') || withCandidates) {
    out.push(
      withCandidates
        ? { type: 'ice.candidates-invalidated', candidates: [CANDIDATE] }
        : { type: 'ice.candidates', candidates: [CANDIDATE] },
    );
  }
  if ((branchFrom && (live.path === 'direct' || live.path === 'selected')) || withBindings) {
    out.push(...natEvents(s));
  }
  out.push(
    { type: 'grants.expired', resources: c.grants.map((g) => g.resource.id), remaining: 0 },
    { type: 'policy.update', grants: [] },
    { type: 'policy.revoke' },
    { type: 'control.goodbye' },
  );
  return out;
}

function tunnelEvents(tunnel: string): Event[] {
  switch (tunnel) {
    case 'authorized':
      return [
        { type: 'wg.handshake-started', initiator: true },
        { type: 'wg.session-established', initiator: false },
      ];
    case 'handshaking':
      return [
        { type: 'wg.session-established', initiator: true },
        { type: 'wg.connection-failed', reason: 'handshake timeout' },
      ];
    case 'connected':
      return [
        { type: 'traffic.idle' },
        { type: 'wg.session-established', initiator: false },
        { type: 'wg.connection-failed', reason: 'keepalive timeout' },
      ];
    case 'idle':
      return [
        { type: 'traffic.active' },
        { type: 'wg.session-established', initiator: true },
        { type: 'wg.connection-failed', reason: 'keepalive timeout' },
      ];
    default:
      return [];
  }
}

/** The core has no remote candidates, so the candidate timeout always fails the connection there. */
function pathEvents(path: string): Event[] {
  switch (path) {
    case 'checking':
      return [
        { type: 'ice.selected', remote: '198.51.100.7:52000', relay: undefined },
        { type: 'ice.state', state: 'disconnected' },
        { type: CANDIDATE_TIMEOUT },
      ];
    case 'selected':
      return [
        { type: 'ice.selected', remote: '203.0.113.5:41000', relay: '198.51.100.1:3478' },
        { type: 'ice.state', state: 'disconnected' },
      ];
    case 'disconnected':
      return [
        { type: 'ice.selected', remote: '198.51.100.7:52000', relay: undefined },
        { type: 'ice.state', state: 'connected' },
        { type: 'ice.state', state: 'checking' },
        { type: DISCONNECT_TIMEOUT },
      ];
    default:
      return [];
  }
}

const serializeState = (s: Snap) =>
  JSON.stringify([
    s.value,
    s.context.grants.map((g) => g.resource.id),
    s.context.remoteCandidates,
    Object.entries(s.context.natBindings).sort(),
    s.context.natGeneration,
    s.context.endReason,
    s.context.failure,
  ]);

const INPUTS = { plain: PLAIN, portal: PORTAL } as const;
const pathsOf = Object.fromEntries(
  Object.entries(INPUTS).map(([name, input]) => [
    name,
    transitionPaths(clientConnectionMachine, { events, serializeState, input }),
  ]),
) as Record<keyof typeof INPUTS, ModelPath<Event>[]>;
const walked = new Set<string>();
/** The dedicated tests below (bindings beyond the limit, an idle candidate timeout). */
const DEDICATED = 2;
const PATH_COUNT = pathsOf.plain.length + pathsOf.portal.length + DEDICATED;

interface Effects {
  installClient: number;
  removeClient: number;
  updateGrants: (readonly Grant[])[];
  feedCandidates: { type: string; candidates: readonly string[] }[];
  refuseNat: string[];
  natBindingFailed: string[];
  applyNat: { domain: string; proxyIps: readonly string[]; realAddrs: readonly string[] | undefined }[];
  reportInactive: string[];
}

/** A connection on a simulated clock with recording fakes, its NAT bindings running for real. */
function world(input: ClientConnectionInput) {
  const clock = new TestClock();
  const invokes = new FakeInvokes();
  const recorder = new TransitionRecorder();
  const fx: Effects = {
    installClient: 0,
    removeClient: 0,
    updateGrants: [],
    feedCandidates: [],
    refuseNat: [],
    natBindingFailed: [],
    applyNat: [],
    reportInactive: [],
  };
  const natBinding = dnsResourceNatMachine.provide({
    actors: { resolve: invokes.logic<readonly string[], { domain: string }>((i) => `resolve:${i.domain}`) },
    actions: {
      applyNat: ({ context }) => {
        if (context.domain === FAILING_DOMAIN) throw new Error(`applyNat failed for ${FAILING_DOMAIN}`);
        fx.applyNat.push({
          domain: context.domain,
          proxyIps: context.proxyIps,
          realAddrs: context.realAddrs,
        });
      },
      reportInactive: ({ context }) => fx.reportInactive.push(context.domain),
    },
    guards: { natAllowed: () => true },
  });
  const actor = createActor(
    clientConnectionMachine.provide({
      actors: { natBinding },
      actions: {
        installClient: () => {
          fx.installClient++;
        },
        removeClient: () => {
          fx.removeClient++;
        },
        updateGrants: ({ context }) => fx.updateGrants.push(context.grants),
        feedCandidates: ({ event }) => {
          if (event.type === 'ice.candidates' || event.type === 'ice.candidates-invalidated') {
            fx.feedCandidates.push({ type: event.type, candidates: event.candidates });
          }
        },
        refuseNat: ({ event }) => fx.refuseNat.push((event as { domain?: string }).domain ?? ''),
        natBindingFailed: ({ event }) =>
          fx.natBindingFailed.push((event as { actorId?: string }).actorId ?? ''),
      },
    }),
    { clock, input, inspect: recorder.inspect },
  );
  recorder.root = actor;
  return { actor, clock, invokes, recorder, fx };
}
type World = ReturnType<typeof world>;

const childOf = (w: World, id: string): AnyActorRef | undefined =>
  (w.actor.getSnapshot().children as Record<string, AnyActorRef | undefined>)[id];

/** Applies one step; NAT bindings' ends and failures are brought about through the real child. */
async function replayStep(w: World, event: Event): Promise<void> {
  const model = event.model;
  if (model?.kind === 'idle') {
    // The binding answered when it was fed; nobody asks again for its idle time.
    w.clock.advance(NAT_BINDING_IDLE_MS);
    await settle();
  } else if (model?.kind === 'fail') {
    w.invokes.settle(`resolve:${model.domain}`, { output: REAL_ADDRS });
    await settle();
  } else {
    await applyStep({ event }, w);
  }
  // A name that answers does so at once (its binding is then `active`); the failing one waits
  // for its failure step.
  if (event.type === 'control.assigned-ips') {
    const domain = String(event.domain).toLowerCase();
    if (domain !== FAILING_DOMAIN && w.invokes.isPending(`resolve:${domain}`)) {
      w.invokes.settle(`resolve:${domain}`, { output: REAL_ADDRS });
      await settle();
    }
  }
}

const END_REASON: Record<string, string> = {
  'grants.expired': 'expired',
  'policy.update': 'revoked',
  'policy.revoke': 'revoked',
  'control.goodbye': 'goodbye',
  'wg.connection-failed': 'failed',
  [CANDIDATE_TIMEOUT]: 'failed',
  [DISCONNECT_TIMEOUT]: 'failed',
};

async function replay(input: ClientConnectionInput, path: ModelPath<Event>): Promise<void> {
  const w = world(input);
  const { actor, clock, fx } = w;
  actor.start();
  await settle();
  expect(fx.installClient).toBe(1);
  let checkingSince = clock.now();
  let disconnectedSince = clock.now();
  for (const step of path.steps) {
    const event = step.event;
    const prev = actor.getSnapshot();
    const before = {
      updateGrants: fx.updateGrants.length,
      feedCandidates: fx.feedCandidates.length,
      applyNat: fx.applyNat.length,
      natBindingFailed: fx.natBindingFailed.length,
    };
    const prevChildren = { ...(prev.children as Record<string, AnyActorRef>) };
    await replayStep(w, event);
    const s = actor.getSnapshot();
    expect(s.value).toEqual(step.value);
    expect(serializeState(s)).toBe(step.key);
    const c = s.context;
    const live = regions(s);
    if (live?.path === 'checking' && regions(prev)?.path !== 'checking') checkingSince = clock.now();
    if (live?.path === 'disconnected' && regions(prev)?.path !== 'disconnected')
      disconnectedSince = clock.now();

    // The router: installed once on start, removed once on reaching `removed` and never before.
    expect(fx.installClient).toBe(1);
    expect(fx.removeClient).toBe(s.value === 'removed' ? 1 : 0);
    // Grants reach the router on every policy update that keeps some.
    const updated = event.type === 'policy.update' && (event.grants as readonly Grant[]).length > 0;
    expect(fx.updateGrants.length).toBe(before.updateGrants + (updated ? 1 : 0));
    if (updated) {
      expect(fx.updateGrants.at(-1)).toEqual(event.grants);
      expect(c.grants).toEqual(event.grants);
    }
    if (event.type === 'grants.expired' && s.value !== 'removed') {
      const gone = event.resources as readonly string[];
      expect(c.grants.map((g) => g.resource.id)).toEqual(
        prev.context.grants.map((g) => g.resource.id).filter((id) => !gone.includes(id)),
      );
    }
    // Candidates go to the ICE agent as the portal relayed them.
    const fed = event.type === 'ice.candidates' || event.type === 'ice.candidates-invalidated';
    expect(fx.feedCandidates.length).toBe(before.feedCandidates + (fed ? 1 : 0));
    if (fed) expect(fx.feedCandidates.at(-1)).toEqual({ type: event.type, candidates: event.candidates });
    // Sessions record who started them; the selected pair is kept.
    if (event.type === 'wg.session-established') expect(c.initiator).toBe(event.initiator);
    if (event.type === 'ice.selected') expect(c.path).toEqual({ remote: event.remote, relay: event.relay });

    // Timers: the candidate timeout while checking, the disconnect timeout while disconnected.
    if (live?.path === 'checking') expect(clock.nextDeadline()).toBe(checkingSince + CANDIDATE_TIMEOUT_MS);
    if (live?.path === 'disconnected') {
      expect(clock.nextDeadline()).toBe(disconnectedSince + DISCONNECT_TIMEOUT_MS);
    }
    if (live?.path === 'direct' || live?.path === 'selected') {
      // Only NAT bindings' idle timers (15 min) may be pending.
      const next = clock.nextDeadline();
      if (next !== undefined) expect(next - clock.now()).toBeGreaterThan(CANDIDATE_TIMEOUT_MS);
    }
    if (live) expect(live.path === 'direct').toBe(input.ice === undefined);

    // NAT bindings: one running child per name the connection lists.
    const children = s.children as Record<string, AnyActorRef>;
    if (s.status === 'active') {
      expect(Object.keys(children).sort()).toEqual(Object.values(c.natBindings).sort());
      for (const id of Object.values(c.natBindings))
        expect(children[id]?.getSnapshot().status).toBe('active');
    }
    if (event.type === 'control.assigned-ips') {
      const domain = String(event.domain).toLowerCase();
      const id = c.natBindings[domain];
      expect(id).toBeDefined();
      const binding = childOf(w, id ?? '')?.getSnapshot();
      expect(binding?.context.proxyIps).toEqual(event.proxyIps);
      if (domain === FAILING_DOMAIN) {
        expect(binding?.value).toBe('resolving');
        expect(fx.applyNat.length).toBe(before.applyNat);
      } else {
        expect(binding?.value).toBe('active');
        expect(fx.applyNat.length).toBe(before.applyNat + 1);
        expect(fx.applyNat.at(-1)).toEqual({ domain, proxyIps: event.proxyIps, realAddrs: REAL_ADDRS });
      }
    }
    if (event.model) {
      const id = String(event.actorId);
      expect(prevChildren[id]).toBeDefined();
      expect(prevChildren[id]?.getSnapshot().status).toBe(event.model.kind === 'idle' ? 'done' : 'error');
      expect(children[id]).toBeUndefined();
      expect(Object.values(c.natBindings)).not.toContain(id);
      expect(fx.natBindingFailed.length).toBe(
        before.natBindingFailed + (event.model.kind === 'fail' ? 1 : 0),
      );
      if (event.model.kind === 'fail') expect(fx.natBindingFailed.at(-1)).toBe(id);
    } else {
      expect(fx.natBindingFailed.length).toBe(before.natBindingFailed);
    }
    expect(fx.refuseNat).toEqual([]);
    expect(fx.reportInactive).toEqual([]);

    // The end: why, and what is left.
    if (s.value === 'removed') {
      expect(s.status).toBe('done');
      const reason = END_REASON[event.type];
      expect(c.endReason).toBe(reason);
      expect(s.output).toEqual({ clientId: input.clientId, endReason: reason });
      if (reason === 'failed') {
        expect(c.failure).toBe(
          event.type === CANDIDATE_TIMEOUT
            ? 'no remote ICE candidate within 10 s'
            : event.type === DISCONNECT_TIMEOUT
              ? 'ICE disconnected for 2 s'
              : `WireGuard: ${event.reason}`,
        );
        expect(c.grants).toEqual(prev.context.grants);
      } else {
        expect(c.grants).toEqual([]);
        expect(c.failure).toBeUndefined();
      }
      // The bindings end with the connection.
      for (const child of Object.values(prevChildren)) expect(child.getSnapshot().status).toBe('stopped');
    } else {
      expect(c.endReason).toBeUndefined();
    }
  }
  actor.stop();
  for (const k of w.recorder.walked) walked.add(k);
}

describe('model: client connection', () => {
  for (const [name, input] of Object.entries(INPUTS)) {
    const paths = pathsOf[name as keyof typeof INPUTS];
    describe(`${name} (${input.ice ? 'ICE' : 'no ICE'})`, () => {
      it('has paths', () => expect(paths.length).toBeGreaterThan(20));
      for (const path of paths) {
        const from = path.steps.at(-2)?.key ?? 'start';
        it(`${path.description} [from ${from}]`, () => replay(input, path));
      }
    });
  }

  it(`refuses a binding beyond ${MAX_NAT_BINDINGS} names (refuseNat, no child)`, async () => {
    const w = world(PLAIN);
    w.actor.start();
    await settle();
    for (let i = 0; i < MAX_NAT_BINDINGS; i++) {
      w.actor.send({
        type: 'control.assigned-ips',
        resourceId: DNS_RESOURCE,
        domain: `n${i}.test`,
        proxyIps: PROXY_A,
      });
    }
    await settle();
    expect(Object.keys(w.actor.getSnapshot().context.natBindings)).toHaveLength(MAX_NAT_BINDINGS);
    w.actor.send({
      type: 'control.assigned-ips',
      resourceId: DNS_RESOURCE,
      domain: 'one-more.test',
      proxyIps: PROXY_A,
    });
    await settle();
    const s = w.actor.getSnapshot();
    expect(w.fx.refuseNat).toEqual(['one-more.test']);
    expect(s.context.natBindings['one-more.test']).toBeUndefined();
    expect(Object.keys(s.children)).toHaveLength(MAX_NAT_BINDINGS);
    expect(s.context.natGeneration).toBe(MAX_NAT_BINDINGS);
    // A name already bound is still fed.
    w.actor.send({
      type: 'control.assigned-ips',
      resourceId: DNS_RESOURCE,
      domain: 'N0.test',
      proxyIps: PROXY_B,
    });
    await settle();
    expect(w.fx.refuseNat).toEqual(['one-more.test']);
    expect(childOf(w, 'nat:0:n0.test')?.getSnapshot().context.proxyIps).toEqual(PROXY_B);
    w.actor.stop();
    for (const k of w.recorder.walked) walked.add(k);
  });

  it('a candidate timeout with remote candidates does nothing', async () => {
    const w = world(PORTAL);
    w.actor.start();
    await settle();
    w.actor.send({ type: 'ice.candidates', candidates: [CANDIDATE] });
    await settle();
    expect(w.clock.nextDeadline()).toBe(CANDIDATE_TIMEOUT_MS);
    w.clock.advance(CANDIDATE_TIMEOUT_MS);
    await settle();
    const s = w.actor.getSnapshot();
    expect(s.value).toEqual({ live: { tunnel: 'authorized', path: 'checking' } });
    expect(s.context.failure).toBeUndefined();
    expect(w.fx.removeClient).toBe(0);
    w.actor.stop();
  });

  afterAll(() => {
    gateCoverage('client-connection', clientConnectionMachine, walked, PATH_COUNT);
  });
});
