import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { formatKey } from '../../../src/wire/keys.js';
import { publicKeyOf } from '../../../src/wire/wireguard/crypto.js';
import { type GatewayRun, startGateway } from '../../support/gateway-process.js';
import { Netns, vethPair } from '../../support/netns.js';
import { type CapturedPacket, readPcap } from '../../support/pcap.js';
import { hasCommand } from '../../support/privileges.js';
import { newKey } from './wg-topology.js';

/**
 * The gateway lab: a WireGuard client reaches resources through a gateway, in three network
 * namespaces this module creates and removes.
 *
 *   client                  gateway                              resource
 *   10.10.0.2/24 ──veth── 10.10.0.1/24    172.20.1.1/24 ──veth── 172.20.1.10/24  HTTP :80 (iperf3 :5201)
 *   fd10::2/64            fd10::1/64      172.20.2.1/24          172.20.2.10/24  HTTP :80, not granted
 *   wireguard-go          UDP 51820: the gateway under test, forwarding and masquerading
 *   100.64.0.2/32         out of the resource veth
 *
 * The gateway namespace is set up as `spec/gateway-dataplane.md` §10.4 says a host must be:
 * forwarding sysctls, FORWARD accepted in and out of the tunnel interface, and the tunnel ranges
 * masqueraded towards the resources, so the resource namespace knows only its own subnets and
 * never routes to the tunnel ranges. Three gateways can sit in the middle, one at a time:
 *
 * - `ours`: `firezone-gateway --config <policy file>` in standalone mode;
 * - `wireguard-go`: the classic userspace WireGuard gateway, an unmodified wireguard-go with kernel
 *   forwarding (the baseline of `bench/throughput.bench.ts`);
 * - `plain`: no tunnel at all; the client routes 172.20.0.0/16 via 10.10.0.1 (the ceiling).
 *
 * Without a tunnel the client has no route to 172.20.0.0/16, so nothing reaches a resource except
 * through the gateway under test.
 */

export const ADDR = {
  clientUnderlay: '10.10.0.2',
  gatewayUnderlay: '10.10.0.1',
  clientUnderlay6: 'fd10::2',
  gatewayUnderlay6: 'fd10::1',
  clientTunnel: '100.64.0.2',
  clientTunnel6: 'fd00:2021:1111::2',
  gatewayTunnel: '100.64.0.1',
  gatewayTunnel6: 'fd00:2021:1111::1',
  /** The granted resource (CIDR 172.20.1.0/24). */
  lab: '172.20.1.10',
  /** A resource on a network the client is not granted (CIDR 172.20.2.0/24). */
  other: '172.20.2.10',
} as const;

export const LISTEN_PORT = 51820;
export const IPERF_PORT = 5201;
export const HTTP_PORT = 80;
/** MTU of both tunnel interfaces, as `tun-firezone` has (`spec/gateway-dataplane.md` §1). */
export const TUNNEL_MTU = 1280;
/** What each resource's HTTP server answers, so a test sees which one it reached. */
export const httpBody = (addr: string) => `hello from ${addr}\n`;

const TUNNEL_RANGE_V4 = '100.64.0.0/11';
const TUNNEL_RANGE_V6 = 'fd00:2021:1111::/107';
const TUN_NAME = 'tun-firezone';
/** The wireguard-go gateway's interface names start with this (iptables matches `wgg+`). */
const WG_GATEWAY_PREFIX = 'wgg';
const READY_TIMEOUT_MS = 15_000;
const WG_SOCKET_DIR = '/var/run/wireguard';
/**
 * Runs another build as "ours": a directory holding `bin/firezone-gateway.cjs`, e.g. a worktree
 * of the previous commit, for before/after figures from `bench/throughput.bench.ts`.
 */
export const GATEWAY_APP_ENV = 'GATEWAY_LAB_APP';

/**
 * True when every command the e2e tests' lab runs is installed (iperf3 is the benchmark's own);
 * in CI a missing one is an error.
 */
