import { randomBytes, randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Candidate, CandidatePairState, Connection, type IceState as WeriftState } from 'werift-ice';
import type { IceCredentials } from '../../src/wire/ice/agent.js';
import { addressKey, parseCandidate } from '../../src/wire/ice/candidate.js';
import type { TransportAddress } from '../../src/wire/stun/message.js';
import { IceDriver, isLoopback, transportAddress } from '../support/ice-driver.js';

/**
 * Our sans-IO ICE agent (`src/wire/ice/agent.ts`, `spec/snownet.md` §2) against an independent
 * implementation, werift-ice 0.2.3, over real UDP sockets on 127.0.0.1:
 *
 *  1. werift controlling (the Firezone client's role) × ours controlled (the gateway's role):
 *     host candidates both ways, werift nominates (aggressive nomination: USE-CANDIDATE on every
 *     check), our agent selects werift's host address and reports `connected`;
 *  2. the selected path carries application datagrams both ways;
 *  3. werift with a wrong password for us: we drop its checks (`ice.bad-integrity`), nothing is
 *     nominated on either side (werift's `connect()` then just stays pending);
 *  4. roles swapped: ours controlling (continuous nomination of the best succeeded pair) × werift
 *     controlled.
 *
 * Nothing leaves loopback: werift enumerates no interface (`useIpv4`/`useIpv6` false — they only
 * steer host-address enumeration in 0.2.3), gets 127.0.0.1 through `additionalHostAddresses`, binds
 * its socket there (`interfaceAddresses.udp4`), and its default STUN server (stun.l.google.com,
 * set by the constructor when none is given) is removed before gathering; no TURN, no TCP, and no
 * `.local` candidate that would start mDNS. Our side runs in {@link IceDriver}, which binds to
 * 127.0.0.1 and refuses non-loopback destinations.
 *
 * Candidate strings: Firezone (and our `parseCandidate`, like str0m) use the SDP attribute value
 * *with* the `candidate:` prefix; werift's `Candidate.toSdp()`/`fromSdp()` use it *without* (the
 * convention of aioice, which werift ports). So werift → us gets
 * `candidate:` prepended and us → werift has it stripped; nothing else differs (werift appends
 * `generation <n> ufrag <ufrag>`, which our parser skips/reads).
 */

const LOOPBACK = '127.0.0.1';
const CONNECT_TIMEOUT_MS = 5_000;
/** How long a misconfigured pair is watched for a nomination that must not happen. */
const NEGATIVE_WINDOW_MS = 3_000;

/** Portal-style credentials (`spec/snownet.md` §2.2): base32 ufrag of 4, password of 22. */
function credentials(): IceCredentials {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const pick = (n: number) => Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join('');
  return { username: pick(4), password: pick(22) };
}

function werift2ours(c: Candidate): string {
  return `candidate:${c.toSdp()}`;
}

function ours2werift(text: string): Candidate {
  return Candidate.fromSdp(text.replace(/^candidate:/, ''));
}

function sameAddr(a: TransportAddress, b: TransportAddress): boolean {
  return addressKey(a) === addressKey(b);
}

/** Polls `probe` every 10 ms until it yields a value. */
async function eventually<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** One werift-ice Connection confined to 127.0.0.1, with what it reported. */
class WeriftPeer {
  readonly states: WeriftState[] = [];
  readonly data: Buffer[] = [];
  private connecting: Promise<true | Error> | undefined;
  /** How `connect()` ended, once it has. */
  outcome: true | Error | undefined;

  private constructor(readonly conn: Connection) {
    conn.stateChanged.subscribe((s) => this.states.push(s));
    conn.onData.subscribe((d) => this.data.push(Buffer.from(d)));
  }

  static async open(controlling: boolean): Promise<WeriftPeer> {
    const conn = new Connection(controlling, {
      useIpv4: false,
      useIpv6: false,
      useTcp: false,
      additionalHostAddresses: [LOOPBACK],
      interfaceAddresses: { udp4: LOOPBACK },
    });
    // The constructor falls back to stun.l.google.com:19302; no srflx gathering here.
    delete conn.stunServer;
    delete conn.turnServer;
    const peer = new WeriftPeer(conn);
    await conn.gatherCandidates();
    return peer;
  }

  get credentials(): IceCredentials {
    return { username: this.conn.localUsername, password: this.conn.localPassword };
  }

  /** Its local candidates as our agent wants them (all of them: see `assertLoopbackOnly`). */
  candidateStrings(): string[] {
    return this.conn.localCandidates.map(werift2ours);
  }

  /**
   * Every candidate werift gathered is a UDP host candidate on loopback, and every socket it
   * opened is bound to loopback (`protocols` is private in its typings: read through a cast).
   */
  assertLoopbackOnly(): void {
    expect(this.conn.localCandidates.length).toBeGreaterThan(0);
    for (const c of this.conn.localCandidates) {
      expect(c.type).toBe('host');
      expect(c.transport.toLowerCase()).toBe('udp');
      expect(isLoopback(c.host)).toBe(true);
    }
    const { protocols } = this.conn as unknown as {
      protocols: { getExtraInfo(): readonly [string, number] }[];
    };
    expect(protocols.length).toBe(this.conn.localCandidates.length);
    for (const p of protocols) expect(p.getExtraInfo()[0]).toBe(LOOPBACK);
  }

