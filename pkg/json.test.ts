import {
  decimal,
  integerValue,
  isJsonObject,
  isRawNumber,
  mayHoldInexactNumber,
  numberText,
  parseJson,
} from './json.js';

const roundTrip = (text: string): string => JSON.stringify(parseJson(text));

describe('parseJson', () => {
  test('JSON.parse corrupts these numbers (the defect this module exists for)', () => {
    expect(JSON.stringify(JSON.parse('{"id":12345678901234567890}'))).toBe('{"id":12345678901234567000}');
    expect(JSON.stringify(JSON.parse('[1e400]'))).toBe('[null]');
  });

  test.each([
    '{"id":12345678901234567890}',
    '{"id":-12345678901234567890}',
    '{"x":0.1234567890123456789}',
    '{"x":9007199254740993}',
    '{"x":4611686018427387904}',
    '[18446744073709551615,9223372036854775807,-9223372036854775808]',
    // Beyond the double's range: exact too when the text takes the lossless path.
    '[12345678901234567890,1e400,-1e400,1e-400,2.5e-324]',
    '{"a":[{"b":{"c":123456789012345678901234567890.5}}]}',
    '12345678901234567890',
    ' \n 12345678901234567890 ',
    '{"x":1.50000000000000000000000001}',
  ])('%s keeps every digit', (text) => {
    expect(roundTrip(text)).toBe(text.trim());
  });

  test('numbers a double carries exactly stay plain numbers, in their shortest spelling', () => {
    const v = parseJson(
      '{"a":1,"b":0.1,"c":1.0,"d":1E3,"e":-0,"f":12345678901234567000,"g":0.30000000000000004}',
    );
    expect(v).toEqual({
      a: 1,
      b: 0.1,
      c: 1,
      d: 1000,
      e: -0,
      f: 12345678901234567000,
      g: 0.30000000000000004,
    });
    expect(JSON.stringify(v)).toBe(
      '{"a":1,"b":0.1,"c":1,"d":1000,"e":0,"f":12345678901234567000,"g":0.30000000000000004}',
    );
  });

  test('a false positive of the scan (long digit runs after a colon inside strings) changes nothing', () => {
    const text = '{"note":"ids: 12345678901234567890, 00000000000000001","n":1234567890123456}';
    expect(mayHoldInexactNumber(text)).toBe(true);
    const v = parseJson(text) as Record<string, unknown>;
    expect(v).toEqual(JSON.parse(text));
    expect(isRawNumber(v['n'])).toBe(false);
  });

  test('typical messages take the plain JSON.parse path', () => {
    for (const text of [
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":42,"t":1700000000000}}}',
      '{"id":"12345678901234567890","sha":"3e4567e89b12d3a456426614174000aa","uuid":"123e4567-e89b-12d3-a456-426614174000"}',
      '{"key":"AKIA7777777777770016","b64":"QUJDREVGMTIzNDU2Nzg5MDEyMzQ1Njc4OTA="}',
      `{"text":"${'1234567890'.repeat(1000)}"}`,
      '{"x":123456789012345,"y":0.12345678901234,"z":1e21,"w":[1.5e-30]}',
    ]) {
      expect(mayHoldInexactNumber(text)).toBe(false);
    }
  });

  test('the scan finds every number that may not round-trip, wherever it starts', () => {
    for (const text of [
      '1234567890123456',
      '[1234567890123456]',
      '{"a": \t-1234567890.123456}',
      '[1,2,0.0000000000000001]',
      '[1,\n\r\t 12345678.12345678e5]',
      `{"pad":"${'x'.repeat(37)}","a":12345678901234567}`,
      `{"digits":"${'1'.repeat(40)}","a":${'9'.repeat(40)}}`,
    ]) {
      for (let pad = 0; pad < 16; pad++)
        expect([pad, mayHoldInexactNumber(' '.repeat(pad) + text)]).toEqual([pad, true]);
    }
  });

  test('beyond the double range with fewer than 16 digits, a number is read as a double (the one exception)', () => {
    // Finding these would cost a scan of every character; no MCP SDK can hold them either.
    expect(mayHoldInexactNumber('[1e400,1e-400]')).toBe(false);
    expect(JSON.stringify(parseJson('[1e400,1e-400]'))).toBe('[null,0]');
  });

  test('syntax errors are thrown as by JSON.parse, on both paths', () => {
    expect(() => parseJson('{"a":')).toThrow(SyntaxError);
    expect(() => parseJson('{"a":12345678901234567890,}')).toThrow(SyntaxError);
  });

  test('an own __proto__ member stays a member on the lossless path', () => {
    const v = parseJson('{"__proto__":{"x":12345678901234567890}}') as Record<string, unknown>;
    expect(Object.hasOwn(v, '__proto__')).toBe(true);
    expect(JSON.stringify(v)).toBe('{"__proto__":{"x":12345678901234567890}}');
  });
});

