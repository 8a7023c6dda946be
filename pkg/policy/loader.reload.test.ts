// Live reload when the policy path is swapped rather than edited: a release symlink flipped with
// `ln -sfn`, a ConfigMap volume's `..data` swap, a directory removed and re-created. Real files,
// symlinks and renames in a temp directory; every step awaits the change (or the error) it causes.
import { mkdir, mkdtemp, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isWardenError } from '../errors.js';
import type { PolicyEngine } from './decision.js';
import { createFilePolicySource, type FilePolicySource } from './loader.js';
import { captureLogs as capture, identity, toolCall } from './testing.js';

const who = identity({ groups: ['readers'] });

function policyYaml(action: 'allow' | 'deny', comment = ''): string {
  return `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: a}
spec:
  podSelector: {}
  rules:
    - name: r
      subjects: [{group: readers}]
      match: {tools: [t]}
      action: ${action}
${comment}`;
}

/** The next engine the source applies. */
function nextChange(source: FilePolicySource): Promise<PolicyEngine | undefined> {
  return new Promise((resolve) => {
    const off = source.onChange((e) => {
      off();
      resolve(e);
    });
  });
}

const decide = (e: PolicyEngine | undefined) => e?.decide(toolCall('t', who)).action;

let root: string;
beforeEach(async () => {
  // realpath: on some systems the temp directory itself is behind a symlink.
  root = await realpath(await mkdtemp(join(tmpdir(), 'mcp-warden-reload-')));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Point `link` at `to` atomically, the way `ln -sfn` and the kubelet do: new link, rename over. */
async function swapLink(to: string, link: string): Promise<void> {
  await symlink(to, `${link}.tmp`);
  await rename(`${link}.tmp`, link);
}

describe.each([
  ['file', 'current/policy.yaml'],
  ['directory', 'current'],
])('a release symlink swapped (ln -sfn v2 current), --policy names the %s', (_mode, rel) => {
  test('the new release applies, later edits in it apply, and the swap is logged', async () => {
    await mkdir(join(root, 'v1'));
    await writeFile(join(root, 'v1', 'policy.yaml'), policyYaml('allow'));
    await symlink('v1', join(root, 'current'));
    const { logger, lines } = capture();
    const source = await createFilePolicySource(join(root, rel), { logger, debounceMs: 20 });
    try {
      expect(decide(source.current())).toBe('allow');

      let changed = nextChange(source);
      await mkdir(join(root, 'v2'));
      await writeFile(join(root, 'v2', 'policy.yaml'), policyYaml('deny'));
      await swapLink('v2', join(root, 'current'));
      expect(decide(await changed)).toBe('deny');
      const swapped = lines.find((l) => l['msg'] === 'policy path was replaced; watching where it leads now');
      expect(swapped?.['level']).toBe(30);
      expect(String(swapped?.['to'])).toContain(join(root, 'v2'));

      // The watch follows the swap: an in-place edit of the new release is seen.
      changed = nextChange(source);
      await writeFile(join(root, 'v2', 'policy.yaml'), policyYaml('allow', '# edited\n'));
      expect(decide(await changed)).toBe('allow');
    } finally {
      await source.close();
    }
  });
});

describe.each([
  ['directory', 'policies'],
  ['file', 'policies/p.yaml'],
])('a ConfigMap volume with a nested item path, --policy names the %s', (_mode, rel) => {
  // The kubelet's layout for `items: [{key: p.yaml, path: policies/p.yaml}]`:
  // policies -> ..data/policies, ..data -> ..<timestamp>; an update writes a new timestamped
  // directory, swaps ..data and removes the old directory.
  async function publish(version: string, text: string): Promise<void> {
    await mkdir(join(root, version, 'policies'), { recursive: true });
    await writeFile(join(root, version, 'policies', 'p.yaml'), text);
  }

  test('each ..data swap applies (the old timestamped directory removed)', async () => {
    await publish('..2024_01', policyYaml('allow'));
    await symlink('..2024_01', join(root, '..data'));
    await symlink(join('..data', 'policies'), join(root, 'policies'));
    const source = await createFilePolicySource(join(root, rel), {
      logger: capture().logger,
      debounceMs: 20,
    });
    try {
      expect(decide(source.current())).toBe('allow');
      let changed = nextChange(source);
      await publish('..2024_02', policyYaml('deny'));
      await swapLink('..2024_02', join(root, '..data'));
      await rm(join(root, '..2024_01'), { recursive: true });
      expect(decide(await changed)).toBe('deny');

      changed = nextChange(source);
      await publish('..2024_03', policyYaml('allow'));
      await swapLink('..2024_03', join(root, '..data'));
      await rm(join(root, '..2024_02'), { recursive: true });
      expect(decide(await changed)).toBe('allow');
    } finally {
      await source.close();
    }
  });
});

test('a flat ConfigMap mount, --policy names the file: a ..data swap applies', async () => {
  await mkdir(join(root, '..2024_01'));
  await writeFile(join(root, '..2024_01', 'p.yaml'), policyYaml('allow'));
  await symlink('..2024_01', join(root, '..data'));
  await symlink(join('..data', 'p.yaml'), join(root, 'p.yaml'));
  const source = await createFilePolicySource(join(root, 'p.yaml'), {
    logger: capture().logger,
    debounceMs: 20,
  });
  try {
    const changed = nextChange(source);
    await mkdir(join(root, '..2024_02'));
    await writeFile(join(root, '..2024_02', 'p.yaml'), policyYaml('deny'));
    await swapLink('..2024_02', join(root, '..data'));
    await rm(join(root, '..2024_01'), { recursive: true });
    expect(decide(await changed)).toBe('deny');
  } finally {
    await source.close();
  }
});

test('a directory removed and re-created (rm -rf conf && cp -r new conf): later edits still apply', async () => {
  const conf = join(root, 'conf');
  await mkdir(conf);
  await writeFile(join(conf, 'p.yaml'), policyYaml('allow'));
  const source = await createFilePolicySource(join(conf, 'p.yaml'), {
    logger: capture().logger,
    debounceMs: 20,
  });
  try {
    let changed = nextChange(source);
    await rm(conf, { recursive: true });
    await mkdir(conf);
    await writeFile(join(conf, 'p.yaml'), policyYaml('deny'));
    expect(decide(await changed)).toBe('deny');
    // The watch moved to the new directory: an in-place edit there is seen.
    changed = nextChange(source);
    await writeFile(join(conf, 'p.yaml'), policyYaml('allow'));
    expect(decide(await changed)).toBe('allow');
  } finally {
    await source.close();
  }
});

test('a policy directory that disappears: a warning, the last good policy stays; it applies when back', async () => {
  const conf = join(root, 'conf');
  await mkdir(conf);
  await writeFile(join(conf, 'p.yaml'), policyYaml('allow'));
  const { logger, lines } = capture();
  const errors: Error[] = [];
  let notify: (() => void) | undefined;
  const source = await createFilePolicySource(conf, {
    logger,
    debounceMs: 20,
    onError: (e) => {
      errors.push(e);
      notify?.();
    },
  });
  try {
    const gone = new Promise<void>((resolve) => {
      notify = resolve;
    });
    await rm(conf, { recursive: true });
    await gone;
    expect(isWardenError(errors[0], 'ERR_POLICY_UNAVAILABLE')).toBe(true);
    expect(lines.find((l) => l['level'] === 40)?.['msg']).toMatch(/POLICY PATH GONE/);
    expect(decide(source.current())).toBe('allow');

    const changed = nextChange(source);
    await mkdir(conf);
    await writeFile(join(conf, 'p.yaml'), policyYaml('deny'));
    expect(decide(await changed)).toBe('deny');
  } finally {
    await source.close();
  }
});

describe('the poll (a missed file event costs at most one interval)', () => {
  test('with no watch at all, a symlink swap is picked up by the poll and logged as such', async () => {
    await mkdir(join(root, 'v1'));
    await writeFile(join(root, 'v1', 'policy.yaml'), policyYaml('allow'));
    await symlink('v1', join(root, 'current'));
    const { logger, lines } = capture();
    const source = await createFilePolicySource(join(root, 'current', 'policy.yaml'), {
      logger,
      watch: false,
      pollIntervalMs: 20,
    });
    try {
      const changed = nextChange(source);
      await mkdir(join(root, 'v2'));
      await writeFile(join(root, 'v2', 'policy.yaml'), policyYaml('deny'));
      await swapLink('v2', join(root, 'current'));
      expect(decide(await changed)).toBe('deny');
      expect(lines.find((l) => l['msg'] === 'policy change applied')?.['trigger']).toBe('poll');
    } finally {
      await source.close();
    }
  });

  test('a rejected change is reported once, not on every poll', async () => {
    const file = join(root, 'p.yaml');
    await writeFile(file, policyYaml('allow'));
    const { logger, lines } = capture();
    let polls = 0;
    let notify: (() => void) | undefined;
    const source = await createFilePolicySource(file, {
      logger,
      watch: false,
      pollIntervalMs: 10,
      onError: () => {
        polls++;
        notify?.();
      },
    });
    try {
      const rejected = new Promise<void>((resolve) => {
        notify = resolve;
      });
      await writeFile(file, policyYaml('allow').replace('action: allow', 'action: maybe'));
      await rejected;
      // Absence cannot be awaited: allow ten poll intervals for a repeated report.
      await new Promise((r) => setTimeout(r, 100));
      expect(polls).toBe(1);
      expect(lines.filter((l) => l['level'] === 50)).toHaveLength(1);
      expect(decide(source.current())).toBe('allow');

      // Back to the last good content: said once, nothing applied.
      const back = lines.length;
      await writeFile(file, policyYaml('allow'));
      expect(await source.reload()).toBe(false);
      expect(lines.slice(back).map((l) => l['msg'])).toContain(
        'policy path valid again; the policy in force is unchanged',
      );
    } finally {
      await source.close();
    }
  });

  test('pollIntervalMs is checked at the boundary', async () => {
    const file = join(root, 'p.yaml');
    await writeFile(file, policyYaml('allow'));
    await expect(createFilePolicySource(file, { pollIntervalMs: -1 })).rejects.toMatchObject({
      code: 'ERR_CONFIG',
    });
  });
});
