import { classifyMessage, idKey, parseJsonRpc, parseJsonText, RpcCodes } from './jsonrpc.js';

describe('classifyMessage', () => {
  test.each([
    [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} }, 'request'],
    [{ jsonrpc: '2.0', id: 'a', method: 'ping' }, 'request'],
    [{ jsonrpc: '2.0', method: 'notifications/initialized' }, 'notification'],
    [{ jsonrpc: '2.0', id: 1, result: {} }, 'response'],
    [{ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'x' } }, 'response'],
  ])('%j is a %s', (msg, kind) => {
    const r = classifyMessage(msg);
    expect(r.ok && r.kind).toBe(kind);
  });

  test.each([
    [[], 'must be a JSON object'],
    ['x', 'must be a JSON object'],
    [{ id: 1, method: 'm' }, '"jsonrpc" must be exactly "2.0"'],
    [{ jsonrpc: '1.0', id: 1, method: 'm' }, '"jsonrpc" must be exactly "2.0"'],
    [{ jsonrpc: '2.0', id: 1, method: '' }, '"method" must be a non-empty string'],
    [{ jsonrpc: '2.0', id: 1, method: 5 }, '"method" must be a non-empty string'],
    [{ jsonrpc: '2.0', id: null, method: 'm' }, 'null is not allowed'],
    [{ jsonrpc: '2.0', id: 1.5, method: 'm' }, '"id" must be a string or an integer'],
    [{ jsonrpc: '2.0', id: {}, method: 'm' }, '"id" must be a string or an integer'],
    [{ jsonrpc: '2.0', id: 1, method: 'm', params: 'x' }, '"params" must be an object or an array'],
    [{ jsonrpc: '2.0', id: 1, method: 'm', result: 1 }, 'must not carry "result"'],
    [{ jsonrpc: '2.0', id: 1 }, 'exactly one of "result" and "error"'],
    [{ jsonrpc: '2.0', id: 1, result: 1, error: { code: 1, message: 'x' } }, 'exactly one of'],
    [{ jsonrpc: '2.0', id: 1, error: { code: 'x', message: 'x' } }, 'integer "code"'],
    [{ jsonrpc: '2.0' }, 'needs "method"'],
  ])('%j is invalid: %s', (msg, reason) => {
    const r = classifyMessage(msg);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain(reason);
  });

  test('echoes a valid id on invalid requests', () => {
    const r = classifyMessage({ jsonrpc: '2.0', id: 7, method: '' });
    expect(!r.ok && r.id).toBe(7);
  });
});

describe('parseJsonRpc', () => {
  const req = { jsonrpc: '2.0', id: 1, method: 'ping' };
  test('single message', () => {
    const r = parseJsonRpc(req, { allowBatch: false });
    expect(r.ok && r.batch).toBe(false);
  });
  test('batches only when allowed', () => {
    expect(parseJsonRpc([req], { allowBatch: true })).toMatchObject({ ok: true, batch: true });
    const r = parseJsonRpc([req], { allowBatch: false });
    expect(r).toMatchObject({ ok: false, code: RpcCodes.invalidRequest });
    if (!r.ok) expect(r.message).toContain('2025-03-26');
  });
  test('empty and oversize batches are refused', () => {
    expect(parseJsonRpc([], { allowBatch: true })).toMatchObject({
      ok: false,
      message: 'Invalid Request: empty batch',
    });
    expect(parseJsonRpc([req, req, req], { allowBatch: true, maxBatch: 2 })).toMatchObject({ ok: false });
  });
  test('one bad element refuses the whole batch and names it', () => {
    const r = parseJsonRpc([req, { jsonrpc: '2.0', id: 2 }], { allowBatch: true });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain('batch element 1');
  });
});

test('parseJsonText reports a parse error', () => {
  const r = parseJsonText('{"a":');
  expect(r.ok).toBe(false);
  if (!r.ok) expect(r.message).toMatch(/^Parse error: the body is not valid JSON/);
  expect(parseJsonText('{"a":1}')).toEqual({ ok: true, value: { a: 1 } });
});

test('idKey keeps string and number ids apart', () => {
  expect(idKey(1)).not.toBe(idKey('1'));
});

describe('numbers a double cannot carry (lossless parsing)', () => {
  const parse = (text: string): unknown => {
    const r = parseJsonText(text);
    if (!r.ok) throw new Error(r.message);
    return r.value;
  };

  test('parseJsonText keeps every digit of arguments and results', () => {
    const text =
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get","arguments":{"id":12345678901234567890,"x":0.1234567890123456789}}}';
    expect(JSON.stringify(parse(text))).toBe(text);
  });

  test('an integer id beyond 2^53 is refused with a clear reason, on requests and responses alike', () => {
    // Neither kept exact nor rounded: a peer parsing with doubles would answer another id.
    for (const text of [
      '{"jsonrpc":"2.0","id":12345678901234567890,"method":"ping"}',
      '{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}',
      '{"jsonrpc":"2.0","id":9007199254740994,"result":{}}',
      '{"jsonrpc":"2.0","id":-1.2345678901234567890e19,"error":{"code":1,"message":"x"}}',
    ]) {
      const r = classifyMessage(parse(text));
      expect(r).toMatchObject({ ok: false, id: null });
      if (!r.ok)
        expect(r.reason).toMatch(
          /^"id" -?[0-9.e+]+ is an integer beyond ±\(2\^53 - 1\).*use a smaller integer or a string$/,
        );
    }
    expect(classifyMessage(parse('{"jsonrpc":"2.0","id":9007199254740991,"method":"ping"}')).ok).toBe(true);
    // A `requestId` naming one (notifications/cancelled) is keyed by its exact value: no request's.
    const cancelled = parse('{"requestId":9007199254740993}') as { requestId: never };
    expect(idKey(cancelled.requestId)).toBe('n:9007199254740993');
    expect(idKey(cancelled.requestId)).not.toBe(idKey(9007199254740992));
  });

  test.each([
    ['{"jsonrpc":"2.0","id":0.1234567890123456789,"method":"m"}', '"id" must be a string or an integer'],
    ['{"jsonrpc":"2.0","id":1e400,"method":"m"}', '"id" must be a string or an integer'],
    [`{"jsonrpc":"2.0","id":${'9'.repeat(500)},"method":"m"}`, '"id" must be a string or an integer'],
    ['{"jsonrpc":"2.0","id":1,"method":"m","params":12345678901234567890}', '"params" must be an object'],
    ['{"jsonrpc":"2.0","id":1,"error":{"code":12345678901234567890,"message":"x"}}', 'integer "code"'],
    ['12345678901234567890', 'must be a JSON object'],
  ])('%s is invalid: %s', (text, reason) => {
    const r = classifyMessage(parse(text));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain(reason);
  });

  test('nesting too deep for the lossless parse is a clear parse error', () => {
    const deep = `${'['.repeat(200_000)}12345678901234567890${']'.repeat(200_000)}`;
    expect(parseJsonText(deep)).toEqual({
      ok: false,
      message: 'Parse error: the body is nested too deeply; send flatter JSON',
    });
  });

  test('a batch with a huge id is refused whole, naming the element', () => {
    const r = parseJsonRpc(
      parse(
        '[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":12345678901234567890,"method":"b"}]',
      ),
      { allowBatch: true },
    );
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain('batch element 1: "id" 12345678901234567890 is an integer beyond');
  });
});
