import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ICE_DEFAULT_TIMING,
  ICE_IDLE_TIMING,
  IceAgent,
  type IceEvent,
  type IceVia,
} from '../../../../src/wire/ice/agent.js';
import { formatCandidate, parseCandidate } from '../../../../src/wire/ice/candidate.js';
import { parseIp } from '../../../../src/wire/ip/address.js';
import { ATTR_USE_CANDIDATE, METHOD_BINDING } from '../../../../src/wire/stun/constants.js';
import {
  attribute,
  decodeStun,
  StunBuilder,
  type TransportAddress,
} from '../../../../src/wire/stun/message.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';
import { seededRandom } from '../../../support/wg-pair.js';

const CLIENT_ICE = { username: 'hyik', password: 'k3rnzmulp3ccejwamasyfw' };
const GATEWAY_ICE = { username: '52nj', password: '2hozxefbrdyashwpoq3v6w' };
const addr = (text: string, port: number): TransportAddress => ({ ip: parseIp(text)!, port });
const key = (a: TransportAddress) => `${[...a.ip].join('.')}:${a.port}`;

const CLIENT_HOST = addr('10.0.0.2', 5000);
const GATEWAY_HOST = addr('10.0.0.1', 52625);
const RELAYED = addr('198.51.100.9', 50000);

/**
 * Two agents on a simulated network: the client (controlling) and the gateway (controlled).
 * Datagrams to the gateway's relayed address arrive at the gateway "through the relay"; `block`
 * drops direct traffic between the two host addresses.
 */
function world(opts: { blockDirect?: boolean; signal?: boolean } = {}) {
  const rnd = seededRandom(3);
  const client = new IceAgent({ controlling: true, local: CLIENT_ICE, remote: GATEWAY_ICE, random: rnd });
  const gateway = new IceAgent({
    controlling: false,
    local: GATEWAY_ICE,
    remote: CLIENT_ICE,
    random: rnd,
    transactionPrefix: Uint8Array.of(0xab, 0xcd, 0xef),
  });
  let now = 0;
  let dead = false;
  let blockDirect = opts.blockDirect ?? false;
  const events: { client: IceEvent[]; gateway: IceEvent[] } = { client: [], gateway: [] };
  const sent: { from: 'client' | 'gateway'; to: string; useCandidate: boolean; txPrefix: number[] }[] = [];
  const ch = client.addLocalCandidate(
    { kind: 'host', addr: CLIENT_HOST, base: CLIENT_HOST, via: { kind: 'direct' } },
    now,
  )!;
  const gh = gateway.addLocalCandidate(
    { kind: 'host', addr: GATEWAY_HOST, base: GATEWAY_HOST, via: { kind: 'direct' } },
    now,
  )!;
  const gr = gateway.addLocalCandidate(
    { kind: 'relay', addr: RELAYED, base: RELAYED, via: { kind: 'relay', relay: 'r1' } },
    now,
  )!;
  if (opts.signal ?? true) {
    for (const c of [gh, gr]) client.addRemoteCandidate(formatCandidate(c), now);
    gateway.addRemoteCandidate(formatCandidate(ch), now);
  }
  const pump = () => {
    for (let round = 0; round < 20; round++) {
      let moved = 0;
      for (let t = client.pollTransmit(); t; t = client.pollTransmit()) {
        moved++;
        const m = decodeStun(t.bytes);
        sent.push({
          from: 'client',
          to: key(t.to),
          useCandidate: m.ok && attribute(m.value, ATTR_USE_CANDIDATE) !== undefined,
          txPrefix: m.ok ? [...m.value.transactionId.subarray(0, 3)] : [],
        });
        if (dead || !m.ok) continue;
        if (key(t.to) === key(RELAYED))
          gateway.handleStun(m.value, { kind: 'relay', relay: 'r1' }, CLIENT_HOST, now);
        else if (key(t.to) === key(GATEWAY_HOST) && !blockDirect)
          gateway.handleStun(m.value, { kind: 'direct' }, CLIENT_HOST, now);
      }
      for (let t = gateway.pollTransmit(); t; t = gateway.pollTransmit()) {
        moved++;
        const m = decodeStun(t.bytes);
        sent.push({
          from: 'gateway',
          to: key(t.to),
          useCandidate: false,
          txPrefix: m.ok ? [...m.value.transactionId.subarray(0, 3)] : [],
        });
        if (dead || !m.ok || key(t.to) !== key(CLIENT_HOST)) continue;
        const from = t.via.kind === 'relay' ? RELAYED : GATEWAY_HOST;
        if (t.via.kind === 'direct' && blockDirect) continue;
        client.handleStun(m.value, { kind: 'direct' }, from, now);
      }
      for (let e = client.pollEvent(); e; e = client.pollEvent()) events.client.push(e);
      for (let e = gateway.pollEvent(); e; e = gateway.pollEvent()) events.gateway.push(e);
      if (moved === 0) return;
    }
  };
  /** Runs both agents until `until` (simulated ms). */
  const runUntil = (until: number) => {
    pump();
    for (;;) {
      const at = Math.min(client.pollTimeout(), gateway.pollTimeout());
      if (at > until) break;
      now = Math.max(now, at);
      client.handleTimeout(now);
      gateway.handleTimeout(now);
      pump();
    }
    now = until;
  };
  return {
    client,
    gateway,
    events,
    sent,
    runUntil,
    now: () => now,
    kill: () => {
      dead = true;
    },
    setBlockDirect: (b: boolean) => {
      blockDirect = b;
    },
    candidates: { ch, gh, gr },
  };
}

