/**
 * Which engine runs user patterns: re2js, V8's backtracking engine with its linear fallback (what
 * pkg/mask uses), or V8's linear engine for every run (`l` flag). Prints a markdown table; the
 * numbers and the reasoning are in docs/performance.md (Masking).
 *
 * Usage: make build && node dist/pkg/mask/engine-bench.js
 */
import { RE2JS } from 're2js';
import { v8LinearFallbackActive } from './patterns.js';

const linearFlag = 'l';

function typicalText(bytes: number): string {
  const words =
    'the cache eviction path regresses when the upstream returns a partial page and the retry loop reads a stale cursor'.split(
      ' ',
    );
  let s = '';
  for (let i = 0; s.length < bytes; i++) {
    s += `${words[(i * 7) % words.length]} `;
    if (i % 400 === 0) s += 'ops.alerts@example.com TCK-123456 build-7.corp.internal ';
  }
  return s;
}

function time(fn: () => number, minMs = 400): { ms: number; result: number } {
  let result = fn();
  let n = 1;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs) {
    result = fn();
    n++;
  }
  return { ms: (performance.now() - t0) / (n - 1 || 1), result };
}

function countV8(re: RegExp, s: string): number {
  re.lastIndex = 0;
  let c = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    c++;
    if (m[0].length === 0) re.lastIndex++;
  }
  return c;
}

function countRe2(re: RE2JS, s: string): number {
  const m = re.matcher(s);
  let c = 0;
  while (m.find()) c++;
  return c;
}

function main(): void {
  if (!v8LinearFallbackActive()) throw new Error('V8 linear engine flags could not be set in this process');
  const text = typicalText(1_000_000);
  const mb = text.length / 1e6;
  const patterns: Array<[string, string]> = [
    ['email-like (starts with a class)', '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}'],
    ['literal prefix', 'TCK-[0-9]{6}'],
    ['class then literal', '[a-z0-9-]+\\.corp\\.internal'],
  ];
  const rows: string[] = [
    '| pattern | re2js MB/s | V8 + fallback MB/s | V8 `l` MB/s |',
    '| --- | ---: | ---: | ---: |',
  ];
  for (const [name, src] of patterns) {
    const re2 = RE2JS.compile(src);
    const v8 = new RegExp(src, 'g');
    const lin = new RegExp(src, `g${linearFlag}`);
    const a = time(() => countRe2(re2, text));
    const b = time(() => countV8(v8, text));
    const c = time(() => countV8(lin, text));
    if (a.result !== b.result || b.result !== c.result) throw new Error(`${name}: engines disagree`);
    rows.push(
      `| ${name} | ${(mb / (a.ms / 1000)).toFixed(0)} | ${(mb / (b.ms / 1000)).toFixed(0)} | ${(mb / (c.ms / 1000)).toFixed(0)} |`,
    );
  }
  const hostile: Array<[string, string, string]> = [
    ['(a+)+$', '(a+)+$', `${'a'.repeat(100_000)}!`],
    ['(x+x+)+y', '(x+x+)+y', 'x'.repeat(100_000)],
    ['(a|aa)+b', '(a|aa)+b', 'a'.repeat(100_000)],
  ];
  rows.push(
    '',
    '| hostile pattern, 100 KB input | re2js ms | V8 + fallback ms | V8 `l` ms |',
    '| --- | ---: | ---: | ---: |',
  );
  for (const [name, src, input] of hostile) {
    const re2 = RE2JS.compile(src);
    const v8 = new RegExp(src, 'g');
    const lin = new RegExp(src, `g${linearFlag}`);
    const a = time(() => countRe2(re2, input), 200);
    const b = time(() => countV8(v8, input), 200);
    const c = time(() => countV8(lin, input), 200);
    rows.push(`| \`${name}\` | ${a.ms.toFixed(1)} | ${b.ms.toFixed(1)} | ${c.ms.toFixed(1)} |`);
  }
  process.stdout.write(`${rows.join('\n')}\n`);
}

main();
