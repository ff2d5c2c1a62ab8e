import fc from 'fast-check';
import { DOMAINS, FILTER_CHOICES, RESOURCE_KEYS, type ResourceKey } from './model.js';

/**
 * The transitions of the simulation, as plain data (so fast-check can shrink them and a failing
 * case can be replayed from its seed and path). Indices (`client`, `pick`, ...) are taken modulo
 * what exists when the command runs; a command that finds nothing to act on is counted as a no-op.
 */

export const CLIENTS = 3;

export type Proto = 'icmp' | 'udp' | 'tcp';

export type Target =
  | { readonly cat: 'cidr'; readonly host: number }
  | { readonly cat: 'dns'; readonly domain: number; readonly v6: boolean; readonly idx: number }
  | { readonly cat: 'internet'; readonly v6: boolean }
  | { readonly cat: 'nonResource'; readonly which: number };

export type Spoof = 'peer' | 'tunnel' | 'external' | 'gateway' | 'unspecified' | 'multicast';

export type MalformedVariant =
  | 'truncated'
  | 'badVersion'
  | 'badChecksum'
  | 'fragment'
  | 'tooLarge'
  | 'garbage'
  | 'badControl'
  | 'unknownControl';

export type Command =
  | {
      readonly kind: 'authorize';
      readonly client: number;
      readonly resource: ResourceKey;
      readonly ttlS: number;
    }
  | { readonly kind: 'revoke'; readonly client: number; readonly pick: number }
  | { readonly kind: 'updateFilters'; readonly resource: ResourceKey; readonly filters: number }
  | { readonly kind: 'expire'; readonly pick: number }
  | { readonly kind: 'reinitFewer'; readonly keep: number }
  | { readonly kind: 'relayLoss'; readonly pick: number; readonly announce: boolean }
  | { readonly kind: 'newRelay' }
  | { readonly kind: 'clientRoam'; readonly client: number }
  | { readonly kind: 'idle6min' }
  | { readonly kind: 'portalDisconnect' }
  | {
      readonly kind: 'send';
      readonly client: number;
      readonly proto: Proto;
      readonly target: Target;
      readonly port: number;
      readonly sport: number;
      readonly spoof: Spoof | null;
      readonly payload: Uint8Array;
      /**
       * Two times in three the client aims at one of its own resources (`aim` picks which, and
       * which of its filters to satisfy) instead of `target`/`proto`/`port`: most traffic is meant
       * to get through, the rest probes the edges.
       */
      readonly aim: number;
    }
  | {
      readonly kind: 'dnsQuery';
      readonly client: number;
      readonly v6: boolean;
      readonly name: number;
      readonly upstream: 'up' | 'servfail' | 'silent';
      readonly sport: number;
    }
  | { readonly kind: 'assignedIpsRepeat'; readonly client: number; readonly domain: number }
  | {
      readonly kind: 'assignedIpsRenumber';
      readonly client: number;
      readonly domain: number;
      /** fresh: new proxy IPs; steal: another name's proxy IPs (resets the client's NAT, §6.3 step 1). */
      readonly mode: 'fresh' | 'steal';
      readonly other: number;
    }
  | {
      readonly kind: 'malformed';
      readonly client: number;
      readonly variant: MalformedVariant;
      readonly cut: number;
      readonly bytes: Uint8Array;
    }
  | { readonly kind: 'goodbye'; readonly client: number }
  | {
      /** A resource (or the gateway host) sends to a client unprompted (§4: no connection tracking). */
      readonly kind: 'resourceInitiated';
      readonly client: number;
      readonly from: number;
      readonly proto: Proto;
      readonly port: number;
      readonly dport: number;
      /** To an address no client has. */
      readonly stranger: boolean;
    };

export type CommandKind = Command['kind'];

export const COMMAND_KINDS: readonly CommandKind[] = [
  'authorize',
  'revoke',
  'updateFilters',
  'expire',
  'reinitFewer',
  'relayLoss',
  'newRelay',
  'clientRoam',
  'idle6min',
  'portalDisconnect',
  'send',
  'dnsQuery',
  'assignedIpsRepeat',
  'assignedIpsRenumber',
  'malformed',
  'goodbye',
  'resourceInitiated',
];

/** UDP and TCP destination ports: filter edges, the echo/unreachable/closed ports of the resources. */
export const UDP_PORTS = [7, 9, 53, 5353, 4444] as const;
export const TCP_PORTS = [22, 80, 81, 443, 8080] as const;
/** Names the in-tunnel DNS server is asked about (SRV/TXT, as clients forward them, §7.1). */
export const DNS_NAMES = [
  { name: '_sip._tcp.app.eu.corp.test', type: 'SRV' },
  { name: 'web.svc.test', type: 'TXT' },
  { name: 'nx.svc.test', type: 'TXT' },
] as const;

const client = fc.integer({ min: 0, max: CLIENTS - 1 });
const resource = fc.constantFrom(...RESOURCE_KEYS);
const domain = fc.integer({ min: 0, max: DOMAINS.length - 1 });

