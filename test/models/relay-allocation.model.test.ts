import { afterAll, describe, expect, it } from 'vitest';
import { createActor, type SnapshotFrom } from 'xstate';
import {
  RELAY_KEEPALIVE_MS,
  RELAY_MAX_ATTEMPTS,
  type RelayAllocationEvent,
  type RelayCommand,
  relayAllocationMachine,
  relayBackoffMs,
} from '../../src/machines/relay-allocation.machine.js';
import {
  advanceUntilTaken,
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
 * One TURN relay's allocation, every transition: probe, allocate (stated, unstated, short and
 * clamped lifetimes), keep-alive and refresh timers, failures of each kind (timeout, refused
 * credentials, a channel bind that says nothing about the allocation), backoff up to the last
 * attempt, pokes, deletion by the server and removal from any state.
 */

type Snap = SnapshotFrom<typeof relayAllocationMachine>;
type Failed = Extract<RelayAllocationEvent, { type: 'relay.failed' }>;

const RELAY_ID = 'relay-1';
const DEFAULT_LIFETIME_S = 600;
/** Lifetimes the server states: unstated (→ 600 s), 600 s, 30 s (refresh before keep-alive), 1 s (→ 2 s). */
const LIFETIMES = [0, 600, 30, 1];
const effectiveLifetime = (stated: number) => Math.max(2, stated || DEFAULT_LIFETIME_S);

const failed = (request: string, reason: 'timeout' | 'auth' | 'error', message: string) =>
  ({ type: 'relay.failed', request, reason, message }) as const;
/** A channel bind failed for one peer: not the allocation's failure (no transition). */
const CHANNEL_BIND_FAILED = failed('channel-bind', 'error', '403 Forbidden');

function events(s: Snap): ModelEvent[] {
  const remove = { type: 'relay.remove' };
  if (s.matches('probing'))
    return [
      { type: 'relay.bound' },
      failed('binding', 'timeout', 'no answer'),
      failed('binding', 'auth', '401 Unauthorized'),
      CHANNEL_BIND_FAILED,
      { type: 'relay.poke' },
      remove,
    ];
  if (s.matches('allocating'))
    return [
      ...LIFETIMES.map((lifetimeS) => ({ type: 'relay.allocated', lifetimeS })),
      failed('allocate', 'timeout', 'no answer'),
      failed('allocate', 'error', '508 Insufficient Capacity'),
      failed('allocate', 'auth', '401 Unauthorized'),
      remove,
    ];
  if (s.matches('allocated'))
    return [
      // Keep-alives fire only when the refresh is not due first (refresh re-enters `allocated`).
      ...(s.context.lifetimeS * 500 > RELAY_KEEPALIVE_MS
        ? [{ type: 'xstate.after.keepalive.relayAllocation.allocated.alive' }]
        : []),
      { type: 'xstate.after.refresh.relayAllocation.allocated' },
      { type: 'relay.refreshed', lifetimeS: s.context.lifetimeS },
      // A server that grants a shorter lifetime on refresh: the next refresh comes sooner.
      { type: 'relay.refreshed', lifetimeS: 120 },
      { type: 'relay.deleted' },
      { type: 'relay.poke' },
      failed('refresh', 'timeout', 'no answer'),
      failed('refresh', 'auth', '401 Unauthorized'),
      CHANNEL_BIND_FAILED,
      remove,
    ];
  if (s.matches('backoff'))
    return [{ type: 'xstate.after.backoff.relayAllocation.backoff' }, { type: 'relay.poke' }, remove];
  return [];
}

/** Attempts are bounded by the machine itself (RELAY_MAX_ATTEMPTS); the lifetime matters only while allocated. */
const serializeState = (s: Snap) =>
  JSON.stringify(
    s.status === 'done'
      ? [s.value]
      : [s.value, s.context.attempts, s.matches('allocated') ? s.context.lifetimeS : null],
  );

