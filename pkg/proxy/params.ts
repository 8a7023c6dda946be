import type { IncomingMessage } from 'node:http';
import { isJsonNumber, isJsonObject, numberText } from '../json.js';
import type { JsonRpcRequest } from '../mcp/jsonrpc.js';
import { decodeMcpHeaderValue } from '../mcp/version.js';
import type { ProxyCore } from './core.js';

/**
 * 2026-07-28 `Mcp-Param-{Name}` headers mirror `tools/call` arguments that the tool's
 * `inputSchema` marks with `x-mcp-header`. A hop routing on them must not be fooled, so each one
 * presented must equal the argument it mirrors (per the schema the upstream listed).
 */
export interface ParamHeader {
  /** Lower-cased header suffix (`Mcp-Param-<name>`). */
  name: string;
  /** Path of the argument inside `arguments`. */
  path: string[];
}

const MAX_DEPTH = 8;

/** Collect `x-mcp-header` declarations reachable through `properties` chains. */
export function paramDeclarations(inputSchema: unknown): ParamHeader[] {
  const out: ParamHeader[] = [];
  walk(inputSchema, [], out, 0);
  return out;
}

function walk(schema: unknown, path: string[], out: ParamHeader[], depth: number): void {
  if (depth > MAX_DEPTH || typeof schema !== 'object' || schema === null) return;
  const props = (schema as Record<string, unknown>)['properties'];
  if (typeof props !== 'object' || props === null || Array.isArray(props)) return;
  for (const [key, sub] of Object.entries(props as Record<string, unknown>)) {
    if (typeof sub !== 'object' || sub === null) continue;
    const h = (sub as Record<string, unknown>)['x-mcp-header'];
    if (typeof h === 'string' && h.length > 0) out.push({ name: h.toLowerCase(), path: [...path, key] });
    walk(sub, [...path, key], out, depth + 1);
  }
}

function primitive(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  // A number's exact value (`12345678901234567890` as such, not as its nearest double).
  if (isJsonNumber(v)) return numberText(v);
  return undefined;
}

/** Why the `Mcp-Param-*` headers disagree with the call, or undefined when they agree. */
export function paramHeaderMismatch(
  core: ProxyCore,
  req: IncomingMessage,
  msg: JsonRpcRequest,
): string | undefined {
  let presented: Array<[string, string]> | undefined;
  for (const name in req.headers) {
    if (!name.startsWith('mcp-param-')) continue;
    const v = req.headers[name];
    if (!presented) presented = [];
    presented.push([name.slice(10), Array.isArray(v) ? v.join(',') : (v ?? '')]);
  }
  if (!presented) return undefined;
  if (msg.method !== 'tools/call') return 'Mcp-Param-* headers are only allowed on tools/call';
  const params = (msg.params ?? {}) as Record<string, unknown>;
  const tool = typeof params['name'] === 'string' ? params['name'] : '';
  const decls = core.toolParamHeaders.get(tool);
  if (!decls)
    return `Mcp-Param-* headers for tool "${tool.slice(0, 64)}", whose schema declares none (or is unknown)`;
  const args = params['arguments'];
  for (const [name, raw] of presented) {
    const decl = decls.find((d) => d.name === name);
    if (!decl) return `Mcp-Param-${name} is not declared by tool "${tool.slice(0, 64)}"`;
    let node: unknown = args;
    for (const key of decl.path) node = isJsonObject(node) ? node[key] : undefined;
    const expected = primitive(node);
    if (expected === undefined || decodeMcpHeaderValue(raw) !== expected) {
      return `Mcp-Param-${name} header does not match the argument ${decl.path.join('.')}`;
    }
  }
  return undefined;
}
