import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { Host } from "../types";
import { FileSpec, renderFileBundle, retryFunction, scriptPrologue, sha256, writeFilesFunction } from "./files";

/** A file for a host step; contents may be outputs. Mode 0600 marks a secret file. */
export interface StepFile {
  readonly path: string;
  readonly mode: FileSpec["mode"];
  readonly content: pulumi.Input<string>;
}

export interface HostStepArgs {
  readonly host: Host;
  /** Files written before `create`/`update` run (their contents travel on stdin). */
  readonly files?: readonly StepFile[];
  /** Shell run after the files are written, on creation. */
  readonly create: string;
  /** Shell run after the files are written, when an input changed. @default create */
  readonly update?: string;
  /** Shell run on deletion (failures are tolerated). */
  readonly delete?: string;
  /** Values whose change re-runs the step (e.g. the binaries' identity). */
  readonly triggers?: pulumi.Input<unknown>[];
}

function script(body: string, withFiles: boolean): string {
  return [scriptPrologue, writeFilesFunction, retryFunction, withFiles ? "hakube_write_files" : "", body].filter(Boolean).join("\n");
}

function resolve(files: readonly StepFile[]): pulumi.Output<FileSpec[]> {
  return pulumi.all(files.map((f) => pulumi.output(f.content).apply((content) => ({ path: f.path, mode: f.mode, content }))));
}

/**
 * One idempotent step on one host: writes rendered files (on stdin, as a secret), then
 * runs a script. Triggers hold a hash per public file (so a preview names the file that
 * changed) and one secret hash of the private files, so a changed file re-runs exactly
 * this step.
 */
export function hostStep(name: string, args: HostStepArgs, opts: pulumi.CustomResourceOptions): command.remote.Command {
  const files = args.files ?? [];
  const withFiles = files.length > 0;
  const publicFiles = files.filter((f) => f.mode !== "0600");
  const secretFiles = files.filter((f) => f.mode === "0600");
  const publicHashes = pulumi
    .all(publicFiles.map((f) => pulumi.output(f.content).apply((c) => [f.path, sha256(c).slice(0, 16)] as const)))
    .apply((pairs) => Object.fromEntries(pairs));
  const secretHash = pulumi.secret(resolve(secretFiles).apply((f) => sha256(renderFileBundle(f))));
  return new command.remote.Command(
    name,
    {
      connection: args.host.connection,
      create: script(args.create, withFiles),
      update: script(args.update ?? args.create, withFiles),
      delete: args.delete ? [scriptPrologue, `{\n${args.delete}\n} || true`].join("\n") : undefined,
      stdin: withFiles ? pulumi.secret(resolve(files).apply(renderFileBundle)) : undefined,
      triggers: withFiles ? [publicHashes, secretHash, ...(args.triggers ?? [])] : [...(args.triggers ?? [])],
      addPreviousOutputInEnv: false,
    },
    opts,
  );
}

/**
 * A readiness gate: a bounded check run on one host that fails the deployment if the
 * condition is not met in time. It re-runs whenever any of the steps it guards changed.
 */
export function gateStep(
  name: string,
  args: {
    readonly host: Host;
    readonly script: pulumi.Input<string>;
    readonly guards: readonly command.remote.Command[];
    /** Other resources the check must wait for. */
    readonly after?: readonly pulumi.Resource[];
  },
  opts: pulumi.CustomResourceOptions,
): command.remote.Command {
  return new command.remote.Command(
    name,
    {
      connection: args.host.connection,
      create: pulumi.output(args.script).apply((body) => [scriptPrologue, retryFunction, body].join("\n")),
      triggers: args.guards.map((g) => g.triggers),
    },
    { ...opts, dependsOn: [...args.guards, ...(args.after ?? [])] },
  );
}
