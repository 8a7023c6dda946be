/**
 * Resident memory of mcp-warden, measured the way a pod runs it, read from /proc:
 *
 * - `gateway`: the built `mcp-warden gateway` with the bench configuration (bench/warden.ts: dev
 *   issuer token, the 50-rule policy, every masking detector, recording to a temp dir) in front of
 *   the bench upstream, with the node flags the injected sidecar runs with (SIDECAR_NODE_OPTIONS).
 * - `sidecar`: the built `mcp-warden sidecar` started from the container the webhook's injector
 *   puts into a real stored Pod (its args and env, NODE_OPTIONS included), against a real
 *   kube-apiserver + etcd (the e2e harness; `make k8s-tools`), with the same 50-rule policy as an
 *   MCPPolicy that trusts Kubernetes service-account tokens.
 *
 * For each process: RSS once ready and settled (`idle`), after a first few calls and settled
 * (`warm`: what lazily loaded code costs once used), and with `--load N` the peak under N seconds of
 * saturating small + 64 KiB calls (`peak`, VmHWM) and the RSS settled after it (`after`).
 * Prints a table and one JSON line per process. Everything targets 127.0.0.1 and is bounded.
 *
 * Usage: node dist/bench/idle-rss.js [--mode gateway|sidecar|both] [--repeat 3] [--settle 5]
 *          [--load 0] [--connections 16] [--node-options="--max-semi-space-size=2"|none]
 * `--node-options` replaces the injected NODE_OPTIONS for both modes (`none`: plain node).
 */
import { existsSync, symlinkSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { defaultResources, injectPod, SIDECAR_NODE_OPTIONS } from '../webhook/injector.js';
import { applyPatch } from '../webhook/jsonpatch.js';
import type { LoadResult, Scenario } from './load.js';
import { type LoadSettings, loadRun } from './loadgen.js';
import { benchPolicy } from './policy.js';
import {
  delay,
  firstLine,
  freePort,
  rssKiB,
  runTimeUs,
  type Started,
  start,
  stop,
  stopAllSync,
  waitHttp,
} from './proc.js';
import type { Target } from './target.js';
import { startWarden } from './warden.js';

const root = resolve(fileURLToPath(import.meta.url), '../../..');
const distBench = join(root, 'dist/bench');
const node = process.execPath;

export interface Sample {
  /** VmRSS once ready + settle (KiB). */
  idle: number;
  /** Of which anonymous memory (heap, young generation, malloc) and file-backed (the node binary). */
  idleAnon: number;
  idleFile: number;
  /** VmRSS after a few calls + settle. */
  warm: number;
  /** VmHWM during `--load`, and VmRSS settled after it (0 without --load). */
  peak: number;
  after: number;
  /** CPU time of the process per request under `--load` (µs), per scenario. */
  cpuUs: Record<string, number>;
}

interface Options {
  settleMs: number;
  loadSec: number;
  connections: number;
  nodeOptions: string;
}

async function smaps(pid: number): Promise<{ anon: number; file: number }> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  const rss = kib('Rss');
  const anon = kib('Anonymous');
  return { anon, file: rss - anon };
}

/** Runs the load generator against the target; any failed request fails the measurement. */
async function load(target: Target, scenario: Scenario, o: LoadSettings): Promise<LoadResult> {
  const result = await loadRun(target, scenario, 'saturate', o);
  if (result.errors > 0)
    throw new Error(`load ${scenario}: ${result.errors} errors: ${result.errorSamples[0]}`);
  return result;
}

/** The measurement protocol, the same for both modes. */
async function measure(pid: number, target: Target, o: Options): Promise<Sample> {
  await delay(o.settleMs);
  const idle = (await rssKiB(pid))?.rss ?? 0;
  const parts = await smaps(pid);
  // A first session and a few calls of each kind: lazily loaded code is charged here.
  for (const scenario of ['small', 'large', 'list'] as const) {
    await load(target, scenario, { connections: 1, sessions: 1, warmup: 0, duration: 2, maxRequests: 5 });
  }
  await delay(o.settleMs);
  const warm = (await rssKiB(pid))?.rss ?? 0;
  let peak = 0;
  let after = 0;
  const cpuUs: Record<string, number> = {};
  if (o.loadSec > 0) {
    for (const scenario of ['small', 'large'] as const) {
      const cpu0 = await runTimeUs(pid);
      const r = await load(target, scenario, { connections: o.connections, warmup: 0, duration: o.loadSec });
      cpuUs[scenario] = Math.round(((await runTimeUs(pid)) - cpu0) / Math.max(1, r.completed));
    }
    peak = (await rssKiB(pid))?.hwm ?? 0;
    await delay(o.settleMs);
    after = (await rssKiB(pid))?.rss ?? 0;
  }
  return { idle, idleAnon: parts.anon, idleFile: parts.file, warm, peak, after, cpuUs };
}