  /** Sets the remote credentials, adds our candidates and signals end-of-candidates. */
  async learn(remote: IceCredentials, candidates: readonly string[]): Promise<void> {
    this.conn.setRemoteParams({
      iceLite: false,
      usernameFragment: remote.username,
      password: remote.password,
    });
    for (const text of candidates) await this.conn.addRemoteCandidate(ours2werift(text));
    await this.conn.addRemoteCandidate(undefined);
  }

  /**
   * Starts `connect()`; the result never rejects (true, or the error it failed with). Note that in
   * 0.2.3 a failed check list does not make `connect()` reject: it keeps waiting for a completion
   * (its wait loop only leaves on ICE_COMPLETED), even across `close()`.
   */
  connect(): Promise<true | Error> {
    this.connecting ??= this.conn.connect().then(
      () => (this.outcome = true),
      (e: unknown) => (this.outcome = e instanceof Error ? e : new Error(String(e))),
    );
    return this.connecting;
  }

  /** The nominated pair's remote address, in our representation. */
  nominatedRemote(): TransportAddress | undefined {
    const n = this.conn.nominated;
    return n ? transportAddress(n.remoteAddr[0], n.remoteAddr[1]) : undefined;
  }

  /** Closes its sockets and timers (a pending `connect()` may stay pending: see `connect`). */
  async close(): Promise<void> {
    await this.conn.close();
  }
}

