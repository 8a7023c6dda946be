import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { jest } from '@jest/globals';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { createCA, issueServingCert, type KeyPairPem } from '../../webhook/tls.js';
import { createKubeClient, KubeApiError, loadKubeConfig } from './client.js';
import { inClusterCredentials, kubeconfigFileCredentials } from './kubeconfig.js';

/**
 * The light credentials loader against a real HTTPS API-server stand-in on loopback (a generated
 * CA, client certificates requested), and side by side with `@kubernetes/client-node`'s
 * `KubeConfig`, whose behaviour it reproduces.
 */
let ca: KeyPairPem;
let otherCa: KeyPairPem;
let serving: KeyPairPem;
let clientCert: KeyPairPem;
let server: Server;
let port: number;
let dir: string;
const seen: Array<{ authorization?: string; impersonate?: string; clientCn?: string }> = [];

beforeAll(async () => {
  ca = createCA({ commonName: 'kube-test-ca', lifetimeMs: 3600_000 });
  otherCa = createCA({ commonName: 'other-ca', lifetimeMs: 3600_000 });
  serving = issueServingCert(ca, { dnsNames: ['127.0.0.1', 'kubernetes.default.svc'], lifetimeMs: 3600_000 });
  clientCert = issueServingCert(ca, { dnsNames: ['node-agent'], lifetimeMs: 3600_000 });
  server = createServer(
    { cert: serving.certPem, key: serving.keyPem, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      seen.push({
        ...(req.headers.authorization === undefined ? {} : { authorization: req.headers.authorization }),
        ...(typeof req.headers['impersonate-user'] === 'string'
          ? { impersonate: req.headers['impersonate-user'] }
          : {}),
        ...(peer?.subject?.CN ? { clientCn: String(peer.subject.CN) } : {}),
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"kind":"APIVersions"}');
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  dir = await mkdtemp(join(tmpdir(), 'mcp-warden-kubeconfig-'));
}, 60_000);

afterAll(async () => {
  server.closeAllConnections();
  server.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  seen.length = 0;
});

const b64 = (s: string): string => Buffer.from(s).toString('base64');

async function kubeconfigFile(
  name: string,
  user: Record<string, unknown>,
  cluster: Record<string, unknown> = {},
): Promise<string> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(
    file,
    stringify(
      {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'test',
            cluster: {
              server: `https://127.0.0.1:${port}/`,
              'certificate-authority-data': b64(ca.certPem),
              ...cluster,
            },
          },
        ],
        users: [{ name: 'u', user }],
        contexts: [{ name: 'ctx', context: { cluster: 'test', user: 'u' } }],
        'current-context': 'ctx',
      },
      { lineWidth: 0 },
    ),
  );
  return file;
}

async function inClusterDir(name: string, token: string): Promise<string> {
  const prefix = join(dir, name);
  const sa = join(prefix, '/var/run/secrets/kubernetes.io/serviceaccount');
  await mkdir(sa, { recursive: true });
  await writeFile(join(sa, 'token'), token);
  await writeFile(join(sa, 'ca.crt'), ca.certPem);
  await writeFile(join(sa, 'namespace'), 'agents');
  return prefix;
}