async function startUpstream(): Promise<{ proc: Started; url: string }> {
  const proc = start(node, [join(distBench, 'upstream.js'), '--port', '0'], { cpus: '0' });
  const url = (JSON.parse(await firstLine(proc)) as { url: string }).url;
  return { proc, url };
}

async function gatewayOnce(work: string, o: Options): Promise<Sample> {
  const upstream = await startUpstream();
  const flags = o.nodeOptions.split(/\s+/).filter((f) => f !== '');
  const w = await startWarden({
    upstreamUrl: upstream.url,
    work,
    cpus: '0',
    profile: false,
    log: () => undefined,
    nodeFlags: flags,
    sidecarEnv: o.nodeOptions === SIDECAR_NODE_OPTIONS,
  });
  try {
    return await measure(w.target.pid as number, w.target, o);
  } finally {
    await w.target.stop();
    await stop(upstream.proc);
  }
}

/**
 * The sidecar as a pod runs it: the injector's container spec (args, env with NODE_OPTIONS,
 * downward API resolved from the stored pod), the projected token volume emulated under
 * MCP_WARDEN_FS_PREFIX, in-cluster config, the chart's sidecar Role.
 */
async function sidecarOnce(
  work: string,
  o: Options,
  injectedNodeOptions: { value?: string },
): Promise<Sample> {
  const { startCluster, helmTemplate, requireTools, TOOLS_DIR, writeTokenVolume } = await import(
    '../test/e2e/harness.js'
  );
  // The harness finds the binaries relative to its own file; compiled, that is dist/: link it.
  const built = join(root, '.cache');
  if (!existsSync(resolve(TOOLS_DIR, '..')) && existsSync(built))
    symlinkSync(built, resolve(TOOLS_DIR, '..'));
  requireTools(true);
  const ns = 'bench';
  const podName = 'bench-mcp-0';
  const cluster = await startCluster({ crds: false });
  await cluster.applyCrds(join(root, 'crds'));
  const upstream = await startUpstream();
  let sidecar: Started | undefined;
  try {
    await cluster.createNamespace(ns);
    for (const sa of ['bench-mcp', 'caller']) await cluster.createServiceAccount(ns, sa);
    const rbac = await helmTemplate(
      join(root, 'charts/mcp-warden/templates/rbac-sidecar.yaml'),
      `sidecarRBAC:\n  namespaces:\n    - name: ${ns}\n      serviceAccounts: [bench-mcp]\n`,
      work,
    );
    if (rbac.code !== 0) throw new Error(rbac.stderr);
    const kubectl = async (args: string[], input: string): Promise<string> => {
      const r = await cluster.kubectl(args, { input });
      if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    await kubectl(['apply', '-f', '-'], rbac.stdout);
    // The bench's 50-rule policy, trusting the cluster's service-account tokens; the bench caller
    // is the `caller` service account (and keeps the group/role subjects of the bench rules).
    const audience = 'bench-mcp';
    const { doc } = benchPolicy('https://unused.invalid');
    const spec = doc['spec'] as Record<string, unknown>;
    spec['identity'] = { issuers: [{ kubernetes: { audiences: [audience] } }] };
    spec['podSelector'] = { matchLabels: { app: 'bench-mcp' } };
    const rules = spec['rules'] as Array<{ subjects: unknown[] }>;
    rules[0]?.subjects.push({ serviceAccount: `${ns}/caller` });
    (doc['metadata'] as Record<string, unknown>)['namespace'] = ns;
    delete (doc['metadata'] as Record<string, unknown>)['generation'];
    await kubectl(['apply', '-f', '-'], stringify(doc));

    const port = Number(new URL(upstream.url).port);
    const userPod: V1Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: podName, namespace: ns, labels: { app: 'bench-mcp', 'mcpwarden.io/inject': 'true' } },
      spec: {
        serviceAccountName: 'bench-mcp',
        containers: [
          { name: 'app', image: 'example.invalid/bench:1', ports: [{ name: 'mcp', containerPort: port }] },
        ],
      },
    };
    const injected = injectPod(userPod, {
      namespace: ns,
      config: {
        image: 'example.invalid/mcp-warden:bench',
        version: '0.1.0',
        nativeSidecars: true,
        resources: { ...defaultResources },
      },
    });
    if (injected.kind !== 'inject') throw new Error(`not injected: ${JSON.stringify(injected)}`);
    const stored = JSON.parse(
      await kubectl(['create', '-o', 'json', '-f', '-'], JSON.stringify(applyPatch(userPod, injected.patch))),
    ) as V1Pod;
    const container = stored.spec?.initContainers?.find((c) => c.name === 'mcp-warden') as V1Container;
    const field: Record<string, string | undefined> = {
      'metadata.name': stored.metadata?.name,
      'metadata.namespace': stored.metadata?.namespace,
      'metadata.uid': stored.metadata?.uid,
      'spec.serviceAccountName': stored.spec?.serviceAccountName,
    };
    const env: Record<string, string> = {};
    for (const e of container.env ?? [])
      env[e.name] = e.valueFrom?.fieldRef ? (field[e.valueFrom.fieldRef.fieldPath] ?? '') : (e.value ?? '');
    injectedNodeOptions.value = env['NODE_OPTIONS'];
    if (o.nodeOptions !== SIDECAR_NODE_OPTIONS) env['NODE_OPTIONS'] = o.nodeOptions;
    const mount = container.volumeMounts?.find((m) => m.name === 'mcp-warden-token')?.mountPath ?? '';
    const fsPrefix = join(work, 'root');
    await writeTokenVolume(join(fsPrefix, mount), {
      token: await cluster.serviceAccountToken(ns, 'bench-mcp', {
        boundPod: { name: podName, uid: field['metadata.uid'] ?? '' },
      }),
      caPem: cluster.caPem,
      namespace: ns,
      labels: stored.metadata?.labels,
    });
    const recordings = await mkdtemp(join(work, 'recordings-'));
    const proxyPort = await freePort();
    const adminPort = await freePort();
    // The stored args, listen addresses moved to loopback (here every process shares one network).
    const args = (container.args ?? []).map((a, i, all) =>
      all[i - 1] === '--listen'
        ? `127.0.0.1:${proxyPort}`
        : all[i - 1] === '--admin-listen'
          ? `127.0.0.1:${adminPort}`
          : a,
    );
    const server = new URL(cluster.server);
    sidecar = start(node, [join(root, 'dist/cmd/mcp-warden.js'), ...args], {
      cpus: '0',
      env: {
        PATH: process.env['PATH'] ?? '',
        HOME: work,
        ...env,
        KUBERNETES_SERVICE_HOST: server.hostname,
        KUBERNETES_SERVICE_PORT: server.port,
        MCP_WARDEN_FS_PREFIX: fsPrefix,
        MCP_WARDEN_RECORDINGS_DIR: recordings,
        MCP_WARDEN_LOG_LEVEL: 'warn',
      },
    });
    await waitHttp(`http://127.0.0.1:${adminPort}/readyz`, sidecar, 60_000, true);
    const token = await cluster.serviceAccountToken(ns, 'caller', { audiences: [audience] });
    const target: Target = {
      mode: 'warden',
      url: `http://127.0.0.1:${proxyPort}/mcp`,
      headers: [`authorization: Bearer ${token}`],
      pid: sidecar.pid,
      describe: 'mcp-warden sidecar',
      stop: async () => undefined,
    };
    return await measure(sidecar.pid, target, o);
  } finally {
    await stop(sidecar, 15_000);
    await stop(upstream.proc);
    await cluster.stop();
  }
}

