import { describe, expect, it } from 'vitest';
import { hasNecessaryPermissions, hasNetAdminInStatus } from '../../../src/cli/permissions.js';

const status = (capEff: string) =>
  `Name:\tnode\nUid:\t1000\t1000\t1000\t1000\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;

describe('permission check', () => {
  it('passes for root whatever the capabilities', () => {
    expect(hasNecessaryPermissions(0, () => status('0000000000000000'))).toBe(true);
  });

  it('passes for a non-root user with CAP_NET_ADMIN (bit 12) in CapEff', () => {
    expect(hasNecessaryPermissions(1000, () => status('0000000000001000'))).toBe(true);
    expect(hasNetAdminInStatus(status('000001fffeffffff'))).toBe(true);
  });

  it('fails for a non-root user without it, even with CAP_NET_ADMIN only in other sets', () => {
    expect(hasNecessaryPermissions(1000, () => status('0000000000002000'))).toBe(false);
    expect(hasNecessaryPermissions(1000, () => status('0000000000000000'))).toBe(false);
  });

  it('fails when /proc cannot be read or has no CapEff line', () => {
    expect(
      hasNecessaryPermissions(1000, () => {
        throw new Error('ENOENT');
      }),
    ).toBe(false);
    expect(hasNetAdminInStatus('Name:\tnode\n')).toBe(false);
  });
});
