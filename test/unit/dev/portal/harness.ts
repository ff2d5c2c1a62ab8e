import { randomBytes } from 'node:crypto';
import { afterEach } from 'vitest';
import { WebSocket } from 'ws';
import { parsePortalPolicy } from '../../../../src/dev/portal/policy.js';
import { type DevPortal, type DevPortalOptions, startDevPortal } from '../../../../src/dev/portal/server.js';

/** A fixed account for the dev portal tests; ids are the spec's example ids where it has them. */
export const IDS = {
  site: '5f1c2a43-0d4e-4f59-9c7e-3b3f1e2d9a10',
  site2: '6a2d3b54-1e5f-4a6a-8d8f-4c4f2f3eab21',
  cidr: '1844956a-9aca-4bf4-903b-27c7ebf18666',
  dns: 'ec18cd0b-11ac-47e4-80a4-af6ac3fae473',
  internet: '0b6a1d55-4a53-4b43-9d1e-2c3a1d9c7e11',
  otherSite: '410c6258-f8fd-43fe-a8e8-7b6e788c80a6',
  alice: '8e370367-64b2-4e27-83e2-27ce03bcce23',
  bob: 'c654a3ff-6e0d-4a64-930a-1312fab876d8',
  relay: '41529b7d-f3e1-4b26-b01d-e34919d76e1b',
} as const;

export const GATEWAY_TOKEN = 'gw-token-hq';
export const GATEWAY_TOKEN_2 = 'gw-token-branch';
export const ALICE_TOKEN = 'client-token-alice';
export const BOB_TOKEN = 'client-token-bob';
export const RELAY_SECRET = 'coturn-secret';
export const ALICE_KEY = 'DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0=';
export const BOB_KEY = 'b1OvSjJspDn8pdygByfqAhjY1Bpc8DlBYiA59CRudec=';
export const ALICE_PSK_BASE = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
export const UA = 'Ubuntu/22.4.0 connlib/1.4.17 (x86_64; 6.8.0-1017-aws)';
/** 2025-09-16T05:20:00Z, in ms. */
export const NOW_MS = 1_758_000_000_000;

export function policyJson(): Record<string, unknown> {
  return {
    accountSlug: 'acme',
    sites: [
      { id: IDS.site, name: 'hq', gatewayTokens: [GATEWAY_TOKEN] },
      { id: IDS.site2, name: 'branch', gatewayTokens: [GATEWAY_TOKEN_2] },
    ],
    resources: [
      {
        id: IDS.cidr,
        siteId: IDS.site,
        type: 'cidr',
        name: 'Office LAN',
        address: '172.20.0.0/16',
        filters: [],
      },
      {
        id: IDS.dns,
        siteId: IDS.site,
        type: 'dns',
        name: 'internal apps',
        address: '*.corp.example',
        filters: [{ protocol: 'tcp', port_range_start: 443, port_range_end: 443 }, { protocol: 'icmp' }],
      },
      { id: IDS.internet, siteId: IDS.site, type: 'internet', name: 'Internet' },
      {
        id: IDS.otherSite,
        siteId: IDS.site2,
        type: 'cidr',
        name: 'lab',
        address: '10.9.0.0/16',
        filters: [],
      },
    ],
    clients: [
      {
        id: IDS.alice,
        token: ALICE_TOKEN,
        publicKey: ALICE_KEY,
        ipv4: '100.64.0.1',
        ipv6: 'fd00:2021:1111::1',
        resources: [IDS.cidr, { id: IDS.dns, expiresAt: 1_758_790_800 }, IDS.otherSite],
        pskBase: ALICE_PSK_BASE,
      },
      {
        id: IDS.bob,
        token: BOB_TOKEN,
        publicKey: BOB_KEY,
        ipv4: '100.66.7.200',
        ipv6: 'fd00:2021:1111::e:4b01',
        version: '1.3.14',
        resources: [IDS.cidr, IDS.dns],
      },
    ],
    relays: [{ id: IDS.relay, addr: ['203.0.113.7:3478', '[2001:db8::7]:3478'], secret: RELAY_SECRET }],
  };
}

export interface PortalHarness {
  readonly portal: DevPortal;
  /** Moves the injected wall clock. */
  setNow(ms: number): void;
}

/** Starts a portal on loopback with a fixed, settable wall clock. Close it with `portal.close()`. */
export async function startTestPortal(
  opts: DevPortalOptions = {},
  policy: Record<string, unknown> = policyJson(),
): Promise<PortalHarness> {
  let now = NOW_MS;
  const portal = await startDevPortal(parsePortalPolicy(policy), { now: () => now, ...opts });
  return {
    portal,
    setNow: (ms) => {
      now = ms;
    },
  };
}

/**
 * For one test file: `start()` a portal (as {@link startTestPortal}); after each test the portal
 * and every socket pushed onto `sockets` are closed.
 */
export function usePortals(): {
  start: (opts?: DevPortalOptions) => Promise<PortalHarness>;
  sockets: TestSocket[];
} {
  const sockets: TestSocket[] = [];
  let portal: DevPortal | undefined;
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close();
    await portal?.close();
    portal = undefined;
  });
  return {
    sockets,
    start: async (opts = {}) => {
      const h = await startTestPortal(opts);
      portal = h.portal;
      return h;
    },
  };
}

