import { randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { parseUuid } from '../../wire/ids.js';
import { parseKey } from '../../wire/keys.js';
import {
  decodeFrame,
  encodeFrame,
  HEARTBEAT_EVENT,
  JOIN_EVENT,
  LEAVE_EVENT,
  PHOENIX_TOPIC,
  type PhoenixFrame,
  type PhoenixMessage,
} from '../../wire/phoenix/frame.js';
import {
  deriveIceCredentials,
  derivePresharedKey,
  type IceCredentials,
  type PairKeys,
  RefSigner,
} from './credentials.js';
import { DevPortalError } from './errors.js';
import {
  type AllowAccessJson,
  type AuthorizationJson,
  type AuthorizeFlowJson,
  type DomainJson,
  type FlowCreatedJson,
  type InitJson,
  type RequestConnectionJson,
  renderClientResource,
  renderGatewayResource,
  renderRelays,
} from './payloads.js';
import {
  type PortalFilter,
  type PortalPolicy,
  type PortalPolicyClient,
  type PortalPolicyRelay,
  type PortalPolicyResource,
  parseRelaySpec,
} from './policy.js';

/**
 * A development portal: drives gateways over the Firezone portal's gateway channel
 * (`spec/portal-protocol.md` §1–§5) on loopback, from a policy file (`policy.ts`), for tests, the
 * demo and a simulated client.
 *
 * - `GET /gateway/websocket?token&external_id&name&public_key` (§1.1–§1.3): 401 `Missing token` /
 *   `Invalid token`; 422 `Invalid or missing connection parameters: …` for a missing or bad
 *   `external_id`, `name` or `public_key` (44 base64 characters, unique in the account) and for a
 *   User-Agent without a `connlib/<semver>` or `gateway/<semver>` token (*deviation*: the real
 *   portal skips versioning when the header is absent, §1.2; we refuse). On success the gateway
 *   row keyed (site, external_id) is upserted: id, tunnel IPv4/IPv6 (allocated in order from
 *   100.64.0.0/11 and fd00:2021:1111::/107, skipping the clients' addresses, never reused within a
 *   run) and a random PSK base are fixed on first sight; name, public key and version follow each
 *   connect.
 * - `GET /client/websocket?token=<client token>`: the small client channel the simulated client
 *   speaks (topic `client`): `init`, `create_flow` → `flow_created`, ICE candidate relaying.
 * - Phoenix V1 JSON frames (§1.4) through `wire/phoenix/frame.ts`. Topic `gateway` (or `client`)
 *   joins with an ok `{}` reply then an `init` push; a duplicate join first pushes `phx_close` for
 *   the old channel (ref = the old join ref, as Phoenix's `encode_close`); `phoenix`/`heartbeat` is
 *   answered ok; frames for a topic not joined get error `unmatched topic`; unknown events get
 *   error `unknown_message` (§0). Bad frames are logged (rate-limited), counted and dropped.
 * - A socket that sends nothing for `idleTimeoutMs` (37 s) is closed (§1.3).
 * - The flow cache: every `(client, resource)` a gateway acknowledged (`flow_authorized`,
 *   `connection_ready`) or was sent (`allow_access`), with the max expiry, per gateway row; `init`
 *   lists the non-expired ones (§4.6).
 *
 * Deviations kept on purpose (dev tool): every relay of the policy is sent (the portal picks at
 * most two, §4.4), with coturn REST credentials instead of the portal's own scheme; gateway
 * selection prefers `connected_gateway_ids`, then the highest version, then the oldest row.
 */

/** The portal's WebSocket idle timeout (§1.3, `endpoint.ex`). */
export const IDLE_TIMEOUT_MS = 37_000;
/** How long `authorizeFlow` waits for the gateway's answer by default. */
export const DEFAULT_FLOW_TIMEOUT_MS = 10_000;
/**
 * Lifetime of a flow whose grant has no expiry. Real flows always expire (with the client's
 * session); one week is our choice.
 */
export const DEFAULT_FLOW_LIFETIME_S = 7 * 24 * 60 * 60;
/** Frames kept for `frames()` / `waitForFrame()`; the oldest tenth is dropped beyond this. */
export const DEFAULT_MAX_RECORDED_FRAMES = 100_000;

const GATEWAY_TOPIC = 'gateway';
const CLIENT_TOPIC = 'client';
const SEMVER_RE = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const DROP_WARNINGS_PER_CONNECTION = 5;

/** XState's / our `Clock`'s timer half; real timers by default. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** The subset of a pino logger the portal uses. */
export interface DevPortalLogger {
  debug(fields: object, msg: string): void;
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

const silentLogger: DevPortalLogger = { debug() {}, info() {}, warn() {}, error() {} };

export interface DevPortalOptions {
  /** Default `127.0.0.1`: loopback unless told otherwise. */
  readonly host?: string | undefined;
  /** Default 0 (any free port). */
  readonly port?: number | undefined;
  /**
   * Listen on this Unix socket instead of `host:port` (tests: a socket file is reachable from
   * every network namespace; a forwarder inside one makes it a TCP port there).
   */
  readonly path?: string | undefined;
  /** Wall-clock milliseconds since the epoch, for expiries and frame stamps. Default `Date.now`. */
  readonly now?: (() => number) | undefined;
  /** Timers for the idle timeout and flow timeouts. Default: the real ones. */
  readonly timers?: Timers | undefined;
  /** Default {@link IDLE_TIMEOUT_MS}. */
  readonly idleTimeoutMs?: number | undefined;
  /** Default {@link DEFAULT_FLOW_TIMEOUT_MS}. */
  readonly flowTimeoutMs?: number | undefined;
  readonly logger?: DevPortalLogger | undefined;
  readonly maxRecordedFrames?: number | undefined;
}

/** One frame received from or sent to a gateway or client socket. */
export interface FrameRecord {
  /** Increasing over the portal's lifetime; see {@link DevPortal.frameCursor}. */
  readonly seq: number;
  /** `now()` when it was received or sent. */
  readonly at: number;
  readonly direction: 'in' | 'out';
  readonly peer: 'gateway' | 'client';
  /** The gateway row id or the client id. */
  readonly peerId: string;
  readonly connectionId: number;
  /** The WebSocket text (`<binary N bytes>` for binary frames). */
  readonly text: string;
  /** The decoded frame; `undefined` when it could not be decoded. */
  readonly frame: PhoenixFrame | undefined;
}

/** A flow-cache entry: a (client, resource) pair a gateway is authorized for. */
export interface AuthorizationInfo {
  readonly clientId: string;
  readonly resourceId: string;
  /** Unix seconds. */
  readonly expiresAt: number;
}

/** A gateway row with its connection state. */
export interface GatewayInfo {
  readonly id: string;
  readonly siteId: string;
  readonly externalId: string;
  readonly name: string;
  readonly publicKey: string;
  readonly ipv4: string;
  readonly ipv6: string;
  /** From the User-Agent (`connlib/<version>`). */
  readonly version: string;
  readonly userAgent: string;
  readonly connected: boolean;
  /** Connected and joined to topic `gateway`. */
  readonly joined: boolean;
  /** The flow cache, expired entries included. */
  readonly authorizations: readonly AuthorizationInfo[];
}

/** A flow the gateway acknowledged: everything both ends need to connect. */
export interface Flow {
  /** `flow` = `authorize_flow` (§2.2); `legacy` = `request_connection` (§2.3). */
  readonly kind: 'flow' | 'legacy';
  readonly ref: string;
  readonly clientId: string;
  readonly resourceId: string;
  readonly siteId: string;
  readonly gatewayId: string;
  readonly gatewayPublicKey: string;
  readonly gatewayIpv4: string;
  readonly gatewayIpv6: string;
  readonly clientPublicKey: string;
  readonly clientIpv4: string;
  readonly clientIpv6: string;
  /** Base64. Derived (§4.7) for `flow`; chosen by the client for `legacy`. */
  readonly presharedKey: string;
  readonly clientIce: IceCredentials;
  /** Derived (§4.7) for `flow`; the gateway's answer in `connection_ready` for `legacy`. */
  readonly gatewayIce: IceCredentials;
  /** Unix seconds. */
  readonly expiresAt: number;
}

export interface Domain {
  readonly name: string;
  readonly proxyIps: readonly string[];
}

export interface AuthorizeFlowOptions {
  /** Use this gateway (it must be connected and joined, in the resource's site). */
  readonly gatewayId?: string | undefined;
  /** Prefer these gateways (the client's `connected_gateway_ids`). */
  readonly connectedGatewayIds?: readonly string[] | undefined;
  /** Unix seconds; default the grant's `expiresAt`, else now + {@link DEFAULT_FLOW_LIFETIME_S}. */
  readonly expiresAt?: number | undefined;
  /** Default the portal's `flowTimeoutMs`. */
  readonly timeoutMs?: number | undefined;
  /** Legacy (1.3.x clients) only: the client's ICE parameters; random by default. */
  readonly clientIce?: IceCredentials | undefined;
  /** Legacy only: the client-chosen PSK (base64); random by default. */
  readonly presharedKey?: string | undefined;
  /** Legacy only: the DNS resource's concrete domain and the client's proxy IPs. */
  readonly domain?: Domain | undefined;
}

export interface AllowAccessOptions {
  /** Default: the gateway of the client's last legacy connection, else one picked as for flows. */
  readonly gatewayId?: string | undefined;
  readonly domain?: Domain | undefined;
  readonly expiresAt?: number | undefined;
}

/** A relay announced at run time, in the policy file's shape. */
export interface RelaySpec {
  readonly id: string;
  readonly addr: string | readonly string[];
  readonly secret: string;
}

export interface DevPortalEvents {
  'gateway.connect': [GatewayInfo];
  'gateway.join': [GatewayInfo];
  'gateway.disconnect': [GatewayInfo, { readonly code: number; readonly reason: string }];
  'client.connect': [{ readonly clientId: string }];
  'client.join': [{ readonly clientId: string }];
  'client.disconnect': [{ readonly clientId: string; readonly code: number; readonly reason: string }];
  frame: [FrameRecord];
  /** A frame dropped as undecodable or unexpected (also counted in `dropped()`). */
  dropped: [
    {
      readonly code: string;
      readonly message: string;
      readonly peer: 'gateway' | 'client';
      readonly peerId: string;
    },
  ];
}

/** Scripted faults for tests. */
export interface DevPortalFaults {
  /** Terminates every gateway socket abruptly (no close frame). Returns how many. */
  dropSockets(): number;
  /** Answers the next `count` upgrades (gateway and client), or all until cleared, with this status and body. */
  rejectUpgrades(status: number, body: string, count?: number): void;
  clearRejectUpgrades(): void;
  /** While on, heartbeats get no reply. */
  silenceHeartbeats(on: boolean): void;
  /** While on, joins get no reply (and do not join). */
  silenceJoins(on: boolean): void;
  /** Pushes `disconnect {"reason":"token_expired"}` on topic `gateway` (§1.5; fatal for the gateway). */
  disconnectTokenExpired(gatewayId: string): void;
}

interface Connection {
  readonly id: number;
  readonly kind: 'gateway' | 'client';
  readonly ws: WebSocket;
  readonly peerId: string;
  readonly row: GatewayRow | undefined;
  readonly client: ClientState | undefined;
  /** Joined topic → its join ref. */
  readonly joined: Map<string, number | string | null>;
  idleTimer: unknown;
  closed: boolean;
  dropWarnings: number;
}

interface GatewayRow {
  readonly id: string;
  readonly siteId: string;
  readonly externalId: string;
  readonly seq: number;
  readonly ipv4: string;
  readonly ipv6: string;
  readonly pskBase: Uint8Array;
  name: string;
  publicKey: string;
  version: string;
  userAgent: string;
  /** The newest connection; pushes go here. */
  conn: Connection | undefined;
  /** `client|resource` → entry. */
  readonly flows: Map<string, AuthorizationInfo>;
}

interface ClientState {
  readonly policy: PortalPolicyClient;
  readonly pskBase: Uint8Array;
  conn: Connection | undefined;
  /** Gateway of the last legacy connection (for `allowAccess`). */
  legacyGatewayId: string | undefined;
}

interface Pending {
  readonly kind: 'flow' | 'legacy';
  readonly timer: unknown;
  settle(answer: { ok: true; ice: IceCredentials | undefined } | { ok: false; error: DevPortalError }): void;
}

interface RefClaims {
  readonly k: 'flow' | 'legacy' | 'allow';
  readonly g: string;
  readonly c: string;
  readonly r: string;
  readonly e: number;
  readonly n: number;
}

type UpgradeCheck = { ok: true } | { ok: false; status: number; body: string };

/** Starts a development portal listening on `host:port` (loopback, any port, by default). */
export async function startDevPortal(policy: PortalPolicy, opts: DevPortalOptions = {}): Promise<DevPortal> {
  const portal = new DevPortal(policy, opts);
  if (opts.path !== undefined) await portal.listenPath(opts.path);
  else await portal.listen(opts.host ?? '127.0.0.1', opts.port ?? 0);
  return portal;
}

export class DevPortal {
  /** Connect / join / disconnect of gateways and clients, every frame, every dropped frame. */
  readonly events = new EventEmitter<DevPortalEvents>();
  readonly faults: DevPortalFaults;

  readonly #policy: PortalPolicy;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #idleTimeoutMs: number;
  readonly #flowTimeoutMs: number;
  readonly #log: DevPortalLogger;
  readonly #maxFrames: number;
  readonly #http: Server;
  readonly #wss: WebSocketServer;
  readonly #signer = new RefSigner(randomBytes(32));

  readonly #siteByToken = new Map<string, string>();
  readonly #clientByToken = new Map<string, ClientState>();
  readonly #clients = new Map<string, ClientState>();
  readonly #resources = new Map<string, PortalPolicyResource>();
  /** Relays currently offered, in order. */
  readonly #relays = new Map<string, PortalPolicyRelay>();
  /** Every relay ever known, so `relaysPresence` can re-announce by id. */
  readonly #knownRelays = new Map<string, PortalPolicyRelay>();
  readonly #rows = new Map<string, GatewayRow>();
  readonly #rowsByKey = new Map<string, GatewayRow>();
  readonly #usedAddresses = new Set<string>();
  readonly #connections = new Set<Connection>();
  readonly #pending = new Map<number, Pending>();
  readonly #frames: FrameRecord[] = [];
  readonly #dropped = new Map<string, number>();

  #nextHost = 0;
  #nextRowSeq = 0;
  #nextConnectionId = 0;
  #nextNonce = 0;
  #nextFrameSeq = 0;
  #closing = false;
  #url = '';
  #rejectUpgrades: { status: number; body: string; remaining: number | undefined } | undefined;
  #silenceHeartbeats = false;
  #silenceJoins = false;

  /** Prefer {@link startDevPortal}; call {@link listen} before use. */
  constructor(policy: PortalPolicy, opts: DevPortalOptions = {}) {
    this.#policy = policy;
    this.#now = opts.now ?? (() => Date.now());
    this.#timers = opts.timers ?? realTimers;
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
    this.#flowTimeoutMs = opts.flowTimeoutMs ?? DEFAULT_FLOW_TIMEOUT_MS;
    this.#log = opts.logger ?? silentLogger;
    this.#maxFrames = opts.maxRecordedFrames ?? DEFAULT_MAX_RECORDED_FRAMES;
    this.events.setMaxListeners(0);

    for (const s of policy.sites) for (const t of s.gatewayTokens) this.#siteByToken.set(t, s.id);
    for (const c of policy.clients) {
      const state: ClientState = {
        policy: c,
        pskBase: c.pskBase ?? randomBytes(32),
        conn: undefined,
        legacyGatewayId: undefined,
      };
      this.#clients.set(c.id, state);
      this.#clientByToken.set(c.token, state);
      this.#usedAddresses.add(c.ipv4).add(c.ipv6);
    }
    for (const r of policy.resources) this.#resources.set(r.id, r);
    for (const r of policy.relays) {
      this.#relays.set(r.id, r);
      this.#knownRelays.set(r.id, r);
    }

    this.#wss = new WebSocketServer({ noServer: true });
    this.#http = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://portal').pathname;
      const known = path === '/gateway/websocket' || path === '/client/websocket';
      const body = known ? 'Bad Request: expected a WebSocket upgrade' : 'Not Found';
      res.writeHead(known ? 400 : 404, { 'content-type': 'text/plain; charset=utf-8' }).end(body);
    });
    this.#http.on('upgrade', (req, socket, head) => this.#onUpgrade(req, socket, head));

    this.faults = {
      dropSockets: () => {
        let n = 0;
        for (const c of this.#connections) {
          if (c.kind === 'gateway' && !c.closed) {
            c.ws.terminate();
            n++;
          }
        }
        return n;
      },
      rejectUpgrades: (status, body, count) => {
        this.#rejectUpgrades = { status, body, remaining: count };
      },
      clearRejectUpgrades: () => {
        this.#rejectUpgrades = undefined;
      },
      silenceHeartbeats: (on) => {
        this.#silenceHeartbeats = on;
      },
      silenceJoins: (on) => {
        this.#silenceJoins = on;
      },
      disconnectTokenExpired: (gatewayId) => {
        const conn = this.#requireConnected(gatewayId);
        this.#send(conn, {
          topic: GATEWAY_TOPIC,
          event: 'disconnect',
          payload: { reason: 'token_expired' },
          ref: null,
        });
      },
    };
  }

  /** Binds the HTTP server. */
  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#http.once('error', reject);
      this.#http.listen(port, host, () => {
        this.#http.off('error', reject);
        const a = this.#http.address() as AddressInfo;
        this.#url = `ws://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
        resolve();
      });
    });
  }

  /** Binds the HTTP server to a Unix socket; `url` is then `ws+unix:<path>:` (ws's notation). */
  listenPath(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#http.once('error', reject);
      this.#http.listen(path, () => {
        this.#http.off('error', reject);
        this.#url = `ws+unix:${path}:`;
        resolve();
      });
    });
  }

  /** `ws://host:port`: the gateway's `--api-url` (it appends `/gateway/websocket`). */
  get url(): string {
    return this.#url;
  }

  /** The TCP port (0 when listening on a Unix socket). */
  get port(): number {
    const a = this.#http.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  /** Closes every socket (abruptly), fails pending requests with `DEV_PORTAL_CLOSED`, stops listening. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    for (const [n, p] of this.#pending) {
      this.#pending.delete(n);
      p.settle({ ok: false, error: new DevPortalError('DEV_PORTAL_CLOSED', 'the dev portal was closed') });
    }
    for (const c of this.#connections) {
      this.#timers.clearTimeout(c.idleTimer);
      c.ws.terminate();
    }
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    await new Promise<void>((resolve) => {
      this.#http.close(() => resolve());
      this.#http.closeAllConnections();
    });
  }

  // -------------------------------------------------------------------------------------------
  // Observability.

  /** Every gateway row, oldest first. */
  gateways(): GatewayInfo[] {
    return [...this.#rows.values()].map((r) => this.#info(r));
  }

  gateway(id: string): GatewayInfo | undefined {
    const r = this.#rows.get(id);
    return r && this.#info(r);
  }

  /** Recorded frames (oldest first), optionally only those from `since` (a {@link frameCursor}). */
  frames(since = 0): FrameRecord[] {
    return this.#frames.filter((f) => f.seq >= since);
  }

  /** The `seq` the next recorded frame will get: pass it as `since` to look only at later frames. */
  frameCursor(): number {
    return this.#nextFrameSeq;
  }

  /**
   * The first recorded frame with `seq >= since` matching `pred` (already recorded or arriving
   * within `timeoutMs`; real timers). Rejects with `DEV_PORTAL_TIMEOUT`.
   */
  waitForFrame(pred: (f: FrameRecord) => boolean, timeoutMs = 5000, since = 0): Promise<FrameRecord> {
    const found = this.#frames.find((f) => f.seq >= since && pred(f));
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.events.off('frame', onFrame);
      };
      const onFrame = (f: FrameRecord) => {
        let hit: boolean;
        try {
          hit = f.seq >= since && pred(f);
        } catch (e) {
          cleanup();
          reject(e);
          return;
        }
        if (hit) {
          cleanup();
          resolve(f);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new DevPortalError('DEV_PORTAL_TIMEOUT', `no matching frame within ${timeoutMs} ms`));
      }, timeoutMs);
      this.events.on('frame', onFrame);
    });
  }

  /** Dropped-frame counters by code (`phoenix.not-json`, `frame.binary`, `frame.unexpected-control`, …). */
  dropped(): Readonly<Record<string, number>> {
    return Object.fromEntries(this.#dropped);
  }

  // -------------------------------------------------------------------------------------------
  // Authorizations.

  /**
   * Authorizes `clientId` for `resourceId` on a connected, joined gateway of the resource's site
   * and resolves once the gateway acknowledged it. Clients 1.4+ get `authorize_flow` (§2.2, PSK
   * and ICE credentials derived as §4.7) answered by `flow_authorized`; 1.3.x clients get the
   * legacy `request_connection` (§2.3) answered by `connection_ready`. Rejects with
   * `DEV_PORTAL_OFFLINE` when no gateway can take it and `DEV_PORTAL_TIMEOUT` without an answer.
   * The grant list of the client is not enforced here (the client channel enforces it).
   */
  async authorizeFlow(clientId: string, resourceId: string, opts: AuthorizeFlowOptions = {}): Promise<Flow> {
    const client = this.#requireClient(clientId);
    const resource = this.#requireResource(resourceId);
    const row = this.#pickGateway(resource, opts.gatewayId, opts.connectedGatewayIds);
    const conn = row.conn!;
    const grant = client.policy.resources.find((g) => g.id === resource.id);
    const expiresAt = opts.expiresAt ?? grant?.expiresAt ?? this.#nowS() + DEFAULT_FLOW_LIFETIME_S;
    const common = {
      clientId: client.policy.id,
      resourceId: resource.id,
      siteId: row.siteId,
      gatewayId: row.id,
      gatewayPublicKey: row.publicKey,
      gatewayIpv4: row.ipv4,
      gatewayIpv6: row.ipv6,
      clientPublicKey: client.policy.publicKey,
      clientIpv4: client.policy.ipv4,
      clientIpv6: client.policy.ipv6,
      expiresAt,
    };
    const n = ++this.#nextNonce;
    const timeoutMs = opts.timeoutMs ?? this.#flowTimeoutMs;

    if (client.policy.legacy) {
      const ref = this.#signer.sign({
        k: 'legacy',
        g: row.id,
        c: client.policy.id,
        r: resource.id,
        e: expiresAt,
        n,
      });
      const clientIce = opts.clientIce ?? randomIce();
      const presharedKey = opts.presharedKey ?? randomBytes(32).toString('base64');
      const payload: RequestConnectionJson = {
        ref,
        expires_at: expiresAt,
        resource: renderGatewayResource(resource),
        client: {
          id: client.policy.id,
          payload: { ice_parameters: clientIce, domain: opts.domain ? renderDomain(opts.domain) : null },
          peer: {
            persistent_keepalive: 25,
            public_key: client.policy.publicKey,
            preshared_key: presharedKey,
            ipv4: client.policy.ipv4,
            ipv6: client.policy.ipv6,
          },
        },
      };
      const answer = this.#awaitAnswer(n, 'legacy', timeoutMs, row.id);
      this.#push(conn, GATEWAY_TOPIC, 'request_connection', payload);
      const ice = await answer;
      return { kind: 'legacy', ref, ...common, presharedKey, clientIce, gatewayIce: ice! };
    }

    const pair: PairKeys = {
      clientId: client.policy.id,
      clientPublicKey: client.policy.publicKey,
      gatewayId: row.id,
      gatewayPublicKey: row.publicKey,
    };
    const presharedKey = derivePresharedKey(pair, client.pskBase, row.pskBase);
    const ice = deriveIceCredentials(pair);
    const ref = this.#signer.sign({
      k: 'flow',
      g: row.id,
      c: client.policy.id,
      r: resource.id,
      e: expiresAt,
      n,
    });
    const payload: AuthorizeFlowJson = {
      ref,
      resource: renderGatewayResource(resource),
      client: {
        id: client.policy.id,
        public_key: client.policy.publicKey,
        preshared_key: presharedKey,
        ipv4: client.policy.ipv4,
        ipv6: client.policy.ipv6,
      },
      client_ice_credentials: ice.client,
      gateway_ice_credentials: ice.gateway,
      expires_at: expiresAt,
    };
    const answer = this.#awaitAnswer(n, 'flow', timeoutMs, row.id);
    this.#push(conn, GATEWAY_TOPIC, 'authorize_flow', payload);
    await answer;
    return { kind: 'flow', ref, ...common, presharedKey, clientIce: ice.client, gatewayIce: ice.gateway };
  }

  /**
   * Legacy `allow_access` (§2.4): grants another resource on an existing legacy connection. No
   * reply is expected; the pair enters the flow cache at once. Returns the gateway and the ref.
   */
  allowAccess(
    clientId: string,
    resourceId: string,
    opts: AllowAccessOptions = {},
  ): { gatewayId: string; ref: string } {
    const client = this.#requireClient(clientId);
    const resource = this.#requireResource(resourceId);
    const remembered = client.legacyGatewayId;
    const row =
      opts.gatewayId !== undefined
        ? this.#pickGateway(resource, opts.gatewayId, undefined)
        : this.#pickGateway(resource, undefined, remembered === undefined ? undefined : [remembered]);
    const grant = client.policy.resources.find((g) => g.id === resource.id);
    const expiresAt = opts.expiresAt ?? grant?.expiresAt ?? this.#nowS() + DEFAULT_FLOW_LIFETIME_S;
    const n = ++this.#nextNonce;
    const ref = this.#signer.sign({
      k: 'allow',
      g: row.id,
      c: client.policy.id,
      r: resource.id,
      e: expiresAt,
      n,
    });
    const payload: AllowAccessJson = {
      ref,
      client_id: client.policy.id,
      resource: renderGatewayResource(resource),
      expires_at: expiresAt,
      payload: opts.domain ? renderDomain(opts.domain) : null,
      client_ipv4: client.policy.ipv4,
      client_ipv6: client.policy.ipv6,
    };
    this.#push(row.conn!, GATEWAY_TOPIC, 'allow_access', payload);
    cacheFlow(row, client.policy.id, resource.id, expiresAt);
    return { gatewayId: row.id, ref };
  }

  /**
   * `reject_access` (§2.5) to `gatewayId`, or to every gateway whose flow cache holds the pair;
   * removes the pair from those caches. Returns the gateways it was pushed to.
   */
  rejectAccess(clientId: string, resourceId: string, gatewayId?: string): string[] {
    const pushed: string[] = [];
    for (const row of this.#targets(clientId, resourceId, gatewayId)) {
      row.flows.delete(flowKey(clientId, resourceId));
      if (this.#joined(row)) {
        this.#push(row.conn!, GATEWAY_TOPIC, 'reject_access', {
          client_id: clientId,
          resource_id: resourceId,
        });
        pushed.push(row.id);
      }
    }
    return pushed;
  }

  /**
   * Changes a resource and pushes `resource_updated` (§2.8) to every joined gateway of its site
   * (the portal does so on filter changes whether or not the gateway has state for it). Returns
   * the gateways it was pushed to. (The real portal answers address or type changes with
   * `reject_access` instead; call {@link rejectAccess} for that.)
   */
  updateResource(
    resourceId: string,
    changes: {
      readonly name?: string;
      readonly address?: string;
      readonly filters?: readonly PortalFilter[];
    },
  ): string[] {
    const old = this.#requireResource(resourceId);
    const updated: PortalPolicyResource =
      old.type === 'internet'
        ? { ...old, ...(changes.name === undefined ? {} : { name: changes.name }) }
        : {
            ...old,
            ...(changes.name === undefined ? {} : { name: changes.name }),
            ...(changes.address === undefined ? {} : { address: changes.address }),
            ...(changes.filters === undefined ? {} : { filters: changes.filters }),
          };
    this.#resources.set(resourceId, updated);
    const pushed: string[] = [];
    for (const row of this.#rows.values()) {
      if (row.siteId !== updated.siteId || !this.#joined(row)) continue;
      this.#push(row.conn!, GATEWAY_TOPIC, 'resource_updated', renderGatewayResource(updated));
      pushed.push(row.id);
    }
    return pushed;
  }

  /**
   * `access_authorization_expiry_updated` (§2.9) to `gatewayId`, or to every gateway whose flow
   * cache holds the pair; updates those caches. Returns the gateways it was pushed to.
   */
  updateExpiry(clientId: string, resourceId: string, expiresAt: number, gatewayId?: string): string[] {
    const pushed: string[] = [];
    for (const row of this.#targets(clientId, resourceId, gatewayId)) {
      row.flows.set(flowKey(clientId, resourceId), { clientId, resourceId, expiresAt });
      if (this.#joined(row)) {
        this.#push(row.conn!, GATEWAY_TOPIC, 'access_authorization_expiry_updated', {
          client_id: clientId,
          resource_id: resourceId,
          expires_at: expiresAt,
        });
        pushed.push(row.id);
      }
    }
    return pushed;
  }

  /**
   * `relays_presence` (§2.7) to every joined gateway and client: `disconnected` relay ids leave
   * the offered set; `connected` (policy relay ids, or new definitions in the policy file's
   * shape, e.g. a relay restarted with a new secret) join or replace it. `connected` in the push
   * is the full current set, as the portal sends a fresh selection.
   */
  relaysPresence(disconnected: readonly string[], connected: readonly (string | RelaySpec)[]): void {
    const incoming: PortalPolicyRelay[] = [];
    for (const c of connected) {
      if (typeof c === 'string') {
        const known = this.#knownRelays.get(parseUuid(c) ?? c);
        if (!known) throw new DevPortalError('DEV_PORTAL_UNKNOWN_RELAY', `no relay with id '${c}'`);
        incoming.push(known);
      } else {
        const r = parseRelaySpec(c);
        if (!r.ok)
          throw new DevPortalError('DEV_PORTAL_BAD_RELAY', `invalid relay: ${r.problems.join('; ')}`);
        incoming.push(r.value);
      }
    }
    const gone = disconnected.map((id) => parseUuid(id) ?? id);
    for (const id of gone) this.#relays.delete(id);
    for (const r of incoming) {
      this.#relays.set(r.id, r);
      this.#knownRelays.set(r.id, r);
    }
    const relays = [...this.#relays.values()];
    for (const row of this.#rows.values()) {
      if (!this.#joined(row)) continue;
      this.#push(row.conn!, GATEWAY_TOPIC, 'relays_presence', {
        disconnected_ids: gone,
        connected: renderRelays(relays, row.id, this.#now()),
      });
    }
    for (const c of this.#clients.values()) {
      if (!c.conn?.joined.has(CLIENT_TOPIC)) continue;
      this.#push(c.conn, CLIENT_TOPIC, 'relays_presence', {
        disconnected_ids: gone,
        connected: renderRelays(relays, c.policy.id, this.#now()),
      });
    }
  }

  /** Pushes a fresh `init` (current relays and flow cache) to one or every joined gateway. */
  reInit(gatewayId?: string): string[] {
    const rows = gatewayId === undefined ? [...this.#rows.values()] : [this.#requireRow(gatewayId)];
    const pushed: string[] = [];
    for (const row of rows) {
      if (!this.#joined(row)) continue;
      this.#push(row.conn!, GATEWAY_TOPIC, 'init', this.#gatewayInit(row));
      pushed.push(row.id);
    }
    return pushed;
  }

  /**
   * Removes a pair from the flow cache of `gatewayId` (or of every gateway) without telling the
   * gateway, so that the next `init` omits it (tests the §4.6 resync). True if anything was removed.
   */
  revokeFlow(clientId: string, resourceId: string, gatewayId?: string): boolean {
    const rows = gatewayId === undefined ? [...this.#rows.values()] : [this.#requireRow(gatewayId)];
    let removed = false;
    for (const row of rows) removed = row.flows.delete(flowKey(clientId, resourceId)) || removed;
    return removed;
  }

  /** Sends a raw push (`ref: null`) to a connected gateway, on topic `gateway` unless told otherwise. */
  push(gatewayId: string, event: string, payload: unknown, topic = GATEWAY_TOPIC): void {
    this.#push(this.#requireConnected(gatewayId), topic, event, payload);
  }

  /** Sends a raw push to a connected client, on topic `client` unless told otherwise. */
  pushToClient(clientId: string, event: string, payload: unknown, topic = CLIENT_TOPIC): void {
    const c = this.#requireClient(clientId);
    if (!c.conn || c.conn.closed)
      throw new DevPortalError('DEV_PORTAL_OFFLINE', `client ${clientId} is not connected`);
    this.#push(c.conn, topic, event, payload);
  }

  // -------------------------------------------------------------------------------------------
  // Upgrades.

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (e) => this.#log.debug({ err: e.message }, 'upgrade socket error'));
    if (this.#closing) {
      rejectUpgrade(socket, 503, 'Shutting down');
      return;
    }
    const fault = this.#rejectUpgrades;
    if (fault) {
      if (fault.remaining !== undefined && --fault.remaining <= 0) this.#rejectUpgrades = undefined;
      rejectUpgrade(socket, fault.status, fault.body);
      return;
    }
    const url = new URL(req.url ?? '/', 'http://portal');
    if (url.pathname === '/gateway/websocket') {
      this.#gatewayUpgrade(req, socket, head, url.searchParams);
      return;
    }
    if (url.pathname === '/client/websocket') {
      this.#clientUpgrade(req, socket, head, url.searchParams);
      return;
    }
    rejectUpgrade(socket, 404, 'Not Found');
  }

  #gatewayUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, q: URLSearchParams): void {
    const token = q.get('token');
    if (token === null) {
      rejectUpgrade(socket, 401, 'Missing token');
      return;
    }
    const siteId = this.#siteByToken.get(token);
    if (siteId === undefined) {
      rejectUpgrade(socket, 401, 'Invalid token');
      return;
    }
    const externalId = (q.get('external_id') ?? '').trim();
    const name = (q.get('name') ?? '').trim();
    const publicKey = q.get('public_key') ?? '';
    const userAgent = req.headers['user-agent'];
    const version = versionFromUserAgent(userAgent);
    const check = this.#checkGatewayParams(siteId, externalId, name, publicKey, version);
    if (!check.ok) {
      rejectUpgrade(socket, check.status, check.body);
      return;
    }

    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const row = this.#upsertRow(siteId, externalId, name, publicKey, version!, userAgent ?? '');
      const conn = this.#addConnection('gateway', ws, row.id, row, undefined);
      row.conn = conn;
      this.#log.info({ gatewayId: row.id, name, connection: conn.id }, 'gateway connected');
      this.#emit('gateway.connect', this.#info(row));
    });
  }

  /** Mirrors the gateway changeset (§1.3): every problem, one message, HTTP 422. */
  #checkGatewayParams(
    siteId: string,
    externalId: string,
    name: string,
    publicKey: string,
    version: string | undefined,
  ): UpgradeCheck {
    const problems: string[] = [];
    if (externalId === '') problems.push("external_id can't be blank");
    if (name === '') problems.push("name can't be blank");
    else if (name.length > 255) problems.push('name should be at most 255 character(s)');
    if (publicKey === '') problems.push("public_key can't be blank");
    else if (publicKey.length !== 44) problems.push('public_key should be 44 character(s)');
    else if (!parseKey(publicKey).ok) problems.push('public_key must be a base64-encoded string');
    else {
      for (const r of this.#rows.values()) {
        if (r.publicKey === publicKey && !(r.siteId === siteId && r.externalId === externalId)) {
          problems.push('public_key has already been taken');
          break;
        }
      }
    }
    if (version === undefined)
      problems.push('user_agent must contain connlib/<version> or gateway/<version>');
    if (problems.length === 0) return { ok: true };
    return {
      ok: false,
      status: 422,
      body: `Invalid or missing connection parameters: ${problems.join('; ')}`,
    };
  }

  #upsertRow(
    siteId: string,
    externalId: string,
    name: string,
    publicKey: string,
    version: string,
    userAgent: string,
  ): GatewayRow {
    const key = `${siteId}|${externalId}`;
    let row = this.#rowsByKey.get(key);
    if (!row) {
      const { ipv4, ipv6 } = this.#allocateAddresses();
      row = {
        id: randomUUID(),
        siteId,
        externalId,
        seq: this.#nextRowSeq++,
        ipv4,
        ipv6,
        pskBase: randomBytes(32),
        name,
        publicKey,
        version,
        userAgent,
        conn: undefined,
        flows: new Map(),
      };
      this.#rowsByKey.set(key, row);
      this.#rows.set(row.id, row);
    }
    row.name = name;
    row.publicKey = publicKey;
    row.version = version;
    row.userAgent = userAgent;
    return row;
  }

  /** The next unused host of 100.64.0.0/11 and fd00:2021:1111::/107 (same host number in both). */
  #allocateAddresses(): { ipv4: string; ipv6: string } {
    for (;;) {
      const n = ++this.#nextHost;
      if (n >= 1 << 21)
        throw new DevPortalError('DEV_PORTAL_OFFLINE', 'the tunnel address range is exhausted');
      const ipv4 = `100.${64 + ((n >> 16) & 0x1f)}.${(n >> 8) & 0xff}.${n & 0xff}`;
      const ipv6 = `fd00:2021:1111::${n >= 0x10000 ? `${(n >> 16).toString(16)}:` : ''}${(n & 0xffff).toString(16)}`;
      if (this.#usedAddresses.has(ipv4) || this.#usedAddresses.has(ipv6)) continue;
      this.#usedAddresses.add(ipv4).add(ipv6);
      return { ipv4, ipv6 };
    }
  }

  #clientUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, q: URLSearchParams): void {
    const token = q.get('token');
    if (token === null) {
      rejectUpgrade(socket, 401, 'Missing token');
      return;
    }
    const client = this.#clientByToken.get(token);
    if (client === undefined) {
      rejectUpgrade(socket, 401, 'Invalid token');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = this.#addConnection('client', ws, client.policy.id, undefined, client);
      client.conn = conn;
      this.#log.info({ clientId: client.policy.id, connection: conn.id }, 'client connected');
      this.#emit('client.connect', { clientId: client.policy.id });
    });
  }

  #addConnection(
    kind: 'gateway' | 'client',
    ws: WebSocket,
    peerId: string,
    row: GatewayRow | undefined,
    client: ClientState | undefined,
  ): Connection {
    const conn: Connection = {
      id: ++this.#nextConnectionId,
      kind,
      ws,
      peerId,
      row,
      client,
      joined: new Map(),
      idleTimer: undefined,
      closed: false,
      dropWarnings: 0,
    };
    this.#connections.add(conn);
    this.#touch(conn);
    ws.on('message', (data, isBinary) => this.#onMessage(conn, data, isBinary));
    ws.on('ping', () => this.#touch(conn));
    ws.on('pong', () => this.#touch(conn));
    ws.on('error', (e) => this.#log.warn({ connection: conn.id, err: e.message }, 'socket error'));
    ws.on('close', (code, reason) => this.#onClose(conn, code, reason.toString('utf8')));
    return conn;
  }

  /** (Re)arms the idle timer: Phoenix closes a socket that received nothing for 37 s (§1.3). */
  #touch(conn: Connection): void {
    if (conn.closed) return;
    this.#timers.clearTimeout(conn.idleTimer);
    conn.idleTimer = this.#timers.setTimeout(() => {
      if (conn.closed) return;
      this.#log.info({ connection: conn.id, peerId: conn.peerId }, 'idle timeout: closing the socket');
      conn.ws.close(1000, 'idle timeout');
    }, this.#idleTimeoutMs);
  }

  #onClose(conn: Connection, code: number, reason: string): void {
    if (conn.closed) return;
    conn.closed = true;
    this.#timers.clearTimeout(conn.idleTimer);
    this.#connections.delete(conn);
    if (conn.row) {
      if (conn.row.conn === conn) conn.row.conn = undefined;
      this.#log.info({ gatewayId: conn.row.id, connection: conn.id, code }, 'gateway disconnected');
      this.#emit('gateway.disconnect', this.#info(conn.row), { code, reason });
    } else if (conn.client) {
      if (conn.client.conn === conn) conn.client.conn = undefined;
      this.#log.info({ clientId: conn.peerId, connection: conn.id, code }, 'client disconnected');
      this.#emit('client.disconnect', { clientId: conn.peerId, code, reason });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Frames.

  #onMessage(conn: Connection, data: RawData, isBinary: boolean): void {
    this.#touch(conn);
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (isBinary) {
      this.#record(conn, 'in', `<binary ${bytes.length} bytes>`, undefined);
      this.#drop(conn, 'frame.binary', 'binary frames are not Phoenix V1 JSON');
      return;
    }
    const text = bytes.toString('utf8');
    const d = decodeFrame(text);
    if (!d.ok) {
      this.#record(conn, 'in', text, undefined);
      this.#drop(conn, d.error.code, d.error.message);
      return;
    }
    const m = d.value;
    this.#record(conn, 'in', text, frameOf(m));
    if (m.kind !== 'push') {
      this.#drop(conn, 'frame.unexpected-control', `a ${m.kind} frame from a ${conn.kind} is not expected`);
      return;
    }
    this.#dispatch(conn, m.topic, m.event, m.payload, m.ref);
  }

  #dispatch(
    conn: Connection,
    topic: string,
    event: string,
    payload: unknown,
    ref: number | string | null,
  ): void {
    const channelTopic = conn.kind === 'gateway' ? GATEWAY_TOPIC : CLIENT_TOPIC;
    if (topic === PHOENIX_TOPIC) {
      if (event !== HEARTBEAT_EVENT) {
        this.#reply(conn, topic, ref, 'error', { reason: 'unmatched topic' });
        return;
      }
      if (!this.#silenceHeartbeats) this.#reply(conn, topic, ref, 'ok', {});
      return;
    }
    if (event === JOIN_EVENT) {
      if (topic !== channelTopic) {
        this.#reply(conn, topic, ref, 'error', { reason: 'unmatched topic' });
        return;
      }
      if (this.#silenceJoins) return;
      if (conn.joined.has(topic)) {
        // Phoenix closes the old channel of a duplicate join first (§1.5).
        this.#send(conn, { topic, event: 'phx_close', payload: {}, ref: conn.joined.get(topic) ?? null });
        conn.joined.delete(topic);
      }
      conn.joined.set(topic, ref);
      this.#reply(conn, topic, ref, 'ok', {});
      if (conn.row) {
        this.#push(conn, topic, 'init', this.#gatewayInit(conn.row));
        this.#log.info({ gatewayId: conn.row.id, connection: conn.id }, 'gateway joined');
        this.#emit('gateway.join', this.#info(conn.row));
      } else if (conn.client) {
        this.#push(conn, topic, 'init', this.#clientInit(conn.client));
        this.#emit('client.join', { clientId: conn.client.policy.id });
      }
      return;
    }
    if (!conn.joined.has(topic)) {
      this.#reply(conn, topic, ref, 'error', { reason: 'unmatched topic' });
      return;
    }
    if (event === LEAVE_EVENT) {
      const joinRef = conn.joined.get(topic) ?? null;
      conn.joined.delete(topic);
      this.#reply(conn, topic, ref, 'ok', {});
      this.#send(conn, { topic, event: 'phx_close', payload: {}, ref: joinRef });
      return;
    }
    if (conn.row) this.#gatewayEvent(conn, conn.row, ref, event, payload);
    else if (conn.client) this.#clientEvent(conn, conn.client, ref, event, payload);
  }

  /** The gateway → portal events of §3. */
  #gatewayEvent(
    conn: Connection,
    row: GatewayRow,
    ref: number | string | null,
    event: string,
    payload: unknown,
  ): void {
    switch (event) {
      case 'flow_authorized':
        this.#onAnswer(conn, row, ref, payload, 'flow');
        return;
      case 'connection_ready':
        this.#onAnswer(conn, row, ref, payload, 'legacy');
        return;
      case 'broadcast_ice_candidates':
      case 'broadcast_invalidated_ice_candidates': {
        const p = idsAndCandidates(payload, 'client_ids');
        if (!p) {
          this.#reply(conn, GATEWAY_TOPIC, ref, 'error', { reason: 'unknown_message' });
          return;
        }
        const out = event === 'broadcast_ice_candidates' ? 'ice_candidates' : 'invalidate_ice_candidates';
        for (const id of p.ids) {
          const c = this.#clients.get(id);
          if (c?.conn?.joined.has(CLIENT_TOPIC)) {
            this.#push(c.conn, CLIENT_TOPIC, out, { gateway_id: row.id, candidates: p.candidates });
          }
        }
        return; // No reply (§3.3: the portal does `:noreply`).
      }
      default:
        this.#reply(conn, GATEWAY_TOPIC, ref, 'error', { reason: 'unknown_message' });
        return;
    }
  }

  /** `flow_authorized` / `connection_ready` (§3.1, §3.2): verify the signed ref, reply, settle. */
  #onAnswer(
    conn: Connection,
    row: GatewayRow,
    ref: number | string | null,
    payload: unknown,
    kind: 'flow' | 'legacy',
  ): void {
    if (!isObject(payload) || !Object.hasOwn(payload, 'ref')) {
      this.#reply(conn, GATEWAY_TOPIC, ref, 'error', { reason: 'unknown_message' });
      return;
    }
    const claims = typeof payload.ref === 'string' ? this.#verifyRef(payload.ref) : undefined;
    if (!claims || claims.k !== kind || claims.g !== row.id) {
      this.#reply(conn, GATEWAY_TOPIC, ref, 'error', { reason: 'invalid_ref' });
      return;
    }
    const ice = kind === 'legacy' ? acceptedIce(payload.gateway_payload) : undefined;
    this.#reply(conn, GATEWAY_TOPIC, ref, 'ok', {});
    cacheFlow(row, claims.c, claims.r, claims.e);
    if (kind === 'legacy') {
      const c = this.#clients.get(claims.c);
      if (c) c.legacyGatewayId = row.id;
    }
    const pending = this.#pending.get(claims.n);
    if (!pending) return;
    this.#pending.delete(claims.n);
    this.#timers.clearTimeout(pending.timer);
    if (kind === 'legacy' && ice === undefined) {
      pending.settle({
        ok: false,
        error: new DevPortalError(
          'DEV_PORTAL_BAD_ANSWER',
          'connection_ready has no gateway_payload.ConnectionAccepted.ice_parameters {username, password}',
        ),
      });
    } else {
      pending.settle({ ok: true, ice });
    }
  }

  /** The client channel: `create_flow` and candidate relaying. */
  #clientEvent(
    conn: Connection,
    client: ClientState,
    ref: number | string | null,
    event: string,
    payload: unknown,
  ): void {
    switch (event) {
      case 'create_flow': {
        const resourceId = isObject(payload) ? parseUuid(payload.resource_id) : undefined;
        const connected = isObject(payload) ? payload.connected_gateway_ids : undefined;
        if (resourceId === undefined || (connected !== undefined && !isStringArray(connected))) {
          this.#reply(conn, CLIENT_TOPIC, ref, 'error', { reason: 'unknown_message' });
          return;
        }
        const grant = client.policy.resources.find((g) => g.id === resourceId);
        if (
          !grant ||
          !this.#resources.has(resourceId) ||
          (grant.expiresAt !== undefined && grant.expiresAt <= this.#nowS())
        ) {
          this.#reply(conn, CLIENT_TOPIC, ref, 'error', { reason: 'not_found' });
          return;
        }
        const flow = this.authorizeFlow(client.policy.id, resourceId, {
          connectedGatewayIds: connected as string[] | undefined,
        });
        flow.then(
          (f) => {
            if (conn.closed) return;
            const created: FlowCreatedJson = {
              resource_id: f.resourceId,
              gateway_id: f.gatewayId,
              site_id: f.siteId,
              gateway_public_key: f.gatewayPublicKey,
              gateway_ipv4: f.gatewayIpv4,
              gateway_ipv6: f.gatewayIpv6,
              preshared_key: f.presharedKey,
              client_ice_credentials: f.clientIce,
              gateway_ice_credentials: f.gatewayIce,
            };
            this.#push(conn, CLIENT_TOPIC, 'flow_created', created);
          },
          (e: unknown) => {
            this.#log.info(
              { clientId: client.policy.id, resourceId, err: (e as Error).message },
              'create_flow failed',
            );
            if (!conn.closed) this.#reply(conn, CLIENT_TOPIC, ref, 'error', { reason: 'offline' });
          },
        );
        return; // Answered later: a push on success, an error reply on failure.
      }
      case 'broadcast_ice_candidates':
      case 'broadcast_invalidated_ice_candidates': {
        const p = idsAndCandidates(payload, 'gateway_ids');
        if (!p) {
          this.#reply(conn, CLIENT_TOPIC, ref, 'error', { reason: 'unknown_message' });
          return;
        }
        const out = event === 'broadcast_ice_candidates' ? 'ice_candidates' : 'invalidate_ice_candidates';
        for (const id of p.ids) {
          const row = this.#rows.get(id);
          if (row && this.#joined(row)) {
            this.#push(row.conn!, GATEWAY_TOPIC, out, {
              client_id: client.policy.id,
              candidates: p.candidates,
            });
          }
        }
        return;
      }
      default:
        this.#reply(conn, CLIENT_TOPIC, ref, 'error', { reason: 'unknown_message' });
        return;
    }
  }

  #gatewayInit(row: GatewayRow): InitJson {
    const nowS = this.#nowS();
    const authorizations: AuthorizationJson[] = [];
    for (const f of row.flows.values()) {
      if (f.expiresAt > nowS) {
        authorizations.push({ client_id: f.clientId, resource_id: f.resourceId, expires_at: f.expiresAt });
      }
    }
    return {
      account_slug: this.#policy.accountSlug,
      authorizations,
      config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
      interface: { ipv4: row.ipv4, ipv6: row.ipv6 },
      relays: renderRelays([...this.#relays.values()], row.id, this.#now()),
    };
  }

  #clientInit(client: ClientState): unknown {
    const nowS = this.#nowS();
    const resources = client.policy.resources
      .filter((g) => g.expiresAt === undefined || g.expiresAt > nowS)
      .map((g) => this.#resources.get(g.id))
      .filter((r) => r !== undefined)
      .map(renderClientResource);
    return {
      interface: { ipv4: client.policy.ipv4, ipv6: client.policy.ipv6 },
      relays: renderRelays([...this.#relays.values()], client.policy.id, this.#now()),
      resources,
    };
  }

  #push(conn: Connection, topic: string, event: string, payload: unknown): void {
    this.#send(conn, { topic, event, payload, ref: null });
  }

  #reply(
    conn: Connection,
    topic: string,
    ref: number | string | null,
    status: 'ok' | 'error',
    response: unknown,
  ): void {
    this.#send(conn, { topic, event: 'phx_reply', payload: { response, status }, ref });
  }

  #send(conn: Connection, frame: PhoenixFrame): void {
    if (conn.closed || conn.ws.readyState !== conn.ws.OPEN) {
      // Only recorded frames were sent: a test never sees a push the peer could not get.
      this.#log.debug({ connection: conn.id, event: frame.event }, 'socket not open: frame not sent');
      return;
    }
    const text = encodeFrame(frame);
    conn.ws.send(text);
    this.#record(conn, 'out', text, frame);
  }

  #record(conn: Connection, direction: 'in' | 'out', text: string, frame: PhoenixFrame | undefined): void {
    const rec: FrameRecord = {
      seq: this.#nextFrameSeq++,
      at: this.#now(),
      direction,
      peer: conn.kind,
      peerId: conn.peerId,
      connectionId: conn.id,
      text,
      frame,
    };
    this.#frames.push(rec);
    if (this.#frames.length > this.#maxFrames) this.#frames.splice(0, Math.ceil(this.#maxFrames / 10));
    this.#emit('frame', rec);
  }

  /** Tier 1 (STYLE.md, Errors): drop, count, log — a few warnings per connection, then debug. */
  #drop(conn: Connection, code: string, message: string): void {
    this.#dropped.set(code, (this.#dropped.get(code) ?? 0) + 1);
    const fields = { connection: conn.id, peer: conn.kind, peerId: conn.peerId, code, reason: message };
    if (conn.dropWarnings++ < DROP_WARNINGS_PER_CONNECTION) this.#log.warn(fields, 'dropped a bad frame');
    else this.#log.debug(fields, 'dropped a bad frame');
    this.#emit('dropped', { code, message, peer: conn.kind, peerId: conn.peerId });
  }

  /** Listeners are test code: their exceptions are logged, never thrown into a socket handler. */
  #emit<K extends keyof DevPortalEvents>(event: K, ...args: DevPortalEvents[K]): void {
    try {
      (this.events.emit as (e: K, ...a: DevPortalEvents[K]) => boolean)(event, ...args);
    } catch (e) {
      this.#log.error({ event, err: (e as Error).message }, 'a dev portal event listener threw');
    }
  }

  // -------------------------------------------------------------------------------------------
  // Helpers.

  #awaitAnswer(
    n: number,
    kind: 'flow' | 'legacy',
    timeoutMs: number,
    gatewayId: string,
  ): Promise<IceCredentials | undefined> {
    return new Promise((resolve, reject) => {
      const timer = this.#timers.setTimeout(() => {
        if (!this.#pending.delete(n)) return;
        const what = kind === 'flow' ? 'flow_authorized' : 'connection_ready';
        reject(
          new DevPortalError(
            'DEV_PORTAL_TIMEOUT',
            `gateway ${gatewayId} sent no ${what} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.#pending.set(n, {
        kind,
        timer,
        settle: (a) => (a.ok ? resolve(a.ice) : reject(a.error)),
      });
    });
  }

  #verifyRef(ref: string): RefClaims | undefined {
    const c = this.#signer.verify(ref);
    if (
      !c ||
      (c.k !== 'flow' && c.k !== 'legacy' && c.k !== 'allow') ||
      typeof c.g !== 'string' ||
      typeof c.c !== 'string' ||
      typeof c.r !== 'string' ||
      typeof c.e !== 'number' ||
      typeof c.n !== 'number'
    ) {
      return undefined;
    }
    return c as unknown as RefClaims;
  }

  #pickGateway(
    resource: PortalPolicyResource,
    gatewayId: string | undefined,
    preferred: readonly string[] | undefined,
  ): GatewayRow {
    const candidates = [...this.#rows.values()].filter(
      (r) => r.siteId === resource.siteId && this.#joined(r),
    );
    if (gatewayId !== undefined) {
      const row = candidates.find((r) => r.id === gatewayId);
      if (!row) {
        throw new DevPortalError(
          'DEV_PORTAL_OFFLINE',
          `gateway ${gatewayId} is not a connected, joined gateway of site ${resource.siteId}`,
        );
      }
      return row;
    }
    if (candidates.length === 0) {
      throw new DevPortalError(
        'DEV_PORTAL_OFFLINE',
        `no connected, joined gateway in site ${resource.siteId}`,
      );
    }
    const hits = preferred ? candidates.filter((r) => preferred.includes(r.id)) : [];
    const pool = hits.length > 0 ? hits : candidates;
    return pool.sort((a, b) => compareVersions(b.version, a.version) || a.seq - b.seq)[0]!;
  }

  #targets(clientId: string, resourceId: string, gatewayId: string | undefined): GatewayRow[] {
    if (gatewayId !== undefined) return [this.#requireRow(gatewayId)];
    const key = flowKey(clientId, resourceId);
    return [...this.#rows.values()].filter((r) => r.flows.has(key));
  }

  #joined(row: GatewayRow): boolean {
    return row.conn !== undefined && !row.conn.closed && row.conn.joined.has(GATEWAY_TOPIC);
  }

  #requireClient(id: string): ClientState {
    const c = this.#clients.get(parseUuid(id) ?? id);
    if (!c) throw new DevPortalError('DEV_PORTAL_UNKNOWN_CLIENT', `no client with id '${id}' in the policy`);
    return c;
  }

  #requireResource(id: string): PortalPolicyResource {
    const r = this.#resources.get(parseUuid(id) ?? id);
    if (!r)
      throw new DevPortalError('DEV_PORTAL_UNKNOWN_RESOURCE', `no resource with id '${id}' in the policy`);
    return r;
  }

  #requireRow(id: string): GatewayRow {
    const r = this.#rows.get(id);
    if (!r) throw new DevPortalError('DEV_PORTAL_UNKNOWN_GATEWAY', `no gateway with id '${id}'`);
    return r;
  }

  #requireConnected(id: string): Connection {
    const r = this.#requireRow(id);
    if (!r.conn || r.conn.closed)
      throw new DevPortalError('DEV_PORTAL_OFFLINE', `gateway ${id} is not connected`);
    return r.conn;
  }

  #info(r: GatewayRow): GatewayInfo {
    return {
      id: r.id,
      siteId: r.siteId,
      externalId: r.externalId,
      name: r.name,
      publicKey: r.publicKey,
      ipv4: r.ipv4,
      ipv6: r.ipv6,
      version: r.version,
      userAgent: r.userAgent,
      connected: r.conn !== undefined && !r.conn.closed,
      joined: this.#joined(r),
      authorizations: [...r.flows.values()],
    };
  }

  #nowS(): number {
    return Math.floor(this.#now() / 1000);
  }
}

function flowKey(clientId: string, resourceId: string): string {
  return `${clientId}|${resourceId}`;
}

/** One entry per (client, resource) with the max expiry over its flows (§4.6, `render_many`). */
function cacheFlow(row: GatewayRow, clientId: string, resourceId: string, expiresAt: number): void {
  const key = flowKey(clientId, resourceId);
  const old = row.flows.get(key);
  row.flows.set(key, { clientId, resourceId, expiresAt: Math.max(expiresAt, old?.expiresAt ?? 0) });
}

function frameOf(m: PhoenixMessage): PhoenixFrame {
  switch (m.kind) {
    case 'push':
      return { topic: m.topic, event: m.event, payload: m.payload, ref: m.ref };
    case 'reply':
      return {
        topic: m.topic,
        event: 'phx_reply',
        payload: { status: m.status, response: m.response },
        ref: m.ref,
      };
    case 'error':
      return { topic: m.topic, event: 'phx_error', payload: {}, ref: null };
    case 'close':
      return { topic: m.topic, event: 'phx_close', payload: {}, ref: null };
    case 'disconnect':
      return { topic: m.topic, event: 'disconnect', payload: { reason: m.reason }, ref: null };
  }
}

/** The portal extracts the version from the first `connlib/` (or `gateway/`) token (§1.2, §9). */
export function versionFromUserAgent(ua: string | undefined): string | undefined {
  for (const token of (ua ?? '').split(' ')) {
    const m = /^(?:connlib|gateway)\/(.*)$/.exec(token);
    if (m) return SEMVER_RE.test(m[1]!) ? m[1] : undefined;
  }
  return undefined;
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/).slice(0, 3).map(Number);
  const pb = b.split(/[.+-]/).slice(0, 3).map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

function rejectUpgrade(socket: Duplex, status: number, body: string): void {
  const bytes = Buffer.from(body, 'utf8');
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      'connection: close\r\n' +
      'content-type: text/plain; charset=utf-8\r\n' +
      `content-length: ${bytes.length}\r\n\r\n${body}`,
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function idsAndCandidates(
  payload: unknown,
  idsKey: 'client_ids' | 'gateway_ids',
): { ids: string[]; candidates: string[] } | undefined {
  if (!isObject(payload)) return undefined;
  const ids = payload[idsKey];
  const candidates = payload.candidates;
  return isStringArray(ids) && isStringArray(candidates) ? { ids, candidates } : undefined;
}

function acceptedIce(gatewayPayload: unknown): IceCredentials | undefined {
  if (!isObject(gatewayPayload) || !isObject(gatewayPayload.ConnectionAccepted)) return undefined;
  const p = gatewayPayload.ConnectionAccepted.ice_parameters;
  if (!isObject(p) || typeof p.username !== 'string' || typeof p.password !== 'string') return undefined;
  return { username: p.username, password: p.password };
}

function renderDomain(d: Domain): DomainJson {
  return { name: d.name, proxy_ips: d.proxyIps };
}

const ICE_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** Random ICE parameters of a 1.3 client: 4-character ufrag, 22-character password. */
function randomIce(): IceCredentials {
  const pick = (n: number) => [...randomBytes(n)].map((b) => ICE_CHARS[b % ICE_CHARS.length]).join('');
  return { username: pick(4), password: pick(22) };
}
