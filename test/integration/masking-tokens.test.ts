import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { positives } from '../../pkg/mask/samples.js';
import type { RecordingSummary } from '../../pkg/record/index.js';
import { jsonForms, type MaskingProxy, startMaskingProxy, teeFetch } from './helpers/masking-proxy.js';
import { hostMcpServer } from './helpers/sdk-host.js';

/**
 * A real SDK server and client through the gateway with every detector on. A bare `token` member
 * is a credential, whatever its value, and is masked whole; an LLM's logprobs
 * (`{"token": " the", "logprob": -0.12, ...}`) are token records and reach the client as the
 * server sent them in structuredContent and its exact text copy, while other JSON text has every
 * bare `"token"` masked (a tokenizer's `{token, id}` too, which is a credential answer's shape).
 * A credential of a known format under a credential name (`{"password": "sk-proj-…"}`, a
 * kubeconfig user's `token`) is masked whole and named by its detector, on the wire and in the
 * recording.
 */
const ghp = positives['github-token']![0]!;
const jwt = positives.jwt![0]!;
const openai = positives['api-key']!.find((k) => k.startsWith('sk-proj-'))!;
const opaque = 'a1B2c3D4e5F6g7H8i9J0';
const otp = '482913';
const vaultToken = 'hvs.CAESIJ7kq2' + 'Zt9Lm2Pq4xW';

/** Credentials under a bare `token` that only look like words, numbers or flags. */
const plainTokens: unknown[] = [
  'hunter2hunter2',
  'Ab3dEf9hIj2k',
  'sk-abc',
  'client123:s3cretValueHere456',
  's3cr3t!P@ssw0rd#2024$xyz',
  'JBSWYDPEHPKPXPQRABCD',
  48291357,
  ['s3cr3tT0kenValue123!'],
  true,
  'Bearer hunter2',
];
/** The same in text: `?token=`, `&token=`, `TOKEN=`, `Token: `, `token:`. */
const tokenText =
  'GET /cb?token=shortpw123 HTTP/1.1\nRef: /a?b=1&token=hunter2\nTOKEN=hunter2\nToken: hunter2\ntoken:hunter2\n';
const tokenTextMasked =
  'GET /cb?token=[masked:password-assignment] HTTP/1.1\nRef: /a?b=1&token=[masked:password-assignment]\n' +
  'TOKEN=[masked:password-assignment]\nToken: [masked:password-assignment]\ntoken:[masked:password-assignment]\n';

/** What must never leave the gateway. */
const clear = [
  ghp,
  jwt,
  openai,
  opaque,
  vaultToken,
  'hunter2',
  'shortpw123',
  'kubeadm-bootstrap-secret',
  'Ab3dEf9hIj2k',
  'client123:s3cretValueHere456',
  's3cr3t!P@ssw0rd#2024$xyz',
  'JBSWYDPEHPKPXPQRABCD',
  'mysecret',
  's3cr3tT0kenValue123!',
  '\u2581Hello',
  'translatesAutoresizingMaskIntoConstraints',
];

const logprobs = {
  model: 'local-llm',
  choices: [
    {
      text: ' the cat',
      logprobs: {
        content: [
          {
            token: ' the',
            logprob: -0.12,
            bytes: [32, 116, 104, 101],
            top_logprobs: [
              { token: ' the', logprob: -0.12 },
              { token: ' a', logprob: -2.3 },
              { token: '<|endoftext|>', logprob: -9.5 },
            ],
          },
          { token: ' cat', logprob: -1.7, top_logprobs: [{ token: ' dog', logprob: -2.1 }] },
        ],
      },
    },
  ],
};
const tokenizer = {
  tokens: [
    { token: '▁Hello', id: 15043 },
    { token: 'ing', id: 292 },
    { token: 'translatesAutoresizingMaskIntoConstraints', id: 99001 },
  ],
};

