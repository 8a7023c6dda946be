/**
 * Names the webhook shares with users (labels, annotations, skip reasons) and with the sidecar
 * (container name, ports, environment). The binding list lives in docs/injection.md.
 */

export const DOMAIN = 'mcpwarden.io';

export const Labels = {
  /** Pod label that asks for injection (also the webhook objectSelector). */
  inject: `${DOMAIN}/inject`,
  /** Namespace label: `disabled` turns injection off for the whole namespace. */
  injection: `${DOMAIN}/injection`,
} as const;

export const Annotations = {
  upstreamPort: `${DOMAIN}/upstream-port`,
  transport: `${DOMAIN}/transport`,
  mcpPath: `${DOMAIN}/mcp-path`,
  sidecarImage: `${DOMAIN}/sidecar-image`,
  cpuRequest: `${DOMAIN}/cpu-request`,
  cpuLimit: `${DOMAIN}/cpu-limit`,
  memoryRequest: `${DOMAIN}/memory-request`,
  memoryLimit: `${DOMAIN}/memory-limit`,
  recordingsVolume: `${DOMAIN}/recordings-volume`,
  /** How long the sidecar waits for the app's answer headers (a duration, e.g. 15m). */
  upstreamTimeout: `${DOMAIN}/upstream-timeout`,
  /** How long a client may take to send a whole request to the sidecar (a duration, e.g. 2m). */
  requestTimeout: `${DOMAIN}/request-timeout`,
  /** Browser origins the sidecar accepts besides its own, with CORS (comma-separated). */
  allowedOrigins: `${DOMAIN}/allowed-origins`,
  /** Written by the injector: `{"version":…,"hash":…}` of the injected spec. */
  status: `${DOMAIN}/status`,
  /** Written by the injector when a labelled pod is not injected. */
  skipReason: `${DOMAIN}/skip-reason`,
} as const;

/** Namespaces the webhook never touches, whatever their labels. */
export const SYSTEM_NAMESPACES: ReadonlySet<string> = new Set([
  'kube-system',
  'kube-public',
  'kube-node-lease',
]);

/** Labels carried by the webhook's own pods (set by the chart); such pods are never mutated. */
export const SELF_LABELS = {
  'app.kubernetes.io/name': 'mcp-warden',
  'app.kubernetes.io/component': 'webhook',
} as const;

/** Machine-readable reasons a pod was not injected (Event reason, skip-reason annotation, metric label). */
export const SkipReasons = {
  notLabelled: 'not_labelled',
  namespaceExcluded: 'namespace_excluded',
  webhookPod: 'webhook_pod',
  hostNetwork: 'host_network_enabled',
  sidecarExists: 'sidecar_already_exists',
  noMcpPort: 'no_mcp_port',
  portConflict: 'port_conflict',
} as const;
export type SkipReason = (typeof SkipReasons)[keyof typeof SkipReasons];

export const Sidecar = {
  containerName: 'mcp-warden',
  /** Port the proxy listens on (Istio/Linkerd-style high number, unlikely to clash with apps). */
  proxyPort: 15080,
  /** Admin port: /metrics, /healthz, /readyz. */
  adminPort: 15090,
  adminPortName: 'warden-admin',
  /** The port name taken over when the app's MCP port had none. */
  defaultPortName: 'mcp',
  runAsUser: 65532,
  tokenVolume: 'mcp-warden-token',
  tokenMountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
  /** One hour: not 3607, which the API server extends to a year (--service-account-extend-token-expiration). */
  tokenExpirationSeconds: 3600,
  recordingsVolume: 'mcp-warden-recordings',
  recordingsMountPath: '/var/lib/mcp-warden/recordings',
  tmpVolume: 'mcp-warden-tmp',
  tmpMountPath: '/tmp',
} as const;

export const Transports = ['streamable-http', 'sse'] as const;
export type Transport = (typeof Transports)[number];

/** Default MCP path on the upstream per transport (overridable with `mcpwarden.io/mcp-path`). */
export const DefaultMcpPath: Record<Transport, string> = { 'streamable-http': '/mcp', sse: '/sse' };
