import { type Actor, createActor, fromPromise, type InspectionEvent, type SnapshotFrom } from 'xstate';
import type { TunDevice } from '../io/tun.js';
import type { UdpSocket } from '../io/udp.js';
import {
  type ClientConnectionEvent,
  type ClientIce,
  clientConnectionMachine,
} from '../machines/client-connection.machine.js';
import { dnsResourceNatMachine } from '../machines/dns-resource-nat.machine.js';
import {
  type DesiredClient,
  gatewaySupervisorMachine,
  NAMESERVERS_ACTOR_ID,
} from '../machines/gateway-supervisor.machine.js';
import {
  type NameserverSelectorContext,
  nameserverSelectorMachine,
} from '../machines/nameserver-selector.machine.js';
import type { RelayAllocationEvent } from '../machines/relay-allocation.machine.js';
import { relayAllocationMachine } from '../machines/relay-allocation.machine.js';
import {
  type ClientSpec,
  type NatRequest,
  Router,
  type RouterEvent,
  type RouterIo,
} from '../router/router.js';
import { addressKey } from '../wire/ice/candidate.js';
import type { ClientId, ResourceId } from '../wire/ids.js';
import { formatIp, parseIp } from '../wire/ip/address.js';
import type { DomainStatus } from '../wire/p2p/control.js';
import type { Grant } from '../wire/policy.js';
import type { TransportAddress } from '../wire/stun/message.js';
import type { TurnEvent, TurnRelayConfig } from '../wire/turn/client.js';
import type { Clock } from './clock.js';
import { addressTexts, DnsService, type DnsTransport, type DnsUpstream } from './dns.js';

/** The injected logger (pino's shape): constant messages, structured fields. */
export interface GatewayLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** A client the control plane wants: how to reach it and what it may reach. */
export interface ClientPolicy {
  readonly spec: ClientSpec;
  readonly grants: readonly Grant[];
  /** Portal clients: the connection's ICE credentials (a change means a new connection). */
  readonly ice?: ClientIce | undefined;
}

export interface GatewayOptions {
  readonly privateKey: Uint8Array;
  readonly clock: Clock;
  readonly tun: Pick<TunDevice, 'start' | 'write' | 'readNow' | 'close'>;
  readonly udp4: UdpSocket | undefined;
  readonly udp6: UdpSocket | undefined;
  readonly log: GatewayLog;
  /** Receives every XState inspection event (logs now, the visualizer later). */
  readonly inspect?: (event: InspectionEvent) => void;
  readonly random?: (n: number) => Uint8Array;
  /** Told when a client's actor has removed it (expired, revoked, goodbye, failed). */
  readonly onClientRemoved?: (id: ClientId, reason: string | undefined) => void;
  /** Local ICE candidates of a portal client's connection to announce / withdraw (§2.5). */
  readonly onCandidates?: (id: ClientId, added: readonly string[], removed: readonly string[]) => void;
  /**
   * Our address towards a relay server (the host candidate's IP; the port is our socket's).
   * Needed when the tunnel socket is bound to a wildcard address.
   */
  readonly hostAddressTowards?: (server: TransportAddress) => Promise<Uint8Array | undefined>;
  /** SOFTWARE attribute of our TURN requests. */
  readonly software?: string;
  /**
   * Upstream DNS: the nameservers of resolv.conf (as text) and how to reach them. Without it the
   * selector has nobody to choose: the DNS server answers SERVFAIL and DNS-resource NAT fails.
   */
  readonly dns?: { readonly nameservers: readonly string[]; readonly upstream: DnsUpstream };
}

/** No upstream at all (a gateway configured without nameservers). */
const NO_UPSTREAM: DnsUpstream = {
  exchange: () => Promise.resolve({ ok: false, error: { code: 'unreachable', message: 'no upstream' } }),
};

/**
 * The running gateway: the actor system (a supervisor with one client-connection actor per
 * client) on top of the fast-path router, wired to the TUN device and the tunnel sockets.
 *
 * This is the only place that calls the router's command API, and the only place that turns
 * router events into actor events. Per packet, nothing here runs but the router: a readiness
 * callback hands a whole batch to the router, then this layer drains the router's lifecycle
 * events into the actors and re-arms the one timer at the router's next deadline.
 */
