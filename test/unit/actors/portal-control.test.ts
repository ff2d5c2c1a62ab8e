import { afterEach, describe, expect, it } from 'vitest';
import type { Gateway } from '../../../src/actors/gateway.js';
import {
  LEGACY_RESOLVE_TIMEOUT_MS,
  MAX_CONCURRENT_RESOLUTIONS,
  PORTAL_TUN_ROUTES,
  PortalControlPlane,
} from '../../../src/actors/portal-control.js';
import type { TunConfig } from '../../../src/io/tun.js';
import type { ClientId, RelayId, ResourceId } from '../../../src/wire/ids.js';
import { parseIp } from '../../../src/wire/ip/address.js';
import { FIREZONE_FWMARK, FIREZONE_TABLE } from '../../../src/wire/netlink/constants.js';
import type { Resource } from '../../../src/wire/policy.js';
import type { PortalMessage, Relay } from '../../../src/wire/portal/types.js';
import { buildPacket, v4 } from '../../support/packet-builder.js';
import { dnsResource, resource } from '../../support/router-sim.js';
import {
  type IceSimPeer,
  RELAY_IP,
  RELAY_PASSWORD,
  RELAY_USERNAME,
  world,
} from '../../support/sim-gateway.js';

const ALICE = '8e370367-64b2-4e27-83e2-27ce03bcce23' as ClientId;
const BOB = 'c654a3ff-6e0d-4a64-930a-1312fab876d8' as ClientId;
const LAB = resource('1844956a-9aca-4bf4-903b-27c7ebf18666', '172.20.1.0/24');
const DB = resource('410c6258-f8fd-43fe-a8e8-7b6e788c80a6', '172.20.2.0/24');
const LAB_HOST = v4(172, 20, 1, 10);
const DB_HOST = v4(172, 20, 2, 10);
const RELAY: Relay = {
  id: '41529b7d-f3e1-4b26-b01d-e34919d76e1b' as RelayId,
  addresses: [{ ip: parseIp(RELAY_IP)!, port: 3478 }],
  username: RELAY_USERNAME,
  password: RELAY_PASSWORD,
  expiresAtMs: 1_766_444_400_000,
};
const GATEWAY_ICE = { username: '52nj', password: '2hozxefbrdyashwpoq3v6w' };
const CLIENT_ICE = { username: 'hyik', password: 'k3rnzmulp3ccejwamasyfw' };
/** ICE credentials are unique per client and gateway (the portal derives them from both keys). */
const ICE: Record<string, { client: typeof CLIENT_ICE; gateway: typeof GATEWAY_ICE }> = {
  [ALICE]: { client: CLIENT_ICE, gateway: GATEWAY_ICE },
  [BOB]: {
    client: { username: 'b0bc', password: 'bobclientpassword01234' },
    gateway: { username: 'b0bg', password: 'bobgatewaypassword0123' },
  },
};

/** The client's tunnel IPv6: fd00:2021:1111::<last byte of its IPv4>. */
function v6Of(p: IceSimPeer): Uint8Array {
  return parseIp(`fd00:2021:1111::${p.tunnelIp[3]!.toString(16)}`)!;
}

function init(
  authorizations: { clientId: ClientId; resourceId: ResourceId; expiresAtMs: number }[],
  relays = [RELAY],
): PortalMessage {
  return {
    type: 'init',
    interface: { ipv4: v4(100, 64, 0, 1), ipv6: parseIp('fd00:2021:1111::1')! },
    relays,
    accountSlug: 'acme',
    authorizations,
  };
}

