import { parseOrigins } from './origins.js';

test('origins as browsers send them, comma-separated', () => {
  expect(parseOrigins('https://agents.example.com, http://localhost:6274')).toEqual([
    'https://agents.example.com',
    'http://localhost:6274',
  ]);
});

test('anything a browser would not send as Origin is refused, naming it and the form to use', () => {
  expect(() => parseOrigins('https://agents.example.com/')).toThrow(/write https:\/\/agents\.example\.com$/);
  expect(() => parseOrigins('https://Agents.example.com')).toThrow(/write https:\/\/agents\.example\.com$/);
  expect(() => parseOrigins('https://a.example.com/app')).toThrow(/not an origin as browsers send it/);
  expect(() => parseOrigins('http://localhost:80')).toThrow(/write http:\/\/localhost$/);
  expect(() => parseOrigins('localhost:6274')).toThrow(/not an http\(s\) origin/);
  expect(() => parseOrigins('*')).toThrow(/"\*" is not an origin/);
  expect(() => parseOrigins('null')).toThrow(/"null" is not an origin/);
  expect(() => parseOrigins(' , ')).toThrow(/no origin given/);
});