export class Gateway {
  readonly router: Router;
  private readonly clock: Clock;
  private readonly log: GatewayLog;
  private readonly opts: GatewayOptions;
  /** The connection parameters of every supervised client (read by `installClient`). */
  private readonly specs = new Map<ClientId, ClientPolicy>();
  /** The relays the portal offers, and our host addresses towards them (read by `installRelay`). */
  private readonly relayConfigs = new Map<string, { config: TurnRelayConfig; hosts: TransportAddress[] }>();
  /** Which relay-allocation actor currently owns each relay in the router. */
  private readonly relayOwners = new Map<string, string>();
  private relayChain: Promise<void> = Promise.resolve();
  private relayUpdatesQueued = 0;
  private readonly supervisor: Actor<typeof gatewaySupervisorMachine>;
  /** The DNS forwarder and resolver (the selector actor picks their nameserver). */
  readonly dns: DnsService;
  private loggedNameserver: string | undefined | null = null;
  private timer: unknown;
  private timerAt = Number.POSITIVE_INFINITY;
  private stopped = false;

  constructor(opts: GatewayOptions) {
    this.opts = opts;
    this.clock = opts.clock;
    this.log = opts.log;
    const io: RouterIo = {
      sendUdp: (buf, off, len, ip, port, ecn) => {
        const sock = ip.length === 4 ? opts.udp4 : opts.udp6;
        if (sock) sock.send(buf, off, len, ip, port, ecn);
        else this.router.drops['no-path']!++;
      },
      writeTun: (buf, off, len) => opts.tun.write(buf, off, len),
      flush: () => {
        opts.udp4?.flush();
        opts.udp6?.flush();
      },
    };
    this.router = new Router({
      privateKey: opts.privateKey,
      io,
      now: this.clock.now(),
      wallClockOffsetMs: this.clock.wallNow() - this.clock.now(),
      ...(opts.random ? { random: opts.random } : {}),
      ...(opts.software ? { software: opts.software } : {}),
    });
    const router = this.router;
    this.dns = new DnsService({
      upstream: opts.dns?.upstream ?? NO_UPSTREAM,
      clock: this.clock,
      selected: () => this.selectedNameserver(),
      unresponsive: (server) =>
        this.supervisor.send({
          type: 'nameservers.event',
          event: { type: 'nameserver.unresponsive', server },
        }),
      random: opts.random ?? ((n) => globalThis.crypto.getRandomValues(new Uint8Array(n))),
    });
    const natBinding = dnsResourceNatMachine.provide({
      actors: {
        resolve: fromPromise(async ({ input }) => addressTexts(await this.dns.resolve(input.domain))),
      },
      guards: {
        natAllowed: ({ context }) => router.natAllowed(context.clientId, context.resourceId, context.domain),
      },
      actions: {
        applyNat: ({ context }) => {
          const status = router.setupNat(context.clientId, {
            resourceId: context.resourceId,
            domain: context.domain,
            proxyIps: parseAll(context.proxyIps),
            realAddrs: parseAll(context.realAddrs ?? []),
          });
          this.log.info(
            {
              client: context.clientId,
              resource: context.resourceId,
              domain: context.domain,
              addresses: context.realAddrs ?? [],
              status,
            },
            'DNS resource NAT set up',
          );
          this.reportDomain(context.clientId, context.resourceId, context.domain, status);
        },
        reportInactive: ({ context }) => {
          this.log.warn(
            {
              client: context.clientId,
              resource: context.resourceId,
              domain: context.domain,
              err: context.lastError ?? null,
              attempt: context.attempts,
            },
            'DNS resource lookup failed',
          );
          this.reportDomain(context.clientId, context.resourceId, context.domain, 'Inactive');
        },
      },
    });
    const client = clientConnectionMachine.provide({
      actors: { natBinding },
      actions: {
        refuseNat: ({ context, event }) => {
          if (event.type !== 'control.assigned-ips') return;
          this.log.warn(
            {
              client: context.clientId,
              domain: event.domain,
              bindings: Object.keys(context.natBindings).length,
            },
            'Too many DNS resource names for one client; answering Inactive',
          );
          this.reportDomain(context.clientId, event.resourceId, event.domain, 'Inactive');
        },
        natBindingFailed: ({ context, event }) =>
          this.log.error(
            { client: context.clientId, err: String((event as { error?: unknown }).error) },
            'DNS resource NAT binding failed',
          ),
        installClient: ({ context }) => {
          const spec = this.specs.get(context.clientId)?.spec;
          if (!spec) throw new Error(`no connection parameters for client ${context.clientId}`);
          const ice = this.specs.get(context.clientId)?.ice;
          const displaced = router.addClient(ice ? { ...spec, ice } : spec, this.clock.now());
          if (displaced.length > 0) {
            this.log.warn(
              { client: spec.id, from: displaced },
              'Tunnel address taken over from another client',
            );
          }
          router.setGrants(context.clientId, context.grants);
        },
        updateGrants: ({ context }) => router.setGrants(context.clientId, context.grants),
        feedCandidates: ({ context, event }) => {
          if (event.type === 'ice.candidates') {
            router.addRemoteCandidates(context.clientId, event.candidates, this.clock.now());
          } else if (event.type === 'ice.candidates-invalidated') {
            router.invalidateRemoteCandidates(context.clientId, event.candidates, this.clock.now());
          }
        },
        removeClient: ({ context }) => {
          router.removeClient(
            context.clientId,
            this.clock.now(),
            context.endReason !== 'goodbye' && this.isFirezone(context.clientId),
          );
          this.log.info(
            {
              client: context.clientId,
              reason: context.endReason,
              ...(context.failure ? { failure: context.failure } : {}),
            },
            'Client removed',
          );
          this.opts.onClientRemoved?.(context.clientId, context.endReason);
        },
      },
    });
    const relay = relayAllocationMachine.provide({
      actions: {
        installRelay: ({ context, self }) => {
          const r = this.relayConfigs.get(context.relayId);
          if (!r) throw new Error(`no configuration for relay ${context.relayId}`);
          router.addRelay(r.config, r.hosts, this.clock.now());
          this.relayOwners.set(context.relayId, self.id);
          this.log.info(
            {
              relay: context.relayId,
              servers: r.config.servers.map(addressKey),
              hosts: r.hosts.map(addressKey),
            },
            'Relay added',
          );
        },
        command: ({ context }, params) => router.relayCommand(context.relayId, params.cmd, this.clock.now()),
        freeRelay: ({ context, self }) => {
          if (this.relayOwners.get(context.relayId) !== self.id) return;
          this.relayOwners.delete(context.relayId);
          router.removeRelay(context.relayId, this.clock.now());
          this.log.warn({ relay: context.relayId, lastError: context.lastError ?? null }, 'Relay freed');
        },
      },
    });
    const nameservers = nameserverSelectorMachine.provide({
      actors: { probeRound: fromPromise(({ input }) => this.dns.probeRound(input.servers)) },
      actions: { selectionChanged: ({ context }) => this.logNameserver(context) },
    });
    const supervisor = gatewaySupervisorMachine.provide({
      actors: { clientConnection: client, relayAllocation: relay, nameserverSelector: nameservers },
      actions: {
        cleanupRelay: (_, params) => {
          this.relayOwners.delete(params.relayId);
          router.removeRelay(params.relayId, this.clock.now());
        },
        cleanupClient: (_, params) => {
          const id = params.clientId as ClientId;
          if (router.removeClient(id, this.clock.now(), params.goodbye && this.isFirezone(id))) {
            this.log.warn({ client: id }, 'Client state cleaned up after its actor stopped');
          }
        },
      },
    });
    this.supervisor = createActor(supervisor, {
      clock: this.clock,
      input: { nameservers: opts.dns?.nameservers ?? [] },
      ...(opts.inspect ? { inspect: opts.inspect } : {}),
    });
    // A failing client is the supervisor's business; an error of the supervisor itself is a bug
    // in the gateway: log it loudly (the process supervisor decides what to do with us).
    this.supervisor.subscribe({
      error: (error) => this.log.error({ err: (error as Error).message }, 'Gateway supervisor failed'),
    });
  }

