import { ROUTER_DROP_REASONS } from '../../src/router/router.js';
import { parseIp } from '../../src/wire/ip/address.js';
import { IP_ERROR_CODES } from '../../src/wire/ip/errors.js';
import { KEEPALIVE_TIMEOUT_MS, REJECT_AFTER_TIME_MS } from '../../src/wire/wireguard/constants.js';
import { buildPacket, echoRest } from '../support/packet-builder.js';
import {
  type Command,
  type CommandKind,
  DNS_NAMES,
  type MalformedVariant,
  type Proto,
  type SimCaseSpec,
  type Spoof,
  showCommand,
  type Target,
  TCP_PORTS,
  UDP_PORTS,
} from './commands.js';
import {
  decodeDns,
  dnsQuery,
  GW_V4,
  GW_V6,
  type SimClient,
  SimWorld,
  TCP_CLOSED_PORT,
  UDP_UNREACHABLE_PORT,
} from './harness.js';
import {
  DOMAINS,
  FILTER_CHOICES,
  Model,
  type Prediction,
  proxyIps,
  RESOURCE_KEYS,
  RESOURCES,
  type ResourceKey,
  resourceJson,
} from './model.js';
import { describe, hex, type Seen, showIp, TCP_RST_ACK, TCP_SYN, TCP_SYN_ACK } from './packets.js';

/**
 * Runs one simulation case: a world (`harness.ts`), the reference model (`model.ts`) and a list of
 * commands (`commands.ts`). Each command acts on the world and tells the model; then the world
 * runs to quiescence and every invariant is checked:
 *
 * - every packet the model expects (at the resource, at each client) arrived exactly once, with
 *   mirrored addresses and ports, valid checksums, the proxy IP restored for DNS resources;
 * - a refused packet got exactly one ICMP of the right type and code (or none when its source may
 *   not get one) and nothing reached the resource;
 * - nothing else arrived anywhere (no unexpected packet at a client or at the resource);
 * - a client without authorizations has no state in the gateway (revoked, expired, goodbye), and
 *   its packets go nowhere; a client with authorizations is connected whenever it can be;
 * - a DNS resource's proxy IP goes to the same real address for as long as its translation lasts;
 * - the router's verdict counters moved exactly as the model predicted; no error was logged;
 *   the nameserver stays selected; the control plane never asked to exit.
 */

export class SimFailure extends Error {}

export interface Stats {
  cases: number;
  steps: number;
  kinds: Record<string, number>;
  noops: Record<string, number>;
  outcomes: Record<string, number>;
  sends: Record<string, number>;
}

export function newStats(): Stats {
  return { cases: 0, steps: 0, kinds: {}, noops: {}, outcomes: {}, sends: {} };
}

function bump(r: Record<string, number>, k: string, n = 1): void {
  r[k] = (r[k] ?? 0) + n;
}

/** The router drop counters the model predicts; the rest (WireGuard, ICE, TURN, no-path) are transport noise. */
const VERDICT_COUNTERS: readonly string[] = [
  ...ROUTER_DROP_REASONS.filter((r) => r !== 'no-path'),
  ...IP_ERROR_CODES,
  'p2p.unknown-type',
];

/** How long a client may take to (re)connect when it can: the 100 s of an idle pair's ICE timeout plus a retry. */
const HEAL_LIMIT_MS = 150_000;

/** What a gateway may send to the portal (spec/portal-protocol.md §3; the legacy connection_ready is not used here). */
const PORTAL_EVENTS_FROM_GATEWAY = new Set([
  'flow_authorized',
  'broadcast_ice_candidates',
  'broadcast_invalidated_ice_candidates',
]);

const CLIENT_IDS = [
  '8e370367-64b2-4e27-83e2-27ce03bcce23',
  'c654a3ff-6e0d-4a64-930a-1312fab876d8',
  '3abd725a-733b-4801-ac16-72f26cd98a24',
];
const RELAY_IDS = [
  'f3e96854-f1f6-4e43-b751-9aa6c27b1fda',
  '0a133356-7a9e-4b9a-b413-0d95a5720fd8',
  '75542064-e5f7-491b-b054-5350b4f34963',
  '649cd79f-2536-4f9d-906b-d20b1c5d3ac3',
  'e95f9517-2152-4677-a16a-fbb2687050a3',
  'b0724bd1-a8cc-4faf-88cd-f21159cfec47',
];

const CIDR_HOSTS = ['172.20.0.5', '172.20.1.10', 'fd20::5', '100.96.200.1'];
const INTERNET_HOSTS = { v4: '198.51.100.7', v6: '2001:db8::7' };
/** Not a resource: private, documentation, unassigned proxy IPs, the gateway, another client. */
const NON_RESOURCES = [
  '10.99.0.1',
  '2001:db8:ffff::1',
  'fd00:2021:1111:8000::ff:1',
  'GW4',
  'GW6',
  'PEER4',
  'PEER6',
  '100.127.0.1',
];

/** The nameserver's zone: DNS-resource names plus what the in-tunnel DNS queries ask for. */
function zone() {
  const z = new Map<
    string,
    { a?: string[]; aaaa?: string[]; srv?: { target: string; port: number }[]; txt?: string[]; ttl?: number }
  >();
  z.set('firezone.dev', { a: ['192.0.2.1'], ttl: 300 });
  for (const d of DOMAINS)
    if (!d.nxdomain) z.set(d.name, { a: [...d.a], aaaa: [...d.aaaa], ttl: 300, txt: ['v=sim'] });
  z.set('_sip._tcp.app.eu.corp.test', { srv: [{ target: 'app.eu.corp.test', port: 5060 }], ttl: 300 });
  return z;
}

/** One packet (or set of packets) a step expects somewhere, matched at most `max` times. */
interface Expectation {
  readonly where: number | 'resource';
  readonly desc: string;
  readonly match: (p: Seen) => boolean;
  /** Deeper checks once matched: a problem, or undefined. */
  readonly check?: (p: Seen) => string | undefined;
  readonly min: number;
  readonly max: number;
  count: number;
}

/** The client-side DNS stub of one client: its proxy IPs per name, and which names are Active. */
interface Stub {
  readonly proxies: Map<number, { v4: string[]; v6: string[] }>;
  readonly nextGen: Map<number, number>;
  readonly active: Set<number>;
}

export class SimCase {
  readonly s: SimWorld;
  readonly model: Model;
  private readonly stubs: Stub[];
  private readonly trace: string[] = [];
  private expectations: Expectation[] = [];
  private verdicts = new Map<string, number>();
  /** Sums over groups of counters, when the exact one does not matter. */
  private verdictGroups: { names: readonly string[]; n: number }[] = [];
  private counters: Record<string, number> = {};
  private logCursor = 0;
  private resourceCursor = 0;
  private readonly receivedCursor: number[];
  /** Observed real address per (client, proxy, translation epoch): must never change. */
  private readonly mappings = new Map<string, string>();
  /** When each client last started a connection of its own. */
  private readonly lastStart: number[] = [];
  private currentKind: CommandKind | 'setup' = 'setup';
  /** `client@expiry` → whether a Goodbye could reach the client just before that expiry. */
  private readonly goodbyeSnapshots = new Map<string, boolean>();
  private portalCursor = 0;
  private readonly answeredRefs = new Set<string>();
  private expectedReconnects = 0;

  constructor(
    private readonly spec: SimCaseSpec,
    private readonly stats: Stats,
  ) {
    this.s = new SimWorld(zone());
    spec.relayOnly.forEach((r, i) => {
      this.s.addClient(CLIENT_IDS[i]!, r);
    });
    this.model = new Model(
      this.s.clients.length,
      this.s.clients.map((c) => ({ v4: hex(c.v4), v6: hex(c.v6) })),
      { v4: GW_V4, v6: GW_V6 },
    );
    this.stubs = this.s.clients.map(() => ({ proxies: new Map(), nextGen: new Map(), active: new Set() }));
    // Older saved cases have no initial filters: everything starts permit-all.
    (spec.filters ?? []).forEach((f, i) => {
      const k = RESOURCE_KEYS[i];
      if (k && k !== 'INET') this.model.portalFilters.set(k, FILTER_CHOICES[f]!);
    });
    this.receivedCursor = this.s.clients.map(() => 0);
  }