function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  return hostMcpServer(() => {
    const server = new McpServer({ name: 'llm', version: '1.0.0' });
    server.registerTool(
      'complete',
      { description: 'Complete a prompt, with logprobs', inputSchema: { prompt: z.string() } },
      async () => ({
        content: [
          { type: 'text', text: JSON.stringify(logprobs) },
          { type: 'text', text: JSON.stringify(tokenizer, null, 1) },
        ],
        structuredContent: logprobs,
      }),
    );
    server.registerTool(
      'get_credentials',
      { description: 'Read the deploy credentials', inputSchema: { env: z.string() } },
      async () => ({
        content: [
          {
            type: 'text',
            text: `password=${ghp}\nTOKEN=${opaque}\ntoken: Hello\nX-Vault-Token: ${vaultToken}\n`,
          },
          { type: 'text', text: tokenText },
        ],
        structuredContent: {
          kubeconfig: {
            users: [
              { name: 'deployer', user: { token: jwt } },
              { name: 'kubeadm', user: { token: 'kubeadm-bootstrap-secret' } },
            ],
          },
          github: { token: ghp },
          openai: { password: openai },
          vault: { auth: { client_token: vaultToken } },
          mfa: { token: otp },
          ci: { token: opaque },
          api: { id: 7, Token: 'mysecret' },
          plain: plainTokens.map((token) => ({ token })),
        },
      }),
    );
    return server;
  });
}

let upstream: { url: string; close(): Promise<void> };
let setup: MaskingProxy;

beforeAll(async () => {
  upstream = await startUpstream();
  setup = await startMaskingProxy({ name: 'masking-tokens', upstream: upstream.url });
});

afterAll(async () => {
  await setup?.close();
  await upstream?.close();
});

it('passes logprobs; masks every other bare token whole, named by its format, on the wire and in the recording', async () => {
  const token = await setup.token('user-11');
  const tee = teeFetch();
  const client = new Client({ name: 'tokens-client', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(setup.mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    fetch: tee.fetch,
  });
  await client.connect(transport);
  const recorded = new Promise<RecordingSummary>((resolve) => setup.proxy.events.once('recording', resolve));

  const completion = await client.callTool({ name: 'complete', arguments: { prompt: 'the' } });
  expect(completion.structuredContent).toEqual(logprobs);
  const texts = (completion.content as Array<{ text: string }>).map((c) => c.text);
  // The exact text copy of structuredContent is re-serialized from it; other JSON text is read
  // as text, where the object around a `"token"` is not: its tokens are masked.
  const tokenizerMasked = {
    tokens: tokenizer.tokens.map(({ id }) => ({ token: '[masked:password-assignment]', id })),
  };
  expect(texts).toEqual([JSON.stringify(logprobs), JSON.stringify(tokenizerMasked, null, 1)]);

  const creds = await client.callTool({ name: 'get_credentials', arguments: { env: 'prod' } });
  expect(creds.structuredContent).toEqual({
    kubeconfig: {
      users: [
        { name: 'deployer', user: { token: '[masked:jwt]' } },
        { name: 'kubeadm', user: { token: '[masked:password-assignment]' } },
      ],
    },
    github: { token: '[masked:github-token]' },
    openai: { password: '[masked:api-key]' },
    vault: { auth: { client_token: '[masked:password-assignment]' } },
    mfa: { token: '[masked:password-assignment]' },
    ci: { token: '[masked:password-assignment]' },
    api: { id: 7, Token: '[masked:password-assignment]' },
    plain: plainTokens.map(() => ({ token: '[masked:password-assignment]' })),
  });
  expect((creds.content as Array<{ text: string }>).map((c) => c.text)).toEqual([
    'password=[masked:github-token]\nTOKEN=[masked:password-assignment]\ntoken: [masked:password-assignment]\nX-Vault-Token: [masked:password-assignment]\n',
    tokenTextMasked,
  ]);

  await transport.terminateSession();
  await client.close();
  const recording = readFileSync((await recorded).location, 'utf8');
  for (const label of ['[masked:jwt]', '[masked:github-token]', '[masked:api-key]']) {
    expect(recording).toContain(label);
  }
  // The logprobs reached the recording unmasked too.
  expect(recording).toContain('"token":" the"');
  const wire = tee.received();
  for (const s of clear) {
    for (const form of jsonForms(s)) {
      expect(wire).not.toContain(form);
      expect(recording).not.toContain(form);
    }
  }
  for (const quoted of [`"${otp}"`, `\\"${otp}\\"`, '"token":48291357', '"token":true']) {
    expect(wire).not.toContain(quoted);
    expect(recording).not.toContain(quoted);
  }
});
