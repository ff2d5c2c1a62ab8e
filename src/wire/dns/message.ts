import { readU16, writeU16 } from '../bytes.js';
import { err, ok, type Result, type WireError } from '../result.js';

/**
 * DNS messages for the Gateway's in-tunnel DNS server, its upstream forwarding, the nameserver
 * probes and the A/AAAA lookups of DNS resources (`spec/gateway-dataplane.md` §6.2.1, §7.2–§7.4).
 *
 * Sans-IO and strict. Parsing walks every section of the message (RFC 1035 §4.1): names (labels of
 * at most 63 bytes, at most 255 bytes decompressed, compression pointers only to earlier data past
 * the header, so no loops), fixed record fields and RDLENGTH inside the message, and the data of
 * the record types we read (A/AAAA of class IN, CNAME, SOA) exactly filling RDLENGTH. That is what
 * Firezone's `dns-types` asks of the `domain` crate ("exactly one question, records parseable").
 * Bytes after the last counted record are ignored, as `domain` does; queries are forwarded whole.
 *
 * The codec is hand-written rather than built on `dns-packet`: that library ignores RDLENGTH for
 * A, AAAA, CNAME, PTR and SOA (a hostile record shifts every record after it), decodes labels as
 * lossy UTF-8, and encodes unknown classes as 0 and labels over 63 bytes as a corrupt length byte.
 * Tests use it as an independent encoder and oracle.
 *
 * Names are text in presentation form (RFC 1035 §5.1) without the trailing dot: labels joined by
 * `.`, letters in the case received, `.` and `\` inside a label escaped as `\.` and `\\`, bytes
 * outside printable ASCII as `\DDD` (decimal); the root is `.`. Text and wire bytes map one to one,
 * so a parsed name encodes back to the bytes it came from.
 */

export const DNS_HEADER_BYTES = 12;
/** Largest UDP answer sent to a Client; longer ones are truncated (§7.3 step 5). */
export const DNS_UDP_ANSWER_LIMIT = 1200;
/** Largest message: the TCP length prefix is 16 bits (RFC 1035 §4.2.2). */
export const DNS_MAX_MESSAGE_BYTES = 65_535;
export const DNS_CLASS_IN = 1;

export const DNS_TYPE = { A: 1, CNAME: 5, SOA: 6, TXT: 16, AAAA: 28, SRV: 33 } as const;
export const DNS_RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

/** RFC 1035 §2.3.4. */
const MAX_LABEL_BYTES = 63;
const MAX_NAME_BYTES = 255;
/** CNAMEs followed from the question name before giving up (a loop ends here too). */
const MAX_CNAME_CHAIN = 16;

const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;

export type DnsErrorCode =
  | 'dns.short'
  | 'dns.malformed'
  | 'dns.not-query'
  | 'dns.not-response'
  | 'dns.question-count'
  | 'dns.id-mismatch'
  | 'dns.question-mismatch'
  | 'dns.too-large';
export type DnsError = WireError<DnsErrorCode>;

export interface DnsQuestion {
  /** Presentation form without the trailing dot, case as received (see the module comment). */
  readonly name: string;
  /** Numeric QTYPE (`DNS_TYPE`). */
  readonly type: number;
  /** Numeric QCLASS (1 = IN). */
  readonly class: number;
}

export interface DnsQuery {
  readonly id: number;
  readonly opcode: number;
  readonly rd: boolean;
  readonly question: DnsQuestion;
  /** The whole datagram as received (the caller's buffer, not a copy): forwarded unchanged. */
  readonly bytes: Uint8Array;
}

export interface DnsRecord {
  /** Owner name, presentation form. */
  readonly name: string;
  readonly type: number;
  /** Seconds; values with the top bit set read as 0 (RFC 2181 §8). */
  readonly ttl: number;
  /** A (4 bytes) or AAAA (16 bytes) of class IN; a copy. */
  readonly address?: Uint8Array;
  /** CNAME target, presentation form. */
  readonly target?: string;
  /** SOA MINIMUM field (the negative-caching TTL bound, RFC 2308 §4). */
  readonly soaMinimum?: number;
}

