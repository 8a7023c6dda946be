import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { VERSION } from './version.js';

const root = join(import.meta.dirname, '..');

test('VERSION is the package version and the chart appVersion', async () => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string };
  const chart = parseYaml(await readFile(join(root, 'charts', 'mcp-warden', 'Chart.yaml'), 'utf8')) as {
    appVersion: string;
  };
  expect(VERSION).toBe(pkg.version);
  expect(chart.appVersion).toBe(pkg.version);
});
