import { HeldCalls, MAX_LEFT_OPEN } from './held-calls.js';

/** A call held now, or one left open (`leftOpen`), recording what happened to it. */
function entry(leftOpen = false) {
  const seen = { cancelled: [] as string[], forgotten: 0 };
  return {
    seen,
    call: {
      cancel: (reason: string) => seen.cancelled.push(reason),
      ...(leftOpen ? { leftOpen: { forget: () => seen.forgotten++ } } : {}),
    },
  };
}

describe('HeldCalls', () => {
  it('a late notifications/cancelled cancels a left-open call once; a held one stays until its own end', () => {
    const calls = new HeldCalls();
    const held = entry();
    const left = entry(true);
    const removeHeld = calls.add('s:1', '1', held.call);
    calls.add('s:1', '2', left.call);
    calls.cancel('s:1', '2', 'the client cancelled the request');
    calls.cancel('s:1', '2', 'again');
    expect(left.seen.cancelled).toEqual(['the client cancelled the request']);
    calls.cancel('s:1', '1', 'the client cancelled the request');
    expect(held.seen.cancelled).toHaveLength(1);
    expect(calls.size('s:1')).toBe(1);
    removeHeld();
    expect(calls.size('s:1')).toBe(0);
    // Another scope's id is not this one's.
    const other = entry(true);
    calls.add('s:2', '1', other.call);
    calls.cancel('s:1', '1', 'x');
    expect(other.seen.cancelled).toEqual([]);
  });

  it('the session deleted cancels everything in it; a session that expired forgets its left-open calls, cancelling nothing', () => {
    const calls = new HeldCalls();
    const held = entry();
    const left = entry(true);
    calls.add('s:1', '1', held.call);
    calls.add('s:1', '2', left.call);
    calls.end('s:1', 'the client ended the session');
    expect(held.seen.cancelled).toEqual(['the client ended the session']);
    expect(left.seen.cancelled).toEqual(['the client ended the session']);
    expect(calls.size('s:1')).toBe(0);

    const stillHeld = entry();
    const idle = entry(true);
    calls.add('s:2', '1', stillHeld.call);
    calls.add('s:2', '2', idle.call);
    calls.end('s:2');
    expect(idle.seen).toEqual({ cancelled: [], forgotten: 1 });
    expect(stillHeld.seen.cancelled).toEqual([]);
    calls.cancel('s:2', '2', 'late');
    expect(idle.seen.cancelled).toEqual([]);
    expect(calls.size('s:2')).toBe(1);
  });

  it('a repeat with the same id replaces a left-open entry (forgotten); a left-open entry never replaces a held one', () => {
    const calls = new HeldCalls();
    const left = entry(true);
    calls.add('p:alice', '7', left.call);
    const repeat = entry();
    const removeRepeat = calls.add('p:alice', '7', repeat.call);
    expect(left.seen.forgotten).toBe(1);
    const late = entry(true);
    const removeLate = calls.add('p:alice', '7', late.call);
    expect(late.seen.forgotten).toBe(1);
    removeLate();
    calls.cancel('p:alice', '7', 'the client cancelled the request');
    expect(repeat.seen.cancelled).toEqual(['the client cancelled the request']);
    expect(left.seen.cancelled).toEqual([]);
    removeRepeat();
    expect(calls.size('p:alice')).toBe(0);
  });

  it(`keeps at most ${MAX_LEFT_OPEN} left-open calls a session, forgetting the oldest`, () => {
    const calls = new HeldCalls();
    const held = entry();
    calls.add('s:1', 'held', held.call);
    const left = Array.from({ length: MAX_LEFT_OPEN + 2 }, () => entry(true));
    for (const [i, e] of left.entries()) calls.add('s:1', String(i), e.call);
    expect(calls.size('s:1')).toBe(MAX_LEFT_OPEN + 1);
    expect(left.slice(0, 2).map((e) => e.seen.forgotten)).toEqual([1, 1]);
    expect(left.slice(2).every((e) => e.seen.forgotten === 0)).toBe(true);
    calls.cancel('s:1', '0', 'late');
    expect(left[0]!.seen.cancelled).toEqual([]);
    calls.cancel('s:1', 'held', 'x');
    expect(held.seen.cancelled).toEqual(['x']);
  });
});
