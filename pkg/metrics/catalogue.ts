import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

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
  if (options.defaultMetrics !== false)
    collectDefaultMetrics({ register: registry, prefix: 'mcp_warden_process_' });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'mcp_warden_requests_total',
      help: 'MCP messages decided, by policy, method and decision (allow, deny, approve, audit-deny).',
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
