/**
 * Lossless-parse micro-benchmark: what `parseJson` (pkg/json.ts) costs over `JSON.parse` on the
 * messages the proxy parses, the masker bench's documents serialized as JSON-RPC messages. Typical
 * messages take the plain path (one regexp scan, then JSON.parse); a message holding numbers a
 * double cannot carry takes the reviver path, measured on the same records with 19-digit ids.
 * Prints one JSON line: per document, µs per call of each variant (mean over `--seconds`).
 *
 * Usage: node dist/bench/json-bench.js [--seconds 1]
 */
import { parseArgs } from 'node:util';
import { mayHoldInexactNumber, parseJson } from '../pkg/json.js';
import { toolCatalogue, typicalJsonText, typicalRecords } from './fixtures.js';

/** Distinct copies of one document parsed in turn (nothing cached between calls can flatter it). */
const COPIES = 8;

function perCall(fn: (text: string) => unknown, texts: string[], seconds: number): number {
  for (let i = 0; i < 50; i++) fn(texts[i % COPIES]!);
  let n = 0;
  const t0 = performance.now();
  let t1 = t0;
  while (t1 - t0 < seconds * 1000) {
    for (let i = 0; i < COPIES; i++) fn(texts[i]!);
    n += COPIES;
    t1 = performance.now();
  }
  return Math.round(((t1 - t0) * 1000 * 100) / n) / 100;
}

const revive = (_k: string, v: unknown, _c?: { source?: string }): unknown => v;

function main(): void {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '1' } } });
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new Error('--seconds must be a positive number');
  const message = (id: number, result: unknown): string => JSON.stringify({ jsonrpc: '2.0', id, result });
  const copies = (make: (k: number) => string): string[] => Array.from({ length: COPIES }, (_, k) => make(k));
  const docs: Array<{ name: string; texts: string[] }> = [
    {
      name: '64 KiB JSON as text content',
      texts: copies((k) =>
        message(7, { content: [{ type: 'text', text: typicalJsonText(64 * 1024, 42 + k) }] }),
      ),
    },
    {
      name: '64 KiB structuredContent',
      texts: copies((k) =>
        message(8, { content: [], structuredContent: { items: typicalRecords(64 * 1024, 9 + k) } }),
      ),
    },
    {
      name: '64 KiB structuredContent + its JSON text copy',
      texts: copies((k) => {
        const sc = { items: typicalRecords(64 * 1024, 9 + k) };
        return message(10, { content: [{ type: 'text', text: JSON.stringify(sc) }], structuredContent: sc });
      }),
    },
    {
      name: 'tools/list, 40 tools',
      texts: copies((k) =>
        message(3, { tools: toolCatalogue() }).replaceAll('Repository', `Repository${' '.repeat(k)}`),
      ),
    },
    {
      name: 'small result (~200 B)',
      texts: copies((k) =>
        message(9, {
          content: [{ type: 'text', text: `{"tool":"get_issue","number":${42 + k},"state":"open"}` }],
        }),
      ),
    },
    {
      // The lossless path: every record's id is a 19-digit snowflake (beyond 2^53).
      name: '64 KiB structuredContent, 19-digit ids (lossless path)',
      texts: copies((k) =>
        message(8, { content: [], structuredContent: { items: typicalRecords(64 * 1024, 9 + k) } }).replace(
          /"id":(\d+)/g,
          (_m, id: string) => `"id":1234567890123${id.padStart(6, '0')}`,
        ),
      ),
    },
  ];
  const out: Array<Record<string, unknown>> = [];
  for (const d of docs) {
    out.push({
      name: d.name,
      bytes: d.texts[0]!.length,
      lossless: d.texts.map(mayHoldInexactNumber).some(Boolean),
      jsonParseUs: perCall((t) => JSON.parse(t), d.texts, seconds),
      scanUs: perCall(mayHoldInexactNumber, d.texts, seconds),
      parseJsonUs: perCall(parseJson, d.texts, seconds),
      reviverUs: perCall((t) => JSON.parse(t, revive as never), d.texts, seconds),
    });
  }
  process.stdout.write(`${JSON.stringify({ docs: out })}\n`);
}

main();
