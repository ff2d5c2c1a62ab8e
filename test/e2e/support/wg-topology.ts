import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { formatKey } from '../../../src/wire/keys.js';
import { clampPrivateKey, publicKeyOf } from '../../../src/wire/wireguard/crypto.js';
import type { PeerStats } from '../../../src/wire/wireguard/peer.js';
import { Netns, vethPair } from '../../support/netns.js';
import { hasCommand } from '../../support/privileges.js';

/**
 * The WireGuard interop topology: our endpoint (WgDevice + our TUN + our UDP socket) in
 * namespace A, an unmodified wireguard-go in namespace B, a hostile sender in namespace C.
 *
 *   A 10.99.0.1 ──veth── 10.99.0.2 B        tunnel: A 100.64.0.1 ⇄ B 100.64.0.2
 *   A 10.98.0.1 ──veth── 10.98.0.2 C        (flood and garbage)
 */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const ENDPOINT = join(REPO, 'test/e2e/support/wg-endpoint.ts');
export const FLOOD = join(REPO, 'test/e2e/support/wg-flood.ts');
export const TRANSFER = join(REPO, 'test/e2e/support/tcp-transfer.ts');
export const TRANSFER_BYTES = 50 * 1024 * 1024;

export function wireguardGoAvailable(): boolean {
  const ok = hasCommand('wireguard-go') && hasCommand('wg');
  if (!ok && process.env.CI === 'true')
    throw new Error('wireguard-go and wireguard-tools must be installed in CI (.ci/run)');
  if (!ok)
    console.warn(
      'skipping WireGuard interop: wireguard-go or wg not installed (apt-get install wireguard-go wireguard-tools)',
    );
  return ok;
}

export const newKey = () => clampPrivateKey(globalThis.crypto.getRandomValues(new Uint8Array(32)));