describe('raw numbers', () => {
  // The first element takes the text down the lossless path, for the numbers it would not (1e400).
  const raw = (text: string): unknown => (parseJson(`[12345678901234567890,${text}]`) as unknown[])[1];

  test('isRawNumber and isJsonObject tell a raw number from an object', () => {
    const v = raw('12345678901234567890');
    expect(isRawNumber(v)).toBe(true);
    expect(typeof v).toBe('object');
    expect(isJsonObject(v)).toBe(false);
    expect(isJsonObject({ rawJSON: '1' })).toBe(true);
    expect(isRawNumber({ rawJSON: '1' })).toBe(false);
    expect(isRawNumber(1)).toBe(false);
  });

  test.each([
    ['12345678901234567890', '12345678901234567890'],
    ['1.2345678901234567890e19', '12345678901234567890'],
    ['12345678901234567890.000', '12345678901234567890'],
    ['-0.1234567890123456789', '-0.1234567890123456789'],
    ['1234567890123456789012345', '1.234567890123456789012345e+24'],
    ['0.00000001234567890123456789', '1.234567890123456789e-8'],
    ['1e400', '1e+400'],
  ])('numberText(%s) is %s', (text, expected) => {
    const v = raw(text);
    expect(isRawNumber(v)).toBe(true);
    expect(numberText(v as never)).toBe(expected);
  });

  test('numberText of a plain number is String(n)', () => {
    expect(numberText(42)).toBe('42');
    expect(numberText(1e21)).toBe('1e+21');
  });

  test('integerValue is the exact integer the text says', () => {
    expect(integerValue(raw('12345678901234567891') as never)).toBe(12345678901234567891n);
    expect(integerValue(raw('-9223372036854775809') as never)).toBe(-9223372036854775809n);
    expect(integerValue(raw('1.2345678901234567891e19') as never)).toBe(12345678901234567891n);
    expect(integerValue(raw('0.1234567890123456789') as never)).toBeUndefined();
    expect(integerValue(raw('123456789012345678901') as never)).toBeUndefined();
    expect(integerValue(raw('123456789012345678901') as never, 21)).toBe(123456789012345678901n);
    expect(integerValue(raw('1e400') as never)).toBeUndefined();
    // A plain number: the value its text says, which is what the upstream receives.
    expect(integerValue(4611686018427388000)).toBe(4611686018427388000n);
    expect(integerValue(42)).toBe(42n);
    expect(integerValue(1.5)).toBeUndefined();
  });

  test('decimal normalizes spellings of one value', () => {
    expect(decimal('1.50e2')).toEqual({ neg: false, digits: '15', exp: 1 });
    expect(decimal('150')).toEqual({ neg: false, digits: '15', exp: 1 });
    expect(decimal('-0.000')).toEqual({ neg: false, digits: '', exp: 0 });
    expect(decimal('x')).toBeUndefined();
  });
});