export function gatewayLabCommandsAvailable(): boolean {
  const needed = ['wireguard-go', 'wg', 'iptables', 'ip6tables', 'tcpdump', 'ping', 'ss'];
  const missing = needed.filter((c) => !hasCommand(c));
  if (missing.length > 0 && process.env.CI === 'true')
    throw new Error(`the gateway lab needs ${missing.join(', ')} in CI (.ci/run)`);
  if (missing.length > 0) console.warn(`skipping the gateway lab: ${missing.join(', ')} not installed`);
  return missing.length === 0;
}

// --- The policy file of standalone mode -------------------------------------------------------

export type PolicyFilter =
  | { protocol: 'tcp' | 'udp'; port_range_start?: number; port_range_end?: number }
  | { protocol: 'icmp' };

export interface PolicyResource {
  id: string;
  type: 'cidr';
  name: string;
  address: string;
  filters: PolicyFilter[];
}

export interface PolicyPeer {
  name: string;
  publicKey: string;
  presharedKey?: string;
  ipv4: string;
  ipv6: string;
  resources: string[];
  /** RFC 3339 or unix seconds. */
  expiresAt?: string | number;
}

export interface StandalonePolicy {
  listenPort: number;
  privateKeyFile: string;
  interface: { ipv4: string; ipv6: string };
  resources: PolicyResource[];
  peers: PolicyPeer[];
}

const tcpPort = (port: number): PolicyFilter => ({
  protocol: 'tcp',
  port_range_start: port,
  port_range_end: port,
});

/** The lab's default filters on 172.20.1.0/24: HTTP, iperf3 control/data over TCP, and ICMP. */
export const LAB_FILTERS: PolicyFilter[] = [tcpPort(HTTP_PORT), tcpPort(IPERF_PORT), { protocol: 'icmp' }];

// --- Processes ---------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command in a namespace without blocking the event loop (the gateway's log keeps being
 * read meanwhile) and without throwing on a non-zero exit.
 */
export function execIn(ns: Netns, cmd: string, args: string[], timeoutMs = 60_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(
      'ip',
      ['netns', 'exec', ns.name, cmd, ...args],
      { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Starts `cmd` in `ns` and resolves once its stdout or stderr contains `text`. */
async function spawnUntil(ns: Netns, cmd: string, args: string[], text: string): Promise<ChildProcess> {
  const child = ns.spawn(cmd, args);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} did not print '${text}': ${out}`)), 10_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited ${code} before printing '${text}': ${out}`));
    });
  });
  return child;
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

/** A resource's HTTP server: node:http answering {@link httpBody} on `addr:80`. */
const HTTP_SERVER = `
const [addr, body] = process.argv.slice(1);
require('node:http')
  .createServer((req, res) => res.end(body))
  .listen(${HTTP_PORT}, addr, () => console.log('listening'));
`;

/** Creates a wireguard-go interface in `ns` and waits until it exists. */
async function startWireguardGo(ns: Netns, ifname: string): Promise<ChildProcess> {
  const child = ns.spawn('wireguard-go', ['-f', ifname], {
    env: { ...process.env, WG_PROCESS_FOREGROUND: '1' },
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  for (let i = 0; i < 100 && !ns.ip('-o', 'link', 'show').includes(`: ${ifname}:`); i++) await sleep(50);
  if (!ns.ip('-o', 'link', 'show').includes(`: ${ifname}:`))
    throw new Error(`wireguard-go did not create ${ifname}: ${err}`);
  return child;
}

// --- Our gateway -------------------------------------------------------------------------------

/** Our gateway could not be started (e.g. this build has no standalone mode yet). */
export class GatewayUnavailableError extends Error {
  override readonly name = 'GatewayUnavailableError';
  constructor(readonly reason: string) {
    super(`firezone-gateway is not available: ${reason}`);
  }
}

function logLines(run: GatewayRun): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of run.stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line still being written
    }
  }
  return out;
}

/** `firezone-gateway --config <file>` running in the gateway namespace. */
export class OurGateway {
  constructor(
    readonly run: GatewayRun,
    readonly ns: Netns,
    readonly policyPath: string,
    /** The public key from the "Standalone gateway ready" line. */
    readonly publicKey: string,
    /** `IP:PORT` of the health check and metrics server (inside the gateway namespace). */
    readonly healthAddr: string,
  ) {}

