import { copyFile, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, runProcess } from './harness.js';
import { COSIGN, CRANE, type Registry, startRegistry } from './image-registry.js';
import { type BuiltImage, buildImage } from './image-runtime.js';

/**
 * hack/sign-image.sh (`make sign`) against a throwaway registry on loopback, checked with the real
 * cosign: the pushed index is the one built, cosign verifies the index and each platform image
 * with the signer's public key (and not with another key), each platform's SBOM attestation
 * verifies and carries exactly the SBOM file, and images that were not signed (pushed elsewhere,
 * modified, or wearing another image's signature) do not verify. Keyed signing with no
 * transparency log: every verification passes --insecure-ignore-tlog (docs/image.md).
 */
const PASSWORD = 'e2e-signing-password';
let workDir: string;
let image: BuiltImage;
let registry: Registry;
/** `127.0.0.1:PORT/mcp-warden`: where the signing step pushes. */
let repo: string;
let signed: { code: number; stdout: string; stderr: string };
/** The signer's key pair and an unrelated one (`cosign generate-key-pair`). */
let signer: { key: string; pub: string };
let stranger: { key: string; pub: string };

/** Commands get an empty docker config (no credential helper of the machine is asked). */
let env: NodeJS.ProcessEnv;

const cosign = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
  runProcess(COSIGN, args, { env: { ...env, ...extra }, timeoutMs: 120_000 });
const crane = (args: string[]) => runProcess(CRANE, args, { env, timeoutMs: 120_000 });
const signImage = (ref: string, extra: NodeJS.ProcessEnv) =>
  runProcess('bash', [join(REPO_ROOT, 'hack', 'sign-image.sh'), ref], {
    env: { ...env, IMAGE_OUT: image.outDir, ...extra },
    cwd: REPO_ROOT,
    timeoutMs: 600_000,
  });

async function keyPair(dir: string): Promise<{ key: string; pub: string }> {
  await mkdir(dir, { recursive: true });
  const r = await runProcess(COSIGN, ['generate-key-pair'], {
    env: { ...env, COSIGN_PASSWORD: PASSWORD },
    cwd: dir,
  });
  if (r.code !== 0) throw new Error(`cosign generate-key-pair failed: ${r.stderr}`);
  return { key: join(dir, 'cosign.key'), pub: join(dir, 'cosign.pub') };
}

/** `sha256-<hex>.sig` / `.att`: where cosign keeps an image's signatures and attestations. */
const tagOf = (digest: string, kind: 'sig' | 'att') => `${digest.replace(':', '-')}.${kind}`;

function platformsOf(built: BuiltImage) {
  return [...built.platforms.values()].map((p) => ({ ...p, arch: p.config.architecture }));
}

/** Tags of a repository, sorted. */
async function tags(repository: string): Promise<string[]> {
  const r = await crane(['ls', repository]);
  if (r.code !== 0) throw new Error(`crane ls ${repository}: ${r.stderr}`);
  return r.stdout.trim().split('\n').sort();
}

/** The DSSE envelopes `cosign verify-attestation` printed, with their in-toto statements decoded. */
function statements(stdout: string) {
  return stdout
    .trim()
    .split('\n')
    .map((line) => {
      const envelope = JSON.parse(line) as { payloadType: string; payload: string };
      return {
        payloadType: envelope.payloadType,
        statement: JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as {
          predicateType: string;
          subject: Array<{ name: string; digest: Record<string, string> }>;
          predicate: unknown;
        },
      };
    });
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mcp-warden-signing-e2e-'));
  await mkdir(join(workDir, 'docker'));
  env = { ...process.env, DOCKER_CONFIG: join(workDir, 'docker') };
  delete env['COSIGN_KEY'];
  delete env['COSIGN_PASSWORD'];
  delete env['COSIGN_REPOSITORY'];
  // cosign and crane (cached after the first build; make test builds them before jest starts).
  const tools = await runProcess('bash', [join(REPO_ROOT, 'hack', 'build-sign-tools.sh')], {
    env,
    timeoutMs: 900_000,
  });
  if (tools.code !== 0) throw new Error(`hack/build-sign-tools.sh failed: ${tools.stderr}`);
  image = await buildImage(join(workDir, 'image'), 'e2e');
  registry = await startRegistry();
  repo = `${registry.host}/mcp-warden`;
  signer = await keyPair(join(workDir, 'signer'));
  stranger = await keyPair(join(workDir, 'stranger'));
  // The repository without a tag: the script pushes under the tag the image was built with.
  signed = await signImage(repo, { COSIGN_KEY: signer.key, COSIGN_PASSWORD: PASSWORD });
}, 1_800_000);

