/**
 * Fallback for the bench when `mcp-warden gateway` (cmd/gateway.ts) is not built: the same data
 * path assembled from the library (createProxy + compilePolicies + createAuthenticator +
 * createRecorder + createMetrics), same flags. The report says which one ran.
 *
 * Usage: node dist/bench/inproc-gateway.js --upstream URL --policy FILE --listen H:P
 *   --admin-listen H:P --recordings DIR
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { createAuthenticator } from '../pkg/identity/index.js';
import { createLogger } from '../pkg/log.js';
import { createMetrics } from '../pkg/metrics/catalogue.js';
import type { PolicySource } from '../pkg/policy/decision.js';
import { compilePolicies, type PolicyDocument } from '../pkg/policy/index.js';
import { createProxy, startAdminServer } from '../pkg/proxy/index.js';
import { createRecorder } from '../pkg/record/index.js';

function hostPort(v: string | undefined, flag: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(v ?? '');
  if (m === null) throw new Error(`${flag} must be HOST:PORT`);
  return { host: m[1] as string, port: Number(m[2]) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      upstream: { type: 'string' },
      policy: { type: 'string' },
      listen: { type: 'string' },
      'admin-listen': { type: 'string' },
      recordings: { type: 'string' },
    },
  });
  if (values.upstream === undefined || values.policy === undefined)
    throw new Error('--upstream and --policy are required');
  const docs = parseAllDocuments(await readFile(values.policy, 'utf8')).map(
    (d) => d.toJS() as PolicyDocument,
  );
  const engine = compilePolicies(docs);
  const source: PolicySource = { current: () => engine, onChange: () => () => {}, close: async () => {} };
  const metrics = createMetrics();
  const logger = createLogger('gateway');
  const recorder =
    values.recordings === undefined
      ? undefined
      : createRecorder({ directory: values.recordings, metrics, logger });
  const proxy = createProxy({
    upstream: values.upstream,
    policySource: source,
    authenticator: createAuthenticator({ metrics }),
    metrics,
    podName: 'bench',
    logger,
    ...(recorder === undefined ? {} : { recorder }),
  });
  const l = hostPort(values.listen, '--listen');
  const a = hostPort(values['admin-listen'], '--admin-listen');
  await proxy.listen(l.host, l.port);
  const admin = await startAdminServer({ host: a.host, port: a.port, metrics, ready: () => true });
  const shutdown = async () => {
    await proxy.close();
    await recorder?.close();
    await admin.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown());
  process.on('SIGINT', () => void shutdown());
}

main().catch((err: unknown) => {
  process.stderr.write(
    `inproc-gateway: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
});