  /**
   * Waits for the ready line; fails fast when the process exits or cannot become ready. `app` is
   * a directory holding `bin/firezone-gateway.cjs` (default: this checkout).
   */
  static async start(ns: Netns, policyPath: string, app?: string, nodeArgs?: string[]): Promise<OurGateway> {
    const run = startGateway(['--config', policyPath, '--health-check-addr', '127.0.0.1:0', '--no-inc-buf'], {
      ns,
      ...(app ? { app } : {}),
      ...(nodeArgs ? { nodeArgs } : {}),
    });
    return OurGateway.whenReady(run, ns, policyPath, 'Standalone gateway ready');
  }

  /**
   * Portal mode: `firezone-gateway TOKEN --api-url URL`; ready once it has joined the portal's
   * gateway channel. The public key is the one of the "Portal mode: connecting" line.
   */
  static async startPortal(
    ns: Netns,
    apiUrl: string,
    token: string,
    id: string,
    extraArgs: readonly string[] = [],
  ): Promise<OurGateway> {
    const run = startGateway(
      [
        token,
        '--api-url',
        apiUrl,
        '--firezone-id',
        id,
        '--health-check-addr',
        '127.0.0.1:0',
        '--no-inc-buf',
        ...extraArgs,
      ],
      { ns },
    );
    return OurGateway.whenReady(run, ns, '', 'Joined the gateway channel', 'Portal mode: connecting');
  }

  /** Waits for `readyMsg` and the health line; fails fast when the process exits or cannot become ready. */
  private static async whenReady(
    run: GatewayRun,
    ns: Netns,
    policyPath: string,
    readyMsg: string,
    keyMsg = readyMsg,
  ): Promise<OurGateway> {
    const until = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      const lines = logLines(run);
      const ready = lines.find((l) => l.msg === readyMsg);
      const keyLine = lines.find((l) => l.msg === keyMsg);
      const health = lines.find((l) => l.msg === 'Health check listening');
      if (ready && keyLine && health) {
        if (typeof keyLine.publicKey !== 'string') {
          await stopChild(run.child);
          throw new GatewayUnavailableError(`the '${keyMsg}' line has no publicKey field`);
        }
        return new OurGateway(run, ns, policyPath, keyLine.publicKey, String(health.addr));
      }
      const failed = lines.find((l) => l.level === 'error' || l.level === 50 || l.level === 60);
      let reason: string | undefined;
      if (run.child.exitCode !== null || run.child.signalCode !== null)
        reason = `exited ${run.child.exitCode ?? run.child.signalCode}: ${String(failed?.msg ?? run.stderr.trim().split('\n').at(-1) ?? '')}`;
      else if (Date.now() > until) reason = `no '${readyMsg}' within ${READY_TIMEOUT_MS} ms`;
      if (reason !== undefined) {
        await stopChild(run.child);
        throw new GatewayUnavailableError(reason);
      }
      await sleep(20);
    }
  }

  /** The gateway's log so far, one object per JSON line. */
  logs(): Record<string, unknown>[] {
    return logLines(this.run);
  }

  writePolicy(policy: StandalonePolicy): void {
    writeFileSync(this.policyPath, `${JSON.stringify(policy, null, 2)}\n`);
  }

  /** Sends SIGHUP (reload the policy file); returns the wall-clock time of the signal. */
  reload(): number {
    const at = Date.now();
    this.run.child.kill('SIGHUP');
    return at;
  }

  /** The Prometheus text of `GET /metrics`, fetched inside the gateway namespace. */
  async metrics(): Promise<string> {
    const r = await execIn(
      this.ns,
      process.execPath,
      [
        '-e',
        `fetch('http://${this.healthAddr}/metrics').then(async (r) => {
           if (r.status !== 200) throw new Error('GET /metrics: HTTP ' + r.status);
           process.stdout.write(await r.text());
         })`,
      ],
      10_000,
    );
    if (r.code !== 0) throw new Error(`cannot read metrics from ${this.healthAddr}: ${r.stderr}`);
    return r.stdout;
  }

  /** `firezone_gateway_packets_dropped_total{reason=…}`, summed over any other labels. */
  async dropped(reason: string): Promise<number> {
    return prometheusValue(await this.metrics(), 'firezone_gateway_packets_dropped_total', { reason });
  }

  async stop(): Promise<void> {
    await stopChild(this.run.child);
  }
}