export function randomKey(): string {
  return randomBytes(32).toString('base64');
}

export interface GatewayParams {
  token?: string | undefined;
  external_id?: string | undefined;
  name?: string | undefined;
  public_key?: string | undefined;
}

/** The gateway URL with these query parameters (absent ones omitted), form-encoded like §1.1. */
export function gatewayUrl(portal: DevPortal, params: GatewayParams): string {
  const q = new URLSearchParams();
  for (const k of ['token', 'external_id', 'name', 'public_key'] as const) {
    const v = params[k];
    if (v !== undefined) q.append(k, v);
  }
  return `${portal.url}/gateway/websocket?${q.toString()}`;
}

export interface Frame {
  readonly topic: string;
  readonly event: string;
  readonly payload: unknown;
  readonly ref: number | string | null;
}

/**
 * A plain `ws` client playing a gateway (or client): records every received text frame, parsed,
 * and lets a test wait for one.
 */
export class TestSocket {
  readonly received: { text: string; frame: Frame }[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void; from: number }[] = [];
  #ref = 0;

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') }));
    });
    ws.on('message', (data) => {
      const text = data.toString();
      const frame = JSON.parse(text) as Frame;
      this.received.push({ text, frame });
      for (const w of [...this.#waiters]) {
        if (w.pred(frame)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1);
          w.resolve(frame);
        }
      }
    });
  }

  static open(url: string, userAgent: string | null = UA): Promise<TestSocket> {
    const ws = new WebSocket(url, { headers: userAgent === null ? {} : { 'User-Agent': userAgent } });
    const s = new TestSocket(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(s));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
  }

  /** The first received frame (from index `from`) matching `pred`, waiting up to `timeoutMs`. */
  next(pred: (f: Frame) => boolean, timeoutMs = 3000, from = 0): Promise<Frame> {
    const hit = this.received.slice(from).find((r) => pred(r.frame));
    if (hit) return Promise.resolve(hit.frame);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error('no matching frame received'));
      }, timeoutMs);
      const done = (f: Frame) => {
        clearTimeout(timer);
        resolve(f);
      };
      this.#waiters.push({ pred, resolve: done, from });
    });
  }

  /** Waits for a frame with this event (and topic, when given). */
  nextEvent(event: string, topic?: string, timeoutMs = 3000, from = 0): Promise<Frame> {
    return this.next((f) => f.event === event && (topic === undefined || f.topic === topic), timeoutMs, from);
  }

  /** Sends a V1 frame with the next integer ref (like the Rust gateway); returns the ref. */
  send(topic: string, event: string, payload: unknown): number {
    const ref = this.#ref++;
    this.ws.send(JSON.stringify({ topic, event, payload, ref }));
    return ref;
  }

  /** Sends and waits for the `phx_reply` with the same ref. */
  async request(topic: string, event: string, payload: unknown, timeoutMs = 3000): Promise<Frame> {
    const ref = this.send(topic, event, payload);
    return this.next((f) => f.event === 'phx_reply' && f.ref === ref, timeoutMs);
  }

  close(): void {
    this.ws.close();
  }
}

/** Opens a gateway socket, joins `gateway` and waits for `init`. */
export async function joinGateway(
  portal: DevPortal,
  params: GatewayParams = {},
): Promise<{ socket: TestSocket; init: Frame; gatewayId: string; publicKey: string }> {
  const publicKey = params.public_key ?? randomKey();
  const externalId = params.external_id ?? randomBytes(32).toString('hex');
  const socket = await TestSocket.open(
    gatewayUrl(portal, {
      token: GATEWAY_TOKEN,
      name: 'gw-1',
      ...params,
      external_id: externalId,
      public_key: publicKey,
    }),
  );
  const reply = await socket.request('gateway', 'phx_join', null);
  if ((reply.payload as { status: string }).status !== 'ok') throw new Error('join refused');
  const init = await socket.nextEvent('init', 'gateway');
  const row = portal.gateways().find((g) => g.externalId === externalId && g.publicKey === publicKey);
  if (!row) throw new Error('no gateway row');
  return { socket, init, gatewayId: row.id, publicKey };
}

/** Opens a client socket, joins `client` and waits for `init`. */
export async function joinClient(
  portal: DevPortal,
  token: string,
): Promise<{ socket: TestSocket; init: Frame }> {
  const socket = await TestSocket.open(`${portal.url}/client/websocket?token=${encodeURIComponent(token)}`);
  const reply = await socket.request('client', 'phx_join', {});
  if ((reply.payload as { status: string }).status !== 'ok') throw new Error('join refused');
  return { socket, init: await socket.nextEvent('init', 'client') };
}

/**
 * Attempts an upgrade expected to be refused; returns the HTTP status and body. `userAgent: null`
 * sends no User-Agent header.
 */
export function refusedUpgrade(
  url: string,
  userAgent: string | null = UA,
): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(url, { headers: userAgent === null ? {} : { 'User-Agent': userAgent } });
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', (e) => reject(e));
  });
}
