import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Netns } from '../../support/netns.js';
import { hasCommand } from '../../support/privileges.js';
import { execIn } from './gateway-topology.js';

/**
 * DNS servers for e2e tests, inside a network namespace:
 *
 * - {@link startDnsmasq}: an unmodified dnsmasq (Debian `dnsmasq-base`, 2.90) answering A/AAAA from
 *   a hosts file it re-reads on SIGHUP, SRV and TXT records, NXDOMAIN for unknown names in its
 *   local domains, with a query log;
 * - {@link startUdpDelayRelay}: a UDP relay that holds each query and each reply for a while (a
 *   slow nameserver in front of a fast one);
 * - {@link digIn}: `dig` in a namespace, parsed.
 *
 * Nothing reads the host's DNS configuration: dnsmasq gets its own config file and no
 * `/etc/hosts` or `/etc/resolv.conf`.
 */

export const DNS_PORT = 53;
/** The source address of the lab's own readiness digs, so they stay out of `queries()`. */
const PROBE_SOURCE = '127.0.0.153';
const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;
const MAX_LOG_CHARS = 1024 * 1024;

/** `DigResult.status` values that mean no reply came. */
const NO_REPLY = new Set(['TIMEOUT', 'UNREACHABLE', 'ERROR']);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** True when dnsmasq and dig are installed; in CI their absence is an error, locally a skip. */
export function dnsLabCommandsAvailable(what = 'the DNS tests'): boolean {
  const missing = ['dnsmasq', 'dig'].filter((c) => !hasCommand(c));
  if (missing.length > 0 && process.env.CI === 'true')
    throw new Error(`${what} need ${missing.join(', ')} in CI (dnsmasq-base, bind9-dnsutils)`);
  if (missing.length > 0) console.warn(`skipping ${what}: ${missing.join(', ')} not installed`);
  return missing.length === 0;
}

// --- dig -----------------------------------------------------------------------------------------

export interface DigResult {
  /**
   * The RCODE of the header line (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...), or, without a reply,
   * TIMEOUT (nothing came back), UNREACHABLE (connection refused / no route) or ERROR.
   */
  readonly status: string;
  /** The answer section's rdata, one line per record, as `dig +short` prints it. */
  readonly answers: string[];
  /** dig's "Query time" for a reply; the wall-clock time of the whole run without one. */
  readonly ms: number;
  /** dig's whole output, for diagnostics. */
  readonly output: string;
}

/**
 * Runs `dig +tries=1 +time=<timeS> <args>` in `ns` (do not pass `+short`: the full output is
 * parsed) and never throws for a failed lookup.
 */
export async function digIn(ns: Netns, args: string[], o: { timeS?: number } = {}): Promise<DigResult> {
  const timeS = Math.max(1, Math.round(o.timeS ?? 2));
  const started = performance.now();
  const r = await execIn(ns, 'dig', ['+tries=1', `+time=${timeS}`, ...args], (timeS + 10) * 1000);
  const wall = performance.now() - started;
  const output = r.stdout + r.stderr;
  const header = /->>HEADER<<- opcode: \w+, status: ([A-Z0-9]+)/.exec(output);
  const status = header
    ? header[1]!
    : /timed out|no servers could be reached/.test(output) && !/refused|unreachable/i.test(output)
      ? 'TIMEOUT'
      : /connection refused|unreachable/i.test(output)
        ? 'UNREACHABLE'
        : 'ERROR';
  const answers: string[] = [];
  const lines = output.split('\n');
  const start = lines.findIndex((l) => l.startsWith(';; ANSWER SECTION:'));
  if (header && start >= 0) {
    for (const line of lines.slice(start + 1)) {
      if (line.trim() === '' || line.startsWith(';')) break;
      // name TTL class type rdata...
      const fields = line.trim().split(/\s+/);
      answers.push(fields.slice(4).join(' '));
    }
  }
  const queryTime = /;; Query time: (\d+) msec/.exec(output);
  return { status, answers, ms: queryTime ? Number(queryTime[1]) : wall, output };
}

// --- dnsmasq -------------------------------------------------------------------------------------

export interface DnsmasqSrv {
  readonly name: string;
  readonly target: string;
  readonly port: number;
  readonly priority?: number;
  readonly weight?: number;
}

export interface DnsmasqOptions {
  /** The IPv4 address to listen on (port 53); it must exist in the namespace (any 127/8 does). */
  readonly listen: string;
  /** TTL of the answers from the hosts file and the SRV/TXT records. */
  readonly ttlS: number;
  /** Name → IPv4 and/or IPv6 addresses. */
  readonly hosts: Record<string, string[]>;
  readonly srv?: readonly DnsmasqSrv[];
  readonly txt?: readonly { readonly name: string; readonly text: string }[];
  /** Answer `A firezone.dev` with 192.0.2.1, so the gateway's nameserver probes count (§7.4). */
  readonly probe?: boolean;
  /** Domains it is authoritative for: unknown names there get NXDOMAIN (elsewhere REFUSED). */
  readonly localDomains?: readonly string[];
}