  private get gw() {
    return this.s.w.gateway;
  }

  private fail(msg: string): never {
    const tail = this.trace.slice(-40).join('\n  ');
    throw new SimFailure(
      `${msg}\n  --- state ---\n  ${this.describeState().join('\n  ')}\n  --- trace (last steps) ---\n  ${tail}`,
    );
  }

  /** The connection state of every client and relay, for failure reports. */
  private describeState(): string[] {
    const addr = (a: { ip: Uint8Array; port: number } | undefined) =>
      a ? `${showIp(hex(a.ip))}:${a.port}` : '-';
    const out = this.s.clients.map((client, c) => {
      const path = this.gw.router.icePath(client.id);
      return `client ${c}${client.relayOnly ? ' (relay-only)' : ''} at ${client.hostIp}: grants [${[...this.model.clients[c]!.grants.keys()].join(',')}], up ${this.isUp(c)}, own session ${client.established} path ${addr(client.conn?.path)}; gateway ${String(this.gw.clientState(client.id) ?? 'none')} / ${this.gw.pathState(client.id) ?? '-'} path ${addr(path?.to)}${path?.relay ? ` via ${path.relay.slice(0, 8)}` : ''}`;
    });
    out.push(
      `relays: ${this.s.relays.map((r) => `${r.id.slice(0, 8)}@${r.address} ${r.alive ? 'alive' : 'dead'} ${JSON.stringify(r.server.stats)}`).join('; ')}`,
      `gateway relays: ${JSON.stringify(this.gw.relayStates())}; portal ${this.s.portal.partitioned ? 'partitioned' : 'connected'}`,
    );
    return out;
  }

  private note(line: string): void {
    this.trace.push(`[t=${(this.s.clock.now() / 1000).toFixed(3)}s step ${this.s.step}] ${line}`);
  }

  // --- Setup and teardown --------------------------------------------------------------------

  async start(): Promise<void> {
    this.s.portal.push('init', this.s.portal.initPayload(this.s.relays, []));
    await this.run(2_000, () => this.gw.selectedNameserver() !== undefined && this.relayReady());
    if (this.gw.selectedNameserver() === undefined) this.fail('setup: no nameserver selected after 2 s');
    if (!this.relayReady()) this.fail('setup: the relay allocation is not ready after 2 s');
    this.note(`setup: relay-only clients ${this.spec.relayOnly.map((r, i) => (r ? i : '')).join('')}`);
    this.beginStep();
    for (const g of this.spec.initial) {
      this.note(`setup: authorize client ${g.client} for ${g.resource}`);
      await this.flow(g.client, g.resource, this.s.clock.wallNow() + 3_600_000);
    }
    await this.endStep();
  }

  private relayReady(): boolean {
    return Object.values(this.gw.relayStates()).some((v) => JSON.stringify(v).includes('alive'));
  }

  /** Runs the whole case; throws a {@link SimFailure} at the first broken invariant. */
  async execute(): Promise<void> {
    this.stats.cases++;
    try {
      await this.start();
      for (const cmd of this.spec.commands) {
        this.s.step++;
        this.currentKind = cmd.kind;
        this.note(showCommand(cmd));
        this.beginStep();
        await this.clearOfExpiry(cmd);
        const effective = await this.exec(cmd);
        bump(effective ? this.stats.kinds : this.stats.noops, cmd.kind);
        this.stats.steps++;
        await this.endStep();
      }
      // The portal comes back at the end, so the last state is checked connected.
      if (this.s.portal.partitioned) {
        this.s.step++;
        this.currentKind = 'portalDisconnect';
        this.note('final reconnect');
        this.beginStep();
        await this.reconnect(undefined);
        await this.endStep();
      }
    } finally {
      await this.s.stop();
    }
  }

  // --- Commands ------------------------------------------------------------------------------

  private async exec(cmd: Command): Promise<boolean> {
    switch (cmd.kind) {
      case 'authorize':
        return this.authorize(cmd.client, cmd.resource, cmd.ttlS);
      case 'revoke':
        return this.revoke(cmd.client, cmd.pick);
      case 'updateFilters':
        return this.updateFilters(cmd.resource, cmd.filters);
      case 'expire':
        return this.expire(cmd.pick);
      case 'reinitFewer':
        return this.reinitFewer(cmd.keep);
      case 'relayLoss':
        return this.relayLoss(cmd.pick, cmd.announce);
      case 'newRelay':
        return this.newRelay();
      case 'clientRoam':
        return this.roam(cmd.client);
      case 'idle6min':
        await this.run(6 * 60_000);
        return true;
      case 'portalDisconnect':
        if (this.s.portal.partitioned) {
          await this.reconnect(undefined);
          return true;
        }
        this.s.portal.partitioned = true;
        bump(this.stats.outcomes, 'portal.partitioned');
        await this.run(20_000);
        return true;
      case 'send':
        return this.send(cmd);
      case 'dnsQuery':
        return this.dnsQuery(cmd);
      case 'assignedIpsRepeat':
        return this.assignedIpsCommand(cmd.client, cmd.domain, 'repeat', 0);
      case 'assignedIpsRenumber':
        return this.assignedIpsCommand(cmd.client, cmd.domain, cmd.mode, cmd.other);
      case 'malformed':
        return this.malformed(cmd.client, cmd.variant, cmd.cut, cmd.bytes);
      case 'goodbye':
        return this.goodbye(cmd.client);
      case 'resourceInitiated':
        return this.resourceInitiated(cmd);
    }
  }

  private clientJson(c: SimClient) {
    return {
      id: c.id,
      public_key: Buffer.from(c.publicKey).toString('base64'),
      preshared_key: Buffer.from(c.psk).toString('base64'),
      ipv4: showIp(hex(c.v4)),
      ipv6: showIp(hex(c.v6)),
    };
  }

  private relaysKnownToGateway(): boolean {
    return this.s.control.relays.length > 0;
  }

  /**
   * `authorize_flow` for client `c` and resource `r` (the portal's current filters), as the portal
   * sends it when the client asks for a connection. A client whose gateway connection is new
   * starts a fresh connection of its own. Returns whether the gateway took it.
   */
  private async flow(c: number, r: ResourceKey, expiresAtMs: number): Promise<boolean> {
    const client = this.s.clients[c]!;
    const wasSupervised = this.gw.supervisedClients().includes(client.id);
    const ref = this.s.portal.nextRef();
    const delivered = this.s.portal.push('authorize_flow', {
      ref,
      resource: resourceJson(r, this.model.portalFilters.get(r)!),
      client: this.clientJson(client),
      client_ice_credentials: client.clientIce,
      gateway_ice_credentials: client.gatewayIce,
      expires_at: Math.floor(expiresAtMs / 1000),
    });
    if (!delivered) {
      bump(this.stats.outcomes, 'lost-in-partition');
      return false;
    }
    if (!this.relaysKnownToGateway()) {
      // §9.2 step 1: no TURN server known: no reply; the gateway asks for a fresh portal connection.
      if (this.s.portal.authorizedRefs.has(ref))
        this.fail(`flow_authorized for ${ref} although no relay is known`);
      this.expectedReconnects++;
      bump(this.stats.outcomes, 'flow.refused-no-relays');
      return false;
    }
    if (!this.s.portal.authorizedRefs.has(ref))
      this.fail(`no flow_authorized for ${ref} (client ${c}, ${r})`);
    this.model.authorize(c, r, Math.floor(expiresAtMs / 1000) * 1000);
    if (!wasSupervised) {
      this.model.routerClientReset(c);
      this.stubs[c]!.active.clear();
      this.startClient(c);
      this.note(`client ${c}: new connection`);
    }
    await this.run(3_000, () => this.isUp(c));
    return true;
  }

