import { createMasker } from '../mask/index.js';
import type { MaskingRule } from '../policy/schema.js';
import { canonicalJson } from './digest.js';
import { codePoints, describeMasked, hiddenArguments, maskMarker } from './masked.js';

/**
 * What masking hid in a held call, read off the real masker: once as reviewers see it, once with
 * a marker as the replacement (as pkg/proxy/approve.ts does).
 */
const rules: MaskingRule[] = [
  { name: 'pii', detectors: ['email', 'private-key', 'password-assignment'] },
  { name: 'ids', patterns: [{ name: 'ticket', regex: 'TCK-[0-9]{6}' }], fields: ['$.arguments.card'] },
];

function hidden(args: Record<string, unknown>) {
  const marker = maskMarker();
  const mask = (replacement?: string) =>
    createMasker(
      rules.map((rule) => ({
        policy: 'agents/p',
        rule: replacement === undefined ? rule : { ...rule, replacement },
      })),
    );
  const msg = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 't', arguments: args } };
  const scope = { method: 'tools/call', tool: 't' };
  const shown = mask().maskMessage(msg, scope).value.params.arguments;
  const marked = mask(marker.replacement).maskMessage(msg, scope).value.params.arguments;
  return { shown, result: hiddenArguments(args, shown, marked, marker.pattern) };
}

const PEM = `-----BEGIN PRIVATE KEY-----\nDROP TABLE customers; ${'x'.repeat(1500)}\n-----END PRIVATE KEY-----`;

test('a private-key frame around any text: the path, the detector and every character it hides', () => {
  const { shown, result } = hidden({ name: 'widgets', note: `keep this ${PEM} and this` });
  expect(shown).toEqual({ name: 'widgets', note: 'keep this [masked:private-key] and this' });
  expect(result).toEqual({
    count: 1,
    length: PEM.length,
    entries: [{ path: '$.note', detector: 'private-key', length: PEM.length }],
  });
  expect(JSON.stringify(result)).not.toContain('DROP TABLE');
});

test('several masks in one string are told apart; nothing masked is undefined', () => {
  const { result } = hidden({ text: 'mail ops@example.com about TCK-123456 today' });
  expect(result?.entries).toEqual([
    { path: '$.text', detector: 'email', length: 'ops@example.com'.length },
    { path: '$.text', detector: 'ticket', length: 10 },
  ]);
  expect(result).toMatchObject({ count: 2, length: 25 });
  expect(hidden({ name: 'widgets', n: 3 }).result).toBeUndefined();
});

test('a value under a password-like key counts its whole JSON; a JSON path field; paths into arrays', () => {
  const { result } = hidden({
    config: { password: { user: 'root', pass: 'hunter22' } },
    card: 4111,
    items: ['fine', 'to ops@example.com'],
  });
  expect(result?.entries).toEqual([
    {
      path: '$.config.password',
      detector: 'password-assignment',
      length: '{"pass":"hunter22","user":"root"}'.length,
    },
    { path: '$.card', detector: 'field', length: 4 },
    { path: '$.items[1]', detector: 'email', length: 15 },
  ]);
});

test('a masked key appears in the path as reviewers see it, never as it was', () => {
  const { shown, result } = hidden({ 'to bob@example.com': 'x', 'odd key': 'ops@example.com' });
  expect(Object.keys(shown as object)).toEqual(['to [masked:email]', 'odd key']);
  expect(result?.entries).toEqual([
    { path: "$['to [masked:email]']", detector: 'email', length: 15 },
    { path: "$['odd key']", detector: 'email', length: 15 },
  ]);
  expect(JSON.stringify(result)).not.toContain('bob@example.com');
});

test('bounded: at most 32 entries, count and length cover them all', () => {
  const args = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, `u${i}@example.com`]));
  const { result } = hidden(args);
  expect(result?.count).toBe(40);
  expect(result?.entries).toHaveLength(32);
  expect(result?.length).toBe(Object.values(args).reduce((n, v) => n + v.length, 0));
  expect(describeMasked(result!, 2)).toBe(
    'email at $.k0 (14 characters), email at $.k1 (14 characters) and 38 more',
  );
});

