/** API coordinates of the mcp-warden custom resources. */
export const GROUP = 'mcpwarden.io';
export const VERSION = 'v1alpha1';

export const MCPPOLICY_API = {
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'MCPPolicy',
  plural: 'mcppolicies',
} as const;
export const MCPAPPROVAL_API = {
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'MCPApproval',
  plural: 'mcpapprovals',
} as const;

const segment = (s: string): string => encodeURIComponent(s);

export function policiesPath(namespace: string): string {
  return `/apis/${GROUP}/${VERSION}/namespaces/${segment(namespace)}/${MCPPOLICY_API.plural}`;
}

export function policyPath(namespace: string, name: string, subresource?: 'status'): string {
  return `${policiesPath(namespace)}/${segment(name)}${subresource ? `/${subresource}` : ''}`;
}

export function approvalsPath(namespace: string): string {
  return `/apis/${GROUP}/${VERSION}/namespaces/${segment(namespace)}/${MCPAPPROVAL_API.plural}`;
}

/** Every namespace's approvals (list). */
export function allApprovalsPath(): string {
  return `/apis/${GROUP}/${VERSION}/${MCPAPPROVAL_API.plural}`;
}

export function approvalPath(namespace: string, name: string, subresource?: 'status'): string {
  return `${approvalsPath(namespace)}/${segment(name)}${subresource ? `/${subresource}` : ''}`;
}