/** Resolves with `p`, or rejects after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('ICE interop with werift-ice 0.2.3 on 127.0.0.1', () => {
  const open: { close(): Promise<void> }[] = [];

  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((x) => x.close()));
  });

  /**
   * Both agents with host candidates exchanged both ways. `weriftKnowsOurPassword` false gives
   * werift a wrong password for us (its checks then carry a MESSAGE-INTEGRITY we cannot verify).
   */
  async function pair(opts: { oursControlling: boolean; weriftKnowsOurPassword?: boolean }) {
    const werift = await WeriftPeer.open(!opts.oursControlling);
    open.push(werift);
    werift.assertLoopbackOnly();

    const ourCreds = credentials();
    const ours = await IceDriver.open({
      controlling: opts.oursControlling,
      local: ourCreds,
      remote: werift.credentials,
      random: (n) => randomBytes(n),
    });
    open.push(ours);
    const host = ours.addHostCandidate();
    expect(sameAddr(host.addr, transportAddress(LOOPBACK, ours.sock.address().port))).toBe(true);

    // werift → us: every string parses in our codec and is taken by the agent.
    const theirStrings = werift.candidateStrings();
    for (const text of theirStrings) {
      const parsed = parseCandidate(text);
      expect(parsed.ok, `${text}: ${parsed.ok ? '' : parsed.error.message}`).toBe(true);
      if (parsed.ok) expect(parsed.value.ufrag).toBe(werift.credentials.username);
      expect(ours.addRemoteCandidate(text)).toBe(true);
    }

    // us → werift: werift takes our strings (it silently drops what fails `validateRemoteCandidate`).
    const ourStrings = ours.agent.candidateStrings();
    expect(ourStrings).toHaveLength(1);
    // Upper case is outside the base32 alphabet of ours: certainly wrong, same length.
    const remoteCreds =
      opts.weriftKnowsOurPassword === false ? { ...ourCreds, password: 'X'.repeat(22) } : ourCreds;
    await werift.learn(remoteCreds, ourStrings);
    expect(werift.conn.remoteCandidates.map((c) => `${c.host}:${c.port} ${c.type}`)).toEqual([
      `${addressKey(host.addr)} host`,
    ]);

    const weriftHost = werift.conn.localCandidates[0]!;
    return { werift, ours, host, weriftAddr: transportAddress(weriftHost.host, weriftHost.port) };
  }

  it('(1) werift controlling × ours controlled: werift connects, we select its host address', async () => {
    const started = performance.now();
    const { werift, ours, host, weriftAddr } = await pair({ oursControlling: false });

    const result = await within(werift.connect(), CONNECT_TIMEOUT_MS, 'werift connect()');
    expect(result).toBe(true);
    expect(werift.conn.state).toBe('connected');
    expect(werift.states).toContain('connected');
    expect(werift.conn.iceControlling).toBe(true);
    const theirPath = werift.nominatedRemote();
    expect(theirPath && sameAddr(theirPath, host.addr)).toBe(true);

    const selected = await ours.until(() => ours.firstSelected(), CONNECT_TIMEOUT_MS, "our 'selected' event");
    expect(addressKey(selected.remote)).toBe(addressKey(weriftAddr));
    expect(selected.local.kind).toBe('host');
    expect(addressKey(selected.local.addr)).toBe(addressKey(host.addr));
    await ours.until(() => (ours.state === 'connected' ? true : undefined), CONNECT_TIMEOUT_MS, 'connected');
    expect(ours.states()).toEqual(['connected']);
    expect(ours.agent.selected && addressKey(ours.agent.selected.remote)).toBe(addressKey(weriftAddr));
    expect(performance.now() - started).toBeLessThan(CONNECT_TIMEOUT_MS);

    // Its checks were all authentic and ours were answered; nothing was refused or misrouted.
    expect(ours.agent.drops).toEqual({});
    expect(ours.stats.stunTaken).toBeGreaterThan(0);
    expect(ours.stats.stunRefused + ours.stats.badStun).toBe(0);
    expect(ours.stats.nonLoopback + ours.stats.relayTransmits).toBe(0);
  });

  it('(2) the selected path carries datagrams both ways', async () => {
    const { werift, ours, host } = await pair({ oursControlling: false });
    expect(await within(werift.connect(), CONNECT_TIMEOUT_MS, 'werift connect()')).toBe(true);
    const selected = await ours.until(() => ours.firstSelected(), CONNECT_TIMEOUT_MS, "our 'selected' event");

    // werift → us: arrives as non-STUN data from the selected remote address.
    const toUs = Buffer.from(`from werift ${randomBytes(8).toString('hex')}`);
    await werift.conn.send(toUs);
    const got = await ours.until(
      () => ours.data.find((d) => d.bytes.equals(toUs)),
      CONNECT_TIMEOUT_MS,
      "werift's datagram",
    );
    expect(addressKey(got.from)).toBe(addressKey(selected.remote));

    // us → werift: sent from our host candidate to the selected remote, delivered by onData.
    const toThem = Buffer.from(`from firezone-gateway-ts ${randomBytes(8).toString('hex')}`);
    expect(addressKey(selected.local.base)).toBe(addressKey(host.addr));
    ours.sendData(selected.remote, toThem);
    await eventually(
      () => (werift.data.some((d) => d.equals(toThem)) ? true : undefined),
      CONNECT_TIMEOUT_MS,
      'our datagram at werift',
    );
    expect(ours.stats.nonLoopback).toBe(0);
  });

  it('(3) werift with a wrong password for us: its checks are dropped, nothing is nominated', async () => {
    const { werift, ours } = await pair({ oursControlling: false, weriftKnowsOurPassword: false });
    void werift.connect();

    // Long enough for werift's first check transaction to give up (5 sends, 50 ms doubling:
    // 1.55 s) and for several of our checks (and its triggered checks in reply) to cross.
    await sleep(NEGATIVE_WINDOW_MS);
    expect(werift.outcome).not.toBe(true);
    expect(werift.states).not.toContain('connected');
    expect(werift.conn.nominated).toBeUndefined();
    const theirPairs = werift.conn.checkList;
    expect(theirPairs).toHaveLength(1);
    expect(theirPairs[0]!.state).not.toBe(CandidatePairState.SUCCEEDED);
    expect(theirPairs[0]!.requestsSent).toBeGreaterThan(0);
    expect(theirPairs[0]!.retransmissionsSent).toBeGreaterThan(0);
    expect(theirPairs[0]!.responsesReceived).toBe(0);

    expect(ours.firstSelected()).toBeUndefined();
    expect(ours.agent.selected).toBeUndefined();
    expect(ours.state).not.toBe('connected');
    // Every one of its checks reached us and was refused for its MESSAGE-INTEGRITY alone.
    expect(ours.agent.drops['ice.bad-integrity'] ?? 0).toBeGreaterThanOrEqual(
      theirPairs[0]!.requestsSent + theirPairs[0]!.retransmissionsSent - 1,
    );
    expect(Object.keys(ours.agent.drops)).toEqual(['ice.bad-integrity']);
    // werift still answers our (correctly keyed) checks: the failure is the password alone.
    expect(ours.stats.stunTaken).toBeGreaterThan(0);
  });

  it('(4) ours controlling × werift controlled: we nominate, both connect', async () => {
    const { werift, ours, host, weriftAddr } = await pair({ oursControlling: true });

    const connected = werift.connect();
    const selected = await ours.until(() => ours.firstSelected(), CONNECT_TIMEOUT_MS, "our 'selected' event");
    expect(addressKey(selected.remote)).toBe(addressKey(weriftAddr));
    expect(addressKey(selected.local.addr)).toBe(addressKey(host.addr));
    expect(ours.state).toBe('connected');

    expect(await within(connected, CONNECT_TIMEOUT_MS, 'werift connect()')).toBe(true);
    expect(werift.conn.iceControlling).toBe(false);
    expect(werift.conn.state).toBe('connected');
    const theirPath = werift.nominatedRemote();
    expect(theirPath && sameAddr(theirPath, host.addr)).toBe(true);
    expect(werift.conn.nominated?.remoteNominated).toBe(true);
    expect(ours.agent.drops).toEqual({});

    // And the path works from the controlled side too.
    const toUs = Buffer.from('controlled werift says hello');
    await werift.conn.send(toUs);
    const got = await ours.until(
      () => ours.data.find((d) => d.bytes.equals(toUs)),
      CONNECT_TIMEOUT_MS,
      "werift's datagram",
    );
    expect(addressKey(got.from)).toBe(addressKey(weriftAddr));
  });
});
