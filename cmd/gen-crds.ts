/**
 * Writes the CRD manifests (`mcpwarden.io_mcppolicies.yaml`, `mcpwarden.io_mcpapprovals.yaml`)
 * generated from the one schema source, `pkg/policy/schema.ts`, to the repository's `crds/`
 * (`kubectl apply -f crds/`) and to the chart's `charts/mcp-warden/files/crds/` (rendered by
 * `templates/crds.yaml`, so `helm upgrade` upgrades them).
 *
 *   node dist/cmd/gen-crds.js [--out DIR]... [--check]
 *
 * `--check` writes nothing and exits 1 when the files in any DIR differ from the schema (CI drift
 * check). Without `--out`, DIR is both `crds` and `charts/mcp-warden/files/crds` in the current
 * directory (the repository root under `make crds`); each `--out` replaces that default.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { renderCrds } from '../pkg/policy/crd.js';

/** Where `make crds` writes the CRDs, relative to the repository root. */
export const CRD_DIRS = ['crds', join('charts', 'mcp-warden', 'files', 'crds')] as const;

export async function run(argv: string[]): Promise<number> {
  const outs: string[] = [];
  let check = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out' && argv[i + 1] !== undefined) outs.push(argv[++i]!);
    else if (a === '--check') check = true;
    else {
      process.stderr.write(`gen-crds: unknown argument ${a}\nUsage: gen-crds [--out DIR]... [--check]\n`);
      return 2;
    }
  }
  const files = renderCrds();
  let drift = 0;
  for (const out of outs.length > 0 ? outs : CRD_DIRS) {
    const dir = resolve(out);
    if (!check) await mkdir(dir, { recursive: true });
    for (const [name, text] of Object.entries(files)) {
      const path = join(dir, name);
      if (check) {
        const current = await readFile(path, 'utf8').catch(() => undefined);
        if (current !== text) {
          drift++;
          process.stderr.write(
            `gen-crds: ${path} is out of date with pkg/policy/schema.ts: run \`make crds\`\n`,
          );
        }
      } else {
        await writeFile(path, text);
        process.stdout.write(`wrote ${path}\n`);
      }
    }
  }
  return drift > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`gen-crds: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
