import koffi from 'koffi';
import { GatewayError } from '../errors.js';

/**
 * koffi bindings to the few libc functions the I/O layer needs. Nothing else lives here: no
 * policy, no buffers, no error mapping (that is `src/io`).
 *
 * Conventions:
 * - Functions return what libc returns (-1 on failure); read the cause with `errno()` right
 *   after the call, before any other native call.
 * - Pointer parameters take either a number (an address, e.g. from `nativeAddress()` plus an
 *   offset, which koffi passes through without marshalling: the fast path) or a typed array /
 *   ArrayBuffer (koffi passes a pointer to its bytes, no copy).
 * - `pollAsync` is poll(2) run on a libuv threadpool thread (koffi's async call form): the
 *   blocking wait for readiness happens off the main thread and the callback runs on it. Each
 *   pending call occupies one threadpool thread until poll returns.
 */
export type Pointer = number | ArrayBufferLike | ArrayBufferView | null;

export interface Libc {
  open(path: string, flags: number): number;
  close(fd: number): number;
  read(fd: number, buf: Pointer, count: number): number;
  write(fd: number, buf: Pointer, count: number): number;
  ioctl(fd: number, request: number, arg: Pointer): number;
  poll(fds: Pointer, nfds: number, timeoutMs: number): number;
  pollAsync(
    fds: Pointer,
    nfds: number,
    timeoutMs: number,
    done: (error: unknown, result: number) => void,
  ): void;
  pipe2(fds: Int32Array, flags: number): number;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Pointer, addrlen: number): number;
  sendto(fd: number, buf: Pointer, len: number, flags: number, addr: Pointer, addrlen: number): number;
  recv(fd: number, buf: Pointer, len: number, flags: number): number;
  recvmmsg(fd: number, msgvec: Pointer, vlen: number, flags: number, timeout: Pointer): number;
  sendmmsg(fd: number, msgvec: Pointer, vlen: number, flags: number): number;
  setsockopt(fd: number, level: number, name: number, value: Pointer, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Pointer, len: Pointer): number;
  getsockname(fd: number, addr: Pointer, addrlen: Pointer): number;
  /** The calling thread's errno as left by the last native call (also in async callbacks). */
  errno(): number;
}

let bound: Libc | undefined;

/**
 * The bindings, loaded on first use. Throws `GW_ERR_NATIVE` when not on 64-bit little-endian
 * Linux (the struct layouts in `abi.ts` are fixed for it) or when libc cannot be bound.
 */
export function getLibc(): Libc {
  bound ??= bind();
  return bound;
}

function bind(): Libc {
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64')) {
    throw new GatewayError(
      'GW_ERR_NATIVE',
      `native I/O needs Linux on x64 or arm64, this is ${process.platform}-${process.arch}`,
    );
  }
  try {
    const lib = koffi.load('libc.so.6');
    // ioctl and open are variadic in C; declaring the one extra argument we pass as fixed is
    // ABI-compatible on x86-64 and arm64 Linux, and keeps koffi on its fast, non-variadic path.
    const poll = lib.func('int poll(void *fds, unsigned long nfds, int timeout)');
    return {
      open: lib.func('int open(const char *path, int flags)'),
      close: lib.func('int close(int fd)'),
      read: lib.func('long read(int fd, void *buf, unsigned long count)'),
      write: lib.func('long write(int fd, void *buf, unsigned long count)'),
      ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
      poll,
      pollAsync: poll.async,
      pipe2: lib.func('int pipe2(_Out_ int *fds, int flags)'),
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      bind: lib.func('int bind(int fd, void *addr, unsigned int addrlen)'),
      sendto: lib.func(
        'long sendto(int fd, void *buf, unsigned long len, int flags, void *addr, unsigned int addrlen)',
      ),
      recv: lib.func('long recv(int fd, void *buf, unsigned long len, int flags)'),
      recvmmsg: lib.func('int recvmmsg(int fd, void *msgvec, unsigned int vlen, int flags, void *timeout)'),
      sendmmsg: lib.func('int sendmmsg(int fd, void *msgvec, unsigned int vlen, int flags)'),
      setsockopt: lib.func('int setsockopt(int fd, int level, int name, void *value, unsigned int len)'),
      getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)'),
      getsockname: lib.func('int getsockname(int fd, void *addr, void *addrlen)'),
      errno: () => koffi.errno(),
    };
  } catch (cause) {
    throw new GatewayError('GW_ERR_NATIVE', `cannot bind libc with koffi: ${(cause as Error).message}`, {
      cause,
    });
  }
}

/**
 * The address of the first byte of `memory` (an ArrayBuffer, or a view's first byte), as a
 * number usable as a `Pointer` with an added offset.
 *
 * Valid for as long as `memory` is alive and not detached: ArrayBuffer backing stores never
 * move in V8. Callers must keep a reference to `memory` while the address is in use, and must
 * never hand such memory to `postMessage` transfer lists.
 */
export function nativeAddress(memory: ArrayBufferLike | ArrayBufferView): number {
  getLibc();
  // User-space addresses are below 2^47 on x86-64 and 2^52 on arm64: exact as doubles.
  return Number(koffi.address(memory));
}