afterAll(async () => {
  await registry?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('hack/sign-image.sh', () => {
  test('pushes the index as built, signs it and every manifest in it, attests each SBOM', async () => {
    expect(signed.stderr).not.toContain('ERROR');
    expect(signed.code).toBe(0);
    expect(signed.stdout.trim()).toBe(`${repo}@${image.indexDigest}`);
    const digest = await crane(['digest', `${repo}:e2e`]);
    expect(digest.stdout.trim()).toBe(image.indexDigest);
    // --recursive: the index, each platform image and each in-index SBOM attestation manifest are
    // signed; each platform image carries its SBOM attestation (cosign's tag layout).
    const platforms = platformsOf(image);
    expect(await tags(repo)).toEqual(
      [
        'e2e',
        tagOf(image.indexDigest, 'sig'),
        ...platforms.flatMap((p) => [tagOf(p.digest, 'sig'), tagOf(p.digest, 'att')]),
        ...image.attestations.map((a) => tagOf(a.digest, 'sig')),
      ].sort(),
    );
  });

  test('cosign verify --key passes for the index (by tag and by digest) and for each platform image', async () => {
    const targets = [
      { ref: `${repo}:e2e`, digest: image.indexDigest },
      { ref: `${repo}@${image.indexDigest}`, digest: image.indexDigest },
      ...platformsOf(image).map((p) => ({ ref: `${repo}@${p.digest}`, digest: p.digest })),
    ];
    for (const { ref, digest } of targets) {
      const r = await cosign(['verify', '--key', signer.pub, '--insecure-ignore-tlog', ref]);
      expect([ref, r.code, r.stderr]).toEqual([ref, 0, expect.stringContaining('verified against')]);
      const payloads = JSON.parse(r.stdout) as Array<{
        critical: { identity: { 'docker-reference': string }; image: Record<string, string>; type: string };
      }>;
      expect(payloads).toEqual([
        {
          critical: {
            identity: { 'docker-reference': repo },
            image: { 'docker-manifest-digest': digest },
            type: 'cosign container image signature',
          },
          optional: null,
        },
      ]);
    }
  });

  test("cosign verify-attestation --type spdxjson: each platform's verified predicate is exactly its SBOM file", async () => {
    for (const p of platformsOf(image)) {
      const r = await cosign([
        'verify-attestation',
        '--key',
        signer.pub,
        '--insecure-ignore-tlog',
        '--type',
        'spdxjson',
        `${repo}@${p.digest}`,
      ]);
      expect([p.arch, r.code]).toEqual([p.arch, 0]);
      const file = JSON.parse(await readFile(join(image.outDir, `sbom-linux-${p.arch}.spdx.json`), 'utf8'));
      const verified = statements(r.stdout);
      expect(verified).toHaveLength(1);
      expect(verified[0]?.payloadType).toBe('application/vnd.in-toto+json');
      expect(verified[0]?.statement.predicateType).toBe('https://spdx.dev/Document');
      expect(verified[0]?.statement.subject).toEqual([{ name: repo, digest: { sha256: p.digest.slice(7) } }]);
      expect(verified[0]?.statement.predicate).toStrictEqual(file);
    }
  });

  test('another key verifies neither the signatures nor the attestations', async () => {
    for (const p of [{ digest: image.indexDigest, arch: 'index' }, ...platformsOf(image)]) {
      const r = await cosign([
        'verify',
        '--key',
        stranger.pub,
        '--insecure-ignore-tlog',
        `${repo}@${p.digest}`,
      ]);
      expect([p.arch, r.code === 0, r.stderr]).toEqual([
        p.arch,
        false,
        expect.stringContaining('no matching signatures'),
      ]);
      if (p.arch === 'index') continue;
      const a = await cosign([
        'verify-attestation',
        '--key',
        stranger.pub,
        '--insecure-ignore-tlog',
        '--type',
        'spdxjson',
        `${repo}@${p.digest}`,
      ]);
      expect(a.code).not.toBe(0);
      expect(a.stderr).toContain('no matching attestations');
    }
  });

  test('unsigned images fail: pushed elsewhere, modified, or wearing another image’s signature', async () => {
    const verify = (ref: string) => cosign(['verify', '--key', signer.pub, '--insecure-ignore-tlog', ref]);
    const verifySbom = (ref: string) =>
      cosign([
        'verify-attestation',
        '--key',
        signer.pub,
        '--insecure-ignore-tlog',
        '--type',
        'spdxjson',
        ref,
      ]);
    // The same index pushed without the signing step: signatures live beside the image in its
    // repository, so this one has none.
    const unsigned = `${registry.host}/unsigned:e2e`;
    expect((await crane(['push', image.ociDir, unsigned])).code).toBe(0);
    const pushedUnsigned = await verify(unsigned);
    expect(pushedUnsigned.code).not.toBe(0);
    expect(pushedUnsigned.stderr).toContain('no signatures found');

    // The amd64 image modified (one label) and pushed again: a new digest nobody signed.
    const amd64 = image.platforms.get('amd64');
    const arm64 = image.platforms.get('arm64');
    if (amd64 === undefined || arm64 === undefined) throw new Error('the image lacks a platform');
    const tampered = `${registry.host}/tampered`;
    const mutated = await crane([
      'mutate',
      `${repo}@${amd64.digest}`,
      '--label',
      'tampered=yes',
      '-t',
      `${tampered}:x`,
    ]);
    expect(mutated.code).toBe(0);
    const digest = mutated.stdout.trim().split('@')[1] ?? '';
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(digest).not.toBe(amd64.digest);
    const modified = await verify(`${tampered}@${digest}`);
    expect(modified.code).not.toBe(0);
    expect(modified.stderr).toContain('no signatures found');
    expect((await verifySbom(`${tampered}@${digest}`)).code).not.toBe(0);

    // The genuine signature and SBOM attestation of the amd64 image copied onto the modified one:
    // the signed payload names the original digest, so neither verifies.
    for (const kind of ['sig', 'att'] as const) {
      const copied = await crane([
        'copy',
        `${repo}:${tagOf(amd64.digest, kind)}`,
        `${tampered}:${tagOf(digest, kind)}`,
      ]);
      expect(copied.code).toBe(0);
    }
    const moved = await verify(`${tampered}@${digest}`);
    expect(moved.code).not.toBe(0);
    expect(moved.stderr).toContain(`invalid or missing digest in claim: ${amd64.digest}`);
    expect((await verifySbom(`${tampered}@${digest}`)).code).not.toBe(0);
    // And the arm64 image's SBOM attestation does not verify as the amd64 one's.
    const swapped = `${registry.host}/swapped`;
    expect((await crane(['copy', `${repo}@${amd64.digest}`, `${swapped}:x`])).code).toBe(0);
    expect(
      (
        await crane([
          'copy',
          `${repo}:${tagOf(arm64.digest, 'att')}`,
          `${swapped}:${tagOf(amd64.digest, 'att')}`,
        ])
      ).code,
    ).toBe(0);
    expect((await verifySbom(`${swapped}@${amd64.digest}`)).code).not.toBe(0);
  });

  test('signing again, with the key from env://, keeps one signature and one SBOM attestation per image', async () => {
    const before = await tags(repo);
    const again = await signImage(`${repo}:e2e`, {
      COSIGN_KEY: 'env://MCP_WARDEN_SIGNING_KEY',
      MCP_WARDEN_SIGNING_KEY: await readFile(signer.key, 'utf8'),
      COSIGN_PASSWORD: PASSWORD,
    });
    expect([again.code, again.stdout.trim()]).toEqual([0, `${repo}@${image.indexDigest}`]);
    expect(await tags(repo)).toEqual(before);
    for (const p of [{ digest: image.indexDigest }, ...platformsOf(image)]) {
      const r = await cosign([
        'verify',
        '--key',
        signer.pub,
        '--insecure-ignore-tlog',
        `${repo}@${p.digest}`,
      ]);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toHaveLength(1);
    }
    for (const p of platformsOf(image)) {
      const r = await cosign([
        'verify-attestation',
        '--key',
        signer.pub,
        '--insecure-ignore-tlog',
        '--type',
        'spdxjson',
        `${repo}@${p.digest}`,
      ]);
      expect(r.code).toBe(0);
      expect(statements(r.stdout)).toHaveLength(1);
    }
  });

  test('refuses, before pushing anything: no key, a wrong password, an SBOM file that is not the image’s', async () => {
    const refused = `${registry.host}/refused`;
    const noKey = await signImage(refused, { COSIGN_PASSWORD: PASSWORD });
    expect(noKey.code).not.toBe(0);
    expect(noKey.stderr).toContain('COSIGN_KEY is not set');

    const wrongPassword = await signImage(refused, { COSIGN_KEY: signer.key, COSIGN_PASSWORD: 'not-it' });
    expect(wrongPassword.code).not.toBe(0);
    expect(wrongPassword.stderr).toContain('is COSIGN_PASSWORD right?');

    // A build output whose amd64 SBOM file is the arm64 one's.
    const stale = join(workDir, 'stale');
    await mkdir(stale);
    await symlink(image.ociDir, join(stale, 'oci'));
    await copyFile(
      join(image.outDir, 'sbom-linux-arm64.spdx.json'),
      join(stale, 'sbom-linux-amd64.spdx.json'),
    );
    await copyFile(
      join(image.outDir, 'sbom-linux-arm64.spdx.json'),
      join(stale, 'sbom-linux-arm64.spdx.json'),
    );
    const wrongSbom = await runProcess('bash', [join(REPO_ROOT, 'hack', 'sign-image.sh'), refused], {
      env: { ...env, IMAGE_OUT: stale, COSIGN_KEY: signer.key, COSIGN_PASSWORD: PASSWORD },
      cwd: REPO_ROOT,
      timeoutMs: 600_000,
    });
    expect(wrongSbom.code).not.toBe(0);
    expect(wrongSbom.stderr).toContain(
      'sbom-linux-amd64.spdx.json is not the SBOM the index attests for linux/amd64',
    );

    const listed = await crane(['ls', refused]);
    expect(listed.code).not.toBe(0);
    expect(listed.stderr).toContain('NAME_UNKNOWN');
  });
});