  get publicKey(): Uint8Array {
    return this.router.publicKey;
  }

  /** Starts the actors and the I/O loops. */
  start(): void {
    this.supervisor.start();
    this.opts.tun.start((batch) => {
      this.router.handleTunPackets(batch, this.clock.now());
      this.afterTurn();
    });
    for (const sock of [this.opts.udp4, this.opts.udp6]) {
      sock?.start((batch) => {
        const written = this.router.traffic.toTunPackets;
        this.router.handleDatagrams(batch, this.clock.now());
        // Forwarding runs in the context of our TUN write, so an answer (a ping reply, a TCP
        // ACK from a local resource) may already be queued: take it now instead of after a
        // round trip through the readiness thread.
        if (this.router.traffic.toTunPackets !== written) this.opts.tun.readNow();
        this.afterTurn();
      });
    }
    this.afterTurn();
  }

  /** The gateway's tunnel addresses (the only destinations of its own that clients may use). */
  setInterface(ipv4: Uint8Array | undefined, ipv6: Uint8Array | undefined): void {
    this.router.setInterface(ipv4, ipv6);
  }

  /**
   * Makes the authorized clients exactly `clients`: new ones are added, missing ones revoked,
   * changed grants applied, and a client whose connection parameters changed is replaced.
   * Unchanged clients keep their WireGuard sessions.
   */
  applyPolicy(clients: readonly ClientPolicy[]): void {
    const desired = clients.map((c) => this.desire(c));
    const keep = new Set(clients.map((c) => c.spec.id));
    this.supervisor.send({ type: 'policy.apply', clients: desired });
    for (const id of this.specs.keys()) if (!keep.has(id)) this.specs.delete(id);
    this.afterTurn();
  }