const selected = (events: IceEvent[]) => events.filter((e) => e.type === 'selected');
const viaOf = (w: ReturnType<typeof world>): IceVia | undefined => w.gateway.selected?.local.via;

describe('ICE agent: checks and nomination (spec/snownet.md §2.7–§2.8)', () => {
  it('host to host: the client nominates, the gateway selects the pair it was told to use', () => {
    const w = world();
    w.runUntil(2_000);
    expect(w.client.state).toBe('connected');
    expect(w.gateway.state).toBe('connected');
    expect(viaOf(w)).toEqual({ kind: 'direct' });
    expect(w.gateway.selected!.remote).toEqual(CLIENT_HOST);
    expect(selected(w.events.gateway)).toHaveLength(1);
    // USE-CANDIDATE only from the controlling side, and only on the nominated pair.
    expect(w.sent.some((s) => s.from === 'client' && s.useCandidate && s.to === key(GATEWAY_HOST))).toBe(
      true,
    );
  });

  it("every check the gateway sends carries the router's transaction prefix", () => {
    const w = world();
    w.runUntil(2_000);
    const ours = w.sent.filter((s) => s.from === 'gateway');
    expect(ours.length).toBeGreaterThan(0);
    // Responses echo the client's ids; requests are ours.
    expect(ours.some((s) => s.txPrefix.join() === '171,205,239')).toBe(true);
  });

  it('only through the relay when direct traffic is blocked', () => {
    const w = world({ blockDirect: true });
    w.runUntil(5_000);
    expect(w.gateway.state).toBe('connected');
    expect(viaOf(w)).toEqual({ kind: 'relay', relay: 'r1' });
  });

  it('learns the client as peer-reflexive when its candidates never arrive', () => {
    const w = world({ signal: false });
    // The client knows the gateway's candidates; the gateway knows none of the client's.
    w.client.addRemoteCandidate(formatCandidate(w.candidates.gh), 0);
    w.runUntil(3_000);
    expect(w.gateway.state).toBe('connected');
    expect(w.gateway.selected!.remote).toEqual(CLIENT_HOST);
  });

  it('moves to the better pair when it starts working (continuous re-nomination)', () => {
    const w = world({ blockDirect: true });
    w.runUntil(5_000);
    expect(viaOf(w)).toEqual({ kind: 'relay', relay: 'r1' });
    w.setBlockDirect(false);
    w.runUntil(40_000);
    expect(viaOf(w)).toEqual({ kind: 'direct' });
  });
});

