/**
 * The mcp-warden container image, built by hack/build-image.sh and run as a kubelet runs a
 * container, without a container engine: the image's layers unpacked into a root filesystem, and
 * each container started in its own mount namespace (`unshare`) with that root (`--root`), the
 * image config's entrypoint and working directory, the pod spec's args and env (over the image's
 * Env), the uid and gid of its securityContext, the root filesystem read-only when the spec says
 * so, and only the pod's volumes bind-mounted writable — so a file the process writes anywhere
 * else fails as it would in a pod. Like a runtime, it mounts /proc, the usual /dev nodes,
 * /etc/hosts and /etc/resolv.conf. The network namespace stays the host's: callers move listen
 * addresses to loopback, as the source-run tests do.
 *
 * Needs root (mount namespaces and bind mounts; `unshare` from util-linux ≥ 2.38).
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './harness.js';

const run = promisify(execFile);

/** The `config` member of an OCI image config (the parts a runtime uses). */
export interface ImageRuntimeConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  User?: string;
  Env?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
}

export interface OciImageConfig {
  architecture: string;
  os: string;
  created?: string;
  config: ImageRuntimeConfig;
  rootfs: { type: string; diff_ids: string[] };
  history?: Array<{ created?: string; created_by?: string }>;
}

/** One platform's image of the index. */
export interface PlatformImage {
  /** `linux/amd64`, `linux/arm64/v8`. */
  platform: string;
  /** Manifest digest. */
  digest: string;
  /** Its `docker save` archive. */
  tarball: string;
  /** The unpacked layers (unpackPlatform). */
  rootfs: string;
  config: OciImageConfig;
  layers: Array<{ digest: string; mediaType: string }>;
}

/** The built image: the index, and at the top level its linux/amd64 image, unpacked. */
export interface BuiltImage extends PlatformImage {
  /** Reference the image was tagged with (`ghcr.io/mcp-warden/mcp-warden:<tag>`). */
  ref: string;
  /** Digest of the multi-platform index (what a registry serves under the tag). */
  indexDigest: string;
  ociDir: string;
  outDir: string;
  tag: string;
  /** Every platform of the index by architecture, in index order. */
  platforms: Map<string, Omit<PlatformImage, 'rootfs'>>;
  /** The SBOM attestations of the index (platform unknown/unknown), in index order. */
  attestations: Array<{
    digest: string;
    subject: string;
    layers: Array<{ digest: string; mediaType: string }>;
  }>;
}

/**
 * Builds the image with hack/build-image.sh into `outDir` (tag `tag`; every platform unless
 * `platforms` names some) and unpacks its linux/amd64 image into `<outDir>/rootfs-amd64`. The
 * script serializes concurrent builds (flock).
 */
export async function buildImage(outDir: string, tag: string, platforms?: string[]): Promise<BuiltImage> {
  try {
    await run('bash', [join(REPO_ROOT, 'hack', 'build-image.sh')], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        IMAGE_OUT: outDir,
        IMAGE_TAG: tag,
        ...(platforms === undefined ? {} : { IMAGE_PLATFORMS: platforms.join(' ') }),
      },
      maxBuffer: 16 * 1024 * 1024,
      timeout: 15 * 60_000,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`hack/build-image.sh failed: ${e.stderr ?? e.message}`);
  }
  const built = JSON.parse(await readFile(join(outDir, 'image.json'), 'utf8')) as {
    ref: string;
    digest: string;
  };
  const ociDir = join(outDir, 'oci');
  const index = await readIndex(ociDir);
  const images = new Map<string, Omit<PlatformImage, 'rootfs'>>();
  const attestations: BuiltImage['attestations'] = [];
  for (const m of index.manifests) {
    const manifest = JSON.parse(await readFile(blobPath(ociDir, m.digest), 'utf8')) as {
      config: { digest: string };
      layers: Array<{ digest: string; mediaType: string }>;
    };
    if (m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest') {
      const subject = m.annotations['vnd.docker.reference.digest'] ?? '';
      attestations.push({ digest: m.digest, subject, layers: manifest.layers });
      continue;
    }
    const config = JSON.parse(
      await readFile(blobPath(ociDir, manifest.config.digest), 'utf8'),
    ) as OciImageConfig;
    const { os, architecture, variant } = m.platform;
    images.set(architecture, {
      platform: [os, architecture, ...(variant === undefined ? [] : [variant])].join('/'),
      digest: m.digest,
      tarball: join(outDir, `mcp-warden-${tag}-${os}-${architecture}.tar`),
      config,
      layers: manifest.layers,
    });
  }
  return {
    ...(await unpackPlatform({ ociDir, outDir, platforms: images }, 'amd64')),
    ref: built.ref,
    indexDigest: built.digest,
    ociDir,
    outDir,
    tag,
    platforms: images,
    attestations,
  };
}

/** The image index the layout's index.json points to (one entry, the multi-platform index). */
async function readIndex(ociDir: string): Promise<{
  manifests: Array<{
    digest: string;
    platform: { os: string; architecture: string; variant?: string };
    annotations?: Record<string, string>;
  }>;
}> {
  const top = JSON.parse(await readFile(join(ociDir, 'index.json'), 'utf8')) as {
    manifests: Array<{ digest: string; mediaType: string }>;
  };
  const entry = top.manifests[0];
  if (top.manifests.length !== 1 || entry?.mediaType !== 'application/vnd.oci.image.index.v1+json')
    throw new Error(`${ociDir}/index.json should point to one image index`);
  return JSON.parse(await readFile(blobPath(ociDir, entry.digest), 'utf8'));
}

