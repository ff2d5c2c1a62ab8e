import { afterEach, describe, expect, it } from 'vitest';
import { TestClock } from '../../../src/actors/clock.js';
import { type ClientPolicy, Gateway } from '../../../src/actors/gateway.js';
import { MemoryTun } from '../../../src/io/memory-tun.js';
import { MemoryUdpNetwork, type MemoryUdpSocket } from '../../../src/io/memory-udp.js';
import { datagramSource } from '../../../src/io/packet-batch.js';
import type { RouterEndpoint } from '../../../src/router/router.js';
import type { ClientId } from '../../../src/wire/ids.js';
import { parseIp } from '../../../src/wire/ip/address.js';
import { IpPacket } from '../../../src/wire/ip/packet.js';
import type { Grant } from '../../../src/wire/policy.js';
import { STANDARD_PROFILE } from '../../../src/wire/wireguard/constants.js';
import { clampPrivateKey } from '../../../src/wire/wireguard/crypto.js';
import { WG_DATA, WgDevice } from '../../../src/wire/wireguard/device.js';
import type { WgPeer } from '../../../src/wire/wireguard/peer.js';
import { buildPacket, v4 } from '../../support/packet-builder.js';
import { grants, resource } from '../../support/router-sim.js';
import { seededRandom } from '../../support/wg-pair.js';

const LAB = v4(172, 20, 1, 10);
const GW = parseIp('10.10.0.1')!;

/** A plain WireGuard peer on the simulated network, talking to the gateway. */
class SimPeer {
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
  ) {
    this.tunnelIp = v4(100, 64, 0, host);
    this.device = new WgDevice({
      privateKey: clampPrivateKey(rnd(32)),
      now: clock.now(),
      wallClockOffsetMs: 0,
      random: rnd,
    });
    this.peer = this.device.addPeer({ publicKey: gatewayKey, profile: STANDARD_PROFILE });
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

function world() {
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
  });
  gateway.setInterface(v4(100, 64, 0, 1), undefined);
  gateway.start();
  let host = 2;
  const peer = (name: string) =>
    new SimPeer(
      name,
      net.open({ family: 4, address: `10.10.0.${host}` }),
      gateway.publicKey,
      host++,
      clock,
      rnd,
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
  return { clock, net, tun, gateway, logs, peer, settle, connect };
}

let current: Gateway | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

