import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatIp } from '../../src/wire/ip/address.js';
import { ICMPV4_CODE_ADMIN_PROHIBITED, ICMPV4_DEST_UNREACHABLE } from '../../src/wire/ip/constants.js';
import { parseIcmpError } from '../../src/wire/ip/icmp.js';
import { IpPacket } from '../../src/wire/ip/packet.js';
import type { CapturedPacket } from '../support/pcap.js';
import { rootAvailable } from '../support/privileges.js';
import {
  ADDR,
  capture,
  execIn,
  GatewayLab,
  gatewayLabCommandsAvailable,
  HTTP_PORT,
  httpBody,
  httpGet,
  type OurGateway,
  Pinger,
  setUpGatewayLab,
  tcpConnect,
} from './support/gateway-topology.js';

/**
 * Standalone mode end to end: an unmodified wireguard-go client reaches resources through
 * `firezone-gateway --config <policy file>` (topology in ./support/gateway-topology.ts). The
 * policy grants the client the `lab` network 172.20.1.0/24 for TCP 80, TCP 5201 and ICMP;
 * 172.20.2.0/24 exists behind the gateway but is not granted.
 */
const canRun = rootAvailable('the standalone gateway tests') && gatewayLabCommandsAvailable();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Unreachable {
  from: string;
  to: string;
  type: number;
  code: number;
  /** The quoted packet's destination port, or -1. */
  quotedDstPort: number;
}

/** The ICMPv4 destination-unreachable messages in a capture. */
function unreachables(packets: CapturedPacket[]): Unreachable[] {
  const out: Unreachable[] = [];
  for (const { ip } of packets) {
    const parsed = IpPacket.parse(ip);
    if (!parsed.ok) continue;
    const p = parsed.value;
    if (p.version !== 4 || !p.isIcmp || p.icmpType !== ICMPV4_DEST_UNREACHABLE) continue;
    const quote = parseIcmpError(p);
    out.push({
      from: formatIp(p.source()),
      to: formatIp(p.destination()),
      type: p.icmpType,
      code: p.icmpCode!,
      quotedDstPort: quote.ok ? quote.value.quotedDstPort : -1,
    });
  }
  return out;
}

const prohibited = (from: string, port: number): Unreachable => ({
  from,
  to: ADDR.clientTunnel,
  type: ICMPV4_DEST_UNREACHABLE,
  code: ICMPV4_CODE_ADMIN_PROHIBITED,
  quotedDstPort: port,
});

async function ping(lab: GatewayLab, dst: string, count = 3, source?: string) {
  return execIn(lab.client, 'ping', [
    '-n',
    '-c',
    String(count),
    '-i',
    '0.2',
    '-W',
    '1',
    ...(source ? ['-I', source] : []),
    dst,
  ]);
}

async function stopLab(lab: GatewayLab | undefined): Promise<void> {
  if (!lab) return;
  try {
    await lab.stop();
  } finally {
    lab.destroy();
  }
}

