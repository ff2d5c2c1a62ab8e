import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rootAvailable } from '../support/privileges.js';
import { GARBAGE } from './support/wg-flood.js';
import {
  FLOOD,
  JsonChild,
  ping,
  REPO,
  setUp,
  type Topology,
  TRANSFER_BYTES,
  tearDown,
  transfer,
  wireguardGoAvailable,
} from './support/wg-topology.js';

/**
 * Our WireGuard against an unmodified wireguard-go, both directions, plus a hostile sender
 * (topology in ./support/wg-topology.ts).
 */
const canRun = rootAvailable('the WireGuard interop tests') && wireguardGoAvailable();

describe.runIf(canRun)('WireGuard interop with wireguard-go', () => {
  describe('(a) wireguard-go initiates', () => {
    let t: Topology | undefined;
    beforeAll(async () => {
      t = await setUp(false);
    });
    afterAll(() => tearDown(t));

    it('answers its handshake and pings both ways through our TUN', async () => {
      expect(ping(t!.b, '100.64.0.1')).toMatch(/3 received/);
      const established = await t!.ours.waitFor((l) => l.event === 'session-established');
      expect(established.initiator).toBe(false);
      expect(ping(t!.a, '100.64.0.2')).toMatch(/3 received/);
      const s = await t!.ours.stats();
      expect(s.peer.handshakeInitiationsSent).toBe(0);
      expect(s.counters.tunIn).toBeGreaterThanOrEqual(6);
      expect(s.counters.tunOut).toBeGreaterThanOrEqual(6);
      expect(t!.b.exec('wg', ['show', t!.wgIf, 'latest-handshakes'])).toMatch(/\s[1-9]\d+\s*$/);
    });

    it('carries a 50 MB TCP transfer from wireguard-go intact', async () => {
      const { sent, received } = await transfer(t!.b, t!.a, '100.64.0.1');
      expect(received).toEqual({ bytes: TRANSFER_BYTES, sha256: sent.sha256 });
      const s = await t!.ours.stats();
      expect(s.drops['wg.auth-failed']).toBe(0);
      expect(s.counters.spoofedSource + s.counters.badInner).toBe(0);
    });

    it('(e) counts and drops garbage and truncated messages, and keeps working', async () => {
      const before = await t!.ours.stats();
      const out = JSON.parse(
        t!.c.exec(process.execPath, [
          '--import',
          'tsx',
          FLOOD,
          JSON.stringify({
            target: '10.98.0.1',
            port: 51820,
            publicKey: t!.ourPublic,
            initiations: 0,
            durationMs: 10,
            garbage: true,
          }),
        ]),
      );
      expect(out.garbage).toBe(GARBAGE.length);
      const after = await t!.ours.stats();
      const expected: Record<string, number> = {};
      for (const g of GARBAGE) expected[g.counter] = (expected[g.counter] ?? 0) + 1;
      for (const [counter, n] of Object.entries(expected))
        expect(after.drops[counter]! - before.drops[counter]!, counter).toBe(n);
      expect(ping(t!.b, '100.64.0.1', 2)).toMatch(/2 received/);
    });

    it('(d) answers a flood of 10k spoofed initiations with cookie replies while wireguard-go still completes a handshake', async () => {
      const before = await t!.ours.stats();
      // Force wireguard-go to start a fresh handshake during the flood.
      t!.b.exec('wg', ['set', t!.wgIf, 'peer', t!.ourPublic, 'remove']);
      t!.b.exec('wg', [
        'set',
        t!.wgIf,
        'peer',
        t!.ourPublic,
        'preshared-key',
        join(t!.dir, 'psk'),
        'allowed-ips',
        '100.64.0.1/32',
        'endpoint',
        '10.99.0.1:51820',
      ]);
      const flood = new JsonChild(
        t!.c.spawn(
          process.execPath,
          [
            '--import',
            'tsx',
            FLOOD,
            JSON.stringify({
              target: '10.98.0.1',
              port: 51820,
              publicKey: t!.ourPublic,
              initiations: 10_000,
              durationMs: 9_000,
              garbage: false,
            }),
          ],
          { cwd: REPO },
        ),
      );
      await new Promise((r) => setTimeout(r, 1_000));
      // The first initiation gets a cookie; wireguard-go retries with mac2 after REKEY_TIMEOUT.
      expect(ping(t!.b, '100.64.0.1', 3)).toMatch(/ [1-9]\d* received/);
      const result = await flood.waitFor((l) => 'cookieReplies' in l, 60_000);
      const after = await t!.ours.stats();
      const cookies = after.cookieRepliesSent - before.cookieRepliesSent;
      expect(result.sent).toBe(10_000);
      // 100 handshake messages per second are admitted without a cookie; the rest get one.
      expect(cookies).toBeGreaterThan(10_000 - 100 * 12);
      expect(cookies).toBeLessThanOrEqual(10_000);
      expect(result.cookieReplies).toBeGreaterThan(cookies * 0.95);
      expect(after.peer.handshakesCompleted).toBeGreaterThan(before.peer.handshakesCompleted);
    });
  });

  describe('(b) we initiate to wireguard-go', () => {
    let t: Topology | undefined;
    beforeAll(async () => {
      t = await setUp(true);
    });
    afterAll(() => tearDown(t));

    it('starts the handshake on the first packet and pings both ways', async () => {
      expect(ping(t!.a, '100.64.0.2')).toMatch(/3 received/);
      const established = await t!.ours.waitFor((l) => l.event === 'session-established');
      expect(established.initiator).toBe(true);
      expect(ping(t!.b, '100.64.0.1')).toMatch(/3 received/);
      const s = await t!.ours.stats();
      expect(s.peer.handshakeInitiationsSent).toBeGreaterThanOrEqual(1);
    });

    it('carries a 50 MB TCP transfer to wireguard-go intact', async () => {
      const { sent, received } = await transfer(t!.a, t!.b, '100.64.0.2');
      expect(received).toEqual({ bytes: TRANSFER_BYTES, sha256: sent.sha256 });
    });
  });
});
