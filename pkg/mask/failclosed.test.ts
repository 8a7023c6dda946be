import type { MaskingRule } from '../policy/schema.js';
import { createMasker } from './masker.js';

// Shapes a server can send that once went through unmasked (fail open): each is masked now.

const rule = (r: Partial<MaskingRule>): MaskingRule => ({ name: 'r', ...r }) as MaskingRule;
const scope = { method: 'tools/call', tool: 'get_customer', session: 's1' };
const email = 'mia.private@example.com';

describe('members of a JSON-RPC message besides result, params and error', () => {
  const masker = createMasker([
    { policy: 'p', rule: rule({ detectors: ['email', 'password-assignment'], fields: ['$..pin'] }) },
  ]);

  it('masks a notification _meta and a response debug member; keeps jsonrpc, id and method', () => {
    const note = {
      jsonrpc: '2.0',
      method: 'notifications/message',
      params: { level: 'info', data: 'x' },
      _meta: { user: email },
    };
    const n = masker.maskMessage(note, { method: 'notifications/message' });
    expect(n.value).toEqual({ ...note, _meta: { user: 'masked-email@masked.invalid' } });
    expect(n.hits).toEqual([{ policy: 'p', detector: 'email' }]);

    const response = { jsonrpc: '2.0', id: email, result: { content: [] }, debug: { row: `to ${email}` } };
    const r = masker.maskMessage(response, scope);
    expect(r.value).toEqual({ ...response, debug: { row: 'to [masked:email]' } });
    expect(Object.keys(r.value)).toEqual(['jsonrpc', 'id', 'result', 'debug']);
    expect(response.debug.row).toBe(`to ${email}`);
  });

  it('applies the key rules to such a member: password-like names, $..name paths, findings in the name', () => {
    const msg = JSON.parse(
      `{"jsonrpc":"2.0","id":1,"result":{},"secret":"hunter2","pin":"1234","${email}":1,"__proto__":"${email}"}`,
    );
    const text = JSON.stringify(masker.maskMessage(msg, scope).value);
    expect(text).toBe(
      '{"jsonrpc":"2.0","id":1,"result":{},"secret":"[masked:password-assignment]","pin":"[masked:r]",' +
        '"masked-email@masked.invalid":1,"__proto__":"masked-email@masked.invalid"}',
    );
  });
});

describe('the text copy of structuredContent', () => {
  it('masks the other members of an exact copy (_meta, annotations) and still re-serializes its text', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email'] }) }]);
    for (const sc of [{ a: 'x' }, { a: email }]) {
      const out = masker.maskMessage(
        {
          structuredContent: sc,
          content: [
            {
              type: 'text',
              text: JSON.stringify(sc),
              _meta: { note: email },
              annotations: { audience: [email] },
            },
          ],
        },
        scope,
      );
      const masked = sc.a === 'x' ? sc : { a: 'masked-email@masked.invalid' };
      expect(out.value.structuredContent).toEqual(masked);
      expect(out.value.content).toEqual([
        {
          type: 'text',
          text: JSON.stringify(masked),
          _meta: { note: 'masked-email@masked.invalid' },
          annotations: { audience: ['masked-email@masked.invalid'] },
        },
      ]);
    }
  });

  it('masks a text that only parses equal to structuredContent (duplicate keys) as text', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email'] }) }]);
    for (const text of [`{"a":"${email}","a":"x"}`, `{"a":"x","a":"${email}"}`.replace(email, 'x')]) {
      const out = masker.maskMessage(
        { structuredContent: { a: 'x' }, content: [{ type: 'text', text }] },
        scope,
      );
      expect(out.value.content[0]!.text).toBe(text.replace(email, '[masked:email]'));
    }
  });

  it('replaces such a text by the masked structuredContent when a JSON path masked a value in it', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ fields: ['$.structuredContent.ssn'] }) }]);
    const out = masker.maskMessage(
      {
        structuredContent: { ssn: 'none' },
        content: [{ type: 'text', text: '{"ssn":"078-05-1120","ssn":"none"}' }],
      },
      scope,
    );
    expect(out.value.content[0]!.text).toBe('{"ssn":"[masked:r]"}');
    expect(out.hits).toHaveLength(1);
  });
  it('lets a $..text path mask an exact copy even when structuredContent had nothing masked', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ fields: ['$..text'] }) }]);
    const out = masker.maskMessage(
      { structuredContent: { a: 'x' }, content: [{ type: 'text', text: '{"a":"x"}' }] },
      scope,
    );
    expect(out.value.content[0]!.text).toBe('[masked:r]');
  });
});

