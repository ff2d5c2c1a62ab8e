import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  answerAddresses,
  buildFormerr,
  buildQuery,
  buildServfail,
  DNS_RCODE,
  type DnsErrorCode,
  type DnsQuery,
  type DnsQuestion,
  isDnsName,
  parseDnsQuery,
  parseDnsResponse,
  truncateForUdp,
} from '../../../../src/wire/dns/message.js';
import { formatIp, parseIp } from '../../../../src/wire/ip/address.js';
import { PROPERTY_RUNS } from '../../../support/arbitraries.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

const DNS_ERROR_CODES: ReadonlySet<DnsErrorCode> = new Set<DnsErrorCode>([
  'dns.short',
  'dns.malformed',
  'dns.not-query',
  'dns.not-response',
  'dns.question-count',
  'dns.id-mismatch',
  'dns.question-mismatch',
  'dns.too-large',
]);

/** dns-packet's type and class names with their numbers (an independent table). */
const TYPES = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33 } as const;
const CLASSES = { IN: 1, CH: 3, HS: 4, ANY: 255 } as const;

// --- Arbitraries -------------------------------------------------------------------------------

const LABEL_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_'.split('');
const labelArb = fc.string({ unit: fc.constantFrom(...LABEL_CHARS), minLength: 1, maxLength: 63 });
/** Host names dns-packet encodes faithfully: ASCII labels, at most 255 bytes on the wire. */
const nameArb = fc
  .array(
    fc.oneof(
      { weight: 4, arbitrary: labelArb.map((l) => l.slice(0, 12)) },
      { weight: 1, arbitrary: labelArb },
    ),
    {
      minLength: 1,
      maxLength: 5,
    },
  )
  .filter((labels) => labels.reduce((n, l) => n + l.length + 1, 1) <= 255)
  .map((labels) => labels.join('.'));

const typeNameArb = fc.constantFrom(...(Object.keys(TYPES) as (keyof typeof TYPES)[]));
const classNameArb = fc.constantFrom(...(Object.keys(CLASSES) as (keyof typeof CLASSES)[]));
const ipv6TextArb = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIp(b));

const optArb: fc.Arbitrary<dnsPacket.Answer> = fc
  .record({
    size: fc.integer({ min: 512, max: 4096 }),
    cookie: fc.uint8Array({ minLength: 8, maxLength: 8 }),
  })
  .map(
    ({ size, cookie }) =>
      ({
        type: 'OPT',
        name: '.',
        udpPayloadSize: size,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: 0,
        flag_do: false,
        options: [{ code: 10, data: Buffer.from(cookie) }],
      }) as unknown as dnsPacket.Answer,
  );

const recordArb: fc.Arbitrary<dnsPacket.Answer> = fc.oneof(
  fc.record({ type: fc.constant('A' as const), name: nameArb, ttl: fc.nat(), data: fc.ipV4() }),
  fc.record({ type: fc.constant('AAAA' as const), name: nameArb, ttl: fc.nat(), data: ipv6TextArb }),
  fc.record({ type: fc.constant('CNAME' as const), name: nameArb, ttl: fc.nat(), data: nameArb }),
  fc.record({
    type: fc.constant('TXT' as const),
    name: nameArb,
    ttl: fc.nat(),
    data: fc.array(
      fc.uint8Array({ maxLength: 255 }).map((b) => Buffer.from(b)),
      { minLength: 1, maxLength: 3 },
    ),
  }),
  fc.record({
    type: fc.constant('SOA' as const),
    name: nameArb,
    ttl: fc.nat(),
    data: fc.record({
      mname: nameArb,
      rname: nameArb,
      serial: fc.nat(),
      refresh: fc.nat(),
      retry: fc.nat(),
      expire: fc.nat(),
      minimum: fc.nat(),
    }),
  }),
);

interface QuerySpec {
  id: number;
  flags: number;
  name: string;
  type: keyof typeof TYPES;
  klass: keyof typeof CLASSES;
  opt: dnsPacket.Answer | undefined;
}

