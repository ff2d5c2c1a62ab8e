import { afterEach, describe, expect, it } from 'vitest';
import { TestClock } from '../../../src/actors/clock.js';
import type { GatewayLog } from '../../../src/actors/gateway.js';
import { createPortalSession, type PortalSessionActor } from '../../../src/actors/portal-session.js';
import type { PortalSocketHandlers } from '../../../src/io/portal-socket.js';
import {
  BACKOFF_MAX_ELAPSED_MS,
  BACKOFF_MAX_INTERVAL_MS,
  HEARTBEAT_INTERVAL_MS,
  JOIN_TIMEOUT_MS,
  MAX_BUFFERED_MESSAGES,
} from '../../../src/machines/portal-session.machine.js';
import type { PortalMessage } from '../../../src/wire/portal/types.js';

/** One connection attempt the session made, driven by the test. */
class FakeSocket {
  readonly sent: Record<string, unknown>[] = [];
  closed = false;
  /** The test has already answered this attempt. */
  handled = false;
  constructor(
    readonly url: string,
    readonly userAgent: string,
    readonly h: PortalSocketHandlers,
  ) {}
  push(frame: object): void {
    this.h.text(JSON.stringify(frame));
  }
  replyOk(ref: unknown, topic = 'gateway', response: unknown = {}): void {
    this.push({ event: 'phx_reply', topic, ref, payload: { status: 'ok', response } });
  }
  lastRef(event: string): unknown {
    return [...this.sent].reverse().find((f) => f.event === event)?.ref;
  }
  events(): string[] {
    return this.sent.map((f) => `${f.topic}:${f.event}`);
  }
}

interface Harness {
  clock: TestClock;
  session: PortalSessionActor;
  sockets: FakeSocket[];
  delivered: PortalMessage[];
  lines: { level: string; msg: string; obj: object }[];
  last(): FakeSocket;
  /** Connect the newest socket and answer its join. */
  join(): FakeSocket;
}

const harnesses: Harness[] = [];
afterEach(() => {
  for (const h of harnesses.splice(0)) if (h.session.getSnapshot().status === 'active') h.session.stop();
});

function harness(jitter = 0.5): Harness {
  const clock = new TestClock();
  const sockets: FakeSocket[] = [];
  const delivered: PortalMessage[] = [];
  const lines: Harness['lines'] = [];
  const log: GatewayLog & { debug(obj: object, msg: string): void } = {
    info: (obj, msg) => lines.push({ level: 'info', msg, obj }),
    warn: (obj, msg) => lines.push({ level: 'warn', msg, obj }),
    error: (obj, msg) => lines.push({ level: 'error', msg, obj }),
    debug: (obj, msg) => lines.push({ level: 'debug', msg, obj }),
  };
  const session = createPortalSession({
    url: 'wss://portal.test/gateway/websocket?token=secret&external_id=x&name=gw&public_key=k',
    userAgent: 'Linux/6 connlib/1.4.17',
    clock,
    log,
    deliver: (m) => delivered.push(m),
    jitter: () => jitter,
    open: (url, ua, handlers) => {
      const s = new FakeSocket(url, ua, handlers);
      const send = (text: string) => {
        if (!s.closed) s.sent.push(JSON.parse(text) as Record<string, unknown>);
      };
      sockets.push(s);
      return {
        send,
        close: () => {
          s.closed = true;
        },
      };
    },
  });
  const h: Harness = {
    clock,
    session,
    sockets,
    delivered,
    lines,
    last: () => sockets[sockets.length - 1]!,
    join: () => {
      const s = h.last();
      s.h.open();
      s.replyOk(s.lastRef('phx_join'));
      return s;
    },
  };
  harnesses.push(h);
  session.start();
  return h;
}

const state = (h: Harness) => JSON.stringify(h.session.getSnapshot().value);

