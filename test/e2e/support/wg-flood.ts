/**
 * Hostile traffic for the WireGuard interop test, run in its own namespace:
 *
 *   node --import tsx wg-flood.ts '{"target":"10.98.0.1","port":51820,"publicKey":"…","initiations":10000,"durationMs":8000,"garbage":true}'
 *
 * Sends `initiations` handshake initiations with a valid mac1 for the target's public key (so
 * they pass the cheap check and hit the rate limiter) but from a key the target does not know,
 * spread over `durationMs`, and counts the cookie replies that come back. With `garbage`, first
 * sends a fixed set of malformed datagrams. Prints one JSON line with the counts.
 */
import { createSocket } from 'node:dgram';
import { parseKey } from '../../../src/wire/keys.js';
import { INIT_MAC1, STANDARD_PROFILE } from '../../../src/wire/wireguard/constants.js';
import { mac1KeyFor, writeMac1 } from '../../../src/wire/wireguard/cookie.js';
import { clampPrivateKey } from '../../../src/wire/wireguard/crypto.js';
import { WgDevice } from '../../../src/wire/wireguard/device.js';

interface FloodConfig {
  target: string;
  port: number;
  publicKey: string;
  initiations: number;
  durationMs: number;
  garbage: boolean;
}

/** Malformed datagrams and the drop counter each one must land in. */
export const GARBAGE: { name: string; bytes: Uint8Array; counter: string }[] = [
  { name: 'empty', bytes: new Uint8Array(0), counter: 'wg.not-wireguard' },
  { name: 'three bytes', bytes: Uint8Array.of(4, 0, 0), counter: 'wg.not-wireguard' },
  {
    name: 'unknown type',
    bytes: Uint8Array.of(9, 0, 0, 0, ...new Uint8Array(60)),
    counter: 'wg.not-wireguard',
  },
  {
    name: 'truncated data',
    bytes: Uint8Array.of(4, 0, 0, 0, ...new Uint8Array(20)),
    counter: 'wg.not-wireguard',
  },
  {
    name: 'truncated initiation',
    bytes: Uint8Array.of(1, 0, 0, 0, ...new Uint8Array(100)),
    counter: 'wg.not-wireguard',
  },
  {
    name: 'oversized response',
    bytes: Uint8Array.of(2, 0, 0, 0, ...new Uint8Array(100)),
    counter: 'wg.not-wireguard',
  },
  {
    name: 'nonzero reserved bytes',
    bytes: Uint8Array.of(4, 0, 1, 0, ...new Uint8Array(60)),
    counter: 'wg.not-wireguard',
  },
  {
    name: 'data for an unknown index',
    bytes: Uint8Array.of(4, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, ...new Uint8Array(56)),
    counter: 'wg.unknown-index',
  },
  {
    name: 'initiation with a bad mac1',
    bytes: Uint8Array.of(1, 0, 0, 0, ...new Uint8Array(144)),
    counter: 'wg.bad-mac1',
  },
  {
    name: 'cookie reply for an unknown index',
    bytes: Uint8Array.of(3, 0, 0, 0, 1, 2, 3, 4, ...new Uint8Array(56)),
    counter: 'wg.unknown-index',
  },
];

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as FloodConfig;
  const targetKey = parseKey(cfg.publicKey);
  if (!targetKey.ok) throw new Error(targetKey.error.message);
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, r));
  let cookieReplies = 0;
  sock.on('message', (m) => {
    if (m.length === 64 && m[0] === 3) cookieReplies++;
  });
  const send = (b: Uint8Array) => new Promise<void>((r) => sock.send(b, cfg.port, cfg.target, () => r()));
  if (cfg.garbage) for (const g of GARBAGE) await send(g.bytes);

  // One initiation from a stranger's key; each copy gets its own sender index and mac1.
  const stranger = new WgDevice<{ ip: Uint8Array }>({
    privateKey: clampPrivateKey(globalThis.crypto.getRandomValues(new Uint8Array(32))),
    now: 0,
    wallClockOffsetMs: Date.now(),
  });
  const sp = stranger.addPeer({ publicKey: targetKey.value, profile: STANDARD_PROFILE });
  stranger.initiateHandshake(sp, 0);
  const template = stranger.pollTransmit()!.bytes;
  const mac1Key = mac1KeyFor(targetKey.value);
  const perTick = Math.max(1, Math.ceil(cfg.initiations / (cfg.durationMs / 10)));
  let sent = 0;
  while (sent < cfg.initiations) {
    const batch: Promise<void>[] = [];
    for (let i = 0; i < perTick && sent < cfg.initiations; i++, sent++) {
      const m = Uint8Array.from(template);
      new DataView(m.buffer).setUint32(4, sent + 1, true);
      writeMac1(m, INIT_MAC1, mac1Key);
      batch.push(send(m));
    }
    await Promise.all(batch);
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 500));
  sock.close();
  process.stdout.write(
    `${JSON.stringify({ sent, garbage: cfg.garbage ? GARBAGE.length : 0, cookieReplies })}\n`,
  );
}

if (process.argv[2]) {
  main().catch((e: unknown) => {
    process.stderr.write(`wg-flood: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
