import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Prints the per-machine transition coverage the model tests wrote to `.model-coverage/`
 * (`npm run test:models` runs the tests first). Exits 1 when a machine is not fully covered or
 * has no report.
 */
interface Coverage {
  machine: string;
  defined: number;
  walked: number;
  paths: number;
  missing: { source: string; event: string; target: string; guard: string }[];
}

const say = (line: string) => process.stdout.write(`${line}\n`);

const EXPECTED = [
  'portal-session',
  'client-connection',
  'relay-allocation',
  'nameserver-selector',
  'dns-resource-nat',
  'gateway-supervisor',
];
const dir = join(import.meta.dirname, '..', '.model-coverage');
let files: string[] = [];
try {
  files = readdirSync(dir).filter((f) => f.endsWith('.json'));
} catch {
  // no reports at all
}
const reports = new Map<string, Coverage>();
for (const f of files) {
  const c = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Coverage;
  reports.set(c.machine, c);
}
const rows = [['machine', 'transitions', 'walked', 'coverage', 'paths']];
let ok = true;
for (const name of EXPECTED) {
  const c = reports.get(name);
  if (!c) {
    rows.push([name, '-', '-', 'no report', '-']);
    ok = false;
    continue;
  }
  const pct = c.defined === 0 ? 100 : (100 * c.walked) / c.defined;
  if (c.walked < c.defined) ok = false;
  rows.push([name, String(c.defined), String(c.walked), `${pct.toFixed(1)} %`, String(c.paths)]);
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const [i, r] of rows.entries()) {
  say(r.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join('  '));
  if (i === 0) say(widths.map((w) => '-'.repeat(w)).join('  '));
}
for (const c of reports.values())
  for (const m of c.missing) say(`not walked: ${c.machine}: ${m.source} --${m.event}--> ${m.target}`);
say(ok ? 'model coverage: every transition of every machine walked' : 'model coverage: INCOMPLETE');
process.exit(ok ? 0 : 1);