describe('base64 is left alone only where MCP carries it', () => {
  const key = `${'A'.repeat(86)}==`;
  const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['email', 'azure-storage-key'] }) }]);

  it('masks blob and data members of any other shape', () => {
    const msg = {
      structuredContent: {
        blob: email,
        keyBlob: { blob: key },
        nested: { uri: 'file:///k', blob: { note: email } },
        text: { type: 'text', data: email },
      },
      content: [{ type: 'image', data: `not base64: ${email}`, mimeType: 'image/png' }],
    };
    expect(masker.maskMessage(msg, scope).value).toEqual({
      structuredContent: {
        blob: 'masked-email@masked.invalid',
        keyBlob: { blob: '[masked:azure-storage-key]' },
        nested: { uri: 'file:///k', blob: { note: 'masked-email@masked.invalid' } },
        text: { type: 'text', data: 'masked-email@masked.invalid' },
      },
      content: [{ type: 'image', data: 'not base64: [masked:email]', mimeType: 'image/png' }],
    });
  });

  it('still skips the blob of resource contents and the data of image and audio blocks', () => {
    const msg = {
      contents: [{ uri: 'file:///k', blob: `${key}\r\n${key}` }],
      content: [
        { type: 'audio', data: key, mimeType: 'audio/wav' },
        { type: 'resource', resource: { uri: 'file:///k', blob: key } },
      ],
    };
    expect(masker.maskMessage(msg, scope).value).toBe(msg);
  });
});

describe('JSON paths past the depth limit', () => {
  it('replace an over-deep $..field value whole, like the walk does', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ fields: ['$..ssn'] }) }], { maxDepth: 10 });
    let deep: unknown = '078-05-1120';
    for (let i = 0; i < 20; i++) deep = [deep];
    const out = masker.maskMessage({ structuredContent: { ssn: deep } }, scope);
    const text = JSON.stringify(out.value);
    expect(text).not.toContain('078-05-1120');
    expect(text).toContain('[masked:depth-limit]');
  });

  it('reach as deep as maxDepth allows, past 512 levels', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ fields: ['$..customer.ssn'] }) }], {
      maxDepth: 700,
    });
    let deep: unknown = { customer: { ssn: '078-05-1120' } };
    for (let i = 0; i < 600; i++) deep = [deep];
    const text = JSON.stringify(masker.maskMessage({ deep }, scope).value);
    expect(text).not.toContain('078-05-1120');
    expect(text).toContain('{"customer":{"ssn":"[masked:r]"}}');
  });

  it('mask the names of members inside a selected object too', () => {
    const masker = createMasker([
      { policy: 'p', rule: rule({ detectors: ['email'], fields: ['$..byUser'] }) },
    ]);
    const out = masker.maskMessage({ structuredContent: { byUser: { [email]: { n: 1 } } } }, scope);
    expect(out.value.structuredContent).toEqual({ byUser: { 'masked-email@masked.invalid': { n: 0 } } });
  });
});

describe('values under password-like keys', () => {
  it('are replaced whole whatever their type; null and empty strings stay', () => {
    const masker = createMasker([{ policy: 'p', rule: rule({ detectors: ['password-assignment'] }) }]);
    const out = masker.maskMessage(
      {
        structuredContent: {
          password: 98765432,
          dbSecret: ['hunter2', 'hunter3'],
          clientSecret: { value: 'hunter2' },
          apiKey: true,
          pwd: null,
          passphrase: '',
          user: 'ann',
        },
      },
      scope,
    );
    const token = '[masked:password-assignment]';
    expect(out.value.structuredContent).toEqual({
      password: token,
      dbSecret: token,
      clientSecret: token,
      apiKey: token,
      pwd: null,
      passphrase: '',
      user: 'ann',
    });
    expect(out.hits).toHaveLength(4);
  });

  it('hash a number like the same digits as a string', () => {
    const masker = createMasker(
      [{ policy: 'p', rule: rule({ detectors: ['password-assignment'], hash: true }) }],
      { hashKey: new Uint8Array(32) },
    );
    const out = masker.maskMessage({ a: { password: 1234 }, b: { password: '1234' } }, scope).value;
    expect(out.a.password).toMatch(/^\[masked:password-assignment:[0-9a-f]{12}\]$/);
    expect(out.a.password).toBe(out.b.password);
  });

  it('are not masked twice when a JSON path already masked them', () => {
    const masker = createMasker([
      {
        policy: 'p',
        rule: rule({ detectors: ['password-assignment'], fields: ['$.structuredContent.secret'] }),
      },
    ]);
    const out = masker.maskMessage({ structuredContent: { secret: { a: 'x', n: 2 } } }, scope);
    expect(out.value.structuredContent).toEqual({ secret: { a: '[masked:r]', n: 0 } });
    expect(out.hits).toHaveLength(2);
  });
});

describe('password-like keys, plural too', () => {
  it('masks what is listed under secrets, passwords or apiKeys', () => {
    const m = createMasker([{ policy: 'p', rule: { name: 'pw', detectors: ['password-assignment'] } }]);
    const out = m.maskMessage(
      {
        secrets: ['s3cr3t-one', 's3cr3t-two'],
        db_passwords: { main: 'hunter2' },
        apiKeys: ['k-123'],
        api_keys: 'k-456',
        keys: ['public'],
      },
      { method: 'tools/call' },
    ).value as Record<string, unknown>;
    expect(JSON.stringify(out)).not.toMatch(/s3cr3t|hunter2|k-123|k-456/);
    expect(out['keys']).toEqual(['public']);
  });
});
