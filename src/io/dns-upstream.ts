import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import type { DnsTransport, DnsUpstream, DnsUpstreamError } from '../actors/dns.js';
import { DNS_MAX_MESSAGE_BYTES, frameForTcp } from '../wire/dns/message.js';
import { formatIp } from '../wire/ip/address.js';
import { err, ok, type Result } from '../wire/result.js';

/** Socket errors that mean "nobody there": the nameserver counts as not answering. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EHOSTDOWN']);

function failure(e: NodeJS.ErrnoException): DnsUpstreamError {
  const code = e.code ?? '';
  return { code: UNREACHABLE.has(code) ? 'unreachable' : 'io', message: code || e.message };
}

/**
 * Upstream DNS over the host's sockets (`spec/gateway-dataplane.md` §7.3 step 2): a fresh socket
 * per exchange. UDP sockets are connected, so an ICMP port unreachable ends the exchange at once
 * (`unreachable`) instead of waiting for the timeout, and a reply can only come from the server.
 * TCP uses the 2-byte length framing. Aborting the signal closes the socket.
 */
export function createDnsUpstream(o: { port?: number } = {}): DnsUpstream {
  const port = o.port ?? 53;
  return {
    exchange(server, query, transport: DnsTransport, signal) {
      return transport === 'udp'
        ? exchangeUdp(formatIp(server), server.length === 16, port, query, signal)
        : exchangeTcp(formatIp(server), port, query, signal);
    },
  };
}

function exchangeUdp(
  host: string,
  v6: boolean,
  port: number,
  query: Uint8Array,
  signal: AbortSignal,
): Promise<Result<Uint8Array, DnsUpstreamError>> {
  return new Promise((resolve) => {
    const sock = createSocket(v6 ? 'udp6' : 'udp4');
    let done = false;
    const finish = (r: Result<Uint8Array, DnsUpstreamError>) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      sock.close();
      resolve(r);
    };
    const onAbort = () => finish(err({ code: 'timeout', message: 'aborted' }));
    if (signal.aborted) {
      sock.close();
      resolve(err({ code: 'timeout', message: 'aborted' }));
      return;
    }
    signal.addEventListener('abort', onAbort);
    sock.on('error', (e) => finish(err(failure(e))));
    sock.on('message', (msg) => finish(ok(new Uint8Array(msg))));
    sock.connect(port, host, () => {
      sock.send(query, (e) => {
        if (e) finish(err(failure(e)));
      });
    });
  });
}

function exchangeTcp(
  host: string,
  port: number,
  query: Uint8Array,
  signal: AbortSignal,
): Promise<Result<Uint8Array, DnsUpstreamError>> {
  return new Promise((resolve) => {
    if (query.length > DNS_MAX_MESSAGE_BYTES) {
      resolve(err({ code: 'too-large', message: `query of ${query.length} bytes` }));
      return;
    }
    if (signal.aborted) {
      resolve(err({ code: 'timeout', message: 'aborted' }));
      return;
    }
    const sock = connect({ host, port });
    let done = false;
    let buf: Buffer = Buffer.alloc(0);
    const finish = (r: Result<Uint8Array, DnsUpstreamError>) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(r);
    };
    const onAbort = () => finish(err({ code: 'timeout', message: 'aborted' }));
    signal.addEventListener('abort', onAbort);
    sock.on('error', (e) => finish(err(failure(e))));
    sock.on('connect', () => sock.write(frameForTcp(query)));
    sock.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length >= 2 + len) finish(ok(new Uint8Array(buf.subarray(2, 2 + len))));
    });
    sock.on('end', () => finish(err({ code: 'io', message: 'connection closed before the answer' })));
  });
}
