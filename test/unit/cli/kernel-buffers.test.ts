import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { RMEM_MAX_BYTES, raiseSocketBufferLimits, WMEM_MAX_BYTES } from '../../../src/cli/kernel-buffers.js';

function fakeProcSys(rmem: string, wmem: string): string {
  const root = mkdtempSync(join(tmpdir(), 'fz-sys-'));
  mkdirSync(join(root, 'net', 'core'), { recursive: true });
  writeFileSync(join(root, 'net/core/rmem_max'), rmem);
  writeFileSync(join(root, 'net/core/wmem_max'), wmem);
  return root;
}

function captureLog() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

describe('kernel socket buffer limits', () => {
  it('raises limits that are lower', async () => {
    const root = fakeProcSys('212992\n', '212992\n');
    const { log, lines } = captureLog();
    await raiseSocketBufferLimits(log, root);
    expect(readFileSync(join(root, 'net/core/rmem_max'), 'utf8')).toBe(String(RMEM_MAX_BYTES));
    expect(readFileSync(join(root, 'net/core/wmem_max'), 'utf8')).toBe(String(WMEM_MAX_BYTES));
    expect(lines.filter((l) => l.msg === 'Raised kernel socket buffer limit')).toHaveLength(2);
  });

  it('never lowers a limit the host set higher', async () => {
    const root = fakeProcSys('268435456\n', '33554432\n');
    await raiseSocketBufferLimits(captureLog().log, root);
    expect(readFileSync(join(root, 'net/core/rmem_max'), 'utf8')).toBe('268435456\n');
    expect(readFileSync(join(root, 'net/core/wmem_max'), 'utf8')).toBe('33554432\n');
  });

  it('logs and carries on when /proc/sys is not writable or missing', async () => {
    const { log, lines } = captureLog();
    await raiseSocketBufferLimits(log, join(tmpdir(), 'does-not-exist-fz'));
    expect(lines.filter((l) => l.msg === 'Failed to raise kernel socket buffer limit')).toHaveLength(2);
  });
});
