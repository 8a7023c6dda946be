import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Run this repo's CLI from its TypeScript sources as a child process (type stripping, `.js`
 * specifiers resolved to `.ts`), so tests exercise the code under test, not a stale dist/.
 */
const LOADER = `export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err?.code === 'ERR_MODULE_NOT_FOUND' && /^\\.{1,2}\\//.test(specifier) && specifier.endsWith('.js')) {
      return next(specifier.slice(0, -3) + '.ts', context);
    }
    throw err;
  }
}
`;

export async function spawnCli(
  dir: string,
  args: string[],
): Promise<ChildProcess & { output: () => string }> {
  const loader = join(dir, 'ts-loader.mjs');
  const register = join(dir, 'ts-register.mjs');
  if (!existsSync(register)) {
    await writeFile(loader, LOADER);
    await writeFile(
      register,
      `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${loader}`)});\n`,
    );
  }
  const child = spawn(
    process.execPath,
    ['--experimental-transform-types', '--no-warnings', '--import', register, 'cmd/mcp-warden.ts', ...args],
    {
      cwd: join(import.meta.dirname, '../../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MCP_WARDEN_LOG_LEVEL: 'info' },
    },
  );
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return Object.assign(child, { output: () => out });
}

/** Resolve with the exit code. */
export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Wait until the child's output matches `re` (event-driven), or it exits. */
export function waitForOutput(
  child: ChildProcess & { output: () => string },
  re: RegExp,
  timeoutMs = 20_000,
): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const m = child.output().match(re);
      if (m) {
        cleanup();
        resolve(m);
        return true;
      }
      return false;
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`exited with ${code} before ${re}: ${child.output()}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for ${re}: ${child.output()}`));
    }, timeoutMs);
    const onData = (): void => {
      check();
    };
    function cleanup(): void {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    }
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
    check();
  });
}
