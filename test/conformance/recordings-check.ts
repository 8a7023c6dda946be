/**
 * Checks that the gateway's recordings of a conformance run hold every scenario's calls: for each
 * scenario that ran, the JSON-RPC requests it must have sent (or, for sampling and elicitation,
 * the server-to-client requests it must have caused) appear in some recording.
 *
 * Run: `node test/conformance/recordings-check.ts --dir RECORDINGS_DIR --scenarios a,b,c`
 * Prints one line per scenario and exits 1 if any scenario's calls are missing (or the directory
 * holds no recording at all). It reads the files only; `mcp-warden recordings verify` checks the
 * hash chains.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

/** One call as it appears on the wire: method plus the name/uri that identifies it. */
export interface SeenCall {
  method: string;
  key?: string;
  id?: unknown;
  clientName?: string;
}

type Expectation = (calls: readonly SeenCall[]) => boolean;

const has =
  (method: string, key?: string): Expectation =>
  (calls) =>
    calls.some((c) => c.method === method && (key === undefined || c.key === key));
const all =
  (...parts: Expectation[]): Expectation =>
  (calls) =>
    parts.every((p) => p(calls));

/** What each server scenario of the suite sends (read from the scenarios' source). */
export const EXPECTED: Record<string, Expectation> = {
  'server-initialize': has('initialize'),
  'logging-set-level': has('logging/setLevel'),
  ping: has('ping'),
  'completion-complete': has('completion/complete', 'test_prompt_with_arguments'),
  'tools-list': has('tools/list'),
  'tools-call-simple-text': has('tools/call', 'test_simple_text'),
  'tools-call-image': has('tools/call', 'test_image_content'),
  'tools-call-audio': has('tools/call', 'test_audio_content'),
  'tools-call-embedded-resource': has('tools/call', 'test_embedded_resource'),
  'tools-call-mixed-content': has('tools/call', 'test_multiple_content_types'),
  'tools-call-with-logging': all(has('tools/call', 'test_tool_with_logging'), has('notifications/message')),
  'tools-call-error': has('tools/call', 'test_error_handling'),
  'tools-call-with-progress': all(
    has('tools/call', 'test_tool_with_progress'),
    has('notifications/progress'),
  ),
  'tools-call-sampling': all(has('tools/call', 'test_sampling'), has('sampling/createMessage')),
  'tools-call-elicitation': all(has('tools/call', 'test_elicitation'), has('elicitation/create')),
  'json-schema-2020-12': has('tools/list'),
  'elicitation-sep1034-defaults': all(
    has('tools/call', 'test_elicitation_sep1034_defaults'),
    has('elicitation/create'),
  ),
  'elicitation-sep1330-enums': all(
    has('tools/call', 'test_elicitation_sep1330_enums'),
    has('elicitation/create'),
  ),
  'server-sse-polling': has('tools/call', 'test_reconnection'),
  'server-sse-multiple-streams': (calls) =>
    [1000, 1001, 1002].every((id) => calls.some((c) => c.method === 'tools/list' && c.id === id)),
  'resources-list': has('resources/list'),
  'resources-read-text': has('resources/read', 'test://static-text'),
  'resources-read-binary': has('resources/read', 'test://static-binary'),
  'resources-templates-read': has('resources/read', 'test://template/123/data'),
  'resources-subscribe': has('resources/subscribe', 'test://watched-resource'),
  'resources-unsubscribe': has('resources/unsubscribe', 'test://watched-resource'),
  'prompts-list': has('prompts/list'),
  'prompts-get-simple': has('prompts/get', 'test_simple_prompt'),
  'prompts-get-with-args': has('prompts/get', 'test_prompt_with_arguments'),
  'prompts-get-embedded-resource': has('prompts/get', 'test_prompt_with_embedded_resource'),
  'prompts-get-with-image': has('prompts/get', 'test_prompt_with_image'),
  // Only the accepted (loopback Host/Origin) initialize reaches a session and its recording.
  'dns-rebinding-protection': (calls) =>
    calls.some((c) => c.method === 'initialize' && c.clientName === 'conformance-dns-rebinding-test'),
  // 2025-03-26 (suite 0.2.0-alpha): initialize, a call on the session, DELETE ends it.
  'server-session-lifecycle': has('initialize'),
  // 2026-07-28 (suite 0.2.0-alpha): stateless requests, multi-round-trip input_required results.
  'server-stateless': all(has('server/discover'), has('tools/call', 'test_missing_capability')),
  caching: all(has('prompts/list'), has('resources/templates/list'), has('resources/read')),
  'http-header-validation': has('tools/list'),
  'http-custom-header-server-validation': has('tools/call', 'test_custom_header'),
  'sep-2164-resource-not-found': has('resources/read', 'test://nonexistent-resource-for-conformance-testing'),
  'input-required-result-basic-elicitation': has('tools/call', 'test_input_required_result_elicitation'),
  'input-required-result-basic-sampling': has('tools/call', 'test_input_required_result_sampling'),
  'input-required-result-basic-list-roots': has('tools/call', 'test_input_required_result_list_roots'),
  'input-required-result-request-state': has('tools/call', 'test_input_required_result_request_state'),
  'input-required-result-multiple-input-requests': has(
    'tools/call',
    'test_input_required_result_multiple_inputs',
  ),
  'input-required-result-multi-round': has('tools/call', 'test_input_required_result_multi_round'),
  'input-required-result-missing-input-response': has('tools/call', 'test_input_required_result_elicitation'),
  'input-required-result-non-tool-request': has('prompts/get', 'test_input_required_result_prompt'),
  'input-required-result-result-type': has('tools/call', 'test_input_required_result_elicitation'),
  'input-required-result-unsupported-methods': all(has('tools/list'), has('prompts/list')),
  'input-required-result-tampered-state': has('tools/call', 'test_input_required_result_tampered_state'),
  'input-required-result-capability-check': has('tools/call', 'test_input_required_result_capabilities'),
  'input-required-result-ignore-extra-params': has('tools/call', 'test_input_required_result_elicitation'),
  'input-required-result-validate-input': has('tools/call', 'test_input_required_result_elicitation'),
};

