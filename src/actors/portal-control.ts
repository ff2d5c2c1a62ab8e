import type { TunConfig } from '../io/tun.js';
import type { ClientIce } from '../machines/client-connection.machine.js';
import type { ClientSpec } from '../router/router.js';
import type { ClientId, RelayId, ResourceId } from '../wire/ids.js';
import { formatIp } from '../wire/ip/address.js';
import { formatPrefix } from '../wire/ip/prefix.js';
import { FIREZONE_FWMARK, FIREZONE_TABLE } from '../wire/netlink/constants.js';
import { type Grant, type Resource, TUNNEL_RANGE_V4, TUNNEL_RANGE_V6 } from '../wire/policy.js';
import type { PortalMessage, Relay } from '../wire/portal/types.js';
import type { TurnRelayConfig } from '../wire/turn/client.js';
import { FIREZONE_PROFILE } from '../wire/wireguard/constants.js';
import type { Clock } from './clock.js';
import type { Gateway, GatewayLog } from './gateway.js';

/**
 * The portal's side of the gateway (`spec/gateway-dataplane.md` §9, `spec/portal-protocol.md`
 * §2–§3): applies every portal message to the actor system and answers the ones that want an
 * answer. It keeps the authorizations the portal granted, per client, as the portal sees them;
 * each change becomes one `upsertClient` / `revokeClient` on the gateway, whose client actors
 * install it in the router. Expiry itself runs in the router's 1-second sweep; expired grants are
 * pruned here before any message touches the client, so a later message never revives them.
 *
 * Deliberate differences from the reference (2025-09):
 * - `init` treats `authorizations` as the complete snapshot it is: a client absent from it loses
 *   everything (the reference's later fix). A client left without resources is removed at once
 *   (goodbye) instead of at the next 1-second sweep.
 * - Re-authorizing a resource refreshes its expiry (the reference's later fix), not just filters.
 * - `authorize_flow` before any `init` is refused (logged, no reply) instead of replying
 *   `flow_authorized` for an authorization that was silently not stored.
 *
 * ICE and relays (`spec/snownet.md` §2.5, §3.6): the relays of `init` and `relays_presence` go
 * to the gateway's relay-allocation actors; the client's candidates go to its connection's ICE
 * agent, and the gateway's own candidates come back here to be broadcast to the client. A
 * connection that fails (ICE or WireGuard gave up) keeps its authorizations here, so the client
 * can connect again with a new flow.
 */

/** What the control plane needs from the gateway runtime. */
export type PortalControlGateway = Pick<
  Gateway,
  'setInterface' | 'upsertClient' | 'revokeClient' | 'clientEvent' | 'setupNat' | 'updateRelays'
>;

export interface PortalControlDeps {
  readonly gateway: PortalControlGateway;
  /** Applies the interface configuration of `init` to the TUN device. */
  readonly configureTun: (cfg: TunConfig) => Promise<void>;
  /** Sends a gateway → portal message (queued by the session until joined). */
  readonly send: (event: string, payload: unknown) => void;
  /** Asks the session for a fresh connection (no relays known, §2.2). */
  readonly reconnect: () => void;
  /** Resolves a DNS resource's name (A and AAAA) for the legacy flow; rejects on failure. */
  readonly resolve: (name: string) => Promise<Uint8Array[]>;
  /** The TUN device carries the gateway's tunnel addresses of `init` now (the DNS server binds to them). */
  readonly interfaceReady?: (addresses: readonly string[]) => void;
  /** Called when the gateway cannot go on (the TUN device refused the `init` configuration). */
  readonly fatal: (reason: string) => void;
  readonly random: (n: number) => Uint8Array;
  /** The actor system's clock: wall time for expiry, timers for the resolution timeout. */
  readonly clock: Pick<Clock, 'setTimeout' | 'clearTimeout' | 'wallNow'>;
  readonly log: GatewayLog & { debug?(obj: object, msg: string): void };
}

/** DNS resolution for the legacy flow gives up after this (below the 20 s handshake timeout). */
export const LEGACY_RESOLVE_TIMEOUT_MS = 10_000;
/** Further requests fail at once (logged) while this many resolutions run, as the reference's cap. */
export const MAX_CONCURRENT_RESOLUTIONS = 1_000;

interface PortalClientState {
  spec: ClientSpec;
  ice: ClientIce;
  grants: Map<ResourceId, Grant>;
}