describe('gateway: actors over the router', () => {
  it('takes a client from authorized through handshaking to connected, and forwards its traffic both ways', () => {
    const w = world();
    current = w.gateway;
    const alice = w.peer('alice');
    w.gateway.applyPolicy([alice.policy(grants(resource('lab', '172.20.1.0/24')))]);
    expect(w.gateway.clientState('alice')).toBe('authorized');
    w.connect(alice);
    expect(w.gateway.clientState('alice')).toBe('connected');
    alice.send(
      buildPacket({ src: alice.tunnelIp, dst: LAB, l4: { kind: 'udp', srcPort: 1000, dstPort: 53 } }),
    );
    w.settle();
    expect(w.tun.written).toHaveLength(1);
    w.tun.inject(
      buildPacket({ src: LAB, dst: alice.tunnelIp, l4: { kind: 'udp', srcPort: 53, dstPort: 1000 } }),
    );
    w.tun.deliver();
    w.settle();
    expect(alice.received.map((p) => p.srcPort)).toEqual([53]);
  });

  it('goes idle after 20 s without traffic and back to connected with the next packet', () => {
    const w = world();
    current = w.gateway;
    const alice = w.peer('alice');
    w.gateway.applyPolicy([alice.policy(grants(resource('lab', '172.20.1.0/24')))]);
    w.connect(alice);
    alice.send(buildPacket({ src: alice.tunnelIp, dst: LAB, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }));
    w.settle();
    w.clock.advance(21_000);
    w.settle();
    expect(w.gateway.clientState('alice')).toBe('idle');
    alice.send(buildPacket({ src: alice.tunnelIp, dst: LAB, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }));
    w.settle();
    expect(w.gateway.clientState('alice')).toBe('connected');
  });

  it('revokes a client left out of a new policy at once, while the others keep their sessions', () => {
    const w = world();
    current = w.gateway;
    const alice = w.peer('alice');
    const bob = w.peer('bob');
    const lab = grants(resource('lab', '172.20.1.0/24'));
    w.gateway.applyPolicy([alice.policy(lab), bob.policy(lab)]);
    w.connect(alice);
    w.connect(bob);
    const bobHandshakes = w.gateway.router.wg.peerByPublicKey(bob.device.publicKey)!.stats
      .handshakesCompleted;
    w.gateway.applyPolicy([bob.policy(lab)]);
    expect(w.gateway.supervisedClients()).toEqual(['bob']);
    expect(w.gateway.router.hasClient('alice' as ClientId)).toBe(false);
    alice.send(buildPacket({ src: alice.tunnelIp, dst: LAB, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }));
    bob.send(buildPacket({ src: bob.tunnelIp, dst: LAB, l4: { kind: 'udp', srcPort: 3, dstPort: 4 } }));
    w.settle();
    expect(
      w.tun.written.map(
        (p) => IpPacket.parse(p).ok && (IpPacket.parse(p) as { value: IpPacket }).value.srcPort,
      ),
    ).toEqual([3]);
    expect(w.gateway.router.wg.peerByPublicKey(bob.device.publicKey)!.stats.handshakesCompleted).toBe(
      bobHandshakes,
    );
  });

  it('applies changed grants without touching the session, and replaces a client whose key changed', () => {
    const w = world();
    current = w.gateway;
    const alice = w.peer('alice');
    w.gateway.applyPolicy([alice.policy(grants(resource('lab', '172.20.1.0/24')))]);
    w.connect(alice);
    w.gateway.applyPolicy([
      alice.policy(
        grants(resource('lab', '172.20.1.0/24', [{ protocol: 'tcp', portStart: 443, portEnd: 443 }])),
      ),
    ]);
    expect(w.gateway.clientState('alice')).toBe('connected');
    expect(w.gateway.router.describePolicy('alice' as ClientId)).toEqual(['172.20.1.0/24 → tcp:443']);
    const other = w.peer('alice-new-key');
    w.gateway.applyPolicy([
      {
        ...other.policy(grants(resource('lab', '172.20.1.0/24'))),
        spec: { ...other.policy([]).spec, id: 'alice' as ClientId, ipv4: alice.tunnelIp },
      },
    ]);
    expect(w.gateway.clientState('alice')).toBe('authorized');
    expect(w.gateway.router.wg.peerByPublicKey(alice.device.publicKey)).toBeUndefined();
    expect(w.gateway.router.wg.peerByPublicKey(other.device.publicKey)).toBeDefined();
  });

  it('removes a client when its last grant expires', () => {
    const w = world();
    current = w.gateway;
    const alice = w.peer('alice');
    w.gateway.applyPolicy([
      alice.policy([{ resource: resource('lab', '172.20.1.0/24'), expiresAtMs: w.clock.wallNow() + 5_000 }]),
    ]);
    w.connect(alice);
    w.clock.advance(4_000);
    expect(w.gateway.clientState('alice')).toBe('connected');
    w.clock.advance(2_000);
    expect(w.gateway.supervisedClients()).toEqual([]);
    expect(w.gateway.router.hasClient('alice' as ClientId)).toBe(false);
    expect(w.logs).toContain('Access to resource expired');
  });

  it('contains an exception inside one client actor: that client is cleaned up, the others carry on', () => {
    const w = world();
    current = w.gateway;
    const alice = w.peer('alice');
    const mallory = w.peer('mallory');
    const lab = grants(resource('lab', '172.20.1.0/24'));
    // Mallory claims Alice's tunnel address: installing her makes the router throw inside her actor.
    w.gateway.applyPolicy([alice.policy(lab), mallory.policy(lab, { ipv4: alice.tunnelIp })]);
    expect(w.gateway.supervisedClients()).toEqual(['alice']);
    expect(w.gateway.router.hasClient('mallory' as ClientId)).toBe(false);
    w.connect(alice);
    alice.send(buildPacket({ src: alice.tunnelIp, dst: LAB, l4: { kind: 'udp', srcPort: 1, dstPort: 2 } }));
    w.settle();
    expect(w.tun.written).toHaveLength(1);
    // The supervisor keeps working: the next policy still applies.
    w.gateway.applyPolicy([alice.policy(lab), mallory.policy(lab)]);
    expect(w.gateway.supervisedClients().sort()).toEqual(['alice', 'mallory']);
  });
});
