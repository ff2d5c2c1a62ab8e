import { GatewayError } from '../errors.js';
import {
  AF_NETLINK,
  MSG_DONTWAIT,
  MSG_TRUNC,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOCKADDR_NL_BYTES,
} from '../native/abi.js';
import { getLibc, type Libc } from '../native/libc.js';
import {
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_GET_STRICT_CHK,
  NETLINK_ROUTE,
  NLM_F_DUMP_INTR,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  SOL_NETLINK,
} from '../wire/netlink/constants.js';
import {
  type NetlinkMessage,
  parseDoneMessage,
  parseErrorMessage,
  parseMessages,
} from '../wire/netlink/message.js';
import type { Result, WireError } from '../wire/result.js';
import { ERRNO, osError } from './os-error.js';
import { pollOnce } from './readiness.js';

/** How long the kernel may take to answer one request (it answers synchronously; this is a safety net). */
export const NETLINK_REPLY_TIMEOUT_MS = 5_000;
/** Receive buffer: the kernel sends dump chunks of at most 32 KiB. */
const RECEIVE_BUFFER_BYTES = 65_536;
/** A dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is retried this often. */
const DUMP_ATTEMPTS = 3;

/** Builds a request for a sequence number. */
export type RequestBuilder = (seq: number) => Uint8Array;

/**
 * An rtnetlink (NETLINK_ROUTE) socket that executes requests built by `src/wire/netlink` and
 * waits for their replies: acks, single replies and dumps.
 *
 * Each request gets its own sequence number and replies with another one are skipped (late
 * answers to a request that timed out). Requests run one at a time, in call order. Waiting for
 * a reply never blocks the main thread: reads are non-blocking and an empty socket is waited on
 * with an async poll. Kernel errors become `GW_ERR_NETLINK` errors naming the operation, the
 * errno and the kernel's extended-ack message; callers list the errnos they consider harmless.
 *
 * The socket lives in the network namespace of the thread that opened it.
 */
export class Rtnetlink {
  private readonly libc: Libc;
  private readonly receiveBuffer = new Uint8Array(RECEIVE_BUFFER_BYTES);
  private seq = 1;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(private readonly fd: number) {
    this.libc = getLibc();
  }

