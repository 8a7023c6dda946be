/**
 * Writes the CRD manifests (`crds/mcpwarden.io_mcppolicies.yaml`, `crds/mcpwarden.io_mcpapprovals.yaml`)
 * generated from the one schema source, `pkg/policy/schema.ts`.
 *
 *   node dist/cmd/gen-crds.js [--out DIR] [--check]
 *
 * `--check` writes nothing and exits 1 when the files in DIR differ from the schema (CI drift check).
 * DIR defaults to `crds` in the current directory (the repository root under `make crds`).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { renderCrds } from '../pkg/policy/crd.js';

export async function run(argv: string[]): Promise<number> {
  let out = 'crds';
  let check = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out' && argv[i + 1] !== undefined) out = argv[++i]!;
    else if (a === '--check') check = true;
    else {
      process.stderr.write(`gen-crds: unknown argument ${a}\nUsage: gen-crds [--out DIR] [--check]\n`);
      return 2;
    }
  }
  const dir = resolve(out);
  const files = renderCrds();
  let drift = 0;
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
