import { parseListen } from './gateway.js';

test('parseListen', () => {
  expect(parseListen('127.0.0.1:8080', '--listen')).toEqual({ host: '127.0.0.1', port: 8080 });
  expect(parseListen('[::1]:9090', '--listen')).toEqual({ host: '::1', port: 9090 });
  expect(parseListen(':8443', '--listen')).toEqual({ host: '0.0.0.0', port: 8443 });
  expect(parseListen('localhost:0', '--listen')).toEqual({ host: 'localhost', port: 0 });
  expect(() => parseListen('8080', '--listen')).toThrow(/--listen: expected HOST:PORT, got "8080"/);
  expect(() => parseListen('h:70000', '--admin-listen')).toThrow(/--admin-listen/);
});