function mib(kib: number): string {
  return kib === 0 ? '–' : `${(kib / 1024).toFixed(1)} MiB`;
}

function medianSample(samples: Sample[]): Sample {
  const med = (k: Exclude<keyof Sample, 'cpuUs'>) => {
    const v = samples.map((s) => s[k]).sort((a, b) => a - b);
    return v[Math.floor((v.length - 1) / 2)] ?? 0;
  };
  return {
    idle: med('idle'),
    idleAnon: med('idleAnon'),
    idleFile: med('idleFile'),
    warm: med('warm'),
    peak: med('peak'),
    after: med('after'),
    cpuUs: Object.fromEntries(
      Object.keys(samples[0]?.cpuUs ?? {}).map((k) => {
        const v = samples.map((s) => s.cpuUs[k] ?? 0).sort((a, b) => a - b);
        return [k, v[Math.floor((v.length - 1) / 2)] ?? 0];
      }),
    ),
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      mode: { type: 'string', default: 'both' },
      repeat: { type: 'string', default: '3' },
      settle: { type: 'string', default: '5' },
      load: { type: 'string', default: '0' },
      connections: { type: 'string', default: '16' },
      'node-options': { type: 'string' },
    },
  });
  const mode = values.mode;
  if (mode !== 'gateway' && mode !== 'sidecar' && mode !== 'both')
    throw new Error('--mode must be gateway, sidecar or both');
  const repeat = Number(values.repeat);
  const settle = Number(values.settle);
  const loadSec = Number(values.load);
  if (!(repeat >= 1 && repeat <= 10)) throw new Error('--repeat must be 1..10');
  if (!(settle >= 0 && settle <= 60)) throw new Error('--settle must be 0..60 seconds');
  if (!(loadSec >= 0 && loadSec <= 60)) throw new Error('--load must be 0..60 seconds');
  const connections = Number(values.connections);
  if (!(connections >= 1 && connections <= 256)) throw new Error('--connections must be 1..256');
  const nodeOptions =
    values['node-options'] === undefined
      ? SIDECAR_NODE_OPTIONS
      : values['node-options'] === 'none'
        ? ''
        : values['node-options'];
  if (!existsSync(join(root, 'dist/cmd/mcp-warden.js')) || !existsSync(join(distBench, 'load.js')))
    throw new Error('build first: make build && tsc -p bench/tsconfig.json');
  const o: Options = { settleMs: settle * 1000, loadSec, connections, nodeOptions };
  const work = await mkdtemp(join(tmpdir(), 'mcp-warden-idle-rss-'));
  const log = (m: string) => process.stderr.write(`idle-rss: ${m}\n`);
  const rows: Array<{ mode: string; sample: Sample; runs: Sample[]; nodeOptions: string }> = [];
  try {
    for (const m of mode === 'both' ? (['gateway', 'sidecar'] as const) : [mode]) {
      const runs: Sample[] = [];
      const injected: { value?: string } = {};
      for (let i = 0; i < repeat; i++) {
        const dir = await mkdtemp(join(work, `${m}-`));
        const s = m === 'gateway' ? await gatewayOnce(dir, o) : await sidecarOnce(dir, o, injected);
        log(
          `${m} run ${i + 1}: idle ${mib(s.idle)}, warm ${mib(s.warm)}, peak ${mib(s.peak)}, cpu ${JSON.stringify(s.cpuUs)}`,
        );
        runs.push(s);
      }
      if (m === 'sidecar' && (injected.value ?? '') !== SIDECAR_NODE_OPTIONS)
        throw new Error(
          `the injected NODE_OPTIONS is ${JSON.stringify(injected.value)}, not SIDECAR_NODE_OPTIONS`,
        );
      rows.push({ mode: m, sample: medianSample(runs), runs, nodeOptions });
    }
  } finally {
    stopAllSync();
    await rm(work, { recursive: true, force: true });
  }
  const lines = [
    `node ${process.version}, NODE_OPTIONS "${nodeOptions}", median of ${repeat}, settle ${settle} s${loadSec > 0 ? `, load ${loadSec} s per scenario over ${connections} connections` : ''}`,
    '',
    '| process | idle RSS | (anon / file) | after first calls | peak under load | after load | CPU/request (small, 64 KiB) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.mode} | ${mib(r.sample.idle)} | ${mib(r.sample.idleAnon)} / ${mib(r.sample.idleFile)} | ${mib(r.sample.warm)} | ${mib(r.sample.peak)} | ${mib(r.sample.after)} | ${loadSec > 0 ? `${r.sample.cpuUs['small']} µs, ${r.sample.cpuUs['large']} µs` : '–'} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    stopAllSync();
    process.stderr.write(`idle-rss: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
