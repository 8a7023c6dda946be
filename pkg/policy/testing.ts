import { PassThrough } from 'node:stream';
import { type Logger, pino } from 'pino';
import type { Identity } from '../identity/types.js';
import type { CallContext } from './decision.js';
import type { PolicyDocument, PolicyRule, PolicySpec } from './schema.js';

/**
 * Test helpers (used by the unit tests of this folder and usable by others): identities and
 * policy documents with little noise. Not part of the data path.
 */
export function identity(overrides: Partial<Identity> = {}): Identity {
  return {
    principal: 'tenant-1/user-1',
    issuer: 'https://login.example/tenant-1/v2.0',
    subject: 'sub-1',
    tenantId: 'tenant-1',
    objectId: 'user-1',
    user: 'Alice@Example.com',
    appId: 'app-1',
    appOnly: false,
    groups: [],
    roles: [],
    scopes: ['mcp.access'],
    wids: [],
    audience: 'api://demo',
    expiresAt: 4_102_444_800,
    claims: { tid: 'tenant-1', oid: 'user-1' },
    ...overrides,
  };
}

export function policy(
  name: string,
  rules: PolicyRule[],
  spec: Partial<PolicySpec> = {},
  metadata: Partial<PolicyDocument['metadata']> = {},
): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name, ...metadata },
    spec: { podSelector: {}, rules, ...spec },
  };
}

export function toolCall(
  tool: string,
  who: Identity,
  args: Record<string, unknown> = {},
  toolAnnotations?: Record<string, unknown>,
): CallContext {
  return {
    method: 'tools/call',
    tool,
    args,
    identity: who,
    direction: 'client-to-server',
    ...(toolAnnotations === undefined ? {} : { toolAnnotations }),
  };
}

/** A logger whose JSON lines are collected (what an operator would read), for assertions. */
export function captureLogs(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const stream = new PassThrough();
  const lines: Array<Record<string, unknown>> = [];
  stream.on('data', (chunk: Buffer) => {
    for (const l of chunk.toString().split('\n').filter(Boolean))
      lines.push(JSON.parse(l) as Record<string, unknown>);
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}