const querySpecArb: fc.Arbitrary<QuerySpec> = fc.record({
  id: fc.integer({ min: 0, max: 0xffff }),
  flags: fc.integer({ min: 0, max: 0x7fff }),
  name: nameArb,
  type: typeNameArb,
  klass: classNameArb,
  opt: fc.option(optArb, { nil: undefined }),
});

function buildWithDnsPacket(spec: QuerySpec): Uint8Array {
  return new Uint8Array(
    dnsPacket.encode({
      type: 'query',
      id: spec.id,
      flags: spec.flags,
      questions: [{ name: spec.name, type: spec.type, class: spec.klass }],
      additionals: spec.opt ? [spec.opt] : [],
    }),
  );
}

const queryArb = querySpecArb.map((spec) => ({ spec, bytes: buildWithDnsPacket(spec) }));

/**
 * Responses with random records, and often with 250-byte TXT answers to the question so that
 * about half of them exceed the 1200-byte UDP limit.
 */
const responseArb = fc
  .record({
    q: querySpecArb,
    answers: fc.array(recordArb, { maxLength: 8 }),
    filler: fc.nat(8),
    authorities: fc.array(recordArb, { maxLength: 3 }),
    additionals: fc.array(recordArb, { maxLength: 3 }),
  })
  .map(({ q, answers, filler, authorities, additionals }) => {
    const txt = Array.from({ length: filler }, (_, i) => ({
      type: 'TXT' as const,
      name: q.name,
      ttl: 60,
      data: [Buffer.alloc(250, 0x30 + i)],
    }));
    const bytes = new Uint8Array(
      dnsPacket.encode({
        type: 'response',
        id: q.id,
        flags: q.flags,
        questions: [{ name: q.name, type: q.type, class: q.klass }],
        answers: [...txt, ...answers],
        authorities,
        additionals: q.opt ? [...additionals, q.opt] : additionals,
      }),
    );
    const question: DnsQuestion = { name: q.name, type: TYPES[q.type], class: CLASSES[q.klass] };
    return { id: q.id, question, bytes };
  });

/** Bit flips, byte edits and truncation of a valid message. */
function mutated(base: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(
      base,
      fc.array(fc.tuple(fc.nat(), fc.nat(7)), { maxLength: 2 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 1 }),
      // A cut one time in four.
      fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat() }),
    )
    .map(([bytes, flips, edits, cut]) => {
      const out = Uint8Array.from(bytes);
      for (const [at, bit] of flips) out[at % out.length]! ^= 1 << bit;
      for (const [at, v] of edits) out[at % out.length] = v;
      return cut === undefined ? out : out.subarray(0, cut % (out.length + 1));
    });
}

/** Bytes that get past the header checks often, as well as plain noise. */
const dnsishBytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 80 }),
  fc
    .tuple(
      fc.uint8Array({ minLength: 4, maxLength: 4 }),
      fc.constantFrom(0, 1, 1, 1, 2),
      fc.array(fc.nat(3), { minLength: 3, maxLength: 3 }),
      fc.uint8Array({ maxLength: 120 }),
    )
    .map(([idFlags, qd, counts, body]) => {
      const out = new Uint8Array(12 + body.length);
      out.set(idFlags);
      out[5] = qd;
      out[7] = counts[0]!;
      out[9] = counts[1]!;
      out[11] = counts[2]!;
      out.set(body, 12);
      return out;
    }),
  mutated(queryArb.map((q) => q.bytes)),
  mutated(responseArb.map((r) => r.bytes)),
);

// --- Checks ------------------------------------------------------------------------------------

function expectTypedError(r: { ok: boolean; error?: { code: string; message: string } }): void {
  if (r.ok) return;
  expect(DNS_ERROR_CODES.has(r.error!.code as DnsErrorCode)).toBe(true);
  expect(typeof r.error!.message).toBe('string');
}

