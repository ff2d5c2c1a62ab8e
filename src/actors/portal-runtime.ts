import type { InspectionEvent } from 'xstate';
import type { TunConfig } from '../io/tun.js';
import type { FatalReason } from '../machines/portal-session.machine.js';
import type { Clock } from './clock.js';
import type { GatewayLog } from './gateway.js';
import { type PortalControlGateway, PortalControlPlane } from './portal-control.js';
import {
  createPortalSession,
  describeFatal,
  type OpenPortalSocket,
  type PortalSessionActor,
} from './portal-session.js';

/**
 * Portal mode: the session actor and the control plane, wired together. The gateway (data plane
 * and client actors) is created by the caller and keeps running while the portal is away; this
 * only decides what the portal asks of it, and when the process must give up.
 */
export interface PortalRuntimeOptions {
  readonly url: string;
  readonly userAgent: string;
  readonly clock: Clock;
  readonly log: GatewayLog & { debug?(obj: object, msg: string): void };
  readonly gateway: PortalControlGateway;
  readonly configureTun: (cfg: TunConfig) => Promise<void>;
  readonly resolve: (name: string) => Promise<Uint8Array[]>;
  readonly interfaceReady?: (addresses: readonly string[]) => void;
  readonly random: (n: number) => Uint8Array;
  readonly open?: OpenPortalSocket;
  readonly jitter?: () => number;
  readonly inspect?: (event: InspectionEvent) => void;
}

/** How the portal session ended: `fatal` set means the process exits 1. */
export interface PortalOutcome {
  readonly fatal: { readonly message: string; readonly fields: Record<string, unknown> } | undefined;
}

export class PortalRuntime {
  readonly control: PortalControlPlane;
  readonly session: PortalSessionActor;
  /** Resolves once the session has ended: left (shutdown) or failed for good. */
  readonly done: Promise<PortalOutcome>;
  private finish!: (o: PortalOutcome) => void;
  private ended = false;

  constructor(opts: PortalRuntimeOptions) {
    this.done = new Promise((resolve) => {
      this.finish = resolve;
    });
    this.session = createPortalSession({
      url: opts.url,
      userAgent: opts.userAgent,
      clock: opts.clock,
      log: opts.log,
      deliver: (message, skipped) => this.control.handle(message, skipped),
      ...(opts.open ? { open: opts.open } : {}),
      ...(opts.jitter ? { jitter: opts.jitter } : {}),
      ...(opts.inspect ? { inspect: opts.inspect } : {}),
    });
    this.control = new PortalControlPlane({
      gateway: opts.gateway,
      configureTun: opts.configureTun,
      send: (event, payload) => this.session.send({ type: 'portal.send', event, payload }),
      reconnect: () => this.session.send({ type: 'portal.reconnect' }),
      resolve: opts.resolve,
      ...(opts.interfaceReady ? { interfaceReady: opts.interfaceReady } : {}),
      fatal: (reason) =>
        this.end({
          fatal: { message: 'The gateway cannot apply the portal configuration', fields: { reason } },
        }),
      random: opts.random,
      clock: opts.clock,
      log: opts.log,
    });
    this.session.subscribe({
      complete: () => {
        const f: FatalReason | undefined = this.session.getSnapshot().output?.fatal;
        this.end({ fatal: f ? describeFatal(f) : undefined });
      },
      error: (e) =>
        this.end({ fatal: { message: 'The portal session failed', fields: { err: (e as Error).message } } }),
    });
  }

  start(): void {
    this.session.start();
  }

  /** Graceful shutdown: close the WebSocket (close handshake) and end the session. */
  leave(): void {
    if (this.session.getSnapshot().status === 'active') this.session.send({ type: 'portal.leave' });
  }

  /** The portal-session state (for tests and logs). */
  get state(): unknown {
    return this.session.getSnapshot().value;
  }

  private end(o: PortalOutcome): void {
    if (this.ended) return;
    this.ended = true;
    if (this.session.getSnapshot().status === 'active') this.session.stop();
    this.finish(o);
  }
}
