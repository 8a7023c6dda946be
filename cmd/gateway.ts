/**
 * `mcp-warden gateway`: the data path as a plain process, policies read from a file or directory
 * (watched: a valid change applies to the next message; an invalid one is refused loudly and the
 * last good policy stays).
 *
 * @example
 * mcp-warden gateway --upstream http://127.0.0.1:3000/mcp --policy examples/policy.yaml
 */
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { ApprovalBroker } from '../pkg/approval/broker.js';
import { errorMessage, isWardenError, WardenError } from '../pkg/errors.js';
import { createAuthenticator } from '../pkg/identity/index.js';
import { createLogger, type Logger } from '../pkg/log.js';
import { parseSize } from '../pkg/mcp/body.js';
import { createMetrics, type Metrics } from '../pkg/metrics/catalogue.js';
import { createFilePolicySource } from '../pkg/policy/loader.js';
import { createProxy, startAdminServer } from '../pkg/proxy/index.js';
import { createRecorder } from '../pkg/record/index.js';
import { releaseOptimizingCompiler } from '../pkg/startup.js';
import { durationFlag, originsFlag } from './flags.js';
import { waitForStopSignal } from './signals.js';

export const usage = `Usage: mcp-warden gateway --upstream URL --policy PATH [options]

  --upstream URL          upstream MCP endpoint, e.g. http://127.0.0.1:3000/mcp (required)
  --policy PATH           MCPPolicy YAML file (several documents allowed) or a directory (required)
  --policy-poll-interval D  re-read the policy this often besides watching it, so a change the
                          file watch missed (network file systems) still applies, e.g. 30s
                          (default 10s; 0 turns polling off and leaves the watch alone)
  --listen HOST:PORT      where clients connect (default 127.0.0.1:8080)
  --admin-listen HOST:PORT  /metrics, /healthz, /readyz (default 127.0.0.1:9090)
  --recordings DIR        write session recordings here (policies with recording.sink: stdout, or all
                          recordings when no DIR is given, go to stdout as JSON lines)
  --mcp-path PATH         MCP endpoint path served (default /mcp)
  --max-body SIZE         largest request body, e.g. 4MiB (default 4MiB)
  --public-url URL        base URL clients use (for OAuth protected-resource metadata)
  --allowed-hosts LIST    comma-separated Host values accepted (DNS-rebinding protection); on a
                          loopback --listen the default is localhost,127.0.0.1,[::1]; "any" turns
                          the check off
  --allowed-origins LIST  comma-separated origins accepted besides the gateway's own, with CORS, so a
                          browser page of one can call the gateway (e.g. http://localhost:6274); a
                          page of any other origin is refused (403); clients without Origin pass
  --no-legacy-sse         do not serve the legacy HTTP+SSE transport (/sse, /message)
  --upstream-sse URL      the upstream's legacy SSE endpoint (default: /sse on the upstream's origin)
  --upstream-timeout D    how long to wait for the upstream's answer headers, e.g. 15m (default 5m: a
                          server answering in JSON sends its headers only when the tool finishes)
  --request-timeout D     how long a client may take to send a whole request, e.g. 2m (default 60s;
                          slower clients get 408): raise it for large bodies over slow links
  --approvals-namespace NS  hold calls that policies decide \`approve\` as MCPApproval objects in this
                          namespace of a cluster (reviewers: \`mcp-warden approvals approve\`);
                          without it such calls are refused (-31403, approval unavailable)
  --kubeconfig PATH       the cluster for --approvals-namespace (default: KUBECONFIG, then in-cluster)
`;

