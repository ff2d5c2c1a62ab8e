/**
 * Forwarding throughput of the standalone gateway against the classic userspace WireGuard
 * gateway, in the gateway lab of `test/e2e/support/gateway-topology.ts` (three network
 * namespaces this benchmark creates and removes; needs root). A wireguard-go client sends to
 * 172.20.1.10 through:
 *
 * (a) ours: `firezone-gateway --config` (built `dist/`: run `npm run build` first);
 * (b) wireguard-go in the gateway namespace with kernel forwarding, the same masquerade;
 * (c) no tunnel at all, plain routing over the veths: the ceiling, measured once.
 *
 * Per round r = 1..3, alternating (a) and (b) in the order a b, b a, a b: iperf3 TCP for 10 s
 * (the first second omitted). In round 1 also, for (a) and (b): ping RTT (200 pings, 10 ms
 * apart) minus the same over plain routing, then UDP packets per second received by the resource
 * with iperf3 flooding (`-u -b 0`) 64-byte and 1252-byte payloads. 1252 bytes is the largest UDP
 * payload that fits the tunnel MTU of 1280 unfragmented: a 1400-byte payload leaves the client as
 * two IP fragments, which our gateway drops by design (`spec/gateway-dataplane.md` §3, §8.2), so
 * it would measure nothing.
 *
 * The ratio is the median of the per-round ratios ours/wireguard-go. If our gateway cannot start
 * (a build without standalone mode), (b) and (c) still run and the summary says why (a) is missing.
 *
 *   sudo npx tsx bench/throughput.bench.ts
 */
import {
  ADDR,
  execIn,
  GatewayLab,
  GatewayUnavailableError,
  IPERF_PORT,
  LAB_FILTERS,
  pingRtts,
} from '../test/e2e/support/gateway-topology.js';
import { hasCommand } from '../test/support/privileges.js';

const ROUNDS = 3;
const TCP_SECONDS = 10;
/** Omitted from the TCP figure: slow start and the first handshake. */
const TCP_OMIT_SECONDS = 1;
const UDP_SECONDS = 5;
const UDP_PAYLOAD_BYTES = [64, 1252] as const;
const PING_COUNT = 200;
const PING_INTERVAL_S = 0.01;
const COMMANDS = ['wireguard-go', 'wg', 'iperf3', 'iptables', 'ip6tables', 'ping', 'ss', 'tcpdump'];

type Gateway = 'ours' | 'wireguard-go' | 'plain';
const GATEWAYS = ['ours', 'wireguard-go'] as const;

interface Figure {
  name: string;
  value: number;
  unit: 'Mbit/s' | 'pps' | '%' | 'ms' | 'ratio' | 'segments';
  /** Per-second iperf3 intervals or per-packet RTTs, where there are several. */
  samples?: number[];
}

interface Round {
  round: number;
  oursMbitPerSec: number | null;
  wireguardGoMbitPerSec: number;
}

const log = (msg: string) => console.error(`[throughput] ${msg}`);
const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile. */
function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

interface IperfEnd {
  sum_received: { bits_per_second: number; seconds: number; packets?: number; lost_packets?: number };
  sum_sent: { packets?: number; seconds: number; retransmits?: number };
}

async function iperf(lab: GatewayLab, args: string[], seconds: number): Promise<Record<string, unknown>> {
  const r = await execIn(
    lab.client,
    'iperf3',
    ['-c', ADDR.lab, '-p', String(IPERF_PORT), '--connect-timeout', '3000', '-J', ...args],
    (seconds + 30) * 1000,
  );
  let doc: Record<string, unknown> | undefined;
  try {
    doc = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    // reported below
  }
  if (r.code !== 0 || !doc || 'error' in doc) {
    // A test that broke off can leave the one-test-at-a-time server busy.
    await lab.startIperfServer();
    throw new Error(`iperf3 ${args.join(' ')}: ${String(doc?.error ?? (r.stderr || `exit ${r.code}`))}`);
  }
  return doc;
}

