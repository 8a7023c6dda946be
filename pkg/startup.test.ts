import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * holdOptimizingCompiler / releaseOptimizingCompiler change a process-wide V8 flag, so they are
 * checked in a child process (Node runs the TypeScript module directly), with V8's own trace of
 * what it optimizes: nothing reaches TurboFan while held, hot code does again once released.
 */
test('start-up runs without TurboFan, and traffic after start-up gets it back', () => {
  const dir = mkdtempSync(join(tmpdir(), 'startup-'));
  const script = join(dir, 'child.mjs');
  const startup = pathToFileURL(join(import.meta.dirname, 'startup.ts')).href;
  writeFileSync(
    script,
    `
import { holdOptimizingCompiler, releaseOptimizingCompiler, optimizingCompilerHeld } from ${JSON.stringify(startup)};
function duringStartup(s) { let h = 0; for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0; return h; }
function afterStartup(s) { let h = 7; for (let i = 0; i < s.length; i++) h = (h * 17 + s.charCodeAt(i)) | 0; return h; }
const s = 'x'.repeat(1000);
let t = 0;
holdOptimizingCompiler();
console.log('held', optimizingCompilerHeld());
for (let i = 0; i < 20000; i++) t += duringStartup(s);
console.log('RELEASE');
releaseOptimizingCompiler();
console.log('held', optimizingCompilerHeld());
for (let i = 0; i < 20000; i++) t += afterStartup(s);
console.log('done', t !== 0);
`,
  );
  const r = spawnSync(process.execPath, ['--trace-opt', script], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status).toBe(0);
  const [before, after] = r.stdout.split('RELEASE');
  const turbofanned = (text: string | undefined, fn: string) =>
    (text ?? '')
      .split('\n')
      .some((l) => l.includes('TURBOFAN') && l.includes(fn) && /completed|compiling/.test(l));
  expect(before).toContain('held true');
  expect(turbofanned(before, 'duringStartup')).toBe(false);
  expect(after).toContain('held false');
  expect(turbofanned(after, 'afterStartup')).toBe(true);
  expect(after).toContain('done true');
});
