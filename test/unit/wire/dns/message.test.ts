import dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import {
  answerAddresses,
  buildFormerr,
  buildQuery,
  buildServfail,
  DNS_RCODE,
  DNS_TYPE,
  DNS_UDP_ANSWER_LIMIT,
  type DnsQuery,
  type DnsResponse,
  isDnsName,
  parseDnsQuery,
  parseDnsResponse,
  truncateForUdp,
} from '../../../../src/wire/dns/message.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

/**
 * `dig example.com A` (BIND 9.18): ID 0xa1b2, flags RD and AD, one question, an EDNS OPT
 * record (UDP size 1232) with an 8-byte client COOKIE option.
 */
const DIG_QUERY = unhex(`
  a1b2 0120 0001 0000 0000 0001
  07 6578616d706c65 03 636f6d 00 0001 0001
  00 0029 04d0 00 00 0000 000c 000a 0008 f1e2d3c4b5a69788
`);
const EXAMPLE_COM_QUESTION = '076578616d706c6503636f6d0000010001';

function query(bytes: Uint8Array): DnsQuery {
  const r = parseDnsQuery(bytes);
  if (!r.ok) throw new Error(`query did not parse: ${r.error.message}`);
  return r.value;
}

function response(bytes: Uint8Array): DnsResponse {
  const r = parseDnsResponse(bytes);
  if (!r.ok) throw new Error(`response did not parse: ${r.error.message}`);
  return r.value;
}

function encode(p: dnsPacket.Packet): Uint8Array {
  return new Uint8Array(dnsPacket.encode(p));
}

