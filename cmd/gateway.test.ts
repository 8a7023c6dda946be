import { hostAllowlist, parseListen, upstreamServer } from './gateway.js';

test('parseListen', () => {
  expect(parseListen('127.0.0.1:8080', '--listen')).toEqual({ host: '127.0.0.1', port: 8080 });
  expect(parseListen('[::1]:9090', '--listen')).toEqual({ host: '::1', port: 9090 });
  expect(parseListen(':8443', '--listen')).toEqual({ host: '0.0.0.0', port: 8443 });
  expect(parseListen('localhost:0', '--listen')).toEqual({ host: 'localhost', port: 0 });
  expect(() => parseListen('8080', '--listen')).toThrow(/--listen: expected HOST:PORT, got "8080"/);
  expect(() => parseListen('h:70000', '--admin-listen')).toThrow(/--admin-listen/);
});

test('hostAllowlist: loopback listeners refuse foreign Host names by default', () => {
  expect(hostAllowlist(undefined, '127.0.0.1')).toEqual(['localhost', '127.0.0.1', '[::1]']);
  expect(hostAllowlist(undefined, '::1')).toEqual(['localhost', '127.0.0.1', '[::1]']);
  expect(hostAllowlist(undefined, 'localhost')).toEqual(['localhost', '127.0.0.1', '[::1]']);
  // Not loopback: Host names are the deployment's (Services, ingress), no default list.
  expect(hostAllowlist(undefined, '0.0.0.0')).toBeUndefined();
  expect(hostAllowlist('mcp.example.com, 127.0.0.1', '127.0.0.1')).toEqual(['mcp.example.com', '127.0.0.1']);
  expect(hostAllowlist('any', '127.0.0.1')).toBeUndefined();
});

test("approvals name a gateway's upstream, never its credentials", () => {
  expect(upstreamServer('http://bot:s3cret@127.0.0.1:3000/mcp?token=x#f')).toBe('http://127.0.0.1:3000/mcp');
  expect(upstreamServer('https://mcp.example.com/mcp')).not.toBe(
    upstreamServer('https://mcp.example.com/other'),
  );
});