export interface DnsResponse {
  readonly id: number;
  /** The 4-bit header RCODE (an EDNS extended RCODE is not folded in). */
  readonly rcode: number;
  readonly tc: boolean;
  readonly question: DnsQuestion;
  readonly answers: readonly DnsRecord[];
  readonly authorities: readonly DnsRecord[];
}

function fail(code: DnsErrorCode, message: string): { ok: false; error: DnsError } {
  return err({ code, message });
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Names

/** A name read from a message: its text and where the name ends in the byte stream. */
interface NameRead {
  readonly text: string;
  readonly end: number;
}

/**
 * Reads the name at `start`. Returns a reason string when it is malformed. Pointers must target
 * data after the header and before the current run of labels, so every jump goes strictly
 * backwards and reading ends.
 */
function readName(b: Uint8Array, start: number): NameRead | string {
  let text = '';
  let at = start;
  let runStart = start;
  let end = -1;
  let wireBytes = 1; // the root label
  for (;;) {
    if (at >= b.length) return `name at ${start} runs past the end of the message`;
    const len = b[at]!;
    if (len === 0) {
      if (end < 0) end = at + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (at + 1 >= b.length) return `compression pointer at ${at} runs past the end of the message`;
      const target = ((len & 0x3f) << 8) | b[at + 1]!;
      if (target < DNS_HEADER_BYTES || target >= runStart) {
        return `compression pointer at ${at} to ${target} does not point backwards into the message`;
      }
      if (end < 0) end = at + 2;
      at = target;
      runStart = target;
      continue;
    }
    if (kind !== 0) return `label type 0x${kind.toString(16)} at ${at} is not supported`;
    if (at + 1 + len > b.length) return `label at ${at} runs past the end of the message`;
    wireBytes += len + 1;
    if (wireBytes > MAX_NAME_BYTES) return `name at ${start} is longer than ${MAX_NAME_BYTES} bytes`;
    if (text.length > 0) text += '.';
    for (let i = at + 1; i <= at + len; i++) text += presentByte(b[i]!);
    at += len + 1;
  }
  return { text: text.length === 0 ? '.' : text, end };
}

function presentByte(c: number): string {
  if (c === 0x2e || c === 0x5c) return `\\${String.fromCharCode(c)}`;
  if (c > 0x20 && c < 0x7f) return String.fromCharCode(c);
  return `\\${c.toString().padStart(3, '0')}`;
}

/**
 * Encodes a name in presentation form (trailing dot optional, `\.`, `\\`, `\X` and `\DDD` escapes)
 * to uncompressed wire form. `undefined` for empty labels, labels over 63 bytes, names over 255
 * bytes, bad escapes, or characters outside ASCII (IDNs must arrive as punycode).
 */
function encodeName(text: string): Uint8Array | undefined {
  if (text === '.' || text === '') return new Uint8Array([0]);
  const out = new Uint8Array(MAX_NAME_BYTES);
  let lenAt = 0;
  let at = 1;
  let i = 0;
  while (i < text.length) {
    let c = text.charCodeAt(i++);
    if (c === 0x2e) {
      const labelLen = at - lenAt - 1;
      if (labelLen === 0) return undefined;
      out[lenAt] = labelLen;
      if (i === text.length) {
        out[at] = 0;
        return out.slice(0, at + 1);
      }
      lenAt = at++;
      continue;
    }
    if (c === 0x5c) {
      if (i >= text.length) return undefined;
      if (isDigit(text.charCodeAt(i))) {
        const digits = text.slice(i, i + 3);
        if (!/^[0-9]{3}$/.test(digits) || Number(digits) > 255) return undefined;
        c = Number(digits);
        i += 3;
      } else {
        c = text.charCodeAt(i++);
        if (c > 0x7f) return undefined;
      }
    } else if (c > 0x7f) {
      return undefined;
    }
    if (at - lenAt - 1 >= MAX_LABEL_BYTES) return undefined;
    // Room for this byte, the terminating root label, and the byte at the label's length slot.
    if (at + 1 >= MAX_NAME_BYTES) return undefined;
    out[at++] = c;
  }
  const labelLen = at - lenAt - 1;
  if (labelLen === 0) return undefined;
  out[lenAt] = labelLen;
  out[at] = 0;
  return out.slice(0, at + 1);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** ASCII case folding only (RFC 4343): the escapes are digits and punctuation, never letters. */
function sameName(a: string, b: string): boolean {
  return a === b || a.toLowerCase() === b.toLowerCase();
}

/** `name` in the canonical presentation form `readName` produces, or `undefined`. */
function canonicalName(name: string): string | undefined {
  const wire = encodeName(name);
  if (!wire) return undefined;
  const r = readName(wire, 0);
  return typeof r === 'string' ? undefined : r.text;
}

// ---------------------------------------------------------------------------------------------
// Messages

interface Walked {
  readonly id: number;
  readonly flags: number;
  readonly question: DnsQuestion;
  readonly answers: DnsRecord[];
  readonly authorities: DnsRecord[];
}

/** Reads the record at `at`, checking the data of the types we interpret. */
function readRecord(b: Uint8Array, at: number): { record: DnsRecord; end: number } | string {
  const owner = readName(b, at);
  if (typeof owner === 'string') return owner;
  const p = owner.end;
  if (p + 10 > b.length) return `record at ${at} is cut short in its fixed fields`;
  const type = readU16(b, p);
  const klass = readU16(b, p + 2);
  const rawTtl = readU32(b, p + 4);
  const rdLen = readU16(b, p + 8);
  const rd = p + 10;
  const rdEnd = rd + rdLen;
  if (rdEnd > b.length) return `record at ${at}: RDLENGTH ${rdLen} runs past the end of the message`;
  const base = { name: owner.text, type, ttl: rawTtl > 0x7fffffff ? 0 : rawTtl };
  if ((type === DNS_TYPE.A || type === DNS_TYPE.AAAA) && klass === DNS_CLASS_IN) {
    const want = type === DNS_TYPE.A ? 4 : 16;
    if (rdLen !== want) return `record at ${at}: type ${type} needs ${want} data bytes, has ${rdLen}`;
    return { record: { ...base, address: new Uint8Array(b.subarray(rd, rdEnd)) }, end: rdEnd };
  }
  if (type === DNS_TYPE.CNAME) {
    const target = readName(b, rd);
    if (typeof target === 'string') return target;
    if (target.end !== rdEnd) return `record at ${at}: CNAME target does not fill RDLENGTH ${rdLen}`;
    return { record: { ...base, target: target.text }, end: rdEnd };
  }
  if (type === DNS_TYPE.SOA) {
    const mname = readName(b, rd);
    if (typeof mname === 'string') return mname;
    const rname = mname.end <= rdEnd ? readName(b, mname.end) : 'SOA MNAME overruns its data';
    if (typeof rname === 'string') return rname;
    if (rname.end + 20 !== rdEnd) return `record at ${at}: SOA fields do not fill RDLENGTH ${rdLen}`;
    return { record: { ...base, soaMinimum: readU32(b, rdEnd - 4) }, end: rdEnd };
  }
  return { record: base, end: rdEnd };
}

/**
 * Checks size, header and sections. `qr` is the QR bit the caller needs; records of the answer
 * and authority sections are kept, additional records are only checked.
 */
function walk(b: Uint8Array, qr: boolean, expectId?: number): Result<Walked, DnsError> {
  if (b.length > DNS_MAX_MESSAGE_BYTES) {
    return fail('dns.too-large', `message of ${b.length} bytes exceeds ${DNS_MAX_MESSAGE_BYTES}`);
  }
  if (b.length < DNS_HEADER_BYTES) {
    return fail('dns.short', `message of ${b.length} bytes is shorter than the 12-byte header`);
  }
  const id = readU16(b, 0);
  const flags = readU16(b, 2);
  if (qr && (flags & FLAG_QR) === 0) return fail('dns.not-response', 'QR bit is clear: not a response');
  if (!qr && (flags & FLAG_QR) !== 0) return fail('dns.not-query', 'QR bit is set: not a query');
  const qd = readU16(b, 4);
  if (qd !== 1) return fail('dns.question-count', `QDCOUNT is ${qd}, need exactly 1`);
  if (expectId !== undefined && id !== expectId) {
    return fail('dns.id-mismatch', `response ID ${id} does not match query ID ${expectId}`);
  }
  const qname = readName(b, DNS_HEADER_BYTES);
  if (typeof qname === 'string') return fail('dns.malformed', `question: ${qname}`);
  if (qname.end + 4 > b.length) return fail('dns.malformed', 'question is cut short in QTYPE/QCLASS');
  const question = { name: qname.text, type: readU16(b, qname.end), class: readU16(b, qname.end + 2) };
  let at = qname.end + 4;
  const answers: DnsRecord[] = [];
  const authorities: DnsRecord[] = [];
  const sections = [
    ['answer', readU16(b, 6), answers],
    ['authority', readU16(b, 8), authorities],
    ['additional', readU16(b, 10), undefined],
  ] as const;
  for (const [section, count, into] of sections) {
    // Each record needs at least 11 bytes, so running out of message ends a bogus count quickly.
    for (let i = 0; i < count; i++) {
      const r = readRecord(b, at);
      if (typeof r === 'string') return fail('dns.malformed', `${section} record ${i}: ${r}`);
      into?.push(r.record);
      at = r.end;
    }
  }
  return ok({ id, flags, question, answers, authorities });
}

/**
 * Parses a query from a Client (§7.2): at most 65535 bytes, a 12-byte header with QR = 0,
 * QDCOUNT = 1, and every section well formed.
 */
export function parseDnsQuery(bytes: Uint8Array): Result<DnsQuery, DnsError> {
  const r = walk(bytes, false);
  if (!r.ok) return r;
  const { id, flags, question } = r.value;
  return ok({ id, opcode: (flags >> 11) & 0xf, rd: (flags & FLAG_RD) !== 0, question, bytes });
}

/**
 * Parses an upstream reply (§7.3 step 3): QR = 1, QDCOUNT = 1, every section well formed. With
 * `expect`, the ID must equal the query's and the question must match it (name compared
 * ASCII-case-insensitively, type and class exactly).
 */
export function parseDnsResponse(
  bytes: Uint8Array,
  expect?: { readonly id: number; readonly question: DnsQuestion },
): Result<DnsResponse, DnsError> {
  const r = walk(bytes, true, expect?.id);
  if (!r.ok) return r;
  const { id, flags, question, answers, authorities } = r.value;
  if (expect) {
    const want = expect.question;
    const wantName = canonicalName(want.name);
    if (
      wantName === undefined ||
      !sameName(question.name, wantName) ||
      question.type !== want.type ||
      question.class !== want.class
    ) {
      return fail(
        'dns.question-mismatch',
        `response question ${describe(question)} does not match query question ${describe(want)}`,
      );
    }
  }
  return ok({ id, rcode: flags & 0xf, tc: (flags & FLAG_TC) !== 0, question, answers, authorities });
}

function describe(q: DnsQuestion): string {
  return `${q.name} type ${q.type} class ${q.class}`;
}

/** A header with QR set, opcode and RD copied from `queryFlags`, the given RCODE; counts are 0. */
function responseHeader(out: Uint8Array, id: number, queryFlags: number, rcode: number): void {
  writeU16(out, 0, id);
  writeU16(out, 2, FLAG_QR | (queryFlags & 0x7800) | (queryFlags & FLAG_RD) | rcode);
}

/**
 * SERVFAIL for `q` (§7.3 step 4, `domain`'s `start_answer`): same ID, QR = 1, opcode and RD from
 * the query, RCODE 2, the question echoed, no records (no OPT either), RA clear.
 */
export function buildServfail(q: DnsQuery): Uint8Array {
  return buildErrorReply(q, DNS_RCODE.SERVFAIL);
}

/** A reply to `q` with `rcode` and no records, built as {@link buildServfail} describes. */
export function buildErrorReply(q: DnsQuery, rcode: number): Uint8Array {
  const name = encodeName(q.question.name);
  // A question from parseDnsQuery always encodes; one built by hand may not, and then the reply
  // goes without a question rather than with a wrong one.
  const out = new Uint8Array(DNS_HEADER_BYTES + (name ? name.length + 4 : 0));
  responseHeader(out, q.id & 0xffff, ((q.opcode & 0xf) << 11) | (q.rd ? FLAG_RD : 0), rcode & 0xf);
  if (name) {
    writeU16(out, 4, 1);
    out.set(name, DNS_HEADER_BYTES);
    writeU16(out, DNS_HEADER_BYTES + name.length, q.question.type & 0xffff);
    writeU16(out, DNS_HEADER_BYTES + name.length + 2, q.question.class & 0xffff);
  }
  return out;
}

/** `msg` framed for TCP: its length as a big-endian u16, then the message (RFC 1035 §4.2.2). */
export function frameForTcp(msg: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + msg.length);
  writeU16(out, 0, msg.length);
  out.set(msg, 2);
  return out;
}

/**
 * FORMERR for a query that failed to parse but whose header is readable with QR = 0: same ID,
 * QR = 1, opcode and RD copied, RCODE 1, all counts 0. `undefined` when there is no header or it
 * is a response (a response is never answered).
 */
export function buildFormerr(bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.length < DNS_HEADER_BYTES) return undefined;
  const flags = readU16(bytes, 2);
  if ((flags & FLAG_QR) !== 0) return undefined;
  const out = new Uint8Array(DNS_HEADER_BYTES);
  responseHeader(out, readU16(bytes, 0), flags, DNS_RCODE.FORMERR);
  return out;
}

