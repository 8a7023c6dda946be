import { execFile, spawn } from 'node:child_process';
import { chmod, lstat, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { VERSION } from '../../pkg/version.js';
import { Sidecar } from '../../webhook/constants.js';
import { connectStreamable } from '../integration/helpers/harness.js';
import { startUpstream } from '../integration/helpers/upstream-v1.js';
import { type Cluster, REPO_ROOT, startCluster, writeTokenVolume } from './harness.js';
import {
  type BuiltImage,
  blobPath,
  buildImage,
  type ContainerSpec,
  containerCommand,
  type Mount,
  type PlatformImage,
  unpackPlatform,
} from './image-runtime.js';
import {
  installWebhook,
  type Launcher,
  renderChart,
  SIDECAR_IMAGE,
  WEBHOOK_NS,
  type WebhookProcess,
} from './webhook-helpers.js';

/**
 * The container image hack/build-image.sh makes (`make image`): what it holds, that its digests
 * verify and that it builds reproducibly, that it runs as its non-root user under a read-only root,
 * and the webhook started from it (in-cluster credentials, the chart's securityContext) injecting
 * a pod through a real kube-apiserver. The sidecar role runs from the same image in
 * sidecar.test.ts.
 */
const run = promisify(execFile);
let workDir: string;
let image: BuiltImage;
let cluster: Cluster;
let webhook: WebhookProcess | undefined;

/** A container of `platform` as the injected sidecar runs: uid/gid 65532, read-only root. */
function sidecarLike(platform: PlatformImage, spec: Partial<ContainerSpec>) {
  return containerCommand(platform, {
    args: [],
    env: {},
    mounts: [],
    runAsUser: 65532,
    runAsGroup: 65532,
    readOnlyRootFilesystem: true,
    ...spec,
  });
}

/** Runs a container from the image to its end; stdout, stderr and exit code. */
async function runContainer(
  spec: Partial<ContainerSpec>,
  platform: PlatformImage = image,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = await sidecarLike(platform, spec);
  try {
    const r = await run(cmd.bin, cmd.args, { env: cmd.env, timeout: 180_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A world-writable directory, as the kubelet makes an emptyDir volume. */
async function emptyDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(workDir, prefix));
  await chmod(dir, 0o777);
  return dir;
}

async function worldReadableDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(workDir, prefix));
  await chmod(dir, 0o755);
  return dir;
}

/** Every path under `dir` (relative), directories included. */
async function walk(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    out.push(rel);
    if (entry.isDirectory()) out.push(...(await walk(dir, rel)));
  }
  return out;
}

let arm64: Promise<PlatformImage> | undefined;
/** The arm64 image, unpacked once. */
function arm64Image(): Promise<PlatformImage> {
  arm64 ??= unpackPlatform(image, 'arm64');
  return arm64;
}

/**
 * A container of the arm64 image whose entrypoint runs under qemu-aarch64-static (Debian's
 * qemu-user-static, bind-mounted into the root filesystem): `mcp-warden <args>`.
 */
async function emulatedSpec(args: string[], mounts: Mount[] = []): Promise<Partial<ContainerSpec>> {
  const qemu = await run('sh', ['-c', 'command -v qemu-aarch64-static']).catch(() => undefined);
  if (qemu === undefined)
    throw new Error('qemu-aarch64-static is missing: make qemu (hack/ensure-qemu.sh) installs it');
  return {
    command: ['/qemu-aarch64-static', '/usr/local/bin/node', '/app/dist/cmd/mcp-warden.js'],
    args,
    mounts: [
      { hostPath: qemu.stdout.trim(), containerPath: '/qemu-aarch64-static', readOnly: true },
      ...mounts,
    ],
  };
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mcp-warden-image-e2e-'));
  const started = startCluster();
  started.catch(() => {});
  image = await buildImage(join(workDir, 'image'), 'e2e');
  cluster = await started;
}, 900_000);