  private async authorize(c: number, r: ResourceKey, ttlS: number): Promise<boolean> {
    const existing = this.model.clients[c]!.grants.get(r);
    // Re-authorizing with a shorter lifetime than what is left would need a model of "max";
    // the portal sends the longest expiry of the pair's flows (§9.1 step 3), so keep the later one.
    const expiresAtMs = Math.max(this.s.clock.wallNow() + ttlS * 1000, existing?.expiresAtMs ?? 0);
    return this.flow(c, r, expiresAtMs);
  }

  private grantsList(): { client: number; resource: ResourceKey; expiresAtMs: number }[] {
    const out: { client: number; resource: ResourceKey; expiresAtMs: number }[] = [];
    this.model.clients.forEach((m, client) => {
      for (const [resource, g] of m.grants) out.push({ client, resource, expiresAtMs: g.expiresAtMs });
    });
    return out;
  }

  private async revoke(c: number, pick: number): Promise<boolean> {
    const keys = [...this.model.clients[c]!.grants.keys()];
    if (keys.length === 0) return false;
    const r = keys[pick % keys.length]!;
    const deliverable = this.goodbyeDeliverable(c);
    if (!this.s.portal.push('reject_access', { client_id: CLIENT_IDS[c], resource_id: RESOURCES[r].id })) {
      bump(this.stats.outcomes, 'lost-in-partition');
      return true;
    }
    if (this.model.reject(c, r)) this.expectGoodbye(c, deliverable);
    await this.run(200);
    return true;
  }

  private async updateFilters(r: ResourceKey, choice: number): Promise<boolean> {
    const filters = FILTER_CHOICES[choice]!;
    const delivered = this.s.portal.push('resource_updated', resourceJson(r, filters));
    if (!delivered) bump(this.stats.outcomes, 'lost-in-partition');
    this.model.updateFilters(r, filters, delivered);
    await this.run(200);
    return true;
  }

  private async expire(pick: number): Promise<boolean> {
    const all = this.grantsList();
    if (all.length === 0) return false;
    const g = all[pick % all.length]!;
    const at = Math.ceil((this.s.clock.wallNow() + 1_000) / 1000) * 1000;
    if (at >= g.expiresAtMs) {
      // Expires by itself before then: just wait for it.
      await this.run(g.expiresAtMs - this.s.clock.wallNow() + 1_100);
      return true;
    }
    const delivered = this.s.portal.push('access_authorization_expiry_updated', {
      client_id: CLIENT_IDS[g.client],
      resource_id: RESOURCES[g.resource].id,
      expires_at: at / 1000,
    });
    if (delivered) this.model.setExpiry(g.client, g.resource, at);
    else bump(this.stats.outcomes, 'lost-in-partition');
    await this.run(at - this.s.clock.wallNow() + 1_100);
    return true;
  }

  /** The portal comes back with an `init` listing `keep` (all live grants when undefined). */
  private async reconnect(keep: ReturnType<SimCase['grantsList']> | undefined): Promise<void> {
    this.s.portal.partitioned = false;
    const listed = keep ?? this.grantsList();
    const deliverable = this.s.clients.map((_, i) => this.goodbyeDeliverable(i));
    const alive = this.s.relays.filter((r) => r.alive);
    this.s.portal.push(
      'init',
      this.s.portal.initPayload(
        alive,
        listed.map((g) => ({
          clientId: CLIENT_IDS[g.client]!,
          resourceId: RESOURCES[g.resource].id,
          expiresAtMs: g.expiresAtMs,
        })),
      ),
    );
    // Expiry goes to whole seconds on the wire.
    const removed = this.model.init(
      listed.map((g) => ({ ...g, expiresAtMs: Math.floor(g.expiresAtMs / 1000) * 1000 })),
    );
    for (const c of removed) this.expectGoodbye(c, deliverable[c]!);
    bump(this.stats.outcomes, 'portal.reconnected');
    await this.run(1_000);
  }

  private async reinitFewer(keepMask: number): Promise<boolean> {
    const all = this.grantsList();
    let keep = all.filter((_, i) => (keepMask >> i) & 1);
    if (keep.length === all.length && all.length > 0) keep = keep.slice(1);
    if (!this.s.portal.partitioned) {
      this.s.portal.partitioned = true;
      await this.run(10_000);
    }
    await this.reconnect(keep);
    bump(this.stats.outcomes, `reinit.revoked`, all.length - keep.length);
    return all.length > 0;
  }

  private async relayLoss(pick: number, announce: boolean): Promise<boolean> {
    const alive = this.s.relays.filter((r) => r.alive);
    if (alive.length === 0) return false;
    const r = alive[pick % alive.length]!;
    r.server.stop();
    r.alive = false;
    if (announce && !this.s.portal.partitioned) {
      this.s.portal.push(
        'relays_presence',
        this.s.portal.relaysPresence(
          [r],
          alive.filter((x) => x !== r),
        ),
      );
      bump(this.stats.outcomes, 'relay.lost-announced');
      await this.run(10_000);
    } else {
      // Nobody tells the gateway: it finds out from failing keepalives and refreshes.
      bump(this.stats.outcomes, 'relay.lost-silently');
      await this.run(60_000);
    }
    return true;
  }

  private async newRelay(): Promise<boolean> {
    const n = this.s.relays.length - 1;
    if (n >= RELAY_IDS.length) return false;
    this.s.addRelay(RELAY_IDS[n]!);
    if (
      this.s.portal.push(
        'relays_presence',
        this.s.portal.relaysPresence(
          [],
          this.s.relays.filter((x) => x.alive),
        ),
      )
    ) {
      await this.run(2_000);
    } else bump(this.stats.outcomes, 'lost-in-partition');
    return true;
  }

  private async roam(c: number): Promise<boolean> {
    const client = this.s.clients[c]!;
    client.roam();
    this.lastStart[c] = this.s.clock.now();
    this.stubs[c]!.active.clear();
    bump(this.stats.outcomes, client.relayOnly ? 'roam.relay-only' : 'roam.direct');
    // The client asks for a flow again (same keys, same ICE credentials: the gateway keeps the
    // connection and announces its candidates again, spec/snownet.md §2.11).
    const first = [...this.model.clients[c]!.grants.entries()][0];
    if (first && !this.s.portal.partitioned && this.relaysKnownToGateway())
      await this.flow(c, first[0], first[1].expiresAtMs);
    await this.run(3_000, () => this.isUp(c));
    return true;
  }

  private async goodbye(c: number): Promise<boolean> {
    const client = this.s.clients[c]!;
    if (!this.isUp(c)) return false;
    client.send(controlPacket(2, ''));
    this.model.goodbye(c);
    await this.run(200);
    return true;
  }

  // --- Packets -------------------------------------------------------------------------------

  private peerOf(c: number): SimClient {
    return this.s.clients[(c + 1) % this.s.clients.length]!;
  }

  /** The destination of a target for client `c` (undefined: a DNS name it has no proxy IPs for yet). */
  private targetAddress(c: number, t: Target): Uint8Array {
    switch (t.cat) {
      case 'cidr':
        return parseIp(CIDR_HOSTS[t.host]!)!;
      case 'internet':
        return parseIp(t.v6 ? INTERNET_HOSTS.v6 : INTERNET_HOSTS.v4)!;
      case 'nonResource': {
        const w = NON_RESOURCES[t.which]!;
        if (w === 'GW4') return GW_V4;
        if (w === 'GW6') return GW_V6;
        if (w === 'PEER4') return this.peerOf(c).v4;
        if (w === 'PEER6') return this.peerOf(c).v6;
        return parseIp(w)!;
      }
      case 'dns': {
        const p = this.stubs[c]!.proxies.get(t.domain)!;
        return parseIp((t.v6 ? p.v6 : p.v4)[t.idx]!)!;
      }
    }
  }

