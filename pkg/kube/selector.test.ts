import { selectorMatches } from './selector.js';

describe('selectorMatches', () => {
  const labels = { app: 'github-mcp', tier: 'backend' };

  test('an empty or absent selector selects everything', () => {
    expect(selectorMatches(undefined, labels)).toBe(true);
    expect(selectorMatches(null, {})).toBe(true);
    expect(selectorMatches({}, labels)).toBe(true);
    expect(selectorMatches({ matchLabels: {}, matchExpressions: [] }, {})).toBe(true);
  });

  test('matchLabels: every pair must hold', () => {
    expect(selectorMatches({ matchLabels: { app: 'github-mcp' } }, labels)).toBe(true);
    expect(selectorMatches({ matchLabels: { app: 'github-mcp', tier: 'frontend' } }, labels)).toBe(false);
    expect(selectorMatches({ matchLabels: { missing: '' } }, labels)).toBe(false);
  });

  test.each([
    [{ key: 'tier', operator: 'In', values: ['backend', 'x'] }, true],
    [{ key: 'tier', operator: 'In', values: ['x'] }, false],
    [{ key: 'nope', operator: 'In', values: ['x'] }, false],
    [{ key: 'tier', operator: 'NotIn', values: ['x'] }, true],
    [{ key: 'tier', operator: 'NotIn', values: ['backend'] }, false],
    [{ key: 'nope', operator: 'NotIn', values: ['backend'] }, true],
    [{ key: 'app', operator: 'Exists' }, true],
    [{ key: 'nope', operator: 'Exists' }, false],
    [{ key: 'nope', operator: 'DoesNotExist' }, true],
    [{ key: 'app', operator: 'DoesNotExist' }, false],
    [{ key: 'app', operator: 'Gt', values: ['1'] }, false],
  ])('matchExpressions %j → %s', (req, expected) => {
    expect(selectorMatches({ matchExpressions: [req] }, labels)).toBe(expected);
  });

  test('matchLabels and matchExpressions combine with AND', () => {
    expect(
      selectorMatches(
        {
          matchLabels: { app: 'github-mcp' },
          matchExpressions: [{ key: 'tier', operator: 'In', values: ['backend'] }],
        },
        labels,
      ),
    ).toBe(true);
    expect(
      selectorMatches(
        { matchLabels: { app: 'github-mcp' }, matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] },
        labels,
      ),
    ).toBe(false);
  });
});
