import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { type HealthServer, startHealthServer } from '../../../src/io/health.js';

let server: HealthServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function call(method: string, path: string): Promise<{ status: number; body: string }> {
  const { port } = server!.address;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('health check server', () => {
  it('answers GET /healthz with 200 and an empty body', async () => {
    server = await startHealthServer('127.0.0.1', 0);
    expect(await call('GET', '/healthz')).toEqual({ status: 200, body: '' });
    expect((await call('HEAD', '/healthz')).status).toBe(200);
    expect((await call('GET', '/healthz?probe=1')).status).toBe(200);
  });

  it('answers other methods with 405 and other paths with 404', async () => {
    server = await startHealthServer('127.0.0.1', 0);
    expect((await call('POST', '/healthz')).status).toBe(405);
    expect((await call('GET', '/')).status).toBe(404);
    expect((await call('GET', '/healthz/x')).status).toBe(404);
  });

  it('rejects when the address is taken', async () => {
    server = await startHealthServer('127.0.0.1', 0);
    await expect(startHealthServer('127.0.0.1', server.address.port)).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
  });

  it('listens on IPv6 loopback', async () => {
    server = await startHealthServer('::1', 0);
    expect(server.address.family).toBe('IPv6');
  });
});
