import { createSocket, type Socket } from 'node:dgram';
import type { Netns } from '../../support/netns.js';
import { inNetns } from './netns-thread.js';

/** `ip -j <args>` inside the namespace, parsed. */
export function ipJson<T = Record<string, unknown>[]>(ns: Netns, ...args: string[]): T {
  const out = ns.ip('-j', ...args).trim();
  return (out === '' ? [] : JSON.parse(out)) as T;
}

/** Whether interface `name` exists in the namespace. */
export function linkExists(ns: Netns, name: string): boolean {
  return ipJson(ns, 'link', 'show').some((l) => l.ifname === name);
}

/** Resolves once `check()` is true; rejects after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface ReceivedDatagram {
  readonly data: Buffer;
  readonly address: string;
  readonly port: number;
}

/** A plain node:dgram socket bound inside the namespace, collecting what it receives. */
export async function dgramIn(
  ns: Netns,
  family: 4 | 6,
  address?: string,
): Promise<{ socket: Socket; port: number; received: ReceivedDatagram[] }> {
  return inNetns(ns.name, async () => {
    const socket = createSocket({ type: family === 4 ? 'udp4' : 'udp6', ipv6Only: family === 6 });
    const received: ReceivedDatagram[] = [];
    socket.on('message', (data, rinfo) => received.push({ data, address: rinfo.address, port: rinfo.port }));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, address ?? (family === 4 ? '0.0.0.0' : '::'), () => resolve());
    });
    return { socket, port: socket.address().port, received };
  });
}

export function sendDgram(socket: Socket, data: Uint8Array, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) =>
    socket.send(data, port, address, (e) => (e ? reject(e) : resolve())),
  );
}