  /**
   * Adds one client or changes it, leaving every other client alone (the portal authorizes one
   * flow at a time). Unchanged connection parameters keep the WireGuard session. Returns
   * whether the client is installed afterwards.
   */
  upsertClient(client: ClientPolicy): boolean {
    const before = this.supervisor.getSnapshot().context.clients[client.spec.id];
    const desired = this.desire(client);
    this.supervisor.send({ type: 'client.upsert', client: desired });
    // The same connection asked for again (§2.11): keep it, announce every local candidate again.
    if (client.ice && before?.identity === desired.identity) {
      const all = this.router.localCandidates(client.spec.id);
      if (all.length > 0) this.opts.onCandidates?.(client.spec.id, all, []);
    }
    this.afterTurn();
    // Actors start synchronously: one whose installation failed is already cleaned up and gone.
    return this.supervisor.getSnapshot().context.clients[client.spec.id] !== undefined;
  }

  /** Revokes one client: its actor removes it from the router (a Firezone client hears goodbye). */
  revokeClient(id: ClientId): void {
    this.supervisor.send({ type: 'client.revoke', clientId: id });
    this.specs.delete(id);
    this.afterTurn();
  }

  /** Passes news about one client to its actor (ICE candidates from the portal). */
  clientEvent(id: ClientId, event: ClientConnectionEvent): void {
    this.supervisor.send({ type: 'client.event', clientId: id, event });
    this.afterTurn();
  }

  /**
   * Applies the portal's relay news (spec/snownet.md §3.6): `connected` relays are allocated (or
   * kept when unchanged, replaced when their credentials or addresses changed), `disconnected`
   * ones freed, and every other known relay is poked to test that it is alive. Resolves once the
   * relay actors have the update (our host addresses towards new relays are looked up first).
   */
  updateRelays(connected: readonly TurnRelayConfig[], disconnected: readonly string[]): Promise<void> {
    const apply = (hosts: TransportAddress[][]) => {
      if (this.stopped) return;
      const desired = connected.map((config, i) => {
        const key = relayKey(config);
        const previous = this.relayConfigs.get(config.id);
        if (!previous || relayKey(previous.config) !== key || !this.relayOwners.has(config.id)) {
          this.relayConfigs.set(config.id, { config, hosts: hosts[i]! });
        }
        return { relayId: config.id, key };
      });
      for (const id of disconnected) this.relayConfigs.delete(id);
      this.supervisor.send({ type: 'relays.update', connected: desired, disconnected: [...disconnected] });
      this.afterTurn();
    };
    // With the socket bound to a specific address (and no update queued) this is synchronous;
    // otherwise our addresses towards the relays are looked up first, in order.
    const known = connected.map((c) => this.boundHosts(c.servers));
    if (this.relayUpdatesQueued === 0 && known.every((h) => h !== undefined)) {
      apply(known as TransportAddress[][]);
      return Promise.resolve();
    }
    this.relayUpdatesQueued++;
    const step = async () => {
      const hosts: TransportAddress[][] = [];
      for (const c of connected) {
        const h: TransportAddress[] = [];
        for (const server of c.servers) {
          const a = await this.hostAddress(server);
          if (a) h.push(a);
        }
        hosts.push(h);
      }
      this.relayUpdatesQueued--;
      apply(hosts);
    };
    this.relayChain = this.relayChain.then(step, step);
    return this.relayChain;
  }

