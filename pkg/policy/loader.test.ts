import { once } from 'node:events';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isWardenError, type WardenError } from '../errors.js';
import type { PolicyEngine } from './decision.js';
import { createFilePolicySource, loadPolicyPath } from './loader.js';
import { captureLogs as capture, identity, toolCall } from './testing.js';

const who = identity({ groups: ['readers'] });

function policyYaml(name: string, action: 'allow' | 'deny', tool = 't'): string {
  return `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: ${name}}
spec:
  podSelector: {}
  rules:
    - name: r
      subjects: [{group: readers}]
      match: {tools: [${tool}]}
      action: ${action}
`;
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mcp-warden-policy-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<WardenError> {
  try {
    await p;
  } catch (err) {
    if (isWardenError(err)) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

describe('loadPolicyPath', () => {
  test('a file with several documents (empty documents ignored)', async () => {
    const file = join(dir, 'p.yaml');
    await writeFile(file, `${policyYaml('a', 'allow')}---\n${policyYaml('b', 'deny', 'u')}---\n`);
    const docs = await loadPolicyPath(file);
    expect(docs.map((d) => d.metadata.name)).toEqual(['a', 'b']);
  });

  test('a directory: yaml, yml and json files in name order; dotfiles and other files skipped', async () => {
    await writeFile(join(dir, 'b.yaml'), policyYaml('b', 'allow'));
    await writeFile(join(dir, 'a.yml'), policyYaml('a', 'allow'));
    await writeFile(
      join(dir, 'c.json'),
      JSON.stringify({
        apiVersion: 'mcpwarden.io/v1alpha1',
        kind: 'MCPPolicy',
        metadata: { name: 'c' },
        spec: { podSelector: {}, rules: [] },
      }),
    );
    await writeFile(join(dir, '.hidden.yaml'), 'not: [valid');
    await writeFile(join(dir, 'README.md'), '# not a policy');
    expect((await loadPolicyPath(dir)).map((d) => d.metadata.name)).toEqual(['a', 'b', 'c']);
  });

  test('invalid files: ERR_POLICY_INVALID listing file, field path and reason for every issue', async () => {
    await writeFile(
      join(dir, 'one.yaml'),
      policyYaml('one', 'allow').replace('action: allow', 'action: permit'),
    );
    await writeFile(
      join(dir, 'two.yaml'),
      `${policyYaml('two', 'allow')}---\n${policyYaml('three', 'allow').replace('tools: [t]', 'tools: [t], when: "args.x =="')}`,
    );
    await writeFile(join(dir, 'three.yaml'), 'apiVersion: [unclosed');
    const err = await failure(loadPolicyPath(dir));
    expect(err.code).toBe('ERR_POLICY_INVALID');
    const lines = err.message.split('\n').slice(1);
    expect(lines).toEqual(
      expect.arrayContaining([
        `${join(dir, 'one.yaml')}: spec.rules[0].action: must be one of "allow", "deny", "approve" (got "permit")`,
        expect.stringMatching(/two\.yaml: \(document 2\) spec\.rules\[0\]\.match\.when: CEL does not parse/),
        expect.stringMatching(/three\.yaml: .*YAML: /),
      ]),
    );
    expect(lines).toHaveLength(3);
    expect(err.details?.['issues']).toHaveLength(3);
  });

  test('duplicate policy names across files are refused', async () => {
    await writeFile(join(dir, 'a.yaml'), policyYaml('same', 'allow'));
    await writeFile(join(dir, 'b.yaml'), policyYaml('same', 'deny'));
    const err = await failure(loadPolicyPath(dir));
    expect(err.message).toMatch(/b\.yaml: metadata\.name: policy "same" is also defined in .*a\.yaml/);
  });

  test('missing path, empty directory, a file with no documents', async () => {
    expect((await failure(loadPolicyPath(join(dir, 'nope.yaml')))).code).toBe('ERR_POLICY_UNAVAILABLE');
    expect((await failure(loadPolicyPath(dir))).message).toMatch(/no policy files/);
    await writeFile(join(dir, 'empty.yaml'), '# nothing\n---\n');
    expect((await failure(loadPolicyPath(dir))).message).toMatch(/no MCPPolicy documents/);
  });

  test('a file over 4 MiB is refused without being parsed', async () => {
    await writeFile(join(dir, 'huge.yaml'), `# ${'x'.repeat(4 * 1024 * 1024)}\n`);
    const err = await failure(loadPolicyPath(dir));
    expect(err.code).toBe('ERR_POLICY_INVALID');
    expect(err.message).toMatch(/huge\.yaml is \d+ bytes: at most 4194304/);
  });

  test('the shipped example loads', async () => {
    expect((await loadPolicyPath('examples/policy.yaml')).map((d) => d.metadata.name)).toEqual([
      'demo-tools',
      'demo-email-audit',
    ]);
  });
});

describe('createFilePolicySource', () => {
  test('refuses to start on an invalid policy', async () => {
    const file = join(dir, 'p.yaml');
    await writeFile(file, policyYaml('a', 'allow').replace('rules:', 'rulez:'));
    const err = await failure(createFilePolicySource(file));
    expect(err.code).toBe('ERR_POLICY_INVALID');
    expect(err.message).toMatch(/p\.yaml: spec\.rules: is required/);
  });

  test('a valid change to a watched file applies to the next decision', async () => {
    const file = join(dir, 'p.yaml');
    await writeFile(file, policyYaml('a', 'allow'));
    const { logger } = capture();
    const source = await createFilePolicySource(file, { logger, debounceMs: 20 });
    try {
      expect(source.current().decide(toolCall('t', who)).action).toBe('allow');
      const changed = new Promise<PolicyEngine | undefined>((resolve) => source.onChange(resolve));
      await writeFile(file, policyYaml('a', 'deny'));
      const engine = await changed;
      expect(engine?.decide(toolCall('t', who)).action).toBe('deny');
      expect(source.current().decide(toolCall('t', who)).action).toBe('deny');
    } finally {
      await source.close();
    }
  });

  test('an invalid change is logged loudly and rejected; the last good engine stays', async () => {
    const file = join(dir, 'p.yaml');
    await writeFile(file, policyYaml('a', 'allow'));
    const { logger, lines } = capture();
    const errors: Error[] = [];
    let notify: (() => void) | undefined;
    const source = await createFilePolicySource(file, {
      logger,
      debounceMs: 20,
      onError: (e) => {
        errors.push(e);
        notify?.();
      },
    });
    try {
      const before = source.current();
      const rejected = new Promise<void>((resolve) => {
        notify = resolve;
      });
      await writeFile(file, policyYaml('a', 'allow').replace('action: allow', 'action: maybe'));
      await rejected;
      expect(source.current()).toBe(before);
      expect(source.current().decide(toolCall('t', who)).action).toBe('allow');
      expect(isWardenError(errors[0], 'ERR_POLICY_INVALID')).toBe(true);
      const log = lines.find((l) => l['level'] === 50);
      expect(log?.['msg']).toMatch(/POLICY CHANGE REJECTED/);
      expect(JSON.stringify(log?.['issues'])).toMatch(/spec\.rules\[0\]\.action/);

      // A later valid change still applies.
      const changed = new Promise<PolicyEngine | undefined>((resolve) => source.onChange(resolve));
      await writeFile(file, policyYaml('a', 'deny'));
      expect((await changed)?.decide(toolCall('t', who)).action).toBe('deny');
    } finally {
      await source.close();
    }
  });

  test('a deleted file keeps the last good engine; an editor-style rename-over applies', async () => {
    const file = join(dir, 'p.yaml');
    await writeFile(file, policyYaml('a', 'allow'));
    let notify: (() => void) | undefined;
    const source = await createFilePolicySource(file, {
      logger: capture().logger,
      debounceMs: 20,
      onError: () => notify?.(),
    });
    try {
      const rejected = new Promise<void>((resolve) => {
        notify = resolve;
      });
      await rm(file);
      await rejected;
      expect(source.current().decide(toolCall('t', who)).action).toBe('allow');
      const changed = new Promise<PolicyEngine | undefined>((resolve) => source.onChange(resolve));
      await writeFile(join(dir, 'p.yaml.tmp'), policyYaml('a', 'deny'));
      await rename(join(dir, 'p.yaml.tmp'), file);
      expect((await changed)?.decide(toolCall('t', who)).action).toBe('deny');
    } finally {
      await source.close();
    }
  });

  test('a watched directory picks up new files; a ConfigMap-style ..data swap applies', async () => {
    // Kubernetes mounts ConfigMaps as name -> ..data/name with ..data a symlink swapped atomically.
    await mkdir(join(dir, '..v1'));
    await writeFile(join(dir, '..v1', 'p.yaml'), policyYaml('a', 'allow'));
    await symlink('..v1', join(dir, '..data'));
    await symlink(join('..data', 'p.yaml'), join(dir, 'p.yaml'));
    const source = await createFilePolicySource(dir, { logger: capture().logger, debounceMs: 20 });
    try {
      expect(source.current().decide(toolCall('t', who)).action).toBe('allow');
      let changed = new Promise<PolicyEngine | undefined>((resolve) => {
        const off = source.onChange((e) => {
          off();
          resolve(e);
        });
      });
      await mkdir(join(dir, '..v2'));
      await writeFile(join(dir, '..v2', 'p.yaml'), policyYaml('a', 'deny'));
      await symlink('..v2', join(dir, '..data_tmp'));
      await rename(join(dir, '..data_tmp'), join(dir, '..data'));
      expect((await changed)?.decide(toolCall('t', who)).action).toBe('deny');

      changed = new Promise<PolicyEngine | undefined>((resolve) => source.onChange(resolve));
      await writeFile(join(dir, 'q.yaml'), policyYaml('q', 'allow', 'u'));
      const engine = await changed;
      expect(engine?.policies().map((p) => p.name)).toEqual(['a', 'q']);
    } finally {
      await source.close();
    }
  });

  test('reload() is serialised and reports whether anything changed', async () => {
    const file = join(dir, 'p.yaml');
    await writeFile(file, policyYaml('a', 'allow'));
    const source = await createFilePolicySource(file, { logger: capture().logger, debounceMs: 10_000 });
    try {
      expect(await source.reload()).toBe(false);
      await writeFile(file, policyYaml('a', 'deny'));
      const [x, y] = await Promise.all([source.reload(), source.reload()]);
      expect(x || y).toBe(true);
      expect(source.current().decide(toolCall('t', who)).action).toBe('deny');
    } finally {
      await source.close();
    }
  });

  test('close stops watching', async () => {
    const file = join(dir, 'p.yaml');
    await writeFile(file, policyYaml('a', 'allow'));
    const source = await createFilePolicySource(file, { logger: capture().logger, debounceMs: 5 });
    let calls = 0;
    source.onChange(() => calls++);
    await source.close();
    await writeFile(file, policyYaml('a', 'deny'));
    // Give a (wrongly) live watcher every chance to fire: wait for a later file event of our own.
    const probe = join(dir, 'probe');
    const { watch } = await import('node:fs');
    const w = watch(dir);
    const seen = once(w, 'change');
    await writeFile(probe, 'x');
    await seen;
    w.close();
    // Absence cannot be awaited: allow ten debounce periods for a (wrongly) live watcher to fire.
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toBe(0);
    expect(source.current().decide(toolCall('t', who)).action).toBe('allow');
  });
});
