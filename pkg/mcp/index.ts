/** JSON-RPC and SSE framing for the MCP data path. */
export * from './body.js';
export * from './jsonrpc.js';
export * from './sse.js';
export * from './version.js';
