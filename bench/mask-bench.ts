/**
 * Masker micro-benchmark: bytes/s through `createMasker` (every built-in detector, the bench
 * policy's patterns and JSON paths) on typical JSON tool results, on one core. Bytes are the
 * serialised size of the JSON-RPC message masked. Prints one JSON line (MaskBenchResult).
 *
 * Usage: node dist/bench/mask-bench.js [--seconds 2]
 */
import { parseArgs } from 'node:util';
import { createMasker } from '../pkg/mask/index.js';
import type { MaskingRule } from '../pkg/policy/schema.js';
import { typicalJsonText, typicalRecords } from './fixtures.js';
import { benchPolicy } from './policy.js';
import type { MaskBenchResult } from './report.js';

function measure(fn: () => number, seconds: number): { perSec: number; hits: number } {
  // Warm up (JIT, caches), then time whole batches until `seconds` have passed.
  let hits = 0;
  for (let i = 0; i < 20; i++) hits = fn();
  let n = 0;
  const t0 = performance.now();
  let t1 = t0;
  while (t1 - t0 < seconds * 1000) {
    for (let i = 0; i < 10; i++) fn();
    n += 10;
    t1 = performance.now();
  }
  return { perSec: (n * 1000) / (t1 - t0), hits };
}

function main(): void {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' } } });
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new Error('--seconds must be a positive number');
  const policy = benchPolicy('http://127.0.0.1/unused/v2.0');
  const masking = (policy.doc.spec as { masking: MaskingRule[] }).masking;
  const masker = createMasker(masking.map((rule) => ({ policy: 'bench', rule })));

  const big = typicalJsonText(64 * 1024);
  const docs: Array<{ name: string; message: unknown }> = [
    {
      name: 'tools/call result, 64 KiB JSON as text content',
      message: { jsonrpc: '2.0', id: 7, result: { content: [{ type: 'text', text: big }] } },
    },
    {
      name: 'tools/call result, 64 KiB structuredContent',
      message: {
        jsonrpc: '2.0',
        id: 8,
        result: { content: [], structuredContent: { items: typicalRecords(64 * 1024, 9) } },
      },
    },
    {
      name: 'tools/call result, small (~200 B)',
      message: {
        jsonrpc: '2.0',
        id: 9,
        result: {
          content: [
            {
              type: 'text',
              text: '{"tool":"get_issue","owner":"acme","repo":"widgets","number":42,"state":"open","title":"cache eviction regression"}',
            },
          ],
        },
      },
    },
  ];
  const result: MaskBenchResult = { detectors: policy.detectors, docs: [] };
  let totalBytes = 0;
  let totalSec = 0;
  for (const d of docs) {
    const bytes = Buffer.byteLength(JSON.stringify(d.message));
    const r = measure(
      () =>
        masker.maskMessage(d.message, { method: 'tools/call', tool: 'list_issue', session: 'bench' }).hits
          .length,
      seconds,
    );
    const mbPerSec = (bytes * r.perSec) / 1e6;
    result.docs?.push({ name: d.name, bytes, mbPerSec: Math.round(mbPerSec * 10) / 10, hits: r.hits });
    if (bytes >= 32 * 1024) {
      totalBytes += bytes;
      totalSec += 1 / r.perSec;
    }
  }
  // The headline: the large documents together (bytes / time), i.e. a harmonic mean of their rates.
  result.mbPerSec = Math.round((totalBytes / totalSec / 1e6) * 10) / 10;
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main();
