import { createRequire } from 'node:module';

/**
 * `node:http`, loaded with `require`. An ESM `import … from 'node:http'` builds the module's
 * namespace by reading every export, and one of them is the lazy `WebSocket` getter: that loads
 * Node's bundled undici (a 745 KB bundle) into every process, ~10 MiB of resident memory that
 * nothing here uses. `require` does not read the getters. Type-only imports from 'node:http' are
 * fine (erased at compile time); value imports should come from here.
 *
 * @example
 * import { createServer } from '../node-http.js';
 */
const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export const { Agent, createServer, request, get, STATUS_CODES, METHODS } = http;
export default http;
