import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Netns } from './netns.js';

/**
 * Makes a server of the test process (listening on a Unix socket, which no namespace hides)
 * reachable as `127.0.0.1:<port>` inside a network namespace: a tiny Node forwarder runs in the
 * namespace and pipes every TCP connection to the socket. Traffic stays on the namespace's
 * loopback and the socket file. Stopping the forwarder drops every forwarded connection.
 */
export interface NetnsForward {
  readonly port: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

const FORWARDER = `
const net = require('node:net');
const [path, port] = process.argv.slice(1);
const server = net.createServer((c) => {
  const u = net.connect(path);
  c.pipe(u).pipe(c);
  const end = () => { c.destroy(); u.destroy(); };
  c.on('error', end); u.on('error', end); c.on('close', end); u.on('close', end);
});
server.listen(Number(port), '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

export async function forwardIntoNetns(ns: Netns, socketPath: string, port = 0): Promise<NetnsForward> {
  const child = ns.spawn(process.execPath, ['-e', FORWARDER, socketPath, String(port)]);
  let out = '';
  const ready = new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += String(d);
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`the forwarder in ${ns.name} exited ${code}`)));
  });
  const bound = await ready;
  return {
    port: bound,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
  };
}