describe('ICE agent: a client that moves', () => {
  it('selects the new pair as soon as the client nominates it, though its priority ties with the old one', () => {
    const w = world();
    w.runUntil(2_000);
    expect(w.gateway.selected!.remote).toEqual(CLIENT_HOST);
    // The client's host moves (same kind of candidate, same port, new address): the old one is gone.
    w.kill();
    const moved = addr('10.0.0.3', 5000);
    const client2 = new IceAgent({
      controlling: true,
      local: CLIENT_ICE,
      remote: GATEWAY_ICE,
      random: seededRandom(9),
    });
    const c2 = client2.addLocalCandidate(
      { kind: 'host', addr: moved, base: moved, via: { kind: 'direct' } },
      w.now(),
    )!;
    client2.addRemoteCandidate(formatCandidate(w.candidates.gh), w.now());
    w.gateway.addRemoteCandidate(formatCandidate(c2), w.now());
    let now = w.now();
    const pump = () => {
      for (let round = 0; round < 20; round++) {
        let n = 0;
        for (let t = client2.pollTransmit(); t; t = client2.pollTransmit()) {
          n++;
          const m = decodeStun(t.bytes);
          if (m.ok && key(t.to) === key(GATEWAY_HOST))
            w.gateway.handleStun(m.value, { kind: 'direct' }, moved, now);
        }
        for (let t = w.gateway.pollTransmit(); t; t = w.gateway.pollTransmit()) {
          n++;
          const m = decodeStun(t.bytes);
          if (m.ok && key(t.to) === key(moved) && t.via.kind === 'direct')
            client2.handleStun(m.value, { kind: 'direct' }, GATEWAY_HOST, now);
        }
        if (n === 0) return;
      }
    };
    const start = now;
    pump();
    while (!(w.gateway.selected && key(w.gateway.selected.remote) === key(moved)) && now - start < 20_000) {
      now = Math.min(client2.pollTimeout(), w.gateway.pollTimeout(), now + 100);
      client2.handleTimeout(now);
      w.gateway.handleTimeout(now);
      pump();
    }
    expect(w.gateway.selected!.remote).toEqual(moved);
    // At once, not after the old pair's 15 s give-up.
    expect(now - start).toBeLessThan(1_000);
  });
});

describe('ICE agent: failure and timing (§2.7, §2.9)', () => {
  it('a dead path is given up 15.25 s after its last answer with the default timing', () => {
    const w = world();
    w.runUntil(2_000);
    w.kill();
    const lastAnswer = w.now();
    w.runUntil(lastAnswer + 40_000);
    const when = w.events.gateway.findIndex((e) => e.type === 'state' && e.state === 'disconnected');
    expect(when).toBeGreaterThan(-1);
    expect(w.gateway.state).toBe('disconnected');
    expect(w.gateway.selected).toBeUndefined();
  });

  it('the give-up time follows str0m: 12 attempts paced 250 ms × 2ⁿ up to 1.5 s, then 1.5 s', () => {
    const rnd = seededRandom(5);
    const a = new IceAgent({ controlling: false, local: GATEWAY_ICE, remote: CLIENT_ICE, random: rnd });
    a.addLocalCandidate({ kind: 'host', addr: GATEWAY_HOST, base: GATEWAY_HOST, via: { kind: 'direct' } }, 0);
    a.addRemoteCandidate(
      formatCandidate({
        kind: 'host',
        addr: CLIENT_HOST,
        priority: 2130706175,
        foundation: 'f',
        ufrag: CLIENT_ICE.username,
      }),
      0,
    );
    const attempts: number[] = [];
    let now = 0;
    for (let i = 0; i < 100 && a.state !== 'disconnected'; i++) {
      a.handleTimeout(now);
      while (a.pollTransmit()) attempts.push(now);
      now = a.pollTimeout();
      if (!Number.isFinite(now)) break;
    }
    expect(attempts).toEqual([0, 250, 750, 1750, 3250, 4750, 6250, 7750, 9250, 10750, 12250, 13750]);
    expect(a.state).toBe('disconnected');
    expect(ICE_DEFAULT_TIMING.maxRetransmits).toBe(12);
  });

  it('idle timing checks every 25 s and gives up after 100 s', () => {
    const w = world();
    w.runUntil(2_000);
    w.gateway.setTiming(ICE_IDLE_TIMING, w.now());
    w.client.setTiming(ICE_IDLE_TIMING, w.now());
    const before = w.sent.length;
    w.runUntil(w.now() + 60_000);
    const perAgentPair = w.sent
      .slice(before)
      .filter((s) => s.from === 'gateway' && s.txPrefix.join() === '171,205,239');
    // One pair per reachable candidate; each checked at most every 25 s.
    expect(perAgentPair.length).toBeLessThanOrEqual(2 * 3);
    w.kill();
    const t = w.now();
    w.runUntil(t + 99_000);
    expect(w.gateway.state).toBe('connected');
    w.runUntil(t + 130_000);
    expect(w.gateway.state).toBe('disconnected');
  });
});