  private sourceAddress(c: number, v6: boolean, spoof: Spoof | null): Uint8Array {
    const me = this.s.clients[c]!;
    switch (spoof) {
      case null:
        return v6 ? me.v6 : me.v4;
      case 'peer':
        return v6 ? this.peerOf(c).v6 : this.peerOf(c).v4;
      case 'tunnel':
        return parseIp(v6 ? 'fd00:2021:1111::3:3' : '100.64.3.3')!;
      case 'external':
        return parseIp(v6 ? '2001:db8:5::5' : '203.0.113.5')!;
      case 'gateway':
        return v6 ? GW_V6 : GW_V4;
      case 'unspecified':
        return parseIp(v6 ? '::' : '0.0.0.0')!;
      case 'multicast':
        return parseIp(v6 ? 'ff02::9' : '224.0.0.9')!;
    }
  }

  private async send(original: Extract<Command, { kind: 'send' }>): Promise<boolean> {
    const cmd = this.aimed(original);
    const c = cmd.client;
    const client = this.s.clients[c]!;
    const supervised = this.gw.supervisedClients().includes(client.id);
    const hasGrants = this.model.hasGrants(c);
    if (hasGrants && !this.isUp(c)) {
      bump(this.stats.outcomes, 'send.skipped-client-down');
      return false;
    }
    if (!hasGrants && (supervised || !client.conn)) {
      bump(this.stats.outcomes, 'send.skipped-no-connection');
      return false;
    }
    // A DNS resource's proxy IPs: the client's stub has them after it asked the gateway (AssignedIps).
    if (cmd.target.cat === 'dns' && hasGrants) {
      const st = this.stubs[c]!;
      if (!st.proxies.has(cmd.target.domain))
        st.proxies.set(cmd.target.domain, proxyIps(cmd.target.domain, 0));
      if (!st.active.has(cmd.target.domain))
        await this.assign(c, cmd.target.domain, st.proxies.get(cmd.target.domain)!);
    }
    if (cmd.target.cat === 'dns' && !this.stubs[c]!.proxies.has(cmd.target.domain)) {
      this.stubs[c]!.proxies.set(cmd.target.domain, proxyIps(cmd.target.domain, 0));
    }
    const dst = this.targetAddress(c, cmd.target);
    const v6 = dst.length === 16;
    const src = this.sourceAddress(c, v6, cmd.spoof);
    const dport =
      cmd.proto === 'udp' ? UDP_PORTS[cmd.port]! : cmd.proto === 'tcp' ? TCP_PORTS[cmd.port]! : undefined;
    return this.sendPacket(cmd, c, src, dst, dport, hasGrants);
  }

  /**
   * `send` aimed at one of the client's own resources: a destination inside it and a protocol and
   * port one of its filters allows (any when it has none).
   */
  private aimed(cmd: Extract<Command, { kind: 'send' }>): Extract<Command, { kind: 'send' }> {
    const grants = [...this.model.clients[cmd.client]!.grants.entries()];
    if (grants.length === 0 || cmd.aim % 3 === 0) return cmd;
    const [key, g] = grants[cmd.aim % grants.length]!;
    const k = Math.floor(cmd.aim / 7);
    const v6 = k % 2 === 1;
    let target: Target;
    switch (key) {
      case 'LAB':
        target = { cat: 'cidr', host: 0 };
        break;
      case 'DB':
        target = { cat: 'cidr', host: 1 };
        break;
      case 'V6':
        target = { cat: 'cidr', host: 2 };
        break;
      case 'PROXYNET':
        target = { cat: 'cidr', host: 3 };
        break;
      case 'WEB':
      case 'CORP': {
        const names = DOMAINS.map((d, i) => ({ d, i })).filter((x) => x.d.resource === key);
        target = { cat: 'dns', domain: names[k % names.length]!.i, v6, idx: k % 4 };
        break;
      }
      case 'INET':
        target = { cat: 'internet', v6 };
        break;
    }
    if (g.filters.length === 0) return { ...cmd, target };
    const f = g.filters[k % g.filters.length]!;
    if (f.protocol === 'icmp') return { ...cmd, target, proto: 'icmp' };
    const ports: readonly number[] = f.protocol === 'udp' ? UDP_PORTS : TCP_PORTS;
    const inRange = ports.map((p, i) => ({ p, i })).filter((x) => x.p >= f.start && x.p <= f.end);
    if (inRange.length === 0) return { ...cmd, target, proto: f.protocol };
    return { ...cmd, target, proto: f.protocol, port: inRange[k % inRange.length]!.i };
  }

  private async sendPacket(
    cmd: Extract<Command, { kind: 'send' }>,
    c: number,
    src: Uint8Array,
    dst: Uint8Array,
    dport: number | undefined,
    hasGrants: boolean,
  ): Promise<boolean> {
    const client = this.s.clients[c]!;
    const v6 = dst.length === 16;
    const packet = buildPacket({
      src,
      dst,
      l4:
        cmd.proto === 'icmp'
          ? { kind: 'icmp', type: v6 ? 128 : 8, code: 0, rest: echoRest(cmd.sport, 1), payload: cmd.payload }
          : cmd.proto === 'udp'
            ? { kind: 'udp', srcPort: cmd.sport, dstPort: dport!, payload: cmd.payload }
            : { kind: 'tcp', srcPort: cmd.sport, dstPort: dport!, flags: TCP_SYN },
    });
    bump(this.stats.sends, `${cmd.proto}.${cmd.target.cat}${cmd.spoof ? '.spoofed' : ''}`);
    if (!hasGrants) {
      // Revoked, expired or said goodbye: the gateway has no peer for it; nothing may come out.
      this.note(`client ${c} (no authorization) sends ${cmd.proto} to ${showIp(hex(dst))}: expect nothing`);
      bump(this.stats.outcomes, 'unauthorized-client.dropped');
      client.send(packet);
      await this.run(300);
      return true;
    }
    const pred = this.model.outbound(c, {
      src,
      dst,
      proto: cmd.proto === 'icmp' ? (v6 ? 58 : 1) : cmd.proto === 'udp' ? 17 : 6,
      dport,
      isEcho: cmd.proto === 'icmp',
    });
    this.expectSend(c, cmd.proto, packet, src, dst, cmd.sport, dport, pred);
    client.send(packet);
    await this.run(300);
    return true;
  }

