import type { z } from 'zod';
import type { ResourceId } from '../ids.js';
import { type IpPrefix, parsePrefix } from '../ip/prefix.js';
import type { Filter, Resource } from '../policy.js';
import {
  type Ctx,
  field,
  Invalid,
  listWithSkips,
  object,
  problem,
  Skip,
  show,
  tagged,
  text,
  under,
  uuid,
  type WithSkips,
} from './schemas.js';

/**
 * Resource descriptions as the portal sends them to gateways (`spec/portal-protocol.md` §4.2),
 * decoded into the `Resource` of `src/wire/policy.ts`.
 *
 * Deviations from the reference, which drops the whole message for any of these:
 * - a filter with an unknown protocol is skipped (a `skipped` line) and the rest of the list
 *   kept; but when *every* filter is skipped the resource is refused, because the empty list
 *   left over would mean "permit everything" (fail closed);
 * - `port_range_start > port_range_end` (which panics the reference) refuses the message with
 *   `portal.bad-port-range`.
 */

const MAX_PORT = 65535;

/** An optional port bound: absent is `undefined`; null, floats and strings are refused. */
const portBound = (which: string) =>
  field(`a ${which} port from 0 to ${MAX_PORT}`, (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_PORT ? v : new Invalid(),
  ).optional();

/** `{"protocol":"tcp"|"udp","port_range_start"?,"port_range_end"?}`: absent bounds are 0 and 65535. */
const portRangeFilter = (protocol: 'tcp' | 'udp') =>
  object(`a ${protocol} filter`, {
    port_range_start: portBound('first'),
    port_range_end: portBound('last'),
  }).transform((f, ctx): Filter => {
    const portStart = f.port_range_start ?? 0;
    const portEnd = f.port_range_end ?? MAX_PORT;
    if (portStart > portEnd) {
      return problem(
        ctx,
        `${protocol} port range ${portStart}-${portEnd} is empty: port_range_start must not exceed port_range_end`,
        [],
        'portal.bad-port-range',
      );
    }
    return { protocol, portStart, portEnd };
  });

const ICMP_FILTER: Filter = { protocol: 'icmp' };

const filterEntry = tagged(
  'a filter object',
  'protocol',
  new Map<string, z.ZodType<Filter>>([
    ['tcp', portRangeFilter('tcp')],
    ['udp', portRangeFilter('udp')],
    ['icmp', object('an icmp filter', {}).transform((): Filter => ICMP_FILTER)],
  ]),
  (protocol) =>
    new Skip(`unknown filter protocol ${show(protocol)} (expected tcp, udp or icmp); filter ignored`),
);

const filterList = listWithSkips('a list of filters (an empty list permits everything)', filterEntry);

/** The decoded filter list of a resource, refused when every entry was skipped. */
function filters(f: WithSkips<Filter[]>, ctx: Ctx): WithSkips<readonly Filter[]> {
  if (f.value.length === 0 && f.skipped.length > 0) {
    return problem(
      ctx,
      'every filter has an unknown protocol: the empty list left would permit everything, so the resource is refused',
      ['filters'],
    );
  }
  return { value: f.value, skipped: under(['filters'], f.skipped) };
}

const cidrAddress = field('a CIDR with zero host bits, e.g. 172.20.0.0/16', (v): IpPrefix | Invalid => {
  if (typeof v !== 'string') return new Invalid();
  const r = parsePrefix(v);
  return r.ok ? r.value : new Invalid(r.error.message);
});

/** Matched against names later (`spec/portal-protocol.md` §4.2); here only "a non-empty string". */
const dnsPattern = field('a DNS name pattern', (v) =>
  typeof v !== 'string' ? new Invalid() : v.length === 0 ? new Invalid('it is empty') : v,
);

const resourceId = uuid<ResourceId>('resource id');
const resourceName = text('a resource name (a string)');

const cidrResource = object('a cidr resource', {
  id: resourceId,
  name: resourceName,
  address: cidrAddress,
  filters: filterList,
}).transform((r, ctx): WithSkips<Resource> => {
  const f = filters(r.filters, ctx);
  return {
    value: { type: 'cidr', id: r.id, name: r.name, address: r.address, filters: f.value },
    skipped: f.skipped,
  };
});

const dnsResource = object('a dns resource', {
  id: resourceId,
  name: resourceName,
  address: dnsPattern,
  filters: filterList,
}).transform((r, ctx): WithSkips<Resource> => {
  const f = filters(r.filters, ctx);
  return {
    value: { type: 'dns', id: r.id, name: r.name, pattern: r.address, filters: f.value },
    skipped: f.skipped,
  };
});

/** `internet`: only the id counts; everything else is ignored (§4.2). */
const internetResource = object('an internet resource', { id: resourceId }).transform(
  (r): WithSkips<Resource> => ({ value: { type: 'internet', id: r.id }, skipped: [] }),
);

/**
 * One resource description. An unknown `type` cannot be honoured (it would grant something we
 * do not understand), so it refuses the enclosing message with `portal.invalid` (§4.2).
 */
export const resourceSchema = tagged(
  'a resource description',
  'type',
  new Map<string, z.ZodType<WithSkips<Resource>>>([
    ['cidr', cidrResource],
    ['dns', dnsResource],
    ['internet', internetResource],
  ]),
  (type, ctx) =>
    problem(ctx, `unknown resource type ${show(type)}: expected cidr, dns or internet`, ['type']),
);
