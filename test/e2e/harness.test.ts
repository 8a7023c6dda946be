import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { Agent, fetch } from 'undici';
import { KubeApiError } from '../../pkg/kube/client.js';
import { type Cluster, REPO_ROOT, startCluster } from './harness.js';

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
