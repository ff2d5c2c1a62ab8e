import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';
import { type LogFilter, type LogLevel, levelFor } from './log-filter.js';

export type { Logger } from 'pino';

function pinoLevel(l: LogLevel): pino.LevelWithSilent {
  return l === 'off' ? 'silent' : l;
}

/**
 * The process logger. JSON lines on stderr (one object per line, for journald and log shippers);
 * human-readable when stderr is a terminal. Components get child loggers whose level follows
 * their `TARGET=LEVEL` directive (see {@link LogFilter}).
 */
export function createLogger(
  filter: LogFilter,
  options: { destination?: DestinationStream; pretty?: boolean } = {},
): Logger {
  const usePretty = options.pretty ?? process.stderr.isTTY === true;
  // The root must let the most verbose component through; children narrow it down.
  const levels = [filter.level, ...filter.targets.values()].map(pinoLevel);
  const order: pino.LevelWithSilent[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
  const rootLevel = order.find((l) => levels.includes(l)) ?? 'info';
  const dest =
    options.destination ??
    (usePretty
      ? pretty({ destination: 2, sync: true, colorize: true })
      : pino.destination({ dest: 2, sync: true }));
  return pino(
    {
      level: rootLevel,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  ).child({}, { level: pinoLevel(filter.level) });
}

/** A child logger for one component, at the level the filter gives it. */
export function componentLogger(root: Logger, filter: LogFilter, component: string): Logger {
  return root.child({ component }, { level: pinoLevel(levelFor(filter, component)) });
}