const target: fc.Arbitrary<Target> = fc.oneof(
  fc.record({ cat: fc.constant('cidr' as const), host: fc.integer({ min: 0, max: 3 }) }),
  fc.record({
    cat: fc.constant('dns' as const),
    domain,
    v6: fc.boolean(),
    idx: fc.integer({ min: 0, max: 3 }),
  }),
  fc.record({ cat: fc.constant('internet' as const), v6: fc.boolean() }),
  fc.record({ cat: fc.constant('nonResource' as const), which: fc.integer({ min: 0, max: 7 }) }),
);

const spoof: fc.Arbitrary<Spoof | null> = fc.oneof(
  { weight: 9, arbitrary: fc.constant(null) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Spoof>('peer', 'tunnel', 'external', 'gateway', 'unspecified', 'multicast'),
  },
);

const send = fc.record({
  kind: fc.constant('send' as const),
  client,
  proto: fc.constantFrom<Proto>('icmp', 'udp', 'tcp'),
  target,
  port: fc.integer({ min: 0, max: 4 }),
  sport: fc.integer({ min: 1024, max: 65535 }),
  spoof,
  payload: fc.uint8Array({ maxLength: 24 }),
  aim: fc.nat(),
});

export const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('authorize' as const),
      client,
      resource,
      ttlS: fc.oneof(fc.integer({ min: 5, max: 60 }), fc.integer({ min: 600, max: 7200 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('revoke' as const), client, pick: fc.nat(20) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('updateFilters' as const),
      resource: fc.constantFrom<ResourceKey>('LAB', 'DB', 'V6', 'PROXYNET', 'WEB', 'CORP'),
      filters: fc.integer({ min: 0, max: FILTER_CHOICES.length - 1 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const), pick: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reinitFewer' as const), keep: fc.nat(255) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('relayLoss' as const),
      pick: fc.nat(5),
      announce: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'newRelay' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('clientRoam' as const), client }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'idle6min' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'portalDisconnect' as const }) },
  { weight: 14, arbitrary: send },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('dnsQuery' as const),
      client,
      v6: fc.boolean(),
      name: fc.integer({ min: 0, max: DNS_NAMES.length - 1 }),
      upstream: fc.constantFrom<'up' | 'servfail' | 'silent'>('up', 'up', 'servfail', 'silent'),
      sport: fc.integer({ min: 1024, max: 65535 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('assignedIpsRepeat' as const), client, domain }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('assignedIpsRenumber' as const),
      client,
      domain,
      mode: fc.constantFrom<'fresh' | 'steal'>('fresh', 'steal'),
      other: domain,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('malformed' as const),
      client,
      variant: fc.constantFrom<MalformedVariant>(
        'truncated',
        'badVersion',
        'badChecksum',
        'fragment',
        'tooLarge',
        'garbage',
        'badControl',
        'unknownControl',
      ),
      cut: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('goodbye' as const), client }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('resourceInitiated' as const),
      client,
      from: fc.integer({ min: 0, max: 6 }),
      proto: fc.constantFrom<Proto>('icmp', 'udp', 'tcp'),
      port: fc.integer({ min: 0, max: 4 }),
      dport: fc.integer({ min: 1024, max: 65535 }),
      stranger: fc.oneof(
        { weight: 3, arbitrary: fc.constant(false) },
        { weight: 1, arbitrary: fc.constant(true) },
      ),
    }),
  },
);

/** A case: which clients are relay-only, what they start authorized for, then 5–20 transitions. */
export interface SimCaseSpec {
  readonly relayOnly: readonly boolean[];
  /** Each resource's filters at the portal when the case starts (indices into FILTER_CHOICES). */
  readonly filters: readonly number[];
  readonly initial: readonly { readonly client: number; readonly resource: ResourceKey }[];
  readonly commands: readonly Command[];
}

export const caseArb: fc.Arbitrary<SimCaseSpec> = fc.record({
  relayOnly: fc.tuple(fc.constant(false), fc.boolean(), fc.boolean()),
  filters: fc.array(fc.integer({ min: 0, max: FILTER_CHOICES.length - 1 }), {
    minLength: RESOURCE_KEYS.length,
    maxLength: RESOURCE_KEYS.length,
  }),
  // Clients 0 and 1 start authorized; client 2 may start with nothing.
  initial: fc
    .tuple(resource, resource, fc.array(fc.record({ client, resource }), { maxLength: 4 }))
    .map(([a, b, rest]) => [{ client: 0, resource: a }, { client: 1, resource: b }, ...rest]),
  commands: fc.array(commandArb, { minLength: 5, maxLength: 20 }),
});

/** One line per command, for failure reports. */
export function showCommand(c: Command): string {
  const { kind, ...rest } = c;
  const fields = Object.entries(rest).map(([k, v]) =>
    v instanceof Uint8Array ? `${k}=<${v.length} bytes>` : `${k}=${JSON.stringify(v)}`,
  );
  return `${kind}(${fields.join(' ')})`;
}