/**
 * Fits a UDP reply to a Client (§7.3 step 5): returned as is when at most `limit` bytes; otherwise
 * a copy of the header and the first question with TC set, QDCOUNT 1 and the other counts 0.
 * When the question cannot be walked (or there is none), the header alone with TC and all counts
 * 0. Messages shorter than a header are returned as is. Never throws.
 */
export function truncateForUdp(response: Uint8Array, limit: number = DNS_UDP_ANSWER_LIMIT): Uint8Array {
  if (response.length <= limit || response.length < DNS_HEADER_BYTES) return response;
  const qEnd = readU16(response, 4) > 0 ? questionEnd(response) : undefined;
  const out = new Uint8Array(response.subarray(0, qEnd ?? DNS_HEADER_BYTES));
  out[2]! |= FLAG_TC >> 8;
  out.fill(0, 4, DNS_HEADER_BYTES);
  if (qEnd !== undefined) writeU16(out, 4, 1);
  return out;
}

/**
 * End of the first question, walking its labels without following pointers (a pointer ends the
 * name after its 2 bytes); `undefined` if it runs past the end, over 255 bytes, or holds a
 * reserved label type.
 */
function questionEnd(b: Uint8Array): number | undefined {
  let at = DNS_HEADER_BYTES;
  for (;;) {
    if (at >= b.length || at - DNS_HEADER_BYTES >= MAX_NAME_BYTES) return undefined;
    const len = b[at]!;
    if (len === 0) {
      at += 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      at += 2;
      break;
    }
    if ((len & 0xc0) !== 0) return undefined;
    at += len + 1;
  }
  return at + 4 <= b.length ? at + 4 : undefined;
}

