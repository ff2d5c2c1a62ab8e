import { afterAll, describe, expect, it } from 'vitest';
import { createActor, type SnapshotFrom } from 'xstate';
import {
  type DnsResourceNatInput,
  dnsResourceNatMachine,
  NAT_BINDING_IDLE_MS,
  NAT_RESOLVE_RETRIES,
  natRetryMs,
} from '../../src/machines/dns-resource-nat.machine.js';
import type { ClientId, ResourceId } from '../../src/wire/ids.js';
import {
  applyStep,
  FakeInvokes,
  gateCoverage,
  type ModelEvent,
  settle,
  TestClock,
  TransitionRecorder,
  transitionPaths,
} from './harness.js';

/**
 * The DNS-resource NAT binding, every transition: answers for a name the client may use and for
 * one it may not, failed lookups through every retry to `failed`, AssignedIps in every state
 * (a repeat during a lookup only updates the proxy IPs), the retry backoff and the idle end.
 *
 * `natAllowed` is provided by the actor layer; here it reads the answer: an answer holding
 * {@link NOT_ALLOWED} means "the client may not use this name". The graph runs the same provided
 * machine, so it decides the guard the way the replay does.
 */

const NOT_ALLOWED = '192.0.2.99';
const ALLOWED_ANSWER = ['192.0.2.1', '2001:db8::1'];
const DENIED_ANSWER = [NOT_ALLOWED];
const PROXY_A = ['100.96.0.1', 'fd00:2021:1111:8000::1'];
const PROXY_B = ['100.96.0.2', 'fd00:2021:1111:8000::2'];
const INPUT: DnsResourceNatInput = {
  clientId: 'client-1' as ClientId,
  resourceId: 'res-dns' as ResourceId,
  domain: 'app.example.test',
  proxyIps: PROXY_A,
};

const natAllowed = ({ event }: { event: unknown }) =>
  !((event as { output?: readonly string[] }).output ?? []).includes(NOT_ALLOWED);
const modelMachine = dnsResourceNatMachine.provide({ guards: { natAllowed } });

type Snap = SnapshotFrom<typeof dnsResourceNatMachine>;

/** AssignedIps again: the other set of proxy IPs, so each repeat is visible in the context. */
const assigned = (s: Snap): ModelEvent => ({
  type: 'nat.assigned',
  resourceId: INPUT.resourceId,
  proxyIps: s.context.proxyIps[0] === PROXY_A[0] ? PROXY_B : PROXY_A,
});

function events(s: Snap): ModelEvent[] {
  switch (s.value) {
    case 'resolving':
      return [
        { type: 'xstate.done.actor.resolve', output: ALLOWED_ANSWER },
        { type: 'xstate.done.actor.resolve', output: DENIED_ANSWER },
        { type: 'xstate.error.actor.resolve', error: new Error('SERVFAIL') },
        assigned(s),
      ];
    case 'retrying':
      return [{ type: 'xstate.after.retry.dnsResourceNat.retrying' }, assigned(s)];
    case 'active':
    case 'inactive':
    case 'failed':
      return [{ type: `xstate.after.idle.dnsResourceNat.${s.value}` }, assigned(s)];
    default:
      return [];
  }
}

const serializeState = (s: Snap) =>
  JSON.stringify([
    s.value,
    Math.min(s.context.attempts, NAT_RESOLVE_RETRIES),
    s.context.proxyIps,
    s.context.realAddrs,
  ]);

const paths = transitionPaths(modelMachine, { events, serializeState, input: INPUT });
const walked = new Set<string>();
const initial = createActor(modelMachine, { input: INPUT }).getSnapshot();

interface Applied {
  readonly proxyIps: readonly string[];
  readonly realAddrs: readonly string[] | undefined;
  readonly resourceId: string;
}

