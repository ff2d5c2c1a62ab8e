import { assign, fromPromise, setup } from 'xstate';

/**
 * Which upstream nameserver the gateway uses (`spec/gateway-dataplane.md` §7.4): every server of
 * `/etc/resolv.conf` is probed over UDP and TCP, and the fastest of the round is selected. The
 * reference keeps the best round-trip time ever seen, so a server that once answered stays
 * selectable after it died; here every round starts from nothing, so a dead server loses its
 * place at the next round.
 *
 *   probing ──someone answered──▶ selected ──every 60 s, or the selected server stopped answering──▶ probing
 *      │ ▲                                                                                          │
 *      │ └─────────────── retry (1 s, 2 s, 4 s, … up to 60 s) ◀── unavailable ◀──nobody answered────┘
 *      └──nobody answered──▶ unavailable
 *
 * While a round runs the previous choice stays in use; when the selected server stops answering
 * the next-fastest of the last round takes over at once, and a new round starts. With nobody
 * answering there is no selection: the DNS server answers SERVFAIL at once rather than wait.
 */

/** One server's outcome in a probe round: its fastest answer (UDP or TCP), if it answered. */
export interface NameserverProbe {
  /** The server's address as text (`192.0.2.53`, `2001:db8::53`). */
  readonly server: string;
  readonly rttMs: number | undefined;
}

export interface NameserverSelectorInput {
  readonly servers: readonly string[];
}

export interface NameserverSelectorContext {
  readonly servers: readonly string[];
  /** The servers that answered in the last round, fastest first (minus any that stopped answering). */
  ranking: readonly NameserverProbe[];
  /** The server in use, if any. */
  selected: string | undefined;
  /** Completed rounds (for inspection). */
  rounds: number;
  /** Rounds in a row in which nobody answered (drives the retry backoff). */
  failedRounds: number;
  lastError: string | undefined;
}

export type NameserverSelectorEvent =
  /** A forwarded query or a lookup got no answer from `server` (timeout, refused, unreachable). */
  | { type: 'nameserver.unresponsive'; server: string }
  /** Probe now (operator request, or the configuration changed). */
  | { type: 'nameserver.reevaluate' };

/** Re-evaluation period while a server is selected (ac339ff63b, #9060). */
export const NAMESERVER_REEVALUATE_MS = 60_000;
/** First retry after a round in which nobody answered; doubles up to the re-evaluation period. */
export const NAMESERVER_RETRY_BASE_MS = 1_000;

export function nameserverRetryMs(failedRounds: number): number {
  return Math.min(NAMESERVER_REEVALUATE_MS, NAMESERVER_RETRY_BASE_MS * 2 ** Math.max(0, failedRounds - 1));
}

export const nameserverSelectorMachine = setup({
  types: {
    context: {} as NameserverSelectorContext,
    events: {} as NameserverSelectorEvent,
    input: {} as NameserverSelectorInput,
  },
  actors: {
    /** Probes every server once over UDP and TCP. Provided by src/actors. */
    probeRound: fromPromise<readonly NameserverProbe[], { servers: readonly string[] }>(() =>
      Promise.reject(new Error("nameserver-selector actor 'probeRound' was not provided")),
    ),
  },
  actions: {
    /** Tells the DNS layer the selection may have changed (it logs changes). Provided by src/actors. */
    selectionChanged: () => undefined,
    storeRound: assign(({ context, event }) => {
      const probes = (event as unknown as { output: readonly NameserverProbe[] }).output;
      const ranking = probes
        .filter((p) => p.rttMs !== undefined)
        .sort((a, b) => (a.rttMs as number) - (b.rttMs as number));
      return {
        ranking,
        selected: ranking[0]?.server,
        rounds: context.rounds + 1,
        failedRounds: ranking.length > 0 ? 0 : context.failedRounds + 1,
        lastError: ranking.length > 0 ? undefined : 'no nameserver answered',
      };
    }),
    recordProbeError: assign(({ context, event }) => ({
      ranking: [],
      selected: undefined,
      rounds: context.rounds + 1,
      failedRounds: context.failedRounds + 1,
      lastError: String((event as unknown as { error: unknown }).error),
    })),
    /** The server stopped answering: out of the ranking, and the next-fastest takes over. */
    dropUnresponsive: assign(({ context, event }) => {
      if (event.type !== 'nameserver.unresponsive') return {};
      const ranking = context.ranking.filter((p) => p.server !== event.server);
      return { ranking, selected: ranking[0]?.server };
    }),
  },
  guards: {
    someoneAnswered: ({ event }) =>
      (event as unknown as { output: readonly NameserverProbe[] }).output.some((p) => p.rttMs !== undefined),
    isSelected: ({ context, event }) =>
      event.type === 'nameserver.unresponsive' && event.server === context.selected,
  },
  delays: {
    reevaluate: NAMESERVER_REEVALUATE_MS,
    retry: ({ context }) => nameserverRetryMs(context.failedRounds),
  },
}).createMachine({
  id: 'nameserverSelector',
  description:
    'Chooses the upstream nameserver for the in-tunnel DNS server and the DNS-resource lookups. Every ' +
    'round probes each server of resolv.conf over UDP and TCP (an A query, 2 s each) and selects the ' +
    'fastest server of that round, so a server that died loses its place at the next round (the ' +
    'reference kept the best time ever seen). Rounds repeat every 60 s, and at once when the selected ' +
    'server stops answering, whose place the next-fastest takes meanwhile. When nobody answers there ' +
    'is no selection (queries get SERVFAIL at once) and rounds retry after 1 s, 2 s, 4 s, … up to 60 s.',
  context: ({ input }) => ({
    servers: input.servers,
    ranking: [],
    selected: undefined,
    rounds: 0,
    failedRounds: 0,
    lastError: undefined,
  }),
  initial: 'probing',
  states: {
    probing: {
      invoke: {
        id: 'probeRound',
        src: 'probeRound',
        input: ({ context }) => ({ servers: context.servers }),
        onDone: [
          { guard: 'someoneAnswered', target: 'selected', actions: ['storeRound', 'selectionChanged'] },
          { target: 'unavailable', actions: ['storeRound', 'selectionChanged'] },
        ],
        onError: { target: 'unavailable', actions: ['recordProbeError', 'selectionChanged'] },
      },
      on: {
        'nameserver.unresponsive': { actions: ['dropUnresponsive', 'selectionChanged'] },
      },
    },
    selected: {
      after: { reevaluate: { target: 'probing' } },
      on: {
        'nameserver.unresponsive': [
          { guard: 'isSelected', target: 'probing', actions: ['dropUnresponsive', 'selectionChanged'] },
          { actions: 'dropUnresponsive' },
        ],
        'nameserver.reevaluate': { target: 'probing' },
      },
    },
    unavailable: {
      after: { retry: { target: 'probing' } },
      on: {
        'nameserver.reevaluate': { target: 'probing' },
      },
    },
  },
});
