import WebSocket from 'ws';

/**
 * The portal WebSocket (`spec/portal-protocol.md` §1.2): one connection attempt, text frames in
 * and out, and exactly one of `rejected` / `closed` at the end. No timers here: the session
 * machine owns every timeout, on the actor system's clock.
 *
 * Deliberate difference: the reference marks its portal TCP socket with the Firezone fwmark.
 * The policy rule only diverts unmarked traffic whose destination lies in the tunnel ranges
 * (100.64.0.0/11, fd00:2021:1111::/107), where no portal lives, so the mark changes nothing for
 * this connection and we do not set it.
 */
export interface PortalSocketHandlers {
  /** The upgrade succeeded. */
  open(): void;
  /** One text frame. */
  text(frame: string): void;
  /** The server answered the upgrade with a non-101 HTTP status (body truncated to 4 KiB). */
  rejected(status: number, body: string): void;
  /** The attempt failed or the connection ended, with a reason for the log. */
  closed(reason: string): void;
}

export interface PortalSocket {
  send(text: string): void;
  /** A WebSocket close handshake when open; abandons an attempt in progress. Idempotent. */
  close(): void;
}

export interface PortalSocketOptions {
  readonly headers?: Readonly<Record<string, string>>;
}

/** What tungstenite accepts per message by default (§7.1 item 11): `init` grows with authorizations. */
export const MAX_PORTAL_MESSAGE_BYTES = 64 * 1024 * 1024;
const MAX_REJECTION_BODY_BYTES = 4096;
/** Close code of an orderly shutdown. */
const NORMAL_CLOSURE = 1000;

export function openPortalSocket(
  url: string,
  userAgent: string,
  handlers: PortalSocketHandlers,
  opts: PortalSocketOptions = {},
): PortalSocket {
  let done = false;
  const finish = (fn: () => void) => {
    if (done) return;
    done = true;
    fn();
  };
  const ws = new WebSocket(url, {
    headers: { 'User-Agent': userAgent, ...opts.headers },
    maxPayload: MAX_PORTAL_MESSAGE_BYTES,
    perMessageDeflate: false,
    followRedirects: false,
  });
  ws.on('open', () => {
    if (!done) handlers.open();
  });
  ws.on('message', (data) => {
    if (done) return;
    // The portal sends text frames; a binary one is decoded the same way (and fails there if
    // it is not JSON).
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    handlers.text(buf.toString('utf8'));
  });
  ws.on('unexpected-response', (req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const status = res.statusCode ?? 0;
    const report = () => {
      finish(() => handlers.rejected(status, Buffer.concat(chunks).toString('utf8')));
      req.destroy();
    };
    res.on('data', (c: Buffer) => {
      if (size >= MAX_REJECTION_BODY_BYTES) return;
      const part = c.subarray(0, MAX_REJECTION_BODY_BYTES - size);
      chunks.push(part);
      size += part.length;
      if (size >= MAX_REJECTION_BODY_BYTES) report();
    });
    res.on('end', report);
    res.on('error', report);
  });
  ws.on('error', (err) => finish(() => handlers.closed(err.message)));
  ws.on('close', (code, reason) => {
    const why = reason.length > 0 ? `${code} ${reason.toString('utf8')}` : String(code);
    finish(() => handlers.closed(`closed by the portal (${why})`));
  });
  return {
    send(text) {
      if (ws.readyState === WebSocket.OPEN) ws.send(text);
    },
    close() {
      done = true;
      if (ws.readyState === WebSocket.OPEN) ws.close(NORMAL_CLOSURE);
      else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    },
  };
}
