import { describe, expect, it } from 'vitest';
import { levelFor, parseLogFilter } from '../../../src/cli/log-filter.js';

describe('log filter', () => {
  it('parses a level and target directives in RUST_LOG syntax', () => {
    const r = parseLogFilter('warn, portal=debug ,router=TRACE,firezone_gateway::eventloop=info');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.level).toBe('warn');
    expect(levelFor(r.value, 'portal')).toBe('debug');
    expect(levelFor(r.value, 'router')).toBe('trace');
    expect(levelFor(r.value, 'dns')).toBe('warn');
  });

  it('defaults the global level to info when only targets are given', () => {
    const r = parseLogFilter('snownet=debug');
    expect(r.ok && r.value.level).toBe('info');
  });

  it('keeps only the target of span selectors, and lets a later level win', () => {
    const r = parseLogFilter('relay[alloc{id=1}]=debug,info,off');
    expect(r.ok && [r.value.level, levelFor(r.value, 'relay')]).toEqual(['off', 'debug']);
  });

  it('accepts an empty filter as the default', () => {
    const r = parseLogFilter(' , ');
    expect(r.ok && r.value.level).toBe('info');
  });

  it.each(['dbug', 'portal', 'portal=loud', '=debug', '1.2'])(
    'rejects %j with a message naming the directive',
    (text) => {
      const r = parseLogFilter(text);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toContain('invalid log directive');
    },
  );
});
