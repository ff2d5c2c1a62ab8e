import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CliOutcome, type Env, type GatewayOptions, parseCli } from '../../../src/cli/options.js';

function run(argv: string[], env: Env = {}): { outcome: CliOutcome; stdout: string; stderr: string } {
  let stdout = '';
  let stderr = '';
  const outcome = parseCli(argv, env, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { outcome, stdout, stderr };
}

function options(argv: string[], env: Env = {}): GatewayOptions {
  const r = run(argv, env);
  if (r.outcome.kind !== 'run') throw new Error(`expected options, got exit ${r.outcome.code}: ${r.stderr}`);
  return r.outcome.options;
}

function usageError(argv: string[], env: Env = {}): string {
  const r = run(argv, env);
  expect(r.outcome).toEqual({ kind: 'exit', code: 2 });
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  return r.stderr.trim();
}

describe('command line and environment', () => {
  it('uses the reference defaults', () => {
    const o = options(['secret-token']);
    expect(o.token).toBe('secret-token');
    expect(o.apiUrl.href).toBe('wss://api.firezone.dev/');
    expect(o.healthCheckAddr).toEqual({ host: '0.0.0.0', port: 8080, family: 4 });
    expect([o.noTelemetry, o.noCheck, o.noIncBuf, o.validateChecksums]).toEqual([false, false, false, false]);
    expect(o.firezoneName).toBeUndefined();
    expect(o.firezoneId).toBeUndefined();
    expect(o.logFilter.level).toBe('info');
    expect(o.config).toBeUndefined();
    expect(o.debugAddr).toBeUndefined();
    expect(o.resolvConf).toBe('/etc/resolv.conf');
  });

  it('takes the nameserver file from --resolv-conf, else FIREZONE_RESOLV_CONF', () => {
    expect(options(['t'], { FIREZONE_RESOLV_CONF: '/run/a.conf' }).resolvConf).toBe('/run/a.conf');
    expect(
      options(['t', '--resolv-conf', '/run/b.conf'], { FIREZONE_RESOLV_CONF: '/run/a.conf' }).resolvConf,
    ).toBe('/run/b.conf');
  });

  it('takes every setting from the environment', () => {
    const o = options([], {
      FIREZONE_TOKEN: 'env-token',
      FIREZONE_API_URL: 'ws://portal.test:4000/prefix/',
      FIREZONE_NAME: 'gw-eu-1',
      FIREZONE_ID: 'id-1',
      FIREZONE_NO_TELEMETRY: 'true',
      HEALTH_CHECK_ADDR: '[::1]:9000',
      FIREZONE_NO_INC_BUF: '1',
      FIREZONE_VALIDATE_CHECKSUMS: 'TRUE',
      FIREZONE_LOG: 'debug,portal=trace',
    });
    expect(o.token).toBe('env-token');
    expect(o.apiUrl.href).toBe('ws://portal.test:4000/prefix/');
    expect(o.firezoneName).toBe('gw-eu-1');
    expect(o.firezoneId).toBe('id-1');
    expect(o.noTelemetry).toBe(true);
    expect(o.healthCheckAddr).toEqual({ host: '::1', port: 9000, family: 6 });
    expect(o.noIncBuf).toBe(true);
    expect(o.validateChecksums).toBe(true);
    expect(o.logFilter.level).toBe('debug');
    expect(o.logFilter.targets.get('portal')).toBe('trace');
  });

  it('lets flags beat environment variables', () => {
    const o = options(
      [
        'flag-token',
        '-u',
        'https://other.test',
        '-n',
        'flag-name',
        '-i',
        'flag-id',
        '--health-check-addr',
        '127.0.0.1:1',
        '--log-level',
        'warn',
      ],
      {
        FIREZONE_TOKEN: 'env-token',
        FIREZONE_API_URL: 'ws://portal.test',
        FIREZONE_NAME: 'env-name',
        FIREZONE_ID: 'env-id',
        HEALTH_CHECK_ADDR: '0.0.0.0:2',
        FIREZONE_LOG: 'trace',
        RUST_LOG: 'error',
      },
    );
    expect([o.token, o.apiUrl.host, o.firezoneName, o.firezoneId]).toEqual([
      'flag-token',
      'other.test',
      'flag-name',
      'flag-id',
    ]);
    expect(o.healthCheckAddr.port).toBe(1);
    expect(o.logFilter.level).toBe('warn');
  });

  it('accepts the long and short forms of every flag', () => {
    const long = options([
      't',
      '--api-url',
      'wss://a.test',
      '--firezone-name',
      'n',
      '--firezone-id',
      'i',
      '--no-telemetry',
      '--no-check',
      '--no-inc-buf',
      '--validate-checksums',
      '--config',
      '/etc/gw.json',
      '--debug-addr',
      '127.0.0.1:9999',
    ]);
    expect([long.noTelemetry, long.noCheck, long.noIncBuf, long.validateChecksums]).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(long.config).toBe('/etc/gw.json');
    expect(long.debugAddr).toEqual({ host: '127.0.0.1', port: 9999, family: 4 });
    const short = options(['t', '-u', 'wss://a.test', '-n', 'n', '-i', 'i']);
    expect([short.apiUrl.host, short.firezoneName, short.firezoneId]).toEqual(['a.test', 'n', 'i']);
  });

  it('reads RUST_LOG when FIREZONE_LOG is unset, and treats empty FIREZONE_ID as unset', () => {
    const o = options(['t'], { RUST_LOG: 'firezone_gateway=debug,trace', FIREZONE_ID: '' });
    expect(o.logFilter.level).toBe('trace');
    expect(o.firezoneId).toBeUndefined();
  });

  it('does not need a token in standalone mode', () => {
    expect(options(['--config', 'gw.json']).token).toBeUndefined();
  });

  it('reads the token from a systemd credential and trims it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fz-cred-'));
    writeFileSync(join(dir, 'FIREZONE_TOKEN'), '  cred-token\n');
    expect(options([], { CREDENTIALS_DIRECTORY: dir }).token).toBe('cred-token');
    expect(options([' padded\n']).token).toBe('padded');
  });

  it('prints help listing every flag and exits 0', () => {
    const r = run(['--help']);
    expect(r.outcome).toEqual({ kind: 'exit', code: 0 });
    for (const flag of [
      'TOKEN',
      'FIREZONE_TOKEN',
      '-u, --api-url',
      'FIREZONE_API_URL',
      '-n, --firezone-name',
      'FIREZONE_NAME',
      '-i, --firezone-id',
      'FIREZONE_ID',
      '--no-telemetry',
      'FIREZONE_NO_TELEMETRY',
      '--no-check',
      '--health-check-addr',
      'HEALTH_CHECK_ADDR',
      '--no-inc-buf',
      'FIREZONE_NO_INC_BUF',
      '--validate-checksums',
      'FIREZONE_VALIDATE_CHECKSUMS',
      '--log-level',
      'FIREZONE_LOG',
      'RUST_LOG',
      '--config',
      '--resolv-conf',
      'FIREZONE_RESOLV_CONF',
      '--debug-addr',
      '-V, --version',
    ]) {
      expect(r.stdout).toContain(flag);
    }
  });

  it('prints the version and exits 0', () => {
    const r = run(['-V']);
    expect(r.outcome).toEqual({ kind: 'exit', code: 0 });
    expect(r.stdout).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('exits 2 with one line naming the missing token', () => {
    expect(usageError([])).toMatch(/token is required.*FIREZONE_TOKEN/);
  });

  it.each([
    [['t', '--bogus'], /unknown option '--bogus'/],
    [['t', 'extra'], /too many arguments/],
    [['t', '-u'], /argument missing/],
    [['t', '-u', 'not a url'], /invalid value 'not a url' for --api-url/],
    [['t', '--health-check-addr', 'localhost:8080'], /--health-check-addr: expected IP:PORT/],
    [['t', '--health-check-addr', '1.2.3.4:70000'], /--health-check-addr/],
    [['t', '--debug-addr', '::1:80'], /--debug-addr/],
    [['t', '--log-level', 'dbug'], /invalid log directive 'dbug'.*--log-level/],
    [['--config', ''], /--config needs a file path/],
    [['t', '--resolv-conf', ' '], /--resolv-conf needs a file path/],
  ])('exits 2 on %j', (argv, message) => {
    expect(usageError(argv)).toMatch(message);
  });

  it.each([
    ['FIREZONE_NO_TELEMETRY', 'yes'],
    ['FIREZONE_NO_INC_BUF', '2'],
    ['FIREZONE_VALIDATE_CHECKSUMS', 'on'],
  ])('exits 2 on a non-boolean %s', (name, value) => {
    expect(usageError(['t'], { [name]: value })).toContain(
      `invalid value '${value}' for ${name}: expected true, false, 1 or 0`,
    );
  });

  it('exits 2 on a bad FIREZONE_LOG and names the variable', () => {
    expect(usageError(['t'], { FIREZONE_LOG: 'portal=loud' })).toMatch(/'portal=loud'.*FIREZONE_LOG/);
  });

  it('accepts false/0 for boolean variables', () => {
    const o = options(['t'], { FIREZONE_NO_TELEMETRY: 'False', FIREZONE_NO_INC_BUF: '0' });
    expect([o.noTelemetry, o.noIncBuf]).toEqual([false, false]);
  });
});
