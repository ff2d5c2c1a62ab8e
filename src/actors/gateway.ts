import { type Actor, createActor, type InspectionEvent, type SnapshotFrom } from 'xstate';
import type { TunDevice } from '../io/tun.js';
import type { UdpSocket } from '../io/udp.js';
import {
  type ClientConnectionEvent,
  type ClientIce,
  clientConnectionMachine,
} from '../machines/client-connection.machine.js';
import { type DesiredClient, gatewaySupervisorMachine } from '../machines/gateway-supervisor.machine.js';
import {
  type ClientSpec,
  type NatRequest,
  Router,
  type RouterEvent,
  type RouterIo,
} from '../router/router.js';
import type { ClientId } from '../wire/ids.js';
import type { DomainStatus } from '../wire/p2p/control.js';
import type { Grant } from '../wire/policy.js';
import type { Clock } from './clock.js';

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
  /** Told when a client's actor has removed it (expired, revoked, goodbye). */
  readonly onClientRemoved?: (id: ClientId, reason: string | undefined) => void;
}

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
  private readonly supervisor: Actor<typeof gatewaySupervisorMachine>;
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
    });
    const router = this.router;
    const client = clientConnectionMachine.provide({
      actions: {
        installClient: ({ context }) => {
          const spec = this.specs.get(context.clientId)?.spec;
          if (!spec) throw new Error(`no connection parameters for client ${context.clientId}`);
          const displaced = router.addClient(spec, this.clock.now());
          if (displaced.length > 0) {
            this.log.warn(
              { client: spec.id, from: displaced },
              'Tunnel address taken over from another client',
            );
          }
          router.setGrants(context.clientId, context.grants);
        },
        updateGrants: ({ context }) => router.setGrants(context.clientId, context.grants),
        removeClient: ({ context }) => {
          router.removeClient(
            context.clientId,
            this.clock.now(),
            context.endReason !== 'goodbye' && this.isFirezone(context.clientId),
          );
          this.log.info({ client: context.clientId, reason: context.endReason }, 'Client removed');
          this.opts.onClientRemoved?.(context.clientId, context.endReason);
        },
      },
    });
    const supervisor = gatewaySupervisorMachine.provide({
      actors: { clientConnection: client },
      actions: {
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
    this.supervisor.send({ type: 'client.upsert', client: this.desire(client) });
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

  /** The state of one client's connection actor, or undefined. */
  clientState(id: string): unknown {
    return this.clientSnapshot(id)?.value;
  }

  /** One client's connection actor snapshot (state and context), or undefined. */
  clientSnapshot(id: string): SnapshotFrom<typeof clientConnectionMachine> | undefined {
    const entry = this.supervisor.getSnapshot().context.clients[id];
    const child = entry ? this.supervisor.getSnapshot().children[entry.actorId] : undefined;
    return child?.getSnapshot() as SnapshotFrom<typeof clientConnectionMachine> | undefined;
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
    let event: ClientConnectionEvent | undefined;
    switch (e.type) {
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
          // DNS-resource NAT needs the resolver, which is not part of this build: answer
          // Inactive, as the protocol asks when NAT cannot be set up (spec/snownet.md §4).
          this.log.warn(
            { client: e.clientId, resource: e.event.resource },
            'DNS-resource NAT is not available yet',
          );
          this.router.sendControl(
            e.clientId,
            { type: 'domain-status', resource: e.event.resource, domain: e.event.domain, status: 'Inactive' },
            this.clock.now(),
          );
        }
        break;
    }
    if (event) this.supervisor.send({ type: 'client.event', clientId: e.clientId, event });
  }
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
