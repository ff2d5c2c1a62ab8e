import { GatewayError, type GatewayErrorCode } from '../errors.js';
import { O_CLOEXEC, O_NONBLOCK, POLLFD_BYTES, POLLIN } from '../native/abi.js';
import { getLibc, type Libc, nativeAddress } from '../native/libc.js';
import { describeErrno, ERRNO, osError } from './os-error.js';

/**
 * Readiness notification for descriptors Node cannot watch itself (a TUN device, sockets made
 * through libc), without blocking the main thread.
 *
 * A `ReadinessWaiter` runs poll(2) on the descriptor plus a private wake-up pipe through koffi's
 * async call form, i.e. on a libuv threadpool thread. When poll returns, `onReady(revents)` runs
 * on the main thread; the owner drains the descriptor with non-blocking calls there and calls
 * `arm()` again. `close()` writes to the wake-up pipe and resolves only after the pending poll
 * has returned, so the owner can then close its descriptor: a descriptor is never closed while
 * another thread polls it (which would be a use-after-close if the number were reused).
 *
 * Threadpool: every armed waiter occupies one libuv threadpool thread while it waits. The pool
 * has 4 threads unless `UV_THREADPOOL_SIZE` says otherwise (it is read once, when the pool first
 * starts), and it also serves fs, dns.lookup, crypto.pbkdf2/scrypt and zlib. With the TUN device
 * and an IPv4 and an IPv6 socket, 3 of the default 4 are taken; each further waiter starves
 * those users more and once all threads wait, they stall completely. The CLI therefore sets
 * `UV_THREADPOOL_SIZE` (at least `readinessThreadsInUse()` + 4) before anything uses the pool.
 */

let threadsInUse = 0;

/** How many threadpool threads are blocked in a readiness wait right now. */
export function readinessThreadsInUse(): number {
  return threadsInUse;
}

type State = 'idle' | 'waiting' | 'closing' | 'closed';

export class ReadinessWaiter {
  private readonly libc: Libc;
  /** Two `struct pollfd`: the watched descriptor, then the wake-up pipe's read end. */
  private readonly pollfds = new ArrayBuffer(2 * POLLFD_BYTES);
  private readonly pollfdsAddress: number;
  private readonly revents: Int16Array;
  private readonly pipe = new Int32Array(2);
  private readonly wakeByte = new Uint8Array(1);
  private state: State = 'idle';
  private closed: Promise<void> | undefined;
  private resolveClosed: (() => void) | undefined;
  private readonly complete = (error: unknown, result: number): void => this.onComplete(error, result);

  /**
   * @param fd the descriptor to watch (not owned: the caller closes it after `close()`).
   * @param events poll events to wait for (POLLIN).
   * @param onReady called on the main thread with the descriptor's `revents` (POLLERR, POLLHUP
   *   and POLLNVAL included); the owner drains and calls `arm()` to wait again.
   * @param onFailure called when poll itself fails (not EINTR); the waiter is then idle.
   * @param errorCode the code for failures, so they read as the owner's (TUN, UDP).
   */
  constructor(
    private readonly fd: number,
    events: number,
    private readonly onReady: (revents: number) => void,
    private readonly onFailure: (error: GatewayError) => void,
    private readonly errorCode: GatewayErrorCode,
  ) {
    this.libc = getLibc();
    if (this.libc.pipe2(this.pipe, O_NONBLOCK | O_CLOEXEC) !== 0) {
      throw osError(errorCode, 'create wake-up pipe', this.libc.errno());
    }
    const fields = new Int32Array(this.pollfds);
    const shorts = new Int16Array(this.pollfds);
    fields[0] = fd;
    shorts[2] = events;
    fields[2] = this.pipe[0]!;
    shorts[6] = POLLIN;
    this.revents = shorts;
    this.pollfdsAddress = nativeAddress(this.pollfds);
  }

  /** Starts one wait unless one is pending or the waiter is closed. */
  arm(): void {
    if (this.state !== 'idle') return;
    this.revents[3] = 0;
    this.revents[7] = 0;
    try {
      this.libc.pollAsync(this.pollfdsAddress, 2, -1, this.complete);
      // The completion runs on this thread, so it cannot have happened yet.
      this.state = 'waiting';
      threadsInUse++;
    } catch (cause) {
      // koffi refuses to queue the call (its async queue is full): the wait cannot start.
      this.onFailure(
        new GatewayError(
          this.errorCode,
          `cannot wait for descriptor ${this.fd}: ${(cause as Error).message}`,
          {
            cause,
          },
        ),
      );
    }
  }

  /** Wakes a pending wait and resolves once no thread polls the descriptor any more. Idempotent. */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    if (this.state === 'waiting') {
      this.state = 'closing';
      this.closed = new Promise((resolve) => {
        this.resolveClosed = resolve;
      });
      // EAGAIN means the pipe already holds a wake-up byte: the poll returns anyway.
      this.libc.write(this.pipe[1]!, this.wakeByte, 1);
    } else {
      this.finish();
      this.closed = Promise.resolve();
    }
    return this.closed;
  }

  private onComplete(error: unknown, result: number): void {
    threadsInUse--;
    if (this.state === 'closing') {
      this.finish();
      this.resolveClosed?.();
      return;
    }
    this.state = 'idle';
    if (error) {
      this.onFailure(
        new GatewayError(
          this.errorCode,
          `poll on descriptor ${this.fd} failed: ${(error as Error).message}`,
          {
            cause: error,
          },
        ),
      );
      return;
    }
    if (result < 0) {
      const errno = this.libc.errno();
      if (errno === ERRNO.EINTR) {
        this.arm();
        return;
      }
      this.onFailure(osError(this.errorCode, `poll on descriptor ${this.fd}`, errno));
      return;
    }
    this.onReady(this.revents[3]!);
  }

  private finish(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.libc.close(this.pipe[0]!);
    this.libc.close(this.pipe[1]!);
  }
}

/**
 * One wait for `events` on `fd` of at most `timeoutMs`, off the main thread. Resolves with the
 * `revents` (0 on timeout). For rare waits (netlink replies); hot paths use `ReadinessWaiter`.
 */
export function pollOnce(
  fd: number,
  events: number,
  timeoutMs: number,
  errorCode: GatewayErrorCode,
): Promise<number> {
  const libc = getLibc();
  const pollfd = new ArrayBuffer(POLLFD_BYTES);
  new Int32Array(pollfd)[0] = fd;
  const shorts = new Int16Array(pollfd);
  shorts[2] = events;
  return new Promise((resolve, reject) => {
    // A synchronous throw (koffi's async queue is full) rejects this promise via the executor.
    libc.pollAsync(pollfd, 1, timeoutMs, (error, result) => {
      threadsInUse--;
      if (error) {
        reject(
          new GatewayError(errorCode, `poll on descriptor ${fd} failed: ${(error as Error).message}`, {
            cause: error,
          }),
        );
      } else if (result < 0) {
        const errno = libc.errno();
        // EINTR: report "nothing yet"; the caller's loop checks its deadline and polls again.
        if (errno === ERRNO.EINTR) resolve(0);
        else reject(new GatewayError(errorCode, `poll on descriptor ${fd} failed: ${describeErrno(errno)}`));
      } else {
        resolve(shorts[3]!);
      }
    });
    threadsInUse++;
  });
}