/** Sums the samples of `name` whose labels include `labels`; 0 when there are none. */
export function prometheusValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) have[l[1]!] = l[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

// --- The lab -------------------------------------------------------------------------------------

export type GatewayKind = 'ours' | 'wireguard-go' | 'plain';

interface ClientTunnel {
  ifname: string;
  child: ChildProcess;
}

/**
 * The three namespaces, their links, host NAT and the resource services. One gateway at a time is
 * started in the middle (`startOurs`, `startWireguardGo`, `startPlain`) and stopped with `stop()`;
 * `destroy()` removes everything, including wireguard-go's control sockets and the temp dir.
 */
/** What the client's WireGuard needs to know about the gateway. */
export interface ClientTunnelPeer {
  readonly publicKey: string;
  readonly presharedKey: string;
  readonly port: number;
  readonly gatewayTunnel: string;
  readonly gatewayTunnel6: string;
}

export class GatewayLab {
  readonly clientPrivateKeyPath: string;
  readonly clientPublicKey: string;
  readonly gatewayPrivateKeyPath: string;
  /** The key both the wireguard-go gateway and (through `privateKeyFile`) ours use. */
  readonly gatewayPublicKey: string;
  readonly presharedKey: string;
  readonly presharedKeyPath: string;
  readonly policyPath: string;
  kind: GatewayKind | undefined;
  ours: OurGateway | undefined;
  /** The client's wireguard-go interface while a tunnel is up. */
  clientIf: string | undefined;
  private clientTunnel: ClientTunnel | undefined;
  private wgGateway: ClientTunnel | undefined;
  private readonly services: ChildProcess[] = [];
  private iperf: ChildProcess | undefined;
  private readonly sockets = new Set<string>();

  private constructor(
    readonly client: Netns,
    readonly gateway: Netns,
    readonly resource: Netns,
    /** The gateway's veth towards the resources (the masquerade goes out of it). */
    readonly resourceIf: string,
    readonly dir: string,
  ) {
    const clientKey = newKey();
    const gatewayKey = newKey();
    this.clientPrivateKeyPath = join(dir, 'client.key');
    this.gatewayPrivateKeyPath = join(dir, 'gateway.key');
    this.presharedKeyPath = join(dir, 'psk');
    this.policyPath = join(dir, 'gateway.json');
    this.presharedKey = formatKey(globalThis.crypto.getRandomValues(new Uint8Array(32)));
    writeFileSync(this.clientPrivateKeyPath, `${formatKey(clientKey)}\n`, { mode: 0o600 });
    writeFileSync(this.gatewayPrivateKeyPath, `${formatKey(gatewayKey)}\n`, { mode: 0o600 });
    writeFileSync(this.presharedKeyPath, `${this.presharedKey}\n`, { mode: 0o600 });
    this.clientPublicKey = formatKey(publicKeyOf(clientKey));
    this.gatewayPublicKey = formatKey(publicKeyOf(gatewayKey));
  }

  /**
   * Builds the namespaces and starts the resource services. `prefix`: `fzt` tests, `fzb`
   * benchmarks. The iperf3 server only runs when asked for, so the e2e tests need no iperf3.
   */
  static async create(prefix: 'fzt' | 'fzb' = 'fzt', opts: { iperf3?: boolean } = {}): Promise<GatewayLab> {
    const client = Netns.create('gwc', prefix);
    const gateway = Netns.create('gwg', prefix);
    const resource = Netns.create('gwr', prefix);
    const dir = mkdtempSync(join(tmpdir(), 'fz-gwlab-'));
    let lab: GatewayLab | undefined;
    try {
      vethPair(client, [`${ADDR.clientUnderlay}/24`, `${ADDR.clientUnderlay6}/64`], gateway, [
        `${ADDR.gatewayUnderlay}/24`,
        `${ADDR.gatewayUnderlay6}/64`,
      ]);
      const [resourceIf] = vethPair(gateway, ['172.20.1.1/24', '172.20.2.1/24'], resource, [
        `${ADDR.lab}/24`,
        `${ADDR.other}/24`,
      ]);
      lab = new GatewayLab(client, gateway, resource, resourceIf, dir);
      lab.configureHost();
      await lab.startServices(opts.iperf3 ?? false);
      return lab;
    } catch (e) {
      if (lab) lab.destroy();
      else {
        for (const ns of [client, gateway, resource]) ns.destroy();
        rmSync(dir, { recursive: true, force: true });
      }
      throw e;
    }
  }

  /** `spec/gateway-dataplane.md` §10.4, in the gateway namespace. */
  private configureHost(): void {
    const g = this.gateway;
    g.sysctl('net.ipv4.ip_forward', '1');
    g.sysctl('net.ipv4.conf.all.src_valid_mark', '1');
    g.sysctl('net.ipv6.conf.all.disable_ipv6', '0');
    g.sysctl('net.ipv6.conf.all.forwarding', '1');
    g.sysctl('net.ipv6.conf.default.forwarding', '1');
    for (const tool of ['iptables', 'ip6tables']) {
      for (const dev of [TUN_NAME, `${WG_GATEWAY_PREFIX}+`]) {
        g.exec(tool, ['-A', 'FORWARD', '-i', dev, '-j', 'ACCEPT']);
        g.exec(tool, ['-A', 'FORWARD', '-o', dev, '-j', 'ACCEPT']);
      }
    }
    const masquerade = (tool: string, source: string) =>
      g.exec(tool, [
        '-t',
        'nat',
        '-A',
        'POSTROUTING',
        '-s',
        source,
        '-o',
        this.resourceIf,
        '-j',
        'MASQUERADE',
      ]);
    masquerade('iptables', TUNNEL_RANGE_V4);
    masquerade('ip6tables', TUNNEL_RANGE_V6);
    // For the plain-routing ceiling only: the client's underlay address, masqueraded the same way,
    // so the no-tunnel path pays the same conntrack and NAT cost. Unused while no route leads there.
    masquerade('iptables', '10.10.0.0/24');
  }

  private async startServices(iperf3: boolean): Promise<void> {
    for (const addr of [ADDR.lab, ADDR.other])
      this.services.push(
        await spawnUntil(
          this.resource,
          process.execPath,
          ['-e', HTTP_SERVER, addr, httpBody(addr)],
          'listening',
        ),
      );
    if (iperf3) await this.startIperfServer();
  }

  /** (Re)starts `iperf3 -s` on the lab resource, e.g. after a test that broke off left it busy. */
  async startIperfServer(): Promise<void> {
    if (this.iperf) await stopChild(this.iperf);
    this.iperf = await spawnUntil(
      this.resource,
      'iperf3',
      ['-s', '--forceflush', '-B', ADDR.lab, '-p', String(IPERF_PORT)],
      'Server listening',
    );
  }

  /** The standalone policy: the client granted `lab` (172.20.1.0/24) with {@link LAB_FILTERS}. */
  policy(
    opts: { peers?: boolean; expiresAt?: string | number; labFilters?: PolicyFilter[] } = {},
  ): StandalonePolicy {
    const peer: PolicyPeer = {
      name: 'laptop',
      publicKey: this.clientPublicKey,
      presharedKey: this.presharedKey,
      ipv4: ADDR.clientTunnel,
      ipv6: ADDR.clientTunnel6,
      resources: ['lab'],
      ...(opts.expiresAt !== undefined ? { expiresAt: opts.expiresAt } : {}),
    };
    return {
      listenPort: LISTEN_PORT,
      privateKeyFile: this.gatewayPrivateKeyPath,
      interface: { ipv4: ADDR.gatewayTunnel, ipv6: ADDR.gatewayTunnel6 },
      resources: [
        {
          id: 'lab',
          type: 'cidr',
          name: 'Lab',
          address: '172.20.1.0/24',
          filters: opts.labFilters ?? LAB_FILTERS,
        },
        { id: 'other', type: 'cidr', name: 'Other', address: '172.20.2.0/24', filters: [] },
      ],
      peers: opts.peers === false ? [] : [peer],
    };
  }

  /**
   * (a) Writes `policy`, starts our gateway on it (the build in `$GATEWAY_LAB_APP`, default this
   * checkout's `dist/`) and connects the client. `nodeArgs` go to the gateway's Node (profiling).
   */
  async startOurs(policy: StandalonePolicy = this.policy(), nodeArgs?: string[]): Promise<OurGateway> {
    await this.stop();
    writeFileSync(this.policyPath, `${JSON.stringify(policy, null, 2)}\n`);
    const ours = await OurGateway.start(
      this.gateway,
      this.policyPath,
      process.env[GATEWAY_APP_ENV],
      nodeArgs,
    );
    this.ours = ours;
    this.kind = 'ours';
    if (ours.publicKey !== this.gatewayPublicKey) {
      await this.stop();
      throw new Error(
        `the ready line's publicKey ${ours.publicKey} is not the key of privateKeyFile (${this.gatewayPublicKey})`,
      );
    }
    await this.startClientTunnel();
    return ours;
  }

  /** (b) wireguard-go with kernel forwarding in the gateway namespace, then the client. */
  async startWireguardGo(): Promise<void> {
    await this.stop();
    const ifname = `${WG_GATEWAY_PREFIX}${randomBytes(3).toString('hex')}`;
    this.sockets.add(ifname);
    const child = await startWireguardGo(this.gateway, ifname);
    this.wgGateway = { ifname, child };
    this.kind = 'wireguard-go';
    const g = this.gateway;
    g.exec('wg', [
      'set',
      ifname,
      'private-key',
      this.gatewayPrivateKeyPath,
      'listen-port',
      String(LISTEN_PORT),
      'peer',
      this.clientPublicKey,
      'preshared-key',
      this.presharedKeyPath,
      'allowed-ips',
      `${ADDR.clientTunnel}/32,${ADDR.clientTunnel6}/128`,
    ]);
    g.ip('addr', 'add', `${ADDR.gatewayTunnel}/32`, 'dev', ifname);
    g.ip('addr', 'add', `${ADDR.gatewayTunnel6}/128`, 'dev', ifname, 'nodad');
    g.ip('link', 'set', ifname, 'mtu', String(TUNNEL_MTU), 'up');
    g.ip('route', 'add', TUNNEL_RANGE_V4, 'dev', ifname);
    g.ip('-6', 'route', 'add', TUNNEL_RANGE_V6, 'dev', ifname);
    await this.startClientTunnel();
  }

  /** (c) No tunnel: the client routes the resource networks via the gateway's underlay address. */
  async startPlain(): Promise<void> {
    await this.stop();
    this.client.ip('route', 'add', '172.20.0.0/16', 'via', ADDR.gatewayUnderlay);
    this.kind = 'plain';
  }

  /**
   * The client: an unmodified wireguard-go whose only peer is the gateway (endpoint
   * 10.10.0.1:51820), carrying 172.20.0.0/16 and the gateway's tunnel IPs; MTU 1280.
   */
  async startClientTunnel(peer: ClientTunnelPeer = this.defaultPeer()): Promise<void> {
    const ifname = `wgc${randomBytes(3).toString('hex')}`;
    const pskPath = join(this.dir, `psk-${ifname}`);
    writeFileSync(pskPath, `${peer.presharedKey}\n`, { mode: 0o600 });
    this.sockets.add(ifname);
    const child = await startWireguardGo(this.client, ifname);
    this.clientTunnel = { ifname, child };
    this.clientIf = ifname;
    const c = this.client;
    c.exec('wg', [
      'set',
      ifname,
      'private-key',
      this.clientPrivateKeyPath,
      'peer',
      peer.publicKey,
      'preshared-key',
      pskPath,
      'endpoint',
      `${ADDR.gatewayUnderlay}:${peer.port}`,
      'allowed-ips',
      `172.20.0.0/16,${peer.gatewayTunnel}/32,${peer.gatewayTunnel6}/128`,
    ]);
    c.ip('addr', 'add', `${ADDR.clientTunnel}/32`, 'dev', ifname);
    c.ip('addr', 'add', `${ADDR.clientTunnel6}/128`, 'dev', ifname, 'nodad');
    c.ip('link', 'set', ifname, 'mtu', String(TUNNEL_MTU), 'up');
    for (const net of ['172.20.1.0/24', '172.20.2.0/24', `${peer.gatewayTunnel}/32`])
      c.ip('route', 'add', net, 'dev', ifname);
    c.ip('-6', 'route', 'add', `${peer.gatewayTunnel6}/128`, 'dev', ifname);
  }

  /** The standalone gateways' peer: the lab's gateway key and PSK, port 51820. */
  private defaultPeer(): ClientTunnelPeer {
    return {
      publicKey: this.gatewayPublicKey,
      presharedKey: this.presharedKey,
      port: LISTEN_PORT,
      gatewayTunnel: ADDR.gatewayTunnel,
      gatewayTunnel6: ADDR.gatewayTunnel6,
    };
  }

  /**
   * (d) Portal mode: our gateway joins the portal at `apiUrl` (reachable inside the gateway
   * namespace). No client tunnel yet: its keys come from the portal's flow.
   */
  async startOursPortal(
    apiUrl: string,
    token: string,
    id = 'e2e-gateway',
    extraArgs: readonly string[] = [],
  ): Promise<OurGateway> {
    await this.stop();
    const ours = await OurGateway.startPortal(this.gateway, apiUrl, token, id, extraArgs);
    this.ours = ours;
    this.kind = 'ours';
    return ours;
  }

  /**
   * Pings `dst` from the client until one reply arrives (the first packet starts the handshake);
   * throws after `timeoutMs`.
   */
  async waitForPath(dst: string = ADDR.lab, timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    let last: ExecResult | undefined;
    while (Date.now() < until) {
      last = await execIn(this.client, 'ping', ['-n', '-c', '1', '-W', '1', dst]);
      if (last.code === 0) return;
    }
    throw new Error(
      `no ping reply from ${dst} through the ${this.kind} gateway: ${last?.stdout}${last?.stderr}`,
    );
  }

  /** Stops whatever gateway runs and takes the client's tunnel (or plain route) down. */
  async stop(): Promise<void> {
    if (this.clientTunnel) await stopChild(this.clientTunnel.child);
    if (this.wgGateway) await stopChild(this.wgGateway.child);
    if (this.ours) await this.ours.stop();
    if (this.kind === 'plain') this.client.ip('route', 'del', '172.20.0.0/16');
    for (const t of [this.clientTunnel, this.wgGateway])
      if (t) rmSync(join(WG_SOCKET_DIR, `${t.ifname}.sock`), { force: true });
    this.clientTunnel = undefined;
    this.clientIf = undefined;
    this.wgGateway = undefined;
    this.ours = undefined;
    this.kind = undefined;
    await this.waitForListenPortFree();
  }

  /** The next gateway binds the same UDP port: wait until whatever held it has let go. */
  private async waitForListenPortFree(): Promise<void> {
    const held = () => this.gateway.exec('ss', ['-H', '-u', '-a', '-n', `sport = :${LISTEN_PORT}`]).trim();
    for (let i = 0; i < 100 && held() !== ''; i++) await sleep(50);
    const still = held();
    if (still !== '')
      throw new Error(`UDP port ${LISTEN_PORT} is still bound in the gateway namespace: ${still}`);
  }

  /** Kills everything, removes the namespaces, wireguard-go's control sockets and the temp dir. */
  destroy(): void {
    for (const c of [
      this.clientTunnel?.child,
      this.wgGateway?.child,
      this.ours?.run.child,
      this.iperf,
      ...this.services,
    ])
      if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const ns of [this.client, this.gateway, this.resource]) ns.destroy();
    for (const ifname of this.sockets) rmSync(join(WG_SOCKET_DIR, `${ifname}.sock`), { force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Builds a lab with `kind` in the middle and waits for a working path to the lab resource. */
export async function setUpGatewayLab(
  kind: GatewayKind,
  policy?: (lab: GatewayLab) => StandalonePolicy,
): Promise<GatewayLab> {
  const lab = await GatewayLab.create();
  try {
    if (kind === 'ours') await lab.startOurs(policy ? policy(lab) : lab.policy());
    else if (kind === 'wireguard-go') await lab.startWireguardGo();
    else await lab.startPlain();
    await lab.waitForPath();
    return lab;
  } catch (e) {
    lab.destroy();
    throw e;
  }
}

// --- Probes from the client --------------------------------------------------------------------

/** One HTTP GET from `ns`: the status and body, or the socket error code. */
export async function httpGet(
  ns: Netns,
  url: string,
  timeoutMs = 5_000,
): Promise<{ status?: number; body?: string; error?: string }> {
  const script = `
const req = require('node:http').get(process.argv[1], { timeout: Number(process.argv[2]) }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d) => (body += d));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body })));
});
req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
req.on('error', (e) => console.log(JSON.stringify({ error: e.code ?? e.message })));
`;
  const r = await execIn(ns, process.execPath, ['-e', script, url, String(timeoutMs)], timeoutMs + 5_000);
  if (r.code !== 0) throw new Error(`http probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { status?: number; body?: string; error?: string };
}

/** One TCP connection attempt from `ns`: `connected`, or the error code (EHOSTUNREACH, ...). */
export async function tcpConnect(ns: Netns, host: string, port: number, timeoutMs = 5_000): Promise<string> {
  const script = `
const s = require('node:net').connect({ host: process.argv[1], port: Number(process.argv[2]) });
s.setTimeout(Number(process.argv[3]), () => { console.log('ETIMEDOUT'); s.destroy(); });
s.on('connect', () => { console.log('connected'); s.destroy(); });
s.on('error', (e) => console.log(e.code ?? e.message));
`;
  const r = await execIn(
    ns,
    process.execPath,
    ['-e', script, host, String(port), String(timeoutMs)],
    timeoutMs + 5_000,
  );
  if (r.code !== 0) throw new Error(`tcp probe failed: ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * Captures on `ifname` in `ns` (`tcpdump -w`) while `during` runs, then returns the packets. A
 * WireGuard interface is a TUN device: the pcap's link type is raw IP (101). Immediate mode is
 * needed: otherwise packets wait in the kernel's capture ring for its 1 s block timeout, and
 * the SIGINT that ends tcpdump discards them ("N packets received by filter", 0 captured).
 */
export async function capture(
  ns: Netns,
  ifname: string,
  path: string,
  during: () => Promise<unknown>,
): Promise<CapturedPacket[]> {
  const tcpdump = await spawnUntil(
    ns,
    'tcpdump',
    ['-i', ifname, '-n', '--immediate-mode', '-U', '-Z', 'root', '-w', path],
    'listening on',
  );
  try {
    await during();
    await sleep(300);
  } finally {
    await stopChild(tcpdump, 'SIGINT');
  }
  return readPcap(path);
}

/**
 * A continuous `ping -D` from `ns`: records the wall-clock time (ms) of every echo reply, as
 * ping stamps it on receipt.
 */
export class Pinger {
  readonly replies: number[] = [];
  private readonly child: ChildProcess;

  constructor(ns: Netns, dst: string, intervalS = 0.1) {
    this.child = ns.spawn('ping', ['-n', '-D', '-i', String(intervalS), dst]);
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const m = /^\[(\d+\.\d+)\] \d+ bytes from/.exec(line);
      if (m) this.replies.push(Number(m[1]) * 1000);
    });
  }

  get lastReply(): number | undefined {
    return this.replies.at(-1);
  }

  /** Resolves once a reply arrives after `since` (wall-clock ms); throws after `timeoutMs`. */
  async replyAfter(since: number, timeoutMs: number): Promise<number> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.replies.find((t) => t > since);
      if (hit !== undefined) return hit;
      if (Date.now() > until) throw new Error(`no ping reply within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    await stopChild(this.child, 'SIGINT');
  }
}

/** Round-trip times (ms) of `count` pings at `intervalS` from `ns` to `dst`. */
export async function pingRtts(ns: Netns, dst: string, count: number, intervalS: number): Promise<number[]> {
  const r = await execIn(
    ns,
    'ping',
    ['-n', '-c', String(count), '-i', String(intervalS), '-W', '1', dst],
    count * intervalS * 1000 + 30_000,
  );
  return [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}
