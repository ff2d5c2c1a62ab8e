import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasCommand } from './privileges.js';

/**
 * A throw-away coturn (`turnserver`, 4.6.x) for interop tests: UDP only, no TLS/DTLS/CLI, the
 * TURN REST API credential scheme with a static secret and realm `firezone` (`spec/snownet.md`
 * §3.8). Everything it writes (pid file, SQLite user db) lives in a temporary directory.
 */

export const COTURN_PORT = 3478;
const READY_TIMEOUT_MS = 5_000;
const STOP_GRACE_MS = 3_000;
const MAX_LOG_CHARS = 256 * 1024;

/** True when coturn can run; in CI its absence is an error, locally a skip with a reason. */
export function requireCoturn(): boolean {
  if (hasCommand('turnserver')) return true;
  if (process.env.CI === 'true') throw new Error('coturn is missing; .ci/run installs it');
  console.warn('skipping the coturn interop tests: turnserver (coturn) is not installed');
  return false;
}

/**
 * TURN REST API credentials (what `--use-auth-secret` checks): username `<unix expiry>:<tag>`,
 * password base64(HMAC-SHA1(secret, username)).
 */
export function coturnCredentials(
  secret: string,
  ttlS = 3_600,
  now: number = Date.now(),
): { username: string; password: string } {
  const username = `${Math.floor(now / 1000) + ttlS}:fz-test`;
  const password = createHmac('sha1', secret).update(username).digest('base64');
  return { username, password };
}

export interface CoturnOptions {
  readonly listenIp: string;
  /** Defaults to `listenIp`. */
  readonly relayIp?: string;
  readonly secret: string;
  /** Run inside this network namespace (`ip netns exec`). */
  readonly netns?: string;
  readonly minPort?: number;
  readonly maxPort?: number;
  /** Names the temporary directory and error messages. */
  readonly tag?: string;
  /** More turnserver flags. */
  readonly args?: readonly string[];
}

export interface Coturn {
  readonly pid: number;
  /** SIGTERM, SIGKILL after 3 s; resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
  /** Everything it printed so far. */
  logs(): string;
}

/** Starts coturn and resolves once it answers a STUN BINDING on `listenIp:3478`. */
export async function startCoturn(opts: CoturnOptions): Promise<Coturn> {
  const tag = opts.tag ?? 'coturn';
  const dir = mkdtempSync(join(tmpdir(), `fzt-${tag}-`));
  const relayIp = opts.relayIp ?? opts.listenIp;
  const args = [
    '-n',
    '--use-auth-secret',
    `--static-auth-secret=${opts.secret}`,
    '--realm=firezone',
    '--no-tls',
    '--no-dtls',
    '--no-tcp',
    '--no-tcp-relay',
    '--no-cli',
    '--no-rfc5780',
    '--allow-loopback-peers',
    `--listening-port=${COTURN_PORT}`,
    `--listening-ip=${opts.listenIp}`,
    `--relay-ip=${relayIp}`,
    `--min-port=${opts.minPort ?? 49152}`,
    `--max-port=${opts.maxPort ?? 65535}`,
    '--log-file=stdout',
    '--simple-log',
    `--pidfile=${join(dir, 'turnserver.pid')}`,
    `--userdb=${join(dir, 'turndb')}`,
    ...(opts.args ?? []),
  ];
  const argv = opts.netns
    ? ['ip', 'netns', 'exec', opts.netns, 'turnserver', ...args]
    : ['turnserver', ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const append = (d: Buffer) => {
    log += d.toString();
    if (log.length > MAX_LOG_CHARS) log = log.slice(-MAX_LOG_CHARS / 2);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  let spawnError: Error | undefined;
  child.once('error', (e) => {
    spawnError = e;
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= stopChild(child, exited).finally(() => rmSync(dir, { recursive: true, force: true }));
    return stopping;
  };
  const tail = () => log.split('\n').slice(-30).join('\n');

  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let up = false;
    while (!up) {
      if (spawnError) throw spawnError;
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${tag}: turnserver exited (${child.exitCode ?? child.signalCode}) before answering`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `${tag}: turnserver did not answer a STUN BINDING on ${opts.listenIp}:${COTURN_PORT} within ${READY_TIMEOUT_MS} ms`,
        );
      }
      up = await bindingAnswered(opts.listenIp, Math.min(250, left), opts.netns);
    }
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n--- coturn log tail ---\n${tail()}`);
  }
  return { pid: child.pid!, stop, logs: () => log };
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/** A STUN BINDING request with a random transaction id (RFC 8489 §5, no attributes). */
function bindingRequest(): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(0x0001, 0);
  b.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(b, 8);
  return b;
}

/** Whether a BINDING to `ip:3478` gets a success response within `waitMs`. */
async function bindingAnswered(ip: string, waitMs: number, netns: string | undefined): Promise<boolean> {
  if (netns) {
    // Our process is outside the namespace: probe from a one-shot node inside it.
    return new Promise((resolve) => {
      execFile(
        'ip',
        [
          'netns',
          'exec',
          netns,
          process.execPath,
          '-e',
          PROBE_SCRIPT,
          ip,
          String(COTURN_PORT),
          String(waitMs),
        ],
        { timeout: waitMs + 5_000 },
        (error) => resolve(error === null),
      );
    });
  }
  const sock = createSocket(ip.includes(':') ? 'udp6' : 'udp4');
  try {
    const req = bindingRequest();
    const answered = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), waitMs);
      sock.on('message', (msg) => {
        if (
          msg.length >= 20 &&
          msg.readUInt16BE(0) === 0x0101 &&
          msg.subarray(8, 20).equals(req.subarray(8, 20))
        ) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    sock.on('error', () => {});
    sock.bind(0, ip);
    await once(sock, 'listening');
    sock.send(req, COTURN_PORT, ip);
    return await answered;
  } finally {
    sock.close();
  }
}

/** The same probe as a standalone script (argv: ip, port, wait ms); exit code 0 = answered. */
const PROBE_SCRIPT = `
const [ip, port, waitMs] = process.argv.slice(1);
const sock = require('node:dgram').createSocket(ip.includes(':') ? 'udp6' : 'udp4');
const req = Buffer.alloc(20);
req.writeUInt16BE(1, 0);
req.writeUInt32BE(0x2112a442, 4);
require('node:crypto').randomBytes(12).copy(req, 8);
setTimeout(() => process.exit(1), Number(waitMs));
sock.on('error', () => process.exit(1));
sock.on('message', (m) => {
  if (m.length >= 20 && m.readUInt16BE(0) === 0x0101 && m.subarray(8, 20).equals(req.subarray(8, 20))) process.exit(0);
});
sock.send(req, Number(port), ip);
`;