  /** The relays with a live allocation actor, and each one's state (for tests and inspection). */
  relayStates(): Record<string, unknown> {
    const snap = this.supervisor.getSnapshot();
    const out: Record<string, unknown> = {};
    for (const [id, r] of Object.entries(snap.context.relays))
      out[id] = snap.children[r.actorId]?.getSnapshot().value;
    return out;
  }

  /** Our host addresses towards `servers` when the sockets are bound to specific addresses. */
  private boundHosts(servers: readonly TransportAddress[]): TransportAddress[] | undefined {
    const out: TransportAddress[] = [];
    for (const server of servers) {
      const sock = server.ip.length === 4 ? this.opts.udp4 : this.opts.udp6;
      if (!sock) continue;
      const bound = parseIp(sock.localAddress);
      if (!bound || bound.every((b) => b === 0)) return undefined;
      out.push({ ip: bound, port: sock.localPort });
    }
    return out;
  }

  /** Our host address towards `server`: the socket's own address, or what the kernel would pick. */
  private async hostAddress(server: TransportAddress): Promise<TransportAddress | undefined> {
    const sock = server.ip.length === 4 ? this.opts.udp4 : this.opts.udp6;
    if (!sock) return undefined;
    const bound = this.boundHosts([server]);
    if (bound) return bound[0];
    const ip = await this.opts.hostAddressTowards?.(server).catch(() => undefined);
    return ip ? { ip, port: sock.localPort } : undefined;
  }

  /** The nameserver the selector chose, if any. */
  selectedNameserver(): string | undefined {
    return this.nameserverContext()?.selected;
  }

  /** The selector's state (`probing`, `selected`, `unavailable`) and context, for tests and inspection. */
  nameserverState(): { value: unknown; context: NameserverSelectorContext } | undefined {
    const snap = this.supervisor.getSnapshot().children[NAMESERVERS_ACTOR_ID]?.getSnapshot() as
      | { value: unknown; context: NameserverSelectorContext }
      | undefined;
    return snap ? { value: snap.value, context: snap.context } : undefined;
  }

  /** Answers one query of the in-tunnel DNS server (port 53535). */
  dnsQuery(bytes: Uint8Array, transport: DnsTransport): Promise<Uint8Array | undefined> {
    return this.dns.handleQuery(bytes, transport);
  }

  /** A and AAAA of a name through the selected nameserver (the legacy flow's lookups). */
  resolveName(name: string): Promise<Uint8Array[]> {
    return this.dns.resolve(name);
  }

  private nameserverContext(): NameserverSelectorContext | undefined {
    return this.nameserverState()?.context;
  }

  private logNameserver(context: NameserverSelectorContext): void {
    if (context.selected === this.loggedNameserver) return;
    this.loggedNameserver = context.selected;
    if (context.selected === undefined) {
      this.log.warn(
        { nameservers: context.servers, err: context.lastError ?? null },
        'No nameserver answers; DNS queries get SERVFAIL',
      );
    } else {
      this.log.info(
        {
          nameserver: context.selected,
          rttMs: context.ranking.find((p) => p.server === context.selected)?.rttMs ?? null,
          ranking: context.ranking.map((p) => p.server),
        },
        'Nameserver selected',
      );
    }
  }

  /** Sends DomainStatus for one name to a client (then lets the router's output out). */
  private reportDomain(clientId: ClientId, resource: ResourceId, domain: string, status: DomainStatus): void {
    this.router.sendControl(clientId, { type: 'domain-status', resource, domain, status }, this.clock.now());
    queueMicrotask(() => this.afterTurn());
  }

  /**
   * Sets up DNS-resource NAT for one client: its proxy IPs for `domain` onto `realAddrs`
   * (the legacy flow; newer clients ask over the tunnel). Returns the status to report.
   */
  setupNat(id: ClientId, req: NatRequest): DomainStatus {
    const status = this.router.setupNat(id, req);
    this.afterTurn();
    return status;
  }

