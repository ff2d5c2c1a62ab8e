import { execFileSync } from 'node:child_process';

/**
 * Whether tests that need root (network namespaces, dropping privileges with setpriv) can run.
 * In CI they must: a missing privilege fails loudly there. Locally they skip with a reason.
 */
export function rootAvailable(what: string): boolean {
  const root = process.geteuid?.() === 0;
  if (!root && process.env.CI === 'true') throw new Error(`${what} needs root, and CI must run it`);
  if (!root) console.warn(`skipping ${what}: needs root`);
  return root;
}

/** True when `cmd` is on the PATH. */
export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