export interface DnsmasqQuery {
  readonly type: string;
  readonly name: string;
  readonly from: string;
}

export interface Dnsmasq {
  /** The listen address (port 53). */
  readonly address: string;
  /** SIGTERM (SIGKILL after 3 s); resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
  /** Starts it again with the same configuration and hosts; resolves once it answers. */
  start(): Promise<void>;
  /** Rewrites the hosts file and sends SIGHUP; resolves once a dig sees the change. */
  setHosts(hosts: Record<string, string[]>): Promise<void>;
  /** The names queried so far, in order, across restarts (the lab's own readiness digs excluded). */
  queries(): string[];
  /** The same with query type and source address. */
  queryLog(): DnsmasqQuery[];
  /** Everything it logged, across restarts. */
  logs(): string;
}

function hostsFile(hosts: Record<string, string[]>, probe: boolean): string {
  const lines: string[] = [];
  for (const [name, addrs] of Object.entries(hosts)) for (const a of addrs) lines.push(`${a} ${name}`);
  if (probe) lines.push('192.0.2.1 firezone.dev');
  return `${lines.join('\n')}\n`;
}

/** A config-file string value: quoted, so commas stay inside it. */
const quoted = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

function configFile(o: DnsmasqOptions): string {
  const lines: string[] = [];
  for (const s of o.srv ?? [])
    lines.push(`srv-host=${s.name},${s.target},${s.port},${s.priority ?? 0},${s.weight ?? 0}`);
  for (const t of o.txt ?? []) lines.push(`txt-record=${t.name},${quoted(t.text)}`);
  for (const d of o.localDomains ?? []) lines.push(`local=/${d}/`);
  return `${lines.join('\n')}\n`;
}

const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().join(' ') === [...b].sort().join(' ');

/**
 * Starts dnsmasq in `ns` on `<listen>:53` and resolves once it answers. It reads only the config
 * file and hosts file this function writes (in a temporary directory) and never forwards
 * anywhere (`--no-resolv`, no servers): names it does not know get REFUSED, or NXDOMAIN in
 * `localDomains`.
 */
export async function startDnsmasq(ns: Netns, o: DnsmasqOptions): Promise<Dnsmasq> {
  let hosts = { ...o.hosts };
  let log = '';
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let dir: string | undefined;

  const append = (d: Buffer) => {
    log += d.toString();
    if (log.length > MAX_LOG_CHARS) log = log.slice(-MAX_LOG_CHARS / 2);
  };
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const tail = () => log.split('\n').slice(-20).join('\n');

  const stop = async (): Promise<void> => {
    const c = child;
    if (c && c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  };

  /** Resolves once dnsmasq answers anything (the built-in CHAOS `version.bind`). */
  const waitAnswering = async (what: string): Promise<void> => {
    const end = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (!running()) throw new Error(`dnsmasq exited before ${what}:\n${tail()}`);
      const r = await digIn(ns, [`@${o.listen}`, '-b', PROBE_SOURCE, 'version.bind', 'CH', 'TXT'], {
        timeS: 1,
      });
      if (!NO_REPLY.has(r.status)) return;
      if (Date.now() > end) throw new Error(`dnsmasq did not answer on ${o.listen}:53 (${what}):\n${tail()}`);
      await sleep(50);
    }
  };

  const start = async (): Promise<void> => {
    if (running()) return;
    dir = mkdtempSync(join(tmpdir(), 'fzt-dnsmasq-'));
    const hostsPath = join(dir, 'hosts');
    const confPath = join(dir, 'dnsmasq.conf');
    writeFileSync(hostsPath, hostsFile(hosts, o.probe ?? false));
    writeFileSync(confPath, configFile(o));
    const c = ns.spawn('dnsmasq', [
      '--keep-in-foreground',
      // Our file instead of /etc/dnsmasq.conf, so the host's configuration is never read.
      `--conf-file=${confPath}`,
      '--no-resolv',
      '--no-hosts',
      '--bind-interfaces',
      `--listen-address=${o.listen}`,
      `--port=${DNS_PORT}`,
      '--user=root',
      `--addn-hosts=${hostsPath}`,
      `--local-ttl=${o.ttlS}`,
      '--log-queries',
      '--log-facility=-',
      '--pid-file=',
    ]);
    child = c;
    exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.stdout!.on('data', append);
    c.stderr!.on('data', append);
    c.once('error', (e) => append(Buffer.from(`spawn error: ${e.message}\n`)));
    try {
      await waitAnswering('answering');
    } catch (e) {
      await stop();
      throw e;
    }
  };

  const queryLog = (): DnsmasqQuery[] => {
    const out: DnsmasqQuery[] = [];
    for (const m of log.matchAll(/query\[([A-Za-z0-9]+)\] (\S+) from (\S+)/g)) {
      if (m[3] === PROBE_SOURCE) continue;
      out.push({ type: m[1]!, name: m[2]!, from: m[3]! });
    }
    return out;
  };

  const setHosts = async (next: Record<string, string[]>): Promise<void> => {
    const before = hosts;
    hosts = { ...next };
    if (!running() || !dir) return; // start() writes the file
    writeFileSync(join(dir, 'hosts'), hostsFile(hosts, o.probe ?? false));
    child!.kill('SIGHUP');
    const names = new Set([...Object.keys(before), ...Object.keys(hosts)]);
    const changed = [...names].find((n) => !sameSet(before[n] ?? [], hosts[n] ?? []));
    if (changed === undefined) {
      await waitAnswering('re-reading its hosts file');
      return;
    }
    const want = hosts[changed] ?? [];
    const end = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      const seen: string[] = [];
      for (const type of ['A', 'AAAA']) {
        const r = await digIn(ns, [`@${o.listen}`, '-b', PROBE_SOURCE, changed, type], { timeS: 1 });
        seen.push(...r.answers);
      }
      if (sameSet(seen, want)) return;
      if (Date.now() > end)
        throw new Error(`dnsmasq still answers ${changed} with ${seen.join(', ')} after SIGHUP:\n${tail()}`);
      await sleep(50);
    }
  };

  await start();
  return {
    address: o.listen,
    stop,
    start,
    setHosts,
    queries: () => queryLog().map((q) => q.name),
    queryLog,
    logs: () => log,
  };
}