/** A line-oriented JSON child: collects every line, lets a test wait for one that matches. */
export class JsonChild {
  readonly lines: Record<string, unknown>[] = [];
  stderr = '';
  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        this.lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        this.stderr += `${l}\n`;
      }
    });
    child.stderr!.on('data', (d) => (this.stderr += d));
  }

  async waitFor(
    pred: (l: Record<string, unknown>) => boolean,
    timeoutMs = 20_000,
  ): Promise<Record<string, unknown>> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (this.child.exitCode !== null)
        throw new Error(`child exited ${this.child.exitCode}: ${this.stderr}`);
      if (Date.now() > until)
        throw new Error(`timed out; lines ${JSON.stringify(this.lines)}; stderr ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async stats(): Promise<EndpointStats> {
    const before = this.lines.length;
    this.child.stdin!.write('stats\n');
    const l = await this.waitFor((x) => 'stats' in x && this.lines.indexOf(x) >= before);
    return l.stats as EndpointStats;
  }
}

/** What the endpoint harness reports on `stats`. */
export interface EndpointStats {
  drops: Record<string, number>;
  cookieRepliesSent: number;
  peer: PeerStats;
  hasSession: boolean;
  counters: { tunIn: number; tunOut: number; spoofedSource: number; badInner: number; noEndpoint: number };
}

export interface TransferResult {
  bytes: number;
  sha256: string;
}

export interface Topology {
  /** wireguard-go's interface in B: unique, because its control socket path is shared by all namespaces. */
  wgIf: string;
  a: Netns;
  b: Netns;
  c: Netns;
  ours: JsonChild;
  ourPublic: string;
  dir: string;
}

/** Builds the namespaces, starts wireguard-go in B and our endpoint in A. */
export async function setUp(weInitiate: boolean, extra: Record<string, unknown> = {}): Promise<Topology> {
  const a = Netns.create('wga');
  const b = Netns.create('wgb');
  const c = Netns.create('wgc');
  vethPair(a, ['10.99.0.1/24'], b, ['10.99.0.2/24']);
  vethPair(a, ['10.98.0.1/24'], c, ['10.98.0.2/24']);
  const dir = mkdtempSync(join(tmpdir(), 'fz-wg-'));
  const ourPriv = newKey();
  const theirPriv = newKey();
  const psk = globalThis.crypto.getRandomValues(new Uint8Array(32));
  writeFileSync(join(dir, 'their.key'), formatKey(theirPriv));
  writeFileSync(join(dir, 'psk'), formatKey(psk));
  const ourPublic = formatKey(publicKeyOf(ourPriv));
  const wgIf = `wgfz${randomBytes(3).toString('hex')}`;

  const wgGo = b.spawn('wireguard-go', ['-f', wgIf], { env: { ...process.env, WG_PROCESS_FOREGROUND: '1' } });
  let wgGoErr = '';
  wgGo.stderr!.on('data', (d) => (wgGoErr += d));
  for (let i = 0; i < 100 && !b.ip('link').includes(wgIf); i++) await new Promise((r) => setTimeout(r, 50));
  if (!b.ip('link').includes(wgIf)) throw new Error(`wireguard-go did not create ${wgIf}: ${wgGoErr}`);
  b.exec('wg', [
    'set',
    wgIf,
    'private-key',
    join(dir, 'their.key'),
    'listen-port',
    '51821',
    'peer',
    ourPublic,
    'preshared-key',
    join(dir, 'psk'),
    'allowed-ips',
    '100.64.0.1/32',
    ...(weInitiate ? [] : ['endpoint', '10.99.0.1:51820']),
  ]);
  b.ip('addr', 'add', '100.64.0.2/32', 'dev', wgIf);
  b.ip('link', 'set', wgIf, 'mtu', '1280', 'up');
  b.ip('route', 'add', '100.64.0.1/32', 'dev', wgIf);

  const config = {
    privateKey: formatKey(ourPriv),
    peerPublicKey: formatKey(publicKeyOf(theirPriv)),
    presharedKey: formatKey(psk),
    listenPort: 51820,
    tunName: 'tun-fzt',
    tunAddress: '100.64.0.1',
    peerTunnelIp: '100.64.0.2',
    ...(weInitiate ? { peerEndpoint: '10.99.0.2:51821' } : {}),
    ...extra,
  };
  const ours = new JsonChild(
    a.spawn(process.execPath, ['--import', 'tsx', ENDPOINT, JSON.stringify(config)], {
      cwd: REPO,
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
  await ours.waitFor((l) => l.ready === true);
  return { wgIf, a, b, c, ours, ourPublic, dir };
}

export function tearDown(t: Topology | undefined): void {
  if (!t) return;
  t.ours.child.kill('SIGTERM');
  for (const ns of [t.a, t.b, t.c]) ns.destroy();
  rmSync(t.dir, { recursive: true, force: true });
  rmSync(`/var/run/wireguard/${t.wgIf}.sock`, { force: true });
}

export function ping(from: Netns, to: string, count = 3): string {
  return from.exec('ping', ['-c', String(count), '-i', '0.2', '-W', '2', '-w', '20', to]);
}

/** Streams TRANSFER_BYTES over TCP through the tunnel and returns both sides' checksums. */
export async function transfer(
  from: Netns,
  to: Netns,
  toIp: string,
): Promise<{ sent: TransferResult; received: TransferResult }> {
  const receiver = new JsonChild(
    to.spawn(process.execPath, ['--import', 'tsx', TRANSFER, 'receive', '5001'], { cwd: REPO }),
  );
  await receiver.waitFor((l) => 'listening' in l);
  const sent = JSON.parse(
    from.exec(process.execPath, ['--import', 'tsx', TRANSFER, 'send', toIp, '5001', String(TRANSFER_BYTES)], {
      timeoutMs: 240_000,
    }),
  );
  const received = await receiver.waitFor((l) => 'sha256' in l, 60_000);
  return { sent: sent as TransferResult, received: received as unknown as TransferResult };
}