describe('parseDnsQuery', () => {
  it('parses a real dig query with an EDNS OPT record', () => {
    const q = query(DIG_QUERY);
    expect(q.id).toBe(0xa1b2);
    expect(q.opcode).toBe(0);
    expect(q.rd).toBe(true);
    expect(q.question).toEqual({ name: 'example.com', type: DNS_TYPE.A, class: 1 });
    expect(q.bytes).toBe(DIG_QUERY);
  });

  it('keeps the case of the name as received', () => {
    const bytes = buildQuery({ id: 1, name: 'ExAmPle.CoM', type: DNS_TYPE.SRV });
    expect(query(bytes).question).toEqual({ name: 'ExAmPle.CoM', type: 33, class: 1 });
  });

  it('reads the opcode and a clear RD bit', () => {
    const bytes = Uint8Array.from(DIG_QUERY);
    bytes[2] = 0x20; // opcode 4 (NOTIFY), RD clear
    const q = query(bytes);
    expect(q.opcode).toBe(4);
    expect(q.rd).toBe(false);
  });

  it('escapes dots, backslashes and unprintable bytes inside labels', () => {
    const bytes = unhex('0001 0000 0001 0000 0000 0000 06 612e625c0020 01 ff 00 0010 0001');
    expect(query(bytes).question.name).toBe('a\\.b\\\\\\000\\032.\\255');
  });

  it('reads the root name as "."', () => {
    const bytes = unhex('0001 0000 0001 0000 0000 0000 00 0002 0001');
    expect(query(bytes).question).toEqual({ name: '.', type: 2, class: 1 });
  });

  it('ignores bytes after the last record, as the domain crate does', () => {
    const bytes = new Uint8Array(DIG_QUERY.length + 3);
    bytes.set(DIG_QUERY);
    expect(query(bytes).bytes).toBe(bytes);
  });

  it('rejects a message shorter than the header', () => {
    const r = parseDnsQuery(DIG_QUERY.subarray(0, 11));
    expect(r.ok || r.error.code).toBe('dns.short');
  });

  it('rejects a response', () => {
    const bytes = Uint8Array.from(DIG_QUERY);
    bytes[2]! |= 0x80;
    const r = parseDnsQuery(bytes);
    expect(r.ok || r.error.code).toBe('dns.not-query');
  });

  it('rejects zero or two questions', () => {
    for (const count of [0, 2]) {
      const bytes = Uint8Array.from(DIG_QUERY);
      bytes[5] = count;
      const r = parseDnsQuery(bytes);
      expect(r.ok || r.error.code).toBe('dns.question-count');
    }
  });

  it('rejects a message over 65535 bytes', () => {
    const bytes = new Uint8Array(65_536);
    bytes.set(DIG_QUERY);
    const r = parseDnsQuery(bytes);
    expect(r.ok || r.error.code).toBe('dns.too-large');
  });

  it('rejects every truncation of the dig query', () => {
    for (let len = 12; len < DIG_QUERY.length; len++) {
      const r = parseDnsQuery(DIG_QUERY.subarray(0, len));
      expect(r.ok || r.error.code, `length ${len}`).toBe('dns.malformed');
    }
  });

  it('rejects an additional record counted but missing', () => {
    const bytes = Uint8Array.from(DIG_QUERY);
    bytes[11] = 2;
    const r = parseDnsQuery(bytes);
    expect(r.ok || r.error.code).toBe('dns.malformed');
    expect(r.ok || r.error.message).toMatch(/additional record 1/);
  });

  it('rejects a compression pointer in the question, which has nothing before it to point at', () => {
    const bytes = unhex('0001 0000 0001 0000 0000 0000 01 61 c00c 0001 0001');
    const r = parseDnsQuery(bytes);
    expect(r.ok || r.error.code).toBe('dns.malformed');
  });

  it('rejects the obsolete extended label types', () => {
    for (const kind of ['41', '81']) {
      const r = parseDnsQuery(unhex(`0001 0000 0001 0000 0000 0000 ${kind} 61 00 0001 0001`));
      expect(r.ok || r.error.code).toBe('dns.malformed');
    }
  });

  it('accepts a 255-byte name and rejects a 256-byte one', () => {
    // Four labels of 63 bytes plus a label of 1 and the root: 4 * 64 + 2 + 1 = 259 > 255.
    const label = (n: number) => `${n.toString(16).padStart(2, '0')}${'61'.repeat(n)}`;
    const fits = `${label(63).repeat(3)}${label(61)}00`; // 3 * 64 + 62 + 1 = 255
    const over = `${label(63).repeat(3)}${label(62)}00`; // 256
    expect(parseDnsQuery(unhex(`0001 0000 0001 0000 0000 0000 ${fits} 0001 0001`)).ok).toBe(true);
    const r = parseDnsQuery(unhex(`0001 0000 0001 0000 0000 0000 ${over} 0001 0001`));
    expect(r.ok || r.error.code).toBe('dns.malformed');
  });
});

