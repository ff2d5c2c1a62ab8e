/**
 * Native I/O throughput, in network namespaces this benchmark creates and removes (needs root):
 *
 * - TUN: packets/s read from the TUN device into Node and written back to it. A generator process
 *   in the namespace sends UDP to an address routed into the TUN; Node swaps source and
 *   destination of each packet in place and writes the batch back, so the kernel delivers it to
 *   the generator's own socket (which never reads: the kernel drops it there).
 * - UDP: datagrams/s received and sent by each `UdpSocket` strategy (`mmsg`, `dgram`) on loopback,
 *   64- and 1316-byte payloads. A generator process floods the socket under test; for sends, a
 *   sink process counts what arrives.
 *
 * Generators and sinks are separate processes (this file, started with `--generator`/`--sink`),
 * using sendmmsg/recvmmsg; their own rates are reported beside ours as the peer figures.
 *
 *   sudo npx tsx bench/io.bench.ts
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { PacketBatch } from '../src/io/packet-batch.js';
import { openTun } from '../src/io/tun.js';
import { openUdp, type UdpSocket, type UdpStrategy } from '../src/io/udp.js';
import { parseIp } from '../src/wire/ip/address.js';
import { FIREZONE_FWMARK, FIREZONE_TABLE } from '../src/wire/netlink/constants.js';
import { inNetns } from '../test/e2e/io/netns-thread.js';
import { Netns } from '../test/support/netns.js';
import { type BenchResult, consume, report } from './harness.js';

const WARMUP_MS = 300;
/** The measurement window, split into samples. */
const SAMPLE_MS = 500;
const SAMPLES = 6;
const MEASURE_MS = SAMPLE_MS * SAMPLES;
/** Generators run past the window so the load never stops inside it. */
const GENERATOR_SECONDS = (WARMUP_MS + MEASURE_MS) / 1000 + 1.5;

const SELF = fileURLToPath(import.meta.url);

interface PeerSpec {
  readonly family: 4 | 6;
  readonly dst?: string;
  readonly port: number;
  readonly size: number;
  readonly seconds: number;
  readonly bind?: string;
}

// --- Child processes -----------------------------------------------------------------------

/** Floods `dst:port` with `size`-byte datagrams for `seconds`; prints { sent, seconds }. */
async function generator(spec: PeerSpec): Promise<void> {
  const socket = await openUdp({ family: spec.family, strategy: 'mmsg', batchSize: 256 });
  const payload = new Uint8Array(spec.size).fill(0x5a);
  const dst = parseIp(spec.dst!)!;
  const start = performance.now();
  const end = start + spec.seconds * 1000;
  let now = start;
  while (now < end) {
    for (let i = 0; i < 256; i++) socket.send(payload, 0, payload.length, dst, spec.port);
    socket.flush();
    now = performance.now();
  }
  const { datagramsSent, sendDrops } = socket.stats;
  process.stdout.write(
    `${JSON.stringify({ sent: datagramsSent, drops: sendDrops, seconds: (now - start) / 1000 })}\n`,
  );
  await socket.close();
}

/** Counts datagrams arriving on `bind:port` for `seconds`; prints { received, seconds }. */
async function sink(spec: PeerSpec): Promise<void> {
  const socket = await openUdp({
    family: spec.family,
    strategy: 'mmsg',
    address: spec.bind!,
    port: spec.port,
  });
  socket.start(() => undefined);
  process.stdout.write('ready\n');
  await new Promise((r) => setTimeout(r, spec.seconds * 1000));
  process.stdout.write(
    `${JSON.stringify({ received: socket.stats.datagramsReceived, seconds: spec.seconds })}\n`,
  );
  await socket.close();
}

function startPeer(ns: Netns, mode: '--generator' | '--sink', spec: PeerSpec): ChildProcess {
  return ns.spawn(process.execPath, ['--import', 'tsx', SELF, mode, JSON.stringify(spec)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

async function peerResult(child: ChildProcess): Promise<Record<string, number>> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  await once(child, 'exit');
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`peer printed no result: ${out}`);
  return JSON.parse(line) as Record<string, number>;
}

async function waitForOutput(child: ChildProcess, text: string): Promise<void> {
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(text)) resolve();
    });
    child.once('exit', () => reject(new Error(`peer exited before printing ${text}`)));
  });
}

