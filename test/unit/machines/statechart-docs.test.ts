import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { clientConnectionMachine } from '../../../src/machines/client-connection.machine.js';
import { renderStatechartDocs, transitionsOf } from '../../../src/machines/statechart-docs.js';

const DIR = fileURLToPath(new URL('../../../docs/statecharts/', import.meta.url));

describe('docs/statecharts', () => {
  it('matches what the machine definitions generate (run `npm run statecharts` after changing a machine)', () => {
    const files = renderStatechartDocs();
    expect(readdirSync(DIR).sort()).toEqual(Object.keys(files).sort());
    for (const [name, text] of Object.entries(files)) {
      expect(
        readFileSync(`${DIR}${name}`, 'utf8'),
        `docs/statecharts/${name} is stale: run npm run statecharts`,
      ).toBe(text);
    }
  });

  it('lists every transition of a machine, guards and eventless ones included', () => {
    const rows = transitionsOf(clientConnectionMachine);
    expect(rows).toContainEqual({
      source: '(machine)',
      event: 'policy.update',
      guard: 'revokesEverything',
      target: 'revoked',
      actions: '',
    });
    expect(rows).toContainEqual({
      source: 'expired',
      event: '(always)',
      guard: '',
      target: 'removed',
      actions: '',
    });
    expect(rows).toContainEqual({
      source: 'live.tunnel.idle',
      event: 'traffic.active',
      guard: '',
      target: 'live.tunnel.connected',
      actions: '',
    });
  });
});