describe('parseDnsResponse', () => {
  const SOA = {
    mname: 'ns1.example.com',
    rname: 'hostmaster.example.com',
    serial: 2024010101,
    refresh: 7200,
    retry: 3600,
    expire: 1209600,
    minimum: 300,
  };

  it('decodes answers and authorities like dns-packet does', () => {
    const bytes = encode({
      type: 'response',
      id: 0x4242,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 3,
      questions: [{ type: 'AAAA', name: 'nope.example.com' }],
      answers: [
        { type: 'CNAME', name: 'nope.example.com', ttl: 10, data: 'x.example.com' },
        { type: 'AAAA', name: 'x.example.com', ttl: 20, data: '2001:db8::1' },
        { type: 'TXT', name: 'x.example.com', ttl: 30, data: ['hello'] },
      ],
      authorities: [{ type: 'SOA', name: 'example.com', ttl: 3600, data: SOA }],
      additionals: [{ type: 'A', name: 'ns1.example.com', ttl: 5, data: '192.0.2.53' }],
    });
    const r = response(bytes);
    expect(r).toEqual({
      id: 0x4242,
      rcode: DNS_RCODE.NXDOMAIN,
      tc: false,
      question: { name: 'nope.example.com', type: 28, class: 1 },
      answers: [
        { name: 'nope.example.com', type: 5, ttl: 10, target: 'x.example.com' },
        { name: 'x.example.com', type: 28, ttl: 20, address: unhex('20010db8000000000000000000000001') },
        { name: 'x.example.com', type: 16, ttl: 30 },
      ],
      authorities: [{ name: 'example.com', type: 6, ttl: 3600, soaMinimum: 300 }],
    });
    expect(r.answers[1]!.address!.constructor).toBe(Uint8Array);
  });

  it('follows compression pointers in owner names and record data', () => {
    // www.example.com A? -> CNAME example.com (pointer into the question), A at that name.
    const bytes = unhex(`
      beef 8180 0001 0002 0000 0000
      03 777777 07 6578616d706c65 03 636f6d 00 0001 0001
      c00c 0005 0001 0000012c 0002 c010
      c010 0001 0001 0000003c 0004 5db8d822
    `);
    const r = response(bytes);
    expect(r.answers).toEqual([
      { name: 'www.example.com', type: 5, ttl: 300, target: 'example.com' },
      { name: 'example.com', type: 1, ttl: 60, address: unhex('5db8d822') },
    ]);
    expect(answerAddresses(r, 4)).toEqual({ addrs: [unhex('5db8d822')], ttlS: 60 });
  });

  it('rejects pointers forward, to themselves, into the header, and loops', () => {
    const head = 'beef 8180 0001 0001 0000 0000 03 777777 00 0001 0001';
    for (const [what, owner] of [
      ['forward', 'c030'],
      ['to itself', 'c015'],
      ['into the header', 'c002'],
      ['back into its own labels', '01 61 c015'],
    ] as const) {
      const r = parseDnsResponse(unhex(`${head} ${owner} 0001 0001 00000001 0004 01020304`));
      expect(r.ok || r.error.code, what).toBe('dns.malformed');
    }
  });

  it('rejects A data that does not fill RDLENGTH, which dns-packet accepts', () => {
    const bytes = unhex(`
      0001 8180 0001 0001 0000 0000 01 61 00 0001 0001
      c00c 0001 0001 00000001 0005 01020304 ff
    `);
    const r = parseDnsResponse(bytes);
    expect(r.ok || r.error.code).toBe('dns.malformed');
    // dns-packet reads 4 address bytes whatever RDLENGTH says (and would read the next record
    // from the spare byte).
    expect(dnsPacket.decode(Buffer.from(bytes)).answers![0]).toMatchObject({ type: 'A', data: '1.2.3.4' });
  });

  it('rejects CNAME and SOA data that over- or under-runs RDLENGTH', () => {
    const q = '0001 8180 0001 0001 0000 0000 01 61 00 0001 0001';
    for (const rr of [
      'c00c 0005 0001 00000001 0004 01 62 00 ff', // CNAME with a spare byte
      'c00c 0005 0001 00000001 0002 01 62 00', // CNAME name past RDLENGTH
      `c00c 0006 0001 00000001 0017 00 00 ${'00'.repeat(20)} ff`, // SOA with a spare byte
      `c00c 0006 0001 00000001 0015 00 00 ${'00'.repeat(19)}`, // SOA one byte short
    ]) {
      const r = parseDnsResponse(unhex(`${q} ${rr}`));
      expect(r.ok || r.error.code, rr).toBe('dns.malformed');
      expect(r.ok || r.error.message, rr).not.toMatch(/past the end of the message/);
    }
  });

  it('reads a TTL with the top bit set as 0 (RFC 2181 §8)', () => {
    const bytes = unhex(`
      0001 8180 0001 0001 0000 0000 01 61 00 0001 0001
      c00c 0001 0001 80000000 0004 01020304
    `);
    expect(response(bytes).answers[0]!.ttl).toBe(0);
  });

  it('leaves A data of another class uninterpreted', () => {
    const bytes = unhex(`
      0001 8180 0001 0001 0000 0000 01 61 00 0001 0003
      c00c 0001 0003 00000001 0005 01 62 00 1234
    `);
    expect(response(bytes).answers).toEqual([{ name: 'a', type: 1, ttl: 1 }]);
  });

  it('rejects a query', () => {
    const r = parseDnsResponse(DIG_QUERY);
    expect(r.ok || r.error.code).toBe('dns.not-response');
  });

  describe('with an expected query', () => {
    const q = query(buildQuery({ id: 0x0102, name: 'Firezone.dev', type: DNS_TYPE.A }));
    const reply = (name: string, id = 0x0102, type: dnsPacket.RecordType = 'A') =>
      encode({ type: 'response', id, questions: [{ type, name }] });

    it('matches the question case-insensitively', () => {
      const r = parseDnsResponse(reply('fIREZONE.DEV'), { id: q.id, question: q.question });
      expect(r.ok && r.value.question.name).toBe('fIREZONE.DEV');
    });

    it('accepts an expected name with a trailing dot or escapes', () => {
      for (const name of ['firezone.dev.', '\\070irezone.dev']) {
        const r = parseDnsResponse(reply('firezone.dev'), {
          id: 0x0102,
          question: { name, type: 1, class: 1 },
        });
        expect(r.ok, name).toBe(true);
      }
    });

    it('rejects another ID', () => {
      const r = parseDnsResponse(reply('firezone.dev', 0x0103), { id: q.id, question: q.question });
      expect(r.ok || r.error.code).toBe('dns.id-mismatch');
    });

    it('rejects another name, type or class', () => {
      const other = [
        reply('firezone.de'),
        reply('firezone.dev', 0x0102, 'AAAA'),
        encode({
          type: 'response',
          id: 0x0102,
          questions: [{ type: 'A', name: 'firezone.dev', class: 'CH' }],
        }),
      ];
      for (const bytes of other) {
        const r = parseDnsResponse(bytes, { id: q.id, question: q.question });
        expect(r.ok || r.error.code).toBe('dns.question-mismatch');
      }
    });

    it('rejects everything when the expected name is not a name', () => {
      const r = parseDnsResponse(reply('a'), { id: 0x0102, question: { name: 'a..b', type: 1, class: 1 } });
      expect(r.ok || r.error.code).toBe('dns.question-mismatch');
    });
  });
});

