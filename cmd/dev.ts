/**
 * `mcp-warden dev issuer` — a local Entra-shaped OIDC issuer (loopback only) for demos and tests.
 * `mcp-warden dev token`  — print an access token signed with that issuer's key.
 *
 * The issuer writes its state (URL, tenant, private signing key) to a 0600 file; `dev token` reads
 * it, so tokens minted by another process verify against the running issuer's JWKS. Restarting
 * the issuer with the same state file keeps the key, so earlier tokens stay valid.
 */
import { parseArgs } from 'node:util';
import { WardenError } from '../pkg/errors.js';
import { type DevIssuer, startDevIssuer } from '../pkg/identity/dev-issuer.js';
import { defaultStateFile, readDevState, writeDevState } from '../pkg/identity/dev-state.js';
import { type DevTokenOptions, devDefaults, signDevToken } from '../pkg/identity/dev-token.js';

const defaultAudience = 'api://demo-mcp';

const usage = `Usage:
  mcp-warden dev issuer [--listen 127.0.0.1:8400] [--tenant ID] [--state FILE]
  mcp-warden dev token  [--issuer-state FILE] [--aud ${defaultAudience}] [--oid ID] [--upn U] [--groups a,b]
                        [--roles r1,r2] [--scopes s1,s2] [--app-only] [--v1] [--client-id ID] [--expires 3600]

The state file (default ${defaultStateFile}) holds the issuer's private signing key.`;

/** Output and shutdown, injectable for tests. */
export interface DevIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** Stops `dev issuer` (default: SIGINT or SIGTERM). */
  signal?: AbortSignal;
  /** Called once the issuer listens and its state file is written. */
  onReady?: (issuer: DevIssuer, stateFile: string) => void;
}

export async function run(
  argv: string[],
  io: DevIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'issuer') return await issuer(rest, io);
    if (sub === 'token') return await token(rest, io);
    if (sub === '--help' || sub === '-h' || sub === 'help') {
      io.stdout.write(`${usage}\n`);
      return 0;
    }
    io.stderr.write(
      sub === undefined ? `${usage}\n` : `mcp-warden dev: unknown subcommand "${sub}"\n\n${usage}\n`,
    );
    return 2;
  } catch (err) {
    if (
      err instanceof WardenError ||
      (err as { code?: unknown }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
      (err as { code?: unknown }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE'
    ) {
      io.stderr.write(`mcp-warden dev ${sub}: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}

/** `host:port`, `[v6]:port` or `:port` (host defaults to 127.0.0.1). */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (m === null || port > 65535)
    throw new WardenError('ERR_CONFIG', `--listen ${value}: expected HOST:PORT, e.g. 127.0.0.1:8400`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

async function issuer(args: string[], io: DevIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      listen: { type: 'string', default: '127.0.0.1:8400' },
      tenant: { type: 'string' },
      state: { type: 'string', default: defaultStateFile },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(`${usage}\n`);
    return 0;
  }
  const { host, port } = parseListen(values.listen);
  const stateFile = values.state;
  const previous = await readDevState(stateFile).catch(() => undefined);
  const tenantId = values.tenant ?? previous?.tenantId ?? devDefaults.tenantId;
  // Same tenant as last time: keep the key, so tokens minted earlier stay valid.
  const keys = previous !== undefined && previous.tenantId === tenantId ? previous.keys : undefined;
  const dev = await startDevIssuer({ host, port, tenantId, ...(keys === undefined ? {} : { keys }) }).catch(
    (err: unknown) => {
      const code = (err as { code?: unknown }).code;
      if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL' || code === 'EACCES') {
        throw new WardenError(
          'ERR_CONFIG',
          `cannot listen on ${values.listen} (${String(code)}): pick another address with --listen`,
        );
      }
      throw err;
    },
  );
  await writeDevState(stateFile, dev.state());
  io.stdout.write(
    [
      `mcp-warden dev issuer listening on ${dev.url} (tenant ${dev.tenantId})`,
      `  v2 issuer   ${dev.v2Issuer}`,
      `  v1 issuer   ${dev.v1Issuer}   (stands in for https://sts.windows.net/<tid>/)`,
      `  discovery   ${dev.discoveryUrlV2}`,
      `              ${dev.discoveryUrlV1}`,
      `  jwks        ${dev.jwksUri}`,
      `  token       ${dev.tokenEndpoint}   (client_credentials with a federated client_assertion)`,
      `  state       ${stateFile}   (private signing key: keep it to yourself)`,
      '',
      'Trust it in an MCPPolicy:',
      '  identity:',
      '    issuers:',
      `      - issuer: ${dev.v2Issuer}`,
      `        audiences: [${defaultAudience}]`,
      '',
      'Get a token (another terminal):',
      `  mcp-warden dev token --aud ${defaultAudience} --groups <group-object-id>${stateFile === defaultStateFile ? '' : ` --issuer-state ${stateFile}`}`,
      '',
      'Ctrl-C stops the issuer.',
      '',
    ].join('\n'),
  );
  io.onReady?.(dev, stateFile);
  await stopped(io.signal);
  await dev.close();
  io.stderr.write('mcp-warden dev issuer: stopped\n');
  return 0;
}

function stopped(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal !== undefined) {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
      return;
    }
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

const list = (value: string | undefined) =>
  value === undefined
    ? undefined
    : value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');

async function token(args: string[], io: DevIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'issuer-state': { type: 'string', default: defaultStateFile },
      aud: { type: 'string', default: defaultAudience },
      oid: { type: 'string' },
      upn: { type: 'string' },
      groups: { type: 'string' },
      roles: { type: 'string' },
      scopes: { type: 'string' },
      'app-only': { type: 'boolean', default: false },
      v1: { type: 'boolean', default: false },
      'client-id': { type: 'string' },
      expires: { type: 'string', default: '3600' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(`${usage}\n`);
    return 0;
  }
  const stateFile = values['issuer-state'];
  const state = await readDevState(stateFile);
  if (state === undefined) {
    throw new WardenError(
      'ERR_CONFIG',
      `no dev issuer state at ${stateFile}: start \`mcp-warden dev issuer\` first (or pass --issuer-state FILE)`,
    );
  }
  const expires = Number(values.expires);
  if (!Number.isInteger(expires) || expires <= 0)
    throw new WardenError('ERR_CONFIG', `--expires ${values.expires}: expected a positive number of seconds`);
  const groups = list(values.groups);
  const roles = list(values.roles);
  const scopes = list(values.scopes);
  const options: DevTokenOptions = {
    audience: values.aud,
    appOnly: values['app-only'],
    version: values.v1 ? 1 : 2,
    expiresInSec: expires,
    ...(values.oid === undefined ? {} : { oid: values.oid }),
    ...(values.upn === undefined ? {} : { upn: values.upn }),
    ...(values['client-id'] === undefined ? {} : { clientId: values['client-id'] }),
    ...(groups === undefined ? {} : { groups }),
    ...(roles === undefined ? {} : { roles }),
    ...(scopes === undefined ? {} : { scopes }),
  };
  io.stdout.write(`${await signDevToken(state, options)}\n`);
  return 0;
}
