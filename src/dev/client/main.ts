import { randomBytes } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { openTun, type TunDevice } from '../../io/tun.js';
import { formatIp, parseIp } from '../../wire/ip/address.js';
import { formatPrefix, type IpPrefix, parsePrefix } from '../../wire/ip/prefix.js';
import { parseKey } from '../../wire/keys.js';
import {
  decodeFrame,
  encodeFrame,
  HEARTBEAT_EVENT,
  JOIN_EVENT,
  PHOENIX_TOPIC,
} from '../../wire/phoenix/frame.js';
import {
  PROXY_RANGE_V4,
  PROXY_RANGE_V6,
  prefixContains,
  TUNNEL_RANGE_V4,
  TUNNEL_RANGE_V6,
} from '../../wire/policy.js';
import type { TransportAddress } from '../../wire/stun/message.js';
import { SimClientConnection } from './connection.js';
import { DnsStub, FORWARD_TIMEOUT_MS, GATEWAY_DNS_PORT, looksLikeControl } from './dns-stub.js';

/**
 * `node dist/dev/client/main.js --portal-url ws://127.0.0.1:PORT --token TOKEN --private-key-file
 * FILE [--bind 0.0.0.0] [--port 0] [--tun-name tun-fzclient] [--resource ID ...] [--dns-listen IP:PORT]`
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
 * With `--dns-listen IP:PORT` (e.g. `127.0.0.1:53`) it also resolves the `init`'s DNS resources as
 * a Firezone client does (`dns-stub.ts`, `spec/gateway-dataplane.md` §6.1, §7.1): a UDP stub
 * resolver answers A/AAAA for names matching a resource pattern with proxy IPs (4 from
 * 100.96.0.0/11, 4 from fd00:2021:1111:8000::/107 per name), asks for a flow to the resource and
 * sends AssignedIps through the tunnel (retransmitted every 2 s until DomainStatus; the answer
 * waits for it, at most 5 s); other query types for such names are forwarded to the gateway's DNS
 * server (`<gateway tunnel IPv4>:53535`, through the TUN device and the tunnel); other names get
 * REFUSED. The TUN device then also routes the tunnel ranges (100.64.0.0/11,
 * fd00:2021:1111::/107) and the proxy ranges: packets to a proxy IP go to the gateway serving its
 * resource, packets to a gateway's tunnel IP to that gateway. Control packets from gateways are
 * never written to the TUN device.
 *
 * Progress goes to stdout as JSON lines (`joined`, `flow`, `ice`, `path`, `session`,
 * `reconnecting`, `domain` (each DomainStatus: resource, domain, status, proxyIps), `error`),
 * for people and tests alike; diagnostics to stderr. Exit codes: 0 after SIGINT/SIGTERM, 1 on a
 * fatal error (portal refused, TUN failed), 2 for a usage error.
 */

const USAGE =
  'usage: main.js --portal-url <ws://host:port> --token <client token> --private-key-file <file> ' +
  '[--bind <address>] [--port <port>] [--tun-name <name>] [--resource <id>]... [--dns-listen <ip:port>]';

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
  /** The gateway's tunnel IPv4 (its DNS server listens there on port 53535). */
  readonly gatewayIpv4: string;
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

/** `IP:PORT` or `[IPv6]:PORT`. */
function parseListen(text: string): { ip: string; port: number; v6: boolean } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const ip = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  const bytes = ip === undefined ? undefined : parseIp(ip);
  if (!bytes || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { ip: ip!, port, v6: bytes.length === 16 };
}