function setup() {
  let control: PortalControlPlane | undefined;
  const w = world({
    onClientRemoved: (id, reason) => control?.clientRemoved(id, reason),
    onCandidates: (id, added, removed) => control?.localCandidates(id, added, removed),
  });
  const sent: { event: string; payload: unknown }[] = [];
  const broadcasts: { event: string; payload: unknown }[] = [];
  const tunConfigs: TunConfig[] = [];
  const fatal: string[] = [];
  let reconnects = 0;
  const resolved: string[] = [];
  const dnsAnswers = new Map<string, Uint8Array[]>();
  const logs: { level: string; msg: string; obj: object }[] = [];
  control = new PortalControlPlane({
    gateway: w.gateway,
    configureTun: async (cfg) => {
      tunConfigs.push(cfg);
    },
    // Candidate broadcasts are kept apart: the tests below look at the replies.
    send: (event, payload) => (event.startsWith('broadcast_') ? broadcasts : sent).push({ event, payload }),
    reconnect: () => reconnects++,
    resolve: async (name) => {
      resolved.push(name);
      // A name the test wants unanswered: a lookup that never finishes.
      if (name.startsWith('slow.')) return new Promise<Uint8Array[]>(() => undefined);
      const a = dnsAnswers.get(name);
      if (!a) throw new Error('NXDOMAIN');
      return a;
    },
    fatal: (r) => fatal.push(r),
    random: w.rnd,
    clock: w.clock,
    log: {
      info: (obj, msg) => logs.push({ level: 'info', msg, obj }),
      warn: (obj, msg) => logs.push({ level: 'warn', msg, obj }),
      error: (obj, msg) => logs.push({ level: 'error', msg, obj }),
      debug: (obj, msg) => logs.push({ level: 'debug', msg, obj }),
    },
  });
  const cp = control;
  /** A portal client: a simulated Firezone client whose keys the portal hands to the gateway. */
  const client = (id: ClientId) => {
    const psk = w.rnd(32);
    const peer = w.icePeer(id, psk);
    return { peer, psk, id };
  };
  const authorize = (
    c: { peer: IceSimPeer; psk: Uint8Array; id: ClientId },
    res: Resource,
    expiresAtMs?: number,
    ref = `ref-${res.id}`,
  ) =>
    cp.handle({
      type: 'authorize_flow',
      ref,
      resource: res,
      client: {
        id: c.id,
        publicKey: c.peer.device.publicKey,
        presharedKey: c.psk,
        ipv4: c.peer.tunnelIp,
        ipv6: v6Of(c.peer),
      },
      clientIce: ICE[c.id]!.client,
      gatewayIce: ICE[c.id]!.gateway,
      expiresAtMs,
    });
  /** Sends one UDP packet from the client to `dst` and returns what came back (decrypted). */
  const probe = (p: IceSimPeer, dst: Uint8Array) => {
    const before = p.received.length;
    const written = w.tun.written.length;
    p.send(buildPacket({ src: p.tunnelIp, dst, l4: { kind: 'udp', srcPort: 40000, dstPort: 53 } }));
    w.settle();
    const back = p.received.slice(before);
    if (w.tun.written.length > written) return 'forwarded';
    const icmp = back.find((x) => x.icmpType !== undefined);
    return icmp ? `icmp ${icmp.icmpType}/${icmp.icmpCode}` : 'dropped';
  };
  return {
    w,
    control: cp,
    sent,
    broadcasts,
    tunConfigs,
    fatal,
    reconnects: () => reconnects,
    resolved,
    dnsAnswers,
    logs,
    client,
    authorize,
    probe,
  };
}

let gateways: Gateway[] = [];
afterEach(async () => {
  for (const g of gateways) await g.stop();
  gateways = [];
});

function fixture() {
  const s = setup();
  gateways.push(s.w.gateway);
  return s;
}

/** After `init`: alice authorized for `resources` (without expiry) and connected. */
function connectedAlice(...resources: Resource[]) {
  const s = fixture();
  s.control.handle(init([]));
  const alice = s.client(ALICE);
  for (const r of resources) s.authorize(alice, r);
  s.w.connect(alice.peer);
  return { s, alice };
}