/**
 * A query with one question of class IN and a fresh buffer: nameserver probes (`A firezone.dev`,
 * §7.4) and the A/AAAA lookups of DNS resources (§6.2.1). `name` is in presentation form, trailing
 * dot optional. Throws a `RangeError` when `id` or `type` is not a 16-bit integer or `name` is not
 * a name (check untrusted names with {@link isDnsName} first).
 */
export function buildQuery(o: {
  readonly id: number;
  readonly name: string;
  readonly type: number;
  readonly rd?: boolean;
}): Uint8Array {
  if (!isU16(o.id)) throw new RangeError(`query ID ${o.id} is not a 16-bit integer`);
  if (!isU16(o.type)) throw new RangeError(`query type ${o.type} is not a 16-bit integer`);
  const name = encodeName(o.name);
  if (!name) throw new RangeError(`${JSON.stringify(o.name)} is not a valid domain name`);
  const out = new Uint8Array(DNS_HEADER_BYTES + name.length + 4);
  writeU16(out, 0, o.id);
  writeU16(out, 2, o.rd === false ? 0 : FLAG_RD);
  writeU16(out, 4, 1);
  out.set(name, DNS_HEADER_BYTES);
  writeU16(out, DNS_HEADER_BYTES + name.length, o.type);
  writeU16(out, DNS_HEADER_BYTES + name.length + 2, DNS_CLASS_IN);
  return out;
}