/** The TUN routes of a portal gateway: every client address (§10.2). */
export const PORTAL_TUN_ROUTES: readonly string[] = [
  formatPrefix(TUNNEL_RANGE_V4),
  formatPrefix(TUNNEL_RANGE_V6),
];

export class PortalControlPlane {
  private readonly deps: PortalControlDeps;
  private iface: { ipv4: Uint8Array; ipv6: Uint8Array } | undefined;
  private readonly relayMap = new Map<RelayId, Relay>();
  private readonly clients = new Map<ClientId, PortalClientState>();
  private tunChain: Promise<void> = Promise.resolve();
  /** DNS resolutions of the legacy flow in flight. */
  private resolving = 0;
  /** `init`s applied so far. */
  inits = 0;

  constructor(deps: PortalControlDeps) {
    this.deps = deps;
  }

  /** The relays the portal handed us (for the relay layer). */
  get relays(): readonly Relay[] {
    return [...this.relayMap.values()];
  }

  /** Authorized resources per client, as the portal granted them (for tests and inspection). */
  authorizations(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [id, c] of this.clients) out[id] = [...c.grants.keys()].sort();
    return out;
  }

  /**
   * The gateway removed a client on its own. Expiry and goodbye end its authorizations; a failed
   * connection does not (the client reconnects with the same authorizations, §2.9).
   */
  clientRemoved(id: ClientId, reason?: string): void {
    if (reason !== 'failed') this.clients.delete(id);
  }

  /** Our ICE candidates for a client's connection, added or withdrawn: tell the client (§2.5). */
  localCandidates(id: ClientId, added: readonly string[], removed: readonly string[]): void {
    if (added.length > 0) this.deps.send('broadcast_ice_candidates', { client_ids: [id], candidates: added });
    if (removed.length > 0) {
      this.deps.send('broadcast_invalidated_ice_candidates', { client_ids: [id], candidates: removed });
    }
  }

  /** Resolves once every TUN configuration started so far has been applied (or has failed). */
  settled(): Promise<void> {
    return this.tunChain;
  }

  handle(msg: PortalMessage, skipped: readonly string[] = []): void {
    if (skipped.length > 0)
      this.deps.log.warn({ event: msg.type, skipped }, 'Skipped unsupported entries of a portal message');
    switch (msg.type) {
      case 'init':
        this.init(msg);
        return;
      case 'authorize_flow':
        this.authorizeFlow(msg);
        return;
      case 'request_connection':
        void this.requestConnection(msg);
        return;
      case 'allow_access':
        void this.allowAccess(msg);
        return;
      case 'reject_access':
        this.rejectAccess(msg.clientId, msg.resourceId);
        return;
      case 'resource_updated':
        this.resourceUpdated(msg.resource);
        return;
      case 'access_authorization_expiry_updated':
        this.expiryUpdated(msg.clientId, msg.resourceId, msg.expiresAtMs);
        return;
      case 'ice_candidates':
      case 'invalidate_ice_candidates': {
        if (!this.clients.has(msg.clientId)) {
          this.deps.log.debug?.({ client: msg.clientId }, 'ICE candidates for an unknown connection ignored');
          return;
        }
        const type = msg.type === 'ice_candidates' ? 'ice.candidates' : 'ice.candidates-invalidated';
        this.deps.gateway.clientEvent(msg.clientId, { type, candidates: msg.candidates });
        return;
      }
      case 'relays_presence':
        for (const id of msg.disconnectedIds) this.relayMap.delete(id);
        this.addRelays(msg.connected);
        void this.deps.gateway.updateRelays(msg.connected.map(turnRelay), msg.disconnectedIds);
        this.deps.log.info(
          {
            disconnected: msg.disconnectedIds.length,
            connected: msg.connected.length,
            relays: this.relayMap.size,
          },
          'Relays updated',
        );
        return;
    }
  }

  private init(msg: Extract<PortalMessage, { type: 'init' }>): void {
    this.inits++;
    // 1. Relays: added or replaced, never removed by `init` (§2.1 step 2); the others are poked.
    this.addRelays(msg.relays);
    void this.deps.gateway.updateRelays(msg.relays.map(turnRelay), []);
    // 2. The gateway's tunnel addresses: needed before any access can be granted.
    this.iface = msg.interface;
    this.deps.gateway.setInterface(msg.interface.ipv4, msg.interface.ipv6);
    // 3. Resync: the list is the complete set of live authorizations.
    const listed = new Map<ClientId, Map<ResourceId, number>>();
    for (const a of msg.authorizations) {
      const m = listed.get(a.clientId) ?? new Map<ResourceId, number>();
      m.set(a.resourceId, a.expiresAtMs);
      listed.set(a.clientId, m);
    }
    let revokedResources = 0;
    let revokedClients = 0;
    for (const [id, state] of [...this.clients]) {
      this.prune(state);
      const keep = listed.get(id);
      let changed = false;
      for (const [rid, grant] of [...state.grants]) {
        if (keep?.has(rid)) {
          // 4. Listed pairs take the portal's expiry.
          const expiresAtMs = keep.get(rid);
          if (grant.expiresAtMs !== expiresAtMs) {
            state.grants.set(rid, { resource: grant.resource, expiresAtMs });
            changed = true;
          }
          continue;
        }
        this.deps.log.info({ client: id, resource: rid }, 'Revoking resource authorization');
        state.grants.delete(rid);
        revokedResources++;
        changed = true;
      }
      if (state.grants.size === 0) {
        revokedClients++;
        this.revoke(id);
      } else if (changed) this.install(id, state);
    }
    this.deps.log.info(
      {
        first: this.inits === 1,
        ipv4: formatIp(msg.interface.ipv4),
        ipv6: formatIp(msg.interface.ipv6),
        relays: this.relayMap.size,
        authorizations: msg.authorizations.length,
        revokedResources,
        revokedClients,
        ...(msg.accountSlug ? { account: msg.accountSlug } : {}),
      },
      'Applied init',
    );
    // 5. The TUN device; a failure is fatal (exit 1), as for the reference.
    const cfg: TunConfig = {
      ipv4: formatIp(msg.interface.ipv4),
      ipv6: formatIp(msg.interface.ipv6),
      routes: PORTAL_TUN_ROUTES,
      table: FIREZONE_TABLE,
      fwmarkRule: { mark: FIREZONE_FWMARK, table: FIREZONE_TABLE },
    };
    this.tunChain = this.tunChain.then(
      () =>
        this.deps.configureTun(cfg).then(
          () => {
            this.deps.log.info({ ipv4: cfg.ipv4, ipv6: cfg.ipv6 }, 'TUN device configured');
            this.deps.interfaceReady?.([cfg.ipv4, cfg.ipv6].filter((a): a is string => a !== undefined));
          },
          (e: unknown) => this.deps.fatal(`configuring the TUN device failed: ${(e as Error).message}`),
        ),
      () => undefined,
    );
  }

  private authorizeFlow(msg: Extract<PortalMessage, { type: 'authorize_flow' }>): void {
    const log = { client: msg.client.id, resource: msg.resource.id };
    if (!this.canConnect(msg.type, log)) return;
    const spec = firezoneClient(msg.client.id, msg.client);
    const ice: ClientIce = { local: msg.gatewayIce, remote: msg.clientIce };
    if (!this.grant(spec, ice, msg.resource, msg.expiresAtMs)) {
      this.deps.log.warn(log, 'Client could not be installed: no reply');
      return;
    }
    this.deps.log.info({ ...log, expiresAtMs: msg.expiresAtMs ?? null }, 'Flow authorized');
    this.deps.send('flow_authorized', { ref: msg.ref });
  }

  private async requestConnection(
    msg: Extract<PortalMessage, { type: 'request_connection' }>,
  ): Promise<void> {
    const log = { client: msg.clientId, resource: msg.resource.id };
    let realAddrs: Uint8Array[] = [];
    if (msg.domain) {
      try {
        realAddrs = await this.resolveWithTimeout(msg.domain.name);
      } catch (e) {
        // §2.3 step 1: no reply at all; the client times out.
        this.deps.log.warn(
          { ...log, domain: msg.domain.name, err: (e as Error).message },
          'Resolving failed: connection not accepted',
        );
        return;
      }
    }
    if (!this.canConnect(msg.type, log)) return;
    const spec = firezoneClient(msg.clientId, msg.peer);
    // Legacy: every request replaces the connection (fresh local ICE credentials make it new);
    // the client's other authorizations stay.
    const local = this.iceCredentials();
    if (!this.grant(spec, { local, remote: msg.clientIce }, msg.resource, msg.expiresAtMs)) {
      this.deps.log.warn(log, 'Client could not be installed: no reply');
      return;
    }
    if (msg.domain && !this.nat(msg.clientId, msg.resource, msg.domain, realAddrs)) {
      // §2.3 step 3: close the new connection (goodbye) and send nothing.
      this.deps.log.warn(
        { ...log, domain: msg.domain.name },
        'DNS-resource NAT refused: connection closed, no reply',
      );
      this.dropResource(msg.clientId, msg.resource.id);
      return;
    }
    this.deps.log.info(log, 'Connection accepted (legacy)');
    this.deps.send('connection_ready', {
      ref: msg.ref,
      gateway_payload: { ConnectionAccepted: { ice_parameters: local } },
    });
  }

  /**
   * Whether a connection can be made now: only after `init` (the gateway's tunnel addresses) and
   * with a TURN server known (§2.2 step 2: otherwise reconnect for a fresh `init`, no reply).
   */
  private canConnect(event: string, log: object): boolean {
    if (!this.iface) {
      this.deps.log.warn({ ...log, event }, 'No init yet: not accepted, no reply');
      return false;
    }
    if (this.relayMap.size === 0) {
      this.deps.log.warn({ ...log, event }, 'No relays known: reconnecting to the portal, no reply');
      this.deps.reconnect();
      return false;
    }
    return true;
  }

  private async allowAccess(msg: Extract<PortalMessage, { type: 'allow_access' }>): Promise<void> {
    const log = { client: msg.clientId, resource: msg.resource.id };
    let realAddrs: Uint8Array[] = [];
    if (msg.domain) {
      try {
        realAddrs = await this.resolveWithTimeout(msg.domain.name);
      } catch (e) {
        this.deps.log.debug?.(
          { ...log, domain: msg.domain.name, err: (e as Error).message },
          'Resolving failed; granting without addresses',
        );
      }
    }
    const state = this.clients.get(msg.clientId);
    if (!state) {
      // No connection to attach the grant to: the client asks again with request_connection.
      this.deps.log.warn(log, 'allow_access for a client without a connection ignored');
      return;
    }
    this.grant(state.spec, state.ice, msg.resource, msg.expiresAtMs);
    if (msg.domain && !this.nat(msg.clientId, msg.resource, msg.domain, realAddrs)) {
      this.deps.log.warn({ ...log, domain: msg.domain.name }, 'DNS-resource NAT refused');
      return;
    }
    this.deps.log.info(log, 'Access allowed (legacy)');
  }

  private rejectAccess(id: ClientId, resourceId: ResourceId): void {
    if (!this.clients.get(id)?.grants.has(resourceId)) return;
    this.deps.log.info({ client: id, resource: resourceId }, 'Access rejected');
    this.dropResource(id, resourceId);
  }

  private resourceUpdated(resource: Resource): void {
    let updated = 0;
    for (const [id, state] of this.clients) {
      this.prune(state);
      const grant = state.grants.get(resource.id);
      if (!grant) continue;
      if (grant.resource.type !== resource.type) {
        this.deps.log.error(
          { client: id, resource: resource.id, from: grant.resource.type, to: resource.type },
          'resource_updated changes the type: ignored',
        );
        continue;
      }
      // Filters only (§2.8): the address and name stay what was authorized.
      const next = withFilters(grant.resource, resource);
      state.grants.set(resource.id, { resource: next, expiresAtMs: grant.expiresAtMs });
      this.install(id, state);
      updated++;
    }
    this.deps.log.info({ resource: resource.id, clients: updated }, 'Resource updated');
  }

  private expiryUpdated(id: ClientId, resourceId: ResourceId, expiresAtMs: number): void {
    const state = this.clients.get(id);
    if (!state) {
      this.deps.log.warn({ client: id, resource: resourceId }, 'Expiry update for an unknown client ignored');
      return;
    }
    this.prune(state);
    const grant = state.grants.get(resourceId);
    if (!grant) {
      this.deps.log.debug?.(
        { client: id, resource: resourceId },
        'Expiry update for an unknown resource ignored',
      );
      return;
    }
    state.grants.set(resourceId, { resource: grant.resource, expiresAtMs });
    this.install(id, state);
    this.deps.log.info({ client: id, resource: resourceId, expiresAtMs }, 'Authorization expiry updated');
  }

  /** Adds (or refreshes) one grant, creating or replacing the client's connection as needed. */
  private grant(
    spec: ClientSpec,
    ice: ClientIce,
    resource: Resource,
    expiresAtMs: number | undefined,
  ): boolean {
    let state = this.clients.get(spec.id);
    if (!state) {
      state = { spec, ice, grants: new Map() };
      this.clients.set(spec.id, state);
    } else {
      this.prune(state);
      state.spec = spec;
      state.ice = ice;
    }
    state.grants.set(resource.id, { resource, expiresAtMs });
    return this.install(spec.id, state);
  }

  private dropResource(id: ClientId, resourceId: ResourceId): void {
    const state = this.clients.get(id);
    if (!state) return;
    state.grants.delete(resourceId);
    this.prune(state);
    if (state.grants.size === 0) this.revoke(id);
    else this.install(id, state);
  }

  private install(id: ClientId, state: PortalClientState): boolean {
    const ok = this.deps.gateway.upsertClient({
      spec: state.spec,
      grants: [...state.grants.values()],
      ice: state.ice,
    });
    // The actor layer logged why (a failing client actor is cleaned up and forgotten).
    if (!ok) this.clients.delete(id);
    return ok;
  }

  private revoke(id: ClientId): void {
    this.clients.delete(id);
    this.deps.gateway.revokeClient(id);
  }

  /** Drops grants whose expiry has passed (the router's sweep has removed them already). */
  private prune(state: PortalClientState): void {
    const now = this.deps.clock.wallNow();
    for (const [rid, g] of state.grants)
      if (g.expiresAtMs !== undefined && g.expiresAtMs <= now) state.grants.delete(rid);
  }

  private nat(
    id: ClientId,
    resource: Resource,
    domain: { name: string; proxyIps: readonly Uint8Array[] },
    realAddrs: readonly Uint8Array[],
  ): boolean {
    if (resource.type !== 'dns') return false;
    const status = this.deps.gateway.setupNat(id, {
      resourceId: resource.id,
      domain: domain.name,
      proxyIps: domain.proxyIps,
      realAddrs,
    });
    return status === 'Active';
  }

  private addRelays(relays: readonly Relay[]): void {
    for (const r of relays) this.relayMap.set(r.id, r);
  }

  private resolveWithTimeout(name: string): Promise<Uint8Array[]> {
    if (this.resolving >= MAX_CONCURRENT_RESOLUTIONS) {
      return Promise.reject(new Error(`${MAX_CONCURRENT_RESOLUTIONS} resolutions already running`));
    }
    this.resolving++;
    return new Promise<Uint8Array[]>((resolve, reject) => {
      const clock = this.deps.clock;
      const timer = clock.setTimeout(
        () => reject(new Error(`no answer within ${LEGACY_RESOLVE_TIMEOUT_MS} ms`)),
        LEGACY_RESOLVE_TIMEOUT_MS,
      );
      this.deps.resolve(name).then(
        (addrs) => {
          clock.clearTimeout(timer);
          resolve(addrs);
        },
        (e: unknown) => {
          clock.clearTimeout(timer);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    }).finally(() => {
      this.resolving--;
    });
  }

  /** Fresh local ICE credentials: a 4-character ufrag and a 22-character password (RFC 8445 §5.3). */
  private iceCredentials(): { username: string; password: string } {
    return { username: this.randomText(4), password: this.randomText(22) };
  }

  /** Uniform over [a-z0-9]: bytes from 252 up are rejected, so no character is favoured. */
  private randomText(n: number): string {
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
    let out = '';
    while (out.length < n) {
      for (const b of this.deps.random(n)) {
        if (b < 252 && out.length < n) out += alphabet[b % alphabet.length];
      }
    }
    return out;
  }
}

/** A portal relay as the TURN client knows it (the realm is always `firezone`, §3.1). */
function turnRelay(r: Relay): TurnRelayConfig {
  return { id: r.id, servers: r.addresses, username: r.username, password: r.password };
}

/** A Firezone client's WireGuard peer; its path is what ICE selects. */
function firezoneClient(
  id: ClientId,
  k: { publicKey: Uint8Array; presharedKey: Uint8Array; ipv4: Uint8Array; ipv6: Uint8Array },
): ClientSpec {
  return {
    id,
    publicKey: k.publicKey,
    presharedKey: k.presharedKey,
    profile: FIREZONE_PROFILE,
    ipv4: k.ipv4,
    ipv6: k.ipv6,
    roaming: true,
  };
}

/** `current` with the filters of `update` (same type guaranteed by the caller). */
function withFilters(current: Resource, update: Resource): Resource {
  if (current.type === 'internet' || update.type === 'internet') return current;
  return { ...current, filters: update.filters };
}