afterAll(async () => {
  await webhook?.stop();
  await cluster?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('the image', () => {
  test('config: entrypoint, non-root user, no secrets in its env, OCI labels', async () => {
    const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const head = (await run('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT })).stdout.trim();
    expect(image.ref).toBe(SIDECAR_IMAGE);
    expect(image.config.os).toBe('linux');
    expect(image.config.architecture).toBe('amd64');
    expect(image.config.config.Entrypoint).toEqual(['/usr/local/bin/node', '/app/dist/cmd/mcp-warden.js']);
    expect(image.config.config.User).toBe('65532:65532');
    expect(image.config.config.WorkingDir).toBe('/app');
    expect(image.config.config.Env).toEqual(['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_ENV=production']);
    expect(image.config.config.Labels).toMatchObject({
      'org.opencontainers.image.version': pkg.version,
      'org.opencontainers.image.revision': head,
      'org.opencontainers.image.licenses': 'Apache-2.0',
    });
    expect(image.layers).toHaveLength(3);
    // The arm64 image: the same config but for its platform.
    const arm64 = image.platforms.get('arm64');
    expect(arm64?.platform).toBe('linux/arm64/v8');
    expect(arm64?.config).toMatchObject({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(arm64?.config.config).toEqual(image.config.config);
    expect(image.config.history?.map((h) => h.created_by)).toEqual([
      expect.stringMatching(/Debian libc6 libgcc-s1 libstdc\+\+6 libraries/),
      expect.stringMatching(/Node\.js v24\./),
      expect.stringMatching(new RegExp(`mcp-warden ${pkg.version.replace(/\./g, '\\.')}`)),
    ]);
  });

  test('the OCI layout verifies (every digest, diff ID and size recomputed); one docker archive per platform names the tag', async () => {
    const verified = JSON.parse(
      (await run(join(REPO_ROOT, '.cache', 'bin', 'imagebuild'), ['verify', image.ociDir])).stdout,
    ) as { digest: string; ref: string; platforms: Array<{ platform: string; digest: string }> };
    expect(verified).toMatchObject({ digest: image.indexDigest, ref: image.ref });
    expect(verified.platforms.map((p) => [p.platform, p.digest])).toEqual(
      [...image.platforms.values()].map((p) => [p.platform, p.digest]),
    );
    expect([...image.platforms.keys()]).toEqual(['amd64', 'arm64']);
    for (const p of image.platforms.values()) {
      const manifest = JSON.parse(
        (await run('tar', ['-xOf', p.tarball, 'manifest.json'], { maxBuffer: 1 << 20 })).stdout,
      ) as Array<{ RepoTags: string[]; Layers: string[]; Config: string }>;
      expect(manifest).toHaveLength(1);
      expect(manifest[0]?.RepoTags).toEqual([image.ref]);
      expect(manifest[0]?.Layers).toHaveLength(3);
      const config = JSON.parse(
        (await run('tar', ['-xOf', p.tarball, manifest[0]?.Config ?? ''], { maxBuffer: 1 << 20 })).stdout,
      ) as { architecture: string };
      expect(config.architecture).toBe(p.config.architecture);
    }
  });

  test('every platform carries an SBOM: SPDX of its image, written beside it and attested in the index', async () => {
    const verified = JSON.parse(
      (await run(join(REPO_ROOT, '.cache', 'bin', 'imagebuild'), ['verify', image.ociDir])).stdout,
    ) as { sboms: Array<{ platform: string; subject: string; digest: string; packages: number }> };
    const platforms = [...image.platforms.values()];
    // One attestation per platform, naming its image, as `docker buildx build --sbom` attaches them.
    expect(image.attestations.map((a) => a.subject)).toEqual(platforms.map((p) => p.digest));
    expect(verified.sboms.map((x) => [x.platform, x.subject, x.digest])).toEqual(
      platforms.map((p, i) => [p.platform, p.digest, image.attestations[i]?.digest]),
    );
    const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const lock = JSON.parse(await readFile(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { name?: string; version: string; dev?: boolean }>;
    };
    const production = new Set<string>();
    const dev = new Set<string>();
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === '') continue;
      const id = `${entry.name ?? path.slice(path.lastIndexOf('node_modules/') + 13)}@${entry.version}`;
      (entry.dev === true ? dev : production).add(id);
    }
    for (const [i, p] of platforms.entries()) {
      const arch = p.config.architecture;
      const file = JSON.parse(await readFile(join(image.outDir, `sbom-linux-${arch}.spdx.json`), 'utf8')) as {
        spdxVersion: string;
        documentNamespace: string;
        creationInfo: { created: string; creators: string[] };
        packages: Array<{
          name: string;
          versionInfo?: string;
          externalRefs?: Array<{ referenceType: string; referenceLocator: string }>;
        }>;
      };
      // The attestation's in-toto statement carries the same document, about this image.
      const layer = image.attestations[i]?.layers[0];
      expect(layer?.mediaType).toBe('application/vnd.in-toto+json');
      const statement = JSON.parse(await readFile(blobPath(image.ociDir, layer?.digest ?? ''), 'utf8')) as {
        predicateType: string;
        subject: Array<{ name: string; digest: { sha256: string } }>;
        predicate: unknown;
      };
      expect(statement.predicateType).toBe('https://spdx.dev/Document');
      expect(statement.subject).toEqual([
        {
          name: expect.stringContaining(`@e2e?platform=${encodeURIComponent(p.platform)}`),
          digest: { sha256: p.digest.slice(7) },
        },
      ]);
      expect(statement.predicate).toEqual(file);
      // Reproducible: the epoch, and a namespace naming the image instead of a random UUID.
      expect(file.spdxVersion).toBe('SPDX-2.3');
      expect(file.creationInfo.created).toBe(image.config.created?.replace(/\.\d+Z$/, 'Z'));
      expect(file.documentNamespace.endsWith(`/${p.digest.slice(7)}`)).toBe(true);
      expect(file.creationInfo.creators).toContain('Tool: syft-1.57.1');
      const purls = new Set(
        file.packages.flatMap((x) =>
          (x.externalRefs ?? []).filter((r) => r.referenceType === 'purl').map((r) => r.referenceLocator),
        ),
      );
      const npm = new Set(
        [...purls].filter((u) => u.startsWith('pkg:npm/')).map((u) => decodeURIComponent(u.slice(8))),
      );
      // Every production package at its locked version, the application itself, no dev dependency.
      for (const id of production) expect([id, npm.has(id)]).toEqual([id, true]);
      expect(npm.has(`mcp-warden@${pkg.version}`)).toBe(true);
      for (const id of dev) if (!production.has(id)) expect([id, npm.has(id)]).toEqual([id, false]);
      // The Debian libraries at the versions in the image, and the Node.js binary.
      for (const deb of ['libc6', 'libgcc-s1', 'libstdc++6']) {
        const status = await readFile(join(image.rootfs, 'var/lib/dpkg/status.d', deb), 'utf8');
        const version = /^Version: (.+)$/m.exec(status)?.[1] ?? '';
        expect(
          [...purls].some((u) =>
            u.startsWith(
              `pkg:deb/debian/${encodeURIComponent(deb)}@${encodeURIComponent(version)}?arch=${arch}`,
            ),
          ),
        ).toBe(true);
      }
      const node = /Node\.js v(\S+)/.exec(p.config.history?.[1]?.created_by ?? '')?.[1];
      expect(file.packages.find((x) => x.name === 'node')?.versionInfo).toBe(node);
    }
  });

  test('the same sources and epoch give the same digest', async () => {
    const again = await buildImage(join(workDir, 'again'), 'e2e');
    expect(again.indexDigest).toBe(image.indexDigest);
    expect(again.digest).toBe(image.digest);
  }, 900_000);

  test('no shell or package manager; only the production dependencies; root owns everything but the home', async () => {
    const root = image.rootfs;
    const paths = await walk(root);
    for (const absent of ['usr/bin/sh', 'usr/bin/bash', 'usr/bin/dpkg', 'usr/bin/apt', 'usr/sbin/ldconfig'])
      expect(paths).not.toContain(absent);
    expect(paths.filter((p) => p.startsWith('usr/bin/') || p.startsWith('usr/sbin/'))).toEqual([]);
    const lock = JSON.parse(await readFile(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const installed = new Set(paths.filter((p) => p.startsWith('app/node_modules/')));
    // Every package of the lock file that is not a dev dependency is there, and no dev dependency.
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === '') continue;
      expect([path, installed.has(`app/${path}`)]).toEqual([path, entry.dev !== true]);
    }
    expect(installed.has('app/node_modules/jose')).toBe(true);
    expect(installed.has('app/node_modules/jest')).toBe(false);
    expect(paths.some((p) => p.endsWith('.ts') && p.startsWith('app/dist/'))).toBe(false);
    for (const p of paths) {
      const st = await lstat(join(root, p));
      const home = p === 'home/nonroot';
      expect([p, st.uid, st.gid]).toEqual([p, home ? 65532 : 0, home ? 65532 : 0]);
    }
    expect((await lstat(join(root, 'tmp'))).mode & 0o7777).toBe(0o1777);
    // Scanners find the Debian packages and their versions.
    for (const pkg of ['libc6', 'libgcc-s1', 'libstdc++6']) {
      const status = await readFile(join(root, 'var/lib/dpkg/status.d', pkg), 'utf8');
      const host = (await run('dpkg-query', ['-W', '-f=$' + '{Version}', `${pkg}:amd64`])).stdout;
      expect(status).toContain(`Package: ${pkg}\n`);
      expect(status).toContain(`Version: ${host}\n`);
    }
  });

  test('linux/arm64: AArch64 node and Debian arm64 libraries, the same /app layer, runs under user-mode emulation', async () => {
    const arm64 = await arm64Image();
    // ELF e_machine (little-endian u16 at offset 18): 183 is AArch64, 62 x86-64.
    const machine = async (file: string) => (await readFile(file)).readUInt16LE(18);
    expect(await machine(join(arm64.rootfs, 'usr/local/bin/node'))).toBe(183);
    expect(await machine(join(image.rootfs, 'usr/local/bin/node'))).toBe(62);
    expect(await machine(join(arm64.rootfs, 'usr/lib/aarch64-linux-gnu/libc.so.6'))).toBe(183);
    const status = await readFile(join(arm64.rootfs, 'var/lib/dpkg/status.d/libc6'), 'utf8');
    expect(status).toMatch(/^Package: libc6\nStatus: install ok installed\n/);
    expect(status).toContain('Architecture: arm64\n');
    // The application layer is one blob for both platforms: pulled once.
    expect(arm64.layers[2]?.digest).toBe(image.layers[2]?.digest);
    expect(arm64.layers[1]?.digest).not.toBe(image.layers[1]?.digest);

    const policyFile = join(REPO_ROOT, 'examples', 'policy.yaml');
    const emulated = async (args: string[]) =>
      runContainer(
        await emulatedSpec(args, [
          { hostPath: policyFile, containerPath: '/policy/policy.yaml', readOnly: true },
        ]),
        arm64,
      );
    expect(await emulated(['--version'])).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    // The policy toolchain loads (yaml, ajv, CEL, RE2) and agrees with the amd64 image.
    const linted = await emulated(['policy', 'lint', '/policy/policy.yaml']);
    const native = await runContainer({
      args: ['policy', 'lint', '/policy/policy.yaml'],
      mounts: [{ hostPath: policyFile, containerPath: '/policy/policy.yaml', readOnly: true }],
    });
    expect(native.code).toBe(0);
    expect(linted).toEqual(native);
  }, 300_000);

  test('linux/arm64: the gateway from the arm64 image enforces a policy for a real MCP client (emulated)', async () => {
    const arm64 = await arm64Image();
    const issuer = await startDevIssuer();
    const upstream = await startUpstream();
    const policyDir = await worldReadableDir('policy-');
    const audience = 'api://image-e2e';
    await writeFile(
      join(policyDir, 'policy.yaml'),
      [
        'apiVersion: mcpwarden.io/v1alpha1',
        'kind: MCPPolicy',
        'metadata: {name: arm64}',
        'spec:',
        '  podSelector: {}',
        '  identity:',
        `    issuers: [{issuer: "${issuer.v2Issuer}", audiences: ["${audience}"]}]`,
        '  rules:',
        '    - {name: weather, subjects: [{any: true}], match: {tools: [get_weather]}, action: allow}',
        '  masking: [{name: pii, detectors: [email]}]',
      ].join('\n'),
    );
    await chmod(join(policyDir, 'policy.yaml'), 0o644);
    const spec = await emulatedSpec(
      [
        'gateway',
        '--upstream',
        upstream.mcpUrl,
        '--policy',
        '/policy/policy.yaml',
        '--listen',
        '127.0.0.1:0',
        '--admin-listen',
        '127.0.0.1:0',
      ],
      [{ hostPath: policyDir, containerPath: '/policy', readOnly: true }],
    );
    const cmd = await sidecarLike(arm64, spec);
    const gateway = spawn(cmd.bin, cmd.args, { env: cmd.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    try {
      const mcpUrl = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`the emulated gateway did not start:\n${output}`)),
          120_000,
        );
        const onData = (c: Buffer) => {
          output += c.toString('utf8');
          const m = /"mcp":"(http:\/\/[^"]+)"/.exec(output);
          if (m) {
            clearTimeout(timer);
            resolve(m[1] as string);
          }
        };
        gateway.stdout?.on('data', onData);
        gateway.stderr?.on('data', onData);
        gateway.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`the emulated gateway exited (${code}):\n${output}`));
        });
      });
      const token = await issuer.issueToken({ audience, oid: 'arm64-user' });
      const client = await connectStreamable(mcpUrl, token);
      try {
        const allowed = await client.callTool({ name: 'get_weather', arguments: { city: 'Oslo' } });
        expect(allowed.content).toEqual([{ type: 'text', text: 'sunny in Oslo' }]);
        const refused = await client.callTool({ name: 'delete_repo', arguments: { name: 'x' } }).then(
          () => undefined,
          (err: { code?: number }) => err.code,
        );
        expect(refused).toBe(-31403);
      } finally {
        await client.close();
      }
    } finally {
      gateway.kill('SIGKILL');
      await upstream.close();
      await issuer.close();
    }
  }, 300_000);

  test('runs as 65532 with a read-only root: --version answers, writes outside the volumes fail', async () => {
    const version = await runContainer({ args: ['--version'] });
    expect(version).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    const probe = await runContainer({
      command: [
        '/usr/local/bin/node',
        '-e',
        `const fs = require('node:fs');
         let app; try { fs.writeFileSync('/app/x', 'y'); app = 'written'; } catch (e) { app = e.code; }
         fs.writeFileSync('/tmp/x', 'y');
         console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(), app, cwd: process.cwd() }));`,
      ],
      mounts: [{ hostPath: await emptyDir('tmp-'), containerPath: '/tmp' }],
    });
    expect(probe.stderr).toBe('');
    // process.getgroups() always lists the effective gid; no other group is kept.
    expect(JSON.parse(probe.stdout)).toEqual({
      uid: 65532,
      gid: 65532,
      groups: [65532],
      app: 'EROFS',
      cwd: '/app',
    });
  });
});