/** TCP goodput in Mbit/s as the receiver counted it, with the per-second intervals. */
async function tcpThroughput(
  lab: GatewayLab,
  gateway: Gateway,
  results: Figure[],
  tag: string,
): Promise<number> {
  const doc = await iperf(lab, ['-t', String(TCP_SECONDS), '-O', String(TCP_OMIT_SECONDS)], TCP_SECONDS + 1);
  const end = doc.end as IperfEnd;
  const intervals = (doc.intervals as { sum: { bits_per_second: number; omitted: boolean } }[])
    .filter((i) => !i.sum.omitted)
    .map((i) => round1(i.sum.bits_per_second / 1e6));
  const mbit = end.sum_received.bits_per_second / 1e6;
  results.push({ name: `tcp ${gateway}${tag}`, value: round1(mbit), unit: 'Mbit/s', samples: intervals });
  if (end.sum_sent.retransmits !== undefined)
    results.push({
      name: `tcp ${gateway}${tag} retransmits`,
      value: end.sum_sent.retransmits,
      unit: 'segments',
    });
  log(`tcp ${gateway}${tag}: ${round1(mbit)} Mbit/s`);
  return mbit;
}

/** UDP packets per second the resource received, and the loss, with iperf3 sending flat out. */
async function udpRate(lab: GatewayLab, gateway: Gateway, size: number, results: Figure[]): Promise<number> {
  const doc = await iperf(lab, ['-u', '-b', '0', '-l', String(size), '-t', String(UDP_SECONDS)], UDP_SECONDS);
  const end = doc.end as IperfEnd;
  const rx = end.sum_received;
  const received = (rx.packets ?? 0) - (rx.lost_packets ?? 0);
  const pps = received / rx.seconds;
  const sentPps = (end.sum_sent.packets ?? 0) / end.sum_sent.seconds;
  const loss = rx.packets ? (100 * (rx.lost_packets ?? 0)) / rx.packets : 0;
  results.push({ name: `udp ${gateway} ${size}B received`, value: Math.round(pps), unit: 'pps' });
  results.push({
    name: `udp ${gateway} ${size}B sent (iperf3 client)`,
    value: Math.round(sentPps),
    unit: 'pps',
  });
  results.push({ name: `udp ${gateway} ${size}B loss`, value: round1(loss), unit: '%' });
  log(
    `udp ${gateway} ${size}B: ${Math.round(pps)} pps received of ${Math.round(sentPps)} sent (${round1(loss)}% lost)`,
  );
  return pps;
}

interface Rtt {
  p50: number;
  p99: number;
}

async function rtt(lab: GatewayLab, gateway: Gateway, results: Figure[], plain?: Rtt): Promise<Rtt> {
  const rtts = await pingRtts(lab.client, ADDR.lab, PING_COUNT, PING_INTERVAL_S);
  if (rtts.length < PING_COUNT * 0.9)
    throw new Error(`only ${rtts.length} of ${PING_COUNT} pings answered through ${gateway}`);
  const r = { p50: percentile(rtts, 50), p99: percentile(rtts, 99) };
  results.push({ name: `rtt ${gateway} p50`, value: round3(r.p50), unit: 'ms', samples: rtts });
  results.push({ name: `rtt ${gateway} p99`, value: round3(r.p99), unit: 'ms' });
  if (plain) {
    results.push({ name: `rtt ${gateway} added p50`, value: round3(r.p50 - plain.p50), unit: 'ms' });
    results.push({ name: `rtt ${gateway} added p99`, value: round3(r.p99 - plain.p99), unit: 'ms' });
  }
  log(`rtt ${gateway}: p50 ${round3(r.p50)} ms, p99 ${round3(r.p99)} ms`);
  return r;
}

function print(results: Figure[], rounds: Round[], summary: string, seconds = 0): void {
  const doc = {
    bench: 'throughput',
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
    seconds,
    results,
    rounds,
  };
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  process.stdout.write(`${summary}\n`);
}

