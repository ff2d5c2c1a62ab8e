import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The health check (`spec/portal-protocol.md` §6.5): `GET /healthz` (and HEAD) → 200 with an
 * empty body, always; other methods on it → 405; other paths → 404. Extra read-only routes
 * (`/metrics`) can be added; they answer GET and HEAD the same way.
 */
export type HealthRoute = () => Promise<{ contentType: string; body: string }>;

export interface HealthServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

export function startHealthServer(
  host: string,
  port: number,
  routes: Readonly<Record<string, HealthRoute>> = {},
): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = routes[path];
    if (path !== '/healthz' && !route) {
      res.writeHead(404, { 'content-length': 0 }).end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-length': 0 }).end();
      return;
    }
    if (!route) {
      res.writeHead(200, { 'content-length': 0 }).end();
      return;
    }
    route().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (e: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`);
      },
    );
  });
  // Health probes are short-lived; don't let idle keep-alive sockets delay shutdown.
  server.keepAliveTimeout = 1_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve({
        address: server.address() as AddressInfo,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}
