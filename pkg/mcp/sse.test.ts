import { type SseItem, SseParser, serializeSseComment, serializeSseEvent } from './sse.js';

function feedAll(chunks: string[]): { items: SseItem[]; truncated: boolean } {
  const p = new SseParser();
  const items: SseItem[] = [];
  for (const c of chunks) items.push(...p.push(c));
  return { items, truncated: p.end().truncated };
}

const stream =
  'retry: 3000\n: keepalive\nid: 1\nevent: message\ndata: {"a":1}\n\nid: 2\ndata: line1\ndata: line2\n\n';
const expected: SseItem[] = [
  { type: 'comment', text: ' keepalive' },
  { type: 'event', id: '1', event: 'message', data: '{"a":1}', retry: 3000 },
  { type: 'event', id: '2', data: 'line1\nline2' },
];

describe('SseParser', () => {
  test('parses a whole stream', () => {
    expect(feedAll([stream])).toEqual({ items: expected, truncated: false });
  });

  test('same result for every split point, with LF, CRLF and CR line ends', () => {
    for (const eol of ['\n', '\r\n', '\r']) {
      const text = stream.replace(/\n/g, eol);
      for (let i = 0; i <= text.length; i++) {
        expect(feedAll([text.slice(0, i), text.slice(i)])).toEqual({ items: expected, truncated: false });
      }
    }
  });

  test('one character at a time', () => {
    expect(feedAll([...stream.replace(/\n/g, '\r\n')])).toEqual({ items: expected, truncated: false });
  });

  test('a stream cut inside an event is truncated', () => {
    expect(feedAll(['id: 1\ndata: {"a"']).truncated).toBe(true);
    expect(feedAll(['id: 1\ndata: {"a":1}\n']).truncated).toBe(true);
    expect(feedAll(['data: x\n\n']).truncated).toBe(false);
  });

  test('field without colon, no space after colon, unknown fields, BOM', () => {
    const { items } = feedAll(['\ufeffdata\nfoo: bar\ndata:x\nretry: nope\n\n']);
    expect(items).toEqual([{ type: 'event', data: '\nx' }]);
  });

  test('oversize events are refused', () => {
    const p = new SseParser({ maxEventBytes: 10 });
    expect(() => p.push(`data: ${'x'.repeat(20)}`)).toThrow(/larger than 10 bytes/);
  });
});

describe('serialize', () => {
  test('round trip', () => {
    const text =
      serializeSseEvent({ id: '9', event: 'message', data: 'a\nb', retry: 5 }) + serializeSseComment('ka');
    expect(feedAll([text]).items).toEqual([
      { type: 'event', id: '9', event: 'message', data: 'a\nb', retry: 5 },
      { type: 'comment', text: 'ka' },
    ]);
  });
  test('line breaks cannot be injected through id or event', () => {
    const text = serializeSseEvent({ id: '1\ndata: evil', data: 'ok' });
    expect(feedAll([text]).items).toEqual([{ type: 'event', id: '1data: evil', data: 'ok' }]);
  });
});