describe('portal control plane: init (§2.1, dataplane §9.1)', () => {
  it('configures the TUN device (addresses, the tunnel routes, the fwmark rule) and keeps the relays', async () => {
    const s = fixture();
    s.control.handle(init([]));
    await s.control.settled();
    expect(s.tunConfigs).toEqual([
      {
        ipv4: '100.64.0.1',
        ipv6: 'fd00:2021:1111::1',
        routes: PORTAL_TUN_ROUTES,
        table: FIREZONE_TABLE,
        fwmarkRule: { mark: FIREZONE_FWMARK, table: FIREZONE_TABLE },
      },
    ]);
    expect(PORTAL_TUN_ROUTES).toEqual(['100.64.0.0/11', 'fd00:2021:1111::/107']);
    expect(s.control.relays.map((r) => r.id)).toEqual([RELAY.id]);
    expect(s.logs.find((l) => l.msg === 'Applied init')?.obj).toMatchObject({
      first: true,
      relays: 1,
      authorizations: 0,
    });
  });

  it('a TUN configuration the kernel refuses is fatal', async () => {
    const s = fixture();
    const control = new PortalControlPlane({
      gateway: s.w.gateway,
      configureTun: () => Promise.reject(new Error('EPERM')),
      send: () => undefined,
      reconnect: () => undefined,
      resolve: async () => [],
      fatal: (r) => s.fatal.push(r),
      random: s.w.rnd,
      clock: s.w.clock,
      log: { info: () => undefined, warn: () => undefined, error: () => undefined },
    });
    control.handle(init([]));
    await control.settled();
    expect(s.fatal).toEqual(['configuring the TUN device failed: EPERM']);
  });

  it('revokes what a re-init no longer lists: a dropped resource answers ICMP prohibited, an omitted client is removed', () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    const bob = s.client(BOB);
    s.authorize(alice, LAB);
    s.authorize(alice, DB);
    s.authorize(bob, LAB);
    s.w.connect(alice.peer);
    s.w.connect(bob.peer);
    expect(s.probe(alice.peer, DB_HOST)).toBe('forwarded');
    expect(s.probe(alice.peer, DB_HOST)).toBe('forwarded');
    // The portal restarted: only alice → lab is still authorized; bob is not listed at all.
    s.control.handle(
      init([{ clientId: ALICE, resourceId: LAB.id, expiresAtMs: s.w.clock.wallNow() + 3_600_000 }]),
    );
    expect(s.probe(alice.peer, LAB_HOST)).toBe('forwarded');
    expect(s.probe(alice.peer, DB_HOST)).toBe('icmp 3/13');
    expect(s.w.gateway.supervisedClients()).toEqual([ALICE]);
    expect(s.probe(bob.peer, LAB_HOST)).toBe('dropped');
    expect(s.control.authorizations()).toEqual({ [ALICE]: [LAB.id] });
    expect(s.logs.filter((l) => l.msg === 'Revoking resource authorization')).toHaveLength(2);
  });

  it('applies the listed expiry to existing pairs', () => {
    const { s, alice } = connectedAlice(LAB, DB);
    const now = s.w.clock.wallNow();
    s.control.handle(
      init([
        { clientId: ALICE, resourceId: LAB.id, expiresAtMs: now + 5_000 },
        { clientId: ALICE, resourceId: DB.id, expiresAtMs: now + 3_600_000 },
      ]),
    );
    s.w.clock.advance(6_000);
    s.w.settle();
    expect(s.probe(alice.peer, LAB_HOST)).toBe('icmp 3/13');
    expect(s.probe(alice.peer, DB_HOST)).toBe('forwarded');
  });
});

