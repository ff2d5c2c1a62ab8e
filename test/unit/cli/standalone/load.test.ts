import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadStandaloneConfig } from '../../../../src/cli/standalone/config.js';
import {
  generatePrivateKey,
  readOrCreatePrivateKeyFile,
} from '../../../../src/cli/standalone/private-key.js';
import { GatewayError } from '../../../../src/errors.js';
import { formatKey, parseKey } from '../../../../src/wire/keys.js';
import { publicKeyOf } from '../../../../src/wire/wireguard/crypto.js';

const dir = () => mkdtempSync(join(tmpdir(), 'fz-standalone-'));

function writePolicy(base: string, policy: unknown, name = 'gateway.json'): string {
  const path = join(base, name);
  writeFileSync(path, typeof policy === 'string' ? policy : JSON.stringify(policy, null, 2));
  return path;
}

const minimal = { interface: { ipv4: '100.64.0.1' } };

async function configError(p: Promise<unknown>): Promise<GatewayError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(GatewayError);
  expect((e as GatewayError).code).toBe('GW_ERR_CONFIG');
  return e as GatewayError;
}

describe('loading a standalone policy file', () => {
  it('loads a file with an inline key', async () => {
    const key = generatePrivateKey();
    const path = writePolicy(dir(), { ...minimal, privateKey: formatKey(key) });
    const config = await loadStandaloneConfig(path, { defaultKeyFile: join(dir(), 'never.key') });
    expect(config).toMatchObject({
      path,
      listenPort: 51820,
      privateKeySource: 'inline',
      privateKeyFile: undefined,
    });
    expect(config.privateKey).toEqual(key);
  });

  it('generates the default key file with mode 0600 in a new 0700 directory, then reuses it', async () => {
    const base = dir();
    const keyFile = join(base, 'state', 'firezone', 'gateway.key');
    const path = writePolicy(base, minimal);
    const first = await loadStandaloneConfig(path, { defaultKeyFile: keyFile });
    expect(first.privateKeySource).toBe('generated');
    expect(first.privateKeyFile).toBe(keyFile);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(keyFile, '..')).mode & 0o777).toBe(0o700 & ~process.umask());
    expect(readFileSync(keyFile, 'utf8')).toBe(`${formatKey(first.privateKey)}\n`);
    expect(readdirSync(join(keyFile, '..'))).toEqual(['gateway.key']);

    const second = await loadStandaloneConfig(path, { defaultKeyFile: keyFile });
    expect(second.privateKeySource).toBe('file');
    expect(second.privateKey).toEqual(first.privateKey);
  });

  it('generates keys clamped as RFC 7748 requires', () => {
    for (let i = 0; i < 32; i++) {
      const k = generatePrivateKey();
      expect(k).toHaveLength(32);
      expect(k[0]! & 7).toBe(0);
      expect(k[31]! & 0xc0).toBe(0x40);
    }
  });

  it('reads a key file named by privateKeyFile, relative to the policy file, surrounding whitespace ignored', async () => {
    const base = dir();
    const key = generatePrivateKey();
    mkdirSync(join(base, 'keys'));
    writeFileSync(join(base, 'keys', 'gw.key'), `  ${formatKey(key)}\r\n\n`, { mode: 0o600 });
    const path = writePolicy(base, { ...minimal, privateKeyFile: 'keys/gw.key' });
    const config = await loadStandaloneConfig(path);
    expect(config).toMatchObject({ privateKeySource: 'file', privateKeyFile: join(base, 'keys', 'gw.key') });
    expect(config.privateKey).toEqual(key);
  });

  it('creates a missing privateKeyFile as well', async () => {
    const base = dir();
    const path = writePolicy(base, { ...minimal, privateKeyFile: join(base, 'new.key') });
    const config = await loadStandaloneConfig(path);
    expect(config.privateKeySource).toBe('generated');
    expect(parseKey(readFileSync(join(base, 'new.key'), 'utf8').trim())).toEqual({
      ok: true,
      value: config.privateKey,
    });
  });

  it.each([
    ['0640', 0o640],
    ['0604', 0o604],
    ['0660', 0o660],
    ['0610', 0o610],
  ])('refuses a key file with mode %s and says to chmod 600', async (_text, mode) => {
    const base = dir();
    const keyFile = join(base, 'gateway.key');
    writeFileSync(keyFile, formatKey(generatePrivateKey()));
    chmodSync(keyFile, mode);
    const e = await configError(
      loadStandaloneConfig(writePolicy(base, minimal), { defaultKeyFile: keyFile }),
    );
    expect(e.message).toBe(
      `private key file ${keyFile} is accessible by group or others (mode ${mode.toString(8).padStart(4, '0')}): run chmod 600 ${keyFile}`,
    );
  });

  it.each([
    ['garbage', 'not a key at all'],
    ['an empty file', ''],
    ['a key of 31 bytes', formatKey(new Uint8Array(32).fill(7)).slice(0, 40)],
    ['two keys', `${formatKey(generatePrivateKey())}\n${formatKey(generatePrivateKey())}\n`],
  ])('refuses a key file holding %s without showing it', async (_what, content) => {
    const base = dir();
    const keyFile = join(base, 'gateway.key');
    writeFileSync(keyFile, content, { mode: 0o600 });
    const e = await configError(
      loadStandaloneConfig(writePolicy(base, minimal), { defaultKeyFile: keyFile }),
    );
    expect(e.message).toMatch(
      new RegExp(
        `^private key file ${keyFile} does not hold a WireGuard private key \\(.*\\): fix the file, or move it away`,
      ),
    );
    if (content.trim() !== '') expect(e.message).not.toContain(content.trim().slice(0, 10));
    expect(readFileSync(keyFile, 'utf8')).toBe(content);
  });

  it('refuses a key file that is a directory', async () => {
    const base = dir();
    mkdirSync(join(base, 'gateway.key'), { mode: 0o700 });
    const e = await configError(
      loadStandaloneConfig(writePolicy(base, minimal), { defaultKeyFile: join(base, 'gateway.key') }),
    );
    expect(e.message).toMatch(/is not a regular file/);
  });

  it('explains how to fix a key file location that cannot be created', async () => {
    const base = dir();
    writeFileSync(join(base, 'file'), 'x');
    const keyFile = join(base, 'file', 'gateway.key');
    const e = await configError(
      loadStandaloneConfig(writePolicy(base, minimal), { defaultKeyFile: keyFile }),
    );
    expect(e.message).toMatch(
      new RegExp(
        `^cannot create private key file ${keyFile} \\(.*\\): give the gateway write access to ${base}/file`,
      ),
    );
  });

  it('gives two gateways creating the key file at once the same key', async () => {
    const keyFile = join(dir(), 'gateway.key');
    const results = await Promise.all([1, 2, 3, 4].map(() => readOrCreatePrivateKeyFile(keyFile)));
    const onDisk = parseKey(readFileSync(keyFile, 'utf8').trim());
    for (const r of results) expect({ ok: true, value: r.key }).toEqual(onDisk);
    expect(results.filter((r) => r.source === 'generated').length).toBeLessThanOrEqual(1);
    expect(readdirSync(join(keyFile, '..'))).toEqual(['gateway.key']);
  });

  it("refuses a peer with the gateway's own public key from the key file", async () => {
    const base = dir();
    const key = generatePrivateKey();
    writeFileSync(join(base, 'gateway.key'), formatKey(key), { mode: 0o600 });
    const path = writePolicy(base, {
      ...minimal,
      peers: [{ name: 'loop', publicKey: formatKey(publicKeyOf(key)), ipv4: '100.64.0.2' }],
    });
    const e = await configError(loadStandaloneConfig(path, { defaultKeyFile: join(base, 'gateway.key') }));
    expect(e.message).toBe(
      `${path}: peers[0].publicKey: is the gateway's own public key: give the peer's public key (\`wg pubkey\` of its private key)`,
    );
  });

  it('reports a missing file', async () => {
    const path = join(dir(), 'nope.json');
    const e = await configError(loadStandaloneConfig(path));
    expect(e.message).toMatch(new RegExp(`^cannot read config file ${path}: ENOENT`));
  });

  it('reports invalid JSON by line and column without quoting the file', async () => {
    const base = dir();
    const key = formatKey(generatePrivateKey());
    const path = writePolicy(base, `{\n  "privateKey": "${key}"\n  "interface": {}\n}\n`);
    const e = await configError(loadStandaloneConfig(path));
    expect(e.message).toMatch(new RegExp(`^${path}: not valid JSON: .* at line 3, column 3$`));
    const path2 = writePolicy(base, `{"privateKey": ${key}}`, 'b.json');
    const e2 = await configError(loadStandaloneConfig(path2));
    expect(e2.message).toMatch(new RegExp(`^${path2}: not valid JSON: `));
    for (const m of [e.message, e2.message]) expect(m).not.toContain(key.slice(0, 8));
  });

  it('accepts a file that starts with a UTF-8 byte order mark', async () => {
    const base = dir();
    const path = writePolicy(
      base,
      `\uFEFF${JSON.stringify({ ...minimal, privateKey: formatKey(generatePrivateKey()) })}`,
    );
    expect((await loadStandaloneConfig(path)).privateKeySource).toBe('inline');
  });

  it('reports every validation problem of the file', async () => {
    const path = writePolicy(dir(), { listenPort: 0, interface: {}, peers: 3 });
    const e = await configError(loadStandaloneConfig(path, { defaultKeyFile: join(dir(), 'k') }));
    expect(e.message.split('\n')).toEqual([
      `${path}: listenPort: 0 is not an integer from 1 to 65535`,
      `${path}: interface: has neither ipv4 nor ipv6: give the gateway at least one`,
      `${path}: peers: 3 is not a list of peers`,
    ]);
  });
});