test('a marker cannot be forged by the arguments (a fresh nonce each time); characters are code points', () => {
  const a = maskMarker();
  const b = maskMarker();
  expect(a.replacement).not.toBe(b.replacement);
  const forged = a.replacement.replace('{name}', 'email');
  expect(forged.match(b.pattern)).toBeNull();
  expect(codePoints('a😀b')).toBe(3);
});

test('a level whose shape a view does not keep counts whole: a member dropped from what reviewers see is counted', () => {
  // A masked key renamed onto another member's name: reviewers see one member where the call has
  // two, and `DROP TABLE` is in neither the view nor (before) the count.
  const marker = maskMarker();
  const mark = (name: string) => marker.replacement.replace('{name}', name);
  const config = { 'to bob@example.com': 'x', '[masked:email]': 'DROP TABLE customers', keep: 'fine' };
  const original = { name: 'widgets', config };
  const shown = { name: 'widgets', config: { '[masked:email]': 'x', keep: 'fine' } };
  const marked = {
    name: 'widgets',
    config: { [`to ${mark('email')}`]: 'x', '[masked:email]': 'DROP TABLE customers', keep: 'fine' },
  };
  const length = canonicalJson(config).length;
  expect(hiddenArguments(original, shown, marked, marker.pattern)).toEqual({
    count: 1,
    length,
    entries: [{ path: '$.config', detector: 'structure', length }],
  });

  // The same when the marked copy, or either copy's array or type, differs from the call.
  const items = ['a', 'to ops@example.com'];
  const markedItems = ['a', `to ${mark('email')}`];
  const itemsLength = canonicalJson(items).length;
  expect(
    hiddenArguments({ items }, { items: ['to [masked:email]'] }, { items: markedItems }, marker.pattern),
  ).toEqual({
    count: 1,
    length: itemsLength,
    entries: [{ path: '$.items', detector: 'structure', length: itemsLength }],
  });
  expect(
    hiddenArguments(
      { items },
      { items: { 0: 'a', 1: 'to [masked:email]' } },
      { items: markedItems },
      marker.pattern,
    )?.entries,
  ).toEqual([{ path: '$.items', detector: 'structure', length: itemsLength }]);
  // A key the view renamed where the marked copy kept it (or renamed without a marker): whole.
  expect(
    hiddenArguments(
      { a: 'x', b: 'y' },
      { a: 'x', '[masked:b]': 'y' },
      { a: 'x', b: 'y', c: 'z' },
      marker.pattern,
    )?.entries,
  ).toEqual([{ path: '$', detector: 'structure', length: '{"a":"x","b":"y"}'.length }]);
  expect(
    hiddenArguments(
      { a: 'x', b: 'y' },
      { a: 'x', '[masked:b]': 'y' },
      { a: 'x', '[masked:b]': 'y' },
      marker.pattern,
    )?.entries,
  ).toEqual([{ path: '$', detector: 'structure', length: '{"a":"x","b":"y"}'.length }]);
});

test('masks a repeated kept piece cannot tell apart make one entry: no entry can be made to look small', () => {
  // ` mid ` is kept after the key and also inside it: aligned on the first one, the key looked 29
  // characters long and the email 1548.
  const pem = `-----BEGIN PRIVATE KEY-----\nx mid y ${'A'.repeat(1500)}\n-----END PRIVATE KEY-----`;
  const { shown, result } = hidden({ note: `pre ${pem} mid ops@example.com post` });
  expect(shown).toEqual({ note: 'pre [masked:private-key] mid [masked:email] post' });
  expect(result).toEqual({
    count: 2,
    length: pem.length + 'ops@example.com'.length,
    entries: [{ path: '$.note', detector: 'private-key,email', length: pem.length + 15 }],
  });
  // Kept text that occurs once still tells the masks apart, around an ambiguous run too.
  const { result: apart } = hidden({
    note: `a ops@example.com b ${pem} mid x@example.com mid TCK-123456 end`,
  });
  expect(apart?.entries).toEqual([
    { path: '$.note', detector: 'email', length: 15 },
    { path: '$.note', detector: 'private-key,email,ticket', length: pem.length + 13 + 10 },
  ]);
  expect(apart?.count).toBe(4);
});