async function main(): Promise<void> {
  if (process.geteuid?.() !== 0) {
    print([], [], 'throughput: skipped (needs root for network namespaces)');
    return;
  }
  const missing = COMMANDS.filter((c) => !hasCommand(c));
  if (missing.length > 0) {
    print([], [], `throughput: skipped (${missing.join(', ')} not installed)`);
    return;
  }
  const started = performance.now();
  const results: Figure[] = [];
  const rounds: Round[] = [];
  let oursError: string | undefined;
  const udp64: Partial<Record<Gateway, number>> = {};
  const added: Partial<Record<Gateway, Rtt>> = {};
  const lab = await GatewayLab.create('fzb', { iperf3: true });
  // The lab's filters plus the UDP port iperf3 floods.
  const policy = lab.policy({
    labFilters: [
      ...LAB_FILTERS,
      { protocol: 'udp', port_range_start: IPERF_PORT, port_range_end: IPERF_PORT },
    ],
  });
  try {
    log('(c) plain routing');
    await lab.startPlain();
    await lab.waitForPath();
    const plainMbit = await tcpThroughput(lab, 'plain', results, '');
    const plainRtt = await rtt(lab, 'plain', results);
    await lab.stop();

    /** Runs one gateway's measurements; returns its TCP figure. */
    const measure = async (gateway: 'ours' | 'wireguard-go', r: number): Promise<number> => {
      log(`round ${r}: ${gateway === 'ours' ? '(a) ours' : '(b) wireguard-go'}`);
      if (gateway === 'ours') await lab.startOurs(policy);
      else await lab.startWireguardGo();
      try {
        await lab.waitForPath();
        const mbit = await tcpThroughput(lab, gateway, results, ` round ${r}`);
        if (r === 1) {
          // Before the UDP floods, whose queues would still be draining.
          const t = await rtt(lab, gateway, results, plainRtt);
          added[gateway] = { p50: t.p50 - plainRtt.p50, p99: t.p99 - plainRtt.p99 };
          for (const size of UDP_PAYLOAD_BYTES) {
            const pps = await udpRate(lab, gateway, size, results);
            if (size === 64) udp64[gateway] = pps;
          }
        }
        const child = lab.ours?.run.child;
        if (child && (child.exitCode !== null || child.signalCode !== null))
          throw new Error(
            `firezone-gateway exited ${child.exitCode ?? child.signalCode} during the measurement`,
          );
        return mbit;
      } finally {
        await lab.stop();
      }
    };

    for (let r = 1; r <= ROUNDS; r++) {
      let ours: number | null = null;
      let wg = 0;
      // a b | b a | a b: whichever runs first in a round gains or loses the same across rounds.
      for (const gateway of r % 2 === 1 ? GATEWAYS : [...GATEWAYS].reverse()) {
        if (gateway === 'wireguard-go') {
          wg = await measure(gateway, r);
          continue;
        }
        if (oursError !== undefined) continue;
        try {
          ours = await measure(gateway, r);
        } catch (e) {
          oursError = e instanceof GatewayUnavailableError ? e.reason : (e as Error).message;
          log(`ours: ${oursError}`);
        }
      }
      rounds.push({
        round: r,
        oursMbitPerSec: ours === null ? null : round1(ours),
        wireguardGoMbitPerSec: round1(wg),
      });
    }

    const paired = rounds.filter((x) => x.oursMbitPerSec !== null);
    const ratio =
      paired.length > 0 ? median(paired.map((x) => x.oursMbitPerSec! / x.wireguardGoMbitPerSec)) : undefined;
    if (ratio !== undefined)
      results.push({ name: 'tcp ratio ours/wireguard-go', value: round3(ratio), unit: 'ratio' });
    const mbit = (x: number | null) => (x === null ? 'n/a' : String(Math.round(x)));
    const ms = (x: number | undefined) => (x === undefined ? 'n/a' : `+${x.toFixed(2)} ms`);
    const pps = (x: number | undefined) => (x === undefined ? 'n/a' : `${Math.round(x)} pps`);
    const unavailable = paired.length === 0 ? `ours: unavailable (${oursError ?? 'not measured'}); ` : '';
    const failedLater =
      paired.length > 0 && oursError !== undefined ? `; ours failed later: ${oursError}` : '';
    print(
      results,
      rounds,
      `throughput: ${unavailable}ours/wireguard-go throughput ratio = ${ratio === undefined ? 'n/a' : ratio.toFixed(2)} ` +
        `(rounds: ${rounds.map((x) => `${mbit(x.oursMbitPerSec)}/${mbit(x.wireguardGoMbitPerSec)}`).join(', ')} Mbit/s); ` +
        `plain ${Math.round(plainMbit)} Mbit/s; ` +
        `UDP 64B ours ${pps(udp64.ours)} vs wg-go ${pps(udp64['wireguard-go'])}; ` +
        `RTT p50 ${ms(added.ours?.p50)} vs ${ms(added['wireguard-go']?.p50)}${failedLater}`,
      Math.round((performance.now() - started) / 1000),
    );
  } finally {
    await lab.stop().catch((e: unknown) => log(`stop: ${(e as Error).message}`));
    lab.destroy();
  }
}

await main();
