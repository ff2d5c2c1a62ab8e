import { afterAll, describe, expect, it } from 'vitest';
import { createActor, type SnapshotFrom } from 'xstate';
import {
  NAMESERVER_REEVALUATE_MS,
  type NameserverProbe,
  nameserverRetryMs,
  nameserverSelectorMachine,
} from '../../src/machines/nameserver-selector.machine.js';
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

/** The nameserver selector, every transition: rounds that find servers or nobody, deaths, timers. */

type Snap = SnapshotFrom<typeof nameserverSelectorMachine>;
const SERVERS = ['10.53.0.1', '10.53.0.2'];
const BOTH: NameserverProbe[] = [
  { server: '10.53.0.2', rttMs: 40 },
  { server: '10.53.0.1', rttMs: 5 },
];
const NOBODY: NameserverProbe[] = SERVERS.map((server) => ({ server, rttMs: undefined }));

function events(s: Snap): ModelEvent[] {
  switch (s.value) {
    case 'probing':
      return [
        { type: 'xstate.done.actor.probeRound', output: BOTH },
        { type: 'xstate.done.actor.probeRound', output: NOBODY },
        { type: 'xstate.error.actor.probeRound', error: new Error('probe failed') },
        { type: 'nameserver.unresponsive', server: '10.53.0.1' },
      ];
    case 'selected':
      return [
        { type: 'xstate.after.reevaluate.nameserverSelector.selected' },
        { type: 'nameserver.unresponsive', server: s.context.selected ?? '' },
        { type: 'nameserver.unresponsive', server: s.context.ranking.at(-1)?.server ?? '' },
        { type: 'nameserver.reevaluate' },
      ];
    case 'unavailable':
      return [
        { type: 'xstate.after.retry.nameserverSelector.unavailable' },
        { type: 'nameserver.reevaluate' },
      ];
    default:
      return [];
  }
}

const serializeState = (s: Snap) =>
  JSON.stringify([
    s.value,
    s.context.selected,
    s.context.ranking.map((p) => p.server),
    Math.min(2, s.context.failedRounds),
  ]);

const paths = transitionPaths(nameserverSelectorMachine, {
  events,
  serializeState,
  input: { servers: SERVERS },
});
const walked = new Set<string>();

describe('model: nameserver selector', () => {
  it('has paths', () => expect(paths.length).toBeGreaterThan(5));

  for (const path of paths) {
    it(path.description, async () => {
      const clock = new TestClock();
      const invokes = new FakeInvokes();
      const recorder = new TransitionRecorder();
      const announced: (string | undefined)[] = [];
      const actor = createActor(
        nameserverSelectorMachine.provide({
          actors: { probeRound: invokes.logic<readonly NameserverProbe[], { servers: readonly string[] }>() },
          actions: { selectionChanged: ({ context }) => announced.push(context.selected) },
        }),
        { clock, input: { servers: SERVERS }, inspect: recorder.inspect },
      );
      recorder.root = actor;
      actor.start();
      await settle();
      for (const step of path.steps) {
        const before = actor.getSnapshot().context.selected;
        const announcedBefore = announced.length;
        await applyStep(step, { actor, clock, invokes });
        const s = actor.getSnapshot();
        expect(s.value).toEqual(step.value);
        // Per state: what must be running or pending.
        if (s.value === 'probing') {
          expect(invokes.isPending('probeRound')).toBe(true);
          expect(invokes.started.at(-1)).toEqual({ id: 'probeRound', input: { servers: SERVERS } });
        }
        if (s.value === 'selected') {
          expect(s.context.selected).toBe(s.context.ranking[0]?.server);
          expect(s.context.selected).toBeDefined();
          expect(clock.nextDeadline()).toBe(clock.now() + NAMESERVER_REEVALUATE_MS);
        }
        if (s.value === 'unavailable') {
          expect(s.context.selected).toBeUndefined();
          expect(clock.nextDeadline()).toBe(clock.now() + nameserverRetryMs(s.context.failedRounds));
        }
        // The DNS layer hears about every change of the selection.
        if (s.context.selected !== before) expect(announced.length).toBeGreaterThan(announcedBefore);
        if (announced.length > announcedBefore) expect(announced.at(-1)).toBe(s.context.selected);
      }
      actor.stop();
      for (const k of recorder.walked) walked.add(k);
    });
  }

  afterAll(() => {
    gateCoverage('nameserver-selector', nameserverSelectorMachine, walked, paths.length);
  });
});
