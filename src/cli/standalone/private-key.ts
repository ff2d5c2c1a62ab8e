import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { GatewayError } from '../../errors.js';
import { formatKey, parseKey } from '../../wire/keys.js';
import { clampPrivateKey } from '../../wire/wireguard/crypto.js';

/** Where standalone mode keeps its private key when the policy file names none. */
export const DEFAULT_PRIVATE_KEY_FILE = '/var/lib/firezone/gateway.key';

/** Where the gateway's private key comes from, as the policy file says (before any file is read). */
export type PrivateKeySpec =
  | { readonly source: 'inline'; readonly key: Uint8Array }
  | { readonly source: 'file'; readonly file: string };

export interface ResolvedPrivateKey {
  readonly key: Uint8Array;
  /** `generated`: the file did not exist and was created with a new key. */
  readonly source: 'inline' | 'file' | 'generated';
  readonly file: string | undefined;
}

/** A new X25519 private key: 32 random bytes, clamped (RFC 7748 §5), as `wg genkey` makes. */
export function generatePrivateKey(): Uint8Array {
  return clampPrivateKey(randomBytes(32));
}

/** The inline key as given, or the key file read (and created with a new key if it does not exist). */
export async function resolvePrivateKey(spec: PrivateKeySpec): Promise<ResolvedPrivateKey> {
  if (spec.source === 'inline') return { key: spec.key, source: 'inline', file: undefined };
  return readOrCreatePrivateKeyFile(spec.file);
}

/**
 * Reads a private key file: one key in the form `wg genkey` prints, surrounding whitespace
 * ignored. Refuses a file that group or others may access at all (the rule OpenSSH applies to
 * private keys), or that holds anything else: guessing would change the gateway's identity.
 *
 * A missing file is created with a new key: mode 0600, written to a temporary file and linked
 * into place, so a crash never leaves a half-written key and two gateways starting at once end
 * up with the same key. A missing parent directory is created with mode 0700.
 */
export async function readOrCreatePrivateKeyFile(
  file: string,
): Promise<{ readonly key: Uint8Array; readonly source: 'file' | 'generated'; readonly file: string }> {
  const existing = await readPrivateKeyFile(file);
  if (existing !== undefined) return { key: existing, source: 'file', file };
  const key = generatePrivateKey();
  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${formatKey(key)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    let placed: boolean;
    try {
      await chmod(tmp, 0o600);
      placed = await linkNoClobber(tmp, file);
    } finally {
      // After a link the key lives on under `file`; after a rename `tmp` is already gone.
      await unlink(tmp).catch(() => undefined);
    }
    // Another process created the file since we looked: its key wins.
    if (!placed) return await readOrCreatePrivateKeyFile(file);
  } catch (e) {
    if (e instanceof GatewayError) throw e;
    throw new GatewayError(
      'GW_ERR_CONFIG',
      `cannot create private key file ${file} (${(e as Error).message}): give the gateway write access to ${dirname(file)}, or set privateKey or privateKeyFile in the policy file`,
      { cause: e },
    );
  }
  return { key, source: 'generated', file };
}

/** The key in `file`, or `undefined` when the file does not exist. */
async function readPrivateKeyFile(file: string): Promise<Uint8Array | undefined> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    // ENOTDIR: a parent is a file; creating the key then fails with the better explanation.
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new GatewayError(
      'GW_ERR_CONFIG',
      `cannot read private key file ${file} (${(e as Error).message}): give the gateway read access to it`,
      { cause: e },
    );
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new GatewayError(
        'GW_ERR_CONFIG',
        `private key file ${file} is not a regular file: point privateKeyFile at a file`,
      );
    }
    if ((st.mode & 0o077) !== 0) {
      throw new GatewayError(
        'GW_ERR_CONFIG',
        `private key file ${file} is accessible by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): run chmod 600 ${file}`,
      );
    }
    const text = await fh.readFile('utf8');
    const parsed = parseKey(text.trim());
    if (!parsed.ok) {
      throw new GatewayError(
        'GW_ERR_CONFIG',
        `private key file ${file} does not hold a WireGuard private key (${parsed.error.message}; one key as \`wg genkey\` prints it): fix the file, or move it away to have a new key generated (peers then need the new public key)`,
      );
    }
    return parsed.value;
  } catch (e) {
    if (e instanceof GatewayError) throw e;
    throw new GatewayError(
      'GW_ERR_CONFIG',
      `cannot read private key file ${file} (${(e as Error).message}): give the gateway read access to it`,
      { cause: e },
    );
  } finally {
    await fh.close();
  }
}

/**
 * Puts `tmp` at `file` unless `file` exists (false then). A hard link is the atomic
 * "create if absent" for a complete file; filesystems without hard links fall back to rename.
 */
async function linkNoClobber(tmp: string, file: string): Promise<boolean> {
  try {
    await link(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
  }
  await rename(tmp, file);
  return true;
}
