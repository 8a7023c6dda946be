import { durationError, parseDuration } from './duration.js';
import { selects } from './selector.js';

test.each([
  ['90s', 90_000],
  ['5m', 300_000],
  ['1h30m', 5_400_000],
  ['1.5h', 5_400_000],
  ['500ms', 500],
  ['2h0m1s', 7_201_000],
])('parseDuration(%s) = %d', (text, ms) => {
  expect(parseDuration(text)).toBe(ms);
});

test.each(['', '5', 'm', '5 m', '-5m', '5d', '1h 2m', 'P1D'])('parseDuration(%j) is undefined', (text) => {
  expect(parseDuration(text)).toBeUndefined();
});

test('durationError: bounds and forms', () => {
  expect(durationError('5m')).toBeUndefined();
  expect(durationError('5d')).toMatch(/not a duration.*e\.g\. 90s, 5m, 1h30m/);
  expect(durationError('500ms')).toMatch(/too short: at least 1s/);
  expect(durationError('169h')).toMatch(/too long: at most 168h/);
});

describe('label selectors', () => {
  const labels = { app: 'github-mcp', tier: 'prod' };
  test.each([
    [{}, true],
    [{ matchLabels: { app: 'github-mcp' } }, true],
    [{ matchLabels: { app: 'other' } }, false],
    [{ matchLabels: { missing: '' } }, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'In' as const, values: ['prod', 'staging'] }] }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'NotIn' as const, values: ['prod'] }] }, false],
    [{ matchExpressions: [{ key: 'zone', operator: 'NotIn' as const, values: ['a'] }] }, true],
    [{ matchExpressions: [{ key: 'app', operator: 'Exists' as const }] }, true],
    [{ matchExpressions: [{ key: 'app', operator: 'DoesNotExist' as const }] }, false],
    [
      {
        matchLabels: { app: 'github-mcp' },
        matchExpressions: [{ key: 'zone', operator: 'Exists' as const }],
      },
      false,
    ],
  ])('%j → %s', (selector, want) => {
    expect(selects(selector, labels)).toBe(want);
  });
});