/** Parse `host:port`, `[v6]:port` or `:port`. */
export function parseListen(text: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new WardenError('ERR_CONFIG', `${flag}: expected HOST:PORT, got "${text}"`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/**
 * DNS-rebinding protection by default: a gateway listening on loopback is meant for local clients,
 * which send `Host: localhost|127.0.0.1|[::1]`; a web page whose domain was rebound to 127.0.0.1
 * sends its own domain and is refused. `any` (or a non-loopback --listen) turns the default off.
 */
export function hostAllowlist(flag: string | undefined, listenHost: string): string[] | undefined {
  if (flag !== undefined) return flag.trim() === 'any' ? undefined : list(flag);
  const loopback = listenHost === 'localhost' || listenHost === '::1' || /^127\./.test(listenHost);
  return loopback ? ['localhost', '127.0.0.1', '[::1]'] : undefined;
}

function list(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return items.length > 0 ? items : undefined;
}

/**
 * A gateway's server, as its approvals name it (`spec.server`): the upstream URL without
 * credentials, query or fragment. Two gateways in front of different upstreams never run each
 * other's approved calls, even under one Kubernetes user.
 */
export function upstreamServer(upstream: string): string {
  const u = new URL(upstream);
  u.username = '';
  u.password = '';
  u.search = '';
  u.hash = '';
  return u.href;
}

interface Approvals {
  broker: ApprovalBroker;
  close(): Promise<void>;
}

/**
 * Approvals kept in a cluster for a gateway that runs outside it. Loaded only with the flag (the
 * Kubernetes adapter stays out of a plain gateway). The gateway's own Kubernetes user is the only
 * creator whose approvals grant tickets (the webhook stamps it on each approval it creates).
 */
async function startApprovals(
  namespace: string,
  upstream: string,
  kubeconfig: string | undefined,
  metrics: Metrics,
  logger: Logger,
): Promise<Approvals> {
  const { createKubeClient, loadKubeConfig } = await import('../pkg/kube/client.js');
  const { createKubeApprovalStore, currentUser } = await import('../pkg/kube/approval-store.js');
  const client = createKubeClient(loadKubeConfig(kubeconfig === undefined ? {} : { kubeconfig }));
  const me = await currentUser(client);
  const store = createKubeApprovalStore({ client, namespace, logger });
  const broker = new ApprovalBroker({
    store,
    pod: hostname(),
    server: upstreamServer(upstream),
    metrics,
    logger,
    trustedCreator: me,
  });
  broker
    .start()
    .then(() =>
      logger.info({ event: 'approvals-ready', namespace, user: me }, 'approvals: watching MCPApprovals'),
    )
    .catch((err: unknown) =>
      logger.error(
        { event: 'approvals-start-failed', err: errorMessage(err) },
        'approval broker failed to start',
      ),
    );
  return {
    broker,
    async close() {
      await broker.close();
      await store.close();
    },
  };
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        upstream: { type: 'string' },
        policy: { type: 'string' },
        'policy-poll-interval': { type: 'string', default: '10s' },
        listen: { type: 'string', default: '127.0.0.1:8080' },
        'admin-listen': { type: 'string', default: '127.0.0.1:9090' },
        recordings: { type: 'string' },
        'mcp-path': { type: 'string', default: '/mcp' },
        'max-body': { type: 'string', default: '4MiB' },
        'public-url': { type: 'string' },
        'allowed-hosts': { type: 'string' },
        'allowed-origins': { type: 'string' },
        'no-legacy-sse': { type: 'boolean', default: false },
        'upstream-sse': { type: 'string' },
        'approvals-namespace': { type: 'string' },
        'upstream-timeout': { type: 'string', default: '5m' },
        'request-timeout': { type: 'string', default: '60s' },
        kubeconfig: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`mcp-warden gateway: ${errorMessage(err)}\n\n${usage}`);
    return 2;
  }
  if (values['help']) {
    process.stdout.write(usage);
    return 0;
  }
  const upstream = values['upstream'] as string | undefined;
  const policyPath = values['policy'] as string | undefined;
  if (!upstream || !policyPath) {
    process.stderr.write(`mcp-warden gateway: --upstream and --policy are required\n\n${usage}`);
    return 2;
  }
  const logger = createLogger('gateway');
  let listen: { host: string; port: number };
  let adminListen: { host: string; port: number };
  let maxBody: number;
  let upstreamTimeoutMs: number;
  let requestTimeoutMs: number;
  let pollIntervalMs: number;
  let allowedOrigins: string[] | undefined;
  try {
    listen = parseListen(values['listen'] as string, '--listen');
    adminListen = parseListen(values['admin-listen'] as string, '--admin-listen');
    maxBody = parseSize(values['max-body'] as string);
    upstreamTimeoutMs = durationFlag(values['upstream-timeout'] as string, '--upstream-timeout');
    const origins = values['allowed-origins'] as string | undefined;
    allowedOrigins = origins === undefined ? undefined : originsFlag(origins, '--allowed-origins');
    requestTimeoutMs = durationFlag(values['request-timeout'] as string, '--request-timeout');
    const poll = values['policy-poll-interval'] as string;
    pollIntervalMs = poll.trim() === '0' ? 0 : durationFlag(poll, '--policy-poll-interval');
    const mcpPath = values['mcp-path'] as string;
    if (!mcpPath.startsWith('/'))
      throw new WardenError('ERR_CONFIG', `--mcp-path must start with "/": "${mcpPath}"`);
  } catch (err) {
    process.stderr.write(`mcp-warden gateway: ${errorMessage(err)}\n`);
    return 2;
  }

  let source: Awaited<ReturnType<typeof createFilePolicySource>>;
  try {
    // The source logs every rejected change and unreadable path itself, once, with its issues.
    source = await createFilePolicySource(policyPath, { logger, pollIntervalMs });
  } catch (err) {
    // File, field and reason are in the message (ERR_POLICY_INVALID).
    const code = isWardenError(err) ? ` [${err.code}]` : '';
    process.stderr.write(`mcp-warden gateway: invalid policy: ${errorMessage(err)}${code}\n`);
    return 1;
  }

  const metrics = createMetrics();
  const recordingsDir = values['recordings'] as string | undefined;
  // Logs go to stderr, so stdout is free for the stdout sink (`spec.recording.sink: stdout`).
  const recorder = createRecorder({
    ...(recordingsDir === undefined ? {} : { directory: recordingsDir }),
    stdout: true,
    metrics,
    logger,
  });
  let approvals: Approvals | undefined;
  const approvalsNamespace = values['approvals-namespace'] as string | undefined;
  if (approvalsNamespace !== undefined) {
    try {
      approvals = await startApprovals(
        approvalsNamespace,
        upstream,
        values['kubeconfig'] as string | undefined,
        metrics,
        logger,
      );
    } catch (err) {
      process.stderr.write(`mcp-warden gateway: --approvals-namespace: ${errorMessage(err)}\n`);
      await Promise.allSettled([source.close(), recorder?.close()]);
      return 2;
    }
  }
  const allowedHosts = hostAllowlist(values['allowed-hosts'] as string | undefined, listen.host);
  const publicUrl = values['public-url'] as string | undefined;
  let proxy: ReturnType<typeof createProxy>;
  try {
    proxy = createProxy({
      upstream,
      mcpPath: values['mcp-path'] as string,
      ...(values['no-legacy-sse'] ? { legacySsePaths: false as const } : {}),
      ...(typeof values['upstream-sse'] === 'string' ? { upstreamSse: values['upstream-sse'] } : {}),
      policySource: source,
      // The authenticator counts its verification failures in auth_failures_total; the proxy's auth
      // stage counts only what never reaches it (missing or malformed Authorization headers).
      authenticator: createAuthenticator({ allowInsecureLoopback: true, metrics }),
      metrics,
      ...(recorder ? { recorder } : {}),
      ...(approvals ? { approvals: approvals.broker } : {}),
      podName: hostname(),
      maxBodyBytes: maxBody,
      upstreamTimeoutMs,
      requestTimeoutMs,
      ...(publicUrl ? { publicUrl } : {}),
      ...(allowedHosts ? { allowedHosts } : {}),
      ...(allowedOrigins ? { allowedOrigins } : {}),
      logger,
    });
  } catch (err) {
    process.stderr.write(`mcp-warden gateway: ${errorMessage(err)}\n`);
    await Promise.allSettled([source.close(), recorder?.close(), approvals?.close()]);
    return 2;
  }

  let admin: { url: string; close: () => Promise<void> } | undefined;
  try {
    admin = await startAdminServer({ ...adminListen, metrics, ready: () => source.current() !== undefined });
    const bound = await proxy.listen(listen.host, listen.port);
    logger.info(
      {
        event: 'started',
        listen: bound.url,
        mcp: `${bound.url}${values['mcp-path'] as string}`,
        admin: admin.url,
        upstream,
        policies: source.current()?.policies(),
      },
      'gateway started',
    );
    // Policies were loaded before the listener: start-up is over (see pkg/startup.ts).
    releaseOptimizingCompiler();
  } catch (err) {
    logger.error({ event: 'start-failed', err: errorMessage(err) }, 'gateway failed to start');
    process.stderr.write(`mcp-warden gateway: ${errorMessage(err)}\n`);
    await Promise.allSettled([
      proxy.close(),
      admin?.close(),
      source.close(),
      recorder?.close(),
      approvals?.close(),
    ]);
    return 1;
  }

  const signal = await waitForStopSignal();
  logger.info({ event: 'stopping', signal }, 'gateway stopping');
  // Calls still held stay open for their callers' repeat (the broker stops before the connections
  // drop); sessions end next (their recordings close with them), then the recorder flushes.
  await approvals?.broker.close();
  await proxy.close();
  const results = await Promise.allSettled([
    recorder?.close(),
    admin.close(),
    source.close(),
    approvals?.close(),
  ]);
  for (const r of results)
    if (r.status === 'rejected') logger.warn({ err: errorMessage(r.reason) }, 'shutdown step failed');
  logger.info({ event: 'stopped' }, 'gateway stopped');
  logger.flush();
  return 0;
}
