import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isWardenError } from '../errors.js';
import { decodeUtf8, parseSize, readBody } from './body.js';
import { allowsBatches, decodeMcpHeaderValue, envelopeVersion, isStatelessVersion } from './version.js';

test('parseSize', () => {
  expect(parseSize('4MiB')).toBe(4 * 1024 * 1024);
  expect(parseSize('512KiB')).toBe(512 * 1024);
  expect(parseSize('1000')).toBe(1000);
  expect(parseSize('2MB')).toBe(2_000_000);
  expect(() => parseSize('lots')).toThrow(/Invalid size/);
  expect(() => parseSize('0')).toThrow(/must be positive/);
});

test('decodeUtf8 is strict', () => {
  expect(decodeUtf8(Buffer.from('héllo'))).toBe('héllo');
  expect(() => decodeUtf8(Buffer.from([0x7b, 0xff, 0x7d]))).toThrow(/not valid UTF-8/);
  try {
    decodeUtf8(Buffer.from([0xc3]));
  } catch (err) {
    expect(isWardenError(err, 'ERR_BAD_UTF8')).toBe(true);
  }
});

describe('readBody over a real socket', () => {
  async function post(body: Buffer, limit: number, chunked: boolean): Promise<string> {
    const server = createServer((req, res) => {
      readBody(req, limit).then(
        (b) => res.end(`ok ${b.length}`),
        (err: unknown) => res.end(isWardenError(err) ? err.code : 'other'),
      );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const answer = await new Promise<string>((resolve, reject) => {
      const req = request(
        {
          port,
          host: '127.0.0.1',
          method: 'POST',
          headers: chunked ? {} : { 'content-length': body.length },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => {
            text += c.toString();
          });
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      // Two writes, so a chunked body arrives in pieces.
      req.write(body.subarray(0, body.length >> 1));
      req.end(body.subarray(body.length >> 1));
    });
    server.close();
    return answer;
  }
  test('under the limit', async () => {
    expect(await post(Buffer.alloc(100), 100, false)).toBe('ok 100');
    expect(await post(Buffer.alloc(100), 100, true)).toBe('ok 100');
  });
  test('over the limit, declared or streamed', async () => {
    expect(await post(Buffer.alloc(101), 100, false)).toBe('ERR_BODY_TOO_LARGE');
    expect(await post(Buffer.alloc(5000), 100, true)).toBe('ERR_BODY_TOO_LARGE');
  });
});

test('protocol version helpers', () => {
  expect(isStatelessVersion('2026-07-28')).toBe(true);
  expect(isStatelessVersion('2025-11-25')).toBe(false);
  expect(isStatelessVersion(undefined)).toBe(false);
  expect(allowsBatches(undefined)).toBe(true);
  expect(allowsBatches('2025-03-26')).toBe(true);
  expect(allowsBatches('2025-06-18')).toBe(false);
  expect(
    envelopeVersion({ params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }),
  ).toBe('2026-07-28');
  expect(envelopeVersion({ params: {} })).toBeUndefined();
  expect(decodeMcpHeaderValue('get_weather')).toBe('get_weather');
  expect(decodeMcpHeaderValue(`=?base64?${Buffer.from('héllo').toString('base64')}?=`)).toBe('héllo');
  expect(decodeMcpHeaderValue('=?base64?***?=')).toBeUndefined();
});
