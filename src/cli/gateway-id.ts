import { createHash, randomUUID } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { GatewayError } from '../errors.js';

export const DEFAULT_GATEWAY_ID_PATH = '/var/lib/firezone/gateway_id';

export interface GatewayIdResult {
  readonly id: string;
  /** Where it came from, for the startup log. */
  readonly source: 'option' | 'file' | 'created';
}

/**
 * The gateway's identity towards the portal (`external_id`), per the recommendation of
 * `spec/portal-protocol.md` §6.3:
 *
 * 1. `--firezone-id` / `FIREZONE_ID` when non-empty, verbatim;
 * 2. else the ID file: JSON `{"id": "..."}` gives `id`; any other text (older installations wrote
 *    a bare UUID) is used trimmed. Unlike the reference we parse the JSON the reference itself
 *    writes, so the identity (and with it the portal row, tunnel IPs and authorizations) is the
 *    same on every start;
 * 3. else (missing or empty file) create it: `{"id": hex(sha256(uuidv4))}`, directory mode 0770,
 *    file mode 0640, written to a temporary file and renamed into place.
 */
export async function resolveGatewayId(
  fromOption: string | undefined,
  path: string = DEFAULT_GATEWAY_ID_PATH,
): Promise<GatewayIdResult> {
  if (fromOption !== undefined && fromOption !== '') return { id: fromOption, source: 'option' };
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw idError(path, e);
  }
  if (text !== undefined && text.trim() !== '') return { id: parseIdFile(text, path), source: 'file' };
  const id = createHash('sha256').update(randomUUID()).digest('hex');
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o770 });
    const tmp = `${path}.${process.pid}.tmp`;
    const fh = await open(tmp, 'wx', 0o640);
    try {
      await fh.writeFile(JSON.stringify({ id }));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await chmod(tmp, 0o640);
    try {
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  } catch (e) {
    throw idError(path, e);
  }
  return { id, source: 'created' };
}

function parseIdFile(text: string, path: string): string {
  const trimmed = text.trim();
  if (!trimmed.startsWith('{')) return trimmed;
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch (e) {
    throw new GatewayError(
      'GW_ERR_GATEWAY_ID',
      `gateway ID file ${path} is neither JSON nor a plain ID: ${(e as Error).message}`,
    );
  }
  const id = (parsed as { id?: unknown }).id;
  if (typeof id !== 'string' || id.trim() === '') {
    throw new GatewayError(
      'GW_ERR_GATEWAY_ID',
      `gateway ID file ${path} holds JSON without a non-empty string "id"`,
    );
  }
  return id.trim();
}

function idError(path: string, cause: unknown): GatewayError {
  return new GatewayError(
    'GW_ERR_GATEWAY_ID',
    `couldn't read FIREZONE_ID or write it to ${path} (${(cause as Error).message}): set FIREZONE_ID or give the gateway read/write access to ${dirname(path)}`,
    { cause },
  );
}
