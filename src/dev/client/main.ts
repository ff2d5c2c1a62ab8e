import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { openTun, type TunDevice } from '../../io/tun.js';
import { formatIp, parseIp } from '../../wire/ip/address.js';
import { type IpPrefix, parsePrefix } from '../../wire/ip/prefix.js';
import { parseKey } from '../../wire/keys.js';
import {
  decodeFrame,
  encodeFrame,
  HEARTBEAT_EVENT,
  JOIN_EVENT,
  PHOENIX_TOPIC,
} from '../../wire/phoenix/frame.js';
import { prefixContains } from '../../wire/policy.js';
import type { TransportAddress } from '../../wire/stun/message.js';
import { SimClientConnection } from './connection.js';

/**
 * `node dist/dev/client/main.js --portal-url ws://127.0.0.1:PORT --token TOKEN --private-key-file
 * FILE [--bind 0.0.0.0] [--port 0] [--tun-name tun-fzclient] [--resource ID ...]`
 *
 * The simulated Firezone client: joins the dev portal's client channel, opens a TUN device with
 * the tunnel addresses and resource routes of its `init`, asks for a flow per resource
 * (`create_flow`), and connects to each gateway with ICE (controlling) and WireGuard (initiator)
 * over one UDP socket. Packets the kernel routes into the TUN device go to the gateway serving
 * the resource, so ping, curl and dig work unmodified in the client's network namespace.
 *
 * A connection whose WireGuard session expires, whose ICE agent finds no path for 2 s, or that
 * has no path 10 s after it was created, is dropped and its flows are requested again (a new connection, as the Firezone client does).
 *
 * Progress goes to stdout as JSON lines (`joined`, `flow`, `ice`, `path`, `session`,
 * `reconnecting`, `error`),
 * for people and tests alike; diagnostics to stderr. Exit codes: 0 after SIGINT/SIGTERM, 1 on a
 * fatal error (portal refused, TUN failed), 2 for a usage error.
 */

const USAGE =
  'usage: main.js --portal-url <ws://host:port> --token <client token> --private-key-file <file> ' +
  '[--bind <address>] [--port <port>] [--tun-name <name>] [--resource <id>]...';

/** The client's routing table (and the fwmark that would bypass it, which nothing sets). */
const CLIENT_TABLE = 0x2021fd01;

interface ClientResource {
  readonly id: string;
  readonly type: string;
  readonly address?: string;
}

interface GatewayLink {
  readonly id: string;
  readonly conn: SimClientConnection;
  readonly prefixes: IpPrefix[];
  readonly resources: Set<string>;
  /** Since when ICE has had no viable pair (a dead link is re-requested after 2 s). */
  disconnectedSince: number | undefined;
  readonly createdAt: number;
}

/** A new connection without a path after this long is requested again (the gateway lost it). */
const RECONNECT_WITHOUT_PATH_MS = 10_000;

/** ICE disconnected this long, or WireGuard gave up: ask the portal for the flows again. */
const RECONNECT_AFTER_DISCONNECTED_MS = 2_000;

