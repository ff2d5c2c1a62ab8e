import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SHUTDOWN_GRACE_MS } from '../../../src/cli/main.js';
import { PERMISSION_MESSAGE } from '../../../src/cli/permissions.js';
import { hasCommand, rootAvailable } from '../../support/privileges.js';

/**
 * The built binary as an operator runs it (`npm run build` precedes the unit tests). Exercises
 * what only a real process shows: exit codes, the permission check under a real unprivileged
 * user, and signal handling.
 */
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<{ code: number | null; at: number }>;
}

function start(
  args: string[],
  opts: { env?: Record<string, string>; setpriv?: string[]; app?: string } = {},
): Run {
  const bin = join(opts.app ?? REPO, 'bin', 'firezone-gateway.js');
  const [cmd, argv] = opts.setpriv
    ? ['setpriv', [...opts.setpriv, process.execPath, bin, ...args]]
    : [process.execPath, [bin, ...args]];
  const child = spawn(cmd, argv, {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', FIREZONE_NO_INC_BUF: 'true', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: Run = {
    child,
    stdout: '',
    stderr: '',
    exit: new Promise((resolve) => child.on('exit', (code) => resolve({ code, at: Date.now() }))),
  };
  child.stdout!.on('data', (d) => (run.stdout += d));
  child.stderr!.on('data', (d) => (run.stderr += d));
  return run;
}

async function waitFor(run: Run, pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
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

/** A copy of the app an unprivileged user can read, when the checkout itself is private (e.g. under /root). */
let appForNobody: string | undefined;
function nobodyApp(): string {
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
afterAll(() => {
  if (appForNobody && appForNobody !== REPO) rmSync(appForNobody, { recursive: true, force: true });
});

describe('firezone-gateway process', () => {
  it('prints help listing the flags and exits 0', async () => {
    const r = start(['--help']);
    expect((await r.exit).code).toBe(0);
    for (const flag of [
      '--api-url',
      '--firezone-name',
      '--firezone-id',
      '--no-telemetry',
      '--no-check',
      '--health-check-addr',
      '--no-inc-buf',
      '--validate-checksums',
      '--log-level',
      '--config',
      '--debug-addr',
    ]) {
      expect(r.stdout).toContain(flag);
    }
  });

  it('exits 2 with one line when no token is given', async () => {
    const r = start([]);
    expect((await r.exit).code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/token is required/);
  });

  it('exits 1 on a portal URL with an unsupported scheme, before touching the network', async () => {
    const r = start(['tok', '-u', 'ftp://portal.test', '--health-check-addr', '127.0.0.1:0'], {
      env: { FIREZONE_ID: 'x' },
    });
    expect((await r.exit).code).toBe(1);
    expect(r.stderr).toMatch(/scheme 'ftp' is not one of ws, wss, http, https/);
    expect(r.stderr).not.toMatch(/Health check listening/);
  });

  it('exits 1 when the standalone config file is missing or not a JSON object', async () => {
    const missing = start(['--config', '/nonexistent/gw.json']);
    expect((await missing.exit).code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read config file \/nonexistent\/gw.json/);
    const dir = mkdtempSync(join(tmpdir(), 'fz-cfg-'));
    writeFileSync(join(dir, 'array.json'), '[1, 2]');
    const notObject = start(['--config', join(dir, 'array.json')]);
    expect((await notObject.exit).code).toBe(1);
    expect(notObject.stderr).toMatch(/must hold a JSON object at the top level/);
    writeFileSync(join(dir, 'ok.json'), '{}');
    const ok = start(['--config', join(dir, 'ok.json'), '--health-check-addr', '127.0.0.1:0']);
    await waitFor(ok, /Standalone mode/);
    ok.child.kill('SIGTERM');
    expect((await ok.exit).code).toBe(0);
    rmSync(dir, { recursive: true });
  });

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'serves /healthz and shuts down cleanly on %s within the grace period',
    async (sig) => {
      const r = start(['tok', '--health-check-addr', '127.0.0.1:0'], { env: { FIREZONE_ID: 'gw-test' } });
      const m = await waitFor(r, /"addr":"127\.0\.0\.1:(\d+)","msg":"Health check listening"/);
      const res = await fetch(`http://127.0.0.1:${m[1]}/healthz`);
      expect(res.status).toBe(200);
      const sent = Date.now();
      r.child.kill(sig);
      const { code, at } = await r.exit;
      expect(code).toBe(0);
      expect(at - sent).toBeLessThan(SHUTDOWN_GRACE_MS);
      expect(r.stderr).toMatch(/"msg":"Goodbye!"/);
      // Default log format is one JSON object per line.
      for (const line of r.stderr.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    },
  );

  describe.runIf(rootAvailable('the permission-check process tests') && hasCommand('setpriv'))(
    'as an unprivileged user',
    () => {
      it('exits 1 with the permission message without root or CAP_NET_ADMIN', async () => {
        const r = start(['tok'], { setpriv: NOBODY, app: nobodyApp() });
        expect((await r.exit).code).toBe(1);
        expect(r.stderr.trim()).toBe(PERMISSION_MESSAGE);
      });

      it('starts with CAP_NET_ADMIN as an ambient capability (as the systemd unit grants it)', async () => {
        const r = start(['tok', '--health-check-addr', '127.0.0.1:0'], {
          setpriv: [...NOBODY, '--inh-caps=+net_admin', '--ambient-caps=+net_admin'],
          app: nobodyApp(),
          env: { FIREZONE_ID: 'gw-cap' },
        });
        await waitFor(r, /Health check listening/);
        r.child.kill('SIGTERM');
        expect((await r.exit).code).toBe(0);
      });

      it('skips the check with --no-check', async () => {
        const r = start(['tok', '--no-check', '--health-check-addr', '127.0.0.1:0'], {
          setpriv: NOBODY,
          app: nobodyApp(),
          env: { FIREZONE_ID: 'gw-nocheck' },
        });
        await waitFor(r, /Health check listening/);
        expect(r.stderr).not.toContain('CAP_NET_ADMIN');
        r.child.kill('SIGTERM');
        expect((await r.exit).code).toBe(0);
      });
    },
  );
});