  /** Registers what one packet from client `c` must cause. */
  private expectSend(
    c: number,
    proto: Proto,
    packet: Uint8Array,
    src: Uint8Array,
    dst: Uint8Array,
    sport: number,
    dport: number | undefined,
    pred: Prediction,
  ): void {
    const v6 = dst.length === 16;
    const srcH = hex(src);
    const dstH = hex(dst);
    const what = `${proto} ${showIp(srcH)}:${sport} → ${showIp(dstH)}${dport !== undefined ? `:${dport}` : ''}`;
    this.note(
      `client ${c}: ${what} → ${pred.kind === 'forward' ? `forward to ${showIp(pred.realDst)}` : `${pred.code} (${pred.reason})`}`,
    );
    if (pred.kind === 'icmp') {
      bump(this.stats.outcomes, pred.code);
      this.verdicts.set(pred.reason, (this.verdicts.get(pred.reason) ?? 0) + 1);
      const suppressed = !isUnicast(src);
      if (suppressed) {
        bump(this.stats.outcomes, 'icmp-suppressed');
        return;
      }
      const type = v6 ? 1 : 3;
      const code = pred.code === 'prohibited' ? (v6 ? 1 : 13) : v6 ? 3 : 0;
      this.expect(
        c,
        `ICMP ${type}/${code} for ${what}`,
        1,
        1,
        (p) => p.icmpType === type && p.src === dstH && p.dst === srcH,
        (p) => {
          if (p.icmpCode !== code) return `code ${p.icmpCode}, expected ${code} (${pred.reason})`;
          if (p.ttl !== 20) return `TTL ${p.ttl}, expected 20`;
          if (!p.checksumsOk) return 'bad checksum';
          const quote = v6 ? packet : packet.subarray(0, 28);
          if (hex(p.payload) !== hex(quote))
            return `quote ${hex(p.payload)} is not the original ${hex(quote)}`;
          if (!v6 && (p.bytes[4] !== 0 || p.bytes[5] !== 0 || (p.bytes[6]! & 0x40) === 0))
            return 'IPv4 identification must be 0 with DF set';
          return undefined;
        },
      );
      return;
    }
    bump(this.stats.outcomes, pred.nat ? 'delivered.nat' : 'delivered');
    // At the resource: the packet, destination translated for a DNS resource, source never rewritten.
    const proxyKey = pred.nat ? `${c}|${dstH}|${this.model.clients[c]!.epoch}` : undefined;
    this.expect(
      'resource',
      `${what} at ${showIp(pred.realDst)}`,
      1,
      1,
      (p) => {
        if (p.src !== srcH || p.dst !== pred.realDst) return false;
        if (proto === 'icmp')
          return (p.icmpType === 8 || p.icmpType === 128) && (pred.nat || p.icmpId === sport);
        return p.proto === (proto === 'udp' ? 17 : 6) && p.dport === dport && (pred.nat || p.sport === sport);
      },
      (p) => {
        if (!p.checksumsOk) return 'bad checksum after NAT';
        if (p.ttl !== 64) return `TTL changed to ${p.ttl}`;
        if (proto !== 'tcp' && hex(p.payload) !== hex(readPayload(packet))) return 'payload changed';
        if (proxyKey) {
          const seen = this.mappings.get(proxyKey);
          if (seen !== undefined && seen !== p.dst)
            return `proxy ${showIp(dstH)} moved from ${showIp(seen)} to ${showIp(p.dst)} within one resolution`;
          this.mappings.set(proxyKey, p.dst);
        }
        return undefined;
      },
    );
    if (!pred.replyAllowed) {
      this.verdictGroups.push({ names: ['inbound.no-resource', 'inbound.filter.denied'], n: 1 });
      bump(this.stats.outcomes, 'reply.filtered');
      return;
    }
    // The answer, back at the client with the addresses and ports mirrored (proxy IP restored).
    const from = dstH;
    const to = srcH;
    if (proto === 'icmp') {
      const type = v6 ? 129 : 0;
      this.expect(
        c,
        `echo reply from ${showIp(from)}`,
        1,
        1,
        (p) => p.icmpType === type && p.src === from && p.dst === to && p.icmpId === sport,
        (p) =>
          !p.checksumsOk
            ? 'bad checksum'
            : hex(p.payload) !== hex(readPayload(packet))
              ? 'echo payload changed'
              : undefined,
      );
    } else if (proto === 'udp' && dport === UDP_UNREACHABLE_PORT) {
      bump(this.stats.outcomes, 'reply.port-unreachable');
      const type = v6 ? 1 : 3;
      const code = v6 ? 4 : 3;
      this.expect(
        c,
        `port unreachable from ${showIp(from)}`,
        1,
        1,
        (p) => p.icmpType === type && p.icmpCode === code && p.src === from && p.dst === to,
        (p) => {
          if (!p.checksumsOk) return 'bad checksum';
          // The quote names the packet as the client sent it (§6.5): proxy IP and inside port.
          const q = p.payload;
          const qsrc = hex(v6 ? q.subarray(8, 24) : q.subarray(12, 16));
          const qdst = hex(v6 ? q.subarray(24, 40) : q.subarray(16, 20));
          const ihl = v6 ? 40 : (q[0]! & 15) * 4;
          const qsport = (q[ihl]! << 8) | q[ihl + 1]!;
          if (qsrc !== to || qdst !== from || qsport !== sport)
            return `quote says ${showIp(qsrc)}:${qsport} → ${showIp(qdst)}, expected ${showIp(to)}:${sport} → ${showIp(from)}`;
          return undefined;
        },
      );
    } else if (proto === 'udp') {
      this.expect(
        c,
        `udp reply ${showIp(from)}:${dport} → :${sport}`,
        1,
        1,
        (p) => p.proto === 17 && p.src === from && p.dst === to && p.sport === dport && p.dport === sport,
        (p) =>
          !p.checksumsOk
            ? 'bad checksum'
            : hex(p.payload) !== hex(readPayload(packet))
              ? 'payload changed'
              : undefined,
      );
    } else {
      const flags = dport === TCP_CLOSED_PORT ? TCP_RST_ACK : TCP_SYN_ACK;
      if (flags === TCP_RST_ACK) bump(this.stats.outcomes, 'reply.rst');
      this.expect(
        c,
        `tcp ${flags === TCP_RST_ACK ? 'RST' : 'SYN-ACK'} ${showIp(from)}:${dport} → :${sport}`,
        1,
        1,
        (p) => p.proto === 6 && p.src === from && p.dst === to && p.sport === dport && p.dport === sport,
        (p) =>
          !p.checksumsOk
            ? 'bad checksum'
            : p.tcpFlags !== flags
              ? `flags 0x${p.tcpFlags?.toString(16)}`
              : undefined,
      );
    }
  }

  private async dnsQuery(cmd: Extract<Command, { kind: 'dnsQuery' }>): Promise<boolean> {
    const c = cmd.client;
    if (!this.model.hasGrants(c) || !this.isUp(c)) return false;
    const client = this.s.clients[c]!;
    const q = DNS_NAMES[cmd.name]!;
    const id = cmd.sport & 0xffff;
    const payload = dnsQuery(id, q.name, q.type);
    const src = cmd.v6 ? client.v6 : client.v4;
    const dst = cmd.v6 ? GW_V6 : GW_V4;
    const packet = buildPacket({
      src,
      dst,
      l4: { kind: 'udp', srcPort: cmd.sport, dstPort: 53535, payload },
    });
    const expected = cmd.upstream !== 'up' ? 'SERVFAIL' : q.name.startsWith('nx.') ? 'NXDOMAIN' : 'NOERROR';
    bump(this.stats.outcomes, `dns.${expected.toLowerCase()}`);
    this.note(
      `client ${c}: DNS ${q.type} ${q.name} via ${showIp(hex(dst))}:53535, upstream ${cmd.upstream} → ${expected}`,
    );
    this.expect(
      'resource',
      `DNS query to ${showIp(hex(dst))}:53535`,
      1,
      1,
      (p) => p.proto === 17 && p.dst === hex(dst) && p.dport === 53535 && p.sport === cmd.sport,
    );
    this.expect(
      c,
      `DNS ${expected} for ${q.name}`,
      1,
      1,
      (p) => p.proto === 17 && p.src === hex(dst) && p.sport === 53535 && p.dport === cmd.sport,
      (p) => {
        if (!p.checksumsOk) return 'bad checksum';
        const m = decodeDns(p.payload);
        if (!m) return 'answer is not DNS';
        if (m.id !== id) return `answer id ${m.id}, expected ${id}`;
        const rcode = (m as { rcode?: string }).rcode;
        if (rcode !== expected) return `rcode ${rcode}, expected ${expected}`;
        if (expected === 'NOERROR' && (m.answers?.length ?? 0) !== 1)
          return `${m.answers?.length} answers, expected 1`;
        return undefined;
      },
    );
    if (cmd.upstream !== 'up') this.s.ns.state = cmd.upstream;
    const served = this.s.dnsServed.length;
    client.send(packet);
    await this.run(
      cmd.upstream === 'silent' ? 6_000 : 300,
      () => this.s.dnsServed.length > served && !this.s.dnsBusy,
    );
    this.s.ns.state = 'up';
    // The selector may have dropped the server meanwhile; it must take it back.
    await this.run(70_000, () => this.gw.selectedNameserver() !== undefined);
    return true;
  }

  /** AssignedIps for name `d` with `proxies` from client `c`, and the DomainStatus it must get. */
  private async assign(c: number, d: number, proxies: { v4: string[]; v6: string[] }): Promise<void> {
    const dom = DOMAINS[d]!;
    const all = [...proxies.v4, ...proxies.v6];
    const body = JSON.stringify({ resource: RESOURCES[dom.resource].id, domain: dom.name, proxy_ips: all });
    const { statuses } = this.model.assignedIps(c, dom.resource, dom, all);
    this.note(`client ${c}: AssignedIps ${dom.name} [${proxies.v4[0]}…] → ${statuses.join(',')}`);
    for (const st of new Set(statuses)) {
      const n = statuses.filter((x) => x === st).length;
      bump(this.stats.outcomes, `domain.${st.toLowerCase()}`);
      this.expect(c, `DomainStatus ${dom.name} ${st} ×${n}`, n, n, (p) => {
        if (p.control?.type !== 1) return false;
        const o = JSON.parse(p.control.body) as { domain?: string; status?: string; resource?: string };
        return o.domain === dom.name && o.status === st && o.resource === RESOURCES[dom.resource].id;
      });
    }
    this.s.clients[c]!.send(controlPacket(0, body));
    await this.run(dom.nxdomain && statuses.length > 1 ? 8_000 : 300);
    if (statuses[0] === 'Active') this.stubs[c]!.active.add(d);
    else this.stubs[c]!.active.delete(d);
  }