describe('buildServfail', () => {
  it('answers the dig query field by field', () => {
    const out = buildServfail(query(DIG_QUERY));
    expect(hex(out.subarray(0, 2))).toBe('a1b2'); // same ID
    // QR 1, opcode 0, AA 0, TC 0, RD 1 | RA 0, Z 0, AD 0 (not copied), CD 0, RCODE 2.
    expect(hex(out.subarray(2, 4))).toBe('8102');
    expect(hex(out.subarray(4, 12))).toBe('0001000000000000'); // the question only, no OPT
    expect(hex(out.subarray(12))).toBe(EXAMPLE_COM_QUESTION);
  });

  it('copies the opcode and a clear RD bit', () => {
    const bytes = Uint8Array.from(DIG_QUERY);
    bytes[2] = 0x10; // opcode 2 (STATUS), RD clear
    expect(hex(buildServfail(query(bytes)).subarray(2, 4))).toBe('9002');
  });

  it('echoes the question name byte for byte', () => {
    const bytes = unhex('7777 0100 0001 0000 0000 0000 06 412e625c00ff 03 434f4d 00 0021 0001');
    const out = buildServfail(query(bytes));
    expect(hex(out.subarray(12))).toBe(hex(bytes.subarray(12)));
    const r = parseDnsResponse(out, { id: 0x7777, question: query(bytes).question });
    expect(r.ok && r.value.rcode).toBe(DNS_RCODE.SERVFAIL);
  });

  it('leaves the question out when a hand-made query has a name that cannot be encoded', () => {
    const q: DnsQuery = { ...query(DIG_QUERY), question: { name: 'a..b', type: 1, class: 1 } };
    expect(hex(buildServfail(q))).toBe('a1b281020000000000000000');
  });
});

