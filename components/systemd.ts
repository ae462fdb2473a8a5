// systemd unit rendering (pure).

export type Flag = readonly [name: string, value: string | number | boolean];

const FLAG_NAME = /^[a-z][a-z0-9-]*$/;

/** Renders `--name=value` arguments; values may not hold whitespace or quotes. */
export function renderFlags(flags: readonly Flag[]): string[] {
  const seen = new Set<string>();
  return flags.map(([name, value]) => {
    if (!FLAG_NAME.test(name)) {
      throw new Error(`bad flag name ${JSON.stringify(name)}`);
    }
    if (seen.has(name)) {
      throw new Error(`flag --${name} given twice`);
    }
    seen.add(name);
    const text = String(value);
    if (/[\s"'\\]/.test(text) || text.length === 0) {
      throw new Error(`flag --${name} has a value systemd cannot pass as is: ${JSON.stringify(text)}`);
    }
    // systemd expands % specifiers and $ variables in ExecStart; escape both.
    return `--${name}=${text.replace(/%/g, "%%").replace(/\$/g, "$$$$")}`;
  });
}

/** One positional word of ExecStart: no whitespace or quotes; % and $ escaped for systemd. */
function escapeWord(word: string): string {
  if (/[\s"'\\]/.test(word) || word.length === 0) {
    throw new Error(`argument ${JSON.stringify(word)} cannot be passed to systemd as is`);
  }
  return word.replace(/%/g, "%%").replace(/\$/g, "$$$$");
}

/** Applies user overrides to default flags: same name replaces, new names append. */
export function mergeFlags(defaults: readonly Flag[], overrides: Readonly<Record<string, string>> | undefined): Flag[] {
  const result: Flag[] = defaults.map((f) => [f[0], f[1]] as const);
  for (const [name, value] of Object.entries(overrides ?? {})) {
    const index = result.findIndex(([n]) => n === name);
    if (index >= 0) {
      result[index] = [name, value];
    } else {
      result.push([name, value]);
    }
  }
  return result;
}

export interface UnitSpec {
  readonly description: string;
  readonly documentation: string;
  readonly binary: string;
  readonly flags: readonly Flag[];
  /** @default "simple" */
  readonly type?: "simple" | "notify";
  readonly after?: readonly string[];
  /** @default 2 */
  readonly restartSec?: number;
  /** @default 90 */
  readonly timeoutStopSec?: number;
  /** @default 120 */
  readonly timeoutStartSec?: number;
  /** Files of environment variables the service reads (`EnvironmentFile=`). */
  readonly environmentFiles?: readonly string[];
  /** Words after the flags (a subcommand and its operands), escaped like flag values. */
  readonly args?: readonly string[];
  /** The account the service runs as (and its group). @default root */
  readonly user?: string;
  /**
   * Commands run before the service starts, with full privileges whatever `user` is
   * (systemd's `+` prefix): each an argument list, escaped like flag values.
   */
  readonly privilegedPreStart?: readonly (readonly string[])[];
}

export function renderUnit(spec: UnitSpec): string {
  const after = ["network-online.target", ...(spec.after ?? [])];
  const args = renderFlags(spec.flags);
  return [
    "# Managed by hakube; changes are overwritten by the next `pulumi up`.",
    "[Unit]",
    `Description=${spec.description}`,
    `Documentation=${spec.documentation}`,
    `After=${after.join(" ")}`,
    "Wants=network-online.target",
    "",
    "[Service]",
    `Type=${spec.type ?? "simple"}`,
    ...(spec.user !== undefined ? [`User=${escapeWord(spec.user)}`, `Group=${escapeWord(spec.user)}`] : []),
    ...(spec.environmentFiles ?? []).map((f) => `EnvironmentFile=${f}`),
    ...(spec.privilegedPreStart ?? []).map((argv) => `ExecStartPre=+${argv.map(escapeWord).join(" ")}`),
    [`ExecStart=${spec.binary}`, ...args, ...(spec.args ?? []).map(escapeWord)].join(" \\\n  "),
    "Restart=always",
    `RestartSec=${spec.restartSec ?? 2}`,
    `TimeoutStartSec=${spec.timeoutStartSec ?? 120}`,
    `TimeoutStopSec=${spec.timeoutStopSec ?? 90}`,
    "LimitNOFILE=65536",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}
