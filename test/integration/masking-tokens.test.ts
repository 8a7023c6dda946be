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
 * A real SDK server and client through the gateway with every detector on. An LLM's logprobs and
 * a tokenizer's output (`{"token": " the", ...}`) reach the client as the server sent them, in
 * structuredContent and in text; a `token` that reads as a credential is masked. A credential of
 * a known format under a credential name (`{"password": "sk-proj-…"}`, a kubeconfig user's
 * `token`) is masked whole and named by its detector, on the wire and in the recording.
 */
const ghp = positives['github-token']![0]!;
const jwt = positives.jwt![0]!;
const openai = positives['api-key']!.find((k) => k.startsWith('sk-proj-'))!;
const opaque = 'a1B2c3D4e5F6g7H8i9J0';
const otp = '482913';
const vaultToken = 'hvs.CAESIJ7kq2' + 'Zt9Lm2Pq4xW';

/** What must never leave the gateway. */
const clear = [ghp, jwt, openai, opaque, vaultToken];

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
        ],
        structuredContent: {
          kubeconfig: { users: [{ name: 'deployer', user: { token: jwt } }] },
          github: { token: ghp },
          openai: { password: openai },
          vault: { auth: { client_token: vaultToken } },
          mfa: { token: otp },
          ci: { token: opaque },
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

it('passes logprobs and tokenizer tokens; masks credential tokens whole, named by their format, on the wire and in the recording', async () => {
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
  expect(texts).toEqual([JSON.stringify(logprobs), JSON.stringify(tokenizer, null, 1)]);

  const creds = await client.callTool({ name: 'get_credentials', arguments: { env: 'prod' } });
  expect(creds.structuredContent).toEqual({
    kubeconfig: { users: [{ name: 'deployer', user: { token: '[masked:jwt]' } }] },
    github: { token: '[masked:github-token]' },
    openai: { password: '[masked:api-key]' },
    vault: { auth: { client_token: '[masked:password-assignment]' } },
    mfa: { token: '[masked:password-assignment]' },
    ci: { token: '[masked:password-assignment]' },
  });
  expect((creds.content as Array<{ text: string }>)[0]!.text).toBe(
    'password=[masked:github-token]\nTOKEN=[masked:password-assignment]\ntoken: Hello\nX-Vault-Token: [masked:password-assignment]\n',
  );

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
  for (const quoted of [`"${otp}"`, `\\"${otp}\\"`]) {
    expect(wire).not.toContain(quoted);
    expect(recording).not.toContain(quoted);
  }
});
