import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { currentNamespace, kubectlConfigPaths } from './kubectl-config.js';

let dir: string;
const kubeconfig = (current: string | undefined, namespace?: string): string =>
  [
    'apiVersion: v1',
    'kind: Config',
    ...(current === undefined ? [] : [`current-context: ${current}`]),
    'clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]',
    'users: [{name: u, user: {token: t}}]',
    'contexts:',
    '  - {name: other, context: {cluster: c, user: u, namespace: wrong}}',
    `  - {name: work, context: {cluster: c, user: u${namespace ? `, namespace: ${namespace}` : ''}}}`,
  ].join('\n');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mcp-warden-kubectl-config-'));
  await writeFile(join(dir, 'with-ns'), kubeconfig('work', 'agents'));
  await writeFile(join(dir, 'no-ns'), kubeconfig('work'));
  await writeFile(join(dir, 'no-current'), kubeconfig(undefined, 'agents'));
  await mkdir(join(dir, 'home', '.kube'), { recursive: true });
  await writeFile(join(dir, 'home', '.kube', 'config'), kubeconfig('work', 'from-home'));
  await mkdir(join(dir, 'sa'));
  await writeFile(join(dir, 'sa', 'namespace'), 'in-cluster-ns\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('kubectlConfigPaths', () => {
  test('--kubeconfig wins over KUBECONFIG, which wins over ~/.kube/config', () => {
    const env = { KUBECONFIG: join(dir, 'no-ns') };
    const home = join(dir, 'home');
    expect(kubectlConfigPaths({ kubeconfig: '/given', env, home })).toEqual(['/given']);
    expect(kubectlConfigPaths({ env, home })).toEqual([join(dir, 'no-ns')]);
    expect(kubectlConfigPaths({ env: {}, home })).toEqual([join(home, '.kube', 'config')]);
  });

  test('nothing at all: no file (only the in-cluster account is left)', () => {
    expect(kubectlConfigPaths({ env: {}, home: join(dir, 'nowhere') })).toEqual([]);
  });

  test('a KUBECONFIG list: every existing file in order; the first entry when none exists', () => {
    const list = [join(dir, 'missing'), join(dir, 'no-current'), join(dir, 'with-ns'), join(dir, 'no-ns')];
    expect(kubectlConfigPaths({ env: { KUBECONFIG: list.join(delimiter) } })).toEqual(list.slice(1));
    const none = [join(dir, 'missing'), join(dir, 'missing-2')].join(delimiter);
    expect(kubectlConfigPaths({ env: { KUBECONFIG: none } })).toEqual([join(dir, 'missing')]);
  });
});

describe('currentNamespace', () => {
  test("the current context's namespace, not another context's", () => {
    expect(currentNamespace([join(dir, 'with-ns')])).toBe('agents');
    expect(currentNamespace([join(dir, 'no-ns')])).toBeUndefined();
    expect(currentNamespace([join(dir, 'no-current')])).toBeUndefined();
    expect(currentNamespace([join(dir, 'missing')])).toBeUndefined();
  });

  test('merged files: the first current-context, then the first file that defines that context', () => {
    // no-current defines `work` with namespace agents but sets no current context; no-ns sets
    // current-context work and defines it without a namespace: kubectl takes no-current's `work`.
    expect(currentNamespace([join(dir, 'no-current'), join(dir, 'no-ns')])).toBe('agents');
    expect(currentNamespace([join(dir, 'no-ns'), join(dir, 'no-current')])).toBeUndefined();
    expect(currentNamespace([join(dir, 'no-current'), join(dir, 'home', '.kube', 'config')])).toBe('agents');
    expect(currentNamespace([join(dir, 'no-current')])).toBeUndefined();
  });

  test('in a pod without a kubeconfig: the service account namespace', () => {
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1' };
    expect(currentNamespace([], { env, serviceAccountDir: join(dir, 'sa') })).toBe('in-cluster-ns');
    expect(currentNamespace([], { env: {}, serviceAccountDir: join(dir, 'sa') })).toBeUndefined();
  });
});
