/**
 * A throwaway OCI registry on loopback for the image tests: go-containerregistry's `crane registry
 * serve` (built by hack/build-sign-tools.sh into .cache/bin), blobs in memory, gone when stopped.
 * Registries on 127.0.0.1 are spoken to over plain HTTP by crane and cosign, as by docker.
 *
 * @example
 * const registry = await startRegistry();
 * await runProcess(crane, ['push', ociDir, `${registry.host}/mcp-warden:e2e`], { env: process.env });
 * await registry.stop();
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { TOOLS_DIR } from './harness.js';

export const CRANE = join(TOOLS_DIR, 'crane');
export const COSIGN = join(TOOLS_DIR, 'cosign');

export interface Registry {
  /** `127.0.0.1:PORT`: the registry part of an image reference. */
  host: string;
  stop(): Promise<void>;
}

/**
 * Runs crane's registry and stops it once this process is gone too (a shell watchdog polls the
 * test process every second), so an interrupted run leaves nothing listening.
 */
const WATCHED = `parent=$1; shift
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; exit 0' TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
kill -TERM "$child" 2>/dev/null
`;

export async function startRegistry(timeoutMs = 30_000): Promise<Registry> {
  const child = spawn(
    '/bin/sh',
    ['-c', WATCHED, 'registry', String(process.pid), CRANE, 'registry', 'serve', '--address', '127.0.0.1:0'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  const exited = once(child, 'exit');
  const port = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`crane registry serve did not start:\n${output}`)),
      timeoutMs,
    );
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      const m = /serving on port (\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`crane registry serve exited (${code}):\n${output}`));
    });
  });
  return {
    host: `127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
