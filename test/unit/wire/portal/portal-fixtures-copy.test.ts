import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FIXTURE_DIR } from './helpers.js';

/**
 * `test/fixtures/portal` is a copy of the project's shared captures (`../shared/fixtures/portal`
 * next to the repository in the development checkout), so that a clean clone tests the same
 * frames. Where the shared directory exists, the copy must match it file for file.
 */
const SHARED = fileURLToPath(new URL('../../../../../shared/fixtures/portal/', import.meta.url));

describe.runIf(existsSync(SHARED))('the portal fixture copy', () => {
  it('matches ../shared/fixtures/portal', () => {
    const list = (dir: string) =>
      readdirSync(dir)
        .filter((f) => f.endsWith('.json'))
        .sort();
    expect(list(FIXTURE_DIR)).toEqual(list(SHARED));
    for (const f of list(SHARED)) {
      expect(readFileSync(join(FIXTURE_DIR, f), 'utf8'), f).toBe(readFileSync(join(SHARED, f), 'utf8'));
    }
  });
});
