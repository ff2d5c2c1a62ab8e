import { type Actor, createActor, fromCallback, type InspectionEvent } from 'xstate';
import { openPortalSocket, type PortalSocketHandlers } from '../io/portal-socket.js';
import {
  type FatalReason,
  GATEWAY_TOPIC,
  type PortalSessionEvent,
  type PortalSocketCommand,
  portalSessionMachine,
} from '../machines/portal-session.machine.js';
import { decodeFrame } from '../wire/phoenix/frame.js';
import { decodePortalMessage } from '../wire/portal/decode.js';
import type { PortalError, PortalMessage } from '../wire/portal/types.js';
import type { Clock } from './clock.js';
import type { GatewayLog } from './gateway.js';

/**
 * The portal session as a running actor: the portal-session machine with its WebSocket (a
 * callback actor around `openPortalSocket`) and its reports turned into log lines. Decoded portal
 * messages go to `deliver`, in order.
 */

/** Opens one portal connection (replaceable in tests). */
export type OpenPortalSocket = (
  url: string,
  userAgent: string,
  handlers: PortalSocketHandlers,
) => { send(text: string): void; close(): void };

export interface PortalSessionOptions {
  readonly url: string;
  readonly userAgent: string;
  readonly clock: Clock;
  readonly log: GatewayLog & { debug?(obj: object, msg: string): void };
  readonly deliver: (message: PortalMessage, skipped: readonly string[]) => void;
  readonly open?: OpenPortalSocket;
  readonly jitter?: () => number;
  readonly inspect?: (event: InspectionEvent) => void;
}

/**
 * Turns one text frame into the session's event: Phoenix control frames as such, pushes on the
 * `gateway` topic decoded into portal messages, anything else reported as invalid.
 */
export function eventOfFrame(text: string): PortalSessionEvent {
  const frame = decodeFrame(text);
  if (!frame.ok) {
    return {
      type: 'portal.invalid',
      event: '(frame)',
      error: { code: 'portal.invalid', message: frame.error.message },
    };
  }
  const f = frame.value;
  switch (f.kind) {
    case 'reply':
      return { type: 'phoenix.reply', topic: f.topic, ref: f.ref, status: f.status, response: f.response };
    case 'error':
      return { type: 'phoenix.error', topic: f.topic };
    case 'close':
      return { type: 'phoenix.close', topic: f.topic };
    case 'disconnect':
      return { type: 'phoenix.disconnect', reason: f.reason };
    case 'push': {
      if (f.topic !== GATEWAY_TOPIC) {
        const error: PortalError = {
          code: 'portal.unsupported-event',
          message: `push on topic '${f.topic}'`,
        };
        return { type: 'portal.invalid', event: f.event, error };
      }
      const decoded = decodePortalMessage(f.event, f.payload);
      return decoded.ok
        ? { type: 'portal.message', message: decoded.value.message, skipped: decoded.value.skipped }
        : { type: 'portal.invalid', event: f.event, error: decoded.error };
    }
  }
}

/** The socket actor: one connection per invocation; frames in as events; closed on stop. */
export function portalSocketLogic(open: OpenPortalSocket = openPortalSocket) {
  return fromCallback<PortalSocketCommand, { url: string; userAgent: string }>(
    ({ input, sendBack, receive }) => {
      // XState runs no cleanup for a callback actor that failed, so a failure closes the socket
      // here, and a closed-down socket's late events are not passed on (they would tear down the
      // connection that replaced it).
      let dead = false;
      const send = (e: Parameters<typeof sendBack>[0]) => {
        if (!dead) sendBack(e);
      };
      const socket = open(input.url, input.userAgent, {
        open: () => send({ type: 'socket.open' }),
        text: (text) => send(eventOfFrame(text)),
        rejected: (status, body) => send({ type: 'socket.rejected', status, body }),
        closed: (reason) => send({ type: 'socket.closed', reason }),
      });
      receive((cmd) => {
        try {
          if (cmd.type === 'send') socket.send(cmd.text);
          else socket.close();
        } catch (e) {
          dead = true;
          socket.close();
          throw e;
        }
      });
      return () => {
        dead = true;
        socket.close();
      };
    },
  );
}

/** Strips the token from a login URL for logs. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&]*/, '$1<redacted>');
}

export type PortalSessionActor = Actor<typeof portalSessionMachine>;

export function createPortalSession(opts: PortalSessionOptions): PortalSessionActor {
  const log = opts.log;
  const machine = portalSessionMachine.provide({
    actors: { portalSocket: portalSocketLogic(opts.open) },
    actions: {
      deliver: (_, p) => opts.deliver(p.message, p.skipped),
      reportInvalid: (_, p) => {
        if (p.error.code === 'portal.unsupported-event')
          log.debug?.({ event: p.event, err: p.error.message }, 'Ignoring unsupported portal message');
        else
          log.warn(
            { event: p.event, code: p.error.code, path: p.error.path, err: p.error.message },
            'Dropping invalid portal message',
          );
      },
      reportReply: (_, p) =>
        log.warn({ event: p.event, outcome: p.outcome }, 'Portal did not accept a message'),
      reportStatus: (_, p) => {
        const fields = { url: redactUrl(opts.url), ...(p.detail ? { detail: p.detail } : {}) };
        switch (p.status) {
          case 'connected':
            return log.info(fields, 'Connected to the portal');
          case 'joined':
            return log.info(fields, 'Joined the gateway channel');
          case 'hiccup':
            return log.warn(fields, 'Portal connection lost; reconnecting');
          case 'leaving':
            return log.info(fields, 'Leaving the portal');
          default:
            return log.info({ ...fields, status: p.status }, 'Portal session changed');
        }
      },
    },
  });
  return createActor(machine, {
    clock: opts.clock,
    input: {
      url: opts.url,
      userAgent: opts.userAgent,
      jitter: opts.jitter ?? Math.random,
      now: () => opts.clock.now(),
    },
    ...(opts.inspect ? { inspect: opts.inspect } : {}),
  });
}

/** A log-ready description of why the session ended for good. */
export function describeFatal(f: FatalReason): { message: string; fields: Record<string, unknown> } {
  switch (f.kind) {
    case 'rejected':
      return { message: 'The portal refused the connection', fields: { status: f.status, body: f.body } };
    case 'login-failed':
      return { message: 'The portal refused to join the gateway channel', fields: { reason: f.reason } };
    case 'token-expired':
      return { message: 'The portal says the token expired', fields: {} };
    case 'max-retries':
      return {
        message: 'Could not reach the portal for too long; giving up',
        fields: { elapsedMs: f.elapsedMs, lastError: f.lastError },
      };
  }
}
