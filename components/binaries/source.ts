// Where the Kubernetes and etcd binaries come from, and the pure script that installs
// them on a host.
import * as path from "path";
import * as fs from "fs";

export type BinaryKind = "kubernetes" | "etcd";

/** Download the official release tarball on the host and verify a pinned digest. */
export interface ReleaseBinarySource {
  readonly kind: "release";
  /**
   * Digest of the release tarball, `sha256:<hex>` or `sha512:<hex>`. Needed for a
   * version that hakube does not pin itself (see `pinnedReleaseDigests`).
   * @default the pinned digest of the version
   */
  readonly digest?: string;
  /**
   * Base URL of a mirror laid out like the official one.
   * @default "https://dl.k8s.io" for Kubernetes, "https://github.com/etcd-io/etcd/releases/download" for etcd
   */
  readonly mirrorUrl?: string;
  /** @default "amd64" */
  readonly arch?: "amd64" | "arm64";
}

/**
 * Copy binaries from a directory on the machine that runs Pulumi (air-gapped sites,
 * and the `local` stack, which uses the toolchain built from source).
 */
export interface LocalDirectoryBinarySource {
  readonly kind: "localDirectory";
  readonly directory: string;
}

export type BinarySource = ReleaseBinarySource | LocalDirectoryBinarySource;

export const defaultBinarySource: BinarySource = { kind: "release" };

/**
 * Digests copied from official release notes, so that the default (download) source
 * is verified without the user supplying anything. Kubernetes: the SHA-512 of
 * kubernetes-server-linux-<arch>.tar.gz from CHANGELOG-1.36.md and CHANGELOG-1.37.md
 * (as shipped in the k8s.io/kubernetes module at v1.37.2). Other versions need
 * `digest`.
 */
export const pinnedReleaseDigests: Record<BinaryKind, Record<string, Partial<Record<"amd64" | "arm64", string>>>> = {
  kubernetes: {
    "v1.37.1": {
      amd64:
        "sha512:7460f368c6049dfec1121a0bb3528257f47439e4a0c3d8b1740377cf21073e45c7d911845b8de61d68aae6b57cafa24885d8378f183a26bc2df0d321c4993afd",
      arm64:
        "sha512:c832cfb9ad04180cf6c4469a8950bf58c0c28066b4543e520a7a25460bbb6f763b17cc535e010f5ddfcef7c695f2faceb9c584936b4d62a554c6b015be199f16",
    },
    "v1.37.0": {
      amd64:
        "sha512:f537143ccadab75bce7cfa97ae29999ec4fa5e09405ad65cb9b1dcd3b132a0eefde4fcc8653e0059113b1ffb163255df26cd4a725b07601a261c94e17cbcfc6e",
      arm64:
        "sha512:09d9be33f71a93704da6684e0c88872d3140e55c4ad9ae87a92045ac0423ce3770b282b6d5f13fbdb5e49dd817385d0e261ba5f22637eb14712f5301d39f8795",
    },
    "v1.36.0": {
      amd64:
        "sha512:1c64da92575451c2c7ff97c79b772e603995f8e76da1371a6b0746aaa27b65dce81c4d734cbb50f40e71486a8e08df36f14e12974f97d4d29e41f23a172a6a25",
    },
  },
  etcd: {},
};

const DIGEST = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;

export function isDigest(text: string): boolean {
  return DIGEST.test(text);
}

export interface ReleaseArtifact {
  readonly url: string;
  readonly digest: string | undefined;
  /** Path of the binaries' folder inside the tarball. */
  readonly innerDirectory: string;
  readonly fileName: string;
}

export function releaseArtifact(kind: BinaryKind, version: string, source: ReleaseBinarySource): ReleaseArtifact {
  const arch = source.arch ?? "amd64";
  const digest = source.digest ?? pinnedReleaseDigests[kind][version]?.[arch];
  if (kind === "kubernetes") {
    const fileName = `kubernetes-server-linux-${arch}.tar.gz`;
    const base = (source.mirrorUrl ?? "https://dl.k8s.io").replace(/\/+$/, "");
    return { url: `${base}/${version}/${fileName}`, digest, innerDirectory: "kubernetes/server/bin", fileName };
  }
  const fileName = `etcd-${version}-linux-${arch}.tar.gz`;
  const base = (source.mirrorUrl ?? "https://github.com/etcd-io/etcd/releases/download").replace(/\/+$/, "");
  return { url: `${base}/${version}/${fileName}`, digest, innerDirectory: `etcd-${version}-linux-${arch}`, fileName };
}