/** A SERVFAIL for `q` parses as the answer to `q`, and its header is built as §7.3 step 4 says. */
function expectServfailAnswers(q: DnsQuery): void {
  const out = buildServfail(q);
  const r = parseDnsResponse(out, { id: q.id, question: q.question });
  expect(r.ok, r.ok ? '' : r.error.message).toBe(true);
  if (!r.ok) return;
  expect(r.value.rcode).toBe(DNS_RCODE.SERVFAIL);
  expect(r.value.tc).toBe(false);
  expect(r.value.answers).toEqual([]);
  expect(r.value.authorities).toEqual([]);
  expect(r.value.question).toEqual(q.question);
  const flags = (out[2]! << 8) | out[3]!;
  expect(flags & 0x8000).toBe(0x8000);
  expect((flags >> 11) & 0xf).toBe(q.opcode);
  expect((flags & 0x0100) !== 0).toBe(q.rd);
  expect(flags & 0x06f0).toBe(0); // AA, TC, RA, Z, AD, CD clear
  expect(hex(out.subarray(6, 12))).toBe('000000000000');
}

function useEverything(bytes: Uint8Array, limit: number): void {
  const q = parseDnsQuery(bytes);
  expectTypedError(q);
  if (q.ok) {
    expect(q.value.bytes).toBe(bytes);
    expectServfailAnswers(q.value);
  }
  for (const r of [
    parseDnsResponse(bytes),
    parseDnsResponse(bytes, { id: 0, question: { name: 'a', type: 1, class: 1 } }),
  ]) {
    expectTypedError(r);
    if (r.ok) {
      for (const family of [4, 6] as const) {
        const found = answerAddresses(r.value, family);
        for (const a of found.addrs) expect(a.length).toBe(family === 4 ? 4 : 16);
        expect(new Set(found.addrs.map(hex)).size).toBe(found.addrs.length);
      }
    }
  }
  const formerr = buildFormerr(bytes);
  if (bytes.length < 12 || (bytes[2]! & 0x80) !== 0) {
    expect(formerr).toBeUndefined();
  } else {
    expect(formerr!.length).toBe(12);
    expect(hex(formerr!.subarray(0, 2))).toBe(hex(bytes.subarray(0, 2)));
    expect(formerr![3]! & 0x0f).toBe(DNS_RCODE.FORMERR);
  }
  const t = truncateForUdp(bytes, limit);
  if (bytes.length <= limit || bytes.length < 12) {
    expect(t).toBe(bytes);
  } else {
    expect(t.length).toBeLessThanOrEqual(bytes.length);
    expect(t.length).toBeGreaterThanOrEqual(12);
    expect(t[2]! & 0x02).toBe(0x02);
    expect(hex(t.subarray(6, 12))).toBe('000000000000');
  }
}

// --- Properties --------------------------------------------------------------------------------