describe('buildFormerr', () => {
  it('answers a query with a broken body with its ID, opcode and RD, RCODE 1 and no sections', () => {
    const bytes = Uint8Array.from(DIG_QUERY.subarray(0, 20));
    bytes[2] = 0x29; // opcode 5 (UPDATE), RD set
    expect(parseDnsQuery(bytes).ok).toBe(false);
    expect(hex(buildFormerr(bytes)!)).toBe('a1b2a9010000000000000000');
  });

  it('answers a bare header', () => {
    expect(hex(buildFormerr(DIG_QUERY.subarray(0, 12))!)).toBe('a1b281010000000000000000');
  });

  it('does not answer without a header or to a response', () => {
    expect(buildFormerr(DIG_QUERY.subarray(0, 11))).toBeUndefined();
    const resp = Uint8Array.from(DIG_QUERY);
    resp[2]! |= 0x80;
    expect(buildFormerr(resp)).toBeUndefined();
  });
});

describe('truncateForUdp', () => {
  /** A TXT answer of 8 × 200 bytes plus an OPT record: about 1.7 kB. */
  const big = encode({
    type: 'response',
    id: 0x5151,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: 'TXT', name: 'big.example.com' }],
    answers: Array.from({ length: 8 }, (_, i) => ({
      type: 'TXT' as const,
      name: 'big.example.com',
      ttl: 60,
      data: [Buffer.alloc(200, 0x61 + i)],
    })),
    additionals: [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: 1232,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: 0,
        flag_do: false,
        options: [],
      },
    ],
  });

  it('returns a reply within the limit as it is', () => {
    expect(big.length).toBeGreaterThan(DNS_UDP_ANSWER_LIMIT);
    expect(truncateForUdp(big, big.length)).toBe(big);
    expect(truncateForUdp(DIG_QUERY)).toBe(DIG_QUERY);
  });

  it('keeps the header and the question, sets TC and zeroes the other counts', () => {
    const out = truncateForUdp(big);
    const qLen = 17 + 4; // 03 big 07 example 03 com 00, type, class
    expect(out.length).toBe(12 + qLen);
    expect(hex(out.subarray(0, 12))).toBe('515183800001000000000000');
    expect(hex(out.subarray(12))).toBe(hex(big.subarray(12, 12 + qLen)));
    const r = response(out);
    expect(r).toEqual({
      id: 0x5151,
      rcode: 0,
      tc: true,
      question: { name: 'big.example.com', type: 16, class: 1 },
      answers: [],
      authorities: [],
    });
    expect(big[2]).toBe(0x81); // the input is untouched
  });

  it('keeps the RCODE and other flags', () => {
    const bytes = Uint8Array.from(big);
    bytes[3] = 0x83; // RA, NXDOMAIN
    expect(hex(truncateForUdp(bytes).subarray(2, 4))).toBe('8383');
  });

  it('ends a question name at a compression pointer', () => {
    const bytes = new Uint8Array(1300);
    bytes.set(unhex('0001 8180 0001 0001 0000 0000 01 61 c00c 0001 0001'));
    expect(hex(truncateForUdp(bytes))).toBe(
      '000183800001000000000000 01 61 c00c 0001 0001'.replace(/ /g, ''),
    );
  });

  it('sends the header alone when the question cannot be walked or there is none', () => {
    const cutShort = new Uint8Array(1300).fill(0x3f);
    cutShort.set(unhex('0001 8180 0001 0001 0000 0000'));
    expect(hex(truncateForUdp(cutShort))).toBe('000183800000000000000000');
    const reservedLabel = Uint8Array.from(cutShort);
    reservedLabel[12] = 0x40;
    expect(hex(truncateForUdp(reservedLabel))).toBe('000183800000000000000000');
    const noQuestion = Uint8Array.from(big);
    noQuestion[5] = 0;
    expect(hex(truncateForUdp(noQuestion))).toBe('515183800000000000000000');
  });

  it('returns a fragment shorter than a header as it is', () => {
    const bytes = unhex('0102030405');
    expect(truncateForUdp(bytes, 2)).toBe(bytes);
  });
});

