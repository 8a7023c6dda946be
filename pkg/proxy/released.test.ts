import { SseParser } from '../mcp/sse.js';
import { ReleasedEvents } from './released.js';

const events = (text: string) =>
  new SseParser().push(text).map((e) => (e.type === 'event' ? { id: e.id, data: e.data } : e));

test('a release follows the upstream event before it; replayed after it, in order, past a sequence', () => {
  const r = new ReleasedEvents();
  const a = r.add('s1_3', { event: 's1_2', requestKey: 'n:7' }, '{"n":1}');
  const b = r.add('s1_3', undefined, '{"n":2}');
  r.add('s1_5', { event: 's1_4', requestKey: 'n:8' }, '{"n":3}');
  expect(a).toBe('s1_3~w1');
  expect(r.position(b)).toEqual({ after: 's1_3', seq: 2 });
  expect(r.position('s1_3')).toBeUndefined();
  expect(events(r.replayAfter('s1_3', 0, 'P.'))).toEqual([
    { id: 'P.s1_3~w1', data: '{"n":1}' },
    { id: 'P.s1_3~w2', data: '{"n":2}' },
  ]);
  expect(r.replayAfter('s1_4', 0, 'P.')).toBe('');
  expect(r.isReleased('s1_2', 'n:7')).toBe(true);
  // Another request of the same event (a batch), or the same id on another event: not released.
  expect(r.isReleased('s1_2', 'n:8')).toBe(false);
  expect(r.isReleased('s1_3', 'n:7')).toBe(false);
});

test('past a sequence; each replayed once at most, and not once the client answered it', () => {
  const r = new ReleasedEvents();
  r.add('s1_3', { event: 's1_2', requestKey: 'n:7' }, '{"n":1}');
  const b = r.add('s1_3', { event: undefined, requestKey: 'n:8' }, '{"n":2}');
  r.add('s1_3', { event: 's1_2', requestKey: 'n:9' }, '{"n":3}');
  r.answered('n:9');
  expect(events(r.replayAfter('s1_3', 1, 'P.'))).toEqual([{ id: 'P.s1_3~w2', data: '{"n":2}' }]);
  // An upstream repeating the event id, or a second resume from before them: nothing again.
  expect(r.replayAfter('s1_3', 1, 'P.')).toBe('');
  expect(events(r.replayAfter('s1_3', 0, 'P.'))).toEqual([{ id: 'P.s1_3~w1', data: '{"n":1}' }]);
  expect(r.replayAfter('s1_3', 0, 'P.')).toBe('');
  // Still known by id (a resume naming it) and by origin (not held again).
  expect(r.position(b)).toEqual({ after: 's1_3', seq: 2 });
  expect(r.isReleased('s1_2', 'n:7')).toBe(true);
  expect(r.isReleased('s1_2', 'n:9')).toBe(true);
});

test('a release that could not be written is forgotten; the oldest go first beyond the cap', () => {
  const r = new ReleasedEvents();
  const a = r.add('x', { event: 'o1', requestKey: 'n:1' }, '{}');
  r.delete(a);
  expect(r.position(a)).toBeUndefined();
  expect(r.isReleased('o1', 'n:1')).toBe(false);
  expect(r.replayAfter('x', 0, '')).toBe('');
  const first = r.add('y', { event: 'o-first', requestKey: 'n:2' }, '{}');
  for (let i = 0; i < ReleasedEvents.MAX; i++) r.add('z', undefined, '{}');
  expect(r.position(first)).toBeUndefined();
  expect(r.isReleased('o-first', 'n:2')).toBe(false);
  expect(r.replayAfter('y', 0, '')).toBe('');
});
