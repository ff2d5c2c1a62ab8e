import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GATEWAY_TOKEN, policyJson, randomKey, TestSocket } from './harness.js';

const MAIN = join(import.meta.dirname, '../../../../src/dev/portal/main.ts');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dev-portal-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true });
});

function run(args: string[]): {
  child: ChildProcess;
  exit: Promise<{ code: number | null; stderr: string }>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  const exit = new Promise<{ code: number | null; stderr: string }>((resolve) => {
    child.on('exit', (code) => resolve({ code, stderr }));
  });
  return { child, exit };
}

describe('the dev portal command', () => {
  it('prints one JSON line with its URL, serves gateways and exits 0 on SIGTERM', async () => {
    const file = join(dir, 'policy.json');
    await writeFile(file, JSON.stringify(policyJson()));
    const { child, exit } = run(['--policy', file, '--log-level', 'silent']);
    const lines = createInterface({ input: child.stdout! });
    const first = await new Promise<string>((resolve) => lines.once('line', resolve));
    const { listening } = JSON.parse(first) as { listening: string };
    expect(listening).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    const q = new URLSearchParams({
      token: GATEWAY_TOKEN,
      external_id: 'cli',
      name: 'cli',
      public_key: randomKey(),
    });
    const s = await TestSocket.open(`${listening}/gateway/websocket?${q}`);
    const reply = await s.request('gateway', 'phx_join', null);
    expect(reply.payload).toEqual({ response: {}, status: 'ok' });
    await s.nextEvent('init');
    child.kill('SIGTERM');
    expect((await exit).code).toBe(0);
    await s.closed;
  });

  it('exits 1 listing the problems of an invalid policy file', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ accountSlug: 'a', sites: [{ id: 'x', name: 's' }] }));
    const { code, stderr } = await run(['--policy', file]).exit;
    expect(code).toBe(1);
    expect(stderr).toContain(`${file}: sites[0].id: 'x' is not a UUID`);
  });

  it('exits 2 on a usage error', async () => {
    expect((await run([]).exit).code).toBe(2);
    expect((await run(['--policy', 'p.json', '--port', 'x']).exit).code).toBe(2);
    expect((await run(['--nope']).exit).code).toBe(2);
  });
});
