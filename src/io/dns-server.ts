import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import type { DnsTransport } from '../actors/dns.js';
import { DNS_MAX_MESSAGE_BYTES, frameForTcp } from '../wire/dns/message.js';
import { TUN_DNS_PORT } from '../wire/policy.js';

/**
 * The in-tunnel DNS server's sockets (`spec/gateway-dataplane.md` §7.2): UDP and TCP on port
 * 53535 of each of the gateway's tunnel addresses, as ordinary kernel sockets. Queries reach
 * them through the TUN device (the router lets clients reach only this port of the gateway's own
 * addresses); answers go back the same way. What to answer is the handler's business.
 *
 * The tunnel addresses change with every portal `init`, and binding can fail for a moment after
 * an address is configured, so `listen` closes what is no longer wanted and keeps retrying an
 * address that does not bind yet (every second, for a minute).
 */

/** TCP connections at once; more are refused by the kernel backlog handling. */
export const MAX_DNS_TCP_CONNECTIONS = 256;
/** A TCP connection with no query for this long is closed. */
export const DNS_TCP_IDLE_MS = 30_000;
const BIND_RETRY_MS = 1_000;
const BIND_ATTEMPTS = 60;

export type DnsQueryHandler = (query: Uint8Array, transport: DnsTransport) => Promise<Uint8Array | undefined>;

export interface DnsListenerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

interface Bound {
  readonly udp: UdpSocket;
  readonly tcp: Server;
}

export class DnsListener {
  private readonly bound = new Map<string, Bound>();
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private readonly connections = new Set<Socket>();
  private wanted = new Set<string>();
  private closed = false;

  constructor(
    private readonly handler: DnsQueryHandler,
    private readonly log: DnsListenerLog,
    private readonly port = TUN_DNS_PORT,
  ) {}

  /** The addresses currently served. */
  get addresses(): string[] {
    return [...this.bound.keys()];
  }

  /** Serves exactly `addresses` from now on. Resolves after the first bind attempt of each. */
  async listen(addresses: readonly string[]): Promise<void> {
    if (this.closed) return;
    this.wanted = new Set(addresses);
    for (const [addr, b] of [...this.bound]) {
      if (this.wanted.has(addr)) continue;
      this.bound.delete(addr);
      await closeBound(b);
    }
    for (const [addr, t] of [...this.retries]) {
      if (this.wanted.has(addr)) continue;
      clearTimeout(t);
      this.retries.delete(addr);
    }
    await Promise.all(
      [...this.wanted].filter((a) => !this.bound.has(a)).map((a) => this.bindWithRetry(a, 1)),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.retries.values()) clearTimeout(t);
    this.retries.clear();
    for (const c of this.connections) c.destroy();
    const all = [...this.bound.values()];
    this.bound.clear();
    await Promise.all(all.map(closeBound));
  }

  private async bindWithRetry(addr: string, attempt: number): Promise<void> {
    this.retries.delete(addr);
    if (this.closed || !this.wanted.has(addr) || this.bound.has(addr)) return;
    try {
      const b = await this.bind(addr);
      if (this.closed || !this.wanted.has(addr)) {
        await closeBound(b);
        return;
      }
      this.bound.set(addr, b);
      this.log.info({ address: addr, port: this.port, attempt }, 'DNS server listening');
    } catch (e) {
      const fields = { address: addr, port: this.port, attempt, err: (e as Error).message };
      if (attempt >= BIND_ATTEMPTS) {
        this.log.error(fields, 'DNS server could not listen; giving up on this address');
        return;
      }
      if (attempt === 1) this.log.warn(fields, 'DNS server could not listen yet; retrying');
      this.retries.set(
        addr,
        setTimeout(() => void this.bindWithRetry(addr, attempt + 1), BIND_RETRY_MS),
      );
    }
  }

  private async bind(addr: string): Promise<Bound> {
    const v6 = addr.includes(':');
    const udp = createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(this.port, addr, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    udp.on('error', (e) => this.log.warn({ address: addr, err: e.message }, 'DNS server UDP socket error'));
    udp.on('message', (msg, rinfo) => {
      this.handler(new Uint8Array(msg), 'udp').then(
        (answer) => {
          if (answer && !this.closed) udp.send(answer, rinfo.port, rinfo.address);
        },
        (e: unknown) => this.log.error({ err: (e as Error).message }, 'DNS query handler failed'),
      );
    });
    const tcp = createServer((sock) => this.serveTcp(sock));
    tcp.maxConnections = MAX_DNS_TCP_CONNECTIONS;
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ port: this.port, host: addr, ipv6Only: v6 }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    tcp.on('error', (e) => this.log.warn({ address: addr, err: e.message }, 'DNS server TCP socket error'));
    return { udp, tcp };
  }

  /** One TCP client: length-prefixed queries answered one at a time, in order (§7.2). */
  private serveTcp(sock: Socket): void {
    this.connections.add(sock);
    sock.setTimeout(DNS_TCP_IDLE_MS, () => sock.destroy());
    sock.on('close', () => this.connections.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf: Buffer = Buffer.alloc(0);
    let busy = false;
    const next = (): void => {
      if (busy || sock.destroyed) return;
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      const query = new Uint8Array(buf.subarray(2, 2 + len));
      buf = buf.subarray(2 + len);
      busy = true;
      this.handler(query, 'tcp').then(
        (answer) => {
          busy = false;
          if (sock.destroyed) return;
          if (!answer || answer.length > DNS_MAX_MESSAGE_BYTES) {
            sock.destroy();
            return;
          }
          sock.write(frameForTcp(answer));
          next();
        },
        (e: unknown) => {
          this.log.error({ err: (e as Error).message }, 'DNS query handler failed');
          sock.destroy();
        },
      );
    };
    sock.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      // A client that streams without waiting gets at most one message of backlog buffered.
      if (buf.length > 2 * (2 + DNS_MAX_MESSAGE_BYTES)) {
        sock.destroy();
        return;
      }
      next();
    });
  }
}

function closeBound(b: Bound): Promise<void> {
  return new Promise((resolve) => {
    b.udp.close();
    b.tcp.close(() => resolve());
  });
}