const INIT = {
  event: 'init',
  topic: 'gateway',
  ref: null,
  payload: {
    interface: { ipv4: '100.64.0.1', ipv6: 'fd00:2021:1111::1' },
    config: { ipv4_masquerade_enabled: true, ipv6_masquerade_enabled: true },
    relays: [],
  },
};

describe('portal session: connect and join (§1.4–§1.5)', () => {
  it('opens the login URL with the User-Agent, joins with ref 0 and a null payload, and delivers init', () => {
    const h = harness();
    const s = h.last();
    expect(s.userAgent).toContain('connlib/');
    expect(s.url).toContain('token=secret');
    expect(state(h)).toBe('{"online":"connecting"}');
    s.h.open();
    expect(s.sent).toEqual([{ topic: 'gateway', event: 'phx_join', payload: null, ref: 0 }]);
    expect(state(h)).toBe('{"online":"joining"}');
    s.replyOk(0);
    expect(state(h)).toBe('{"online":{"joined":"alive"}}');
    s.push(INIT);
    expect(h.delivered.map((m) => m.type)).toEqual(['init']);
    // The token never reaches a log line.
    expect(JSON.stringify(h.lines)).not.toContain('secret');
  });

  it('holds application messages until the join is answered, with refs from one counter', () => {
    const h = harness();
    const s = h.last();
    h.session.send({ type: 'portal.send', event: 'flow_authorized', payload: { ref: 'a' } });
    s.h.open();
    expect(s.events()).toEqual(['gateway:phx_join']);
    expect(s.sent[0]!.ref).toBe(1);
    s.replyOk(1);
    expect(s.sent[1]).toEqual({ topic: 'gateway', event: 'flow_authorized', payload: { ref: 'a' }, ref: 0 });
    h.session.send({ type: 'portal.send', event: 'flow_authorized', payload: { ref: 'b' } });
    expect(s.sent[2]!.ref).toBe(2);
  });

  it('discards the whole queue when more than 32 messages wait (as the reference does)', () => {
    const h = harness();
    for (let i = 0; i <= MAX_BUFFERED_MESSAGES + 1; i++) {
      h.session.send({ type: 'portal.send', event: 'broadcast_ice_candidates', payload: { i } });
    }
    h.join();
    const flushed = h.last().sent.filter((f) => f.event === 'broadcast_ice_candidates');
    expect(flushed.map((f) => (f.payload as { i: number }).i)).toEqual([MAX_BUFFERED_MESSAGES + 1]);
  });

  it('retries with a new connection when the join is not answered within 5 s', () => {
    const h = harness();
    h.last().h.open();
    h.clock.advance(JOIN_TIMEOUT_MS - 1);
    expect(h.sockets).toHaveLength(1);
    h.clock.advance(1);
    // The upgrade succeeded, so the backoff was reset and the retry is immediate.
    expect(h.sockets).toHaveLength(2);
    expect(h.sockets[0]!.closed).toBe(true);
  });

  it('an error reply to the join is fatal (LoginFailed)', () => {
    const h = harness();
    const s = h.last();
    s.h.open();
    s.push({
      event: 'phx_reply',
      topic: 'gateway',
      ref: 0,
      payload: { status: 'error', response: { reason: 'disabled' } },
    });
    expect(h.session.getSnapshot().status).toBe('done');
    expect(h.session.getSnapshot().output).toEqual({ fatal: { kind: 'login-failed', reason: 'disabled' } });
  });
});