  private desire(c: ClientPolicy): DesiredClient {
    const identity = identityOf(c.spec, c.ice);
    const previous = this.specs.get(c.spec.id);
    // A replaced client's new parameters are installed by its new actor.
    if (!previous || identityOf(previous.spec, previous.ice) !== identity) this.specs.set(c.spec.id, c);
    return { clientId: c.spec.id, identity, grantsKey: grantsKeyOf(c.grants), grants: c.grants, ice: c.ice };
  }

  /** What the supervisor currently supervises (for tests and inspection). */
  supervisedClients(): string[] {
    return Object.keys(this.supervisor.getSnapshot().context.clients);
  }

  /**
   * The state of one client's WireGuard tunnel (`authorized`, `handshaking`, `connected`, `idle`)
   * while it is live, else its connection actor's state; undefined without an actor.
   */
  clientState(id: string): unknown {
    const v = this.clientSnapshot(id)?.value;
    return typeof v === 'object' && v !== null && 'live' in v ? (v.live as { tunnel: string }).tunnel : v;
  }

  /** The state of one portal client's ICE path (`checking`, `selected`, `disconnected`), or `direct`. */
  pathState(id: string): string | undefined {
    const v = this.clientSnapshot(id)?.value;
    return typeof v === 'object' && v !== null && 'live' in v ? (v.live as { path: string }).path : undefined;
  }

  /** One client's connection actor snapshot (state and context), or undefined. */
  clientSnapshot(id: string): SnapshotFrom<typeof clientConnectionMachine> | undefined {
    const entry = this.supervisor.getSnapshot().context.clients[id];
    const child = entry ? this.supervisor.getSnapshot().children[entry.actorId] : undefined;
    return child?.getSnapshot() as SnapshotFrom<typeof clientConnectionMachine> | undefined;
  }

  /** One client's NAT binding for `domain` (lowercased): its state and context, for tests and inspection. */
  natBindingSnapshot(id: string, domain: string): SnapshotFrom<typeof dnsResourceNatMachine> | undefined {
    const snap = this.clientSnapshot(id);
    const actorId = snap?.context.natBindings[domain];
    if (!snap || !actorId) return undefined;
    const child = (snap.children as Record<string, { getSnapshot(): unknown } | undefined>)[actorId];
    return child?.getSnapshot() as SnapshotFrom<typeof dnsResourceNatMachine> | undefined;
  }

  /** Stops the actors (Firezone clients hear goodbye) and the I/O. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.supervisor.send({ type: 'gateway.stop' });
    this.supervisor.stop();
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    await Promise.all([this.opts.tun.close(), this.opts.udp4?.close(), this.opts.udp6?.close()]);
  }

  private isFirezone(id: ClientId): boolean {
    return this.specs.get(id)?.spec.profile.name === 'firezone';
  }

  /** Drains router events into the actors and arms the single timer at the next deadline. */
  private afterTurn(): void {
    if (this.stopped) return;
    for (let e = this.router.pollEvent(); e; e = this.router.pollEvent()) this.dispatch(e);
    const at = this.router.pollTimeout().at;
    if (at < this.timerAt) {
      if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
      this.timerAt = at;
      this.timer = this.clock.setTimeout(
        () => {
          this.timer = undefined;
          this.timerAt = Number.POSITIVE_INFINITY;
          this.router.handleTimeout(this.clock.now(), this.clock.wallNow());
          this.afterTurn();
        },
        Math.max(0, at - this.clock.now()),
      );
    }
  }

