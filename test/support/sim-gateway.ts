import { TestClock } from '../../src/actors/clock.js';
import { type ClientPolicy, Gateway, type GatewayOptions } from '../../src/actors/gateway.js';
import { SimClientConnection } from '../../src/dev/client/connection.js';
import { MemoryTun } from '../../src/io/memory-tun.js';
import { MemoryUdpNetwork, type MemoryUdpSocket } from '../../src/io/memory-udp.js';
import { datagramSource } from '../../src/io/packet-batch.js';
import type { RouterEndpoint } from '../../src/router/router.js';
import type { IceCredentials } from '../../src/wire/ice/agent.js';
import type { ClientId } from '../../src/wire/ids.js';
import { parseIp } from '../../src/wire/ip/address.js';
import { IpPacket } from '../../src/wire/ip/packet.js';
import type { Grant } from '../../src/wire/policy.js';
import { STANDARD_PROFILE, type TimerProfile } from '../../src/wire/wireguard/constants.js';
import { clampPrivateKey, publicKeyOf } from '../../src/wire/wireguard/crypto.js';
import { WG_DATA, WgDevice } from '../../src/wire/wireguard/device.js';
import type { WgPeer } from '../../src/wire/wireguard/peer.js';
import { FakeTurnServer } from './fake-turn.js';
import { v4 } from './packet-builder.js';
import { seededRandom } from './wg-pair.js';

/**
 * A gateway on simulated I/O (memory TUN, memory UDP network, simulated clock) with plain
 * WireGuard peers in the same process: the actor system and router exactly as in production,
 * deterministic and without root.
 */

export const GW = parseIp('10.10.0.1')!;

/** A plain WireGuard peer on the simulated network, talking to the gateway. */
export class SimPeer {
  readonly device: WgDevice<RouterEndpoint>;
  readonly peer: WgPeer<RouterEndpoint>;
  readonly received: IpPacket[] = [];
  readonly tunnelIp: Uint8Array;

  constructor(
    readonly name: string,
    readonly sock: MemoryUdpSocket,
    gatewayKey: Uint8Array,
    host: number,
    private readonly clock: TestClock,
    rnd: (n: number) => Uint8Array,
    profile: TimerProfile = STANDARD_PROFILE,
    presharedKey?: Uint8Array,
  ) {
    this.tunnelIp = v4(100, 64, 0, host);
    this.device = new WgDevice({
      privateKey: clampPrivateKey(rnd(32)),
      now: clock.now(),
      wallClockOffsetMs: 0,
      random: rnd,
    });
    this.peer = this.device.addPeer({
      publicKey: gatewayKey,
      profile,
      ...(presharedKey ? { presharedKey } : {}),
    });
    this.peer.endpoint = { ip: GW, port: 51820 };
    sock.start((batch) => {
      for (let i = 0; i < batch.count; i++) {
        const from = { ip: Uint8Array.from(datagramSource(batch, i)), port: batch.srcPorts[i]! };
        const r = this.device.decapsulate(batch.bufs[i]!, 0, batch.lengths[i]!, from, this.clock.now());
        if (r === WG_DATA) {
          const p = IpPacket.parse(
            batch.bufs[i]!.slice(this.device.rxOffset, this.device.rxOffset + this.device.rxLength),
          );
          if (p.ok) this.received.push(p.value);
        }
      }
      this.flush();
    });
  }

  policy(gs: Grant[], extra: { ipv4?: Uint8Array } = {}): ClientPolicy {
    return {
      spec: {
        id: this.name as ClientId,
        publicKey: this.device.publicKey,
        profile: STANDARD_PROFILE,
        ipv4: extra.ipv4 ?? this.tunnelIp,
        roaming: true,
      },
      grants: gs,
    };
  }

  send(packet: Uint8Array): void {
    const buf = new Uint8Array(16 + packet.length + 16);
    buf.set(packet, 16);
    const n = this.device.encapsulate(this.peer, buf, 16, packet.length, this.clock.now());
    if (n > 0) this.sock.send(buf, 0, n, GW, 51820);
    this.flush();
  }

