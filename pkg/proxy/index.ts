/** The data path pipeline: `createProxy` (the MCP proxy) and `startAdminServer` (metrics, health). */
export { startAdminServer } from './admin.js';
export type { ProxyOptions, WardenProxy } from './options.js';
export { createProxy } from './proxy.js';