describe('model: DNS-resource NAT binding', () => {
  it('has paths', () => expect(paths.length).toBeGreaterThan(10));

  for (const path of paths) {
    const from = path.steps.at(-2)?.key ?? serializeState(initial);
    it(`${path.description} [from ${from}]`, async () => {
      const clock = new TestClock();
      const invokes = new FakeInvokes();
      const recorder = new TransitionRecorder();
      const applied: Applied[] = [];
      const inactive: { attempts: number; lastError: string | undefined }[] = [];
      const actor = createActor(
        modelMachine.provide({
          actors: { resolve: invokes.logic<readonly string[], { domain: string }>() },
          actions: {
            applyNat: ({ context }) =>
              applied.push({
                proxyIps: context.proxyIps,
                realAddrs: context.realAddrs,
                resourceId: context.resourceId,
              }),
            reportInactive: ({ context }) =>
              inactive.push({ attempts: context.attempts, lastError: context.lastError }),
          },
        }),
        { clock, input: INPUT, inspect: recorder.inspect },
      );
      recorder.root = actor;
      actor.start();
      await settle();
      expect(invokes.started).toEqual([{ id: 'resolve', input: { domain: INPUT.domain } }]);
      let since = clock.now();
      for (const step of path.steps) {
        const prev = actor.getSnapshot();
        const lookups = invokes.started.length;
        const appliedBefore = applied.length;
        const inactiveBefore = inactive.length;
        await applyStep(step, { actor, clock, invokes });
        const s = actor.getSnapshot();
        expect(s.value).toEqual(step.value);
        expect(serializeState(s)).toBe(step.key);
        if (s.value !== prev.value) since = clock.now();
        const event = step.event as ModelEvent;

        // AssignedIps: the proxy IPs (and resource) are the latest; a repeat during a lookup starts none.
        if (event.type === 'nat.assigned') {
          expect(s.context.proxyIps).toEqual(event.proxyIps);
          expect(s.context.resourceId).toBe(event.resourceId);
          if (prev.value === 'resolving') expect(invokes.started.length).toBe(lookups);
          if (prev.value === 'retrying' || prev.value === 'failed') expect(s.context.attempts).toBe(0);
        }
        // A lookup is running exactly in `resolving`, one per entry.
        expect(invokes.isPending('resolve')).toBe(s.value === 'resolving');
        const entered = s.value !== prev.value;
        expect(invokes.started.length).toBe(lookups + (entered && s.value === 'resolving' ? 1 : 0));
        expect(invokes.started.at(-1)).toEqual({ id: 'resolve', input: { domain: INPUT.domain } });

        // An answer is applied (Active or Inactive by natAllowed) with the latest proxy IPs.
        const answered = event.type === 'xstate.done.actor.resolve';
        expect(applied.length).toBe(appliedBefore + (answered ? 1 : 0));
        if (answered) {
          const output = event.output as readonly string[];
          expect(applied.at(-1)).toEqual({
            proxyIps: s.context.proxyIps,
            realAddrs: output,
            resourceId: s.context.resourceId,
          });
          expect(s.context.proxyIps).toEqual(prev.context.proxyIps);
          expect(s.value).toBe(output.includes(NOT_ALLOWED) ? 'inactive' : 'active');
          expect(s.context.attempts).toBe(0);
          expect(s.context.lastError).toBeUndefined();
        }
        // A failed lookup reports Inactive: retried while attempts are left, then `failed`.
        const lookupFailed = event.type === 'xstate.error.actor.resolve';
        expect(inactive.length).toBe(inactiveBefore + (lookupFailed ? 1 : 0));
        if (lookupFailed) {
          expect(s.context.attempts).toBe(prev.context.attempts + 1);
          expect(inactive.at(-1)).toEqual({ attempts: s.context.attempts, lastError: 'Error: SERVFAIL' });
          expect(s.value).toBe(prev.context.attempts < NAT_RESOLVE_RETRIES ? 'retrying' : 'failed');
        }
        if (answered || lookupFailed) expect(s.context.resolutions).toBe(prev.context.resolutions + 1);

        // Timers: the backoff in `retrying`, the idle end in `active` / `inactive` / `failed`.
        switch (s.value) {
          case 'resolving':
            expect(clock.nextDeadline()).toBeUndefined();
            break;
          case 'retrying':
            expect(s.context.attempts).toBeGreaterThanOrEqual(1);
            expect(s.context.attempts).toBeLessThanOrEqual(NAT_RESOLVE_RETRIES);
            expect(clock.nextDeadline()).toBe(since + natRetryMs(s.context.attempts));
            break;
          case 'active':
          case 'inactive':
          case 'failed':
            expect(clock.nextDeadline()).toBe(since + NAT_BINDING_IDLE_MS);
            break;
          case 'done':
            expect(s.status).toBe('done');
            expect(s.output).toEqual({ domain: INPUT.domain, resolutions: s.context.resolutions });
            expect(clock.nextDeadline()).toBeUndefined();
            break;
        }
        if (s.value === 'failed') expect(s.context.attempts).toBe(NAT_RESOLVE_RETRIES + 1);
      }
      actor.stop();
      for (const k of recorder.walked) walked.add(k);
    });
  }

  it('backs off 1 s, 2 s, 4 s, then waits for the client', () => {
    expect([1, 2, 3].map(natRetryMs)).toEqual([1_000, 2_000, 4_000]);
  });

  afterAll(() => {
    gateCoverage('dns-resource-nat', dnsResourceNatMachine, walked, paths.length);
  });
});
