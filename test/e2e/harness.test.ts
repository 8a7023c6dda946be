import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { Agent, fetch } from 'undici';
import { KubeApiError } from '../../pkg/kube/client.js';
import { type Cluster, REPO_ROOT, startCluster, tsNodeArgs } from './harness.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ crds: false });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('e2e harness: a real kube-apiserver on loopback', () => {
  test('the server reports the version the build script built', async () => {
    const stamp = (
      await readFile(join(REPO_ROOT, '.cache', 'bin', '.kube-apiserver.version'), 'utf8')
    ).trim();
    expect(cluster.version).toBe(stamp);
    expect(cluster.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const info = await cluster.admin.client.request<{ gitVersion: string; major: string; minor: string }>(
      'GET',
      '/version',
    );
    expect(info.gitVersion).toBe(stamp);
    expect(`v${info.major}.${info.minor}.`).toBe(stamp.replace(/^(v\d+\.\d+\.).*$/, '$1'));
    // The built kubectl talks to it through the admin kubeconfig file.
    const r = await cluster.kubectl(['version', '-o', 'json']);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.stdout) as {
      clientVersion: { gitVersion: string };
      serverVersion: { gitVersion: string };
    };
    expect(v.serverVersion.gitVersion).toBe(stamp);
    expect(v.clientVersion.gitVersion).toBe(stamp);
  });

  test('RBAC denies an unprivileged client-certificate user, and allows it once bound', async () => {
    await cluster.createNamespace('harness-rbac');
    const rita = await cluster.user('rita', ['mcp-reviewers']);
    const err = await rita.client
      .request('GET', '/api/v1/namespaces/harness-rbac/configmaps')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).status).toBe(403);
    expect((err as KubeApiError).message).toContain('User "rita" cannot list resource "configmaps"');

    const denied = await cluster.kubectl(['auth', 'can-i', 'list', 'configmaps', '-n', 'harness-rbac'], {
      user: rita,
    });
    expect(denied.stdout.trim()).toBe('no');

    // Bind the group (not the user): proves the certificate's O= became a group.
    // (No controller-manager runs, so the aggregated `view` role is empty: make a real Role.)
    const role = await cluster.kubectl([
      'create',
      'role',
      'cm-reader',
      '-n',
      'harness-rbac',
      '--verb=get,list',
      '--resource=configmaps',
    ]);
    expect(role.code).toBe(0);
    const binding = await cluster.kubectl([
      'create',
      'rolebinding',
      'reviewers-read',
      '-n',
      'harness-rbac',
      '--role=cm-reader',
      '--group=mcp-reviewers',
    ]);
    expect(binding.code).toBe(0);
    const allowed = await cluster.kubectl(['auth', 'can-i', 'list', 'configmaps', '-n', 'harness-rbac'], {
      user: rita,
    });
    expect(allowed.stdout.trim()).toBe('yes');
    const list = await rita.client.request<{ items: unknown[] }>(
      'GET',
      '/api/v1/namespaces/harness-rbac/configmaps',
    );
    expect(Array.isArray(list.items)).toBe(true);
    // Still no write access.
    const write = await cluster.kubectl(['auth', 'can-i', 'create', 'configmaps', '-n', 'harness-rbac'], {
      user: rita,
    });
    expect(write.stdout.trim()).toBe('no');
  });

  test('TokenRequest mints a real service-account token the API server authenticates', async () => {
    await cluster.createNamespace('harness-sa');
    await cluster.createServiceAccount('harness-sa', 'mcp-server');
    const sa = await cluster.serviceAccountUser('harness-sa', 'mcp-server', {
      audiences: [cluster.serviceAccountIssuer],
      expirationSeconds: 600,
    });
    const claims = decodeJwt(sa.token);
    expect(claims.iss).toBe(cluster.serviceAccountIssuer);
    expect(claims.sub).toBe('system:serviceaccount:harness-sa:mcp-server');

    const review = await sa.client.request<{ status: { userInfo: { username: string; groups: string[] } } }>(
      'POST',
      '/apis/authentication.k8s.io/v1/selfsubjectreviews',
      { body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } },
    );
    expect(review.status.userInfo.username).toBe('system:serviceaccount:harness-sa:mcp-server');
    expect(review.status.userInfo.groups).toContain('system:serviceaccounts:harness-sa');

    // A token for another audience is minted, but the API server refuses it.
    const foreign = await cluster.serviceAccountToken('harness-sa', 'mcp-server', {
      audiences: ['github-mcp'],
    });
    expect(decodeJwt(foreign).aud).toEqual(['github-mcp']);
    const foreignUser = await cluster.tokenUser(foreign);
    const who = await cluster.kubectl(['auth', 'whoami', '-o', 'json'], { user: foreignUser });
    expect(who.code).not.toBe(0);
    expect(who.stderr).toMatch(/Unauthorized|must be logged in/i);
    const ok = await cluster.kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], {
      user: sa,
    });
    expect(ok.stdout).toBe('system:serviceaccount:harness-sa:mcp-server');

    // The issuer's discovery document is public, as token verifiers need it.
    // Unauthenticated, trusting only the harness CA.
    const res = await fetch(`${cluster.serviceAccountIssuer}/.well-known/openid-configuration`, {
      dispatcher: new Agent({ connect: { ca: cluster.caPem } }),
    });
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { issuer: string; jwks_uri: string };
    expect(doc.issuer).toBe(cluster.serviceAccountIssuer);
  });

  test('when the test process dies without stop(), its etcd and kube-apiserver go too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'harness-orphan-'));
    const script = join(dir, 'child.ts');
    await writeFile(
      script,
      `import { startCluster } from ${JSON.stringify(join(REPO_ROOT, 'test', 'e2e', 'harness.ts'))};
const c = await startCluster({ crds: false });
process.stdout.write(JSON.stringify({ dir: c.dir, groups: c.processGroups() }) + '\\n');
setInterval(() => undefined, 1 << 30);
`,
    );
    const child = spawn(process.execPath, [...(await tsNodeArgs(dir)), script], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '' },
    });
    let out = '';
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      err += c;
    });
    const info = await new Promise<{ dir: string; groups: number[] }>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (c: string) => {
        out += c;
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0] as string));
      });
      child.once('exit', (code) => reject(new Error(`child exited ${code}: ${err}`)));
    });
    expect(info.groups).toHaveLength(2);
    const alive = (pgid: number): boolean => {
      try {
        process.kill(-pgid, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(info.groups.every(alive)).toBe(true);
    child.kill('SIGKILL');
    await once(child, 'exit');
    // The guardians notice within about a second; poll (a foreign process's death has no event here).
    const deadline = Date.now() + 20_000;
    while (info.groups.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(info.groups.filter(alive)).toEqual([]);
    await rm(info.dir, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }, 120_000);

  test('stop() kills the processes and removes the temp dir', async () => {
    const other = await startCluster({ crds: false });
    const dir = other.dir;
    expect(existsSync(join(dir, 'ca.crt'))).toBe(true);
    await other.stop();
    expect(existsSync(dir)).toBe(false);
    const err = await other.admin.client
      .request('GET', '/version', { timeoutMs: 2000 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).status).toBe(0);
  }, 120_000);
});
