import { TransportCipher } from './crypto.js';
import { ReplayWindow } from './replay-window.js';

/**
 * One set of transport keys from one completed handshake (paper §5.4.6): our and the peer's
 * index for it, a cipher per direction, our send counter and the receive replay window.
 */
export class Session {
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly sendCipher: TransportCipher;
  readonly receiveCipher: TransportCipher;
  readonly replay = new ReplayWindow();
  /** When the handshake completed (monotonic ms). */
  readonly createdAt: number;
  /** True if we sent the initiation of the handshake that created this session. */
  readonly isInitiator: boolean;
  sendCounter = 0;

  constructor(
    keys: { send: Uint8Array; receive: Uint8Array; localIndex: number; remoteIndex: number },
    createdAt: number,
    isInitiator: boolean,
  ) {
    this.localIndex = keys.localIndex;
    this.remoteIndex = keys.remoteIndex;
    this.sendCipher = new TransportCipher(keys.send);
    this.receiveCipher = new TransportCipher(keys.receive);
    this.createdAt = createdAt;
    this.isInitiator = isInitiator;
  }

  wipe(): void {
    this.sendCipher.wipe();
    this.receiveCipher.wipe();
  }
}