  private async assignedIpsCommand(
    c: number,
    d: number,
    mode: 'repeat' | 'fresh' | 'steal',
    other: number,
  ): Promise<boolean> {
    if (!this.model.hasGrants(c) || !this.isUp(c)) return false;
    const st = this.stubs[c]!;
    if (mode === 'repeat') {
      if (!st.proxies.has(d)) st.proxies.set(d, proxyIps(d, 0));
      await this.assign(c, d, st.proxies.get(d)!);
      return true;
    }
    if (mode === 'steal') {
      // Another name's proxy IPs now stand for this name (the client renumbered after signing in again).
      const candidates = [...st.proxies.keys()].filter((x) => x !== d);
      if (candidates.length === 0) return false;
      const o = candidates[other % candidates.length]!;
      const theirs = st.proxies.get(o)!;
      st.proxies.delete(o);
      st.active.delete(o);
      st.proxies.set(d, theirs);
      bump(this.stats.outcomes, 'renumber.steal');
      await this.assign(c, d, theirs);
      return true;
    }
    const gen = (st.nextGen.get(d) ?? 0) + 1;
    if (gen > 30) return false;
    st.nextGen.set(d, gen);
    st.proxies.set(d, proxyIps(d, gen));
    bump(this.stats.outcomes, 'renumber.fresh');
    await this.assign(c, d, st.proxies.get(d)!);
    return true;
  }

  private async malformed(
    c: number,
    variant: MalformedVariant,
    cut: number,
    bytes: Uint8Array,
  ): Promise<boolean> {
    if (!this.model.hasGrants(c) || !this.isUp(c)) return false;
    const client = this.s.clients[c]!;
    const base = buildPacket({
      src: client.v4,
      dst: parseIp('172.20.0.5')!,
      l4: { kind: 'udp', srcPort: 5555, dstPort: 7, payload: bytes },
    });
    let packet: Uint8Array;
    let counter: string | readonly string[] | undefined;
    switch (variant) {
      case 'truncated':
        packet = base.slice(0, 1 + (cut % (base.length - 1)));
        counter = IP_ERROR_CODES;
        break;
      case 'badVersion':
        packet = base.slice();
        packet[0] = (packet[0]! & 0x0f) | ((cut % 2 === 0 ? 5 : 7) << 4);
        counter = 'ip.bad-version';
        break;
      case 'badChecksum':
        packet = base.slice();
        packet[10]! ^= 0x5a;
        counter = 'ipv4.bad-header-checksum';
        break;
      case 'fragment':
        packet = buildPacket({
          src: client.v4,
          dst: parseIp('172.20.0.5')!,
          ipv4Flags: 0x2000,
          l4: { kind: 'udp', srcPort: 5555, dstPort: 7, payload: bytes },
        });
        counter = 'ip.fragment';
        break;
      case 'tooLarge': {
        const extra = 1 + (cut % 4);
        packet = buildPacket({
          src: client.v4,
          dst: parseIp('172.20.0.5')!,
          l4: { kind: 'udp', srcPort: 5555, dstPort: 7, payload: new Uint8Array(1280 - 28 + extra) },
        });
        // Inside the size gate directly; through a relay the 4-byte channel header tips it over.
        counter = ['ip.too-large', 'tunnel.too-large'];
        break;
      }
      case 'garbage':
        // Not even WireGuard: straight to the gateway's socket.
        client.sendRaw(bytes);
        this.note(`client ${c}: ${bytes.length} garbage bytes to the gateway's socket`);
        await this.run(200);
        return true;
      case 'badControl':
        packet = controlPacket(0, `{"resource": ${cut}, not json`);
        counter = 'control.invalid';
        break;
      case 'unknownControl':
        packet = controlPacket(7 + (cut % 200), '{}');
        counter = 'p2p.unknown-type';
        break;
    }
    if (typeof counter === 'string') this.verdicts.set(counter, (this.verdicts.get(counter) ?? 0) + 1);
    else if (counter) this.verdictGroups.push({ names: counter, n: 1 });
    this.note(`client ${c}: malformed ${variant} (${packet.length} bytes) → dropped, counted`);
    client.send(packet);
    await this.run(200);
    return true;
  }

  /**
   * A packet from a resource (a CIDR host, the Internet, a non-resource, or the gateway host
   * itself) to a client, read from the TUN device: delivered unchanged when the client's filters
   * allow its *source* port (§4 step 9), else dropped and counted; to an address no client holds,
   * dropped (`tun.no-client`). Never an ICMP in this direction.
   */
  private async resourceInitiated(cmd: Extract<Command, { kind: 'resourceInitiated' }>): Promise<boolean> {
    const c = cmd.client;
    const client = this.s.clients[c]!;
    const sources = [
      '172.20.0.5',
      '172.20.1.10',
      'fd20::5',
      '198.51.100.7',
      '2001:db8::7',
      '10.99.0.1',
      'GW',
    ];
    // Three times in seven, a host of one of the client's own CIDR resources (its filters decide).
    const cidrs = ['LAB', 'DB', 'V6'] as const;
    const own = cidrs.filter((k) => this.model.clients[c]!.grants.has(k));
    const pick =
      cmd.from < 3 && own.length > 0
        ? sources[cidrs.indexOf(own[cmd.dport % own.length]!)]!
        : sources[cmd.from]!;
    // The family of the source decides the client address used.
    const v6 = pick === 'GW' ? cmd.dport % 2 === 1 : pick.includes(':');
    const src = pick === 'GW' ? (v6 ? GW_V6 : GW_V4) : parseIp(pick)!;
    const dst = cmd.stranger
      ? parseIp(v6 ? 'fd00:2021:1111::9:9' : '100.64.9.9')!
      : v6
        ? client.v6
        : client.v4;
    const sport =
      cmd.proto === 'udp' ? UDP_PORTS[cmd.port]! : cmd.proto === 'tcp' ? TCP_PORTS[cmd.port]! : undefined;
    const packet = buildPacket({
      src,
      dst,
      l4:
        cmd.proto === 'icmp'
          ? { kind: 'icmp', type: v6 ? 128 : 8, code: 0, rest: echoRest(cmd.dport, 7) }
          : cmd.proto === 'udp'
            ? { kind: 'udp', srcPort: sport!, dstPort: cmd.dport, payload: Uint8Array.of(1, 2, 3) }
            : { kind: 'tcp', srcPort: sport!, dstPort: cmd.dport, flags: TCP_SYN },
    });
    const known = !cmd.stranger && this.gw.router.hasClient(client.id);
    if (!cmd.stranger && this.model.hasGrants(c) && !this.isUp(c)) return false;
    const what = `${cmd.proto} ${showIp(hex(src))}${sport !== undefined ? `:${sport}` : ''} → ${showIp(hex(dst))}`;
    if (!known) {
      this.note(`resource → ${cmd.stranger ? 'nobody' : `client ${c} (no state)`}: ${what} → dropped`);
      this.verdicts.set('tun.no-client', (this.verdicts.get('tun.no-client') ?? 0) + 1);
      bump(this.stats.outcomes, 'inbound.no-client');
    } else {
      const proto = cmd.proto === 'icmp' ? (v6 ? 58 : 1) : cmd.proto === 'udp' ? 17 : 6;
      const verdict = pick === 'GW' ? 'allowed' : this.model.inbound(c, src, proto, sport);
      this.note(`resource → client ${c}: ${what} → ${verdict}`);
      bump(this.stats.outcomes, `inbound.${verdict}`);
      if (verdict === 'allowed') {
        const body = hex(packet);
        this.expect(c, `${what} (resource-initiated)`, 1, 1, (p) => hex(p.bytes) === body);
      } else this.verdicts.set(`inbound.${verdict}`, (this.verdicts.get(`inbound.${verdict}`) ?? 0) + 1);
    }
    this.s.w.tun.inject(packet);
    this.s.w.tun.deliver();
    await this.run(200);
    return true;
  }

