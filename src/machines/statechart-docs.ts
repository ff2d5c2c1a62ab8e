import type { AnyStateMachine } from 'xstate';
import { clientConnectionMachine } from './client-connection.machine.js';
import { dnsResourceNatMachine } from './dns-resource-nat.machine.js';
import { gatewaySupervisorMachine } from './gateway-supervisor.machine.js';
import { nameserverSelectorMachine } from './nameserver-selector.machine.js';
import { portalSessionMachine } from './portal-session.machine.js';
import { relayAllocationMachine } from './relay-allocation.machine.js';

/**
 * Renders `docs/statecharts/` from the machine definitions: per machine a Mermaid
 * `stateDiagram-v2` (which GitHub renders) and a table of every transition. The "why" paragraph
 * is the machine's own `description`. A unit test fails when the committed files differ from
 * what this produces; `npm run statecharts` rewrites them.
 */
export const DOCUMENTED_MACHINES: readonly {
  readonly file: string;
  readonly source: string;
  readonly machine: AnyStateMachine;
}[] = [
  {
    file: 'client-connection.md',
    source: 'src/machines/client-connection.machine.ts',
    machine: clientConnectionMachine,
  },
  {
    file: 'relay-allocation.md',
    source: 'src/machines/relay-allocation.machine.ts',
    machine: relayAllocationMachine,
  },
  {
    file: 'gateway-supervisor.md',
    source: 'src/machines/gateway-supervisor.machine.ts',
    machine: gatewaySupervisorMachine,
  },
  {
    file: 'nameserver-selector.md',
    source: 'src/machines/nameserver-selector.machine.ts',
    machine: nameserverSelectorMachine,
  },
  {
    file: 'dns-resource-nat.md',
    source: 'src/machines/dns-resource-nat.machine.ts',
    machine: dnsResourceNatMachine,
  },
  {
    file: 'portal-session.md',
    source: 'src/machines/portal-session.machine.ts',
    machine: portalSessionMachine,
  },
];

// Minimal structural views of XState's state nodes and transitions (its internals are untyped here).
interface NodeView {
  readonly id: string;
  readonly key: string;
  readonly type: string;
  readonly description?: string;
  readonly initial?: { target: NodeView[] } | undefined;
  readonly states: Record<string, NodeView>;
  readonly entry: unknown[];
  readonly exit: unknown[];
  readonly invoke: { readonly id: string; readonly src: unknown }[];
  readonly transitions: Map<string, TransitionView[]>;
  readonly always?: TransitionView[];
}
interface TransitionView {
  readonly target?: NodeView[];
  readonly guard?: unknown;
  readonly actions: unknown[];
}

export interface TransitionRow {
  source: string;
  event: string;
  guard: string;
  target: string;
  actions: string;
}

function name(x: unknown): string {
  if (typeof x === 'string') return x;
  if (x && (typeof x === 'object' || typeof x === 'function') && 'type' in x) {
    const t = String((x as { type: unknown }).type);
    // Built-in action creators: `assign` etc. read better without the namespace.
    return t.startsWith('xstate.') ? t.slice('xstate.'.length) : t;
  }
  return 'inline';
}

/** Delayed events read as `after(<delay>)` instead of XState's internal event name. */
function eventLabel(event: string): string {
  const m = /^xstate\.after\.([^.]+)\./.exec(event);
  return m ? `after(${m[1]})` : event;
}

/** Every state below `n`, depth first, in definition order. */
function descendants(n: NodeView): NodeView[] {
  return Object.values(n.states).flatMap((c) => [c, ...descendants(c)]);
}

function relative(root: NodeView, n: NodeView): string {
  return n === root ? '(machine)' : n.id.slice(root.id.length + 1);
}

/** Every transition of the machine, eventless ones as `(always)`, in definition order. */
export function transitionsOf(machine: AnyStateMachine): TransitionRow[] {
  const root = machine.root as unknown as NodeView;
  const rows: TransitionRow[] = [];
  const visit = (n: NodeView) => {
    const add = (event: string, t: TransitionView) =>
      rows.push({
        source: relative(root, n),
        event,
        guard: t.guard === undefined ? '' : name(t.guard),
        target:
          t.target && t.target.length > 0 ? t.target.map((x) => relative(root, x)).join(', ') : '(stays)',
        actions: t.actions.map(name).join(', '),
      });
    for (const [event, ts] of n.transitions) for (const t of ts) add(eventLabel(event), t);
    for (const t of n.always ?? []) add('(always)', t);
    for (const child of Object.values(n.states)) visit(child);
  };
  visit(root);
  return rows;
}

