import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { type Netns, vethPair } from '../../support/netns.js';
import { ADDR, type GatewayLab } from './gateway-topology.js';

/**
 * The ICE additions to the gateway lab: a relay network and the simulated Firezone client.
 *
 *   relay ns (10.10.9.2, 10.10.9.3: two coturns)
 *        │ 10.10.9.0/24
 *   client ns (10.10.0.2, routes 10.10.9.0/24 on) ── 10.10.0.0/24 ── gateway ns (10.10.0.1)
 *
 * The relays hang off the client's side, so the gateway reaches them from the same address the
 * client reaches it on (10.10.0.1: one host candidate, and the source of every answer). The
 * relay-only test drops UDP between the client and the gateway in the client namespace's input
 * and output hooks; relayed traffic passes through it in the forward hook, untouched.
 */

export const RELAY_ADDRS = ['10.10.9.2', '10.10.9.3'] as const;
const RELAY_GATEWAY = '10.10.9.1';
const REPO = join(import.meta.dirname, '..', '..', '..');

export function addRelayNetwork(lab: GatewayLab, relay: Netns): void {
  vethPair(
    lab.client,
    [`${RELAY_GATEWAY}/24`],
    relay,
    RELAY_ADDRS.map((a) => `${a}/24`),
  );
  lab.client.sysctl('net.ipv4.ip_forward', '1');
  relay.ip('route', 'add', 'default', 'via', RELAY_GATEWAY);
  lab.gateway.ip('route', 'add', '10.10.9.0/24', 'via', ADDR.clientUnderlay);
}

/** nftables in the client namespace: no UDP between client and gateway except through a relay. */
export function blockDirectUdp(lab: GatewayLab): void {
  lab.client.exec('nft', ['-f', '-'], {
    input: [
      'table inet fzt_block {',
      '  chain input { type filter hook input priority 0; ip saddr 10.10.0.1 meta l4proto udp counter drop; }',
      '  chain output { type filter hook output priority 0; ip daddr 10.10.0.1 meta l4proto udp counter drop; }',
      '}',
      '',
    ].join('\n'),
  });
}

export function unblockDirectUdp(lab: GatewayLab): void {
  lab.client.exec('nft', ['delete', 'table', 'inet', 'fzt_block']);
}

/** Datagrams the block dropped (input + output), to prove it was in the way. */
export function blockedDatagrams(lab: GatewayLab): number {
  const out = lab.client.exec('nft', ['list', 'table', 'inet', 'fzt_block']);
  let n = 0;
  for (const m of out.matchAll(/counter packets (\d+)/g)) n += Number(m[1]);
  return n;
}

export interface SimClientLine {
  readonly event: string;
  readonly [k: string]: unknown;
}

/** `dist/dev/client/main.js` in the client namespace, its JSON lines collected. */
export class SimClientProcess {
  readonly lines: SimClientLine[] = [];
  stderr = '';

  private constructor(readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line) as SimClientLine);
        } catch {
          // not a progress line
        }
        nl = buf.indexOf('\n');
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
  }

  static start(
    ns: Netns,
    portalUrl: string,
    token: string,
    privateKeyPath: string,
    extraArgs: readonly string[] = [],
  ): SimClientProcess {
    const child = ns.spawn(process.execPath, [
      join(REPO, 'dist', 'dev', 'client', 'main.js'),
      '--portal-url',
      portalUrl,
      '--token',
      token,
      '--private-key-file',
      privateKeyPath,
      '--bind',
      ADDR.clientUnderlay,
      ...extraArgs,
    ]);
    return new SimClientProcess(child);
  }

  /** Waits for a progress line matching `pred` (after index `from`). */
  async waitFor(
    pred: (l: SimClientLine) => boolean,
    what: string,
    ms = 20_000,
    from = 0,
  ): Promise<SimClientLine> {
    const end = Date.now() + ms;
    for (;;) {
      const found = this.lines.slice(from).find(pred);
      if (found) return found;
      if (this.child.exitCode !== null) {
        throw new Error(`the sim client exited (${this.child.exitCode}) before ${what}: ${this.stderr}`);
      }
      if (Date.now() > end) {
        throw new Error(`timed out waiting for ${what}; lines: ${JSON.stringify(this.lines)} ${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
  }
}
