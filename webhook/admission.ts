import express, { type NextFunction, type Request, type Response } from 'express';
import { errorMessage, isWardenError } from '../pkg/errors.js';
import type { Logger } from '../pkg/log.js';
import type { Metrics } from '../pkg/metrics/catalogue.js';
import { Labels } from './constants.js';
import { type InjectorConfig, injectPod } from './injector.js';
import { type AdmissionRequest, allow, deny, toResponse, type Verdict } from './review.js';
import {
  admitPolicy,
  approvalPodName,
  mutateApproval,
  type PolicyValidator,
  setsDecision,
  validateApproval,
} from './validators.js';

/**
 * The admission HTTP surface (mounted on the HTTPS server):
 *
 * | path | webhook |
 * | --- | --- |
 * | `POST /inject` | mutating, pods CREATE |
 * | `POST /validate-mcppolicy` | validating, MCPPolicy CREATE/UPDATE |
 * | `POST /mutate-mcpapproval` | mutating, MCPApproval CREATE/UPDATE (stamps decidedBy) |
 * | `POST /validate-mcpapproval` | validating, MCPApproval CREATE/UPDATE |
 *
 * Every failure is an AdmissionReview refusal with a message, never a crash; with
 * `failurePolicy: Fail` an unreachable webhook also refuses, so the system fails closed.
 */
export interface AdmissionDeps {
  injector: InjectorConfig;
  validatePolicy: PolicyValidator;
  metrics: Metrics;
  logger: Logger;
  /** Labels of a namespace (cached, best effort): undefined when unknown. */
  namespaceLabels?: (namespace: string) => Promise<Record<string, string> | undefined>;
  /** Tell the user why a pod was not injected (best effort, asynchronous). */
  emitSkipEvent?: (e: { namespace: string; pod: string; reason: string; message: string }) => void;
  /** Service account a pod runs as (MCPApproval admission): undefined when unknown. */
  podServiceAccount?: (namespace: string, pod: string) => Promise<string | undefined>;
}

export const ADMISSION_BODY_LIMIT = '8mb';

type Handler = (req: AdmissionRequest, deps: AdmissionDeps) => Promise<Verdict> | Verdict;

async function injectHandler(req: AdmissionRequest, deps: AdmissionDeps): Promise<Verdict> {
  if (req.operation !== 'CREATE' || req.kind?.kind !== 'Pod' || req.subResource !== undefined) return allow();
  const pod = req.object as Parameters<typeof injectPod>[0] | undefined;
  if (pod === undefined || typeof pod !== 'object' || pod === null)
    return deny(400, 'request.object: missing pod');
  const namespace = req.namespace ?? pod.metadata?.namespace ?? 'default';
  const labelled = pod.metadata?.labels?.[Labels.inject] === 'true';
  const namespaceLabels = labelled ? await deps.namespaceLabels?.(namespace) : undefined;
  let result: ReturnType<typeof injectPod>;
  try {
    result = injectPod(pod, {
      namespace,
      config: deps.injector,
      ...(namespaceLabels ? { namespaceLabels } : {}),
    });
  } catch (err) {
    deps.metrics.injections.inc({ result: 'error' });
    if (isWardenError(err, 'ERR_BAD_REQUEST'))
      return deny(400, `mcp-warden cannot inject this pod: ${err.message}`);
    throw err;
  }
  const podName = pod.metadata?.name ?? pod.metadata?.generateName ?? '';
  switch (result.kind) {
    case 'inject':
      deps.metrics.injections.inc({ result: 'injected' });
      deps.logger.info({ namespace, pod: podName, hash: result.status.hash }, 'sidecar injected');
      return allow({
        patch: result.patch,
        result: 'injected',
        ...(result.warnings.length > 0 ? { warnings: result.warnings.map((w) => `mcp-warden: ${w}`) } : {}),
      });
    case 'noop':
      deps.metrics.injections.inc({ result: 'already_injected' });
      return allow({
        result: 'already_injected',
        ...(result.warnings.length > 0 ? { warnings: result.warnings.map((w) => `mcp-warden: ${w}`) } : {}),
      });
    case 'skip': {
      deps.metrics.injections.inc({ result: result.reason });
      if (result.event && req.dryRun !== true) {
        deps.emitSkipEvent?.({ namespace, pod: podName, reason: result.reason, message: result.message });
      }
      if (labelled) deps.logger.info({ namespace, pod: podName, reason: result.reason }, 'injection skipped');
      return allow({
        patch: result.patch,
        result: 'skipped',
        ...(labelled ? { warnings: [`mcp-warden: not injected (${result.reason}): ${result.message}`] } : {}),
      });
    }
  }
}

