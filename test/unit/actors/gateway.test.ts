import { afterEach, describe, expect, it } from 'vitest';
import type { Gateway } from '../../../src/actors/gateway.js';
import type { ClientId } from '../../../src/wire/ids.js';
import { IpPacket } from '../../../src/wire/ip/packet.js';
import { buildPacket, v4 } from '../../support/packet-builder.js';
import { grants, resource } from '../../support/router-sim.js';
import { world } from '../../support/sim-gateway.js';

const LAB = v4(172, 20, 1, 10);

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
    // Mallory claims Alice's WireGuard key: installing her makes the router throw inside her actor.
    const clash = mallory.policy(lab);
    w.gateway.applyPolicy([
      alice.policy(lab),
      { ...clash, spec: { ...clash.spec, publicKey: alice.device.publicKey } },
    ]);
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
