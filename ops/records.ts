// Records of the end-to-end suite: every run writes one JSON file per scenario run (and
// one for the suite's own figures) into a results folder of its own,
// bench/results/runs/<run id>/ unless HAKUBE_RESULTS_DIR names another. The committed
// folders are what the docs' figures are generated from (npm run report, ops/report.ts):
// no figure is typed by hand, and each names its run.
import type { StepTime } from "./parse";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import { Availability, failuresOf, ProbedRun } from "./availability";

export const RECORD_SCHEMA = 1;
const ROOT = path.resolve(__dirname, "..", "..");
export const RUNS_DIR = path.join(ROOT, "bench", "results", "runs");

export interface RunInfo {
  /** <UTC date and time>-<commit>, e.g. 20261207T1830Z-237a291; shared by every file of one suite run. */
  readonly id: string;
  readonly commit: string;
  /** Uncommitted changes in the work tree when the run started. */
  readonly dirty: boolean;
  readonly date: string;
  readonly machine: { readonly hostname: string; readonly cpus: number; readonly cpuModel?: string; readonly memoryGiB: number; readonly kernel: string };
  /** What started it: ci, bench, or a developer's run. */
  readonly purpose: string;
}

function git(args: string[]): string {
  const r = spawnSync("git", ["-C", ROOT, ...args], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "";
}

let info: RunInfo | undefined;

/**
 * The run this process belongs to. HAKUBE_RUN_ID (set once by scripts/e2e.sh for every test
 * file of one run) names it; otherwise a new id from the time and the commit.
 */
export function runInfo(): RunInfo {
  if (info) return info;
  const commit = git(["rev-parse", "--short=7", "HEAD"]) || "unknown";
  const now = new Date();
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z").replace(/(T\d{4})\d\dZ$/, "$1Z");
  const id = process.env.HAKUBE_RUN_ID || `${stamp}-${commit}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$/.test(id)) throw new Error(`HAKUBE_RUN_ID is "${id}"; expected letters, digits, '.', '_' or '-'`);
  info = {
    id,
    commit,
    // New files count; the results folders themselves do not.
    dirty: git(["status", "--porcelain", "--", ".", ":!bench/results/runs"]) !== "",
    date: now.toISOString(),
    machine: { hostname: os.hostname(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
    purpose: process.env.HAKUBE_RUN_PURPOSE || (process.env.CI ? "ci" : "developer"),
  };
  return info;
}

export function resultsDir(): string {
  return process.env.HAKUBE_RESULTS_DIR || path.join(RUNS_DIR, runInfo().id);
}

export interface ScenarioRecord {
  readonly schema: number;
  readonly run: RunInfo;
  /** The scenario's name (ops/availability.ts EXPECTATIONS) and which repetition of it in this run. */
  readonly scenario: string;
  readonly repetition: number;
  readonly test?: string;
  readonly kind?: string;
  readonly what?: string;
  readonly boundMs: number;
  readonly visibleBudget?: number;
  readonly problems: readonly string[];
  /** Records written before every bound was asserted: over a bound then marked open (reported, not failed). */
  readonly openProblems?: readonly string[];
  readonly requests: number;
  readonly failed: number;
  readonly retryAfter: number;
  readonly clientGoResends: number;
  /** No answer within the probe's timeout (absent in records before 2026-12-07 20:00). */
  readonly stalled?: number;
  readonly visible: number;
  readonly visiblePlanned: number;
  readonly resentAfterRefusedStream: number;
  readonly longestWindowMs: number;
  readonly probes: Availability["probes"];
  /** Every failed request (the first 60), its probe, kind and error, ms from the first request. */
  readonly failures: ReturnType<typeof failuresOf>;
  readonly acknowledgedWrites: number;
  readonly acknowledgedWritesLost: number;
  readonly upSeconds?: number;
  /** The `pulumi up`'s slowest resource steps, slowest first (ops/parse.ts slowestSteps). */
  readonly slowestSteps?: readonly StepTime[];
  readonly timeUntilHealthyMs?: number;
  /** The scenario's facts that are figures or short words (no outputs, samples or evidence). */
  readonly facts: Record<string, number | string | boolean>;
}

/** Facts small enough for a record: numbers, booleans and short strings. */
function smallFacts(facts: Record<string, unknown>): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(facts)) {
    if (typeof v === "number" || typeof v === "boolean" || (typeof v === "string" && v.length <= 200)) out[k] = v;
  }
  return out;
}

const repetitions = new Map<string, number>();

/** A scenario run's record (written by writeScenarioRecord). */
export function scenarioRecord(
  r: ProbedRun & { acknowledgedWrites: number; acknowledgedWritesLost: number },
  a: Availability,
  test?: string,
): ScenarioRecord {
  const repetition = (repetitions.get(r.name) ?? 0) + 1;
  repetitions.set(r.name, repetition);
  const sum = (k: "requests" | "failed" | "retryAfter" | "clientGoResends" | "stalled" | "visible" | "visiblePlanned" | "resentAfterRefusedStream") => a.probes.reduce((s, p) => s + p[k], 0);
  const healthy = r.facts.healthyAfterMs;
  return {
    schema: RECORD_SCHEMA,
    run: runInfo(),
    scenario: r.name,
    repetition,
    test,
    kind: a.expectation?.kind,
    what: a.expectation?.what,
    boundMs: a.boundMs,
    visibleBudget: a.expectation?.visibleBudget,
    problems: a.problems,
    requests: sum("requests"),
    failed: sum("failed"),
    retryAfter: sum("retryAfter"),
    clientGoResends: sum("clientGoResends"),
    stalled: sum("stalled"),
    visible: sum("visible"),
    visiblePlanned: sum("visiblePlanned"),
    resentAfterRefusedStream: sum("resentAfterRefusedStream"),
    longestWindowMs: a.probes.reduce((m, p) => Math.max(m, p.longestWindowMs), 0),
    probes: a.probes,
    failures: failuresOf(r),
    acknowledgedWrites: r.acknowledgedWrites,
    acknowledgedWritesLost: r.acknowledgedWritesLost,
    upSeconds: typeof r.facts.upSeconds === "number" ? r.facts.upSeconds : undefined,
    slowestSteps: Array.isArray(r.facts.slowestSteps) ? (r.facts.slowestSteps as StepTime[]) : undefined,
    timeUntilHealthyMs: typeof healthy === "number" && healthy >= 0 ? healthy : undefined,
    facts: smallFacts(r.facts),
  };
}

/** Writes a record as <results dir>/<scenario>-<repetition>.json; returns the file. */
export function writeScenarioRecord(rec: ScenarioRecord): string {
  const dir = resultsDir();
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${rec.scenario}-${rec.repetition}.json`);
  fs.writeFileSync(file, JSON.stringify(rec, null, 1) + "\n");
  return file;
}

/** The suite's own figures (times of its steps, the test durations), as <results dir>/suite-<name>.json (written once, at its end). */
export function writeSuiteRecord(name: string, figures: Record<string, unknown>): string {
  const dir = resultsDir();
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `suite-${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ schema: RECORD_SCHEMA, run: runInfo(), suite: name, figures }, null, 1) + "\n");
  return file;
}
