#!/usr/bin/env node
/**
 * The `mcp-warden` command: one binary, several entrypoints. Each command lives in its own file
 * under `cmd/` and exports `run(argv): Promise<number>` (the exit code).
 */
import { errorMessage, isWardenError } from '../pkg/errors.js';
import { holdOptimizingCompiler } from '../pkg/startup.js';
import { VERSION } from '../pkg/version.js';

interface CommandModule {
  run(argv: string[]): Promise<number>;
  /** The command's full help text (every option), printed for `mcp-warden <command> --help`. */
  usage?: string;
}

interface CommandEntry {
  summary: string;
  usage: string;
  load?: () => Promise<CommandModule>;
  /** A long-running server: start-up runs without TurboFan until it is ready (pkg/startup.ts). */
  serves?: boolean;
  /** A shorthand: these arguments go before the user's (`approve X` runs `approvals approve X`). */
  prefix?: string[];
}

const commands: Record<string, CommandEntry> = {
  gateway: {
    summary: 'Run the data path as a plain process, policies read from files',
    usage:
      'gateway --upstream URL --policy PATH [--listen 127.0.0.1:8080] [--admin-listen 127.0.0.1:9090] [--recordings DIR] [--mcp-path /mcp] [--max-body 4MiB] [--public-url URL] [--allowed-hosts H,H] [--allowed-origins O,O] [--no-legacy-sse] [--upstream-timeout D] [--request-timeout D]',
    load: () => import('./gateway.js'),
    serves: true,
  },
  sidecar: {
    summary: 'Run the data path in a pod, policies read from the Kubernetes API (injected by the webhook)',
    usage: 'sidecar [--upstream URL] [--listen :8443] [--admin-listen :9090] [--kubeconfig PATH]',
    load: () => import('./sidecar.js'),
    serves: true,
  },
  webhook: {
    summary: 'Run the admission webhook: inject sidecars, validate MCPPolicy, manage serving TLS',
    usage: 'webhook [--listen :8443] [--admin-listen :9090] [--namespace NS]',
    load: () => import('./webhook.js'),
    serves: true,
  },
  policy: {
    summary:
      'Check policies: `policy lint PATH`, `policy test PATH --identity claims.json --call call.json [--explain]`',
    usage: 'policy lint PATH | policy test PATH --identity FILE --call FILE [--explain]',
    load: () => import('./policy.js'),
  },
  recordings: {
    summary:
      'Session recordings: `verify FILE|DIR`, `replay FILE`, `export DIR [--since] [--principal] [--tool]`',
    usage:
      'recordings verify FILE|DIR | recordings replay FILE | recordings export DIR [--since T] [--principal P] [--tool T]',
    load: () => import('./recordings.js'),
  },
  approvals: {
    summary:
      'Review held calls (also `kubectl mcp-warden ...`): `list`, `show NAME`, `approve NAME`, `deny NAME`',
    usage:
      'approvals list [-n NS | -A] [--phase P] [-o table|wide|json] | approvals show NAME [-n NS] | approvals approve|deny NAME [-n NS] [--reason R]',
    load: () => import('./approvals.js'),
  },
  approve: {
    summary: 'Shorthand for `approvals approve NAME` (`kubectl mcp-warden approve NAME`)',
    usage: 'approve NAME [-n NS] [--reason R]',
    load: () => import('./approvals.js'),
    prefix: ['approve'],
  },
  deny: {
    summary: 'Shorthand for `approvals deny NAME` (`kubectl mcp-warden deny NAME`)',
    usage: 'deny NAME [-n NS] [--reason R]',
    load: () => import('./approvals.js'),
    prefix: ['deny'],
  },
  dev: {
    summary: 'Local development: `dev issuer` (an Entra-shaped OIDC issuer), `dev token` (print a token)',
    usage:
      'dev issuer [--listen 127.0.0.1:8400] [--tenant ID] [--state FILE] | dev token [--issuer-state FILE] [--aud A] [--oid ID] [--groups a,b] [--roles r] [--scopes s] [--app-only] [--v1] [--expires 3600]',
    load: () => import('./dev.js'),
  },
};

export function helpText(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'mcp-warden: least-privilege access control for MCP servers',
    '',
    'Usage: mcp-warden <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `mcp-warden <command> --help` for the options of one command.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${helpText()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const entry = commands[name];
  if (entry === undefined) {
    process.stderr.write(`mcp-warden: unknown command "${name}"\n\n${helpText()}\n`);
    return 2;
  }
  // A shorthand's own command prints its usage (`approve --help`, or `approve` alone).
  if (entry.prefix === undefined && (rest.length === 0 || rest[0] === '--help' || rest[0] === '-h')) {
    // `--help`: the command's full usage when it has one (every option), else the one-line form.
    const full = rest.length > 0 && entry.load !== undefined ? (await entry.load()).usage : undefined;
    process.stdout.write(full ?? `Usage: mcp-warden ${entry.usage}\n`);
    if (rest.length > 0 || entry.load === undefined) return rest.length > 0 ? 0 : 2;
  }
  if (entry.load === undefined) {
    process.stderr.write(`mcp-warden ${name}: not available in this version.\n`);
    return 2;
  }
  if (entry.serves) holdOptimizingCompiler();
  const mod = await entry.load();
  return mod.run([...(entry.prefix ?? []), ...rest]);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const code = isWardenError(err) ? ` [${err.code}]` : '';
    process.stderr.write(`mcp-warden: ${errorMessage(err)}${code}\n`);
    process.exitCode = 1;
  },
);