describe('in-cluster service account', () => {
  test('talks TLS to KUBERNETES_SERVICE_HOST:PORT with the CA and token of the mounted volume', async () => {
    const prefix = await inClusterDir('pod-a', 'token-one');
    const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port) };
    const creds = loadKubeConfig({ pathPrefix: prefix, env });
    expect(creds.getCurrentCluster()?.server).toBe(`https://127.0.0.1:${port}`);
    const client = createKubeClient(creds);
    await expect(client.request('GET', '/api')).resolves.toEqual({ kind: 'APIVersions' });
    expect(seen).toEqual([{ authorization: 'Bearer token-one' }]);
  });

  test('re-reads a rotated token once a minute has passed, as client-go does', async () => {
    const prefix = await inClusterDir('pod-b', 'first');
    const client = createKubeClient(
      inClusterCredentials(prefix, {
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
        KUBERNETES_SERVICE_PORT: String(port),
      }),
    );
    await client.request('GET', '/api');
    await writeFile(join(prefix, '/var/run/secrets/kubernetes.io/serviceaccount/token'), 'second');
    await client.request('GET', '/api');
    const now = Date.now();
    const clock = jest.spyOn(Date, 'now').mockReturnValue(now + 61_000);
    try {
      await client.request('GET', '/api');
    } finally {
      clock.mockRestore();
    }
    expect(seen.map((s) => s.authorization)).toEqual(['Bearer first', 'Bearer first', 'Bearer second']);
  });

  test('refuses a server the mounted CA did not sign (TLS verified)', async () => {
    const prefix = await inClusterDir('pod-c', 't');
    await writeFile(join(prefix, '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'), otherCa.certPem);
    const client = createKubeClient(
      inClusterCredentials(prefix, {
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
        KUBERNETES_SERVICE_PORT: String(port),
      }),
    );
    const err = await client.request('GET', '/api').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).status).toBe(0);
    expect(seen).toEqual([]);
  });

  test('server URL as client-node builds it: IPv6 in brackets, http only on 80/8080/8001 (and then refused)', async () => {
    const v6 = inClusterCredentials('', {
      KUBERNETES_SERVICE_HOST: 'fd00::1',
      KUBERNETES_SERVICE_PORT: '443',
    });
    expect(v6.getCurrentCluster()?.server).toBe('https://[fd00::1]:443');
    const kc = new KubeConfig();
    const saved = { ...process.env };
    process.env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
    process.env['KUBERNETES_SERVICE_PORT'] = '8080';
    try {
      kc.loadFromCluster(join(dir, 'none'));
    } finally {
      process.env = saved;
    }
    const plain = inClusterCredentials(join(dir, 'none'), {
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: '8080',
    });
    expect(plain.getCurrentCluster()?.server).toBe(kc.getCurrentCluster()?.server);
    const prefix = await inClusterDir('pod-d', 't');
    const http = inClusterCredentials(prefix, {
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: '8080',
    });
    await expect(http.applyToHTTPSOptions({ headers: {} })).rejects.toThrow(
      'HTTP protocol is not allowed when skipTLSVerify is not set or false',
    );
  });
});

