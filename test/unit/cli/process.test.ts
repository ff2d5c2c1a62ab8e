import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PERMISSION_MESSAGE } from '../../../src/cli/permissions.js';
import { NOBODY, nobodyApp, removeNobodyApp, startGateway } from '../../support/gateway-process.js';
import { hasCommand, rootAvailable } from '../../support/privileges.js';

/**
 * Exit codes of the built binary for everything it refuses before touching the network. Runs
 * that get as far as creating the TUN device are in test/e2e/cli (they need a namespace).
 */
afterAll(() => removeNobodyApp());

describe('firezone-gateway refusing to start', () => {
  it('prints help listing the flags and exits 0', async () => {
    const r = startGateway(['--help']);
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
    const r = startGateway([]);
    expect((await r.exit).code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/token is required/);
  });

  it('exits 1 on a portal URL with an unsupported scheme, before touching the network', async () => {
    const r = startGateway(['tok', '-u', 'ftp://portal.test', '--health-check-addr', '127.0.0.1:0'], {
      env: { FIREZONE_ID: 'x' },
    });
    expect((await r.exit).code).toBe(1);
    expect(r.stderr).toMatch(/scheme 'ftp' is not one of ws, wss, http, https/);
    expect(r.stderr).not.toMatch(/TUN device created|Health check listening/);
  });

  it('exits 1 when the standalone config file is missing or not a JSON object', async () => {
    const missing = startGateway(['--config', '/nonexistent/gw.json']);
    expect((await missing.exit).code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read config file \/nonexistent\/gw.json/);
    const dir = mkdtempSync(join(tmpdir(), 'fz-cfg-'));
    writeFileSync(join(dir, 'array.json'), '[1, 2]');
    const notObject = startGateway(['--config', join(dir, 'array.json')]);
    expect((await notObject.exit).code).toBe(1);
    expect(notObject.stderr).toMatch(/is not a JSON object with the gateway policy/);
    rmSync(dir, { recursive: true });
  });

  describe.runIf(rootAvailable('the permission-check process test') && hasCommand('setpriv'))(
    'as an unprivileged user',
    () => {
      it('exits 1 with the permission message without root or CAP_NET_ADMIN', async () => {
        const r = startGateway(['tok'], { setpriv: NOBODY, app: nobodyApp() });
        expect((await r.exit).code).toBe(1);
        expect(r.stderr.trim()).toBe(PERMISSION_MESSAGE);
      });
    },
  );
});
