import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { currentNamespace, kubectlConfigPath } from './kubectl-config.js';

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

describe('kubectlConfigPath', () => {
  test('--kubeconfig wins over KUBECONFIG, which wins over ~/.kube/config', () => {
    const env = { KUBECONFIG: join(dir, 'no-ns') };
    const home = join(dir, 'home');
    expect(kubectlConfigPath({ kubeconfig: '/given', env, home })).toBe('/given');
    expect(kubectlConfigPath({ env, home })).toBe(join(dir, 'no-ns'));
    expect(kubectlConfigPath({ env: {}, home })).toBe(join(home, '.kube', 'config'));
  });

  test('nothing at all: undefined (only the in-cluster account is left)', () => {
    expect(kubectlConfigPath({ env: {}, home: join(dir, 'nowhere') })).toBeUndefined();
  });

  test('a KUBECONFIG list: the first existing file that sets current-context', () => {
    const list = [join(dir, 'missing'), join(dir, 'no-current'), join(dir, 'with-ns'), join(dir, 'no-ns')];
    expect(kubectlConfigPath({ env: { KUBECONFIG: list.join(delimiter) } })).toBe(join(dir, 'with-ns'));
    const none = [join(dir, 'missing'), join(dir, 'no-current')].join(delimiter);
    expect(kubectlConfigPath({ env: { KUBECONFIG: none } })).toBe(join(dir, 'no-current'));
    expect(kubectlConfigPath({ env: { KUBECONFIG: join(dir, 'missing') } })).toBe(join(dir, 'missing'));
  });
});

describe('currentNamespace', () => {
  test("the current context's namespace, not another context's", () => {
    expect(currentNamespace(join(dir, 'with-ns'))).toBe('agents');
    expect(currentNamespace(join(dir, 'no-ns'))).toBeUndefined();
    expect(currentNamespace(join(dir, 'no-current'))).toBeUndefined();
    expect(currentNamespace(join(dir, 'missing'))).toBeUndefined();
  });

  test('in a pod without a kubeconfig: the service account namespace', () => {
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1' };
    expect(currentNamespace(undefined, { env, serviceAccountDir: join(dir, 'sa') })).toBe('in-cluster-ns');
    expect(currentNamespace(undefined, { env: {}, serviceAccountDir: join(dir, 'sa') })).toBeUndefined();
  });
});
