/**
 * The slice of `admission.k8s.io/v1` AdmissionReview the webhook reads and writes.
 * https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/
 */
import type { PatchOperation } from './jsonpatch.js';

export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  resource?: { group?: string; version?: string; resource?: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation?: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
  userInfo?: UserInfo;
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: {
    code: number;
    message: string;
    reason?: string;
    details?: { causes?: Array<{ field?: string; message: string; reason?: string }> };
  };
  patchType?: 'JSONPatch';
  patch?: string;
  warnings?: string[];
}

/** What a handler decides; the server turns it into an AdmissionResponse. */
export interface Verdict {
  allowed: boolean;
  /** HTTP-style code for refusals: 400 bad object, 403 not permitted, 422 invalid, 500 internal. */
  code?: number;
  message?: string;
  causes?: Array<{ field?: string; message: string }>;
  patch?: PatchOperation[];
  warnings?: string[];
  /** Bounded label for `admission_requests_total{result}` beyond allowed/denied (e.g. `patched`). */
  result?: string;
}

export function allow(extra: Omit<Verdict, 'allowed'> = {}): Verdict {
  return { allowed: true, ...extra };
}

export function deny(code: number, message: string, causes?: Verdict['causes']): Verdict {
  return { allowed: false, code, message, ...(causes === undefined ? {} : { causes }) };
}

export function toResponse(uid: string, v: Verdict): AdmissionResponse {
  const response: AdmissionResponse = { uid, allowed: v.allowed };
  if (!v.allowed) {
    response.status = {
      code: v.code ?? 403,
      message: v.message ?? 'refused by mcp-warden',
      reason:
        v.code === 422
          ? 'Invalid'
          : v.code === 400
            ? 'BadRequest'
            : v.code === 500
              ? 'InternalError'
              : 'Forbidden',
      ...(v.causes === undefined
        ? {}
        : { details: { causes: v.causes.map((c) => ({ ...c, reason: 'FieldValueInvalid' })) } }),
    };
  }
  if (v.allowed && v.patch !== undefined && v.patch.length > 0) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(v.patch)).toString('base64');
  }
  if (v.warnings !== undefined && v.warnings.length > 0) response.warnings = v.warnings;
  return response;
}
