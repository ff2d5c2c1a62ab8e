/**
 * A WireGuard endpoint assembled from the production pieces (WgDevice, the TUN device, a UDP
 * socket), for interop tests against wireguard-go. It runs inside a network namespace:
 *
 *   ip netns exec NS node --import tsx test/e2e/support/wg-endpoint.ts '<config JSON>'
 *
 * Packets the kernel routes into the TUN are encrypted for the single peer; decrypted packets
 * from the peer are validated (strict IP parse, source must be the peer's tunnel IP) and written
 * to the TUN. stdout carries JSON lines: `{"ready":…}`, `{"event":…}`, `{"stats":…}`; stdin takes
 * `stats`, `initiate` and `quit`. With `record` set, every input, timer and output is logged with
 * its time so a unit test can replay the transcript byte for byte.
 */
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { datagramSource } from '../../../src/io/packet-batch.js';
import { openTun } from '../../../src/io/tun.js';
import { openUdp, type UdpStrategy } from '../../../src/io/udp.js';
import { bytesEqual, parseIp } from '../../../src/wire/ip/address.js';
import { IpPacket } from '../../../src/wire/ip/packet.js';
import { parseKey } from '../../../src/wire/keys.js';
import { STANDARD_PROFILE } from '../../../src/wire/wireguard/constants.js';
import { WG_DATA, WgDevice } from '../../../src/wire/wireguard/device.js';
import { seededRandom } from '../../support/wg-pair.js';

export interface EndpointConfig {
  privateKey: string;
  peerPublicKey: string;
  presharedKey?: string;
  listenPort: number;
  /** The peer's address, when we initiate (`ip:port`, IPv4). */
  peerEndpoint?: string;
  tunName: string;
  /** Our tunnel address, and the peer's (its only allowed source). */
  tunAddress: string;
  peerTunnelIp: string;
  strategy?: UdpStrategy;
  /** Deterministic randomness and clock base, for recording transcripts. */
  seed?: number;
  record?: string;
}

interface Ep {
  ip: Uint8Array;
  port: number;
}

function key(text: string): Uint8Array {
  const r = parseKey(text);
  if (!r.ok) throw new Error(`bad key: ${r.error.message}`);
  return r.value;
}