/**
 * Whether `name` is a domain name in presentation form that {@link buildQuery} accepts: labels of
 * 1–63 bytes, at most 255 bytes on the wire, ASCII only, escapes `\.`, `\\`, `\X` or `\DDD` (≤ 255).
 */
export function isDnsName(name: string): boolean {
  return encodeName(name) !== undefined;
}

function isU16(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

/**
 * The addresses of family `family` that answer `r`'s question: follow the answer section's CNAME
 * chain from the question name (names compared case-insensitively, unrelated records ignored) and
 * take the A or AAAA records of its last name, deduplicated, in answer order. A chain of more than
 * 16 CNAMEs, or a loop, yields no addresses.
 *
 * `ttlS` is the smallest TTL among the CNAMEs followed and the address records. Without addresses
 * it is the negative-caching TTL of RFC 2308 §5: min(SOA TTL, SOA MINIMUM) of the first SOA in the
 * authority section, or `undefined` without one.
 */
export function answerAddresses(
  r: DnsResponse,
  family: 4 | 6,
): { addrs: Uint8Array[]; ttlS: number | undefined } {
  const type = family === 4 ? DNS_TYPE.A : DNS_TYPE.AAAA;
  const size = family === 4 ? 4 : 16;
  let name = r.question.name;
  let ttl = Number.POSITIVE_INFINITY;
  let tooLong = false;
  for (let hops = 0; ; hops++) {
    const cname = r.answers.find(
      (a) => a.type === DNS_TYPE.CNAME && a.target !== undefined && sameName(a.name, name),
    );
    if (!cname?.target) break;
    if (hops === MAX_CNAME_CHAIN) {
      tooLong = true;
      break;
    }
    ttl = Math.min(ttl, cname.ttl);
    name = cname.target;
  }
  const addrs: Uint8Array[] = [];
  const seen = new Set<string>();
  for (const a of tooLong ? [] : r.answers) {
    if (a.type !== type || a.address?.length !== size || !sameName(a.name, name)) continue;
    ttl = Math.min(ttl, a.ttl);
    const key = a.address.join(',');
    if (seen.has(key)) continue;
    seen.add(key);
    addrs.push(a.address);
  }
  if (addrs.length > 0) return { addrs, ttlS: ttl };
  const soa = r.authorities.find((a) => a.type === DNS_TYPE.SOA && a.soaMinimum !== undefined);
  return { addrs, ttlS: soa ? Math.min(soa.ttl, soa.soaMinimum!) : undefined };
}
