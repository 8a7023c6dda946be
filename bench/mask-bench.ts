/**
 * Masker micro-benchmark: bytes/s through `createMasker` (every built-in detector, the bench
 * policy's patterns and JSON paths) on typical JSON tool results, on one core. Bytes are the
 * serialised size of the JSON-RPC message masked. Prints one JSON line (MaskBenchResult).
 *
 * Each document comes in several copies with different content (other seeds), masked in turn:
 * a gateway never masks the same string twice, so nothing the masker remembers about the last
 * string it saw may flatter the numbers.
 *
 * Usage: node dist/bench/mask-bench.js [--seconds 2]
 */
import { parseArgs } from 'node:util';
import { createMasker } from '../pkg/mask/index.js';
import type { MaskingRule } from '../pkg/policy/schema.js';
import { toolCatalogue, typicalJsonText, typicalRecords } from './fixtures.js';
import { benchPolicy } from './policy.js';
import type { MaskBenchResult } from './report.js';

/** Distinct copies of one document masked in turn. */
const COPIES = 8;

function measure(fn: (i: number) => number, seconds: number): { perSec: number; hits: number } {
  // Warm up (JIT, caches), then time whole batches until `seconds` have passed.
  let hits = 0;
  for (let i = 0; i < 20; i++) hits = fn(i);
  let n = 0;
  const t0 = performance.now();
  let t1 = t0;
  while (t1 - t0 < seconds * 1000) {
    for (let i = 0; i < COPIES; i++) fn(i);
    n += COPIES;
    t1 = performance.now();
  }
  return { perSec: (n * 1000) / (t1 - t0), hits };
}

/** The tools/list result of the 40-tool catalogue, copy `k` (one description word padded, same size class). */
function toolList(k: number): unknown {
  const text = JSON.stringify(toolCatalogue()).replaceAll('Repository', `Repository${' '.repeat(k)}`);
  return { jsonrpc: '2.0', id: 3, result: { tools: JSON.parse(text) as unknown } };
}

function main(): void {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' } } });
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new Error('--seconds must be a positive number');
  const policy = benchPolicy('http://127.0.0.1/unused/v2.0');
  const masking = (policy.doc.spec as { masking: MaskingRule[] }).masking;
  const masker = createMasker(masking.map((rule) => ({ policy: 'bench', rule })));

  const copies = <T>(make: (k: number) => T): T[] => Array.from({ length: COPIES }, (_, k) => make(k));
  const docs: Array<{ name: string; messages: unknown[]; method: string; headline: boolean }> = [
    {
      name: 'tools/call result, 64 KiB JSON as text content',
      method: 'tools/call',
      headline: true,
      messages: copies((k) => ({
        jsonrpc: '2.0',
        id: 7,
        result: { content: [{ type: 'text', text: typicalJsonText(64 * 1024, 42 + k) }] },
      })),
    },
    {
      name: 'tools/call result, 64 KiB structuredContent',
      method: 'tools/call',
      headline: true,
      messages: copies((k) => ({
        jsonrpc: '2.0',
        id: 8,
        result: { content: [], structuredContent: { items: typicalRecords(64 * 1024, 9 + k) } },
      })),
    },
    {
      // What SDK servers send: structuredContent and its JSON as a text block (re-serialized
      // from the masked structuredContent, not masked on its own).
      name: 'tools/call result, 64 KiB structuredContent + its JSON text copy',
      method: 'tools/call',
      headline: false,
      messages: copies((k) => {
        const structuredContent = { items: typicalRecords(64 * 1024, 9 + k) };
        return {
          jsonrpc: '2.0',
          id: 10,
          result: { content: [{ type: 'text', text: JSON.stringify(structuredContent) }], structuredContent },
        };
      }),
    },
    {
      name: 'tools/list result, 40 tools',
      method: 'tools/list',
      headline: false,
      messages: copies(toolList),
    },
    {
      name: 'tools/call result, small (~200 B)',
      method: 'tools/call',
      headline: false,
      messages: copies((k) => ({
        jsonrpc: '2.0',
        id: 9,
        result: {
          content: [
            {
              type: 'text',
              text: `{"tool":"get_issue","owner":"acme","repo":"widgets","number":${42 + k},"state":"open","title":"cache eviction regression"}`,
            },
          ],
        },
      })),
    },
  ];
  const result: MaskBenchResult = { detectors: policy.detectors, docs: [] };
  let totalBytes = 0;
  let totalSec = 0;
  for (const d of docs) {
    const bytes = Buffer.byteLength(JSON.stringify(d.messages[0]));
    const scope = {
      method: d.method,
      tool: d.method === 'tools/call' ? 'list_issue' : undefined,
      session: 'bench',
    };
    const r = measure((i) => masker.maskMessage(d.messages[i % COPIES], scope).hits.length, seconds);
    const mbPerSec = (bytes * r.perSec) / 1e6;
    result.docs?.push({ name: d.name, bytes, mbPerSec: Math.round(mbPerSec * 10) / 10, hits: r.hits });
    if (d.headline) {
      totalBytes += bytes;
      totalSec += 1 / r.perSec;
    }
  }
  // The headline: the two 64 KiB documents together (bytes / time), i.e. a harmonic mean of their rates.
  result.mbPerSec = Math.round((totalBytes / totalSec / 1e6) * 10) / 10;
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main();
