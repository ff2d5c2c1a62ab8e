import type { Result } from '../wire/result.js';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number] | 'off';

/**
 * A log filter in the syntax of Rust's `RUST_LOG` (tracing `EnvFilter`), which operators of the
 * official gateway already use: comma-separated directives, each a level (`info`) or
 * `target=level` (`portal=debug`). Unlike tracing, a bare word must be a level: a bare target
 * (`trace` for that target in Rust) is far more often a typo such as `dbug`, so it is refused.
 *
 * Targets are this gateway's component names (`portal`, `router`, ...). Directives for other
 * targets (Rust crate names such as `firezone_gateway` or `snownet` in an existing RUST_LOG) are
 * accepted and ignored, so an existing environment keeps working. Without a bare level the
 * global level is `info` (tracing would silence everything else; for a daemon that hides errors).
 */
export interface LogFilter {
  readonly level: LogLevel;
  readonly targets: ReadonlyMap<string, LogLevel>;
}

export const DEFAULT_LOG_FILTER: LogFilter = { level: 'info', targets: new Map() };

function asLevel(word: string): LogLevel | undefined {
  const w = word.trim().toLowerCase();
  if (w === 'off') return 'off';
  if (w === 'warning') return 'warn';
  return (LOG_LEVELS as readonly string[]).includes(w) ? (w as LogLevel) : undefined;
}

export function parseLogFilter(text: string): Result<LogFilter, string> {
  let level: LogLevel | undefined;
  const targets = new Map<string, LogLevel>();
  for (const raw of text.split(',')) {
    const d = raw.trim();
    if (d === '') continue;
    const eq = d.lastIndexOf('=');
    if (eq === -1) {
      const l = asLevel(d);
      if (!l) return { ok: false, error: badDirective(d) };
      level = l;
      continue;
    }
    // Span/field selectors (`target[span{f=v}]=level`) are a Rust feature we do not have: keep
    // the target part only.
    const target = d.slice(0, eq).replace(/\[.*$/, '').trim();
    const l = asLevel(d.slice(eq + 1));
    if (!l || target === '') return { ok: false, error: badDirective(d) };
    targets.set(target, l);
  }
  return { ok: true, value: { level: level ?? DEFAULT_LOG_FILTER.level, targets } };
}

function badDirective(d: string): string {
  return `invalid log directive '${d}': expected ${LOG_LEVELS.join('|')}|off or TARGET=LEVEL`;
}

/** The level for a component: its own directive, else the global one. */
export function levelFor(filter: LogFilter, component: string): LogLevel {
  return filter.targets.get(component) ?? filter.level;
}
