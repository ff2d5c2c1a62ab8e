import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { isIP } from 'node:net';
import {
  IceAgent,
  type IceAgentOptions,
  type IceEvent,
  type IceState,
  type LocalCandidate,
} from '../../src/wire/ice/agent.js';
import { formatIp, parseIp } from '../../src/wire/ip/address.js';
import { decodeStun, looksLikeStun, type TransportAddress } from '../../src/wire/stun/message.js';

/**
 * Runs one sans-IO {@link IceAgent} on a real UDP socket (tests only): datagrams that look like
 * STUN go through `decodeStun` → `handleStun(msg, {kind:'direct'}, from, now)`, everything else is
 * kept as application data; the timer is re-armed at `pollTimeout()` and `pollTransmit()` goes out
 * of the socket. Time is `performance.now()`.
 *
 * Loopback guard: the socket is bound to a loopback address, and a transmit to a non-loopback
 * destination is never sent (it is counted in `stats.nonLoopback` for the test to assert on), so
 * nothing a test drives through this can leave the machine.
 */

export interface ReceivedData {
  readonly from: TransportAddress;
  readonly bytes: Buffer;
}

export interface IceDriverStats {
  /** STUN datagrams received / taken by the agent / refused by it / undecodable. */
  stunIn: number;
  stunTaken: number;
  stunRefused: number;
  badStun: number;
  /** STUN messages the agent sent. */
  stunOut: number;
  /** Transmits the agent wanted to send through a relay: this driver has none. */
  relayTransmits: number;
  /** Transmits to a non-loopback address, dropped by the guard. */
  nonLoopback: number;
}

export function transportAddress(ip: string, port: number): TransportAddress {
  const bytes = parseIp(ip);
  if (!bytes) throw new Error(`'${ip}' is not an IP address`);
  return { ip: bytes, port };
}

export function isLoopback(a: TransportAddress | string): boolean {
  const ip = typeof a === 'string' ? parseIp(a) : a.ip;
  if (!ip) return false;
  if (ip.length === 4) return ip[0] === 127;
  return ip.every((b, i) => b === (i === 15 ? 1 : 0));
}

export class IceDriver {
  readonly events: IceEvent[] = [];
  readonly data: ReceivedData[] = [];
  readonly stats: IceDriverStats = {
    stunIn: 0,
    stunTaken: 0,
    stunRefused: 0,
    badStun: 0,
    stunOut: 0,
    relayTransmits: 0,
    nonLoopback: 0,
  };
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly wakers = new Set<() => void>();

  private constructor(
    readonly agent: IceAgent,
    readonly sock: Socket,
  ) {
    sock.on('message', (buf, rinfo) => this.receive(buf, transportAddress(rinfo.address, rinfo.port)));
    // A send to a closed peer port can surface as an error on some platforms: keep it quiet.
    sock.on('error', () => {});
  }

  /** A new agent on a fresh UDP socket bound to `host` (a loopback address) on a random port. */
  static async open(opts: IceAgentOptions, host = '127.0.0.1'): Promise<IceDriver> {
    if (!isLoopback(host)) throw new Error(`the ICE driver binds to loopback only, not ${host}`);
    const sock = createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
    sock.bind(0, host);
    await once(sock, 'listening');
    return new IceDriver(new IceAgent(opts), sock);
  }

  /** The socket's own address: our host candidate. */
  get local(): TransportAddress {
    const a = this.sock.address();
    return transportAddress(a.address, a.port);
  }

  get state(): IceState {
    return this.agent.state;
  }

  /** Adds the socket's address as a host candidate and returns it. */
  addHostCandidate(): LocalCandidate {
    const local = this.local;
    const c = this.agent.addLocalCandidate(
      { kind: 'host', addr: local, base: local, via: { kind: 'direct' } },
      performance.now(),
    );
    if (!c) throw new Error('the host candidate was already known');
    this.flush();
    return c;
  }

  addRemoteCandidate(text: string): boolean {
    const added = this.agent.addRemoteCandidate(text, performance.now());
    this.flush();
    return added;
  }

  /** Sends application bytes from our socket (what the gateway does on the selected pair). */
  sendData(to: TransportAddress, bytes: Uint8Array): void {
    if (!isLoopback(to)) {
      this.stats.nonLoopback++;
      return;
    }
    this.sock.send(bytes, to.port, formatIp(to.ip));
  }

  private receive(buf: Buffer, from: TransportAddress): void {
    if (this.closed) return;
    if (looksLikeStun(buf, 0, buf.length)) {
      this.stats.stunIn++;
      const m = decodeStun(buf);
      if (!m.ok) this.stats.badStun++;
      else if (this.agent.handleStun(m.value, { kind: 'direct' }, from, performance.now()))
        this.stats.stunTaken++;
      else this.stats.stunRefused++;
    } else {
      this.data.push({ from, bytes: Buffer.from(buf) });
    }
    this.flush();
  }

  private flush(): void {
    if (this.closed) return;
    for (let t = this.agent.pollTransmit(); t; t = this.agent.pollTransmit()) {
      if (t.via.kind !== 'direct') this.stats.relayTransmits++;
      else if (!isLoopback(t.to)) this.stats.nonLoopback++;
      else {
        this.stats.stunOut++;
        this.sock.send(t.bytes, t.to.port, formatIp(t.to.ip));
      }
    }
    for (let e = this.agent.pollEvent(); e; e = this.agent.pollEvent()) this.events.push(e);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const at = this.agent.pollTimeout();
    if (Number.isFinite(at)) {
      const delay = Math.min(Math.max(0, at - performance.now()), 2 ** 31 - 1);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (this.closed) return;
        this.agent.handleTimeout(performance.now());
        this.flush();
      }, delay);
      this.timer.unref();
    }
    for (const wake of this.wakers) wake();
  }

  /**
   * Resolves with the first non-undefined value of `probe`, re-evaluated after every datagram
   * and timer; rejects after `timeoutMs` naming `what`.
   */
  async until<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const wakers = this.wakers;
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          wakers.delete(done);
          resolve();
        }
        wakers.add(done);
      });
    }
  }

  /** The first `selected` event, if any. */
  firstSelected(): Extract<IceEvent, { type: 'selected' }> | undefined {
    for (const e of this.events) if (e.type === 'selected') return e;
    return undefined;
  }

  /** The states the agent went through, in order. */
  states(): IceState[] {
    const out: IceState[] = [];
    for (const e of this.events) if (e.type === 'state') out.push(e.state);
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const wake of this.wakers) wake();
    await new Promise<void>((resolve) => this.sock.close(() => resolve()));
  }
}