  flush(): void {
    for (let t = this.device.pollTransmit(); t; t = this.device.pollTransmit()) {
      const to = t.kind === 'peer' ? this.peer.endpoint! : t.to;
      this.sock.send(t.bytes, 0, t.bytes.length, to.ip, to.port);
    }
    while (this.device.pollEvent());
  }
}

/** The simulated TURN relay of every world (the gateway needs one for its ICE candidates). */
export const RELAY_IP = '10.10.9.1';
export const RELAY_USERNAME = '1766444400:salt';
export const RELAY_PASSWORD = 'secret';

/**
 * A Firezone-style client on the simulated network: the sim client's connection core (ICE
 * controlling, WireGuard initiator) on a memory socket. Same surface as {@link SimPeer}, so
 * tests send and receive the same way; `start()` begins ICE with the gateway's credentials.
 */
export class IceSimPeer {
  readonly received: IpPacket[] = [];
  readonly tunnelIp: Uint8Array;
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
  conn: SimClientConnection | undefined;
  /** Where our candidates go (the portal, or the gateway directly). */
  signal: (candidates: string[]) => void = () => undefined;
  private pending: string[] = [];

  constructor(
    readonly name: string,
    readonly sock: MemoryUdpSocket,
    private readonly gatewayKey: Uint8Array,
    host: number,
    private readonly clock: TestClock,
    private readonly rnd: (n: number) => Uint8Array,
    readonly presharedKey: Uint8Array,
  ) {
    this.tunnelIp = v4(100, 64, 0, host);
    this.privateKey = clampPrivateKey(rnd(32));
    this.publicKey = publicKeyOf(this.privateKey);
    sock.start((batch) => {
      for (let i = 0; i < batch.count; i++) {
        const from = { ip: Uint8Array.from(datagramSource(batch, i)), port: batch.srcPorts[i]! };
        this.conn?.handleDatagram(batch.bufs[i]!.slice(0, batch.lengths[i]!), from, this.clock.now());
      }
      this.flush();
    });
  }

  /** Mirrors SimPeer's `device` for tests that read the public key. */
  get device(): { publicKey: Uint8Array } {
    return { publicKey: this.publicKey };
  }

  /** A new ICE connection with these credentials (ours = the client's, remote = the gateway's). */
  start(local: IceCredentials, remote: IceCredentials): void {
    this.conn = new SimClientConnection({
      privateKey: this.privateKey,
      gatewayPublicKey: this.gatewayKey,
      presharedKey: this.presharedKey,
      local,
      remote,
      hosts: [{ ip: parseIp(this.sock.localAddress)!, port: this.sock.localPort }],
      random: this.rnd,
      now: this.clock.now(),
    });
    this.signal(this.conn.localCandidates());
    if (this.pending.length > 0) this.conn.addRemoteCandidates(this.pending.splice(0), this.clock.now());
    this.flush();
  }

  /** The gateway's candidates, as the portal relays them. */
  remoteCandidates(candidates: readonly string[]): void {
    if (!this.conn) this.pending.push(...candidates);
    else this.conn.addRemoteCandidates(candidates, this.clock.now());
    this.flush();
  }

  invalidatedCandidates(candidates: readonly string[]): void {
    this.conn?.invalidateRemoteCandidates(candidates, this.clock.now());
    this.flush();
  }

  get established(): boolean {
    return this.conn?.peer.hasSession === true;
  }

  send(packet: Uint8Array): void {
    this.conn?.sendIp(packet, this.clock.now());
    this.flush();
  }

  /** Runs due timers and sends what is queued. */
  flush(): void {
    const c = this.conn;
    if (!c) return;
    if (c.pollTimeout() <= this.clock.now()) c.handleTimeout(this.clock.now());
    for (let t = c.pollTransmit(); t; t = c.pollTransmit())
      this.sock.send(t.bytes, 0, t.bytes.length, t.to.ip, t.to.port);
    while (c.pollEvent());
    for (let p = c.pollPacket(); p; p = c.pollPacket()) {
      const parsed = IpPacket.parse(p);
      if (parsed.ok) this.received.push(parsed.value);
    }
  }

