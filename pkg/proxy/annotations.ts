import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { errorMessage } from '../errors.js';
import { isJsonObject, parseJson } from '../json.js';
import type { JsonRpcRequest, ParsedItem } from '../mcp/jsonrpc.js';
import { SseParser } from '../mcp/sse.js';
import { envelopeVersion, isStatelessVersion } from '../mcp/version.js';
import type { ProxyCore } from './core.js';
import type { Session } from './session.js';
import { discardUpstreamBody, readUpstreamBody } from './upstream.js';

/**
 * Tool annotations (`readOnlyHint`, `destructiveHint`, ...) come from the upstream's `tools/list`.
 * When a `tools/call` names a tool the proxy has not seen listed yet (the client called before
 * listing), the proxy asks the upstream itself, once per session (stateless: at most once a
 * minute), so rules matching `toolAnnotations` see the declared annotations. If that fails the
 * annotations stay unknown: rules that match on annotations then do not apply (an allow rule
 * does not allow; a deny rule with other matches still denies).
 */
const STATELESS_REFRESH_MS = 60_000;
const MAX_PAGES = 10;
/** Deadline for the proxy's own tools/list (headers and body each). */
const LIST_TIMEOUT_MS = 5000;

export async function ensureToolAnnotations(
  core: ProxyCore,
  session: Session | undefined,
  items: ParsedItem[],
  headers: IncomingHttpHeaders,
  version: string | undefined,
): Promise<void> {
  let call: JsonRpcRequest | undefined;
  for (const item of items) {
    if (item.kind !== 'request') continue;
    const req = item.message as JsonRpcRequest;
    if (req.method !== 'tools/call') continue;
    const name = (req.params as Record<string, unknown> | undefined)?.['name'];
    if (typeof name !== 'string' || core.knownTools.has(name)) continue;
    call = req;
    break;
  }
  if (!call) return;
  if (session) {
    if (session.annotationsFetched) return;
    session.annotationsFetched = true;
  } else {
    const now = Date.now();
    if (now - core.annotationsFetchedAt < STATELESS_REFRESH_MS) return;
    core.annotationsFetchedAt = now;
  }
  try {
    await fetchTools(core, session, call, headers, version);
  } catch (err) {
    core.logger.warn(
      { event: 'annotations-fetch-failed', err: errorMessage(err) },
      'could not list upstream tools',
    );
  }
}

async function fetchTools(
  core: ProxyCore,
  session: Session | undefined,
  trigger: JsonRpcRequest,
  incoming: IncomingHttpHeaders,
  version: string | undefined,
): Promise<void> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
  };
  if (session) headers['mcp-session-id'] = session.id;
  if (version) headers['mcp-protocol-version'] = version;
  const params: Record<string, unknown> = {};
  const env = envelopeVersion(trigger);
  if (isStatelessVersion(env)) {
    // 2026-07-28: every request carries its own envelope; reuse the caller's.
    params['_meta'] = (trigger.params as Record<string, unknown>)['_meta'];
    headers['mcp-method'] = 'tools/list';
  }
  const ua = incoming['user-agent'];
  if (typeof ua === 'string') headers['user-agent'] = ua;
  const path = core.upstream.url.pathname + core.upstream.url.search;
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    // Unguessable: on the legacy transport the answer arrives on the shared stream, and a client
    // that could predict this id could have its own request's answer taken for ours.
    const id = `mcp-warden-annotations-${randomUUID()}`;
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id,
      method: 'tools/list',
      params: cursor === undefined ? params : { ...params, cursor },
    });
    const result =
      session?.transport === 'legacy-sse'
        ? await listViaLegacy(core, session, id, body)
        : await listDirect(core, path, headers, body, id);
    const tools = result['tools'];
    if (Array.isArray(tools)) {
      for (const tool of tools) {
        if (!isJsonObject(tool) || typeof tool['name'] !== 'string') continue;
        const ann = tool['annotations'];
        const annotations = isJsonObject(ann) ? ann : undefined;
        core.learnTool(tool['name'], annotations, tool['inputSchema']);
        if (session && annotations) session.toolAnnotations.set(tool['name'], annotations);
      }
    }
    cursor = typeof result['nextCursor'] === 'string' ? result['nextCursor'] : undefined;
    if (cursor === undefined) return;
  }
}

async function listDirect(
  core: ProxyCore,
  path: string,
  headers: Record<string, string>,
  body: string,
  id: string,
): Promise<Record<string, unknown>> {
  const up = await core.upstream.request('POST', path, headers, body, AbortSignal.timeout(LIST_TIMEOUT_MS));
  const raw = (await readUpstreamBody(up.body, core.maxUpstreamBody, LIST_TIMEOUT_MS)).toString('utf8');
  if (up.status !== 200) throw new Error(`tools/list answered HTTP ${up.status}`);
  const result = findResult(raw, id, String(up.headers['content-type'] ?? ''));
  if (!result) throw new Error('tools/list gave no result');
  return result;
}

/** Legacy SSE: answers travel on the session's event stream; the relay hands ours back. */
async function listViaLegacy(
  core: ProxyCore,
  session: Session,
  id: string,
  body: string,
): Promise<Record<string, unknown>> {
  if (!session.upstreamMessagePath) throw new Error('legacy session has no message endpoint yet');
  if (!session.internalWaiters) session.internalWaiters = new Map();
  const waiters = session.internalWaiters;
  const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => {
      waiters.delete(id);
      reject(new Error('tools/list timed out'));
    }, LIST_TIMEOUT_MS);
    waiters.set(id, (result) => {
      clearTimeout(timer);
      waiters.delete(id);
      if (result) resolve(result);
      else reject(new Error('tools/list failed'));
    });
  });
  try {
    const up = await core.upstream.request(
      'POST',
      session.upstreamMessagePath,
      { 'content-type': 'application/json' },
      body,
      AbortSignal.timeout(LIST_TIMEOUT_MS),
    );
    await discardUpstreamBody(up.body, LIST_TIMEOUT_MS);
    if (up.status >= 300) throw new Error(`tools/list answered HTTP ${up.status}`);
  } catch (err) {
    waiters.get(id)?.(undefined);
    throw err;
  }
  return answer;
}

/** The result of our tools/list in an answer, parsed as the relay parses what it passes on. */
function findResult(raw: string, id: string, contentType: string): Record<string, unknown> | undefined {
  const candidates: unknown[] = [];
  if (contentType.startsWith('text/event-stream')) {
    const p = new SseParser();
    for (const item of p.push(`${raw}\n\n`)) {
      if (item.type === 'event' && item.data) {
        try {
          candidates.push(parseJson(item.data));
        } catch {
          /* not ours */
        }
      }
    }
  } else {
    try {
      const v = parseJson(raw);
      candidates.push(...(Array.isArray(v) ? v : [v]));
    } catch {
      return undefined;
    }
  }
  for (const m of candidates) {
    if (isJsonObject(m) && m['id'] === id && isJsonObject(m['result'])) return m['result'];
  }
  return undefined;
}
