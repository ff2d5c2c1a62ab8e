import type { TimerProfile } from '../../src/wire/wireguard/constants.js';
import { clampPrivateKey } from '../../src/wire/wireguard/crypto.js';
import { WG_DATA, WgDevice, type WgTransmit } from '../../src/wire/wireguard/device.js';
import type { WgEvent, WgPeer } from '../../src/wire/wireguard/peer.js';

/** An endpoint in the simulated network. */
export interface SimEndpoint {
  readonly name: string;
  readonly ip: Uint8Array;
  readonly port: number;
}

/** Deterministic bytes (mulberry32), so handshakes replay identically. */
export function seededRandom(seed: number): (n: number) => Uint8Array {
  let s = seed >>> 0;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[i] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
    }
    return out;
  };
}

export interface Side {
  readonly device: WgDevice<SimEndpoint>;
  readonly endpoint: SimEndpoint;
  /** The other side as our peer. */
  peer: WgPeer<SimEndpoint>;
  /** Plaintexts received (copies). */
  readonly received: Uint8Array[];
  readonly events: WgEvent<SimEndpoint>[];
  keepalivesReceived: number;
}

/**
 * Two WireGuard devices wired back to back through an in-memory network with a manual clock.
 * `deliver()` moves every pending transmit to the other side; a test can instead take them
 * with `take()` to drop, delay or reorder them.
 */
export class WgPair {
  now = 1_000_000;
  readonly a: Side;
  readonly b: Side;

  constructor(opts: {
    profileA: TimerProfile;
    profileB: TimerProfile;
    psk?: Uint8Array | undefined;
    seed?: number;
    pskB?: Uint8Array | undefined;
  }) {
    const rnd = seededRandom(opts.seed ?? 1);
    const mk = (name: string, ip: number[]): Side => ({
      device: new WgDevice<SimEndpoint>({
        privateKey: clampPrivateKey(rnd(32)),
        now: this.now,
        wallClockOffsetMs: 1.7e12,
        random: rnd,
      }),
      endpoint: { name, ip: Uint8Array.from(ip), port: 51820 },
      peer: undefined as never,
      received: [],
      events: [],
      keepalivesReceived: 0,
    });
    this.a = mk('a', [10, 0, 0, 1]);
    this.b = mk('b', [10, 0, 0, 2]);
    this.a.peer = this.a.device.addPeer({
      publicKey: this.b.device.publicKey,
      presharedKey: opts.psk,
      profile: opts.profileA,
    });
    this.b.peer = this.b.device.addPeer({
      publicKey: this.a.device.publicKey,
      presharedKey: opts.pskB ?? opts.psk,
      profile: opts.profileB,
    });
  }

  other(side: Side): Side {
    return side === this.a ? this.b : this.a;
  }

  /** Encrypts `payload` from `side` to its peer; returns the datagram or undefined if queued. */
  send(side: Side, payload: Uint8Array): Uint8Array | undefined {
    const buf = new Uint8Array(16 + payload.length + 16);
    buf.set(payload, 16);
    const n = side.device.encapsulate(side.peer, buf, 16, payload.length, this.now);
    return n > 0 ? buf.subarray(0, n) : undefined;
  }

  /** Hands a datagram to `to` as if it came from the other side. Returns the decap result. */
  receive(to: Side, datagram: Uint8Array, from: SimEndpoint = this.other(to).endpoint): number {
    const copy = Uint8Array.from(datagram);
    const r = to.device.decapsulate(copy, 0, copy.length, from, this.now);
    if (r === WG_DATA)
      to.received.push(copy.slice(to.device.rxOffset, to.device.rxOffset + to.device.rxLength));
    else if (r === 2) to.keepalivesReceived++;
    this.collectEvents(to);
    return r;
  }

  collectEvents(side: Side): void {
    for (let e = side.device.pollEvent(); e; e = side.device.pollEvent()) side.events.push(e);
  }

  /** Takes the transmits `side` has pending. */
  take(side: Side): WgTransmit<SimEndpoint>[] {
    const out: WgTransmit<SimEndpoint>[] = [];
    for (let t = side.device.pollTransmit(); t; t = side.device.pollTransmit()) out.push(t);
    this.collectEvents(side);
    return out;
  }

  /** Delivers everything pending, both ways, until quiet. Returns the number of datagrams moved. */
  deliver(): number {
    let moved = 0;
    for (let round = 0; round < 20; round++) {
      let n = 0;
      for (const side of [this.a, this.b]) {
        for (const t of this.take(side)) {
          const to = t.kind === 'peer' ? this.other(side) : t.to.name === 'a' ? this.a : this.b;
          this.receive(to, t.bytes, side.endpoint);
          n++;
        }
      }
      moved += n;
      if (n === 0) break;
    }
    return moved;
  }

  /** Advances the clock, running each device's due timers at their deadlines. */
  advance(ms: number, deliver = true): void {
    const end = this.now + ms;
    for (;;) {
      const next = Math.min(
        this.a.device.pollTimeout()?.at ?? Number.POSITIVE_INFINITY,
        this.b.device.pollTimeout()?.at ?? Number.POSITIVE_INFINITY,
      );
      if (next > end) break;
      this.now = Math.max(this.now, next);
      this.a.device.handleTimeout(this.now);
      this.b.device.handleTimeout(this.now);
      if (deliver) this.deliver();
      else {
        this.collectEvents(this.a);
        this.collectEvents(this.b);
      }
    }
    this.now = end;
  }
}