const paths = transitionPaths(relayAllocationMachine, {
  events,
  serializeState,
  input: { relayId: RELAY_ID },
});
const walked = new Set<string>();

interface Effect {
  readonly fn: 'installRelay' | 'command' | 'freeRelay';
  readonly cmd?: RelayCommand;
  readonly at: number;
}

describe('model: relay allocation', () => {
  it('has paths', () => expect(paths.length).toBeGreaterThan(20));

  for (const path of paths) {
    const last = path.steps.at(-1);
    const { type: _type, ...payload } = (last?.event ?? {}) as ModelEvent;
    const fromKey = path.steps.at(-2)?.key ?? 'start';
    it(`${path.description} from ${fromKey}${Object.keys(payload).length ? ` ${JSON.stringify(payload)}` : ''}`, async () => {
      const clock = new TestClock();
      const invokes = new FakeInvokes();
      const recorder = new TransitionRecorder();
      const effects: Effect[] = [];
      const actor = createActor(
        relayAllocationMachine.provide({
          actions: {
            installRelay: () => effects.push({ fn: 'installRelay', at: clock.now() }),
            command: (_, { cmd }) => effects.push({ fn: 'command', cmd, at: clock.now() }),
            freeRelay: () => effects.push({ fn: 'freeRelay', at: clock.now() }),
          },
        }),
        { clock, input: { relayId: RELAY_ID }, inspect: recorder.inspect },
      );
      recorder.root = actor;
      actor.start();
      await settle();
      expect(effects).toEqual([
        { fn: 'installRelay', at: 0 },
        { fn: 'command', cmd: 'probe', at: 0 },
      ]);

      // When the current allocation / keep-alive period / backoff began (for the timer checks).
      let allocatedAt = -1;
      let allocatedLifetimeS = 0;
      let aliveAt = -1;
      let backoffAt = -1;

      for (const step of path.steps) {
        const before = actor.getSnapshot();
        const from = effects.length;
        const logFrom = recorder.log.length;
        const t0 = clock.now();
        const type = step.event.type;
        if (type.startsWith('xstate.after.')) await advanceUntilTaken(type, { clock, recorder });
        else await applyStep(step, { actor, clock, invokes });
        const s = actor.getSnapshot();
        expect(s.value).toEqual(step.value);
        expect(serializeState(s)).toBe(step.key);

        const taken = recorder.log.slice(logFrom).map(eventOfKey);
        const stepEffects = effects.slice(from);
        const cmds = stepEffects.filter((e) => e.fn === 'command').map((e) => e.cmd);
        const freed = stepEffects.filter((e) => e.fn === 'freeRelay').length;
        expect(stepEffects.filter((e) => e.fn === 'installRelay')).toEqual([]);

        // The TURN commands each step must issue, and nothing else.
        const ev = step.event as ModelEvent;
        if (type === 'relay.bound' || type === 'relay.deleted') expect(cmds).toEqual(['allocate']);
        else if (type === 'relay.allocated' || type === 'relay.refreshed') {
          expect(cmds).toEqual([]);
          expect(s.context.lifetimeS).toBe(effectiveLifetime(ev.lifetimeS as number));
          if (type === 'relay.allocated') expect(s.context.attempts).toBe(0);
          // Both start the refresh timer (and the keep-alive) from now, with the granted lifetime.
          allocatedAt = aliveAt = clock.now();
          allocatedLifetimeS = s.context.lifetimeS;
          expect(clock.nextDeadline()).toBe(clock.now() + Math.min(25_000, (allocatedLifetimeS * 1000) / 2));
        } else if (type === 'relay.poke') {
          if (before.matches('allocated')) expect(cmds).toEqual(['poke']);
          else if (before.matches('backoff')) expect(cmds).toEqual(['probe']);
          else expect(cmds).toEqual([]);
        } else if (type === 'relay.remove') {
          expect(cmds).toEqual([]);
          expect(s.value).toBe('freed');
        } else if (type === 'relay.failed') {
          const f = ev as unknown as Failed;
          if (f.request === 'channel-bind') {
            expect(cmds).toEqual([]);
            expect(s.context).toEqual(before.context);
            expect(taken).toEqual([]);
          } else {
            expect(s.context.attempts).toBe(before.context.attempts + 1);
            expect(s.context.lastError).toBe(`${f.request}: ${f.message}`);
            if (f.reason === 'auth') {
              expect(cmds).toEqual([]);
              expect(s.value).toBe('failed');
            } else {
              // Reset the TURN client; give up on the last attempt, else back off.
              expect(cmds).toEqual(['reset']);
              expect(s.value).toBe(s.context.attempts >= RELAY_MAX_ATTEMPTS ? 'failed' : 'backoff');
              if (s.value === 'backoff') backoffAt = clock.now();
            }
          }
        } else if (type === 'xstate.after.backoff.relayAllocation.backoff') {
          expect(cmds).toEqual(['probe']);
          expect(clock.now() - backoffAt).toBe(relayBackoffMs(s.context.attempts));
        } else if (type === 'xstate.after.keepalive.relayAllocation.allocated.alive') {
          expect(cmds).toEqual(['keepalive']);
          expect(clock.now() - aliveAt).toBe(RELAY_KEEPALIVE_MS);
          aliveAt = clock.now();
        } else if (type === 'xstate.after.refresh.relayAllocation.allocated') {
          // Keep-alives every 25 s until the refresh at half the lifetime (which restarts both).
          expect(cmds.at(-1)).toBe('refresh');
          expect(clock.now() - allocatedAt).toBe((allocatedLifetimeS * 1000) / 2);
          for (const k of stepEffects.filter((e) => e.cmd === 'keepalive')) {
            expect(k.at - aliveAt).toBe(RELAY_KEEPALIVE_MS);
            aliveAt = k.at;
          }
          expect(cmds.slice(0, -1).every((c) => c === 'keepalive')).toBe(true);
          allocatedAt = aliveAt = clock.now();
          allocatedLifetimeS = s.context.lifetimeS;
        } else {
          throw new Error(`unexpected step ${type}`);
        }
        if (type.startsWith('xstate.after.')) expect(clock.now()).toBeGreaterThan(t0);
        else expect(clock.now()).toBe(t0);
        if (s.matches('backoff') && !before.matches('backoff')) expect(backoffAt).toBe(clock.now());

        // Per state: pending timers, attempts, freeing.
        expect(s.context.attempts).toBeLessThanOrEqual(RELAY_MAX_ATTEMPTS);
        if (s.matches('probing') || s.matches('allocating')) expect(clock.nextDeadline()).toBeUndefined();
        if (s.matches('allocated'))
          expect(clock.nextDeadline()).toBe(
            Math.min(aliveAt + RELAY_KEEPALIVE_MS, allocatedAt + (allocatedLifetimeS * 1000) / 2),
          );
        if (s.matches('backoff')) {
          expect(s.context.attempts).toBeLessThan(RELAY_MAX_ATTEMPTS);
          expect(clock.nextDeadline()).toBe(backoffAt + relayBackoffMs(s.context.attempts));
        }
        if (s.status === 'done') {
          // failed / freed: freed in the router exactly once, nothing left running.
          expect(effects.filter((e) => e.fn === 'freeRelay')).toHaveLength(1);
          if (!before.matches('failed') && !before.matches('freed')) expect(freed).toBe(1);
          expect(clock.nextDeadline()).toBeUndefined();
          expect(s.output).toEqual({ relayId: RELAY_ID, lastError: s.context.lastError });
        } else {
          expect(freed).toBe(0);
          expect(s.status).toBe('active');
        }
      }
      actor.stop();
      for (const k of recorder.walked) walked.add(k);
    });
  }

  afterAll(() => {
    gateCoverage('relay-allocation', relayAllocationMachine, walked, paths.length);
  });
});