describe('buildQuery', () => {
  it('builds the nameserver probe for firezone.dev', () => {
    expect(hex(buildQuery({ id: 0x1234, name: 'firezone.dev', type: DNS_TYPE.A }))).toBe(
      '123401000001000000000000 08 666972657a6f6e65 03 646576 00 0001 0001'.replace(/ /g, ''),
    );
  });

  it('clears RD on request and accepts a trailing dot', () => {
    const bytes = buildQuery({ id: 0xffff, name: 'firezone.dev.', type: DNS_TYPE.AAAA, rd: false });
    expect(hex(bytes.subarray(0, 4))).toBe('ffff0000');
    expect(query(bytes).question).toEqual({ name: 'firezone.dev', type: 28, class: 1 });
  });

  it('agrees with dns-packet', () => {
    const bytes = buildQuery({ id: 77, name: '_sip._tcp.Example.org', type: DNS_TYPE.SRV });
    const d = dnsPacket.decode(Buffer.from(bytes));
    expect(d.id).toBe(77);
    expect(d.flag_rd).toBe(true);
    expect(d.questions).toEqual([{ name: '_sip._tcp.Example.org', type: 'SRV', class: 'IN' }]);
    const theirs = encode({
      type: 'query',
      id: 77,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: '_sip._tcp.Example.org', type: 'SRV' }],
    });
    expect(hex(bytes)).toBe(hex(theirs));
  });

  it('builds a query for the root', () => {
    expect(hex(buildQuery({ id: 1, name: '.', type: 2 }).subarray(12))).toBe('0000020001');
  });

  it('throws a RangeError for what is not a name, ID or type', () => {
    for (const name of [
      'a..b',
      '.a',
      'a'.repeat(64),
      `${'a'.repeat(63)}.`.repeat(4),
      'é.com',
      'a\\',
      'a\\25',
      'a\\256',
    ]) {
      expect(isDnsName(name), name).toBe(false);
      expect(() => buildQuery({ id: 1, name, type: 1 }), name).toThrow(RangeError);
    }
    expect(() => buildQuery({ id: 65_536, name: 'a', type: 1 })).toThrow(RangeError);
    expect(() => buildQuery({ id: 1, name: 'a', type: -1 })).toThrow(RangeError);
    expect(() => buildQuery({ id: 1.5, name: 'a', type: 1 })).toThrow(RangeError);
  });

  it('accepts escapes and the longest names', () => {
    for (const name of [
      'a\\.b',
      'a\\\\',
      '\\255\\000',
      'a'.repeat(63),
      `${'a'.repeat(63)}.`.repeat(3) + 'a'.repeat(61),
    ]) {
      expect(isDnsName(name), name).toBe(true);
      expect(query(buildQuery({ id: 1, name, type: 1 })).question.name, name).toBe(name);
    }
    // One byte more than 255 on the wire.
    expect(isDnsName(`${'a'.repeat(63)}.`.repeat(3) + 'a'.repeat(62))).toBe(false);
  });
});

