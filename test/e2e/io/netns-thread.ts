import koffi from 'koffi';

/**
 * Runs `fn` with the calling thread switched into network namespace `name` (setns(2)), then
 * switches back. Sockets and TUN devices created meanwhile stay in that namespace for their
 * whole life, so one test process can own devices in several namespaces. Only the main thread
 * moves (setns is per thread): libuv threadpool threads keep the original namespace, which only
 * matters for work done there by name (dns.lookup), not for polling descriptors.
 *
 * Keep `fn` short: every socket the process opens while it runs lands in the namespace.
 */
export async function inNetns<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  const own = libc.open('/proc/thread-self/ns/net', O_RDONLY | O_CLOEXEC);
  if (own < 0) throw new Error(`open own network namespace: errno ${koffi.errno()}`);
  const target = libc.open(`/var/run/netns/${name}`, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    libc.close(own);
    throw new Error(`open network namespace ${name}: errno ${koffi.errno()}`);
  }
  try {
    enter(target, name);
    try {
      return await fn();
    } finally {
      // A thread left in the wrong namespace would put every later socket there: fail loudly.
      enter(own, 'the original namespace');
    }
  } finally {
    libc.close(own);
    libc.close(target);
  }
}

function enter(fd: number, what: string): void {
  if (libc.setns(fd, CLONE_NEWNET) !== 0) throw new Error(`setns into ${what}: errno ${koffi.errno()}`);
}

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;

const lib = koffi.load('libc.so.6');
const libc = {
  open: lib.func('int open(const char *path, int flags)') as (path: string, flags: number) => number,
  close: lib.func('int close(int fd)') as (fd: number) => number,
  setns: lib.func('int setns(int fd, int nstype)') as (fd: number, nstype: number) => number,
};