  private dispatch(e: RouterEvent): void {
    if (e.type === 'relay') {
      this.dispatchRelay(e.relayId, e.event);
      return;
    }
    if (e.type === 'candidates') {
      this.opts.onCandidates?.(e.clientId, e.added, e.removed);
      return;
    }
    let event: ClientConnectionEvent | undefined;
    switch (e.type) {
      case 'ice':
        event =
          e.event.type === 'state'
            ? { type: 'ice.state', state: e.event.state }
            : {
                type: 'ice.selected',
                remote: addressKey(e.event.remote),
                relay: e.event.local.via.kind === 'relay' ? e.event.local.via.relay : undefined,
              };
        if (e.event.type === 'selected') {
          this.log.info(
            {
              client: e.clientId,
              remote: event.type === 'ice.selected' ? event.remote : null,
              relay: e.event.local.via.kind === 'relay' ? e.event.local.via.relay : null,
              local: e.event.local.kind,
            },
            'ICE path selected',
          );
        }
        break;
      case 'handshake-started':
        event = { type: 'wg.handshake-started', initiator: e.initiator };
        break;
      case 'session-established':
        event = { type: 'wg.session-established', initiator: e.initiator };
        break;
      case 'connection-failed':
        event = { type: 'wg.connection-failed', reason: e.reason };
        break;
      case 'idle':
        event = { type: 'traffic.idle' };
        break;
      case 'active':
        event = { type: 'traffic.active' };
        break;
      case 'grants-expired':
        this.log.info({ client: e.clientId, resources: e.resources }, 'Access to resource expired');
        event = { type: 'grants.expired', resources: e.resources, remaining: e.remaining };
        break;
      case 'control':
        if (e.event.type === 'goodbye') event = { type: 'control.goodbye' };
        else if (e.event.type === 'assigned-ips') {
          event = {
            type: 'control.assigned-ips',
            resourceId: e.event.resource,
            domain: e.event.domain,
            proxyIps: e.event.proxyIps.map((ip) => formatIp(ip)),
          };
        }
        break;
    }
    if (event) this.supervisor.send({ type: 'client.event', clientId: e.clientId, event });
  }

  private dispatchRelay(relayId: string, e: TurnEvent): void {
    let event: RelayAllocationEvent | undefined;
    switch (e.type) {
      case 'bound':
        event = { type: 'relay.bound' };
        break;
      case 'allocated':
        this.log.info(
          { relay: relayId, relayed: e.relayed.map(addressKey), lifetimeS: e.lifetimeS },
          'Relay allocation ready',
        );
        event = { type: 'relay.allocated', lifetimeS: e.lifetimeS };
        break;
      case 'refreshed':
        event = { type: 'relay.refreshed', lifetimeS: e.lifetimeS };
        break;
      case 'deleted':
        event = { type: 'relay.deleted' };
        break;
      case 'failed':
        if (e.request !== 'channel-bind') {
          this.log.warn(
            { relay: relayId, request: e.request, reason: e.reason, err: e.message },
            'Relay request failed',
          );
        }
        event = { type: 'relay.failed', request: e.request, reason: e.reason, message: e.message };
        break;
      case 'allocation-mismatch':
        this.log.info({ relay: relayId, request: e.request }, 'Relay allocation out of sync; repairing');
        break;
      case 'channel-bound':
        break;
    }
    if (event) this.supervisor.send({ type: 'relay.event', relayId, event });
  }
}

/** What makes a relay's allocation a new one when it changes: credentials and addresses. */
function relayKey(c: TurnRelayConfig): string {
  return [c.username, c.password, ...c.servers.map(addressKey)].join('|');
}

function hex(b: Uint8Array | undefined): string {
  return b ? Buffer.from(b).toString('hex') : '-';
}

/** What makes a new connection necessary when it changes. */
function identityOf(s: ClientSpec, ice: ClientIce | undefined): string {
  return [
    ice ? `${ice.local.username}:${ice.local.password}/${ice.remote.username}:${ice.remote.password}` : '-',
    hex(s.publicKey),
    hex(s.presharedKey),
    hex(s.ipv4),
    hex(s.ipv6),
    s.profile.name,
    s.persistentKeepaliveMs ?? '-',
    s.roaming,
  ].join('|');
}

function grantsKeyOf(grants: readonly Grant[]): string {
  return JSON.stringify(
    grants.map((g) => {
      const r = g.resource;
      const where =
        r.type === 'cidr'
          ? `${hex(r.address.address)}/${r.address.prefixLength}`
          : r.type === 'dns'
            ? r.pattern
            : '*';
      return [r.id, r.type, where, r.type === 'internet' ? [] : r.filters, g.expiresAtMs ?? null];
    }),
  );
}

/** Addresses from text (machine context) back to bytes; anything unparseable is skipped. */
function parseAll(texts: readonly string[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const t of texts) {
    const ip = parseIp(t);
    if (ip) out.push(ip);
  }
  return out;
}