// --- A slow path in front of a nameserver ------------------------------------------------------------

export interface UdpDelayRelayOptions {
  /** IPv4 address to listen on (port 53). */
  readonly listen: string;
  /** IPv4 address of the real nameserver (port 53). */
  readonly upstream: string;
  /** Added to each query on its way up and to each reply on its way back. */
  readonly delayMs: number;
}

export interface UdpDelayRelay {
  readonly address: string;
  /** The question names of the queries it received, in order. */
  queries(): string[];
  /** SIGTERM; resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
}

/**
 * The relay (argv: listen, upstream, delay ms, path of dns-packet). One upstream socket per
 * client address and port, so replies find their way back; one JSON line per query.
 */
const RELAY_SCRIPT = `
const [listen, upstream, delayMs, dnsPacketPath] = process.argv.slice(1);
const dgram = require('node:dgram');
const { decode } = require(dnsPacketPath);
const delay = Number(delayMs);
const server = dgram.createSocket('udp4');
const ups = new Map();
server.on('message', (msg, r) => {
  const key = r.address + ':' + r.port;
  let up = ups.get(key);
  if (!up) {
    up = dgram.createSocket('udp4');
    up.on('error', () => {});
    up.on('message', (reply) => setTimeout(() => server.send(reply, r.port, r.address), delay));
    ups.set(key, up);
  }
  let name = '', type = '';
  try {
    const q = decode(msg).questions[0];
    name = q.name;
    type = q.type;
  } catch {}
  process.stdout.write(JSON.stringify({ event: 'query', name, type, from: key }) + '\\n');
  setTimeout(() => up.send(msg, 53, upstream), delay);
});
server.on('error', (e) => { console.error(e.message); process.exit(1); });
server.bind(53, listen, () => process.stdout.write(JSON.stringify({ event: 'listening' }) + '\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

const DNS_PACKET_PATH = createRequire(import.meta.url).resolve('dns-packet');

/** Starts the relay on `<listen>:53` in `ns`; resolves once it listens. */
export async function startUdpDelayRelay(ns: Netns, o: UdpDelayRelayOptions): Promise<UdpDelayRelay> {
  const child = ns.spawn(process.execPath, [
    '-e',
    RELAY_SCRIPT,
    o.listen,
    o.upstream,
    String(o.delayMs),
    DNS_PACKET_PATH,
  ]);
  const names: string[] = [];
  let out = '';
  let err = '';
  let listening = false;
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      try {
        const m = JSON.parse(line) as { event: string; name?: string };
        if (m.event === 'listening') listening = true;
        else if (m.event === 'query') names.push(m.name ?? '');
      } catch {
        // not ours
      }
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };
  const end = Date.now() + READY_TIMEOUT_MS;
  while (!listening) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`the UDP delay relay exited before listening: ${err}`);
    if (Date.now() > end) {
      await stop();
      throw new Error(`the UDP delay relay did not listen on ${o.listen}:53: ${err}`);
    }
    await sleep(20);
  }
  return { address: o.listen, queries: () => [...names], stop };
}
