import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Netns } from '../../support/netns.js';
import { rootAvailable } from '../../support/privileges.js';
import { linkExists, waitFor } from './helpers.js';

const HOLDER = fileURLToPath(new URL('./tun-holder.ts', import.meta.url));
const TUN = 'tun-fzt-life';

describe.runIf(rootAvailable('TUN lifetime e2e tests'))('TUN device lifetime', () => {
  let ns: Netns;

  beforeEach(() => {
    ns = Netns.create('life');
  });

  afterEach(() => {
    ns.destroy();
  });

  it.each(['SIGTERM', 'SIGKILL'] as const)(
    'disappears when the process that owns it is killed with %s',
    async (signal) => {
      // `ip netns exec` execs node, so the child's pid is the process that holds the device.
      const child = ns.spawn(process.execPath, ['--import', 'tsx', HOLDER, TUN], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      await waitFor('the child to report ready', () => out.includes('ready'), 30_000);
      expect(linkExists(ns, TUN)).toBe(true);
      expect(ns.ip('-j', 'route', 'show', 'table', 'all')).toContain('100.64.0.0/11');

      child.kill(signal);
      const [code, gotSignal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
      expect(code).toBeNull();
      expect(gotSignal).toBe(signal);
      await waitFor('the interface to disappear', () => !linkExists(ns, TUN));
      // Its routes went with it.
      expect(ns.ip('-j', 'route', 'show', 'table', 'all')).not.toContain('100.64.0.0/11');
    },
  );
});