describe.runIf(canRun)('standalone gateway (firezone-gateway --config)', () => {
  describe('with the client granted the lab network', () => {
    let lab: GatewayLab | undefined;
    let ours: OurGateway;
    beforeAll(async () => {
      lab = await setUpGatewayLab('ours');
      ours = lab.ours!;
    });
    afterAll(() => stopLab(lab));

    it('forwards pings and HTTP to the granted CIDR resource through the tunnel', async () => {
      const r = await ping(lab!, ADDR.lab);
      expect(r.stdout).toMatch(/ 3 received/);
      expect(await httpGet(lab!.client, `http://${ADDR.lab}/`)).toEqual({
        status: 200,
        body: httpBody(ADDR.lab),
      });
    });

    it('answers TCP to a port outside the filter with ICMP administratively prohibited', async () => {
      const before = await ours.dropped('filter.denied');
      let result = '';
      const packets = await capture(lab!.client, lab!.clientIf!, join(lab!.dir, 'port22.pcap'), async () => {
        result = await tcpConnect(lab!.client, ADDR.lab, 22);
      });
      // ICMP 3/13 is a hard error for a connecting socket (RFC 1122 §4.2.3.9; Linux: EHOSTUNREACH).
      expect(result).toBe('EHOSTUNREACH');
      expect(unreachables(packets)).toContainEqual(prohibited(ADDR.lab, 22));
      expect(await ours.dropped('filter.denied')).toBeGreaterThan(before);
    });

    it('drops and counts packets whose inner source is not the peer tunnel IP', async () => {
      const spoofed = '100.64.0.99';
      const before = await ours.dropped('src.spoofed');
      lab!.client.ip('addr', 'add', `${spoofed}/32`, 'dev', lab!.clientIf!);
      try {
        const r = await ping(lab!, ADDR.lab, 3, spoofed);
        expect(r.code).not.toBe(0);
        expect(r.stdout).toMatch(/ 0 received/);
      } finally {
        lab!.client.ip('addr', 'del', `${spoofed}/32`, 'dev', lab!.clientIf!);
      }
      expect((await ours.dropped('src.spoofed')) - before).toBeGreaterThanOrEqual(3);
      // The peer's own address still gets through.
      expect((await ping(lab!, ADDR.lab, 1)).stdout).toMatch(/ 1 received/);
    });

    it('answers traffic to a network the client is not granted with ICMP administratively prohibited', async () => {
      const before = await ours.dropped('no-resource');
      let result: Awaited<ReturnType<typeof httpGet>> = {};
      const packets = await capture(lab!.client, lab!.clientIf!, join(lab!.dir, 'other.pcap'), async () => {
        result = await httpGet(lab!.client, `http://${ADDR.other}/`);
      });
      expect(result).toEqual({ error: 'EHOSTUNREACH' });
      expect(unreachables(packets)).toContainEqual(prohibited(ADDR.other, HTTP_PORT));
      expect((await ping(lab!, ADDR.other, 2)).stdout).toMatch(/ 0 received/);
      expect(await ours.dropped('no-resource')).toBeGreaterThan(before);
    });
  });

  describe('reloading the policy file on SIGHUP', () => {
    let lab: GatewayLab | undefined;
    beforeAll(async () => {
      lab = await setUpGatewayLab('ours');
    });
    afterAll(() => stopLab(lab));

    it('stops a revoked peer within 1 s and lets it back in when the peer is restored', async () => {
      const ours = lab!.ours!;
      const pinger = new Pinger(lab!.client, ADDR.lab, 0.1);
      try {
        await pinger.replyAfter(Date.now(), 5_000);
        await sleep(1_000);
        ours.writePolicy(lab!.policy({ peers: false }));
        const revokedAt = ours.reload();
        await sleep(3_000);
        expect(ours.run.child.exitCode, 'the gateway survives SIGHUP').toBeNull();
        const last = pinger.lastReply!;
        // Replies flowed up to the signal, and none came later than 1 s after it.
        expect(last).toBeGreaterThan(revokedAt - 500);
        expect(last - revokedAt).toBeLessThan(1_000);

        ours.writePolicy(lab!.policy());
        const restoredAt = ours.reload();
        // wireguard-go's session died with the peer; it starts a new handshake once its sent data
        // goes unanswered for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (15 s).
        await pinger.replyAfter(restoredAt, 25_000);
      } finally {
        await pinger.stop();
      }
    });
  });

  describe('authorization expiry', () => {
    it.each([
      ['an RFC 3339 time', (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z')],
      ['unix seconds', (ms: number) => ms / 1000],
    ])('stops the peer at its expiresAt given as %s', async (_, format) => {
      let lab: GatewayLab | undefined;
      try {
        lab = await GatewayLab.create();
        // A whole second, so both formats name the same instant.
        const expiry = Math.ceil((Date.now() + 6_000) / 1000) * 1000;
        await lab.startOurs(lab.policy({ expiresAt: format(expiry) }));
        await lab.waitForPath();
        const pinger = new Pinger(lab.client, ADDR.lab, 0.1);
        try {
          await sleep(expiry + 3_000 - Date.now());
        } finally {
          await pinger.stop();
        }
        const last = pinger.lastReply!;
        // The reference sweeps expired authorizations every second (spec/gateway-dataplane.md §1).
        expect(last).toBeGreaterThanOrEqual(expiry - 1_000);
        expect(last).toBeLessThanOrEqual(expiry + 1_200);
      } finally {
        await stopLab(lab);
      }
    });
  });
});
