import { SettledServerRequests } from './settled.js';

const entry = (digest: string) => ({
  digest,
  approval: 'a-1',
  outcome: 'denied',
  answer: undefined,
  state: 'sent' as const,
});

describe('SettledServerRequests', () => {
  it('finds a request by id key and params digest only: another digest is another request', () => {
    const settled = new SettledServerRequests();
    settled.add('s:1', entry('sha256:a'));
    expect(settled.get('s:1', 'sha256:a')).toMatchObject({ approval: 'a-1' });
    expect(settled.get('s:1', 'sha256:b')).toBeUndefined();
    expect(settled.get('s:2', 'sha256:a')).toBeUndefined();
  });

  it('keeps at most MAX per session, forgetting the oldest first', () => {
    const settled = new SettledServerRequests();
    for (let i = 0; i <= SettledServerRequests.MAX; i++) settled.add(`n:${i}`, entry(`d${i}`));
    expect(settled.size).toBe(SettledServerRequests.MAX);
    expect(settled.get('n:0', 'd0')).toBeUndefined();
    expect(settled.get('n:1', 'd1')).toBeDefined();
    expect(settled.get(`n:${SettledServerRequests.MAX}`, `d${SettledServerRequests.MAX}`)).toBeDefined();
  });
});
