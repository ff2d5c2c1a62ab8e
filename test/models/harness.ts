import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AnyActorRef,
  type AnyStateMachine,
  type EventObject,
  fromPromise,
  type InspectionEvent,
  type SnapshotFrom,
} from 'xstate';
import { adjacencyMapToArray, getAdjacencyMap, getShortestPaths } from 'xstate/graph';
import { TestClock } from '../../src/actors/clock.js';

/**
 * Model-based tests from the production machines (STYLE.md, `test/models/`): paths come from
 * `xstate/graph` (the XState v5 successor of `@xstate/test`; its `createTestModel` refuses
 * machines with `invoke`/`after`, so paths are replayed by hand), one path per transition of the
 * reachable graph: the shortest path to the transition's source state, then the transition.
 * Each path is replayed on a real actor of the machine (its own actions and guards; invoked
 * actors and side-effect actions replaced by recording fakes) with a simulated clock:
 *
 * - `xstate.after.*` steps advance the clock to the next timer;
 * - `xstate.done.actor.<id>` / `xstate.error.actor.<id>` resolve or reject the fake invoked
 *   under `<id>`;
 * - anything else is sent to the actor.
 *
 * After every step the actor's state must equal the graph's, and the model's per-state checks
 * run (what was recorded, which timers are pending). XState's microstep inspection events name
 * every transition the actor really took; the coverage gate compares them with every transition
 * in the machine definition and names each one that no path walked.
 */

/** One transition of a machine definition: its state node, event descriptor and candidate index. */
export interface TransitionKey {
  readonly key: string;
  readonly source: string;
  readonly event: string;
  readonly target: string;
  readonly guard: string;
}

interface NodeView {
  readonly id: string;
  readonly states: Record<string, NodeView>;
  readonly transitions: Map<string, TransitionView[]>;
  readonly always?: TransitionView[];
}
interface TransitionView {
  readonly source: NodeView;
  readonly eventType: string;
  readonly target?: NodeView[];
  readonly guard?: unknown;
}

function guardName(g: unknown): string {
  if (g === undefined) return '';
  if (typeof g === 'string') return g;
  if (g && typeof g === 'object' && 'type' in g) return String((g as { type: unknown }).type);
  return 'inline';
}

function keyOf(t: TransitionView, index: number, always: boolean): string {
  return `${t.source.id} | ${always ? '(always)' : t.eventType} | #${index}`;
}

/** Every transition of `machine`, eventless ones included. */
export function definedTransitions(machine: AnyStateMachine): TransitionKey[] {
  const out: TransitionKey[] = [];
  const visit = (n: NodeView) => {
    const add = (t: TransitionView, i: number, always: boolean) =>
      out.push({
        key: keyOf(t, i, always),
        source: n.id,
        event: always ? '(always)' : t.eventType,
        target: t.target && t.target.length > 0 ? t.target.map((x) => x.id).join(', ') : '(stays)',
        guard: guardName(t.guard),
      });
    for (const ts of n.transitions.values()) for (const [i, t] of ts.entries()) add(t, i, false);
    for (const [i, t] of (n.always ?? []).entries()) add(t, i, true);
    for (const c of Object.values(n.states)) visit(c);
  };
  visit(machine.root as unknown as NodeView);
  return out;
}

/** The key of a transition the actor took (from a microstep inspection event). */
function takenKey(t: TransitionView): string | undefined {
  const src = t.source;
  const always = src.always?.indexOf(t) ?? -1;
  if (always >= 0) return keyOf(t, always, true);
  for (const ts of src.transitions.values()) {
    const i = ts.indexOf(t);
    if (i >= 0) return keyOf(t, i, false);
  }
  return undefined;
}

/** Records the transitions one actor takes (its children are not counted). */
export class TransitionRecorder {
  readonly walked = new Set<string>();
  /** Every transition taken, in order (repeats included): what one step did is `log.slice(before)`. */
  readonly log: string[] = [];
  root: AnyActorRef | undefined;

