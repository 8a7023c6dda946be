import { WardenError } from '../errors.js';
import { authChallenge, protectedResourceMetadata, wwwAuthenticateHeader } from './metadata.js';

describe('protectedResourceMetadata (RFC 9728)', () => {
  it('lists authorization servers and Entra scopes, maps v1 to the v2 authority, expands templates, skips Kubernetes', () => {
    const tid = '72f988bf-86f1-41af-91ab-2d7cd011db47';
    const doc = protectedResourceMetadata('https://mcp.example.com/mcp', [
      { issuer: `https://login.microsoftonline.com/${tid}/v2.0`, audiences: ['api://github-mcp'] },
      { issuer: `https://sts.windows.net/${tid}/`, audiences: ['api://github-mcp', 'api://other/'] },
      {
        issuer: 'https://login.microsoftonline.com/{tenantid}/v2.0',
        audiences: ['api://multi'],
        allowedTenants: ['t1', 't2'],
      },
      { issuer: 'https://kubernetes.default.svc.cluster.local', audiences: ['github-mcp'], kubernetes: true },
      { issuer: 'https://accounts.example.org', audiences: ['mcp'] },
    ]);
    expect(doc).toEqual({
      resource: 'https://mcp.example.com/mcp',
      authorization_servers: [
        `https://login.microsoftonline.com/${tid}/v2.0`,
        'https://login.microsoftonline.com/t1/v2.0',
        'https://login.microsoftonline.com/t2/v2.0',
        'https://accounts.example.org',
      ],
      bearer_methods_supported: ['header'],
      scopes_supported: ['api://github-mcp/.default', 'api://other/.default', 'api://multi/.default'],
    });
  });

  it('omits scopes_supported when no issuer is Entra', () => {
    expect(
      protectedResourceMetadata('https://r', [{ issuer: 'https://idp.example', audiences: ['a'] }]),
    ).toEqual({
      resource: 'https://r',
      authorization_servers: ['https://idp.example'],
      bearer_methods_supported: ['header'],
    });
  });
});

describe('wwwAuthenticateHeader', () => {
  it('names the metadata URL, and the error when a token was refused', () => {
    const url = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp';
    expect(wwwAuthenticateHeader(url)).toBe(`Bearer resource_metadata="${url}"`);
    expect(
      wwwAuthenticateHeader(url, {
        error: 'invalid_token',
        description: 'the token expired at 2026-01-01T00:00:00.000Z',
      }),
    ).toBe(
      `Bearer resource_metadata="${url}", error="invalid_token", error_description="the token expired at 2026-01-01T00:00:00.000Z"`,
    );
  });

  it('keeps quotes, backslashes, control and non-ASCII characters out of the header', () => {
    const value = wwwAuthenticateHeader('https://x/"a', { error: 'bad"code', description: 'a"b\\c\r\nd é' });
    expect(value).toBe(
      `Bearer resource_metadata="https://x/'a", error="invalid_token", error_description="a'b'c  d  "`,
    );
    expect(value).toMatch(/^[\x20-\x7e]+$/);
  });
});

describe('authChallenge', () => {
  it('maps codes to statuses and RFC 6750 errors', () => {
    expect(authChallenge(new WardenError('ERR_AUTH_MISSING', 'no token'))).toEqual({
      status: 401,
      description: 'no token',
    });
    expect(authChallenge(new WardenError('ERR_AUTH_EXPIRED', 'old')).error).toBe('invalid_token');
    expect(authChallenge(new WardenError('ERR_AUTH_FORBIDDEN', 'overage'))).toEqual({
      status: 403,
      error: 'insufficient_scope',
      description: 'overage',
    });
    expect(authChallenge(new WardenError('ERR_AUTH_ISSUER_UNAVAILABLE', 'down')).status).toBe(503);
    expect(authChallenge(new Error('boom'))).toEqual({
      status: 401,
      error: 'invalid_token',
      description: 'the token could not be verified',
    });
  });
});
