import { readFileSync } from 'node:fs';

/** This package's version (from package.json, which sits two levels above both src/cli and dist/cli). */
export const GATEWAY_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