  readonly inspect = (ev: InspectionEvent): void => {
    if (ev.type !== '@xstate.microstep') return;
    if (this.root && ev.actorRef !== this.root) return;
    for (const t of (ev as unknown as { _transitions: TransitionView[] })._transitions) {
      const k = takenKey(t);
      if (k) {
        this.walked.add(k);
        this.log.push(k);
      }
    }
  };
}

/** The event part of a transition key (`source | event | #i`). */
export function eventOfKey(key: string): string {
  return key.split(' | ')[1] ?? '';
}

/**
 * Fires timers in deadline order until the actor takes a transition on `eventType` (an
 * `xstate.after.*` type). For machines where several timers are pending at once and the one the
 * step names is not the next: the timers due before it fire too (their transitions are real and
 * recorded). Returns the keys taken meanwhile.
 */
export async function advanceUntilTaken(
  eventType: string,
  ctx: { clock: TestClock; recorder: TransitionRecorder },
  maxTimers = 1_000,
): Promise<string[]> {
  const from = ctx.recorder.log.length;
  for (let i = 0; i < maxTimers; i++) {
    if (!ctx.clock.advanceToNext()) throw new Error(`${eventType}: no timer is pending`);
    await settle();
    const taken = ctx.recorder.log.slice(from);
    if (taken.some((k) => eventOfKey(k) === eventType)) return taken;
  }
  throw new Error(`${eventType}: not taken after ${maxTimers} timers`);
}

/** Promise actors whose outcome the replay decides: `resolve('probeRound', output)`. */
export class FakeInvokes {
  private readonly pending = new Map<string, { resolve(v: unknown): void; reject(e: unknown): void }>();
  readonly started: { id: string; input: unknown }[] = [];

  /**
   * A promise actor logic that waits for the replay to settle it, registered under its actor id,
   * or under `key(input, id)` when several actors invoke it under the same id (the invokes of
   * spawned children, say: `logic((input) => \`resolve:${input.domain}\`)`).
   */
  logic<T, I>(key?: (input: I, id: string) => string) {
    return fromPromise<T, I>(
      ({ input, self }) =>
        new Promise<T>((resolve, reject) => {
          const id = key ? key(input, self.id) : self.id;
          this.started.push({ id, input });
          this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        }),
    );
  }

  isPending(id: string): boolean {
    return this.pending.has(id);
  }

  settle(id: string, outcome: { output: unknown } | { error: unknown }): void {
    const p = this.pending.get(id);
    if (!p) throw new Error(`no invoked actor '${id}' is waiting`);
    this.pending.delete(id);
    if ('output' in outcome) p.resolve(outcome.output);
    else p.reject(outcome.error);
  }
}

/** Lets promise reactions run (several event-loop turns; no simulated time passes). */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** An event the graph may send: its type and any payload. */
export type ModelEvent = EventObject & Record<string, unknown>;

export interface ModelPath<TEvent extends EventObject> {
  readonly description: string;
  /** `key`: `serializeState` of the graph's state after the step (set by {@link transitionPaths}). */
  readonly steps: readonly { readonly event: TEvent; readonly value: unknown; readonly key?: string }[];
}

/**
 * One path per edge of the reachable graph: the shortest path to the edge's source state, then
 * the edge. `serializeState` decides what counts as the same state (bound counters with it).
 */