  // --- Time ----------------------------------------------------------------------------------

  /**
   * Runs simulated time like `SimWorld.run`, but stops 1 ms before every authorization expiry to
   * note whether a Goodbye could reach the client if the expiry removes it (see `expectGoodbye`).
   */
  private async run(ms: number, until: () => boolean = () => false): Promise<void> {
    const end = this.s.clock.now() + ms;
    for (;;) {
      const now = this.s.clock.now();
      const wallOffset = this.s.clock.wallNow() - now;
      const e = this.model.nextExpiryAfter(this.s.clock.wallNow());
      const stop = e - wallOffset - 1;
      if (!(stop >= now && stop < end)) {
        // SimWorld.run settles first, then checks `until` between timer deadlines.
        await this.s.run(Math.max(0, end - now), until);
        return;
      }
      await this.s.run(stop - now, until);
      if (until()) return;
      for (let c = 0; c < this.s.clients.length; c++)
        this.goodbyeSnapshots.set(`${c}@${e}`, this.goodbyeDeliverable(c, 1_200));
      await this.s.run(Math.min(2, end - this.s.clock.now()), until);
      if (until() || this.s.clock.now() >= end) return;
    }
  }

  // --- Step bookkeeping and checks -----------------------------------------------------------

  private expect(
    where: number | 'resource',
    desc: string,
    min: number,
    max: number,
    match: (p: Seen) => boolean,
    check?: (p: Seen) => string | undefined,
  ): void {
    this.expectations.push({ where, desc, match, min, max, count: 0, ...(check ? { check } : {}) });
  }

  /**
   * A Goodbye is best-effort: it needs a session the gateway may send on right now. In the
   * Firezone timer profile an initiator stops sending on its session 10 s before it may rekey
   * (170–180 s of age, spec/snownet.md §1.6); a Goodbye then waits for a handshake, and the peer
   * is removed at once, so it is lost (as in the reference, which drops the connection too).
   */
  private expectGoodbye(c: number, required: boolean): void {
    bump(this.stats.outcomes, required ? 'goodbye' : 'goodbye.best-effort');
    this.expect(c, `Goodbye to client ${c}`, required ? 1 : 0, 1, (p) => p.control?.type === 2);
  }

  /**
   * Whether client `c` is connected and the gateway's WireGuard session with it may carry a packet
   * for the next `marginMs` (a session the gateway initiated stops sending at 170 s of age).
   */
  private goodbyeDeliverable(c: number, marginMs = 0): boolean {
    if (!this.isUp(c)) return false;
    const s = this.gw.router.wg.peerByPublicKey(this.s.clients[c]!.publicKey)?.current;
    if (!s) return false;
    const age = this.s.clock.now() - s.createdAt + marginMs;
    return (
      age < REJECT_AFTER_TIME_MS && !(s.isInitiator && age >= REJECT_AFTER_TIME_MS - KEEPALIVE_TIMEOUT_MS)
    );
  }

  private beginStep(): void {
    this.expectations = [];
    this.verdicts = new Map();
    this.verdictGroups = [];
    this.counters = this.gw.router.dropCounters();
  }

  /**
   * Whether client `c` really has a working connection: a session on its side, the gateway's
   * connection with an ICE path, and neither side's path through a relay that is gone. (The
   * connection actor's path state is not enough: it stays `selected` while ICE looks for a new
   * pair after the relay carrying the old one went away.)
   */
  isUp(c: number): boolean {
    const client = this.s.clients[c]!;
    if (!client.established || !this.gw.supervisedClients().includes(client.id)) return false;
    const path = this.gw.router.icePath(client.id);
    if (!path) return false;
    const dead = new Set(this.s.relays.filter((r) => !r.alive).map((r) => r.id));
    if (path.relay !== undefined && dead.has(path.relay)) return false;
    const to = client.conn?.path;
    const deadIps = new Set(this.s.relays.filter((r) => !r.alive).map((r) => r.address));
    return to !== undefined && !deadIps.has(showIp(hex(to.ip)));
  }

  /** Whether client `c` must be connected now: authorized, the portal reachable, a live relay known. */
  private mustBeUp(c: number): boolean {
    if (!this.model.hasGrants(c) || this.s.portal.partitioned) return false;
    const known = new Set(this.s.control.relays.map((r) => r.id as string));
    return this.s.relays.some((r) => r.alive && known.has(r.id));
  }

  /**
   * A packet step predicts from the authorizations at its start, so none may expire while it runs
   * (the 1 s sweep makes the exact moment fuzzy): if one would, time first runs past it. The
   * longest packet step is an AssignedIps for a name that does not resolve (retries over 7 s).
   */
  private async clearOfExpiry(cmd: Command): Promise<void> {
    const packetStep = [
      'send',
      'dnsQuery',
      'assignedIpsRepeat',
      'assignedIpsRenumber',
      'malformed',
      'goodbye',
    ];
    if (!packetStep.includes(cmd.kind)) return;
    const window = 10_000;
    for (let i = 0; i < 20; i++) {
      const next = this.model.nextExpiry();
      if (next > this.s.clock.wallNow() + window + 1_100) return;
      await this.run(Math.max(0, next - this.s.clock.wallNow()) + 1_100);
      await this.settleExpiry();
      await this.heal();
    }
  }

