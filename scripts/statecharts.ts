/**
 * Writes docs/statecharts/ from the machine definitions (`npm run statecharts`).
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderStatechartDocs } from '../src/machines/statechart-docs.js';

const dir = fileURLToPath(new URL('../docs/statecharts/', import.meta.url));
mkdirSync(dir, { recursive: true });
const files = renderStatechartDocs();
for (const f of readdirSync(dir)) if (!(f in files)) rmSync(join(dir, f));
for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
process.stdout.write(`statecharts: wrote ${Object.keys(files).length} files to docs/statecharts/\n`);
