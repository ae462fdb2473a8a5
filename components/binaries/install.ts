import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import * as fs from "fs";
import { Host } from "../types";
import { invalid } from "../validation";
import { scriptPrologue } from "../remote/files";
import {
  BinaryKind,
  BinarySource,
  isDigest,
  localBinaryPaths,
  pinnedReleaseDigests,
  releaseArtifact,
  renderReleaseInstallScript,
  renderUploadedInstallScript,
  uploadPath,
} from "./source";

export interface BinaryPlan {
  readonly kind: BinaryKind;
  readonly version: string;
  readonly binaries: readonly string[];
  readonly source: BinarySource;
  /** Changes whenever the installed bytes change: dependent steps list it in their script header. */
  readonly identity: string;
}

/**
 * Checks a binary source at preview (digest present and well formed, or every file
 * present in the local directory) and returns what to install.
 */
export function planBinaries(
  parent: pulumi.Resource,
  argument: string,
  kind: BinaryKind,
  version: string,
  binaries: readonly string[],
  source: BinarySource,
): BinaryPlan {
  if (source.kind === "release") {
    const artifact = releaseArtifact(kind, version, source);
    if (source.digest !== undefined && !isDigest(source.digest)) {
      invalid(parent, `${argument}.digest`, source.digest, 'a digest "sha256:<64 hex>" or "sha512:<128 hex>"');
    }
    if (!artifact.digest) {
      const pinned = Object.keys(pinnedReleaseDigests[kind]);
      invalid(
        parent,
        `${argument}.digest`,
        null,
        `the digest of ${artifact.url} (hakube pins ${kind} ${pinned.length ? pinned.join(", ") : "no version"} itself), ` +
          `or { kind: "localDirectory" }`,
      );
    }
    return { kind, version, binaries, source, identity: `${version} ${artifact.digest}` };
  }
  if (source.kind === "localDirectory") {
    const files = localBinaryPaths(source.directory, binaries);
    const bad = files.find((f) => f.problem);
    if (bad) {
      invalid(parent, `${argument}.directory`, source.directory, `a directory holding ${binaries.join(", ")} (${bad.path} ${bad.problem})`);
    }
    const stamp = files.map((f) => `${f.binary}:${fileStamp(f.path)}`);
    return { kind, version, binaries, source, identity: `${version} ${stamp.join(",")}` };
  }
  return invalid(parent, `${argument}.kind`, (source as { kind: unknown }).kind, '"release" or "localDirectory"');
}

/** Size and modification time: identify a build without hashing 100+ MB per preview. */
export function fileStamp(file: string): string {
  const stat = fs.statSync(file);
  return `${stat.size}:${Math.floor(stat.mtimeMs)}`;
}

/**
 * Installs the planned binaries on one host: a verified download of the release, or an
 * upload from the local directory. Returns the resource dependents wait on.
 */
export function installBinaries(
  name: string,
  host: Host,
  component: string,
  plan: BinaryPlan,
  opts: pulumi.CustomResourceOptions,
): pulumi.Resource {
  const { source } = plan;
  // A replaced machine (new instance) gets its binaries again.
  const triggers: pulumi.Input<string>[] = [plan.identity, ...(host.instance === undefined ? [] : [host.instance])];
  if (source.kind === "release") {
    const artifact = releaseArtifact(plan.kind, plan.version, source);
    return new command.remote.Command(
      name,
      {
        connection: host.connection,
        create: `${scriptPrologue}\n${renderReleaseInstallScript(artifact, plan.version, plan.binaries)}`,
        triggers,
      },
      opts,
    );
  }
  const mkdir = new command.remote.Command(
    `${name}-dir`,
    // Made again on a new machine (instance) along with the copies into it.
    { connection: host.connection, create: `${scriptPrologue}\nmkdir -p ${uploadPath(component, "")}`, triggers },
    opts,
  );
  const copies = localBinaryPaths(source.directory, plan.binaries).map(
    (file) =>
      new command.remote.CopyToRemote(
        `${name}-${file.binary}`,
        {
          connection: host.connection,
          source: new pulumi.asset.FileAsset(file.path),
          remotePath: uploadPath(component, file.binary),
          triggers,
        },
        { ...opts, dependsOn: [mkdir] },
      ),
  );
  return new command.remote.Command(
    name,
    {
      connection: host.connection,
      create: `${scriptPrologue}\n${renderUploadedInstallScript(component, plan.binaries)}`,
      triggers,
    },
    { ...opts, dependsOn: copies },
  );
}