describe('the chart with the built image', () => {
  test('image.digest pins the webhook and the injected sidecar to the digest make image printed', async () => {
    type Rendered = {
      spec: { template: { spec: { containers: Array<{ image: string; args: string[] }> } } };
    };
    const render = async (set: string[]) => {
      const [deployment] = (await renderChart(['templates/deployment.yaml'], workDir, set)) as Rendered[];
      const container = deployment?.spec.template.spec.containers[0];
      return {
        image: container?.image,
        sidecar: container?.args.find((a) => a.startsWith('--sidecar-image=')),
      };
    };
    const repository = 'registry.example/platform/mcp-warden';
    expect(
      await render([`image.repository=${repository}`, `image.digest=${image.indexDigest}`, 'image.tag=e2e']),
    ).toEqual({
      image: `${repository}@${image.indexDigest}`,
      sidecar: `--sidecar-image=${repository}@${image.indexDigest}`,
    });
    expect(await render([`image.repository=${repository}`])).toEqual({
      image: `${repository}:${VERSION}`,
      sidecar: `--sidecar-image=${repository}:${VERSION}`,
    });
  });
});

describe('the webhook from the image', () => {
  test('starts with in-cluster credentials under the chart securityContext and injects a pod', async () => {
    const [deployment] = (await renderChart(['templates/deployment.yaml'], workDir)) as Array<{
      spec: { template: { spec: { containers: Array<{ securityContext: Record<string, unknown> }> } } };
    }>;
    const security = deployment?.spec.template.spec.containers[0]?.securityContext ?? {};
    expect(security).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true });
    const [, imageGid] = (image.config.config.User ?? '').split(':');
    const server = new URL(cluster.server);
    const launch: Launcher = async (args) => {
      const token = await cluster.serviceAccountToken(WEBHOOK_NS, 'mcp-warden-webhook');
      // Readable by the container's user, as the kubelet writes a projected volume.
      const sa = await writeTokenVolume(await worldReadableDir('webhook-sa-'), {
        token,
        caPem: cluster.caPem,
        namespace: WEBHOOK_NS,
        labels: undefined,
      });
      return containerCommand(image, {
        args,
        env: {
          KUBERNETES_SERVICE_HOST: server.hostname,
          KUBERNETES_SERVICE_PORT: server.port,
          POD_NAME: 'webhook-0',
          POD_NAMESPACE: WEBHOOK_NS,
          HOSTNAME: 'webhook-0',
          HOME: '/home/nonroot',
          MCP_WARDEN_LOG_LEVEL: 'info',
        },
        mounts: [{ hostPath: sa, containerPath: Sidecar.tokenMountPath, readOnly: true }],
        runAsUser: Number(security['runAsUser']),
        runAsGroup: Number(security['runAsGroup'] ?? imageGid),
        readOnlyRootFilesystem: security['readOnlyRootFilesystem'] === true,
      });
    };
    await cluster.createNamespace(WEBHOOK_NS);
    await cluster.createNamespace('agents');
    webhook = await installWebhook(cluster, workDir, [], launch);
    const pod = await cluster.admin.client.request<{
      spec: { initContainers?: Array<{ name: string; image: string; args?: string[] }> };
    }>('POST', '/api/v1/namespaces/agents/pods', {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'github-mcp-0', labels: { app: 'github-mcp', 'mcpwarden.io/inject': 'true' } },
        spec: {
          containers: [
            {
              name: 'server',
              image: 'ghcr.io/example/github-mcp:1.2.0',
              ports: [{ name: 'mcp', containerPort: 8080 }],
            },
          ],
        },
      },
    });
    const sidecar = pod.spec.initContainers?.find((c) => c.name === Sidecar.containerName);
    expect(sidecar?.image).toBe(image.ref);
    expect(sidecar?.args?.[0]).toBe('sidecar');
    const metrics = await (await fetch(`${webhook.admin.replace(/\/$/, '')}/metrics`)).text();
    expect(metrics).toMatch(/mcp_warden_admission_requests_total\{[^}]*\} [1-9]/);
  }, 300_000);
});
