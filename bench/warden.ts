/**
 * mcp-warden with full enforcement for the bench: a dev issuer (in the orchestrator process) signs
 * an Entra-shaped token; `mcp-warden gateway` runs as its own process (pinned with the upstream)
 * with the 50-rule policy, every masking detector and recording to a temp directory.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDevIssuer } from '../pkg/identity/dev-issuer.js';
import { SIDECAR_MALLOC_ENV, SIDECAR_NODE_OPTIONS } from '../webhook/injector.js';
import { BENCH_AUDIENCE, BENCH_GROUP, BENCH_OID, benchPolicy, type PolicyVariant } from './policy.js';
import { freePort, start, stop, waitHttp } from './proc.js';
import type { WardenDetails } from './report.js';
import type { Target } from './target.js';

const root = resolve(fileURLToPath(import.meta.url), '../../..');

export interface WardenOptions {
  upstreamUrl: string;
  work: string;
  cpus: string;
  /** Run the gateway under `node --cpu-prof`; profiles land in bench/results/raw/. */
  profile: boolean;
  log: (m: string) => void;
  /** Switch parts of the enforcement off (ablation runs); default: everything on. */
  variant?: PolicyVariant;
  /**
   * Node flags for the gateway process. Default: the injected sidecar's NODE_OPTIONS
   * (SIDECAR_NODE_OPTIONS), so the bench measures what pods run; `[]` for plain node.
   */
  nodeFlags?: string[];
  /**
   * The sidecar's malloc settings in the gateway's environment (SIDECAR_MALLOC_ENV). Default: when
   * `nodeFlags` is the sidecar's default, so the bench measures what pods run.
   */
  sidecarEnv?: boolean;
  /** A built tree to run the gateway from (its `dist/`); default this one. For A/B runs. */
  root?: string;
  /** More environment for the gateway process. */
  env?: Record<string, string>;
}

export async function startWarden(o: WardenOptions): Promise<{ target: Target; details: WardenDetails }> {
  const dev = await startDevIssuer({ host: '127.0.0.1', port: 0 });
  const token = await dev.issueToken({
    oid: BENCH_OID,
    audience: BENCH_AUDIENCE,
    groups: [BENCH_GROUP],
    roles: ['MCP.Read'],
    scopes: ['mcp.access'],
    upn: 'bench@example.com',
    expiresInSec: 3600,
  });
  const policy = benchPolicy(dev.v2Issuer, o.variant);
  const policyPath = join(o.work, 'policy.yaml');
  const { stringify } = await import('yaml');
  await writeFile(policyPath, stringify(policy.doc));
  // A fresh directory per gateway: a recorder scans its directory at start-up (to finish files a
  // crashed process left open), so reusing one would charge a later gateway for earlier runs.
  const recordings = await mkdtemp(join(o.work, 'recordings-'));

  const port = await freePort();
  const adminPort = await freePort();
  const nodeArgs: string[] = [...(o.nodeFlags ?? SIDECAR_NODE_OPTIONS.split(/\s+/).filter((f) => f !== ''))];
  let profileDir: string | undefined;
  if (o.profile) {
    profileDir = join(root, 'bench/results/raw', `profile-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    await mkdir(profileDir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`);
  }
  // The real `mcp-warden gateway` when it is built; else the same library pipeline (bench fallback).
  const tree = o.root ?? root;
  const real = existsSync(join(tree, 'dist/cmd/gateway.js'));
  const entry = real
    ? [join(tree, 'dist/cmd/mcp-warden.js'), 'gateway']
    : [join(root, 'dist/bench/inproc-gateway.js')];
  const gateway = start(
    process.execPath,
    [
      ...nodeArgs,
      ...entry,
      '--upstream',
      o.upstreamUrl,
      '--policy',
      policyPath,
      '--listen',
      `127.0.0.1:${port}`,
      '--admin-listen',
      `127.0.0.1:${adminPort}`,
      '--recordings',
      recordings,
    ],
    {
      cpus: o.cpus,
      env: {
        ...process.env,
        MCP_WARDEN_LOG_LEVEL: 'warn',
        ...((o.sidecarEnv ?? o.nodeFlags === undefined)
          ? Object.fromEntries(SIDECAR_MALLOC_ENV.map((e) => [e.name, e.value]))
          : {}),
        ...o.env,
      },
    },
  );
  try {
    await waitHttp(`http://127.0.0.1:${adminPort}/readyz`, gateway, 30_000, true);
  } catch (err) {
    await stop(gateway);
    await dev.close();
    throw err;
  }
  o.log(`mcp-warden gateway pid ${gateway.pid} on 127.0.0.1:${port}`);
  const details: WardenDetails = {
    describe: `${real ? 'mcp-warden gateway' : 'bench/inproc-gateway.ts (cmd/gateway.ts not built: same library pipeline)'}: bearer token from the dev issuer (RS256, JWKS cached), ${policy.rules}-rule policy, ${policy.detectors.length > 0 ? `masking (${policy.detectors.length} detectors + 2 patterns + 2 JSON paths)` : 'no masking'}, ${o.variant?.recording === false ? 'no recording' : 'recording to a temp dir'}${o.profile ? ', under node --cpu-prof' : ''}`,
    policyRules: policy.rules,
    detectors: policy.detectors,
    recordingDir: recordings,
    ...(profileDir === undefined ? {} : { profileDir }),
  };
  const target: Target = {
    mode: 'warden',
    url: `http://127.0.0.1:${port}/mcp`,
    headers: [`authorization: Bearer ${token}`],
    pid: gateway.pid,
    describe: details.describe,
    stop: async () => {
      await stop(gateway, 15_000);
      details.recordingFiles = (await readdir(recordings, { recursive: true })).filter((f) =>
        String(f).endsWith('.jsonl'),
      ).length;
      await dev.close();
    },
  };
  return { target, details };
}
