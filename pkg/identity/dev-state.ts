import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { errorMessage, WardenError } from '../errors.js';
import type { DevIssuerState } from './dev-token.js';

/**
 * The dev issuer's state file: URL, tenant and private signing keys, so that `mcp-warden dev
 * token` (another process) signs tokens the running issuer's JWKS verifies. Written 0600,
 * atomically (write then rename), because it holds private keys.
 */
export const defaultStateFile = join(tmpdir(), 'mcp-warden-dev-issuer.json');

export async function writeDevState(path: string, state: DevIssuerState): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify({ version: 1, ...state }, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

/** Read and check a state file; `undefined` when it does not exist. */
export async function readDevState(path: string): Promise<DevIssuerState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new WardenError('ERR_CONFIG', `cannot read the dev issuer state ${path}: ${errorMessage(err)}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new WardenError(
      'ERR_CONFIG',
      `the dev issuer state ${path} is not JSON; delete it and restart \`mcp-warden dev issuer\``,
    );
  }
  const s = doc as Partial<DevIssuerState> & { version?: unknown };
  const ok =
    s.version === 1 &&
    typeof s.url === 'string' &&
    typeof s.tenantId === 'string' &&
    typeof s.v2Issuer === 'string' &&
    typeof s.v1Issuer === 'string' &&
    Array.isArray(s.keys) &&
    s.keys.length > 0 &&
    s.keys.every(
      (k) =>
        typeof k?.kid === 'string' &&
        typeof k.privateJwk === 'object' &&
        k.privateJwk !== null &&
        typeof k.privateJwk.d === 'string',
    );
  if (!ok)
    throw new WardenError(
      'ERR_CONFIG',
      `the dev issuer state ${path} is not valid; delete it and restart \`mcp-warden dev issuer\``,
    );
  return { url: s.url!, tenantId: s.tenantId!, v2Issuer: s.v2Issuer!, v1Issuer: s.v1Issuer!, keys: s.keys! };
}