function callOf(msg: Record<string, unknown>): SeenCall | undefined {
  if (typeof msg.method !== 'string') return undefined;
  const params = (typeof msg.params === 'object' && msg.params !== null ? msg.params : {}) as Record<
    string,
    unknown
  >;
  const ref = (typeof params.ref === 'object' && params.ref !== null ? params.ref : {}) as Record<
    string,
    unknown
  >;
  const clientInfo = (
    typeof params.clientInfo === 'object' && params.clientInfo !== null ? params.clientInfo : {}
  ) as Record<string, unknown>;
  const key = [params.name, params.uri, ref.name].find((v): v is string => typeof v === 'string');
  return {
    method: msg.method,
    ...(key !== undefined ? { key } : {}),
    ...('id' in msg ? { id: msg.id } : {}),
    ...(typeof clientInfo.name === 'string' ? { clientName: clientInfo.name } : {}),
  };
}

/** Every JSON-RPC request/notification found anywhere in a recording line (batches included). */
export function callsInLine(line: unknown, out: SeenCall[] = []): SeenCall[] {
  if (Array.isArray(line)) {
    for (const item of line) callsInLine(item, out);
  } else if (typeof line === 'object' && line !== null) {
    const obj = line as Record<string, unknown>;
    if (obj.jsonrpc === '2.0') {
      const call = callOf(obj);
      if (call !== undefined) out.push(call);
    }
    for (const value of Object.values(obj)) if (typeof value === 'object') callsInLine(value, out);
  }
  return out;
}

function files(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...files(path));
    else out.push(path);
  }
  return out;
}

function main(): number {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, scenarios: { type: 'string' } } });
  if (!values.dir || !values.scenarios) {
    process.stderr.write('usage: recordings-check.ts --dir RECORDINGS_DIR --scenarios a,b,c\n');
    return 2;
  }
  const recordings = files(values.dir);
  const calls: SeenCall[] = [];
  let lines = 0;
  // The policy's masking rules match nothing in the fixtures: a mask event means the gateway
  // changed a payload, which a transparent run must not do.
  let maskEvents = 0;
  for (const file of recordings) {
    for (const text of readFileSync(file, 'utf8').split('\n')) {
      if (text.trim() === '') continue;
      lines += 1;
      try {
        const line: unknown = JSON.parse(text);
        if (typeof line === 'object' && line !== null && (line as { type?: unknown }).type === 'mask')
          maskEvents += 1;
        callsInLine(line, calls);
      } catch {
        process.stderr.write(`recordings-check: ${file}: a line is not JSON\n`);
        return 1;
      }
    }
  }
  process.stdout.write(
    `recordings: ${recordings.length} files, ${lines} lines, ${calls.length} JSON-RPC calls, ${maskEvents} mask events\n`,
  );
  let missing = 0;
  for (const scenario of values.scenarios.split(',').filter(Boolean)) {
    const expect = EXPECTED[scenario];
    const ok = expect?.(calls) === true;
    if (!ok) missing += 1;
    const why = expect === undefined ? ' (no expectation known for this scenario)' : '';
    process.stdout.write(`  ${ok ? 'recorded' : 'MISSING '}  ${scenario}${why}\n`);
  }
  if (recordings.length === 0) {
    process.stdout.write('  no recording was written\n');
    return 1;
  }
  if (maskEvents > 0)
    process.stdout.write(`  MASKED    ${maskEvents} payloads were masked: the fixtures must match no rule\n`);
  return missing > 0 || maskEvents > 0 ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    process.exitCode = main();
  } catch (err) {
    process.stderr.write(`recordings-check: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