describe('portal control plane: authorize_flow (§2.2, dataplane §9.2)', () => {
  it('installs the client with the Firezone profile, records the ICE credentials, and replies flow_authorized', () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    s.authorize(alice, LAB, undefined, 'SFMyNTY.signed');
    expect(s.sent).toEqual([{ event: 'flow_authorized', payload: { ref: 'SFMyNTY.signed' } }]);
    const snap = s.w.gateway.clientSnapshot(ALICE)!;
    expect(s.w.gateway.clientState(ALICE)).toBe('authorized');
    expect(s.w.gateway.pathState(ALICE)).toBe('checking');
    expect(snap.context.ice).toEqual({ local: GATEWAY_ICE, remote: CLIENT_ICE });
    // Once the relay answered, our candidates went to the client through the portal.
    s.w.settle();
    expect(s.broadcasts[0]).toMatchObject({
      event: 'broadcast_ice_candidates',
      payload: { client_ids: [ALICE] },
    });
    s.w.connect(alice.peer);
    expect(s.w.gateway.clientState(ALICE)).toBe('connected');
    expect(s.w.gateway.pathState(ALICE)).toBe('selected');
    expect(s.probe(alice.peer, LAB_HOST)).toBe('forwarded');
    // Not authorized for the other resource.
    expect(s.probe(alice.peer, DB_HOST)).toBe('icmp 3/13');
  });

  it('a second flow for the same client adds the resource and keeps the WireGuard session', () => {
    const { s, alice } = connectedAlice(LAB);
    const handshakes = s.w.gateway.router.wg.peerByPublicKey(alice.peer.device.publicKey)!.stats
      .handshakesCompleted;
    s.authorize(alice, DB);
    expect(s.probe(alice.peer, DB_HOST)).toBe('forwarded');
    expect(
      s.w.gateway.router.wg.peerByPublicKey(alice.peer.device.publicKey)!.stats.handshakesCompleted,
    ).toBe(handshakes);
    expect(s.sent.map((m) => m.event)).toEqual(['flow_authorized', 'flow_authorized']);
  });

  it('new ICE credentials replace the connection (a new actor), keeping the authorizations', () => {
    const { s, alice } = connectedAlice(LAB);
    s.control.handle({
      type: 'authorize_flow',
      ref: 'r2',
      resource: DB,
      client: {
        id: ALICE,
        publicKey: alice.peer.device.publicKey,
        presharedKey: alice.psk,
        ipv4: alice.peer.tunnelIp,
        ipv6: v6Of(alice.peer),
      },
      clientIce: { username: 'new1', password: 'newpasswordnewpassword' },
      gatewayIce: GATEWAY_ICE,
      expiresAtMs: undefined,
    });
    expect(s.w.gateway.clientState(ALICE)).toBe('authorized');
    // The client starts a new session too (after WireGuard's 5 s handshake rate limit).
    s.w.clock.advance(5_001);
    s.w.connect(alice.peer);
    expect(s.probe(alice.peer, LAB_HOST)).toBe('forwarded');
    expect(s.probe(alice.peer, DB_HOST)).toBe('forwarded');
  });

  it('without relays: no reply, and the portal connection is renewed for a fresh init', () => {
    const s = fixture();
    s.control.handle(init([], []));
    s.authorize(s.client(ALICE), LAB);
    expect(s.sent).toEqual([]);
    expect(s.reconnects()).toBe(1);
    expect(s.w.gateway.supervisedClients()).toEqual([]);
  });

  it('a client that cannot be installed (its key belongs to another client) gets no reply', () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    s.authorize(alice, LAB);
    const impostor = { ...s.client(BOB), peer: alice.peer };
    s.authorize(impostor, DB, undefined, 'bob-ref');
    expect(s.sent.map((m) => (m.payload as { ref: string }).ref)).toEqual([`ref-${LAB.id}`]);
    expect(s.w.gateway.supervisedClients()).toEqual([ALICE]);
    expect(s.control.authorizations()).toEqual({ [ALICE]: [LAB.id] });
  });

  it('a tunnel address the portal reassigns moves to the new client', () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    const bob = s.client(BOB);
    s.authorize(alice, LAB);
    s.w.connect(alice.peer);
    s.control.handle({
      type: 'authorize_flow',
      ref: 'b',
      resource: LAB,
      client: {
        id: BOB,
        publicKey: bob.peer.device.publicKey,
        presharedKey: bob.psk,
        ipv4: alice.peer.tunnelIp,
        ipv6: v6Of(bob.peer),
      },
      clientIce: ICE[BOB]!.client,
      gatewayIce: ICE[BOB]!.gateway,
      expiresAtMs: undefined,
    });
    expect(s.logs.length).toBeGreaterThan(0);
    expect(s.w.logs).toContain('Tunnel address taken over from another client');
    // Alice may no longer send from the address the portal gave bob.
    expect(s.probe(alice.peer, LAB_HOST)).toBe('icmp 3/13');
  });

  it('before any init: not authorized and no reply', () => {
    const s = fixture();
    s.authorize(s.client(ALICE), LAB);
    expect(s.sent).toEqual([]);
    expect(s.w.gateway.supervisedClients()).toEqual([]);
  });

  it('re-authorization refreshes the expiry (the reference later fixed this too)', () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    const now = s.w.clock.wallNow();
    s.authorize(alice, LAB, now + 5_000);
    s.authorize(alice, DB);
    s.w.connect(alice.peer);
    s.authorize(alice, LAB, now + 60_000);
    s.w.run(10_000);
    expect(s.probe(alice.peer, LAB_HOST)).toBe('forwarded');
    s.w.run(51_000);
    expect(s.probe(alice.peer, LAB_HOST)).toBe('icmp 3/13');
  });

  it('a client whose every authorization expired is removed within the 1 s sweep, and a later flow starts afresh', () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    const now = s.w.clock.wallNow();
    s.authorize(alice, LAB, now + 2_000);
    s.w.connect(alice.peer);
    s.w.clock.advance(2_999);
    s.w.settle();
    expect(s.w.gateway.supervisedClients()).toEqual([]);
    expect(s.control.authorizations()).toEqual({});
    // The expired LAB grant does not come back with a flow for DB.
    s.authorize(alice, DB);
    expect(s.control.authorizations()).toEqual({ [ALICE]: [DB.id] });
  });
});

