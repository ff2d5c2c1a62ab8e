import { readFile, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';

/**
 * Socket buffer ceilings the tunnel sockets ask for (`spec/gateway-dataplane.md` §10.3):
 * receive 128 MiB, send 16 MiB.
 */
export const RMEM_MAX_BYTES = 134_217_728;
export const WMEM_MAX_BYTES = 16_777_216;

/**
 * Raises `net.core.rmem_max` / `wmem_max` unless they are already at least as high (the reference
 * writes unconditionally, which can lower a host's tuned value). Failures, e.g. a read-only
 * /proc/sys in a container, are logged and otherwise ignored, as in the reference.
 */
export async function raiseSocketBufferLimits(log: Logger, procSys = '/proc/sys'): Promise<void> {
  for (const [name, want] of [
    ['rmem_max', RMEM_MAX_BYTES],
    ['wmem_max', WMEM_MAX_BYTES],
  ] as const) {
    const path = `${procSys}/net/core/${name}`;
    try {
      const current = Number((await readFile(path, 'utf8')).trim());
      if (Number.isFinite(current) && current >= want) {
        log.debug({ sysctl: `net.core.${name}`, current }, 'Kernel socket buffer limit already high enough');
        continue;
      }
      await writeFile(path, String(want));
      log.info({ sysctl: `net.core.${name}`, from: current, to: want }, 'Raised kernel socket buffer limit');
    } catch (e) {
      log.info(
        { sysctl: `net.core.${name}`, err: (e as Error).message },
        'Failed to raise kernel socket buffer limit',
      );
    }
  }
}
