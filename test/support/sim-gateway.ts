import { TestClock } from '../../src/actors/clock.js';
import { type ClientPolicy, Gateway, type GatewayOptions } from '../../src/actors/gateway.js';
import { MemoryTun } from '../../src/io/memory-tun.js';
import { MemoryUdpNetwork, type MemoryUdpSocket } from '../../src/io/memory-udp.js';
import { datagramSource } from '../../src/io/packet-batch.js';
import type { RouterEndpoint } from '../../src/router/router.js';
import type { ClientId } from '../../src/wire/ids.js';
import { parseIp } from '../../src/wire/ip/address.js';
import { IpPacket } from '../../src/wire/ip/packet.js';
import type { Grant } from '../../src/wire/policy.js';
import { STANDARD_PROFILE, type TimerProfile } from '../../src/wire/wireguard/constants.js';
import { clampPrivateKey } from '../../src/wire/wireguard/crypto.js';
import { WG_DATA, WgDevice } from '../../src/wire/wireguard/device.js';
import type { WgPeer } from '../../src/wire/wireguard/peer.js';
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

export function world(extra: Partial<GatewayOptions> = {}) {
  const clock = new TestClock();
  const rnd = seededRandom(7);
  const net = new MemoryUdpNetwork();
  const tun = new MemoryTun();
  const logs: string[] = [];
  const log = {
    info: (_: object, m: string) => logs.push(m),
    warn: (_: object, m: string) => logs.push(m),
    error: (_: object, m: string) => logs.push(m),
  };
  const gateway = new Gateway({
    privateKey: clampPrivateKey(rnd(32)),
    clock,
    tun,
    udp4: net.open({ family: 4, address: '10.10.0.1', port: 51820 }),
    udp6: undefined,
    log,
    random: rnd,
    ...extra,
  });
  gateway.setInterface(v4(100, 64, 0, 1), undefined);
  gateway.start();
  let host = 2;
  const peer = (name: string, opts: { profile?: TimerProfile; presharedKey?: Uint8Array } = {}) =>
    new SimPeer(
      name,
      net.open({ family: 4, address: `10.10.0.${host}` }),
      gateway.publicKey,
      host++,
      clock,
      rnd,
      opts.profile,
      opts.presharedKey,
    );
  /** Lets the network and the clock settle. */
  const settle = () => {
    for (let i = 0; i < 20 && net.deliver() > 0; i++);
  };
  const connect = (p: SimPeer) => {
    p.device.initiateHandshake(p.peer, clock.now());
    p.flush();
    settle();
  };
  return { clock, net, tun, gateway, logs, peer, settle, connect, rnd };
}