function say(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function fail(message: string, code = 1): never {
  process.stderr.write(`${message}\n`);
  if (code === 2) process.stderr.write(`${USAGE}\n`);
  process.exit(code);
}

function addrText(a: TransportAddress): string {
  return a.ip.length === 4 ? `${formatIp(a.ip)}:${a.port}` : `[${formatIp(a.ip)}]:${a.port}`;
}

async function main(): Promise<void> {
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        'portal-url': { type: 'string' },
        token: { type: 'string' },
        'private-key-file': { type: 'string' },
        bind: { type: 'string', default: '0.0.0.0' },
        port: { type: 'string', default: '0' },
        'tun-name': { type: 'string', default: 'tun-fzclient' },
        resource: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    fail((e as Error).message, 2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const portalUrl = values['portal-url'] as string | undefined;
  const token = values.token as string | undefined;
  const keyFile = values['private-key-file'] as string | undefined;
  if (!portalUrl || !token || !keyFile) fail('--portal-url, --token and --private-key-file are required', 2);
  const key = parseKey(readFileSync(keyFile, 'utf8').trim());
  if (!key.ok) fail(`${keyFile}: ${key.error.message}`);
  const bindIp = parseIp(values.bind as string);
  if (bindIp?.length !== 4) fail(`--bind: not an IPv4 address: ${String(values.bind)}`, 2);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    fail(`--port: not a port: ${String(values.port)}`, 2);
  const wanted = new Set((values.resource as string[] | undefined) ?? []);

  const udp: Socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, values.bind as string, () => resolve());
  });
  const local = udp.address();
  const now = () => performance.now();
  const links = new Map<string, GatewayLink>();
  let tun: TunDevice | undefined;
  let timer: NodeJS.Timeout | undefined;

  const pump = () => {
    const t = now();
    for (const l of links.values()) {
      const c = l.conn;
      if (c.pollTimeout() <= t) c.handleTimeout(t);
      for (let x = c.pollTransmit(); x; x = c.pollTransmit()) udp.send(x.bytes, x.to.port, formatIp(x.to.ip));
      let dead = false;
      for (let e = c.pollEvent(); e; e = c.pollEvent()) {
        if (e.type === 'ice') {
          say('ice', { gateway: l.id, state: e.state });
          l.disconnectedSince = e.state === 'disconnected' ? (l.disconnectedSince ?? t) : undefined;
        } else if (e.type === 'path') say('path', { gateway: l.id, remote: addrText(e.remote) });
        else {
          say('session', { gateway: l.id, established: e.established });
          if (!e.established) dead = true;
        }
      }
      for (let p = c.pollPacket(); p; p = c.pollPacket()) tun?.write(p, 0, p.length);
      if (l.disconnectedSince !== undefined && t - l.disconnectedSince >= RECONNECT_AFTER_DISCONNECTED_MS)
        dead = true;
      if (!c.path && t - l.createdAt >= RECONNECT_WITHOUT_PATH_MS) dead = true;
      if (dead) reconnect(l);
    }
    let at = Number.POSITIVE_INFINITY;
    for (const l of links.values()) {
      at = Math.min(at, l.conn.pollTimeout());
      if (l.disconnectedSince !== undefined)
        at = Math.min(at, l.disconnectedSince + RECONNECT_AFTER_DISCONNECTED_MS);
      if (!l.conn.path) at = Math.min(at, l.createdAt + RECONNECT_WITHOUT_PATH_MS);
    }
    if (timer) clearTimeout(timer);
    timer = Number.isFinite(at) ? setTimeout(pump, Math.max(0, Math.min(at - now(), 60_000))) : undefined;
  };

  /**
   * The connection is dead (WireGuard gave up, or ICE found no path): forget it and ask the
   * portal for its flows again, as a Firezone client does. The gateway answers with a fresh
   * connection seeded with the candidates of the relays it has now.
   */
  const reconnect = (l: GatewayLink) => {
    if (links.get(l.id) !== l) return;
    links.delete(l.id);
    say('reconnecting', { gateway: l.id });
    for (const r of l.resources) push('client', 'create_flow', { resource_id: r });
  };

  udp.on('message', (msg, rinfo) => {
    const ip = parseIp(rinfo.address);
    if (!ip) return;
    const from = { ip, port: rinfo.port };
    // One connection per gateway; a datagram belongs to the one whose agent or session knows it,
    // so offer it to each (there is normally one gateway).
    for (const l of links.values()) l.conn.handleDatagram(new Uint8Array(msg), from, now());
    pump();
  });

  const ws = new WebSocket(
    `${portalUrl.replace(/\/$/, '')}/client/websocket?token=${encodeURIComponent(token)}`,
  );
  let ref = 0;
  const push = (topic: string, event: string, payload: unknown) =>
    ws.send(encodeFrame({ topic, event, payload, ref: String(++ref) }));
  const heartbeat = setInterval(() => {
    if (ws.readyState === ws.OPEN) push(PHOENIX_TOPIC, HEARTBEAT_EVENT, {});
  }, 30_000);
  ws.on('unexpected-response', (_req, res) => fail(`the portal refused the client: HTTP ${res.statusCode}`));
  ws.on('error', (e) => fail(`portal connection failed: ${e.message}`));
  ws.on('close', (code) => {
    say('error', { reason: `portal closed the socket (${code})` });
    process.exit(1);
  });
  ws.on('open', () => push('client', JOIN_EVENT, {}));

  const onInit = async (p: { interface: { ipv4: string; ipv6: string }; resources: ClientResource[] }) => {
    const cidrs = p.resources.filter(
      (r) => r.type === 'cidr' && r.address && (wanted.size === 0 || wanted.has(r.id)),
    );
    if (!tun) {
      tun = await openTun({ name: values['tun-name'] as string });
      await tun.configure({
        ipv4: p.interface.ipv4,
        ipv6: p.interface.ipv6,
        routes: cidrs.map((r) => r.address!),
        // A table of its own, consulted for all traffic before the main table (the routes
        // cover the resources only, so the UDP socket's own traffic still goes the normal way).
        table: CLIENT_TABLE,
        fwmarkRule: { mark: CLIENT_TABLE, table: CLIENT_TABLE },
      });
      tun.start((batch) => {
        for (let i = 0; i < batch.count; i++) {
          const at = batch.offsets[i]!;
          const buf = batch.bufs[i]!.subarray(at, at + batch.lengths[i]!);
          const v4 = buf[0]! >> 4 === 4;
          const link = [...links.values()].find((l) =>
            l.prefixes.some((pr) => prefixContains(pr, buf, v4 ? 16 : 24, v4 ? 4 : 16)),
          );
          link?.conn.sendIp(Uint8Array.from(buf), now());
        }
        pump();
      });
    }
    say('joined', { ipv4: p.interface.ipv4, resources: cidrs.map((r) => r.id) });
    for (const r of cidrs) push('client', 'create_flow', { resource_id: r.id });
  };

  const onFlow = (
    f: {
      resource_id: string;
      gateway_id: string;
      gateway_public_key: string;
      gateway_ipv4: string;
      preshared_key: string;
      client_ice_credentials: { username: string; password: string };
      gateway_ice_credentials: { username: string; password: string };
    },
    resources: Map<string, ClientResource>,
  ) => {
    const parsed = parsePrefix(resources.get(f.resource_id)?.address ?? '');
    const prefix = parsed.ok ? parsed.value : undefined;
    let link = links.get(f.gateway_id);
    if (!link) {
      const gk = parseKey(f.gateway_public_key);
      const psk = parseKey(f.preshared_key);
      if (!gk.ok || !psk.ok) {
        say('error', { reason: 'flow_created with a bad key' });
        return;
      }
      const hostIp = local.address === '0.0.0.0' ? bindIp! : parseIp(local.address)!;
      const conn = new SimClientConnection({
        privateKey: key.value,
        gatewayPublicKey: gk.value,
        presharedKey: psk.value,
        local: f.client_ice_credentials,
        remote: f.gateway_ice_credentials,
        hosts: hostIp.some((b) => b !== 0) ? [{ ip: hostIp, port: local.port }] : [],
        random: (n) => new Uint8Array(randomBytes(n)),
        now: now(),
        wallClockOffsetMs: Date.now() - now(),
      });
      link = {
        id: f.gateway_id,
        conn,
        prefixes: [],
        resources: new Set(),
        disconnectedSince: undefined,
        createdAt: now(),
      };
      links.set(f.gateway_id, link);
      const gw = parseIp(f.gateway_ipv4);
      if (gw) link.prefixes.push({ address: gw, prefixLength: 32 } as IpPrefix);
      push('client', 'broadcast_ice_candidates', {
        gateway_ids: [f.gateway_id],
        candidates: conn.localCandidates(),
      });
    }
    if (prefix) link.prefixes.push(prefix);
    link.resources.add(f.resource_id);
    say('flow', { resource: f.resource_id, gateway: f.gateway_id });
    pump();
  };

  const resources = new Map<string, ClientResource>();
  ws.on('message', (data) => {
    const m = decodeFrame(data.toString());
    if (!m.ok) return;
    const msg = m.value;
    if (msg.kind === 'reply' && msg.status === 'error') {
      say('error', { reason: JSON.stringify(msg.response) });
      return;
    }
    if (msg.kind !== 'push') return;
    const p = msg.payload as Record<string, unknown>;
    switch (msg.event) {
      case 'init': {
        const init = p as unknown as {
          interface: { ipv4: string; ipv6: string };
          resources: ClientResource[];
        };
        for (const r of init.resources) resources.set(r.id, r);
        onInit(init).catch((e: unknown) => fail(`TUN setup failed: ${(e as Error).message}`));
        return;
      }
      case 'flow_created':
        onFlow(p as unknown as Parameters<typeof onFlow>[0], resources);
        return;
      case 'ice_candidates':
      case 'invalidate_ice_candidates': {
        const link = links.get(String(p.gateway_id));
        const candidates = Array.isArray(p.candidates)
          ? p.candidates.filter((c) => typeof c === 'string')
          : [];
        if (!link) return;
        if (msg.event === 'ice_candidates') link.conn.addRemoteCandidates(candidates, now());
        else link.conn.invalidateRemoteCandidates(candidates, now());
        pump();
        return;
      }
    }
  });

  const stop = () => {
    clearInterval(heartbeat);
    if (timer) clearTimeout(timer);
    ws.close(1000);
    udp.close();
    void tun?.close().finally(() => process.exit(0));
    if (!tun) process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e: unknown) => fail(`sim client failed: ${(e as Error).message}`));
