import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * Why pkg/node-http.ts exists, checked in a fresh node process: an ESM import of node:http loads
 * Node's bundled undici (its `WebSocket` getter is read), the helper's `require` does not.
 */
function undiciLoadedAfter(source: string): boolean {
  const run = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `${source}\nprocess.stdout.write(String(process.moduleLoadList.some((m) => m.includes('deps/undici'))));`,
    ],
    { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '' } },
  );
  if (run.status !== 0) throw new Error(run.stderr);
  return run.stdout === 'true';
}

test('pkg/node-http.ts gives a working node:http without loading undici', () => {
  const helper = JSON.stringify(join(import.meta.dirname, 'node-http.ts'));
  expect(
    undiciLoadedAfter(
      `const { createServer, request, Agent } = await import(${helper});
       if (typeof createServer !== 'function' || typeof request !== 'function' || typeof Agent !== 'function') throw new Error('missing exports');`,
    ),
  ).toBe(false);
});

test('an ESM import of node:http does load it (the reason for the helper)', () => {
  expect(undiciLoadedAfter("await import('node:http');")).toBe(true);
});
