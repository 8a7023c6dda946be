import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuthenticator } from '../pkg/identity/authenticator.js';
import type { DevIssuer } from '../pkg/identity/dev-issuer.js';
import { parseListen, run } from './dev.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) } },
  };
}

/** Start `dev issuer` in-process; resolves once it listens and has written its state. */
async function startIssuerCommand(args: string[]) {
  const stop = new AbortController();
  const c = capture();
  let ready!: (v: { dev: DevIssuer; stateFile: string }) => void;
  const started = new Promise<{ dev: DevIssuer; stateFile: string }>((r) => {
    ready = r;
  });
  const exit = run(['issuer', ...args], {
    ...c.io,
    signal: stop.signal,
    onReady: (dev, stateFile) => ready({ dev, stateFile }),
  });
  const failedEarly = exit.then((code) => {
    throw new Error(`dev issuer exited ${code}: ${c.err.join('')}`);
  });
  return { ...(await Promise.race([started, failedEarly])), exit, stop, output: c };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warden-dev-cli-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('mcp-warden dev', () => {
  it('dev token, as a separate step, signs tokens the running dev issuer verifies (v2 user and v1 app-only)', async () => {
    const stateFile = join(dir, 'state.json');
    const issuer = await startIssuerCommand([
      '--listen',
      '127.0.0.1:0',
      '--tenant',
      'tenant-cli',
      '--state',
      stateFile,
    ]);
    try {
      expect(issuer.output.out.join('')).toContain(`v2 issuer   ${issuer.dev.url}/tenant-cli/v2.0`);
      expect((await stat(stateFile)).mode & 0o777).toBe(0o600);

      const user = capture();
      expect(
        await run(
          [
            'token',
            '--issuer-state',
            stateFile,
            '--aud',
            'api://cli',
            '--oid',
            'o-1',
            '--groups',
            'g1, g2',
            '--roles',
            'MCP.Read',
            '--scopes',
            'a,b',
          ],
          user.io,
        ),
      ).toBe(0);
      const token = user.out.join('').trim();
      expect(token.split('.')).toHaveLength(3);
      const auth = createAuthenticator();
      const who = await auth.authenticate(token, [{ issuer: issuer.dev.v2Issuer, audiences: ['api://cli'] }]);
      expect(who.principal).toBe('tenant-cli/o-1');
      expect(who.groups).toEqual(['g1', 'g2']);
      expect(who.roles).toEqual(['MCP.Read']);
      expect(who.scopes).toEqual(['a', 'b']);
      expect(who.appOnly).toBe(false);

      const app = capture();
      expect(
        await run(
          [
            'token',
            '--issuer-state',
            stateFile,
            '--aud',
            'api://cli',
            '--app-only',
            '--v1',
            '--expires',
            '120',
          ],
          app.io,
        ),
      ).toBe(0);
      const appWho = await auth.authenticate(app.out.join('').trim(), [
        { issuer: issuer.dev.v1Issuer, audiences: ['api://cli'] },
      ]);
      expect(appWho.appOnly).toBe(true);
      expect(appWho.claims['ver']).toBe('1.0');
      expect(appWho.expiresAt - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(120);
    } finally {
      issuer.stop.abort();
    }
    expect(await issuer.exit).toBe(0);
  });

  it('keeps the signing key across restarts with the same state file', async () => {
    const stateFile = join(dir, 'state.json');
    const first = await startIssuerCommand(['--listen', '127.0.0.1:0', '--state', stateFile]);
    const kids = first.dev.keyIds();
    first.stop.abort();
    await first.exit;
    const second = await startIssuerCommand(['--listen', '127.0.0.1:0', '--state', stateFile]);
    expect(second.dev.keyIds()).toEqual(kids);
    second.stop.abort();
    expect(await second.exit).toBe(0);
  });

  it('explains what to do on bad input', async () => {
    const missing = capture();
    expect(await run(['token', '--issuer-state', join(dir, 'none.json')], missing.io)).toBe(2);
    expect(missing.err.join('')).toMatch(/start `mcp-warden dev issuer` first/);
    const unknown = capture();
    expect(await run(['token', '--bogus'], unknown.io)).toBe(2);
    expect(unknown.err.join('')).toMatch(/bogus/);
    const sub = capture();
    expect(await run(['nope'], sub.io)).toBe(2);
    expect(sub.err.join('')).toMatch(/unknown subcommand "nope"/);
    const first = await startIssuerCommand(['--listen', '127.0.0.1:0', '--state', join(dir, 'a.json')]);
    const busy = capture();
    const port = new URL(first.dev.url).port;
    expect(
      await run(['issuer', '--listen', `127.0.0.1:${port}`, '--state', join(dir, 'b.json')], busy.io),
    ).toBe(2);
    expect(busy.err.join('')).toMatch(/EADDRINUSE.*--listen/);
    first.stop.abort();
    await first.exit;
    const remote = capture();
    expect(await run(['issuer', '--listen', '0.0.0.0:0', '--state', join(dir, 's.json')], remote.io)).toBe(2);
    expect(remote.err.join('')).toMatch(/not a loopback address/);
  });

  it('parses --listen forms', () => {
    expect(parseListen('127.0.0.1:8400')).toEqual({ host: '127.0.0.1', port: 8400 });
    expect(parseListen('[::1]:9')).toEqual({ host: '::1', port: 9 });
    expect(parseListen(':8400')).toEqual({ host: '127.0.0.1', port: 8400 });
    expect(() => parseListen('8400')).toThrow(/HOST:PORT/);
    expect(() => parseListen('h:70000')).toThrow(/HOST:PORT/);
  });
});