  pollTimeout(): number {
    return this.conn?.pollTimeout() ?? Number.POSITIVE_INFINITY;
  }
}

export function world(extra: Partial<Omit<GatewayOptions, 'clock'>> & { clock?: TestClock } = {}) {
  const clock = extra.clock ?? new TestClock();
  const rnd = seededRandom(7);
  const net = new MemoryUdpNetwork();
  const tun = new MemoryTun();
  const logs: string[] = [];
  const log = {
    info: (_: object, m: string) => logs.push(m),
    warn: (_: object, m: string) => logs.push(m),
    error: (_: object, m: string) => logs.push(m),
  };
  const relay = new FakeTurnServer(net, {
    address: RELAY_IP,
    mode: 'firezone',
    password: (u) => (u === RELAY_USERNAME ? RELAY_PASSWORD : undefined),
    random: rnd,
    now: () => clock.now(),
  });
  const icePeers = new Map<string, IceSimPeer>();
  const gateway = new Gateway({
    privateKey: clampPrivateKey(rnd(32)),
    clock,
    tun,
    udp4: net.open({ family: 4, address: '10.10.0.1', port: 51820 }),
    udp6: undefined,
    log,
    random: rnd,
    ...extra,
    onCandidates: (id, added, removed) => {
      const p = icePeers.get(id);
      if (p && added.length > 0) p.remoteCandidates(added);
      if (p && removed.length > 0) p.invalidatedCandidates(removed);
      extra.onCandidates?.(id, added, removed);
    },
  });
  gateway.setInterface(v4(100, 64, 0, 1), undefined);
  gateway.start();
  let host = 2;
  /** The next peer's socket (10.10.0.<host>) and host number. */
  const nextHost = () => {
    const n = host++;
    return { sock: net.open({ family: 4, address: `10.10.0.${n}` }), n };
  };
  const peer = (name: string, opts: { profile?: TimerProfile; presharedKey?: Uint8Array } = {}) => {
    const { sock, n } = nextHost();
    return new SimPeer(name, sock, gateway.publicKey, n, clock, rnd, opts.profile, opts.presharedKey);
  };
  /** A Firezone-style client (ICE + WireGuard initiator) whose keys the portal hands out. */
  const icePeer = (name: string, presharedKey: Uint8Array) => {
    const { sock, n } = nextHost();
    const p = new IceSimPeer(name, sock, gateway.publicKey, n, clock, rnd, presharedKey);
    icePeers.set(name, p);
    p.signal = (candidates) => gateway.clientEvent(name as ClientId, { type: 'ice.candidates', candidates });
    return p;
  };
  /** Lets the network settle (no time passes). */
  const settle = () => {
    for (let i = 0; i < 20 && net.deliver() > 0; i++) for (const p of icePeers.values()) p.flush();
  };
  /** Lets simulated time run in small steps for `ms`, delivering everything on the way. */
  const run = (ms: number, until: () => boolean = () => false) => {
    const end = clock.now() + ms;
    settle();
    while (clock.now() < end && !until()) {
      let at = Math.min(end, clock.nextDeadline() ?? end);
      for (const p of icePeers.values()) at = Math.min(at, p.pollTimeout());
      clock.advance(Math.max(1, at - clock.now()));
      for (const p of icePeers.values()) p.flush();
      settle();
    }
  };
  /**
   * Connects a peer: a plain one starts its handshake; an ICE one starts ICE with the credentials
   * the gateway has for it and runs the clock until its WireGuard session is up (≤ 10 s).
   */
  const connect = (p: SimPeer | IceSimPeer) => {
    if (p instanceof IceSimPeer) {
      const ice = gateway.clientSnapshot(p.name)?.context.ice;
      if (!ice) throw new Error(`the gateway has no ICE connection for ${p.name}`);
      p.start(ice.remote, ice.local);
      run(10_000, () => p.established);
      if (!p.established) throw new Error(`${p.name}: no WireGuard session through ICE within 10 s`);
      return;
    }
    p.device.initiateHandshake(p.peer, clock.now());
    p.flush();
    settle();
  };
  return { clock, net, tun, gateway, logs, peer, icePeer, settle, run, connect, rnd, relay };
}
