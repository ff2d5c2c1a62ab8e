import { assign, fromPromise, setup } from 'xstate';
import type { ClientId, ResourceId } from '../wire/ids.js';

/**
 * One client's NAT binding for one name of a DNS resource (`spec/gateway-dataplane.md` §6.2–§6.3).
 * The client resolved `domain` to proxy IPs of its own and announced them (AssignedIps); the
 * gateway resolves the name for real (A and AAAA in parallel, through the selected nameserver,
 * TTL-cached), maps the proxy IPs onto the real addresses in the router and reports the
 * DomainStatus back through the tunnel.
 *
 *   resolving ──answer, resource granted──▶ active ──AssignedIps again──▶ resolving
 *       │     ──answer, not granted───────▶ inactive ─┘
 *       │ lookup failed: Inactive reported
 *       ▼
 *   retrying (1 s, 2 s, 4 s) ──▶ resolving … attempts used up ──▶ failed ──AssignedIps──▶ resolving
 *
 *   active / inactive / failed ──15 min without AssignedIps──▶ done (final; the translations stay)
 *
 * Every AssignedIps resolves again (the cache answers while the TTL lasts), so a client that
 * queries the name again picks up new addresses; the router keeps the old address for a proxy IP
 * with open flows, so running connections survive. A repeat while a lookup runs only updates the
 * proxy IPs: the answer underway serves it.
 */

export interface DnsResourceNatInput {
  readonly clientId: ClientId;
  readonly resourceId: ResourceId;
  /** The name the client resolved, lowercased. */
  readonly domain: string;
  /** The client's proxy IPs for the name, as text. */
  readonly proxyIps: readonly string[];
}

export interface DnsResourceNatContext {
  readonly clientId: ClientId;
  resourceId: ResourceId;
  readonly domain: string;
  proxyIps: readonly string[];
  /** The addresses of the last answer, as text. */
  realAddrs: readonly string[] | undefined;
  /** Failed lookups in a row. */
  attempts: number;
  /** Lookups done (for inspection). */
  resolutions: number;
  lastError: string | undefined;
}

export type DnsResourceNatEvent = {
  type: 'nat.assigned';
  resourceId: ResourceId;
  proxyIps: readonly string[];
};

/** Retries after a failed lookup before the binding waits for the client to ask again. */
export const NAT_RESOLVE_RETRIES = 3;
/** Backoff before retry n (1-based): 1 s, 2 s, 4 s. */
export const NAT_RETRY_BASE_MS = 1_000;
/** A binding nobody asked about for this long ends (its translations stay in the router). */
export const NAT_BINDING_IDLE_MS = 15 * 60_000;

export function natRetryMs(attempts: number): number {
  return NAT_RETRY_BASE_MS * 2 ** Math.max(0, attempts - 1);
}

export const dnsResourceNatMachine = setup({
  types: {
    context: {} as DnsResourceNatContext,
    events: {} as DnsResourceNatEvent,
    input: {} as DnsResourceNatInput,
  },
  actors: {
    /** A and AAAA of the name, merged; rejects when neither family has an address. Provided by src/actors. */
    resolve: fromPromise<readonly string[], { domain: string }>(() =>
      Promise.reject(new Error("dns-resource-nat actor 'resolve' was not provided")),
    ),
  },
  actions: {
    /** Maps the proxy IPs onto `realAddrs` in the router and reports the DomainStatus. Provided by src/actors. */
    applyNat: notProvided('applyNat'),
    /** Reports DomainStatus Inactive to the client. Provided by src/actors. */
    reportInactive: notProvided('reportInactive'),
    storeRequest: assign(({ context, event }) =>
      event.type === 'nat.assigned' ? { resourceId: event.resourceId, proxyIps: event.proxyIps } : context,
    ),
    storeAnswer: assign(({ context, event }) => ({
      realAddrs: (event as unknown as { output: readonly string[] }).output,
      attempts: 0,
      resolutions: context.resolutions + 1,
      lastError: undefined,
    })),
    recordFailure: assign(({ context, event }) => ({
      attempts: context.attempts + 1,
      resolutions: context.resolutions + 1,
      lastError: String((event as unknown as { error: unknown }).error),
    })),
    resetAttempts: assign({ attempts: 0 }),
  },
  guards: {
    /** Whether the client may use this name now (an authorized DNS resource whose pattern covers it). Provided by src/actors. */
    natAllowed: () => false,
    retriesLeft: ({ context }) => context.attempts < NAT_RESOLVE_RETRIES,
  },
  delays: {
    retry: ({ context }) => natRetryMs(context.attempts),
    idle: NAT_BINDING_IDLE_MS,
  },
}).createMachine({
  id: 'dnsResourceNat',
  description:
    "One client's NAT for one name of a DNS resource. On AssignedIps the gateway resolves the name " +
    '(A and AAAA in parallel through the selected nameserver, cached for the TTL), maps the proxy IPs ' +
    'onto the real addresses in the router (per family, round-robin, falling back to the other family) ' +
    'and reports DomainStatus Active; a resource the client may not use gives Inactive. A failed ' +
    'lookup reports Inactive and is retried after 1 s, 2 s and 4 s. Every AssignedIps resolves again; ' +
    'a repeat during a lookup only updates the proxy IPs. Open flows keep their address (the router ' +
    'decides). A binding idle for 15 minutes ends; its translations stay.',
  context: ({ input }) => ({
    clientId: input.clientId,
    resourceId: input.resourceId,
    domain: input.domain,
    proxyIps: input.proxyIps,
    realAddrs: undefined,
    attempts: 0,
    resolutions: 0,
    lastError: undefined,
  }),
  initial: 'resolving',
  states: {
    resolving: {
      invoke: {
        id: 'resolve',
        src: 'resolve',
        input: ({ context }) => ({ domain: context.domain }),
        onDone: [
          { guard: 'natAllowed', target: 'active', actions: ['storeAnswer', 'applyNat'] },
          { target: 'inactive', actions: ['storeAnswer', 'applyNat'] },
        ],
        onError: [
          { guard: 'retriesLeft', target: 'retrying', actions: ['recordFailure', 'reportInactive'] },
          { target: 'failed', actions: ['recordFailure', 'reportInactive'] },
        ],
      },
      on: {
        'nat.assigned': { actions: 'storeRequest' },
      },
    },
    retrying: {
      after: { retry: { target: 'resolving' } },
      on: {
        'nat.assigned': { target: 'resolving', actions: ['storeRequest', 'resetAttempts'] },
      },
    },
    active: {
      after: { idle: { target: 'done' } },
      on: {
        'nat.assigned': { target: 'resolving', actions: 'storeRequest' },
      },
    },
    inactive: {
      after: { idle: { target: 'done' } },
      on: {
        'nat.assigned': { target: 'resolving', actions: 'storeRequest' },
      },
    },
    failed: {
      after: { idle: { target: 'done' } },
      on: {
        'nat.assigned': { target: 'resolving', actions: ['storeRequest', 'resetAttempts'] },
      },
    },
    done: { type: 'final' },
  },
  output: ({ context }) => ({ domain: context.domain, resolutions: context.resolutions }),
});

function notProvided(name: string) {
  return () => {
    throw new Error(`dns-resource-nat action '${name}' was not provided`);
  };
}
