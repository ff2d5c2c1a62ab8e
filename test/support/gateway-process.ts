import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Netns } from './netns.js';

/**
 * Runs the built `firezone-gateway` binary (`npm run build` precedes the test tiers) as an
 * operator would, optionally inside a network namespace and as another user via setpriv.
 */
export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

export interface GatewayRun {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

export function startGateway(
  args: string[],
  opts: {
    env?: Record<string, string>;
    setpriv?: string[];
    app?: string;
    ns?: Netns;
    nodeArgs?: string[];
  } = {},
): GatewayRun {
  const bin = join(opts.app ?? REPO, 'bin', 'firezone-gateway.cjs');
  let argv = [process.execPath, ...(opts.nodeArgs ?? []), bin, ...args];
  if (opts.setpriv) argv = ['setpriv', ...opts.setpriv, ...argv];
  if (opts.ns) argv = ['ip', 'netns', 'exec', opts.ns.name, ...argv];
  const child = spawn(argv[0]!, argv.slice(1), {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      FIREZONE_NO_INC_BUF: 'true',
      // The host's nameservers are not the tests' business: probes go to loopback only.
      FIREZONE_RESOLV_CONF: join(REPO, 'test', 'fixtures', 'dns', 'loopback-resolv.conf'),
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: GatewayRun = {
    child,
    stdout: '',
    stderr: '',
    exit: new Promise((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
    ),
  };
  child.stdout!.on('data', (d) => (run.stdout += d));
  child.stderr!.on('data', (d) => (run.stderr += d));
  return run;
}

/** Waits until the gateway's log (stderr) matches `pattern`. */
export async function waitForLog(
  run: GatewayRun,
  pattern: RegExp,
  timeoutMs = 10_000,
): Promise<RegExpMatchArray> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const m = run.stderr.match(pattern);
    if (m) return m;
    if (run.child.exitCode !== null || Date.now() > until) {
      throw new Error(`did not see ${pattern}; exit ${run.child.exitCode}; stderr:\n${run.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

let appForNobody: string | undefined;

/**
 * A directory holding the app that an unprivileged user can read: the checkout itself, or a
 * copy when the checkout is private (e.g. under /root). Remove it with `removeNobodyApp()`.
 */
export function nobodyApp(): string {
  if (appForNobody) return appForNobody;
  try {
    execFileSync('setpriv', [...NOBODY, 'test', '-r', join(REPO, 'dist', 'cli', 'main.js')]);
    appForNobody = REPO;
  } catch {
    const dir = mkdtempSync(join(tmpdir(), 'fz-app-'));
    for (const part of ['bin', 'dist', 'node_modules', 'package.json'])
      cpSync(join(REPO, part), join(dir, part), { recursive: true });
    execFileSync('chmod', ['-R', 'a+rX', dir]);
    appForNobody = dir;
  }
  return appForNobody;
}

export function removeNobodyApp(): void {
  if (appForNobody && appForNobody !== REPO) rmSync(appForNobody, { recursive: true, force: true });
  appForNobody = undefined;
}