const handlers: Record<string, { kind: string; handle: Handler }> = {
  '/inject': { kind: 'Pod', handle: injectHandler },
  '/validate-mcppolicy': { kind: 'MCPPolicy', handle: (req, deps) => admitPolicy(req, deps.validatePolicy) },
  '/mutate-mcpapproval': { kind: 'MCPApproval', handle: (req) => mutateApproval(req) },
  '/validate-mcpapproval': {
    kind: 'MCPApproval',
    handle: async (req, deps) => {
      const pod = setsDecision(req) ? approvalPodName(req.object) : undefined;
      const sa = pod === undefined ? undefined : await deps.podServiceAccount?.(req.namespace ?? '', pod);
      return validateApproval(req, sa);
    },
  },
};

function parseReview(body: unknown): AdmissionRequest {
  const review = body as
    | { apiVersion?: unknown; kind?: unknown; request?: Partial<AdmissionRequest> }
    | undefined;
  if (typeof review !== 'object' || review === null || review.kind !== 'AdmissionReview') {
    throw new Error('body is not an AdmissionReview');
  }
  const request = review.request;
  if (
    typeof request !== 'object' ||
    request === null ||
    typeof request.uid !== 'string' ||
    request.uid === ''
  ) {
    throw new Error('AdmissionReview.request.uid is missing');
  }
  return request as AdmissionRequest;
}

/** Express app with the admission routes (no TLS: the caller serves it over HTTPS). */
export function createAdmissionApp(deps: AdmissionDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: ADMISSION_BODY_LIMIT, type: ['application/json', '*/json', '+json'] }));
  for (const [path, { kind, handle }] of Object.entries(handlers)) {
    app.post(path, async (req: Request, res: Response) => {
      const stop = deps.metrics.admissionDuration.startTimer();
      let request: AdmissionRequest;
      try {
        request = parseReview(req.body);
      } catch (err) {
        deps.metrics.admissionRequests.inc({ kind, operation: 'unknown', result: 'error' });
        stop();
        res.status(400).json({ error: errorMessage(err) });
        return;
      }
      const operation = request.operation ?? 'unknown';
      let verdict: Verdict;
      try {
        verdict = await handle(request, deps);
      } catch (err) {
        deps.logger.error({ kind, operation, err: errorMessage(err) }, 'admission handler failed');
        verdict = deny(500, `mcp-warden admission error: ${errorMessage(err)}`);
        verdict.result = 'error';
      }
      const result = verdict.result ?? (verdict.allowed ? 'allowed' : 'denied');
      deps.metrics.admissionRequests.inc({ kind, operation, result });
      stop();
      res.json({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        response: toResponse(request.uid, verdict),
      });
    });
  }
  app.use((_req: Request, res: Response) => {
    res.status(404).json({ error: 'not found' });
  });
  // Body-parser errors (malformed JSON, oversize bodies) become 4xx with a clear message.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status =
      typeof (err as { status?: unknown }).status === 'number' ? (err as { status: number }).status : 500;
    res
      .status(status)
      .json({ error: status === 413 ? `body larger than ${ADMISSION_BODY_LIMIT}` : errorMessage(err) });
  });
  return app;
}