describe('DNS message properties', () => {
  it('handles any bytes without throwing: a value or a typed error', () => {
    fc.assert(
      fc.property(dnsishBytesArb, fc.integer({ min: 0, max: 1500 }), (bytes, limit) => {
        useEverything(bytes, limit);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('parses every query dns-packet builds, as dns-packet reads it', () => {
    fc.assert(
      fc.property(queryArb, ({ spec, bytes }) => {
        const r = parseDnsQuery(bytes);
        expect(r.ok, r.ok ? '' : r.error.message).toBe(true);
        if (!r.ok) return;
        const d = dnsPacket.decode(Buffer.from(bytes));
        expect(r.value.id).toBe(d.id);
        expect(r.value.rd).toBe(d.flag_rd);
        expect(r.value.opcode).toBe((spec.flags >> 11) & 0xf);
        expect(r.value.question).toEqual({
          name: spec.name,
          type: TYPES[spec.type],
          class: CLASSES[spec.klass],
        });
        expect(d.questions![0]!.name).toBe(spec.name);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('answers every valid query with a SERVFAIL that parses as its response', () => {
    fc.assert(
      fc.property(queryArb, ({ bytes }) => {
        const r = parseDnsQuery(bytes);
        if (!r.ok) throw new Error(r.error.message);
        expectServfailAnswers(r.value);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('parses every response dns-packet builds, with the records dns-packet reads', () => {
    fc.assert(
      fc.property(responseArb, ({ id, question, bytes }) => {
        const r = parseDnsResponse(bytes, { id, question });
        expect(r.ok, r.ok ? '' : r.error.message).toBe(true);
        if (!r.ok) return;
        const d = dnsPacket.decode(Buffer.from(bytes));
        expect(r.value.rcode).toBe(((d.flags ?? 0) & 0xf) >>> 0);
        expect(r.value.tc).toBe(d.flag_tc);
        const oracle = (list: dnsPacket.Answer[] | undefined) =>
          (list ?? []).map((a) => {
            const base = {
              name: a.name,
              type: TYPES[a.type as keyof typeof TYPES],
              ttl: (a as { ttl: number }).ttl,
            };
            const data = (a as { data: unknown }).data;
            switch (a.type) {
              case 'A':
              case 'AAAA':
                return { ...base, address: parseIp(data as string) };
              case 'CNAME':
                return { ...base, target: data };
              case 'SOA':
                return { ...base, soaMinimum: (data as dnsPacket.SoaData).minimum };
              default:
                return base;
            }
          });
        expect(r.value.answers).toEqual(oracle(d.answers));
        expect(r.value.authorities).toEqual(oracle(d.authorities));
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('truncates a response to its question within the limit, and it still parses', () => {
    fc.assert(
      fc.property(responseArb, fc.integer({ min: 12, max: 1500 }), ({ id, question, bytes }, limit) => {
        const out = truncateForUdp(bytes, limit);
        if (bytes.length <= limit) {
          expect(out).toBe(bytes);
          return;
        }
        // dns-packet writes names uncompressed: a length byte per label, the labels, the root.
        const questionBytes = question.name.length + 2 + 4;
        if (12 + questionBytes <= limit) expect(out.length).toBeLessThanOrEqual(limit);
        const r = parseDnsResponse(out, { id, question });
        expect(r.ok, r.ok ? '' : r.error.message).toBe(true);
        if (!r.ok) return;
        expect(r.value.tc).toBe(true);
        expect(r.value.answers).toEqual([]);
        expect(r.value.authorities).toEqual([]);
        expect(hex(out.subarray(8, 12))).toBe('00000000');
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('survives bit flips, edits and truncation of valid messages', () => {
    fc.assert(
      fc.property(
        mutated(
          fc.oneof(
            queryArb.map((q) => q.bytes),
            responseArb.map((r) => r.bytes),
          ),
        ),
        fc.integer({ min: 0, max: 1500 }),
        (bytes, limit) => {
          useEverything(bytes, limit);
        },
      ),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('reads any label bytes as a name that encodes back to the same bytes', () => {
    const labelsArb = fc
      .array(fc.uint8Array({ minLength: 1, maxLength: 63 }), { maxLength: 6 })
      .filter((labels) => labels.reduce((n, l) => n + l.length + 1, 1) <= 255);
    fc.assert(
      fc.property(labelsArb, fc.integer({ min: 0, max: 0xffff }), (labels, type) => {
        const wire = Buffer.concat([
          ...labels.flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]),
          Buffer.from([0]),
        ]);
        const bytes = Buffer.concat([
          Buffer.from('abcd01000001000000000000', 'hex'),
          wire,
          Buffer.from([type >> 8, type & 0xff, 0, 1]),
        ]);
        const r = parseDnsQuery(bytes);
        expect(r.ok, r.ok ? '' : r.error.message).toBe(true);
        if (!r.ok) return;
        const name = r.value.question.name;
        expect(/^[\x21-\x7e]+$/.test(name)).toBe(true);
        expect(isDnsName(name)).toBe(true);
        expect(hex(buildQuery({ id: 0xabcd, name, type }))).toBe(hex(bytes));
        // Any ASCII case change still matches as the expected question.
        const flipped = name.replace(/[a-z]/gi, (c) =>
          c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase(),
        );
        const resp = Uint8Array.from(bytes);
        resp[2]! |= 0x80;
        const m = parseDnsResponse(resp, { id: 0xabcd, question: { name: flipped, type, class: 1 } });
        expect(m.ok, m.ok ? '' : m.error.message).toBe(true);
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('finds only addresses of the asked family, once each, with a TTL no larger than theirs', () => {
    fc.assert(
      fc.property(responseArb, fc.constantFrom(4 as const, 6 as const), ({ bytes }, family) => {
        const r = parseDnsResponse(bytes);
        if (!r.ok) throw new Error(r.error.message);
        const found = answerAddresses(r.value, family);
        const type = family === 4 ? 1 : 28;
        expect(new Set(found.addrs.map(hex)).size).toBe(found.addrs.length);
        for (const a of found.addrs) {
          const records = r.value.answers.filter((x) => x.type === type && hex(x.address!) === hex(a));
          expect(records.length).toBeGreaterThan(0);
          for (const x of records)
            if (x.name.toLowerCase() === r.value.question.name.toLowerCase())
              expect(found.ttlS).toBeLessThanOrEqual(x.ttl);
        }
      }),
      { numRuns: PROPERTY_RUNS },
    );
  });

  it('agrees with a model that follows CNAMEs until a dead end or a loop', () => {
    // Five names, so any chain longer than 16 links is a loop.
    const POOL = ['a.example', 'b.example', 'c.example', 'd.example', 'e.example'];
    const nameArb = fc
      .tuple(fc.constantFrom(...POOL), fc.boolean())
      .map(([n, upper]) => (upper ? n.toUpperCase() : n));
    const addrArb = fc.constantFrom('192.0.2.1', '192.0.2.2', '2001:db8::1', '2001:db8::2');
    const rrArb: fc.Arbitrary<dnsPacket.StringAnswer> = fc.oneof(
      fc.record({ type: fc.constant('CNAME' as const), name: nameArb, ttl: fc.nat(1000), data: nameArb }),
      addrArb.chain((ip) =>
        fc.record({
          type: fc.constant(ip.includes(':') ? ('AAAA' as const) : ('A' as const)),
          name: nameArb,
          ttl: fc.nat(1000),
          data: fc.constant(ip),
        }),
      ),
    );
    const soaArb = fc.record({
      type: fc.constant('SOA' as const),
      name: fc.constant('example'),
      ttl: fc.nat(1000),
      data: fc.record({
        mname: fc.constant('ns.example'),
        rname: fc.constant('h.example'),
        minimum: fc.nat(1000),
      }),
    });
    fc.assert(
      fc.property(
        nameArb,
        fc.array(rrArb, { maxLength: 12 }),
        fc.array(soaArb, { maxLength: 2 }),
        fc.constantFrom(4 as const, 6 as const),
        (qname, answers, authorities, family) => {
          const bytes = dnsPacket.encode({
            type: 'response',
            id: 9,
            questions: [{ type: 'A', name: qname }],
            answers,
            authorities,
          });
          const r = parseDnsResponse(new Uint8Array(bytes));
          if (!r.ok) throw new Error(r.error.message);

          const key = (n: string) => n.toLowerCase();
          const visited = new Set<string>();
          let name = key(qname);
          let ttl = Number.POSITIVE_INFINITY;
          let loop = false;
          for (;;) {
            const c = answers.find((a) => a.type === 'CNAME' && key(a.name) === name);
            if (!c) break;
            if (visited.has(name)) {
              loop = true;
              break;
            }
            visited.add(name);
            ttl = Math.min(ttl, c.ttl ?? 0);
            name = key(c.data);
          }
          const want: string[] = [];
          if (!loop) {
            for (const a of answers) {
              if (a.type !== (family === 4 ? 'A' : 'AAAA') || key(a.name) !== name) continue;
              ttl = Math.min(ttl, a.ttl ?? 0);
              if (!want.includes(a.data)) want.push(a.data);
            }
          }
          const soa = authorities[0];
          const wantTtl = want.length > 0 ? ttl : soa ? Math.min(soa.ttl, soa.data.minimum) : undefined;

          const found = answerAddresses(r.value, family);
          expect(found.addrs.map((a) => formatIp(a))).toEqual(want.map((ip) => formatIp(parseIp(ip)!)));
          expect(found.ttlS).toBe(wantTtl);
        },
      ),
      { numRuns: PROPERTY_RUNS },
    );
  });
});
