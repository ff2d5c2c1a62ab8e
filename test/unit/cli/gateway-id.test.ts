import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveGatewayId } from '../../../src/cli/gateway-id.js';
import { GatewayError } from '../../../src/errors.js';

const dir = () => mkdtempSync(join(tmpdir(), 'fz-id-'));

describe('gateway ID', () => {
  it('uses FIREZONE_ID verbatim when given', async () => {
    expect(await resolveGatewayId('my-gw', join(dir(), 'nope', 'gateway_id'))).toEqual({
      id: 'my-gw',
      source: 'option',
    });
  });

  it('creates {"id": sha256-hex} with restrictive modes, then reads the same id back', async () => {
    const path = join(dir(), 'firezone', 'gateway_id');
    const first = await resolveGatewayId(undefined, path);
    expect(first.source).toBe('created');
    expect(first.id).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ id: first.id });
    expect(statSync(path).mode & 0o777).toBe(0o640);
    expect(statSync(join(path, '..')).mode & 0o777).toBe(0o770 & ~process.umask());
    const second = await resolveGatewayId('', path);
    expect(second).toEqual({ id: first.id, source: 'file' });
  });

  it('reads a bare UUID written by older installations, trimmed', async () => {
    const path = join(dir(), 'gateway_id');
    writeFileSync(path, '9a7f0b5e-6c3d-4c1e-8f2a-1b2c3d4e5f60\n');
    expect((await resolveGatewayId(undefined, path)).id).toBe('9a7f0b5e-6c3d-4c1e-8f2a-1b2c3d4e5f60');
  });

  it('replaces an empty file instead of failing', async () => {
    const path = join(dir(), 'gateway_id');
    writeFileSync(path, '');
    const r = await resolveGatewayId(undefined, path);
    expect(r.source).toBe('created');
    expect(JSON.parse(readFileSync(path, 'utf8')).id).toBe(r.id);
  });

  it.each([
    ['broken JSON', '{"id": '],
    ['JSON without an id', '{"name":"x"}'],
    ['a non-string id', '{"id": 42}'],
  ])('fails with GW_ERR_GATEWAY_ID on %s', async (_n, text) => {
    const path = join(dir(), 'gateway_id');
    writeFileSync(path, text);
    await expect(resolveGatewayId(undefined, path)).rejects.toMatchObject({ code: 'GW_ERR_GATEWAY_ID' });
  });

  it('explains how to fix an unwritable location', async () => {
    const base = dir();
    writeFileSync(join(base, 'file'), 'x');
    const err = await resolveGatewayId(undefined, join(base, 'file', 'gateway_id')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).message).toMatch(/set FIREZONE_ID or give the gateway read\/write access/);
  });

  it('fails on an unreadable path that exists (a directory)', async () => {
    const path = join(dir(), 'gateway_id');
    mkdirSync(path);
    await expect(resolveGatewayId(undefined, path)).rejects.toMatchObject({ code: 'GW_ERR_GATEWAY_ID' });
  });
});