  /** Expiry: grants whose time passed are gone from the router within one 1 s sweep (§9.4). */
  private async settleExpiry(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const now = this.s.clock.wallNow();
      const next = this.model.nextExpiry();
      if (next > now) break;
      // Past due in the model: wait until the router's sweep certainly ran. Whether a Goodbye could
      // go out was noted just before the expiry (`run`), over the second the sweep may take.
      if (next > now - 1_100) await this.run(next + 1_100 - now);
      for (const c of this.model.expire(next)) {
        this.note(`client ${c}: last authorization expired`);
        this.expectGoodbye(c, this.goodbyeSnapshots.get(`${c}@${next}`) ?? false);
      }
    }
  }

  /**
   * What a Firezone client does about a connection that does not work: one the gateway dropped
   * (failed; its authorizations stay, §9.5) is asked for again at once; one the gateway still has
   * but that carries nothing is started over (fresh ICE agent and session, the same flow asked for
   * again) every 15 s, as the client's own WireGuard gives up after 15 s. Heals for up to
   * {@link HEAL_LIMIT_MS}: a dead pair of an idle connection takes 100 s to be pruned (§2.7), and
   * until then the gateway keeps sending on it.
   */
  private async heal(): Promise<void> {
    const until = this.s.clock.now() + HEAL_LIMIT_MS;
    /** When each client was first seen down here (a rekey leaves it without a session for a moment). */
    const downSince = new Map<number, number>();
    while (this.s.clock.now() < until) {
      await this.settleExpiry();
      if (this.s.portal.partitioned || !this.relaysKnownToGateway()) return;
      const pending = this.s.clients.map((_, c) => c).filter((c) => this.mustBeUp(c) && !this.isUp(c));
      if (pending.length === 0) return;
      for (const c of pending) {
        if (!downSince.has(c)) downSince.set(c, this.s.clock.now());
        const client = this.s.clients[c]!;
        // The flow asked for again: the authorization that lasts longest (never one about to end).
        const grant = [...this.model.clients[c]!.grants.entries()].sort(
          (a, b) => b[1].expiresAtMs - a[1].expiresAtMs,
        )[0];
        if (!grant || grant[1].expiresAtMs < this.s.clock.wallNow() + 5_000) continue;
        if (!this.gw.supervisedClients().includes(client.id)) {
          bump(this.stats.outcomes, 'connection.failed-and-renewed');
          bump(
            this.stats.outcomes,
            `renewed-after.${this.currentKind}${client.relayOnly ? '.relay-only' : ''}`,
          );
          const why = this.s.removals.filter((r) => r.client === client.id).at(-1)?.reason ?? '?';
          this.note(`client ${c}: the gateway dropped its connection (${why}); asking for a flow again`);
          this.model.routerClientReset(c);
          this.stubs[c]!.active.clear();
          await this.flow(c, grant[0], grant[1].expiresAtMs);
        } else if (
          this.s.clock.now() - (downSince.get(c) ?? this.s.clock.now()) >= 15_000 &&
          this.s.clock.now() - (this.lastStart[c] ?? 0) >= 15_000
        ) {
          bump(this.stats.outcomes, 'connection.client-restarted');
          bump(
            this.stats.outcomes,
            `restart-after.${this.currentKind}${this.s.clients[c]!.relayOnly ? '.relay-only' : ''}`,
          );
          this.note(`client ${c}: connection carries nothing; starting over`);
          this.startClient(c);
          await this.flow(c, grant[0], grant[1].expiresAtMs);
        }
      }
      await this.run(5_000, () => this.s.clients.every((_, c) => !this.mustBeUp(c) || this.isUp(c)));
    }
  }

  private startClient(c: number): void {
    this.s.clients[c]!.start();
    this.lastStart[c] = this.s.clock.now();
  }

  private async endStep(): Promise<void> {
    await this.settleExpiry();
    const healStart = this.s.clock.now();
    await this.heal();
    const healed = this.s.clock.now() - healStart;
    if (healed > 0) {
      const k = `heal-ms.max.${this.currentKind}`;
      this.stats.outcomes[k] = Math.max(this.stats.outcomes[k] ?? 0, healed);
    }
    await this.settleExpiry();
    const problems: string[] = [];
    // 1. Packets at the resource and at the clients: expected ones exactly once, nothing else.
    const resource = this.s.atResource.slice(this.resourceCursor);
    this.resourceCursor = this.s.atResource.length;
    this.matchAll(
      'resource',
      resource.map((r) => r.seen),
      problems,
    );
    this.s.clients.forEach((client, i) => {
      const got = client.received.slice(this.receivedCursor[i]).map((r) => r.seen);
      this.receivedCursor[i] = client.received.length;
      this.matchAll(i, got, problems);
    });
    for (const e of this.expectations)
      if (e.count < e.min)
        problems.push(
          `missing at ${e.where === 'resource' ? 'the resource' : `client ${e.where}`}: ${e.desc} (${e.count} of ${e.min})`,
        );
    if (this.s.unparseableAtResource.length > 0)
      problems.push('the gateway wrote an unparseable packet to the TUN device');
    if (this.s.unparseableAtClients.length > 0) problems.push('a client received an unparseable packet');
    // 2. Authorization state: nobody without authorizations has state in the gateway.
    const supervised = this.gw.supervisedClients();
    this.s.clients.forEach((client, c) => {
      const has = supervised.includes(client.id) || this.gw.router.hasClient(client.id);
      if (!this.model.hasGrants(c) && has)
        problems.push(`client ${c} has no authorization left but the gateway still has state for it`);
      if (this.model.hasGrants(c)) {
        const gwGrants = this.gw.router
          .grantsOf(client.id)
          .map((g) => g.resource.id)
          .sort();
        const want = [...this.model.clients[c]!.grants.keys()].map((k) => RESOURCES[k].id as string).sort();
        if (has && JSON.stringify(gwGrants) !== JSON.stringify(want))
          problems.push(`client ${c}: router grants ${gwGrants} but the model expects ${want}`);
      }
      if (this.mustBeUp(c) && !this.isUp(c))
        problems.push(
          `client ${c} is authorized, the portal is reachable and a relay is alive, but it is not connected (client established ${client.established}, gateway ${this.gw.clientState(client.id)} / path ${this.gw.pathState(client.id)})`,
        );
    });
    // 3. Verdict counters: exactly what the model predicted.
    const now = this.gw.router.dropCounters();
    const delta = (k: string) => (now[k] ?? 0) - (this.counters[k] ?? 0);
    const grouped = new Set(this.verdictGroups.flatMap((g) => g.names));
    for (const k of VERDICT_COUNTERS) {
      if (grouped.has(k)) continue;
      const want = this.verdicts.get(k) ?? 0;
      if (delta(k) !== want)
        problems.push(`drop counter ${k} moved by ${delta(k)}, the model expected ${want}`);
    }
    for (const g of this.verdictGroups) {
      const got = g.names.reduce((n, k) => n + delta(k), 0);
      const want = this.verdictGroups.filter((x) => x.names === g.names).reduce((n, x) => n + x.n, 0);
      if (got !== want)
        problems.push(
          `drop counters ${g.names.length > 3 ? 'ip.*' : g.names.join('|')} moved by ${got}, expected ${want}`,
        );
    }
    // 4. No error-level log line; the control plane never gave up.
    for (const l of this.s.logs.slice(this.logCursor))
      if (l.level === 'error')
        problems.push(`error logged by the ${l.source}: ${l.msg} ${JSON.stringify(l.obj)}`);
    this.logCursor = this.s.logs.length;
    if (this.s.portal.fatal.length > 0) problems.push(`fatal: ${this.s.portal.fatal.join('; ')}`);
    // 5. What the gateway told the portal: only these events, each flow answered once.
    for (const m of this.s.portal.received.slice(this.portalCursor)) {
      if (!PORTAL_EVENTS_FROM_GATEWAY.has(m.event))
        problems.push(`unexpected gateway → portal event ${m.event}`);
      if (m.event === 'flow_authorized') {
        const ref = (m.payload as { ref: string }).ref;
        if (this.answeredRefs.has(ref)) problems.push(`flow_authorized twice for ${ref}`);
        this.answeredRefs.add(ref);
      }
    }
    this.portalCursor = this.s.portal.received.length;
    if (this.s.portal.reconnectRequests !== this.expectedReconnects)
      problems.push(
        `the control plane asked for ${this.s.portal.reconnectRequests} portal reconnects, expected ${this.expectedReconnects} (one per flow refused for lack of relays)`,
      );
    // 6. The nameserver stays selected (the DNS checks rely on it).
    if (this.gw.selectedNameserver() === undefined) problems.push('no nameserver selected');
    if (problems.length > 0)
      this.fail(`step ${this.s.step} (${this.currentKind}):\n  - ${problems.join('\n  - ')}`);
  }

  private matchAll(where: number | 'resource', got: readonly Seen[], problems: string[]): void {
    for (const p of got) {
      const e = this.expectations.find((x) => x.where === where && x.count < x.max && x.match(p));
      if (!e) {
        problems.push(
          `unexpected packet at ${where === 'resource' ? 'the resource' : `client ${where}`}: ${describe(p)}`,
        );
        continue;
      }
      e.count++;
      const problem = e.check?.(p);
      if (problem) problems.push(`${e.desc}: ${problem} (${describe(p)})`);
    }
  }
}

/** A p2p control packet (IPv6 `::` → `::`, next header 255, hop limit 0, §6.1). */
function controlPacket(type: number, body: string): Uint8Array {
  const json = new TextEncoder().encode(body);
  const payload = new Uint8Array(8 + json.length);
  payload[0] = type;
  payload.set(json, 8);
  return buildPacket({
    src: new Uint8Array(16),
    dst: new Uint8Array(16),
    ttl: 0,
    l4: { kind: 'raw', protocol: 255, payload },
  });
}

/** The L4 payload of a packet we built (UDP after 8 bytes, ICMP after 8). */
function readPayload(packet: Uint8Array): Uint8Array {
  const v6 = packet[0]! >> 4 === 6;
  const l4 = v6 ? 40 : (packet[0]! & 15) * 4;
  return packet.subarray(l4 + 8);
}

function isUnicast(src: Uint8Array): boolean {
  if (src.length === 4) return src[0]! < 224 && !src.every((b) => b === 0);
  return src[0] !== 0xff && !src.every((b) => b === 0);
}

export type { ResourceKey };