/** A flow request for a DNS resource not answered in this long is sent again. */
const FLOW_RETRY_MS = 10_000;

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
        'dns-listen': { type: 'string' },
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
  const dnsListen =
    values['dns-listen'] === undefined ? undefined : parseListen(values['dns-listen'] as string);
  if (values['dns-listen'] !== undefined && !dnsListen)
    fail(`--dns-listen: not IP:PORT: ${String(values['dns-listen'])}`, 2);

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
  /** The stub resolver of `--dns-listen`, and its socket. */
  const stub = dnsListen ? new DnsStub<RemoteInfo>() : undefined;
  let dnsSock: Socket | undefined;
  /** DNS resources whose flow we asked for, and when (until a `flow_created` adds them to a link). */
  const flowRequests = new Map<string, number>();
  /** Queries for a gateway's DNS server, waiting until a link to it has a path. */
  const forwardQueue: { id: number; resource: string; query: Uint8Array }[] = [];
  const linkFor = (resource: string) => [...links.values()].find((l) => l.resources.has(resource));

  const flush = (c: SimClientConnection) => {
    for (let x = c.pollTransmit(); x; x = c.pollTransmit()) udp.send(x.bytes, x.to.port, formatIp(x.to.ip));
  };

  /** A DNS resource was queried: ask the portal for a flow unless a link serves it already. */
  const ensureFlow = (resource: string, t: number) => {
    if (linkFor(resource)) return;
    const at = flowRequests.get(resource);
    if (at !== undefined && t - at < FLOW_RETRY_MS) return;
    flowRequests.set(resource, t);
    push('client', 'create_flow', { resource_id: resource });
  };

  /** Sends a query to the gateway's DNS server from a kernel socket (through the TUN device). */
  const forward = (f: { id: number; query: Uint8Array }, gatewayIpv4: string) => {
    const s = createSocket('udp4');
    const done = () => {
      clearTimeout(expiry);
      try {
        s.close();
      } catch {
        // already closed
      }
    };
    const expiry = setTimeout(done, FORWARD_TIMEOUT_MS);
    s.on('error', done);
    s.on('message', (msg) => {
      stub?.handleForwardReply(f.id, new Uint8Array(msg), now());
      done();
      pump();
    });
    s.send(f.query, GATEWAY_DNS_PORT, gatewayIpv4);
  };

  /** Runs the stub's timers and carries out what it asks for. */
  const serviceDns = (t: number) => {
    if (!stub) return;
    if (stub.pollTimeout() <= t) stub.handleTimeout(t);
    for (let o = stub.pollOutput(); o; o = stub.pollOutput()) {
      switch (o.type) {
        case 'reply':
          dnsSock?.send(o.bytes, o.to.port, o.to.address);
          break;
        case 'flow':
          ensureFlow(o.resource, t);
          break;
        case 'control': {
          // Without a path it is dropped: the stub retransmits, and at once when a session is up.
          const l = linkFor(o.resource);
          if (l?.conn.path) l.conn.sendIp(o.packet, t);
          break;
        }
        case 'forward':
          forwardQueue.push(o);
          break;
        case 'domain':
          say('domain', { resource: o.resource, domain: o.domain, status: o.status, proxyIps: o.proxyIps });
          break;
      }
    }
    for (let i = 0; i < forwardQueue.length; ) {
      const f = forwardQueue[i]!;
      const l = linkFor(f.resource);
      if (!stub.forwardPending(f.id)) forwardQueue.splice(i, 1);
      else if (l?.conn.path) {
        forwardQueue.splice(i, 1);
        forward(f, l.gatewayIpv4);
      } else i++;
    }
  };

  const pump = () => {
    const t = now();
    serviceDns(t);
    for (const l of links.values()) {
      const c = l.conn;
      if (c.pollTimeout() <= t) c.handleTimeout(t);
      flush(c);
      let dead = false;
      for (let e = c.pollEvent(); e; e = c.pollEvent()) {
        if (e.type === 'ice') {
          say('ice', { gateway: l.id, state: e.state });
          l.disconnectedSince = e.state === 'disconnected' ? (l.disconnectedSince ?? t) : undefined;
        } else if (e.type === 'path') say('path', { gateway: l.id, remote: addrText(e.remote) });
        else {
          say('session', { gateway: l.id, established: e.established });
          if (!e.established) dead = true;
          // AssignedIps dropped while there was no link go out now instead of at the next retransmit.
          else stub?.retransmitNow(l.resources, t);
        }
      }
      for (let p = c.pollPacket(); p; p = c.pollPacket()) {
        // Control events (DomainStatus, Goodbye) are for us, never for the kernel.
        if (looksLikeControl(p)) stub?.handleTunnelPacket(p, t);
        else tun?.write(p, 0, p.length);
      }
      if (l.disconnectedSince !== undefined && t - l.disconnectedSince >= RECONNECT_AFTER_DISCONNECTED_MS)
        dead = true;
      if (!c.path && t - l.createdAt >= RECONNECT_WITHOUT_PATH_MS) dead = true;
      if (dead) reconnect(l);
    }
    if (stub) {
      serviceDns(t);
      for (const l of links.values()) flush(l.conn);
    }
    let at = stub?.pollTimeout() ?? Number.POSITIVE_INFINITY;
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
    for (const r of l.resources) {
      flowRequests.set(r, now());
      push('client', 'create_flow', { resource_id: r });
    }
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

  if (dnsListen && stub) {
    const sock = createSocket(dnsListen.v6 ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(dnsListen.port, dnsListen.ip, () => resolve());
    }).catch((e: unknown) =>
      fail(`--dns-listen: cannot bind ${values['dns-listen']}: ${(e as Error).message}`),
    );
    sock.on('error', (e) => say('error', { reason: `DNS socket: ${e.message}` }));
    sock.on('message', (msg, rinfo) => {
      stub.handleQuery(new Uint8Array(msg), rinfo, now());
      pump();
    });
    dnsSock = sock;
  }

  const onInit = async (p: { interface: { ipv4: string; ipv6: string }; resources: ClientResource[] }) => {
    const cidrs = p.resources.filter(
      (r) => r.type === 'cidr' && r.address && (wanted.size === 0 || wanted.has(r.id)),
    );
    stub?.setResources(
      p.resources
        .filter((r) => r.type === 'dns' && r.address && (wanted.size === 0 || wanted.has(r.id)))
        .map((r) => ({ id: r.id, address: r.address! })),
    );
    // With the stub resolver: the gateways' tunnel IPs and the proxy IPs are reached through us too.
    const ranges = stub
      ? [TUNNEL_RANGE_V4, TUNNEL_RANGE_V6, PROXY_RANGE_V4, PROXY_RANGE_V6].map((r) => formatPrefix(r))
      : [];
    if (!tun) {
      tun = await openTun({ name: values['tun-name'] as string });
      await tun.configure({
        ipv4: p.interface.ipv4,
        ipv6: p.interface.ipv6,
        routes: [...cidrs.map((r) => r.address!), ...ranges],
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
          const dst = v4 ? 16 : 24;
          const len = v4 ? 4 : 16;
          // A proxy IP goes to the gateway serving its resource; anything else by prefix.
          const proxied = stub?.resourceForProxy(buf, dst, len);
          const link =
            proxied !== undefined
              ? linkFor(proxied)
              : [...links.values()].find((l) => l.prefixes.some((pr) => prefixContains(pr, buf, dst, len)));
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
      gateway_ipv6?: string;
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
        gatewayIpv4: f.gateway_ipv4,
        disconnectedSince: undefined,
        createdAt: now(),
      };
      links.set(f.gateway_id, link);
      const gw = parseIp(f.gateway_ipv4);
      if (gw) link.prefixes.push({ address: gw, prefixLength: 32 } as IpPrefix);
      const gw6 = f.gateway_ipv6 === undefined ? undefined : parseIp(f.gateway_ipv6);
      if (gw6?.length === 16) link.prefixes.push({ address: gw6, prefixLength: 128 } as IpPrefix);
      push('client', 'broadcast_ice_candidates', {
        gateway_ids: [f.gateway_id],
        candidates: conn.localCandidates(),
      });
    }
    if (prefix) link.prefixes.push(prefix);
    link.resources.add(f.resource_id);
    flowRequests.delete(f.resource_id);
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
    dnsSock?.close();
    void tun?.close().finally(() => process.exit(0));
    if (!tun) process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e: unknown) => fail(`sim client failed: ${(e as Error).message}`));
