import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { Host } from "../types";
import { FileSpec, renderFileBundle, retryFunction, scriptPrologue, sha256, writeFilesFunction } from "./files";
import { command as shellCommand } from "./shell";
import { Component, recordStepFunction, repairLine } from "../observe/observe";

/** A file for a host step; contents may be outputs. */
export interface StepFile {
  readonly path: string;
  readonly mode: FileSpec["mode"];
  readonly content: pulumi.Input<string>;
  /**
   * Whether the contents are private (listed by path only in the step's header, never
   * hashed in plain state). @default true for mode 0600, false otherwise: set false for a
   * 0600 file that holds nothing private (a certificate, a unit file).
   */
  readonly secret?: boolean;
}

const isSecretFile = (f: StepFile) => f.secret ?? f.mode === "0600";

export interface HostStepArgs {
  readonly host: Host;
  /** Files written before `create`/`update` run (their contents travel on stdin). */
  readonly files?: readonly StepFile[];
  /** Shell run after the files are written, on creation. */
  readonly create: pulumi.Input<string>;
  /** Shell run after the files are written, when an input changed. @default create */
  readonly update?: pulumi.Input<string>;
  /** Shell run on deletion (failures are tolerated). */
  readonly delete?: string;
  /**
   * Shell run on deletion before `delete`, whose failure fails the delete (the resource and
   * its service stay): e.g. an etcd member removing itself from the cluster.
   */
  readonly strictDelete?: string;
  /**
   * Other values whose change re-runs the step's `update` (e.g. the binaries' identity).
   * They are written into the script's header, not into `triggers`: the command SDK
   * replaces a command whose triggers change, and replacing a step would run its
   * delete script (stopping the service) instead of a rolling update.
   */
  readonly identity?: readonly pulumi.Input<string>[];
  /**
   * What the step sets up, for drift checks: once the step succeeds, its files' hashes and
   * its units are recorded on the host, and the host's observation reports a changed file
   * or a unit not running; a repair of this component runs the step's `update` again.
   */
  readonly component?: { readonly name: Component; readonly units: readonly string[] };
}

function script(header: string, body: string, withFiles: boolean, record: string): string {
  return [header, scriptPrologue, writeFilesFunction, retryFunction, withFiles ? "hakube_write_files" : "", body, record]
    .filter(Boolean)
    .join("\n");
}

/** The end of a step's script: what it set up, recorded for the observation. */
function recordScript(component: HostStepArgs["component"], files: readonly StepFile[]): string {
  if (!component) return "";
  return `(\n${recordStepFunction}\n${shellCommand(["hakube_record_step", component.name, ...component.units, "--", ...files.map((f) => f.path)])}\n)`;
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
  const publicFiles = files.filter((f) => !isSecretFile(f));
  const secretFiles = files.filter(isSecretFile);
  // The header names every input with a short hash, so `pulumi preview --diff` shows
  // which file changed; private files are listed by path only (their contents travel
  // in the secret stdin, whose change re-runs the step as well).
  const record = recordScript(args.component, files);
  const header = pulumi
    .all([
      pulumi.all(publicFiles.map((f) => pulumi.output(f.content).apply((c) => `#   ${f.path} sha256:${sha256(c).slice(0, 16)}`))),
      pulumi.all([...(args.identity ?? []), ...(args.host.instance === undefined ? [] : [pulumi.output(args.host.instance).apply((i) => `machine ${i}`)])]),
      args.component && args.host.repairs !== undefined
        ? pulumi.output(args.host.repairs).apply((r) => repairLine(r as Record<string, string>, args.component!.name))
        : "",
    ])
    .apply(([fileLines, identity, repair]) =>
      [
        "# hakube step inputs (a change re-runs this step):",
        ...fileLines,
        ...secretFiles.map((f) => `#   ${f.path} (secret)`),
        ...identity.map((i) => `#   ${i}`),
        ...(repair ? [`#   ${repair}`] : []),
      ].join("\n"),
    );
  return new command.remote.Command(
    name,
    {
      connection: args.host.connection,
      create: pulumi.all([header, args.create]).apply(([h, body]) => script(h, body, withFiles, record)),
      update: pulumi.all([header, args.update ?? args.create]).apply(([h, body]) => script(h, body, withFiles, record)),
      delete:
        args.delete || args.strictDelete
          ? [scriptPrologue, args.strictDelete ? retryFunction : "", args.strictDelete ?? "", args.delete ? `{\n${args.delete}\n} || true` : ""].filter(Boolean).join("\n")
          : undefined,
      stdin: withFiles ? pulumi.secret(resolve(files).apply(renderFileBundle)) : undefined,
      addPreviousOutputInEnv: false,
    },
    args.host.after ? { ...opts, dependsOn: [...dependsOnList(opts.dependsOn), args.host.after] } : opts,
  );
}

/** A step's `dependsOn` as a list (hakube passes lists or single resources, never outputs of lists). */
function dependsOnList(d: pulumi.CustomResourceOptions["dependsOn"]): pulumi.Input<pulumi.Resource>[] {
  if (d === undefined) return [];
  if (Array.isArray(d)) return [...d];
  if (pulumi.Output.isInstance(d)) throw new Error("hostStep: dependsOn must be a list of resources, not an output");
  return [d as pulumi.Input<pulumi.Resource>];
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
      // Replaced (so run again) whenever a guarded step's script or files change.
      triggers: args.guards.map((g) =>
        pulumi.secret(pulumi.all([g.update, g.stdin]).apply(([u, i]) => sha256(`${u ?? ""}\n${i ?? ""}`))),
      ),
    },
    { ...opts, dependsOn: [...args.guards, ...(args.after ?? [])] },
  );
}

/**
 * A step that runs once per request: `create` runs when the step is made and whenever
 * `triggers` change (the command SDK replaces it); any other change (a file's content, the
 * script) is recorded without running anything. For one-off actions such as a restore,
 * which must not run again because an unrelated setting changed.
 */
export function onceStep(
  name: string,
  args: { readonly host: Host; readonly files?: readonly StepFile[]; readonly create: pulumi.Input<string>; readonly triggers: pulumi.Input<string>[] },
  opts: pulumi.CustomResourceOptions,
): command.remote.Command {
  const files = args.files ?? [];
  return new command.remote.Command(
    name,
    {
      connection: args.host.connection,
      create: pulumi.output(args.create).apply((body) => script("# hakube: runs once per request", body, files.length > 0, "")),
      update: "true",
      stdin: files.length > 0 ? pulumi.secret(resolve(files).apply(renderFileBundle)) : undefined,
      triggers: args.triggers,
      addPreviousOutputInEnv: false,
    },
    args.host.after ? { ...opts, dependsOn: [...dependsOnList(opts.dependsOn), args.host.after] } : opts,
  );
}
