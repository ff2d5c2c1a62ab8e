import { hmac } from '@noble/hashes/hmac.js';
import { sha1 } from '@noble/hashes/legacy.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import {
  base32LowerNoPad,
  coturnCredentials,
  deriveIceCredentials,
  derivePresharedKey,
  RefSigner,
} from '../../../../src/dev/portal/credentials.js';
import { renderRelays } from '../../../../src/dev/portal/payloads.js';

/** Independent HMAC-SHA1 (noble, not node:crypto) in coturn's REST format. */
function coturnPassword(secret: string, username: string): string {
  return Buffer.from(hmac(sha1, utf8ToBytes(secret), utf8ToBytes(username))).toString('base64');
}

describe('coturn REST credentials', () => {
  it('uses "<expires_at>:<id>" as username and base64(HMAC-SHA1(secret, username)) as password', () => {
    const id = '2f6e3c1a-7d4b-4e8f-9a0b-1c2d3e4f5a6b';
    const c = coturnCredentials('coturn-secret', id, 1_766_444_400);
    expect(c.username).toBe(`1766444400:${id}`);
    expect(c.password).toBe(coturnPassword('coturn-secret', c.username));
    // Computed by hand (Python hmac/hashlib) for the same inputs.
    expect(c.password).toBe('Rb5rkRoAEuxaVwJfUxPj5atuy/k=');
  });

  it('renders one entry per address family, IPv4 first, same id and credentials, valid 90 days', () => {
    const relays = renderRelays(
      [
        { id: 'r1', addrs: ['203.0.113.7:3478', '[2001:db8::7]:3478'], secret: 's1' },
        { id: 'r2', addrs: ['[2001:db8::9]:3478'], secret: 's2' },
      ],
      'gw',
      1_758_000_000_999,
    );
    const exp = 1_758_000_000 + 90 * 86_400;
    expect(relays).toEqual([
      {
        id: 'r1',
        type: 'turn',
        addr: '203.0.113.7:3478',
        username: `${exp}:gw`,
        password: coturnPassword('s1', `${exp}:gw`),
        expires_at: exp,
      },
      {
        id: 'r1',
        type: 'turn',
        addr: '[2001:db8::7]:3478',
        username: `${exp}:gw`,
        password: coturnPassword('s1', `${exp}:gw`),
        expires_at: exp,
      },
      {
        id: 'r2',
        type: 'turn',
        addr: '[2001:db8::9]:3478',
        username: `${exp}:gw`,
        password: coturnPassword('s2', `${exp}:gw`),
        expires_at: exp,
      },
    ]);
  });
});

describe('per-pair secrets (§4.7)', () => {
  // Hand-computed with Python's hashlib.pbkdf2_hmac / sha256 / base64.b32encode.
  const pair = {
    clientId: '8e370367-64b2-4e27-83e2-27ce03bcce23',
    clientPublicKey: 'DNSOs6t/0X7cTzLkBz8WyzInZOQD6mQUyU75iHNusI0=',
    gatewayId: '2f6e3c1a-7d4b-4e8f-9a0b-1c2d3e4f5a6b',
    gatewayPublicKey: 'PDpl1LdU69NXNedzvu9lQei1ad+UW6jwcandcvIBqBI=',
  };

  it('derives the PSK with PBKDF2-HMAC-SHA256, one iteration, over both psk bases and the WG_PSK salt', () => {
    const clientBase = Uint8Array.from({ length: 32 }, (_, i) => i);
    const gatewayBase = Uint8Array.from({ length: 32 }, (_, i) => 32 + i);
    expect(derivePresharedKey(pair, clientBase, gatewayBase)).toBe(
      'oRJX3x/m0pqQ37d3ALnw/eS2kRPyNUaAS5b88icYcxM=',
    );
  });

  it('slices the base32 SHA-256 of the pair into client and gateway ufrag and password', () => {
    // h = p2ip2bwsnstftvp72yszf7qcicwomn2pe5t6yzirxulnfp5gfmea
    expect(deriveIceCredentials(pair)).toEqual({
      client: { username: 'p2ip', password: '2bwsnstftvp72yszf7qcic' },
      gateway: { username: 'womn', password: '2pe5t6yzirxulnfp5gfmea' },
    });
  });

  it('encodes base32 as RFC 4648 §10 in lower case without padding', () => {
    const vectors: [string, string][] = [
      ['', ''],
      ['f', 'my'],
      ['fo', 'mzxq'],
      ['foo', 'mzxw6'],
      ['foob', 'mzxw6yq'],
      ['fooba', 'mzxw6ytb'],
      ['foobar', 'mzxw6ytboi'],
    ];
    for (const [input, out] of vectors) expect(base32LowerNoPad(utf8ToBytes(input))).toBe(out);
  });
});

describe('signed refs', () => {
  it('verifies its own refs and refuses tampered ones or those of another key', () => {
    const signer = new RefSigner(new Uint8Array(32).fill(7));
    const ref = signer.sign({ k: 'flow', n: 1 });
    expect(signer.verify(ref)).toEqual({ k: 'flow', n: 1 });
    const [body, mac] = ref.split('.') as [string, string];
    const otherBody = Buffer.from(JSON.stringify({ k: 'flow', n: 2 })).toString('base64url');
    expect(signer.verify(`${otherBody}.${mac}`)).toBeUndefined();
    expect(signer.verify(`${body}.${mac.slice(1)}`)).toBeUndefined();
    expect(signer.verify(body)).toBeUndefined();
    expect(new RefSigner(new Uint8Array(32)).verify(ref)).toBeUndefined();
  });
});