// --- Measurement ---------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Samples `counter()` every SAMPLE_MS after a warm-up; returns per-sample rates (per second). */
async function sampleRates(counter: () => number): Promise<number[]> {
  await sleep(WARMUP_MS);
  const rates: number[] = [];
  let last = counter();
  let lastAt = performance.now();
  for (let i = 0; i < SAMPLES; i++) {
    await sleep(SAMPLE_MS);
    const now = performance.now();
    const value = counter();
    rates.push(((value - last) * 1000) / (now - lastAt));
    last = value;
    lastAt = now;
  }
  return rates;
}

function result(name: string, rates: number[]): BenchResult {
  const sorted = [...rates].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return {
    name,
    nsPerOp: Math.round((1e9 / Math.max(median, 1)) * 100) / 100,
    opsPerSec: Math.round(median),
    samples: rates.map(Math.round),
  };
}

async function waitUntil(check: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

// --- Scenarios -----------------------------------------------------------------------------

/** IP packet sizes through the TUN: a small packet and the largest the tunnel carries. */
const TUN_PACKET_BYTES = [64, 1280];
/** UDP payloads: a small datagram and a full relayed WireGuard packet (4 + 16 + 1280 + 16). */
const UDP_PAYLOAD_BYTES = [64, 1316];

async function benchTun(results: BenchResult[]): Promise<void> {
  const ns = Netns.create('io', 'fzb');
  try {
    const tun = await inNetns(ns.name, () => openTun({ name: 'tun-bench' }));
    await tun.configure({
      ipv4: '100.66.0.1',
      routes: ['100.64.0.0/11'],
      fwmarkRule: { mark: FIREZONE_FWMARK, table: FIREZONE_TABLE },
    });
    // Swap addresses and ports in place (checksums stay valid) and write the batch back.
    tun.start((batch: PacketBatch) => {
      for (let i = 0; i < batch.count; i++) {
        const b = batch.bufs[i]!;
        const o = batch.offsets[i]!;
        if (b[o]! >> 4 !== 4) {
          batch.lengths[i] = 0;
          continue;
        }
        const l4 = o + (b[o]! & 0xf) * 4;
        for (let k = 0; k < 4; k++) swap(b, o + 12 + k, o + 16 + k);
        for (let k = 0; k < 2; k++) swap(b, l4 + k, l4 + 2 + k);
      }
      let n = 0;
      for (let i = 0; i < batch.count; i++) if (batch.lengths[i]! > 0) n++;
      if (n === batch.count) tun.writeBatch(batch);
      else
        for (let i = 0; i < batch.count; i++)
          if (batch.lengths[i]! > 0) tun.write(batch.bufs[i]!, batch.offsets[i]!, batch.lengths[i]!);
    });
    for (const size of TUN_PACKET_BYTES) {
      const gen = startPeer(ns, '--generator', {
        family: 4,
        dst: '100.64.0.5',
        port: 9,
        size: size - 28,
        seconds: GENERATOR_SECONDS,
      });
      const peer = peerResult(gen);
      const read0 = tun.stats.packetsRead;
      await waitUntil(() => tun.stats.packetsRead > read0 + 1000, 'TUN traffic');
      const [readRates, writeRates] = await sampleTwo(
        () => tun.stats.packetsRead,
        () => tun.stats.packetsWritten,
      );
      const sent = await peer;
      results.push(result(`tun read ${size}B`, readRates));
      results.push(result(`tun write ${size}B`, writeRates));
      results.push(result(`tun generator send ${size}B (peer)`, [sent.sent! / sent.seconds!]));
    }
    const { writeDrops, writeErrors, readErrors } = tun.stats;
    if (writeDrops + writeErrors + readErrors > 0) {
      console.error(`tun: ${writeDrops} write drops, ${writeErrors} write errors, ${readErrors} read errors`);
    }
    await tun.close();
  } finally {
    ns.destroy();
  }
}

function swap(b: Uint8Array, i: number, j: number): void {
  const t = b[i]!;
  b[i] = b[j]!;
  b[j] = t;
}

/** Samples two counters over the same window. */
async function sampleTwo(a: () => number, b: () => number): Promise<[number[], number[]]> {
  const bRates: number[] = [];
  let lastB = 0;
  let lastAt = 0;
  const aRates = await sampleRates(() => {
    const now = performance.now();
    const v = b();
    if (lastAt > 0) bRates.push(((v - lastB) * 1000) / (now - lastAt));
    lastB = v;
    lastAt = now;
    return a();
  });
  return [aRates, bRates];
}

async function benchUdpReceive(results: BenchResult[], strategy: UdpStrategy, ns: Netns): Promise<void> {
  for (const size of UDP_PAYLOAD_BYTES) {
    const socket: UdpSocket = await inNetns(ns.name, () =>
      openUdp({ family: 4, strategy, address: '127.0.0.1' }),
    );
    socket.start((batch) => consume(batch.bufs[0]![0]!));
    const gen = startPeer(ns, '--generator', {
      family: 4,
      dst: '127.0.0.1',
      port: socket.localPort,
      size,
      seconds: GENERATOR_SECONDS,
    });
    const peer = peerResult(gen);
    await waitUntil(() => socket.stats.datagramsReceived > 1000, 'UDP traffic');
    const rates = await sampleRates(() => socket.stats.datagramsReceived);
    const sent = await peer;
    results.push(result(`udp ${strategy} receive ${size}B`, rates));
    results.push(
      result(`udp ${strategy} receive ${size}B generator send (peer)`, [sent.sent! / sent.seconds!]),
    );
    await socket.close();
  }
}

async function benchUdpSend(results: BenchResult[], strategy: UdpStrategy, ns: Netns): Promise<void> {
  const port = 40_000;
  for (const size of UDP_PAYLOAD_BYTES) {
    const sinkSeconds = (WARMUP_MS + MEASURE_MS) / 1000 + 0.5;
    const sinkProc = startPeer(ns, '--sink', {
      family: 4,
      bind: '127.0.0.1',
      port,
      size,
      seconds: sinkSeconds,
    });
    await waitForOutput(sinkProc, 'ready');
    const counted = peerResult(sinkProc);
    const socket: UdpSocket = await inNetns(ns.name, () => openUdp({ family: 4, strategy, batchSize: 128 }));
    const payload = new Uint8Array(size).fill(0xa5);
    const dst = parseIp('127.0.0.1')!;
    let running = true;
    const pump = (async () => {
      while (running) {
        for (let i = 0; i < 128; i++) socket.send(payload, 0, size, dst, port);
        socket.flush();
        // Yield so libuv completes node:dgram sends and the timers of the sampler run.
        await new Promise((r) => setImmediate(r));
      }
    })();
    const rates = await sampleRates(() => socket.stats.datagramsSent);
    running = false;
    await pump;
    const received = await counted;
    results.push(result(`udp ${strategy} send ${size}B`, rates));
    results.push(
      result(`udp ${strategy} send ${size}B sink receive (peer)`, [received.received! / received.seconds!]),
    );
    await socket.close();
  }
}

async function main(): Promise<void> {
  if (process.geteuid?.() !== 0) {
    report('io', [], 'io: skipped (needs root for network namespaces and the TUN device)');
    return;
  }
  const started = performance.now();
  const results: BenchResult[] = [];
  await benchTun(results);
  const ns = Netns.create('io', 'fzb');
  try {
    for (const strategy of ['mmsg', 'dgram'] as const) await benchUdpReceive(results, strategy, ns);
    for (const strategy of ['mmsg', 'dgram'] as const) await benchUdpSend(results, strategy, ns);
  } finally {
    ns.destroy();
  }
  const rate = (n: string) => {
    const r = results.find((x) => x.name === n)!.opsPerSec;
    return r >= 1e6 ? `${(r / 1e6).toFixed(2)}M` : `${Math.round(r / 1000)}k`;
  };
  report(
    'io',
    results,
    `io (${((performance.now() - started) / 1000).toFixed(0)} s): ` +
      `TUN read/write 64B ${rate('tun read 64B')}/${rate('tun write 64B')} pps (generator ${rate('tun generator send 64B (peer)')}), ` +
      `1280B ${rate('tun read 1280B')}/${rate('tun write 1280B')}; ` +
      `UDP recv 64B mmsg ${rate('udp mmsg receive 64B')} vs dgram ${rate('udp dgram receive 64B')}, ` +
      `1316B ${rate('udp mmsg receive 1316B')} vs ${rate('udp dgram receive 1316B')}; ` +
      `UDP send 64B mmsg ${rate('udp mmsg send 64B')} vs dgram ${rate('udp dgram send 64B')}, ` +
      `1316B ${rate('udp mmsg send 1316B')} vs ${rate('udp dgram send 1316B')} datagrams/s`,
  );
}

const mode = process.argv[2];
if (mode === '--generator') await generator(JSON.parse(process.argv[3]!) as PeerSpec);
else if (mode === '--sink') await sink(JSON.parse(process.argv[3]!) as PeerSpec);
else await main();