  static open(): Rtnetlink {
    const libc = getLibc();
    const fd = libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) throw osError('GW_ERR_NETLINK', 'open rtnetlink socket', libc.errno());
    const addr = new Uint8Array(SOCKADDR_NL_BYTES);
    new DataView(addr.buffer).setUint16(0, AF_NETLINK, true);
    if (libc.bind(fd, addr, SOCKADDR_NL_BYTES) !== 0) {
      const errno = libc.errno();
      libc.close(fd);
      throw osError('GW_ERR_NETLINK', 'bind rtnetlink socket', errno);
    }
    const one = new Int32Array([1]);
    // Extended acks carry the kernel's reason ("Invalid prefix for given prefix length"), capped
    // acks do not echo our request back, strict checking lets dumps filter in the kernel. All
    // three are optional: kernels before 4.12/4.20 lack some (ENOPROTOOPT) and work without.
    for (const option of [NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK]) {
      libc.setsockopt(fd, SOL_NETLINK, option, one, 4);
    }
    return new Rtnetlink(fd);
  }

  /**
   * Sends a request that is answered by an ack. Resolves with 0, or with the errno when it is
   * in `tolerate` (e.g. EEXIST for an add that may repeat); rejects with `GW_ERR_NETLINK`.
   */
  call(build: RequestBuilder, operation: string, tolerate: readonly number[] = []): Promise<number> {
    return this.serialize(operation, async () => {
      let outcome = 0;
      await this.exchange(build, operation, (msg) => {
        if (msg.type !== NLMSG_ERROR) return 'continue';
        outcome = this.statusOf(parseErrorMessage(msg), operation, tolerate);
        return 'done';
      });
      return outcome;
    });
  }

  /**
   * Sends a request answered by exactly one message (e.g. RTM_GETLINK by name) and parses it.
   * Rejects with `GW_ERR_NETLINK` on an error reply; `missing` errnos (e.g. ENODEV) resolve
   * with undefined instead.
   */
  get<T>(
    build: RequestBuilder,
    parse: (msg: NetlinkMessage) => Result<T, WireError>,
    operation: string,
    missing: readonly number[] = [],
  ): Promise<T | undefined> {
    return this.serialize(operation, async () => {
      let value: T | undefined;
      await this.exchange(build, operation, (msg) => {
        if (msg.type === NLMSG_ERROR) {
          this.statusOf(parseErrorMessage(msg), operation, missing);
          return 'done';
        }
        value = this.parsed(parse(msg), operation);
        return 'done';
      });
      return value;
    });
  }

  /**
   * Sends a dump request and parses every reply until NLMSG_DONE. Errnos in `empty` (e.g.
   * ENOENT for a routing table that does not exist yet) resolve with an empty list. A dump the
   * kernel marks as interrupted by a concurrent change is repeated.
   */
  dump<T>(
    build: RequestBuilder,
    parse: (msg: NetlinkMessage) => Result<T, WireError>,
    operation: string,
    empty: readonly number[] = [],
  ): Promise<T[]> {
    return this.serialize(operation, async () => {
      for (let attempt = 1; ; attempt++) {
        const items: T[] = [];
        let interrupted = false;
        await this.exchange(build, operation, (msg) => {
          if (msg.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (msg.type === NLMSG_DONE || msg.type === NLMSG_ERROR) {
            const status = msg.type === NLMSG_DONE ? parseDoneMessage(msg) : parseErrorMessage(msg);
            if (this.statusOf(status, operation, empty) !== 0) items.length = 0;
            return 'done';
          }
          items.push(this.parsed(parse(msg), operation));
          return 'continue';
        });
        if (!interrupted || attempt === DUMP_ATTEMPTS) return items;
      }
    });
  }

  /**
   * Refuses new requests, lets those already issued finish (a thread may be polling the socket
   * for a reply), then closes the socket. Idempotent.
   */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = this.queue.then(() => {
        this.libc.close(this.fd);
      });
    }
    return this.closing;
  }

  private serialize<T>(operation: string, op: () => Promise<T>): Promise<T> {
    if (this.closed) {
      return Promise.reject(
        new GatewayError('GW_ERR_NETLINK', `${operation}: the rtnetlink socket is closed`),
      );
    }
    const run = this.queue.then(op, op);
    // The queue only orders requests; each caller sees its own outcome through `run`.
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private statusOf(
    status: Result<{ errno: number; detail?: string }, WireError>,
    operation: string,
    tolerate: readonly number[],
  ): number {
    const s = this.parsed(status, operation);
    if (s.errno === 0 || tolerate.includes(s.errno)) return s.errno;
    throw osError('GW_ERR_NETLINK', operation, s.errno, s.detail);
  }

  private parsed<T>(r: Result<T, WireError>, operation: string): T {
    if (r.ok) return r.value;
    throw new GatewayError(
      'GW_ERR_NETLINK',
      `${operation}: malformed kernel reply (${r.error.code}): ${r.error.message}`,
    );
  }

  /** Sends one request and feeds each reply message with its sequence number to `onMessage`. */
  private async exchange(
    build: RequestBuilder,
    operation: string,
    onMessage: (msg: NetlinkMessage) => 'continue' | 'done',
  ): Promise<void> {
    const seq = this.seq++;
    const request = build(seq);
    // A netlink socket bound with pid 0 sends to the kernel without a destination address.
    if (this.libc.sendto(this.fd, request, request.length, 0, null, 0) !== request.length) {
      throw osError('GW_ERR_NETLINK', `${operation} (send)`, this.libc.errno());
    }
    const deadline = performance.now() + NETLINK_REPLY_TIMEOUT_MS;
    for (;;) {
      const n = this.libc.recv(this.fd, this.receiveBuffer, RECEIVE_BUFFER_BYTES, MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        const errno = this.libc.errno();
        if (errno === ERRNO.EINTR) continue;
        if (errno !== ERRNO.EAGAIN) throw osError('GW_ERR_NETLINK', `${operation} (receive)`, errno);
        const left = deadline - performance.now();
        if (left <= 0) {
          throw new GatewayError(
            'GW_ERR_NETLINK',
            `${operation}: no reply from the kernel within ${NETLINK_REPLY_TIMEOUT_MS} ms`,
          );
        }
        await pollOnce(this.fd, POLLIN, Math.ceil(left), 'GW_ERR_NETLINK');
        continue;
      }
      if (n > RECEIVE_BUFFER_BYTES) {
        throw new GatewayError(
          'GW_ERR_NETLINK',
          `${operation}: a ${n}-byte reply exceeds the ${RECEIVE_BUFFER_BYTES}-byte buffer`,
        );
      }
      const messages = this.parsed(parseMessages(this.receiveBuffer.subarray(0, n)), operation);
      for (const msg of messages) {
        if (msg.seq !== seq || msg.type === NLMSG_NOOP) continue;
        if (onMessage(msg) === 'done') return;
      }
    }
  }
}