function mermaidId(root: NodeView, n: NodeView): string {
  return relative(root, n).replace(/[^A-Za-z0-9_]/g, '_');
}

function mermaid(machine: AnyStateMachine): string {
  const root = machine.root as unknown as NodeView;
  const lines = ['stateDiagram-v2'];
  const emit = (n: NodeView, indent: string) => {
    const initial = n.initial?.target[0];
    if (initial) lines.push(`${indent}[*] --> ${mermaidId(root, initial)}`);
    for (const child of Object.values(n.states)) {
      const id = mermaidId(root, child);
      if (Object.keys(child.states).length > 0) {
        lines.push(`${indent}state ${id} {`);
        emit(child, `${indent}  `);
        lines.push(`${indent}}`);
      }
      if (child.type === 'final') lines.push(`${indent}${id} --> [*]`);
    }
  };
  emit(root, '  ');
  const seen = new Set<string>();
  for (const r of transitionsOf(machine)) {
    if (r.target === '(stays)') continue;
    // A machine-wide transition is drawn from every state that can take it: not from final
    // states, nor from transient ones that leave at once (`always`).
    const sources =
      r.source === '(machine)'
        ? Object.values(root.states)
            .filter((s) => s.type !== 'final' && !(s.always && s.always.length > 0))
            .map((s) => relative(root, s))
        : [r.source];
    for (const src of sources) {
      for (const tgt of r.target.split(', ')) {
        if (r.source === '(machine)' && src === tgt) continue;
        const line = `  ${src.replace(/[^A-Za-z0-9_]/g, '_')} --> ${tgt.replace(/[^A-Za-z0-9_]/g, '_')} : ${r.event}${r.guard ? ` [${r.guard}]` : ''}`;
        if (!seen.has(line)) {
          seen.add(line);
          lines.push(line);
        }
      }
    }
  }
  return lines.join('\n');
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|') || ' ';
}

/** The markdown page of one machine. */
export function renderMachineDoc(machine: AnyStateMachine, source: string): string {
  const root = machine.root as unknown as NodeView;
  const states = descendants(root);
  // `raise`/`cancel` on entry/exit are how XState schedules `after` transitions: noise here.
  const own = (actions: unknown[]) =>
    cell(
      actions
        .map(name)
        .filter((a) => a !== 'raise' && a !== 'cancel')
        .join(', '),
    );
  const invokes = (n: NodeView) => n.invoke.map((i) => (typeof i.src === 'string' ? i.src : i.id)).join(', ');
  const out = [
    `# \`${root.id}\` statechart`,
    '',
    `<!-- Generated from ${source} by \`npm run statecharts\`; a test fails when this file is stale. -->`,
    '',
    root.description ?? '',
    '',
    '```mermaid',
    mermaid(machine),
    '```',
    '',
    '## States',
    '',
    '| State | Kind | Entry actions | Exit actions | Invokes |',
    '|---|---|---|---|---|',
    ...states.map(
      (s) => `| ${relative(root, s)} | ${s.type} | ${own(s.entry)} | ${own(s.exit)} | ${cell(invokes(s))} |`,
    ),
    '',
    '## Transitions',
    '',
    'Transitions on `(machine)` apply in every state that is neither final nor left at once (`always`).',
    '',
    '| Source | Event | Guard | Target | Actions |',
    '|---|---|---|---|---|',
    ...transitionsOf(machine).map(
      (r) => `| ${r.source} | \`${r.event}\` | ${cell(r.guard)} | ${r.target} | ${cell(r.actions)} |`,
    ),
    '',
  ];
  if (root.entry.length > 0)
    out.splice(
      out.indexOf('## Transitions'),
      0,
      `Machine entry actions: ${root.entry.map(name).join(', ')}.`,
      '',
    );
  return out.join('\n');
}

/** Every file of `docs/statecharts/`, by name. */
export function renderStatechartDocs(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const m of DOCUMENTED_MACHINES) files[m.file] = renderMachineDoc(m.machine, m.source);
  files['README.md'] = [
    '# Statecharts',
    '',
    'Generated from the machine definitions in `src/machines` by `npm run statecharts`.',
    '',
    ...DOCUMENTED_MACHINES.map(
      (m) => `- [\`${(m.machine.root as unknown as NodeView).id}\`](${m.file}) — \`${m.source}\``,
    ),
    '',
  ].join('\n');
  return files;
}