describe('portal control plane: other messages (§2.5–§2.9)', () => {
  it('reject_access removes one resource; the last one removes the client', () => {
    const { s, alice } = connectedAlice(LAB, DB);
    s.control.handle({ type: 'reject_access', clientId: ALICE, resourceId: DB.id });
    expect(s.probe(alice.peer, DB_HOST)).toBe('icmp 3/13');
    expect(s.probe(alice.peer, LAB_HOST)).toBe('forwarded');
    // Unknown pairs are a no-op.
    s.control.handle({ type: 'reject_access', clientId: BOB, resourceId: LAB.id });
    s.control.handle({ type: 'reject_access', clientId: ALICE, resourceId: LAB.id });
    expect(s.w.gateway.supervisedClients()).toEqual([]);
    expect(s.probe(alice.peer, LAB_HOST)).toBe('dropped');
  });

  it('resource_updated replaces the filters only', () => {
    const { s, alice } = connectedAlice(LAB);
    expect(s.probe(alice.peer, LAB_HOST)).toBe('forwarded');
    // New filters (TCP 443 only) and a new address, which is ignored.
    const updated = resource(LAB.id, '10.0.0.0/8', [{ protocol: 'tcp', portStart: 443, portEnd: 443 }]);
    s.control.handle({ type: 'resource_updated', resource: updated });
    expect(s.probe(alice.peer, LAB_HOST)).toBe('icmp 3/13');
    expect(s.probe(alice.peer, v4(10, 1, 1, 1))).toBe('icmp 3/13');
    // A type change is refused.
    s.control.handle({ type: 'resource_updated', resource: dnsResource(LAB.id, '*.corp.example') });
    expect(s.logs.some((l) => l.level === 'error' && l.msg.includes('changes the type'))).toBe(true);
  });

  it('access_authorization_expiry_updated can shorten an authorization', () => {
    const { s, alice } = connectedAlice(LAB, DB);
    s.control.handle({
      type: 'access_authorization_expiry_updated',
      clientId: ALICE,
      resourceId: LAB.id,
      expiresAtMs: s.w.clock.wallNow() + 1_000,
    });
    s.w.clock.advance(2_000);
    s.w.settle();
    expect(s.probe(alice.peer, LAB_HOST)).toBe('icmp 3/13');
    s.control.handle({
      type: 'access_authorization_expiry_updated',
      clientId: BOB,
      resourceId: LAB.id,
      expiresAtMs: 0,
    });
    expect(s.logs.some((l) => l.msg === 'Expiry update for an unknown client ignored')).toBe(true);
  });

  it('records ICE candidates on the connection actor and forgets invalidated ones', () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    s.authorize(alice, LAB);
    const c1 = 'candidate:1 1 udp 2130706175 192.0.2.44 40123 typ host';
    const c2 = 'candidate:2 1 udp 1694498559 198.51.100.7 40123 typ srflx raddr 192.0.2.44 rport 40123';
    s.control.handle({ type: 'ice_candidates', clientId: ALICE, candidates: [c1, c2] });
    s.control.handle({ type: 'ice_candidates', clientId: ALICE, candidates: [c1] });
    s.control.handle({ type: 'invalidate_ice_candidates', clientId: ALICE, candidates: [c1] });
    s.control.handle({ type: 'ice_candidates', clientId: BOB, candidates: [c1] });
    expect(s.w.gateway.clientSnapshot(ALICE)!.context.remoteCandidates).toEqual([c2]);
  });

  it('relays_presence removes the disconnected relays and adds the connected ones', () => {
    const s = fixture();
    s.control.handle(init([]));
    const other: Relay = { ...RELAY, id: 'f3e96854-f1f6-4e43-b751-9aa6c27b1fda' as RelayId };
    s.control.handle({ type: 'relays_presence', disconnectedIds: [RELAY.id], connected: [other] });
    expect(s.control.relays.map((r) => r.id)).toEqual([other.id]);
  });
});

