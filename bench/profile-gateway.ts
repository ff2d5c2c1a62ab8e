/**
 * Where the gateway's time goes under load: builds the standalone lab (client / gateway /
 * resource namespaces), runs our gateway with V8's CPU profiler, pushes iperf3 TCP through it
 * for 10 s, and prints the functions with the most self time (plus the .cpuprofile path, which
 * Chrome DevTools opens).
 *
 *   npm run build && sudo npx tsx bench/profile-gateway.ts [seconds]
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADDR, execIn, GatewayLab, IPERF_PORT } from '../test/e2e/support/gateway-topology.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

async function main(): Promise<void> {
  if (process.geteuid?.() !== 0) {
    process.stdout.write('profile: skipped (needs root for network namespaces and the TUN device)\n');
    return;
  }
  const seconds = Number(process.argv[2] ?? 10);
  const profDir = mkdtempSync(join(tmpdir(), 'fz-prof-'));
  const lab = await GatewayLab.create();
  try {
    const ours = await lab.startOurs(lab.policy(), ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
    const run = ours.run;
    await lab.startIperfServer();
    await lab.waitForPath();
    const r = await execIn(
      lab.client,
      'iperf3',
      ['-c', ADDR.lab, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'],
      (seconds + 30) * 1000,
    );
    const bps = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end
      .sum_received.bits_per_second;
    run.child.kill('SIGTERM');
    await run.exit;
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`no profile written to ${profDir}`);
    const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as {
      nodes: ProfileNode[];
      samples: number[];
    };
    const total = profile.samples.length;
    const self = new Map<string, number>();
    for (const n of profile.nodes) {
      const f = n.callFrame;
      const where = f.url ? `${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}` : '';
      const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
      self.set(key, (self.get(key) ?? 0) + (n.hitCount ?? 0));
    }
    const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25);
    process.stdout.write(
      `iperf3 TCP through our gateway: ${(bps / 1e6).toFixed(0)} Mbit/s for ${seconds} s\n`,
    );
    process.stdout.write(`profile: ${join(profDir, file)} (${total} samples)\n`);
    for (const [k, v] of top) process.stdout.write(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}\n`);
  } finally {
    await lab.stop().catch(() => undefined);
    lab.destroy();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`profile-gateway: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