describe('ICE agent: candidates (§2.4, §2.6, §2.10)', () => {
  it('computes the priorities Firezone does', () => {
    const a = new IceAgent({
      controlling: false,
      local: GATEWAY_ICE,
      remote: CLIENT_ICE,
      random: seededRandom(1),
    });
    const d: IceVia = { kind: 'direct' };
    const r: IceVia = { kind: 'relay', relay: 'x' };
    const host4 = a.addLocalCandidate({ kind: 'host', addr: GATEWAY_HOST, base: GATEWAY_HOST, via: d }, 0)!;
    const host6 = a.addLocalCandidate(
      { kind: 'host', addr: addr('2001:db8::1', 52625), base: addr('2001:db8::1', 52625), via: d },
      0,
    )!;
    const srflx4 = a.addLocalCandidate(
      { kind: 'srflx', addr: addr('203.0.113.7', 52625), base: GATEWAY_HOST, via: d },
      0,
    )!;
    const relay4 = a.addLocalCandidate({ kind: 'relay', addr: RELAYED, base: RELAYED, via: r }, 0)!;
    const relay6 = a.addLocalCandidate(
      { kind: 'relay', addr: addr('2001:db8::9', 50000), base: addr('2001:db8::9', 50000), via: r },
      0,
      true,
    )!;
    expect([host4.priority, host6.priority, srflx4.priority, relay4.priority, relay6.priority]).toEqual([
      2130706175, 2130706431, 1694498559, 37748479, 37492735,
    ]);
    expect(formatCandidate(relay4)).toMatch(
      /^candidate:[0-9a-f]{8} 1 udp 37748479 198\.51\.100\.9 50000 typ relay raddr 0\.0\.0\.0 rport 0 ufrag 52nj$/,
    );
    expect(formatCandidate(host6)).toMatch(/ 2001:db8::1 52625 typ host ufrag 52nj$/);
    // A duplicate is not added twice.
    expect(
      a.addLocalCandidate({ kind: 'host', addr: GATEWAY_HOST, base: GATEWAY_HOST, via: d }, 0),
    ).toBeUndefined();
  });

  it('round-trips candidate strings and refuses malformed ones', () => {
    const s = 'candidate:3f0a9c1e 1 udp 1694498559 192.0.2.44 40123 typ srflx raddr 10.0.0.5 rport 40123';
    const c = parseCandidate(s);
    expect(c.ok && c.value.kind).toBe('srflx');
    for (const bad of [
      '',
      'candidate: 1 udp 1 1.2.3.4 1 typ host',
      'candidate:x 1 udp 1 999.1.1.1 1 typ host',
      'candidate:x 1 udp 1 1.2.3.4 1 typ bogus',
    ]) {
      expect(parseCandidate(bad).ok).toBe(false);
    }
    const tcp = parseCandidate('candidate:x 1 tcp 1 1.2.3.4 1 typ host tcptype passive');
    expect(!tcp.ok && tcp.error.code).toBe('ice.unsupported-candidate');
  });

  it('ignores a remote candidate with another ufrag, and known ones', () => {
    const w = world();
    const other = formatCandidate({
      kind: 'host',
      addr: addr('10.0.0.9', 1),
      priority: 1,
      foundation: 'a',
      ufrag: 'zzzz',
    });
    expect(w.gateway.addRemoteCandidate(other, 0)).toBe(false);
    expect(w.gateway.addRemoteCandidate(formatCandidate(w.candidates.ch), 0)).toBe(false);
  });

  it('invalidating the selected remote candidate drops its pairs and the selection', () => {
    const w = world();
    w.runUntil(2_000);
    expect(w.gateway.invalidateRemoteCandidate(formatCandidate(w.candidates.ch))).toBe(true);
    expect(w.gateway.selected).toBeUndefined();
    // Checks from the invalidated address are ignored from now on.
    w.runUntil(w.now() + 5_000);
    expect(w.gateway.selected).toBeUndefined();
    expect(w.gateway.drops['ice.discarded-source']).toBeGreaterThan(0);
  });

  it('removing the relay candidates moves nothing when the direct path is selected', () => {
    const w = world();
    w.runUntil(2_000);
    const gone = w.gateway.removeLocalCandidates((c) => c.kind === 'relay');
    expect(gone.map((c) => c.kind)).toEqual(['relay']);
    expect(viaOf(w)).toEqual({ kind: 'direct' });
  });
});