export function blobPath(ociDir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  if (algorithm !== 'sha256' || hex === undefined || !/^[0-9a-f]{64}$/.test(hex))
    throw new Error(`unexpected digest ${digest}`);
  return join(ociDir, 'blobs', 'sha256', hex);
}

/**
 * Unpacks one platform's layers into `<outDir>/rootfs-<arch>` (ownership and modes as stored) and
 * returns that image with its rootfs.
 */
export async function unpackPlatform(
  built: Pick<BuiltImage, 'ociDir' | 'outDir' | 'platforms'>,
  architecture: string,
): Promise<PlatformImage> {
  const image = built.platforms.get(architecture);
  if (image === undefined) throw new Error(`the image has no ${architecture} platform`);
  const rootfs = join(built.outDir, `rootfs-${architecture}`);
  await mkdir(rootfs, { recursive: true });
  for (const layer of image.layers) {
    if (layer.mediaType !== 'application/vnd.oci.image.layer.v1.tar+gzip')
      throw new Error(`layer ${layer.digest} has media type ${layer.mediaType}`);
    await run('tar', ['-xzpf', blobPath(built.ociDir, layer.digest), '-C', rootfs, '--numeric-owner']);
  }
  return { ...image, rootfs };
}

export interface Mount {
  hostPath: string;
  containerPath: string;
  readOnly?: boolean;
}

export interface ContainerSpec {
  /** The container's `command`: replaces the image's Entrypoint. */
  command?: string[];
  /** The container's `args` (appended to the Entrypoint, replacing the image's Cmd). */
  args: string[];
  /** The container's env, resolved (valueFrom already read); wins over the image's Env. */
  env: Record<string, string>;
  mounts: Mount[];
  runAsUser: number;
  runAsGroup: number;
  readOnlyRootFilesystem: boolean;
}

/** Device nodes a runtime gives every container. */
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/**
 * Mounts, then `unshare --root` into the image: runs inside `unshare --mount`, so every mount
 * disappears with the process. Positional parameters: root, ro|rw, uid, gid, workdir, then
 * `host target ro|rw` triples, `--`, and the command.
 */
const START = `set -eu
root=$1; rootmode=$2; uid=$3; gid=$4; wd=$5; shift 5
mount --bind "$root" "$root"
mount -t proc proc "$root/proc" 2>/dev/null || mount --rbind /proc "$root/proc"
for d in ${DEVICES.join(' ')}; do mount --bind "/dev/$d" "$root/dev/$d"; done
mount --bind /etc/hosts "$root/etc/hosts"
mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
while [ "$1" != "--" ]; do
  mount --bind "$1" "$root$2"
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
  shift 3
done
shift
if [ "$rootmode" = ro ]; then mount -o remount,bind,ro "$root"; fi
exec unshare --root "$root" --wd "$wd" --setgid "$gid" --setuid "$uid" -- "$@"
`;

/**
 * The command line that starts `spec` from `image` (for `spawn` or the harness's process
 * guardian), after creating the mount points in the root filesystem as a runtime does.
 */
export async function containerCommand(
  image: PlatformImage,
  spec: ContainerSpec,
): Promise<{ bin: string; args: string[]; env: Record<string, string> }> {
  if (process.getuid?.() !== 0)
    throw new Error('running the image needs root (a mount namespace and bind mounts)');
  const { rootfs, config } = image;
  const entrypoint = spec.command ?? config.config.Entrypoint ?? [];
  if (entrypoint.length === 0) throw new Error('neither the container nor the image has an entrypoint');
  for (const dir of ['proc', 'dev', 'etc']) await mkdir(join(rootfs, dir), { recursive: true });
  for (const d of DEVICES) await writeFile(join(rootfs, 'dev', d), '', { flag: 'a' });
  for (const f of ['hosts', 'resolv.conf']) await writeFile(join(rootfs, 'etc', f), '', { flag: 'a' });
  const triples: string[] = [];
  for (const m of spec.mounts) {
    // A file is mounted on a file, a directory on a directory.
    if ((await stat(m.hostPath)).isDirectory())
      await mkdir(join(rootfs, m.containerPath), { recursive: true });
    else {
      await mkdir(dirname(join(rootfs, m.containerPath)), { recursive: true });
      await writeFile(join(rootfs, m.containerPath), '', { flag: 'a' });
    }
    triples.push(m.hostPath, m.containerPath, m.readOnly === true ? 'ro' : 'rw');
  }
  const env: Record<string, string> = {};
  for (const e of config.config.Env ?? []) {
    const eq = e.indexOf('=');
    env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  Object.assign(env, spec.env);
  return {
    bin: 'unshare',
    args: [
      '--mount',
      '--propagation',
      'private',
      '/bin/sh',
      '-c',
      START,
      'container',
      rootfs,
      spec.readOnlyRootFilesystem ? 'ro' : 'rw',
      String(spec.runAsUser),
      String(spec.runAsGroup),
      config.config.WorkingDir ?? '/',
      ...triples,
      '--',
      ...entrypoint,
      ...spec.args,
    ],
    env,
  };
}
