import { collectDefaultMetrics, Registry } from 'prom-client';
import { createMetrics, registerDefaultMetrics } from './catalogue.js';

/**
 * The default process metrics are registered from prom-client's parts (without its index and
 * @opentelemetry/api): the same metrics, in the same order, as prom-client's collectDefaultMetrics.
 */
test('the same default metrics as prom-client, names, help, types and order', async () => {
  const theirs = new Registry();
  collectDefaultMetrics({ register: theirs, prefix: 'x_' });
  const ours = new Registry();
  registerDefaultMetrics(ours, 'x_');
  const shape = async (r: Registry) =>
    (await r.getMetricsAsJSON()).map((m) => ({ name: m.name, help: m.help, type: m.type }));
  const expected = await shape(theirs);
  expect(expected.length).toBeGreaterThan(15);
  expect(await shape(ours)).toEqual(expected);
});

test('process CPU counters count CPU time, user + system = total', async () => {
  const registry = new Registry();
  registerDefaultMetrics(registry, 'x_');
  await registry.getMetricsAsJSON(); // first collect: the baseline
  const until = Date.now() + 60;
  let spin = 0;
  while (Date.now() < until) spin++;
  const metrics = await registry.getMetricsAsJSON();
  const value = (name: string) => metrics.find((m) => m.name === name)?.values[0]?.value ?? Number.NaN;
  const user = value('x_process_cpu_user_seconds_total');
  const system = value('x_process_cpu_system_seconds_total');
  const total = value('x_process_cpu_seconds_total');
  expect(spin).toBeGreaterThan(0);
  expect(user).toBeGreaterThan(0.02);
  expect(total).toBeCloseTo(user + system, 6);
});

test('createMetrics exposes the catalogue and the prefixed process metrics', async () => {
  const m = createMetrics();
  m.requests.inc({ policy: 'p', method: 'tools/call', decision: 'allow' });
  const text = await m.registry.metrics();
  expect(text).toContain('mcp_warden_requests_total{policy="p",method="tools/call",decision="allow"} 1');
  expect(text).toContain('# TYPE mcp_warden_process_process_cpu_seconds_total counter');
  expect(text).toContain('mcp_warden_process_nodejs_eventloop_lag_seconds');
  m.registry.clear();
});
