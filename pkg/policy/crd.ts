import type { TSchema } from '@sinclair/typebox';
import { stringify } from 'yaml';
import { Group, MCPApprovalSchema, MCPPolicySchema, Version } from './schema.js';

/**
 * The CRD manifests, generated from the TypeBox schemas of `./schema.ts` (`cmd/gen-crds.ts` writes
 * them to `crds/` and `charts/mcp-warden/files/crds/`; a unit test fails when the committed files drift).
 *
 * Structural schemas (apiextensions.k8s.io/v1) forbid part of JSON Schema, so the conversion:
 * - drops `additionalProperties: false` (the API server prunes unknown fields, and kubectl's
 *   strict field validation refuses them), `$id`, `$schema`, `uniqueItems`, `patternProperties`;
 * - turns `const` into a one-value `enum`;
 * - keeps `x-kubernetes-*` extensions (list-map keys make rule names unique natively) and the CEL
 *   rules as they are;
 * - reduces `metadata` to `{type: object}` and `apiVersion` / `kind` to plain strings.
 */

type Json = Record<string, unknown>;

const dropped = new Set(['$id', '$schema', 'uniqueItems', 'patternProperties', '$comment', 'examples']);

function convert(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(convert);
  if (typeof schema !== 'object' || schema === null) return schema;
  const src = schema as Json;
  const out: Json = {};
  for (const [key, value] of Object.entries(src)) {
    if (dropped.has(key)) continue;
    if (key === 'additionalProperties' && value === false) continue;
    if (key === 'const') {
      out['enum'] = [value];
      continue;
    }
    if (key === 'properties') {
      out[key] = Object.fromEntries(Object.entries(value as Json).map(([k, v]) => [k, convert(v)]));
      continue;
    }
    out[key] = convert(value);
  }
  return out;
}

/** A structural openAPIV3Schema from a top-level TypeBox object schema. */
export function structuralSchema(schema: TSchema): Json {
  // JSON round trip: drops TypeBox's symbol keys and undefined values.
  const plain = JSON.parse(JSON.stringify(schema)) as Json;
  const root = convert(plain) as Json;
  const props = root['properties'] as Json;
  props['apiVersion'] = {
    type: 'string',
    description:
      'APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.',
  };
  props['kind'] = {
    type: 'string',
    description: 'Kind is a string value representing the REST resource this object represents.',
  };
  props['metadata'] = { type: 'object' };
  return {
    type: 'object',
    description: root['description'],
    required: ['spec'],
    properties: props,
    ...(root['x-kubernetes-validations'] !== undefined
      ? { 'x-kubernetes-validations': root['x-kubernetes-validations'] }
      : {}),
  };
}

interface CrdNames {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
}

function crd(names: CrdNames, schema: TSchema, columns: Json[]): Json {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${names.plural}.${Group}`,
      labels: { 'app.kubernetes.io/name': 'mcp-warden', 'app.kubernetes.io/part-of': 'mcp-warden' },
    },
    spec: {
      group: Group,
      scope: 'Namespaced',
      names: {
        kind: names.kind,
        listKind: `${names.kind}List`,
        plural: names.plural,
        singular: names.singular,
        shortNames: names.shortNames,
        categories: ['mcp-warden'],
      },
      versions: [
        {
          name: Version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns,
          schema: { openAPIV3Schema: structuralSchema(schema) },
        },
      ],
    },
  };
}

export function policyCrd(): Json {
  return crd(
    { kind: 'MCPPolicy', plural: 'mcppolicies', singular: 'mcppolicy', shortNames: ['mcpp'] },
    MCPPolicySchema,
    [
      { name: 'Mode', type: 'string', jsonPath: '.spec.mode', description: 'enforce or audit' },
      { name: 'Rules', type: 'integer', jsonPath: '.status.summary.rules', description: 'Number of rules' },
      {
        name: 'Pods',
        type: 'integer',
        jsonPath: '.status.summary.pods',
        description: 'Pods enforcing the policy',
      },
      {
        name: 'Denied',
        type: 'integer',
        jsonPath: '.status.summary.denied',
        description: 'Calls denied (all pods)',
      },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  );
}

export function approvalCrd(): Json {
  return crd(
    { kind: 'MCPApproval', plural: 'mcpapprovals', singular: 'mcpapproval', shortNames: ['mcpa'] },
    MCPApprovalSchema,
    [
      {
        name: 'Phase',
        type: 'string',
        jsonPath: '.status.phase',
        description: 'Pending, Approved, Denied, Expired, Executed, Cancelled',
      },
      { name: 'Tool', type: 'string', jsonPath: '.spec.tool', description: 'The tool called' },
      {
        name: 'Requester',
        type: 'string',
        jsonPath: '.spec.requester.principal',
        description: 'Who made the call',
      },
      {
        name: 'Masked',
        type: 'integer',
        jsonPath: '.spec.maskedArguments.count',
        description:
          'Values masking hid from reviewers in the arguments (approving needs decision.acknowledgeMaskedArguments)',
      },
      {
        name: 'Policy',
        type: 'string',
        jsonPath: '.spec.policy',
        priority: 1,
        description: 'The policy that required approval',
      },
      {
        name: 'Direction',
        type: 'string',
        jsonPath: '.spec.direction',
        priority: 1,
        description:
          'server-to-client for a request the MCP server sent to the client; empty for client calls',
      },
      {
        name: 'Holder',
        type: 'string',
        jsonPath: '.status.holder',
        priority: 1,
        description: 'hold mode: the pod holding the call open',
      },
      {
        name: 'Expires',
        // A string, not a date: kubectl renders future dates as <invalid>.
        type: 'string',
        jsonPath: '.spec.expiresAt',
        priority: 1,
        description: 'When the held call expires',
      },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  );
}

const header = '# Generated by cmd/gen-crds.ts from pkg/policy/schema.ts. Do not edit: run `make crds`.\n';

/** The CRD files: name in `crds/` (and the chart's `files/crds/`) → YAML text. */
export function renderCrds(): Record<string, string> {
  const render = (doc: Json) => header + stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
  return {
    'mcpwarden.io_mcppolicies.yaml': render(policyCrd()),
    'mcpwarden.io_mcpapprovals.yaml': render(approvalCrd()),
  };
}