function out(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as EndpointConfig;
  const clock = () => performance.now();
  const transcript: { t: number; dir: 'in' | 'out' | 'tun' | 'timer'; hex?: string }[] = [];
  // Events carry the exact `now` the device was given, so a replay reproduces timestamps.
  let now = clock();
  const rec = (dir: 'in' | 'out' | 'tun' | 'timer', bytes?: Uint8Array) => {
    if (cfg.record)
      transcript.push({ t: now, dir, ...(bytes ? { hex: Buffer.from(bytes).toString('hex') } : {}) });
  };
  const wallClockOffsetMs = Date.now() - clock();
  const startNow = clock();
  const wg = new WgDevice<Ep>({
    privateKey: key(cfg.privateKey),
    now: startNow,
    wallClockOffsetMs,
    ...(cfg.seed !== undefined ? { random: seededRandom(cfg.seed) } : {}),
  });
  const peer = wg.addPeer({
    publicKey: key(cfg.peerPublicKey),
    presharedKey: cfg.presharedKey ? key(cfg.presharedKey) : undefined,
    profile: STANDARD_PROFILE,
  });
  if (cfg.peerEndpoint) {
    const [host, port] = cfg.peerEndpoint.split(':');
    peer.endpoint = { ip: parseIp(host!)!, port: Number(port) };
  }
  const peerIp = parseIp(cfg.peerTunnelIp)!;
  const tun = await openTun({ name: cfg.tunName, mtu: 1280 });
  // Routing as the gateway does it: the peer's tunnel IP in the Firezone table, reached by every
  // packet without the Firezone fwmark (spec/gateway-dataplane.md §10.2).
  await tun.configure({
    ipv4: cfg.tunAddress,
    routes: [`${cfg.peerTunnelIp}/32`],
    table: 0x2021fd00,
    fwmarkRule: { mark: 0xfd002021, table: 0x2021fd00 },
  });
  const udp = await openUdp({ family: 4, port: cfg.listenPort, strategy: cfg.strategy ?? 'dgram' });
  const ip = new IpPacket();
  const counters = { tunIn: 0, tunOut: 0, spoofedSource: 0, badInner: 0, noEndpoint: 0 };

  let timer: NodeJS.Timeout | undefined;
  let timerAt = Number.POSITIVE_INFINITY;
  const arm = () => {
    const next = wg.pollTimeout();
    if (!next || next.at >= timerAt) return;
    if (timer) clearTimeout(timer);
    timerAt = next.at;
    timer = setTimeout(
      () => {
        timer = undefined;
        timerAt = Number.POSITIVE_INFINITY;
        now = clock();
        rec('timer');
        wg.handleTimeout(now);
        flush();
      },
      Math.max(0, next.at - clock()),
    );
  };

  const flush = () => {
    for (let t = wg.pollTransmit(); t; t = wg.pollTransmit()) {
      const to = t.kind === 'peer' ? t.peer.endpoint : t.to;
      rec('out', t.bytes);
      if (!to) {
        counters.noEndpoint++;
        continue;
      }
      udp.send(t.bytes, 0, t.bytes.length, to.ip, to.port);
    }
    for (let e = wg.pollEvent(); e; e = wg.pollEvent()) {
      out({
        event: e.type,
        ...('initiator' in e ? { initiator: e.initiator } : {}),
        ...('reason' in e ? { reason: e.reason } : {}),
      });
    }
    udp.flush();
    arm();
  };

  tun.start((batch) => {
    now = clock();
    for (let i = 0; i < batch.count; i++) {
      const buf = batch.bufs[i]!;
      const off = batch.offsets[i]!;
      const len = batch.lengths[i]!;
      counters.tunIn++;
      rec('tun', buf.subarray(off, off + len));
      if (ip.load(buf, off, len) || !bytesEqual(buf, ip.dstOffset, peerIp, 0, 4)) continue;
      const n = wg.encapsulate(peer, buf, off, ip.length, now);
      if (n > 0 && peer.endpoint) {
        rec('out', buf.subarray(off - 16, off - 16 + n));
        udp.send(buf, off - 16, n, peer.endpoint.ip, peer.endpoint.port);
      }
    }
    flush();
  });

  udp.start((batch) => {
    now = clock();
    for (let i = 0; i < batch.count; i++) {
      const buf = batch.bufs[i]!;
      const len = batch.lengths[i]!;
      rec('in', buf.subarray(0, len));
      const from: Ep = { ip: Uint8Array.from(datagramSource(batch, i)), port: batch.srcPorts[i]! };
      const r = wg.decapsulate(buf, 0, len, from, now);
      // Roaming, as plain WireGuard does: the peer is wherever its last authenticated packet came from.
      if (wg.rxPeer) wg.rxPeer.endpoint = from;
      if (r !== WG_DATA) continue;
      if (ip.load(buf, wg.rxOffset, wg.rxLength)) {
        counters.badInner++;
        continue;
      }
      // Allowed IPs: the peer may only send from its tunnel address.
      if (ip.version !== 4 || !bytesEqual(buf, ip.srcOffset, peerIp, 0, 4)) {
        counters.spoofedSource++;
        continue;
      }
      if (tun.write(buf, wg.rxOffset, ip.length)) counters.tunOut++;
    }
    flush();
  });

  const stats = () => ({
    drops: wg.drops,
    cookieRepliesSent: wg.cookieRepliesSent,
    peer: peer.stats,
    hasSession: peer.hasSession,
    counters,
    tun: tun.stats,
    udp: udp.stats,
  });

  const shutdown = async () => {
    if (timer) clearTimeout(timer);
    if (cfg.record) {
      writeFileSync(
        cfg.record,
        JSON.stringify(
          {
            privateKey: cfg.privateKey,
            peerPublicKey: cfg.peerPublicKey,
            presharedKey: cfg.presharedKey,
            seed: cfg.seed,
            wallClockOffsetMs,
            startNow,
            peerEndpoint: cfg.peerEndpoint,
            transcript,
          },
          null,
          1,
        ),
      );
    }
    await tun.close();
    await udp.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown());
  process.on('SIGINT', () => void shutdown());
  createInterface({ input: process.stdin }).on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'stats') out({ stats: stats() });
    else if (cmd === 'initiate') {
      now = clock();
      wg.initiateHandshake(peer, now);
      flush();
    } else if (cmd === 'quit') void shutdown();
  });
  out({ ready: true, publicKey: Buffer.from(wg.publicKey).toString('base64'), port: udp.localPort });
}

main().catch((e: unknown) => {
  process.stderr.write(`wg-endpoint: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