const BIN_NAME = /^[a-z0-9][a-z0-9_.-]*$/;

/**
 * Script that downloads (once per host and version, shared by every component under a
 * lock), verifies and unpacks a release tarball, then installs the named binaries into
 * /usr/local/bin. Idempotent: a verified tarball is not fetched again.
 */
export function renderReleaseInstallScript(
  artifact: ReleaseArtifact,
  version: string,
  binaries: readonly string[],
  dirs: { readonly cacheDir?: string; readonly binDir?: string } = {},
): string {
  if (!artifact.digest || !isDigest(artifact.digest)) {
    throw new Error(`release artifact ${artifact.url} has no valid digest`);
  }
  binaries.forEach((b) => {
    if (!BIN_NAME.test(b)) throw new Error(`bad binary name ${b}`);
  });
  const [algorithm, hex] = artifact.digest.split(":");
  const cache = `${dirs.cacheDir ?? "/var/cache/hakube/releases"}/${version}`;
  const bin = dirs.binDir ?? "/usr/local/bin";
  return [
    `mkdir -p ${cache}`,
    `exec 9>${cache}/.lock`,
    `flock 9`,
    `tarball=${cache}/${artifact.fileName}`,
    `verify() { echo "${hex}  $1" | ${algorithm}sum --check --status; }`,
    `if [ ! -f "$tarball" ] || ! verify "$tarball"; then`,
    `  echo "hakube: downloading ${artifact.url}"`,
    `  curl --fail --silent --show-error --location --retry 5 --retry-delay 2 --max-time 900 -o "$tarball.part" "${artifact.url}"`,
    `  if ! verify "$tarball.part"; then`,
    `    rm -f "$tarball.part"`,
    `    echo "hakube: ${artifact.fileName} does not match the pinned ${algorithm} digest; refusing to install it" >&2`,
    `    exit 1`,
    `  fi`,
    `  mv -f "$tarball.part" "$tarball"`,
    `fi`,
    `unpack=$(mktemp -d ${cache}/unpack.XXXXXX)`,
    `tar -xzf "$tarball" -C "$unpack" ${binaries.map((b) => `${artifact.innerDirectory}/${b}`).join(" ")}`,
    ...binaries.map((b) => `install -m 0755 "$unpack/${artifact.innerDirectory}/${b}" ${bin}/${b}.hakube-new && mv -f ${bin}/${b}.hakube-new ${bin}/${b}`),
    `rm -rf "$unpack"`,
    `echo "hakube: installed ${binaries.join(", ")} ${version}"`,
  ].join("\n");
}

/** Where a local-directory binary is uploaded before it is installed. */
export function uploadPath(component: string, binary: string): string {
  return `/var/lib/hakube/uploads/${component}/${binary}`;
}

/** Script that installs uploaded binaries into /usr/local/bin (atomic rename). */
export function renderUploadedInstallScript(component: string, binaries: readonly string[]): string {
  binaries.forEach((b) => {
    if (!BIN_NAME.test(b)) throw new Error(`bad binary name ${b}`);
  });
  return [
    ...binaries.map(
      (b) => `install -m 0755 ${uploadPath(component, b)} /usr/local/bin/${b}.hakube-new && mv -f /usr/local/bin/${b}.hakube-new /usr/local/bin/${b}`,
    ),
    `echo "hakube: installed ${binaries.join(", ")}"`,
  ].join("\n");
}

/** Files of a local-directory source, resolved and checked at preview. */
export function localBinaryPaths(directory: string, binaries: readonly string[]): { binary: string; path: string; problem?: string }[] {
  return binaries.map((binary) => {
    const file = path.resolve(directory, binary);
    try {
      const stat = fs.statSync(file);
      if (!stat.isFile()) {
        return { binary, path: file, problem: "is not a regular file" };
      }
      fs.accessSync(file, fs.constants.X_OK);
      return { binary, path: file };
    } catch {
      return { binary, path: file, problem: "is missing or not executable" };
    }
  });
}