describe('portal session: heartbeats and dead connections (§1.6, §9)', () => {
  it('sends a heartbeat on topic phoenix every 30 s and stays while they are answered', () => {
    const h = harness();
    const s = h.join();
    for (let i = 0; i < 10; i++) {
      h.clock.advance(HEARTBEAT_INTERVAL_MS);
      expect(s.sent.at(-1)).toMatchObject({ topic: 'phoenix', event: 'heartbeat', payload: {} });
      s.replyOk(s.lastRef('heartbeat'), 'phoenix');
    }
    expect(h.sockets).toHaveLength(1);
    expect(state(h)).toBe('{"online":{"joined":"alive"}}');
  });

  it('reconnects after more than 3 unanswered heartbeats', () => {
    const h = harness();
    const s = h.join();
    h.clock.advance(4 * HEARTBEAT_INTERVAL_MS);
    expect(s.sent.filter((f) => f.event === 'heartbeat')).toHaveLength(4);
    expect(h.sockets).toHaveLength(1);
    h.clock.advance(HEARTBEAT_INTERVAL_MS);
    expect(s.closed).toBe(true);
    expect(h.sockets).toHaveLength(2);
    expect(
      h.lines.some((l) => l.level === 'warn' && JSON.stringify(l.obj).includes('heartbeats unanswered')),
    ).toBe(true);
  });
});

describe('portal session: channel errors (§1.5)', () => {
  it('re-joins on phx_error and on an "unmatched topic" reply, on the same socket', () => {
    const h = harness();
    const s = h.join();
    s.push({ event: 'phx_error', topic: 'gateway', ref: null, payload: {} });
    expect(state(h)).toBe('{"online":"joining"}');
    s.replyOk(s.lastRef('phx_join'));
    h.session.send({ type: 'portal.send', event: 'flow_authorized', payload: { ref: 'x' } });
    s.push({
      event: 'phx_reply',
      topic: 'gateway',
      ref: s.lastRef('flow_authorized'),
      payload: { status: 'error', response: { reason: 'unmatched topic' } },
    });
    expect(state(h)).toBe('{"online":"joining"}');
    expect(s.events().filter((e) => e === 'gateway:phx_join')).toHaveLength(3);
    expect(h.sockets).toHaveLength(1);
  });

  it('reconnects the WebSocket on phx_close and on a closed connection', () => {
    const h = harness();
    h.join().push({ event: 'phx_close', topic: 'gateway', ref: null, payload: {} });
    expect(h.sockets).toHaveLength(2);
    h.join().h.closed('connection reset');
    expect(h.sockets).toHaveLength(3);
  });

  it('token_expired is fatal', () => {
    const h = harness();
    h.join().push({ event: 'disconnect', topic: 'gateway', ref: null, payload: { reason: 'token_expired' } });
    expect(h.session.getSnapshot().output).toEqual({ fatal: { kind: 'token-expired' } });
  });

  it('logs an error reply to an application message and keeps the session', () => {
    const h = harness();
    const s = h.join();
    h.session.send({ type: 'portal.send', event: 'flow_authorized', payload: { ref: 'bad' } });
    s.push({
      event: 'phx_reply',
      topic: 'gateway',
      ref: s.lastRef('flow_authorized'),
      payload: { status: 'error', response: { reason: 'invalid_ref' } },
    });
    expect(h.lines.find((l) => l.msg === 'Portal did not accept a message')?.obj).toEqual({
      event: 'flow_authorized',
      outcome: 'error: invalid_ref',
    });
    expect(state(h)).toBe('{"online":{"joined":"alive"}}');
  });

  it('drops an undecodable message with a warning and keeps the connection', () => {
    const h = harness();
    const s = h.join();
    s.h.text('{not json');
    s.push({ event: 'init', topic: 'gateway', ref: null, payload: { relays: 'nope' } });
    s.push({ event: 'some_future_event', topic: 'gateway', ref: null, payload: {} });
    expect(h.delivered).toEqual([]);
    expect(h.lines.filter((l) => l.msg === 'Dropping invalid portal message')).toHaveLength(2);
    expect(h.lines.filter((l) => l.msg === 'Ignoring unsupported portal message')).toHaveLength(1);
    expect(h.sockets).toHaveLength(1);
  });
});