export function transitionPaths<M extends AnyStateMachine>(
  machine: M,
  opts: {
    events: (s: SnapshotFrom<M>) => readonly ModelEvent[];
    serializeState: (s: SnapshotFrom<M>) => string;
    input?: unknown;
  },
): ModelPath<EventObject>[] {
  const traversal = {
    events: opts.events,
    serializeState: (s: SnapshotFrom<M>) => opts.serializeState(s),
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  } as never;
  const shortest = new Map<string, { event: EventObject; value: unknown; key: string }[]>();
  for (const p of getShortestPaths(machine, traversal)) {
    shortest.set(
      opts.serializeState(p.state as SnapshotFrom<M>),
      p.steps.slice(1).map((s) => ({
        event: s.event as EventObject,
        value: (s.state as { value: unknown }).value,
        key: opts.serializeState(s.state as SnapshotFrom<M>),
      })),
    );
  }
  const edges = adjacencyMapToArray(getAdjacencyMap(machine, traversal)) as {
    state: SnapshotFrom<M>;
    event: EventObject;
    nextState: SnapshotFrom<M>;
  }[];
  const paths: ModelPath<EventObject>[] = [];
  const seen = new Set<string>();
  for (const e of edges) {
    const from = opts.serializeState(e.state);
    const id = `${from} --${JSON.stringify(e.event)}--> ${opts.serializeState(e.nextState)}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const prefix = shortest.get(from);
    if (!prefix) continue;
    const steps = [
      ...prefix,
      {
        event: e.event,
        value: (e.nextState as { value: unknown }).value,
        key: opts.serializeState(e.nextState),
      },
    ];
    paths.push({
      description: `${JSON.stringify((e.state as { value: unknown }).value)} + ${e.event.type} → ${JSON.stringify(
        (e.nextState as { value: unknown }).value,
      )} (${steps.length} steps)`,
      steps,
    });
  }
  return paths;
}

/** How one step is applied to the real actor. */
export async function applyStep(
  step: { event: EventObject },
  ctx: { actor: AnyActorRef; clock: TestClock; invokes: FakeInvokes },
): Promise<void> {
  const type = step.event.type;
  if (type.startsWith('xstate.after.')) {
    if (!ctx.clock.advanceToNext()) throw new Error(`${type}: no timer is pending`);
  } else if (type.startsWith('xstate.done.actor.')) {
    ctx.invokes.settle(type.slice('xstate.done.actor.'.length), {
      output: (step.event as { output?: unknown }).output,
    });
  } else if (type.startsWith('xstate.error.actor.')) {
    ctx.invokes.settle(type.slice('xstate.error.actor.'.length), {
      error: (step.event as { error?: unknown }).error,
    });
  } else {
    ctx.actor.send(step.event);
  }
  await settle();
}

/** The coverage of one machine, for the gate and the table `npm run test:models` prints. */
export interface MachineCoverage {
  readonly machine: string;
  readonly defined: number;
  readonly walked: number;
  readonly paths: number;
  readonly missing: readonly TransitionKey[];
}

export function coverageOf(
  name: string,
  machine: AnyStateMachine,
  walked: ReadonlySet<string>,
  paths: number,
): MachineCoverage {
  const defined = definedTransitions(machine);
  const missing = defined.filter((t) => !walked.has(t.key));
  return { machine: name, defined: defined.length, walked: defined.length - missing.length, paths, missing };
}

/** Writes the coverage where `scripts/model-coverage.ts` reads it. */
export function reportCoverage(c: MachineCoverage): void {
  const dir = join(import.meta.dirname, '..', '..', '.model-coverage');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${c.machine}.json`), `${JSON.stringify(c, null, 2)}\n`);
}

/**
 * The coverage gate (run it in `afterAll`): reports the coverage for the table and throws,
 * naming each transition of `machine` that no path walked.
 */
export function gateCoverage(
  name: string,
  machine: AnyStateMachine,
  walked: ReadonlySet<string>,
  paths: number,
): void {
  const c = coverageOf(name, machine, walked, paths);
  reportCoverage(c);
  if (c.missing.length > 0) throw new Error(describeMissing(c));
}

/** A message naming every transition no path walked. */
export function describeMissing(c: MachineCoverage): string {
  return [
    `${c.machine}: ${c.missing.length} of ${c.defined} transitions not walked:`,
    ...c.missing.map((t) => `  ${t.source} --${t.event}${t.guard ? ` [${t.guard}]` : ''}--> ${t.target}`),
  ].join('\n');
}

export { TestClock };