describe('portal control plane: the legacy 1.3 flow (§2.3–§2.4)', () => {
  const WIKI = dnsResource('ec18cd0b-11ac-47e4-80a4-af6ac3fae473', '*.corp.example');
  const PROXY = v4(100, 96, 0, 9);

  function requestConnection(
    s: ReturnType<typeof fixture>,
    c: ReturnType<ReturnType<typeof fixture>['client']>,
    res: Resource,
    domain?: string,
  ) {
    s.control.handle({
      type: 'request_connection',
      ref: 'legacy-ref',
      resource: res,
      clientId: c.id,
      clientIce: CLIENT_ICE,
      domain: domain ? { name: domain, proxyIps: [PROXY] } : undefined,
      peer: {
        publicKey: c.peer.device.publicKey,
        presharedKey: c.psk,
        ipv4: c.peer.tunnelIp,
        ipv6: v6Of(c.peer),
      },
      expiresAtMs: undefined,
    });
  }

  it('request_connection accepts with fresh random ICE credentials and answers connection_ready', async () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    requestConnection(s, alice, LAB);
    await Promise.resolve();
    expect(s.sent).toHaveLength(1);
    const reply = s.sent[0]!;
    expect(reply.event).toBe('connection_ready');
    const payload = reply.payload as {
      ref: string;
      gateway_payload: { ConnectionAccepted: { ice_parameters: { username: string; password: string } } };
    };
    expect(payload.ref).toBe('legacy-ref');
    const ice = payload.gateway_payload.ConnectionAccepted.ice_parameters;
    expect(ice.username).toMatch(/^[a-z0-9]{4}$/);
    expect(ice.password).toMatch(/^[a-z0-9]{22}$/);
    expect(s.w.gateway.clientSnapshot(ALICE)!.context.ice).toEqual({ local: ice, remote: CLIENT_ICE });
    s.w.connect(alice.peer);
    expect(s.probe(alice.peer, LAB_HOST)).toBe('forwarded');
  });

  it('a DNS resource: resolves the domain and translates the proxy IP onto the real address', async () => {
    const s = fixture();
    s.control.handle(init([]));
    s.dnsAnswers.set('wiki.corp.example', [v4(172, 20, 1, 77)]);
    const alice = s.client(ALICE);
    requestConnection(s, alice, WIKI, 'wiki.corp.example');
    await new Promise((r) => setImmediate(r));
    expect(s.resolved).toEqual(['wiki.corp.example']);
    expect(s.sent.map((m) => m.event)).toEqual(['connection_ready']);
    s.w.connect(alice.peer);
    expect(s.probe(alice.peer, PROXY)).toBe('forwarded');
    const out = s.w.tun.written.at(-1)!;
    expect([...out.subarray(16, 20)]).toEqual([172, 20, 1, 77]);
  });

  it('gives up on a lookup after 10 s, and runs at most 1000 at once', async () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    for (let i = 0; i <= MAX_CONCURRENT_RESOLUTIONS; i++)
      requestConnection(s, alice, WIKI, 'slow.corp.example');
    await new Promise((r) => setImmediate(r));
    expect(s.resolved).toHaveLength(MAX_CONCURRENT_RESOLUTIONS);
    const failed = () => s.logs.filter((l) => l.msg === 'Resolving failed: connection not accepted');
    expect(failed().map((l) => (l.obj as { err: string }).err)).toEqual(['1000 resolutions already running']);
    s.w.clock.advance(LEGACY_RESOLVE_TIMEOUT_MS);
    await new Promise((r) => setImmediate(r));
    expect(failed()).toHaveLength(MAX_CONCURRENT_RESOLUTIONS + 1);
    expect(s.sent).toEqual([]);
    // The slots are free again.
    s.dnsAnswers.set('wiki.corp.example', [v4(172, 20, 1, 77)]);
    requestConnection(s, alice, WIKI, 'wiki.corp.example');
    await new Promise((r) => setImmediate(r));
    expect(s.sent.map((m) => m.event)).toEqual(['connection_ready']);
  });

  it('a domain that does not resolve gets no reply at all', async () => {
    const s = fixture();
    s.control.handle(init([]));
    requestConnection(s, s.client(ALICE), WIKI, 'nope.corp.example');
    await new Promise((r) => setImmediate(r));
    expect(s.sent).toEqual([]);
    expect(s.w.gateway.supervisedClients()).toEqual([]);
  });

  it('a domain outside the resource pattern: the connection is closed and nothing is sent', async () => {
    const s = fixture();
    s.control.handle(init([]));
    s.dnsAnswers.set('evil.example', [v4(172, 20, 1, 77)]);
    requestConnection(s, s.client(ALICE), WIKI, 'evil.example');
    await new Promise((r) => setImmediate(r));
    expect(s.sent).toEqual([]);
    expect(s.w.gateway.supervisedClients()).toEqual([]);
  });

  it('allow_access adds a resource to an existing connection without a reply', async () => {
    const s = fixture();
    s.control.handle(init([]));
    const alice = s.client(ALICE);
    requestConnection(s, alice, LAB);
    await Promise.resolve();
    s.w.connect(alice.peer);
    s.control.handle({
      type: 'allow_access',
      ref: 'x',
      clientId: ALICE,
      resource: DB,
      expiresAtMs: undefined,
      domain: undefined,
      clientIpv4: alice.peer.tunnelIp,
      clientIpv6: v6Of(alice.peer),
    });
    await Promise.resolve();
    expect(s.sent.map((m) => m.event)).toEqual(['connection_ready']);
    expect(s.probe(alice.peer, DB_HOST)).toBe('forwarded');
  });
});