describe('ICE agent: hostile input', () => {
  it('refuses checks with a wrong ufrag or integrity, and answers nobody', () => {
    const rnd = seededRandom(9);
    const gw = new IceAgent({ controlling: false, local: GATEWAY_ICE, remote: CLIENT_ICE, random: rnd });
    gw.addLocalCandidate(
      { kind: 'host', addr: GATEWAY_HOST, base: GATEWAY_HOST, via: { kind: 'direct' } },
      0,
    );
    const impostor = new IceAgent({
      controlling: true,
      local: CLIENT_ICE,
      remote: { username: GATEWAY_ICE.username, password: 'not-the-password-at-all' },
      random: rnd,
    });
    impostor.addLocalCandidate(
      { kind: 'host', addr: CLIENT_HOST, base: CLIENT_HOST, via: { kind: 'direct' } },
      0,
    );
    impostor.addRemoteCandidate(
      formatCandidate({
        kind: 'host',
        addr: GATEWAY_HOST,
        priority: 2130706175,
        foundation: 'f',
        ufrag: GATEWAY_ICE.username,
      }),
      0,
    );
    impostor.handleTimeout(0);
    const t = impostor.pollTransmit()!;
    const m = decodeStun(t.bytes);
    expect(m.ok && gw.handleStun(m.value, { kind: 'direct' }, CLIENT_HOST, 0)).toBe(false);
    expect(gw.drops['ice.bad-integrity']).toBe(1);
    expect(gw.pollTransmit()).toBeUndefined();
  });

  it('never throws on arbitrary STUN-shaped input', () => {
    const w = world();
    w.runUntil(2_000);
    // Well-formed binding messages with arbitrary attributes (our ufrags among them), and raw bytes.
    const attr = fc.record({
      type: fc.oneof(
        fc.constantFrom(0x0006, 0x0008, 0x0020, 0x0024, 0x0025, 0x8028, 0x8029, 0x802a),
        fc.nat(0xffff),
      ),
      value: fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        fc.constantFrom(
          new TextEncoder().encode(`${GATEWAY_ICE.username}:${CLIENT_ICE.username}`),
          new TextEncoder().encode(`${CLIENT_ICE.username}:${GATEWAY_ICE.username}`),
        ),
      ),
    });
    const built = fc
      .record({
        cls: fc.constantFrom(0, 1, 2, 3),
        tx: fc.uint8Array({ minLength: 12, maxLength: 12 }),
        attrs: fc.array(attr, { maxLength: 8 }),
      })
      .map(({ cls, tx, attrs }) => {
        const b = new StunBuilder(METHOD_BINDING, cls as 0 | 1 | 2 | 3, tx);
        for (const a of attrs) b.add(a.type, a.value);
        return b.build();
      });
    fc.assert(
      fc.property(fc.oneof(built, fc.uint8Array({ maxLength: 200 })), fc.boolean(), (bytes, relay) => {
        const m = decodeStun(bytes);
        if (!m.ok) return;
        const via: IceVia = relay ? { kind: 'relay', relay: 'r1' } : { kind: 'direct' };
        w.gateway.handleStun(m.value, via, CLIENT_HOST, w.now());
        w.client.handleStun(m.value, { kind: 'direct' }, GATEWAY_HOST, w.now());
      }),
      { numRuns: PROPERTY_RUNS },
    );
    // Nothing forged took the connection away.
    expect(w.gateway.state).toBe('connected');
  });
});
