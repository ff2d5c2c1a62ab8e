import { type ChildProcess, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/**
 * Network namespaces for e2e tests. Every namespace a test creates carries a unique prefix and
 * is removed by `destroy()` (call it in `afterAll`/`afterEach`), killing whatever still runs in it.
 * Test traffic never leaves these namespaces.
 */
export class Netns {
  readonly name: string;
  private readonly children: ChildProcess[] = [];

  private constructor(name: string) {
    this.name = name;
  }

  /** Creates a namespace with loopback up, named `<prefix>-<tag>-<random>` (tests `fzt`, benchmarks `fzb`). */
  static create(tag: string, prefix = 'fzt'): Netns {
    const name = `${prefix}-${tag}-${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', name]);
    const ns = new Netns(name);
    ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** Runs `ip <args>` inside the namespace. */
  ip(...args: string[]): string {
    return execFileSync('ip', ['-n', this.name, ...args], { encoding: 'utf8' });
  }

  /** Runs a command inside the namespace and returns its stdout. */
  exec(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
    return execFileSync('ip', ['netns', 'exec', this.name, cmd, ...args], {
      encoding: 'utf8',
      input: opts.input,
      timeout: opts.timeoutMs ?? 60_000,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }

  /** Starts a long-running command inside the namespace; it is killed by `destroy()`. */
  spawn(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, cmd, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...opts,
    });
    this.children.push(child);
    return child;
  }

  sysctl(key: string, value: string): void {
    this.exec('sysctl', ['-qw', `${key}=${value}`]);
  }

  /** Kills the children, then every remaining process in the namespace, then deletes it. */
  destroy(): void {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    try {
      const pids = execFileSync('ip', ['netns', 'pids', this.name], { encoding: 'utf8' })
        .split(/\s+/)
        .filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
    } catch {
      // namespace already gone
    }
    try {
      execFileSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
    } catch {
      // already deleted
    }
  }
}

/**
 * Connects two namespaces with a veth pair and gives each end an address (CIDR notation,
 * e.g. `10.99.0.1/24`). Returns the interface names.
 */
export function vethPair(
  a: Netns,
  aAddrs: string[],
  b: Netns,
  bAddrs: string[],
  mtu = 1500,
): [string, string] {
  const id = randomBytes(3).toString('hex');
  const ifA = `va${id}`;
  const ifB = `vb${id}`;
  execFileSync('ip', [
    'link',
    'add',
    ifA,
    'netns',
    a.name,
    'type',
    'veth',
    'peer',
    'name',
    ifB,
    'netns',
    b.name,
  ]);
  for (const [ns, ifname, addrs] of [
    [a, ifA, aAddrs],
    [b, ifB, bAddrs],
  ] as const) {
    for (const addr of addrs)
      ns.ip('addr', 'add', addr, 'dev', ifname, ...(addr.includes(':') ? ['nodad'] : []));
    ns.ip('link', 'set', ifname, 'mtu', String(mtu), 'up');
  }
  return [ifA, ifB];
}

/** Removes namespaces left behind by a crashed earlier run (prefix `fzt-`). */
export function removeStaleNamespaces(): void {
  const list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0];
    if (name?.startsWith('fzt-')) {
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // in use or gone
      }
    }
  }
}
