import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { COMMAND_KINDS, caseArb, type SimCaseSpec } from './commands.js';
import { newStats, SimCase } from './runner.js';

/**
 * The whole gateway on a simulated network and clock (`harness.ts`), driven by random sequences
 * of 5–20 transitions (`commands.ts`) and checked against a reference model (`model.ts`) after
 * every step (`runner.ts`).
 *
 * - `SIM_RUNS` cases (default 300, about 11 s on a 2-core machine; 1,000 with `CI=true`; every
 *   transition kind and every outcome the invariants are about is reached, which the last test
 *   asserts), from `SIM_SEED` (default: random locally, so every run explores new cases; fixed
 *   with `CI=true`, so CI is reproducible; printed in the summary line).
 * - A failing case is shrunk, then its seed, path and the case itself are appended to
 *   `failing-seeds.json`; every run replays that file first (add a `note` saying what it was).
 *   Replay one by hand with `SIM_SEED=<seed> SIM_PATH=<path>`.
 * - `SIM_SHRINK=0` reports the first failure without shrinking (quicker when iterating).
 */

const SEEDS_FILE = fileURLToPath(new URL('./failing-seeds.json', import.meta.url));
const CI = process.env.CI === 'true';
const RUNS = Number(process.env.SIM_RUNS ?? (CI ? 1_000 : 300));
const SEED =
  process.env.SIM_SEED !== undefined
    ? Number(process.env.SIM_SEED)
    : CI
      ? 20_261_122
      : Math.floor(Math.random() * 2 ** 31);
const PATH = process.env.SIM_PATH;
const SHRINK = process.env.SIM_SHRINK !== '0';

/**
 * A saved failure: fast-check's seed and path, plus the failing case itself. A path only means
 * something to the generator that produced it (it walks the shrink tree), so when `commands.ts`
 * changes, the stored case is replayed instead.
 */
interface SavedSeed {
  readonly seed: number;
  readonly path: string;
  readonly note?: string;
  readonly case?: unknown;
}

/** Byte arrays as `{"$bytes": [...]}` in the seeds file. */
function toJson(spec: SimCaseSpec): unknown {
  return JSON.parse(
    JSON.stringify(spec, (_, v: unknown) => (v instanceof Uint8Array ? { $bytes: [...v] } : v)),
  );
}

function fromJson(saved: unknown): SimCaseSpec {
  return JSON.parse(JSON.stringify(saved), (_, v: unknown) =>
    v && typeof v === 'object' && '$bytes' in v ? Uint8Array.from((v as { $bytes: number[] }).$bytes) : v,
  ) as SimCaseSpec;
}

function loadSeeds(): SavedSeed[] {
  return JSON.parse(readFileSync(SEEDS_FILE, 'utf8')) as SavedSeed[];
}

function saveSeed(s: SavedSeed): void {
  const all = loadSeeds();
  if (all.some((x) => x.seed === s.seed && x.path === s.path)) return;
  all.push(s);
  writeFileSync(SEEDS_FILE, `${JSON.stringify(all, null, 2)}\n`);
}

const stats = newStats();
/** The coverage check only means something after a passing run. */
let propertyFailed = false;
const property = fc.asyncProperty(caseArb, async (spec) => {
  await new SimCase(spec, stats).execute();
});

function report(d: fc.RunDetails<[SimCaseSpec]>): string {
  // The counterexample's commands carry byte arrays; the seed and path are what matters.
  const error = d.errorInstance instanceof Error ? d.errorInstance.message : String(d.errorInstance);
  return `${error}\n\n${fc.defaultReportMessage(d)}\n\nReplay: SIM_SEED=${d.seed} SIM_PATH=${d.counterexamplePath} npx vitest run --project sim`;
}

describe('the gateway in simulation (actors + router, sim clients, relays, portal, resources)', () => {
  it('replays the saved failing seeds first', async () => {
    for (const s of loadSeeds()) {
      // The exact case that failed, whatever the generator looks like now.
      if (s.case) await new SimCase(fromJson(s.case), stats).execute();
      let d: fc.RunDetails<[SimCaseSpec]>;
      try {
        d = await fc.check(property, { seed: s.seed, path: s.path, endOnFailure: true });
      } catch (e) {
        // "Unable to replay": the generator changed since this was saved (the stored case ran above).
        if (!s.case) throw new Error(`saved seed ${s.seed} cannot be replayed and has no stored case: ${e}`);
        continue;
      }
      if (d.failed)
        throw new Error(`saved seed ${s.seed} (${s.note ?? 'no note'}) fails again:\n${report(d)}`);
    }
  });

  it(`holds every invariant over ${RUNS} random cases of 5–20 transitions`, async () => {
    const started = performance.now();
    const d = await fc.check(property, {
      numRuns: PATH ? 1 : RUNS,
      seed: SEED,
      ...(PATH ? { path: PATH } : {}),
      endOnFailure: !SHRINK,
    });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    if (d.failed) {
      propertyFailed = true;
      if (d.counterexamplePath && d.counterexample)
        saveSeed({ seed: d.seed, path: d.counterexamplePath, case: toJson(d.counterexample[0]) });
      throw new Error(report(d));
    }
    const kinds = COMMAND_KINDS.map((k) => `${k}=${stats.kinds[k] ?? 0}`).join(' ');
    console.log(
      `sim: seed ${SEED}, ${stats.cases} cases, ${stats.steps} steps in ${seconds} s; ${kinds}; outcomes ${JSON.stringify(stats.outcomes)}; sends ${JSON.stringify(stats.sends)}`,
    );
  });

  it('reached every transition kind and every outcome the invariants are about', () => {
    if (PATH || propertyFailed) return;
    for (const k of COMMAND_KINDS) expect(stats.kinds[k] ?? 0, `transition kind ${k}`).toBeGreaterThan(0);
    for (const o of [
      'delivered',
      'delivered.nat',
      'prohibited',
      'unreachable',
      'icmp-suppressed',
      'unauthorized-client.dropped',
      'reply.port-unreachable',
      'reply.rst',
      'dns.noerror',
      'dns.nxdomain',
      'dns.servfail',
      'domain.active',
      'domain.inactive',
      'goodbye',
      'renumber.fresh',
      'renumber.steal',
      'relay.lost-announced',
      'relay.lost-silently',
      'portal.reconnected',
      'lost-in-partition',
      'inbound.allowed',
      'inbound.no-resource',
      'inbound.filter.denied',
      'inbound.no-client',
    ])
      expect(stats.outcomes[o] ?? 0, `outcome ${o}`).toBeGreaterThan(0);
    for (const proto of ['icmp', 'udp', 'tcp'])
      for (const cat of ['cidr', 'dns', 'internet', 'nonResource'])
        expect(stats.sends[`${proto}.${cat}`] ?? 0, `send ${proto} to ${cat}`).toBeGreaterThan(0);
  });
});
