import { parseArgs } from 'node:util';
import pino from 'pino';
import { GatewayError } from '../../errors.js';
import { loadPortalPolicy } from './policy.js';
import { startDevPortal } from './server.js';

/**
 * `node --import tsx src/dev/portal/main.ts --policy policy.json [--host 127.0.0.1] [--port 0]
 * [--log-level info]`
 *
 * Serves the development portal (`server.ts`) for a policy file (`policy.ts`) until SIGINT or
 * SIGTERM. Once listening it prints one JSON line on stdout, `{"listening":"ws://127.0.0.1:PORT"}`
 * (give that URL to a gateway as `--api-url`); logs are JSON lines on stderr. Exit codes: 0 after
 * a signal, 1 for an unreadable or invalid policy file or a failed bind, 2 for a usage error.
 */

const USAGE =
  'usage: main.ts --policy <file> [--host <address>] [--port <port>] [--log-level <trace|debug|info|warn|error|silent>]';
const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

function usage(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  let values: { policy?: string; host?: string; port?: string; 'log-level'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        policy: { type: 'string' },
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '0' },
        'log-level': { type: 'string', default: 'info' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    usage((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values.policy === undefined) usage('missing --policy <file>');
  const port = Number(values.port);
  if (!/^\d{1,5}$/.test(values.port ?? '') || port > 65535)
    usage(`invalid --port '${values.port}': expected 0 to 65535`);
  const level = values['log-level'] ?? 'info';
  if (!LEVELS.has(level))
    usage(`invalid --log-level '${level}': expected trace|debug|info|warn|error|silent`);

  const logger = pino(
    { level, base: { component: 'dev-portal' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 2, sync: true }),
  );

  let portal: Awaited<ReturnType<typeof startDevPortal>>;
  try {
    const policy = await loadPortalPolicy(values.policy);
    portal = await startDevPortal(policy, { host: values.host, port, logger });
  } catch (e) {
    const msg =
      e instanceof GatewayError ? e.message : `cannot start the dev portal: ${(e as Error).message}`;
    process.stderr.write(`${msg}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ listening: portal.url })}\n`);

  const stop = (signal: string) => {
    logger.info({ signal }, 'stopping');
    void portal.close().then(() => process.exit(0));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

await main();