describe('answerAddresses', () => {
  const SOA_DATA = { mname: 'ns.example.com', rname: 'h.example.com', minimum: 30 };
  const reply = (p: Partial<dnsPacket.Packet> & { qname?: string; qtype?: dnsPacket.RecordType }) =>
    response(
      encode({
        type: 'response',
        id: 1,
        questions: [{ type: p.qtype ?? 'A', name: p.qname ?? 'www.example.com' }],
        answers: p.answers ?? [],
        authorities: p.authorities ?? [],
      }),
    );

  it('returns the A records of the question name with the smallest TTL', () => {
    const r = reply({
      answers: [
        { type: 'A', name: 'www.example.com', ttl: 300, data: '192.0.2.1' },
        { type: 'A', name: 'WWW.example.com', ttl: 120, data: '192.0.2.2' },
        { type: 'AAAA', name: 'www.example.com', ttl: 5, data: '2001:db8::1' },
      ],
    });
    expect(answerAddresses(r, 4)).toEqual({ addrs: [unhex('c0000201'), unhex('c0000202')], ttlS: 120 });
    expect(answerAddresses(r, 6)).toEqual({ addrs: [unhex('20010db8000000000000000000000001')], ttlS: 5 });
  });

  it('follows a CNAME chain case-insensitively and ignores unrelated records', () => {
    const r = reply({
      qtype: 'AAAA',
      answers: [
        { type: 'AAAA', name: 'unrelated.example.com', ttl: 1, data: '2001:db8::99' },
        { type: 'CNAME', name: 'www.EXAMPLE.com', ttl: 600, data: 'Cdn.Example.NET' },
        { type: 'AAAA', name: 'cdn.example.net', ttl: 2, data: '2001:db8::98' }, // not the chain's end
        { type: 'CNAME', name: 'cdn.example.net', ttl: 90, data: 'edge.example.org' },
        { type: 'AAAA', name: 'EDGE.example.org', ttl: 400, data: '2001:db8::1' },
        { type: 'AAAA', name: 'edge.example.org', ttl: 500, data: '2001:db8::2' },
        { type: 'AAAA', name: 'edge.example.org', ttl: 100, data: '2001:db8::1' }, // duplicate
      ],
    });
    expect(answerAddresses(r, 6)).toEqual({
      addrs: [unhex('20010db8000000000000000000000001'), unhex('20010db8000000000000000000000002')],
      ttlS: 90,
    });
    expect(answerAddresses(r, 4)).toEqual({ addrs: [], ttlS: undefined });
  });

  it('follows 16 CNAMEs and finds nothing behind a longer chain or a loop', () => {
    const chain = (n: number) => [
      ...Array.from({ length: n }, (_, i) => ({
        type: 'CNAME' as const,
        name: i === 0 ? 'www.example.com' : `c${i}.example.com`,
        ttl: 60,
        data: `c${i + 1}.example.com`,
      })),
      { type: 'A' as const, name: `c${n}.example.com`, ttl: 60, data: '192.0.2.7' },
    ];
    expect(answerAddresses(reply({ answers: chain(16) }), 4).addrs).toEqual([unhex('c0000207')]);
    expect(answerAddresses(reply({ answers: chain(17) }), 4).addrs).toEqual([]);
    const loop = reply({
      answers: [
        { type: 'CNAME', name: 'www.example.com', ttl: 60, data: 'b.example.com' },
        { type: 'CNAME', name: 'b.example.com', ttl: 60, data: 'www.example.com' },
        { type: 'A', name: 'www.example.com', ttl: 60, data: '192.0.2.1' },
      ],
    });
    expect(answerAddresses(loop, 4)).toEqual({ addrs: [], ttlS: undefined });
  });

  it('uses min(SOA TTL, SOA MINIMUM) of the authority section for a negative answer', () => {
    const soa = (ttl: number, minimum: number) =>
      reply({
        authorities: [{ type: 'SOA', name: 'example.com', ttl, data: { ...SOA_DATA, minimum } }],
      });
    expect(answerAddresses(soa(900, 30), 4)).toEqual({ addrs: [], ttlS: 30 });
    expect(answerAddresses(soa(20, 3600), 6)).toEqual({ addrs: [], ttlS: 20 });
  });

  it('uses the SOA after a CNAME chain that ends without addresses', () => {
    const r = reply({
      answers: [{ type: 'CNAME', name: 'www.example.com', ttl: 5, data: 'gone.example.net' }],
      authorities: [
        { type: 'NS', name: 'example.net', ttl: 1, data: 'ns.example.net' },
        { type: 'SOA', name: 'example.net', ttl: 600, data: { ...SOA_DATA, minimum: 60 } },
      ],
    });
    expect(answerAddresses(r, 4)).toEqual({ addrs: [], ttlS: 60 });
  });

  it('has no TTL for an empty answer without an SOA', () => {
    expect(answerAddresses(reply({}), 4)).toEqual({ addrs: [], ttlS: undefined });
  });
});
