/**
 * A tiny benchmark harness: each case runs in batches until a time budget is spent, five times,
 * and reports the median nanoseconds per operation. Results print as one JSON document followed
 * by one summary line, so CI logs and scripts can both read them.
 */
export interface BenchResult {
  name: string;
  nsPerOp: number;
  opsPerSec: number;
  samples: number[];
}

// A sink the optimiser cannot prove unused.
export let sink = 0;
export function consume(v: number): void {
  sink = (sink + v) | 0;
}

export function measure(name: string, fn: () => void, budgetMs = 300): BenchResult {
  for (let i = 0; i < 10_000; i++) fn(); // warm-up: let the JIT settle
  const samples: number[] = [];
  for (let round = 0; round < 5; round++) {
    let ops = 0;
    const start = process.hrtime.bigint();
    const deadline = start + BigInt(budgetMs) * 1_000_000n;
    let now = start;
    while (now < deadline) {
      for (let i = 0; i < 1000; i++) fn();
      ops += 1000;
      now = process.hrtime.bigint();
    }
    samples.push(Number(now - start) / ops);
  }
  const sorted = [...samples].sort((a, b) => a - b);
  const nsPerOp = sorted[2]!;
  return {
    name,
    nsPerOp: round2(nsPerOp),
    opsPerSec: Math.round(1e9 / nsPerOp),
    samples: samples.map(round2),
  };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

export function report(bench: string, results: BenchResult[], summary: string): void {
  const doc = {
    bench,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
    results,
  };
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  process.stdout.write(`${summary}\n`);
}
