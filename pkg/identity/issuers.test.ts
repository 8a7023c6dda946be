import { discoveryUrlFor, isIssuerOfTenant, resolveIssuer } from './issuers.js';
import { checkFetchUrl, isLoopbackHost } from './lib/url.js';

describe('discoveryUrlFor', () => {
  it('discovers Entra v1 issuers at login.microsoftonline.com, others at <issuer>/.well-known', () => {
    expect(
      discoveryUrlFor(
        { issuer: 'https://sts.windows.net/t1/', audiences: [] },
        'https://sts.windows.net/t1/',
      ),
    ).toBe('https://login.microsoftonline.com/t1/.well-known/openid-configuration');
    expect(
      discoveryUrlFor(
        { issuer: 'https://login.microsoftonline.com/t1/v2.0', audiences: [] },
        'https://login.microsoftonline.com/t1/v2.0',
      ),
    ).toBe('https://login.microsoftonline.com/t1/v2.0/.well-known/openid-configuration');
    const templated = {
      issuer: 'https://sts.windows.net/{tenantid}/',
      audiences: [],
      discoveryUrl: 'https://idp.example/{tenantid}/oidc',
    };
    expect(discoveryUrlFor(templated, 'https://sts.windows.net/t9/', 't9')).toBe(
      'https://idp.example/t9/oidc',
    );
  });
});

describe('resolveIssuer', () => {
  it('merges several trusted entries for one issuer (several policies)', () => {
    const r = resolveIssuer('https://i', undefined, [
      { issuer: 'https://i', audiences: ['a'] },
      { issuer: 'https://other', audiences: ['x'] },
      { issuer: 'https://i', audiences: ['b'], groupsOverage: 'graph' },
    ]);
    expect(r).toMatchObject({ issuer: 'https://i', entries: [{ audiences: ['a'] }, { audiences: ['b'] }] });
  });

  it('applies allowedTenants to exact issuers too', () => {
    expect(
      resolveIssuer('https://i', 't2', [{ issuer: 'https://i', audiences: ['a'], allowedTenants: ['t1'] }]),
    ).toEqual({
      problem: 'tenant t2 is not in allowedTenants of issuer https://i',
    });
  });
});

describe('loopback and URL checks', () => {
  it('knows loopback hosts', () => {
    for (const h of ['localhost', '127.0.0.1', '127.255.0.9', '[::1]']) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['10.0.0.1', '127.0.0.256', '128.0.0.1', 'localhost.evil.com', '[::2]', '0.0.0.0'])
      expect(isLoopbackHost(h)).toBe(false);
  });

  it('allows https anywhere, http on loopback only, nothing else', () => {
    expect('url' in checkFetchUrl('https://login.microsoftonline.com/x', false)).toBe(true);
    expect('url' in checkFetchUrl('http://127.0.0.1:9/x', true)).toBe(true);
    expect(checkFetchUrl('http://127.0.0.1:9/x', false)).toEqual({
      problem: expect.stringMatching(/allowInsecureLoopback/),
    });
    expect(checkFetchUrl('http://example.com/x', true)).toEqual({
      problem: expect.stringMatching(/only allowed on loopback/),
    });
    expect(checkFetchUrl('file:///etc/passwd', true)).toEqual({
      problem: expect.stringMatching(/unsupported scheme/),
    });
    expect(checkFetchUrl('https://user:pw@idp.example/', true)).toEqual({
      problem: expect.stringMatching(/credentials/),
    });
    expect(checkFetchUrl('not a url', true)).toEqual({
      problem: expect.stringMatching(/not an absolute URL/),
    });
  });
});

describe('isIssuerOfTenant', () => {
  const template = 'https://login.microsoftonline.com/{tenantid}/v2.0';
  it('is the template filled with exactly that tenant (literal parts case-insensitive, like resolveIssuer)', () => {
    expect(isIssuerOfTenant(template, 'https://login.microsoftonline.com/t-a/v2.0', 't-a')).toBe(true);
    expect(isIssuerOfTenant(template, 'https://LOGIN.microsoftonline.com/t-a/v2.0', 't-a')).toBe(true);
    expect(isIssuerOfTenant(template, 'https://login.microsoftonline.com/t-b/v2.0', 't-a')).toBe(false);
    expect(isIssuerOfTenant(template, 'https://login.microsoftonline.com/T-A/v2.0', 't-a')).toBe(false);
    expect(isIssuerOfTenant(template, 'https://login.microsoftonline.com/t-a/v2.0/x', 't-a')).toBe(false);
    expect(isIssuerOfTenant(template, 'https://login.microsoftonline.com/t-a/v2', 't-a')).toBe(false);
    expect(isIssuerOfTenant(template, 'https://login.microsoftonline.com//v2.0', '')).toBe(false);
    expect(isIssuerOfTenant('https://idp/{tenantid}/x/{TenantId}', 'https://idp/t/x/t', 't')).toBe(true);
    expect(isIssuerOfTenant('https://idp/{tenantid}/x/{tenantid}', 'https://idp/t/x/u', 't')).toBe(false);
  });
});