describe('portal session: fatal upgrade responses and backoff (§1.8)', () => {
  for (const status of [401, 403, 404, 422, 429]) {
    it(`HTTP ${status} on the upgrade is fatal with the status and body`, () => {
      const h = harness();
      h.last().h.rejected(status, '{"error":"invalid_token"}');
      expect(h.session.getSnapshot().output).toEqual({
        fatal: { kind: 'rejected', status, body: '{"error":"invalid_token"}' },
      });
      expect(h.sockets).toHaveLength(1);
    });
  }

  /** Fails every attempt with HTTP 500 for `ms`, returning the delays between attempts. */
  function fail500For(h: Harness, ms: number): number[] {
    const delays: number[] = [];
    const start = h.clock.now();
    let last = h.clock.now();
    let seen = 0;
    while (h.session.getSnapshot().status === 'active' && h.clock.now() - start < ms) {
      if (h.sockets.length > seen) {
        seen = h.sockets.length;
        delays.push(h.clock.now() - last);
        last = h.clock.now();
        h.last().handled = true;
        h.last().h.rejected(500, 'internal error');
        continue;
      }
      if (!h.clock.advanceToNext()) break;
    }
    return delays;
  }

  it('retries at once, then after 0.5 s × 1.5ⁿ (±50 %) capped at 60 s', () => {
    const h = harness(0.5); // jitter 0.5: no randomisation
    const delays = fail500For(h, 10 * 60_000);
    expect(delays.slice(0, 6)).toEqual([0, 0, 500, 750, 1125, 1688]);
    expect(Math.max(...delays)).toBe(BACKOFF_MAX_INTERVAL_MS);
  });

  it('randomises each delay within ±50 %', () => {
    const low = fail500For(harness(0), 60_000);
    const high = fail500For(harness(0.999_999), 60_000);
    expect(low[3]).toBe(375); // 750 × 0.5
    expect(high[3]).toBe(1125); // 750 × 1.5
  });

  it('500s for 14 minutes, then the portal answers: joined, and the backoff starts over', () => {
    const h = harness();
    fail500For(h, 14 * 60_000);
    expect(h.session.getSnapshot().status).toBe('active');
    while (h.last().handled) h.clock.advanceToNext();
    h.join();
    expect(state(h)).toBe('{"online":{"joined":"alive"}}');
    // A fresh run of failures gets the full 15 minutes again.
    h.last().h.closed('reset');
    fail500For(h, 14 * 60_000);
    expect(h.session.getSnapshot().status).toBe('active');
  });

  it('16 minutes of failures: gives up before the 15-minute mark is passed', () => {
    const h = harness();
    fail500For(h, 16 * 60_000);
    const snap = h.session.getSnapshot();
    expect(snap.status).toBe('done');
    const fatal = snap.output?.fatal;
    expect(fatal?.kind).toBe('max-retries');
    expect(fatal && 'elapsedMs' in fatal ? fatal.elapsedMs : 0).toBeLessThanOrEqual(BACKOFF_MAX_ELAPSED_MS);
    expect(fatal && 'lastError' in fatal ? fatal.lastError : '').toBe('HTTP 500');
  });

  it('a connection that never opens times out after 15 s and is retried', () => {
    const h = harness();
    h.clock.advance(15_000);
    expect(h.sockets).toHaveLength(2);
    expect(h.sockets[0]!.closed).toBe(true);
  });
});

describe('portal session: leaving (§1.10)', () => {
  it('closes the socket and ends without a fatal reason', () => {
    const h = harness();
    const s = h.join();
    h.session.send({ type: 'portal.leave' });
    expect(s.closed).toBe(true);
    expect(h.session.getSnapshot().status).toBe('done');
    expect(h.session.getSnapshot().output).toEqual({ fatal: undefined });
  });

  it('an explicit reconnect drops the socket and dials again at once', () => {
    const h = harness();
    const s = h.join();
    h.session.send({ type: 'portal.reconnect' });
    expect(s.closed).toBe(true);
    expect(h.sockets).toHaveLength(2);
  });
});
