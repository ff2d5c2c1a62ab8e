import { GatewayError } from '../errors.js';
import { checkRange } from './native-memory.js';
import {
  createPacketBatch,
  DEFAULT_BATCH_PACKETS,
  PACKET_HEADROOM_BYTES,
  type PacketBatch,
  TUN_READ_MAX_BYTES,
} from './packet-batch.js';
import {
  DEFAULT_TUN_MTU_BYTES,
  DEFAULT_TUN_NAME,
  type TunConfig,
  type TunDevice,
  type TunStats,
} from './tun.js';

/**
 * The in-memory twin of the TUN device (wireguard-go's `tuntest`), for router tests and
 * whole-gateway simulations: same interface and batch layout, no kernel, no threads.
 *
 * `inject()` stands for the kernel routing a packet into the device; nothing is delivered until
 * `deliver()`, which hands queued packets to `onPackets` in batches exactly as the real device
 * would (offset `PACKET_HEADROOM_BYTES`, reused batch). That keeps simulations deterministic.
 * Written packets are copied into `written`. `configure()` records each configuration.
 */
export class MemoryTun implements TunDevice {
  readonly name: string;
  readonly ifindex = 1;
  readonly mtu: number;
  readonly stats: TunStats = {
    packetsRead: 0,
    packetsWritten: 0,
    writeDrops: 0,
    writeErrors: 0,
    readErrors: 0,
    wakeups: 0,
  };
  /** Every configuration applied, in order. */
  readonly configurations: TunConfig[] = [];
  /** Copies of the packets written to the device, in order. */
  readonly written: Uint8Array[] = [];
  private readonly pending: Uint8Array[] = [];
  private readonly batch: PacketBatch;
  private onPackets: ((batch: PacketBatch) => void) | undefined;
  private closed = false;
  private delivering = false;

  constructor(options: { name?: string; mtu?: number; batchSize?: number } = {}) {
    this.name = options.name ?? DEFAULT_TUN_NAME;
    this.mtu = options.mtu ?? DEFAULT_TUN_MTU_BYTES;
    this.batch = createPacketBatch(options.batchSize ?? DEFAULT_BATCH_PACKETS);
  }

  configure(cfg: TunConfig): Promise<void> {
    if (this.closed)
      return Promise.reject(new GatewayError('GW_ERR_NETLINK', `TUN device ${this.name} is closed`));
    this.configurations.push(cfg);
    return Promise.resolve();
  }

  start(onPackets: (batch: PacketBatch) => void): void {
    if (this.closed) throw new GatewayError('GW_ERR_TUN_IO', `TUN device ${this.name} is closed`);
    if (this.onPackets) throw new GatewayError('GW_ERR_TUN_IO', `TUN device ${this.name} is already started`);
    this.onPackets = onPackets;
  }

  /** Queues a copy of `packet` as if the kernel had routed it into the device. */
  inject(packet: Uint8Array): void {
    if (packet.length > TUN_READ_MAX_BYTES)
      throw new RangeError(`a ${packet.length}-byte packet exceeds a TUN read`);
    this.pending.push(packet.slice());
  }

  /** Like the real device: what is queued, now, unless a batch is being handled. */
  readNow(): number {
    return this.delivering ? 0 : this.deliver();
  }

  /** Delivers queued packets in batches; returns how many. Does nothing before `start()`. */
  deliver(): number {
    const onPackets = this.onPackets;
    if (!onPackets || this.closed || this.delivering) return 0;
    this.delivering = true;
    try {
      return this.deliverAll(onPackets);
    } finally {
      this.delivering = false;
    }
  }

  private deliverAll(onPackets: (batch: PacketBatch) => void): number {
    let delivered = 0;
    while (this.pending.length > 0) {
      const batch = this.batch;
      const n = Math.min(batch.capacity, this.pending.length);
      for (let i = 0; i < n; i++) {
        const p = this.pending.shift()!;
        batch.bufs[i]!.set(p, PACKET_HEADROOM_BYTES);
        batch.offsets[i] = PACKET_HEADROOM_BYTES;
        batch.lengths[i] = p.length;
      }
      batch.count = n;
      this.stats.wakeups++;
      this.stats.packetsRead += n;
      delivered += n;
      onPackets(batch);
    }
    return delivered;
  }

  write(buf: Uint8Array, off: number, len: number): boolean {
    checkRange(buf, off, len);
    if (this.closed) {
      this.stats.writeErrors++;
      return false;
    }
    this.written.push(buf.slice(off, off + len));
    this.stats.packetsWritten++;
    return true;
  }

  writeBatch(batch: PacketBatch): number {
    let n = 0;
    for (let i = 0; i < batch.count; i++)
      if (this.write(batch.bufs[i]!, batch.offsets[i]!, batch.lengths[i]!)) n++;
    return n;
  }

  close(): Promise<void> {
    this.closed = true;
    this.pending.length = 0;
    return Promise.resolve();
  }
}
