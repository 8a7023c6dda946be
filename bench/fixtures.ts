/**
 * Deterministic workload data shared by the upstream server, the masker micro-benchmark and the
 * policy generator: a realistic tool catalogue (GitHub-like, 40 tools) and "typical JSON" tool
 * results (issue records: mostly prose and identifiers, a few e-mail addresses and one token-like
 * string per kilobyte or so — what masking sees in practice, not a worst case).
 */

/** Small seeded PRNG (mulberry32): the same bytes on every run and every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const words = (
  'the cache eviction path regresses when the upstream returns a partial page and the retry ' +
  'loop reads a stale cursor so we should pin the cursor to the request and add a test that ' +
  'covers the empty page case as well as the timeout path reported by the nightly job'
).split(' ');

const verbs = ['get', 'list', 'search', 'create', 'update', 'delete', 'merge', 'close'] as const;
const nouns = [
  'issue',
  'pull_request',
  'branch',
  'commit',
  'file',
  'release',
  'workflow_run',
  'comment',
] as const;
const extra = ['get_me', 'search_code', 'run_workflow', 'fork_repository'] as const;

export interface CatalogueTool {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
  annotations: { readOnlyHint: boolean; destructiveHint: boolean; title: string };
}

function sentence(rand: () => number, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(words[Math.floor(rand() * words.length)] as string);
  return out.join(' ');
}

/** 40 tools with descriptions and JSON Schemas: a `tools/list` result of realistic size (~25 KiB). */
export function toolCatalogue(): CatalogueTool[] {
  const rand = prng(7);
  const names: string[] = [];
  for (const v of verbs) for (const n of nouns) if (names.length < 36) names.push(`${v}_${n}`);
  names.push(...extra);
  return names.map((name) => {
    const readOnly = /^(get|list|search)_/.test(name) || name === 'get_me';
    const properties: Record<string, unknown> = {
      owner: { type: 'string', description: 'Repository owner (user or organisation login).' },
      repo: { type: 'string', description: 'Repository name, without the owner.' },
    };
    for (let i = 0; i < 4; i++) {
      properties[`param_${i}`] = { type: i % 2 === 0 ? 'string' : 'number', description: sentence(rand, 10) };
    }
    properties.page = { type: 'number', minimum: 1, description: 'Page number for paginated results.' };
    properties.perPage = { type: 'number', minimum: 1, maximum: 100, description: 'Results per page.' };
    return {
      name,
      description: `${name.replace(/_/g, ' ')}: ${sentence(rand, 40)}.`,
      inputSchema: { type: 'object', properties, required: ['owner', 'repo'], additionalProperties: false },
      annotations: { readOnlyHint: readOnly, destructiveHint: /^(delete|close)_/.test(name), title: name },
    };
  });
}

/** One issue-like record (~700 bytes serialised). Every 4th has an e-mail, every 16th a token-like id. */
function record(rand: () => number, i: number): Record<string, unknown> {
  const r: Record<string, unknown> = {
    id: 100000 + i,
    number: i + 1,
    title: sentence(rand, 8),
    state: rand() < 0.7 ? 'open' : 'closed',
    author: { login: `user${Math.floor(rand() * 5000)}`, type: 'User', site_admin: false },
    labels: ['bug', 'needs-triage', 'area/cache'].slice(0, 1 + Math.floor(rand() * 3)),
    comments: Math.floor(rand() * 40),
    created_at: new Date(1_700_000_000_000 + i * 3_600_000).toISOString(),
    url: `https://example.test/acme/widgets/issues/${i + 1}`,
    body: sentence(rand, 60),
  };
  if (i % 4 === 0) r.reporter_email = `user${i}@example.com`;
  if (i % 16 === 0) r.build_ref = `AKIA${String(i).padStart(16, '7')}`;
  return r;
}

/** A JSON document of issue records, at least `bytes` long when serialised. */
export function typicalRecords(bytes: number, seed = 42): Array<Record<string, unknown>> {
  const rand = prng(seed);
  const out: Array<Record<string, unknown>> = [];
  let size = 2;
  for (let i = 0; size < bytes; i++) {
    const r = record(rand, i);
    out.push(r);
    size += JSON.stringify(r).length + 1;
  }
  return out;
}

/** Serialised `typicalRecords`, trimmed by whole records to stay close to `bytes`. */
export function typicalJsonText(bytes: number, seed = 42): string {
  const recs = typicalRecords(bytes, seed);
  let text = JSON.stringify(recs);
  while (text.length > bytes && recs.length > 1) {
    recs.pop();
    text = JSON.stringify(recs);
  }
  return text;
}
