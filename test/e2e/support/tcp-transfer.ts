/**
 * A TCP bulk transfer with an end-to-end checksum, for tests that push data through a tunnel.
 *
 *   node tcp-transfer.ts receive PORT            → prints {"bytes":N,"sha256":"…"} when the sender closes
 *   node tcp-transfer.ts send HOST PORT BYTES    → prints {"bytes":N,"sha256":"…"} of what it sent
 *
 * The sender streams pseudo-random bytes (fresh per run) so nothing compresses or repeats.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';

const [mode, a, b, c] = process.argv.slice(2);
if (mode === 'receive') {
  const server = createServer((sock) => {
    const h = createHash('sha256');
    let n = 0;
    sock.on('data', (d) => {
      h.update(d);
      n += d.length;
    });
    sock.on('end', () => {
      process.stdout.write(`${JSON.stringify({ bytes: n, sha256: h.digest('hex') })}\n`);
      server.close();
    });
  });
  server.listen(Number(a), () => process.stdout.write(`${JSON.stringify({ listening: Number(a) })}\n`));
} else if (mode === 'send') {
  const total = Number(c);
  const h = createHash('sha256');
  const sock = connect(Number(b), a!, () => {
    let sent = 0;
    const chunk = 1 << 16;
    const pump = () => {
      while (sent < total) {
        const d = randomBytes(Math.min(chunk, total - sent));
        h.update(d);
        sent += d.length;
        if (!sock.write(d)) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end(() => process.stdout.write(`${JSON.stringify({ bytes: sent, sha256: h.digest('hex') })}\n`));
    };
    pump();
  });
  sock.on('error', (e) => {
    process.stderr.write(`tcp-transfer: ${e.message}\n`);
    process.exit(1);
  });
}