describe('kubeconfig file', () => {
  test('client certificate and CA data: the server sees the certificate', async () => {
    const file = await kubeconfigFile('cert', {
      'client-certificate-data': b64(clientCert.certPem),
      'client-key-data': b64(clientCert.keyPem),
    });
    const client = createKubeClient(loadKubeConfig({ kubeconfig: file }));
    await expect(client.request('GET', '/api')).resolves.toEqual({ kind: 'APIVersions' });
    expect(seen).toEqual([{ clientCn: 'node-agent' }]);
  });

  test('relative certificate-authority and token-file paths resolve against the file; impersonation header', async () => {
    const sub = join(dir, 'relative');
    await mkdir(sub, { recursive: true });
    await writeFile(join(sub, 'ca.pem'), ca.certPem);
    const tokenFile = join(sub, 'token');
    await writeFile(tokenFile, 'from-file');
    const file = join(sub, 'config');
    await writeFile(
      file,
      stringify({
        clusters: [
          { name: 'c', cluster: { server: `https://127.0.0.1:${port}`, 'certificate-authority': 'ca.pem' } },
        ],
        users: [{ name: 'u', user: { 'token-file': tokenFile, as: 'jane' } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    await createKubeClient(loadKubeConfig({ kubeconfig: file })).request('GET', '/api');
    expect(seen).toEqual([{ authorization: 'Bearer from-file', impersonate: 'jane' }]);
  });

  test('gives the same request options as client-node for token, certificate, basic-auth and TLS settings', async () => {
    const cases: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
      ['token', { token: 'abc' }, {}],
      [
        'cert',
        { 'client-certificate-data': b64(clientCert.certPem), 'client-key-data': b64(clientCert.keyPem) },
        {},
      ],
      ['basic', { username: 'ann', password: 'pw', as: 'bob' }, {}],
      [
        'skip',
        { token: 't' },
        { 'insecure-skip-tls-verify': true, 'tls-server-name': 'kubernetes.default.svc' },
      ],
    ];
    for (const [name, user, cluster] of cases) {
      const file = await kubeconfigFile(`parity-${name}`, user, cluster);
      const kc = new KubeConfig();
      kc.loadFromFile(file);
      const theirs: Record<string, unknown> = { headers: {} };
      await kc.applyToHTTPSOptions(theirs);
      const ours: Record<string, unknown> = { headers: {} };
      const creds = kubeconfigFileCredentials(file);
      await creds.applyToHTTPSOptions(ours);
      expect(creds.getCurrentCluster()?.server).toBe(kc.getCurrentCluster()?.server);
      const { agent: theirAgent, ...theirRest } = theirs;
      const { agent: ourAgent, ...ourRest } = ours;
      expect(ourRest).toEqual(theirRest);
      expect(ourAgent?.constructor.name).toBe(theirAgent?.constructor.name);
    }
  });

  test('an exec credential plugin is handed to client-node (loaded on first use)', async () => {
    const plugin = join(dir, 'exec-plugin.mjs');
    await writeFile(
      plugin,
      `process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: 'from-exec' } }));\n`,
    );
    const file = await kubeconfigFile('exec', {
      exec: {
        apiVersion: 'client.authentication.k8s.io/v1',
        command: process.execPath,
        args: [plugin],
        interactiveMode: 'Never',
      },
    });
    await createKubeClient(loadKubeConfig({ kubeconfig: file })).request('GET', '/api');
    expect(seen).toEqual([{ authorization: 'Bearer from-exec' }]);
  });

  test('a KUBECONFIG list merges as kubectl does: first file wins each name and the current context; missing files skipped', async () => {
    // Three files: the context in `a` (current-context set there), its cluster and user in `b`
    // (whose relative CA path resolves against b's own directory), and in `c` a cluster and a user
    // of the same names that must lose (wrong CA, wrong token), and another current-context.
    const a = join(dir, 'merge-a');
    const b = join(dir, 'merge-b');
    const c = join(dir, 'merge-c');
    for (const d of [a, b, c]) await mkdir(d, { recursive: true });
    await writeFile(join(b, 'ca.pem'), ca.certPem);
    await writeFile(join(c, 'ca.pem'), otherCa.certPem);
    const write = (d: string, doc: Record<string, unknown>) => writeFile(join(d, 'config'), stringify(doc));
    await write(a, {
      contexts: [{ name: 'work', context: { cluster: 'prod', user: 'me' } }],
      'current-context': 'work',
    });
    const server = `https://127.0.0.1:${port}`;
    await write(b, {
      clusters: [{ name: 'prod', cluster: { server, 'certificate-authority': 'ca.pem' } }],
      users: [{ name: 'me', user: { token: 'from-b' } }],
    });
    await write(c, {
      clusters: [{ name: 'prod', cluster: { server, 'certificate-authority': 'ca.pem' } }],
      users: [{ name: 'me', user: { token: 'from-c' } }],
      contexts: [{ name: 'other', context: { cluster: 'prod', user: 'me' } }],
      'current-context': 'other',
    });
    const KUBECONFIG = [join(dir, 'missing'), join(a, 'config'), join(b, 'config'), join(c, 'config')].join(
      ':',
    );
    await createKubeClient(loadKubeConfig({ env: { KUBECONFIG } })).request('GET', '/api');
    expect(seen).toEqual([{ authorization: 'Bearer from-b' }]);

    // The same merge when the user is an exec plugin (handed to client-node, whose own merge
    // refuses duplicate names and keeps the last file's current context).
    const plugin = join(dir, 'merge-exec.mjs');
    await writeFile(
      plugin,
      `process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: 'exec-b' } }));\n`,
    );
    await write(b, {
      clusters: [{ name: 'prod', cluster: { server, 'certificate-authority': 'ca.pem' } }],
      users: [
        {
          name: 'me',
          user: {
            exec: {
              apiVersion: 'client.authentication.k8s.io/v1',
              command: process.execPath,
              args: [plugin],
              interactiveMode: 'Never',
            },
          },
        },
      ],
    });
    seen.length = 0;
    await createKubeClient(loadKubeConfig({ env: { KUBECONFIG } })).request('GET', '/api');
    expect(seen).toEqual([{ authorization: 'Bearer exec-b' }]);

    // None of the listed files exists: the first is named in the error.
    expect(() =>
      loadKubeConfig({ env: { KUBECONFIG: `${join(dir, 'nope-1')}:${join(dir, 'nope-2')}` } }),
    ).toThrow(/cannot load Kubernetes credentials: .*nope-1/);
  });

  test('invalid files are refused at load with client-node’s messages (ERR_CONFIG)', async () => {
    const noServer = join(dir, 'no-server.yaml');
    await writeFile(noServer, stringify({ clusters: [{ name: 'c', cluster: {} }] }));
    expect(() => loadKubeConfig({ kubeconfig: noServer })).toThrow(
      expect.objectContaining({
        code: 'ERR_CONFIG',
        message: expect.stringContaining('clusters[0].cluster.server is missing'),
      }),
    );
    const kc = new KubeConfig();
    expect(() => kc.loadFromFile(noServer)).toThrow('clusters[0].cluster.server is missing');
    const noContext = join(dir, 'no-context.yaml');
    await writeFile(
      noContext,
      stringify({ clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1' } }], contexts: [] }),
    );
    expect(() => loadKubeConfig({ kubeconfig: noContext })).toThrow(/no current cluster/);
    expect(() => loadKubeConfig({ kubeconfig: join(dir, 'missing.yaml') })).toThrow(
      expect.objectContaining({
        code: 'ERR_CONFIG',
        message: expect.stringContaining('cannot load Kubernetes credentials'),
      }),
    );
    expect(() => loadKubeConfig({ env: {} })).toThrow(
      /neither KUBECONFIG nor the in-cluster service account/,
    );
  });
});
