import { IceAgent, type IceCredentials, type IceState } from '../../wire/ice/agent.js';
import { addressKey } from '../../wire/ice/candidate.js';
import { decodeStun, looksLikeStun, type TransportAddress } from '../../wire/stun/message.js';
import { FIREZONE_PROFILE } from '../../wire/wireguard/constants.js';
import { WG_DATA, WgDevice } from '../../wire/wireguard/device.js';
import type { WgPeer } from '../../wire/wireguard/peer.js';

/**
 * The simulated Firezone client's connection to one gateway, sans-IO: the controlling ICE agent
 * (host candidates only: the client reaches the gateway's host, server-reflexive or relayed
 * candidates from its own socket) and the WireGuard initiator. Like the real client it starts a
 * handshake as soon as ICE nominates a pair, and again whenever the nominated pair changes
 * (`spec/snownet.md` §2.8); all WireGuard output goes to the nominated pair.
 *
 * The same class drives the in-process simulations (memory UDP) and the CLI (`main.ts`, real
 * sockets and a TUN device), so both exercise exactly this logic.
 */

export interface SimClientConnectionOptions {
  readonly privateKey: Uint8Array;
  readonly gatewayPublicKey: Uint8Array;
  readonly presharedKey: Uint8Array;
  /** The client's ICE credentials (ours) and the gateway's. */
  readonly local: IceCredentials;
  readonly remote: IceCredentials;
  /** The addresses of our UDP socket(s): our host candidates. */
  readonly hosts: readonly TransportAddress[];
  readonly random: (n: number) => Uint8Array;
  readonly now: number;
  readonly wallClockOffsetMs?: number;
}

export type SimClientEvent =
  | { readonly type: 'ice'; readonly state: IceState }
  | { readonly type: 'path'; readonly remote: TransportAddress }
  | { readonly type: 'session'; readonly established: boolean };

/** Headroom WireGuard needs in front of a packet it encrypts. */
const WG_HEADROOM = 16;

export class SimClientConnection {
  readonly device: WgDevice<TransportAddress>;
  readonly peer: WgPeer<TransportAddress>;
  readonly agent: IceAgent;
  private pathTo: TransportAddress | undefined;
  private readonly events: SimClientEvent[] = [];
  private readonly out: { to: TransportAddress; bytes: Uint8Array }[] = [];
  /** Decrypted IP packets from the gateway, not yet taken. */
  private readonly inbound: Uint8Array[] = [];
  readonly drops = { stun: 0, noPath: 0, notWireGuard: 0 };

  constructor(o: SimClientConnectionOptions) {
    this.device = new WgDevice({
      privateKey: o.privateKey,
      now: o.now,
      wallClockOffsetMs: o.wallClockOffsetMs ?? 0,
      random: o.random,
    });
    this.peer = this.device.addPeer({
      publicKey: o.gatewayPublicKey,
      presharedKey: o.presharedKey,
      profile: FIREZONE_PROFILE,
    });
    this.agent = new IceAgent({ controlling: true, local: o.local, remote: o.remote, random: o.random });
    for (const h of o.hosts)
      this.agent.addLocalCandidate({ kind: 'host', addr: h, base: h, via: { kind: 'direct' } }, o.now);
  }

  /** Our candidates, for `broadcast_ice_candidates`. */
  localCandidates(): string[] {
    return this.agent.candidateStrings();
  }

  /** The pair ICE nominated, if any. */
  get path(): TransportAddress | undefined {
    return this.pathTo;
  }

  addRemoteCandidates(candidates: readonly string[], now: number): void {
    for (const c of candidates) this.agent.addRemoteCandidate(c, now);
    this.drain(now);
  }

  invalidateRemoteCandidates(candidates: readonly string[], now: number): void {
    for (const c of candidates) this.agent.invalidateRemoteCandidate(c);
    this.drain(now);
  }

  /** One datagram from our socket: ICE STUN or WireGuard. */
  handleDatagram(buf: Uint8Array, from: TransportAddress, now: number): void {
    if (looksLikeStun(buf, 0, buf.length)) {
      const m = decodeStun(buf);
      if (!m.ok || !this.agent.handleStun(m.value, { kind: 'direct' }, from, now)) this.drops.stun++;
      this.drain(now);
      return;
    }
    const r = this.device.decapsulate(buf, 0, buf.length, from, now);
    if (r === WG_DATA) {
      this.inbound.push(buf.slice(this.device.rxOffset, this.device.rxOffset + this.device.rxLength));
    }
    this.drain(now);
  }

  /** Encrypts one IP packet for the gateway; false without a path or session attempt. */
  sendIp(packet: Uint8Array, now: number): boolean {
    if (!this.pathTo) {
      this.drops.noPath++;
      return false;
    }
    const buf = new Uint8Array(WG_HEADROOM + packet.length + 16);
    buf.set(packet, WG_HEADROOM);
    const n = this.device.encapsulate(this.peer, buf, WG_HEADROOM, packet.length, now);
    if (n > 0) this.out.push({ to: this.pathTo, bytes: buf.slice(0, n) });
    this.drain(now);
    return true;
  }

  handleTimeout(now: number): void {
    if (this.agent.pollTimeout() <= now) this.agent.handleTimeout(now);
    const wg = this.device.pollTimeout();
    if (wg && wg.at <= now) this.device.handleTimeout(now);
    this.drain(now);
  }

  pollTimeout(): number {
    const wg = this.device.pollTimeout();
    return Math.min(this.agent.pollTimeout(), wg ? wg.at : Number.POSITIVE_INFINITY);
  }

  pollTransmit(): { to: TransportAddress; bytes: Uint8Array } | undefined {
    return this.out.shift();
  }

  pollEvent(): SimClientEvent | undefined {
    return this.events.shift();
  }

  /** The next decrypted IP packet from the gateway. */
  pollPacket(): Uint8Array | undefined {
    return this.inbound.shift();
  }

  private drain(now: number): void {
    for (let t = this.agent.pollTransmit(); t; t = this.agent.pollTransmit())
      this.out.push({ to: t.to, bytes: t.bytes });
    for (let e = this.agent.pollEvent(); e; e = this.agent.pollEvent()) {
      if (e.type === 'state') this.events.push({ type: 'ice', state: e.state });
      else if (!this.pathTo || addressKey(this.pathTo) !== addressKey(e.remote)) {
        // A new nominated pair: WireGuard goes there, starting with a fresh handshake.
        this.pathTo = e.remote;
        this.peer.endpoint = e.remote;
        this.events.push({ type: 'path', remote: e.remote });
        this.device.initiateHandshake(this.peer, now);
      }
    }
    for (let t = this.device.pollTransmit(); t; t = this.device.pollTransmit()) {
      const to = t.kind === 'peer' ? this.pathTo : t.to;
      if (to) this.out.push({ to, bytes: t.bytes });
      else this.drops.noPath++;
    }
    for (let e = this.device.pollEvent(); e; e = this.device.pollEvent()) {
      if (e.type === 'session-established') this.events.push({ type: 'session', established: true });
      else if (e.type === 'connection-expired') this.events.push({ type: 'session', established: false });
    }
  }
}
