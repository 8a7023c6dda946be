import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

/**
 * prom-client's parts, not its index: the index also loads the push-gateway client and, through
 * the default process-CPU metric, @opentelemetry/api (51 modules, for exemplars mcp-warden does
 * not use): measured 7 MiB more resident on import. The CPU counters are defined below exactly as
 * prom-client defines them (catalogue.test.ts compares every default metric with prom-client's).
 */
const require = createRequire(import.meta.url);
const Registry = require('prom-client/lib/registry') as typeof Prom.Registry;
const Counter = require('prom-client/lib/counter') as typeof Prom.Counter;
const Gauge = require('prom-client/lib/gauge') as typeof Prom.Gauge;
const Histogram = require('prom-client/lib/histogram') as typeof Prom.Histogram;
type Registry = Prom.Registry;
type Counter<T extends string = string> = Prom.Counter<T>;
type Gauge<T extends string = string> = Prom.Gauge<T>;
type Histogram<T extends string = string> = Prom.Histogram<T>;

/** prom-client's default metrics but process CPU time (lib/defaultMetrics.js, same order). */
const defaultMetricModules = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  ...(typeof process.getActiveResourcesInfo === 'function' ? ['processResources'] : []),
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
];

/** What `collectDefaultMetrics({ register, prefix })` registers, without @opentelemetry/api. */
export function registerDefaultMetrics(registry: Registry, prefix: string): void {
  const config = { eventLoopMonitoringPrecision: 10, register: registry, prefix };
  registerProcessCpu(registry, prefix);
  for (const name of defaultMetricModules) {
    const register = require(`prom-client/lib/metrics/${name}`) as (r: Registry, c: object) => void;
    register(registry, config);
  }
}

/** prom-client's lib/metrics/processCpuTotal.js without exemplars. */
function registerProcessCpu(registry: Registry, prefix: string): void {
  const registers = [registry];
  let last = process.cpuUsage();
  const user = new Counter({
    name: `${prefix}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registers,
    labelNames: [],
    // One metric's collect sets all three, as prom-client does.
    collect() {
      const now = process.cpuUsage();
      const userMicros = now.user - last.user;
      const systemMicros = now.system - last.system;
      last = now;
      user.inc(userMicros / 1e6);
      system.inc(systemMicros / 1e6);
      total.inc((userMicros + systemMicros) / 1e6);
    },
  });
  const system = new Counter({
    name: `${prefix}process_cpu_system_seconds_total`,
    help: 'Total system CPU time spent in seconds.',
    registers,
    labelNames: [],
  });
  const total = new Counter({
    name: `${prefix}process_cpu_seconds_total`,
    help: 'Total user and system CPU time spent in seconds.',
    registers,
    labelNames: [],
  });
}

/**
 * The metric catalogue (prefix `mcp_warden_`), one registry per process. Label values are bounded:
 * callers pass tool names through `boundedLabel` so unknown names fold into `other`.
 *
 * @example
 * const m = createMetrics();
 * m.requests.inc({ policy: 'github-tools', method: 'tools/call', decision: 'allow' });
 * const text = await m.registry.metrics();
 */
export interface Metrics {
  registry: Registry;
  requests: Counter<'policy' | 'method' | 'decision'>;
  blocked: Counter<'policy' | 'rule' | 'tool' | 'reason'>;
  approvals: Counter<'policy' | 'outcome'>;
  approvalsPending: Gauge<'policy'>;
  maskedValues: Counter<'policy' | 'detector'>;
  authFailures: Counter<'reason'>;
  requestDuration: Histogram<'method'>;
  overhead: Histogram;
  sessionsActive: Gauge;
  recordingErrors: Counter;
  admissionRequests: Counter<'kind' | 'operation' | 'result'>;
  admissionDuration: Histogram;
  injections: Counter<'result'>;
  certExpiry: Gauge;
}

const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) registerDefaultMetrics(registry, 'mcp_warden_process_');
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'mcp_warden_requests_total',
      help: 'MCP messages decided, by policy, method and decision (allow, deny, approve, rate-limited; audit-deny, audit-approve, audit-rate-limited).',
      labelNames: ['policy', 'method', 'decision'],
      registers,
    }),
    blocked: new Counter({
      name: 'mcp_warden_blocked_total',
      help: 'Calls blocked, by policy, rule, tool and reason.',
      labelNames: ['policy', 'rule', 'tool', 'reason'],
      registers,
    }),
    approvals: new Counter({
      name: 'mcp_warden_approvals_total',
      help: 'Approval requests by outcome.',
      labelNames: ['policy', 'outcome'],
      registers,
    }),
    approvalsPending: new Gauge({
      name: 'mcp_warden_approvals_pending',
      help: 'Held calls waiting for a verdict.',
      labelNames: ['policy'],
      registers,
    }),
    maskedValues: new Counter({
      name: 'mcp_warden_masked_values_total',
      help: 'Sensitive values masked, by policy and detector.',
      labelNames: ['policy', 'detector'],
      registers,
    }),
    authFailures: new Counter({
      name: 'mcp_warden_auth_failures_total',
      help: 'Requests refused for authentication, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    requestDuration: new Histogram({
      name: 'mcp_warden_request_duration_seconds',
      help: 'Time from request received to response completed, by method.',
      labelNames: ['method'],
      buckets: latencyBuckets,
      registers,
    }),
    overhead: new Histogram({
      name: 'mcp_warden_overhead_seconds',
      help: 'Time spent inside mcp-warden per request (excluding the upstream).',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers,
    }),
    sessionsActive: new Gauge({ name: 'mcp_warden_sessions_active', help: 'Open MCP sessions.', registers }),
    recordingErrors: new Counter({
      name: 'mcp_warden_recording_errors_total',
      help: 'Recording events that could not be written.',
      registers,
    }),
    admissionRequests: new Counter({
      name: 'mcp_warden_admission_requests_total',
      help: 'Admission reviews handled, by kind, operation and result.',
      labelNames: ['kind', 'operation', 'result'],
      registers,
    }),
    admissionDuration: new Histogram({
      name: 'mcp_warden_admission_duration_seconds',
      help: 'Admission review handling time.',
      buckets: latencyBuckets,
      registers,
    }),
    injections: new Counter({
      name: 'mcp_warden_injections_total',
      help: 'Pod injections by result (injected, skipped reason, error).',
      labelNames: ['result'],
      registers,
    }),
    certExpiry: new Gauge({
      name: 'mcp_warden_webhook_cert_expiry_timestamp_seconds',
      help: 'Expiry time of the webhook serving certificate (unix seconds).',
      registers,
    }),
  };
}

/**
 * Bound a label value: values outside `known` (and anything that is not a short plain name)
 * become `other`, so a client cannot blow up metric cardinality with invented tool names.
 */
export function boundedLabel(value: string | undefined, known: ReadonlySet<string>): string {
  if (value === undefined || value === '') return 'none';
  return known.has(value) && value.length <= 128 ? value : 'other';
}
