import { afterEach, describe, expect, it } from 'vitest';
import { pollOnce, ReadinessWaiter, readinessThreadsInUse } from '../../../src/io/readiness.js';
import { O_CLOEXEC, O_NONBLOCK, POLLHUP, POLLIN } from '../../../src/native/abi.js';
import { getLibc } from '../../../src/native/libc.js';

const libc = getLibc();
const open: number[] = [];

function pipe(): [number, number] {
  const fds = new Int32Array(2);
  expect(libc.pipe2(fds, O_NONBLOCK | O_CLOEXEC)).toBe(0);
  open.push(fds[0]!, fds[1]!);
  return [fds[0]!, fds[1]!];
}

function closeFd(fd: number): void {
  libc.close(fd);
  open.splice(open.indexOf(fd), 1);
}

afterEach(() => {
  for (const fd of open.splice(0)) libc.close(fd);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('readiness waiter', () => {
  it('waits off the main thread and reports readability on it', async () => {
    const [r, w] = pipe();
    const seen: number[] = [];
    const waiter = new ReadinessWaiter(
      r,
      POLLIN,
      (revents) => seen.push(revents),
      (e) => {
        throw e;
      },
      'GW_ERR_TUN_IO',
    );
    waiter.arm();
    await sleep(20);
    // The main thread is free while the wait is pending.
    expect(seen).toEqual([]);
    expect(readinessThreadsInUse()).toBe(1);
    libc.write(w, Uint8Array.of(1), 1);
    await expect.poll(() => seen.length).toBe(1);
    expect(seen[0]! & POLLIN).toBe(POLLIN);
    expect(readinessThreadsInUse()).toBe(0);
    // Not re-armed by itself: the owner drains first.
    libc.write(w, Uint8Array.of(2), 1);
    await sleep(20);
    expect(seen).toHaveLength(1);
    await waiter.close();
  });

  it('close() wakes a pending wait and resolves once no thread polls the descriptor', async () => {
    const [r] = pipe();
    let ready = 0;
    const waiter = new ReadinessWaiter(
      r,
      POLLIN,
      () => ready++,
      (e) => {
        throw e;
      },
      'GW_ERR_TUN_IO',
    );
    waiter.arm();
    const closed = waiter.close();
    expect(waiter.close()).toBe(closed);
    await closed;
    expect(readinessThreadsInUse()).toBe(0);
    expect(ready).toBe(0);
    // Arming a closed waiter does nothing.
    waiter.arm();
    expect(readinessThreadsInUse()).toBe(0);
  });

  it('reports a hang-up of the other end in revents', async () => {
    const [r, w] = pipe();
    const seen: number[] = [];
    const waiter = new ReadinessWaiter(
      r,
      POLLIN,
      (revents) => seen.push(revents),
      (e) => {
        throw e;
      },
      'GW_ERR_UDP_IO',
    );
    waiter.arm();
    closeFd(w);
    await expect.poll(() => seen.length).toBe(1);
    expect(seen[0]! & POLLHUP).toBe(POLLHUP);
    await waiter.close();
  });
});

describe('one-shot poll', () => {
  it('resolves 0 after the timeout and the events once ready', async () => {
    const [r, w] = pipe();
    expect(await pollOnce(r, POLLIN, 10, 'GW_ERR_NETLINK')).toBe(0);
    libc.write(w, Uint8Array.of(1), 1);
    expect((await pollOnce(r, POLLIN, 1000, 'GW_ERR_NETLINK')) & POLLIN).toBe(POLLIN);
  });
});
