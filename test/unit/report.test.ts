// docs/reliability.md is generated from the committed run records: made-up runs give a
// page naming each, newest first, with the verdict of a record over its bound, the
// summary's counts and the `.ci/run` times (toolchain cached or built); the README's block
// of CI times is rewritten from them; `--check` passes on what the script wrote and fails
// once either is edited, and a README without the block is refused.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { RECORD_SCHEMA, RunInfo, ScenarioRecord } from "../../ops/records";
import { loadRuns, README_END, README_START, renderCiTimes, renderReliability, RunRecords, withCiTimes } from "../../ops/report";

const ROOT = path.resolve(__dirname, "..", "..", "..");
const SCRIPT = path.join(ROOT, "build", "ops", "report.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-report-"));
after(() => fs.rmSync(work, { recursive: true, force: true }));

const machine = { hostname: "bench", cpus: 8, cpuModel: "Test CPU", memoryGiB: 31, kernel: "6.8.0" };
const older: RunInfo = { id: "20261201T0900Z-aaaaaaa", commit: "aaaaaaa", dirty: false, date: "2026-12-01T09:00:12.000Z", machine, purpose: "ci" };
const newer: RunInfo = { id: "20261207T1830Z-bbbbbbb", commit: "bbbbbbb", dirty: true, date: "2026-12-07T18:30:05.000Z", machine, purpose: "developer" };

function record(run: RunInfo, scenario: string, repetition: number, over: Partial<ScenarioRecord> = {}): ScenarioRecord {
  return {
    schema: RECORD_SCHEMA,
    run,
    scenario,
    repetition,
    kind: "loss",
    what: `${scenario} happens`,
    boundMs: 6000,
    problems: [],
    openProblems: [],
    requests: 400,
    failed: 0,
    retryAfter: 0,
    clientGoResends: 0,
    stalled: 0,
    visible: 0,
    visiblePlanned: 0,
    resentAfterRefusedStream: 0,
    longestWindowMs: 0,
    probes: [],
    failures: [],
    acknowledgedWrites: 50,
    acknowledgedWritesLost: 0,
    facts: {},
    ...over,
  };
}

const overBound = `lose-vip-holder vip per-request: a failure window of 7100 ms (from 1200 ms in) is over the bound of 6000 ms ${"and then some ".repeat(10)}`;
const runs = {
  [older.id]: [
    record(older, "lose-vip-holder", 1, { failed: 12, visible: 12, longestWindowMs: 2000, facts: { vipFailoverMs: 2150 } }),
    record(older, "rolling-upgrade", 1, { kind: "planned", visibleBudget: 0, upSeconds: 95.44, timeUntilHealthyMs: 3210 }),
  ],
  [newer.id]: [
    record(newer, "lose-vip-holder", 1, { failed: 20, visible: 18, retryAfter: 2, longestWindowMs: 7100, problems: [overBound] }),
    record(newer, "lose-lease-holder-tuned", 1, { facts: { "kube-controller-managerTakeoverMs": 9400, "kube-schedulerTakeoverMs": 8800 } }),
  ],
};
for (const [id, recs] of Object.entries(runs)) {
  fs.mkdirSync(path.join(work, "runs", id), { recursive: true });
  for (const r of recs) fs.writeFileSync(path.join(work, "runs", id, `${r.scenario}-${r.repetition}.json`), JSON.stringify(r));
}
const tests = { "ha: scenario 6 rolls the upgrade": 412.37, "ha: scenario 1": 61.2, "ha: stack up": 250 };
fs.writeFileSync(path.join(work, "runs", newer.id, "suite-ha.json"), JSON.stringify({ schema: RECORD_SCHEMA, run: newer, suite: "ha", figures: { upSeconds: 250.46, tests } }));
// `.ci/run`'s records, written at its end: the newer run's with the toolchain cached, the older's
// with every family built, and a newest run's that failed in `npm test`.
function ci(run: RunInfo, started: string, passed: boolean, phases: Record<string, number>, familySeconds: Record<string, number | "cached">) {
  const totalSeconds = Object.values(phases).reduce((a, b) => a + b, 0);
  const date = new Date(Date.parse(started) + totalSeconds * 1000).toISOString();
  const figures = { passed, exitCode: passed ? 0 : 1, totalSeconds, phases, toolchain: { cold: Object.values(familySeconds).some((v) => v !== "cached"), familySeconds } };
  return { schema: RECORD_SCHEMA, run: { ...run, dirty: false, date }, suite: "ci", figures };
}
const cached = { go: "cached", "kubernetes-1.36.5": "cached", "kubernetes-1.37.2": "cached", pulumi: "cached" } as const;
const failing: RunInfo = { id: "20261208T0700Z-ccccccc", commit: "ccccccc", dirty: false, date: "2026-12-08T07:00:00.000Z", machine, purpose: "ci" };
const ciRecords = [
  ci(newer, "2026-12-07T18:29:00.000Z", true, { setup: 11, lint: 2, toolchainTest: 6, unit: 66, package: 42, e2e: 2531 }, cached),
  ci(older, "2026-12-01T08:40:00.000Z", true, { setup: 2300, lint: 3, toolchainTest: 6, unit: 66, package: 42, e2e: 2029 }, { go: 95, "kubernetes-1.36.5": 900, "kubernetes-1.37.2": 850, pulumi: 400 }),
  ci(failing, "2026-12-08T07:00:00.000Z", false, { setup: 10, lint: 2, toolchainTest: 5, unit: 71 }, cached),
];
for (const r of ciRecords) {
  fs.mkdirSync(path.join(work, "runs", r.run.id), { recursive: true });
  fs.writeFileSync(path.join(work, "runs", r.run.id, "suite-ci.json"), JSON.stringify(r));
}
// A file that does not parse, and one of another schema: warned about, not rendered.
fs.writeFileSync(path.join(work, "runs", newer.id, "broken-1.json"), "{ not json");
fs.writeFileSync(path.join(work, "runs", older.id, "future-1.json"), JSON.stringify({ ...record(older, "future", 1), schema: RECORD_SCHEMA + 1 }));

const warnings: string[] = [];
const loaded = loadRuns(path.join(work, "runs"), (m) => warnings.push(m));
const page = renderReliability(loaded);

test("the page names both runs and their commits, newest first", () => {
  assert.ok(page.startsWith("<!-- generated by npm run report (ops/report.ts) from bench/results/runs: do not edit -->\n# Reliability: measured on local machines\n"));
  const at = (s: string) => page.indexOf(s);
  assert.ok(at(`## Run ${newer.id}`) > 0 && at(`## Run ${older.id}`) > at(`## Run ${newer.id}`), "newest first");
  assert.match(page, /Commit bbbbbbb \(uncommitted changes\), 2026-12-07 18:30 UTC, purpose: developer; machine: 8 CPUs \(Test CPU\), 31 GiB, kernel 6\.8\.0\./);
  assert.match(page, /Commit aaaaaaa, 2026-12-01 09:00 UTC, purpose: ci;/);
  assert.ok(!page.includes("future"), "a record of another schema is not rendered");
});

test("a record over its bound shows its first problem, shortened; the others are ok", () => {
  assert.ok(page.includes(`| over: ${overBound.slice(0, 119)}… |`));
  assert.match(page, /\| rolling-upgrade \| rolling-upgrade happens \| planned \| 400 \| 0 \| 0 \| 0 \| 0 \| 0 \| 0 \| 0 \| 6000 \| 0 \| 95\.4 \| 3\.2 \| 50 \| 0 \| ok \|/);
});

test("the summary counts runs, medians, worst and the runs over their bounds", () => {
  const summary = page.slice(page.indexOf("## Summary across runs"), page.indexOf("## Run "));
  assert.match(summary, /Covers 3 runs: 20261208T0700Z-ccccccc, 20261207T1830Z-bbbbbbb, 20261201T0900Z-aaaaaaa\./);
  assert.match(summary, /\| lose-vip-holder \| 2 \| 2 \| 15 \| 18 \| 4550 \| 7100 \| 1 \(20261207T1830Z-bbbbbbb\) \|/);
  assert.match(summary, /\| rolling-upgrade \| 1 \| 1 \| 0 \| 0 \| 0 \| 0 \| 0 \|/);
});

test("failover and takeover times, and the suite's figures with its tests longest first", () => {
  assert.match(page, /\| lose-vip-holder \| 1 \| 2\.1 \| - \| - \|/);
  assert.match(page, /\| lose-lease-holder-tuned \| 1 \| - \| 9\.4 \| 8\.8 \|/);
  assert.match(page, /\| ha \| upSeconds \| 250\.5 \|\n\| ha \| test: ha: scenario 6 rolls the upgrade \(s\) \| 412\.4 \|\n\| ha \| test: ha: stack up \(s\) \| 250 \|\n\| ha \| test: ha: scenario 1 \(s\) \| 61\.2 \|/);
});

test("the CI table: one row per `.ci/run`, newest first, after the summary, its toolchain cached or built", () => {
  const at = (s: string) => page.indexOf(s);
  assert.ok(at("## Summary across runs") < at("## CI runs") && at("## CI runs") < at("## Run "), "after the summary, before the runs");
  const section = page.slice(at("## CI runs"), at("## Run "));
  const rows = section.split("\n").filter((l) => l.startsWith("| 2026"));
  assert.deepEqual(rows, [
    "| 20261208T0700Z-ccccccc | 2026-12-08 07:00 UTC | ccccccc | failed (exit 1) | cached | 0.2 min | 1.2 min | - | - | 1.5 min |",
    "| 20261207T1830Z-bbbbbbb | 2026-12-07 18:29 UTC | bbbbbbb | passed | cached | 0.2 min | 1.1 min | 0.7 min | 42.2 min | 44.3 min |",
    "| 20261201T0900Z-aaaaaaa | 2026-12-01 08:40 UTC | aaaaaaa | passed | cold: 4 families built, 37 min 25 s | 38.3 min | 1.1 min | 0.7 min | 33.8 min | 74.1 min |",
  ]);
  assert.match(section, /\| run \| started \| commit \| result \| toolchain \| setup \| unit \| package \| e2e \| total \|/);
});

test("a run's own section gives its `.ci/run` phases and toolchain families, not nested objects", () => {
  const oldRun = page.slice(page.indexOf(`## Run ${older.id}`));
  assert.ok(
    oldRun.includes(
      [
        "| ci | result | passed |",
        "| ci | total | 74 min 6 s (74.1 min) |",
        "| ci | phase: setup | 38 min 20 s |",
        "| ci | phase: lint | 0 min 3 s |",
        "| ci | phase: toolchainTest | 0 min 6 s |",
        "| ci | phase: unit | 1 min 6 s |",
        "| ci | phase: package | 0 min 42 s |",
        "| ci | phase: e2e | 33 min 49 s |",
        "| ci | toolchain | cold: 4 families built, 37 min 25 s |",
        "| ci | toolchain: go | 1 min 35 s |",
        "| ci | toolchain: kubernetes-1.36.5 | 15 min 0 s |",
        "| ci | toolchain: kubernetes-1.37.2 | 14 min 10 s |",
        "| ci | toolchain: pulumi | 6 min 40 s |",
      ].join("\n"),
    ),
  );
  assert.match(page, /\| ci \| result \| failed \(exit 1\) \|/);
  assert.match(page, /\| ci \| toolchain: go \| cached \|/);
  assert.ok(!page.includes("familySeconds") && !page.includes("phases."), "no dotted names of nested objects");
});

const ciTimes = [
  "- toolchain cached: **44.3 min** (`time bash .ci/run` on a clean clone, run 20261207T1830Z-bbbbbbb, 2026-12-07 18:29 UTC, commit bbbbbbb)",
  "- nothing cached (a fresh machine, every toolchain family built): **74.1 min** (run 20261201T0900Z-aaaaaaa, 2026-12-01 08:40 UTC, commit aaaaaaa; \"ci\"; its toolchain families took 37.4 min to build)",
];

test("the README's CI times: the newest passed run with the toolchain cached, and the newest with all of it built", () => {
  assert.deepEqual(renderCiTimes(loaded), ciTimes);
  // A run that built some families and found others cached is neither.
  const partly: RunRecords = { dir: "partly", records: [], suites: [ci(failing, "2026-12-09T07:00:00.000Z", true, { setup: 600 }, { ...cached, go: 95 })] };
  assert.deepEqual(renderCiTimes([...loaded, partly]), ciTimes);
  assert.match(renderReliability([partly]), /\| cold: 1 family built, 1 min 35 s \(3 cached\) \|/);
  // One that rebuilt a minute or less of it (a changed plugin) counts as cached, the rebuilt part named.
  const newest: RunInfo = { ...failing, id: "20261209T0800Z-ddddddd", commit: "ddddddd", date: "2026-12-09T08:00:00.000Z" };
  const plugin: RunRecords = { dir: "plugin", records: [], suites: [ci(newest, "2026-12-09T08:00:00.000Z", true, { setup: 30 }, { ...cached, plugins: 4 })] };
  const lines = renderCiTimes([...loaded, plugin]);
  assert.match(lines[0], /^- toolchain cached: \*\*.*\*\* \(`time bash \.ci\/run` on a clean clone, run .*; rebuilt: plugins 4 s\)$/);
  assert.equal(lines[1], ciTimes[1]);
});

test("the README's cold time without a passed cold run: the newest run that built the toolchain and went through the whole suite, its failure and what its record marks cached said", () => {
  const only = loaded.filter((r) => !r.suites.some((x) => x.run.id === older.id));
  assert.match(renderCiTimes(only)[1], /not measured yet/);
  const coldInfo: RunInfo = { ...failing, id: "20261209T0900Z-eeeeeee", commit: "eeeeeee", date: "2026-12-09T09:00:00.000Z" };
  const through: RunRecords = {
    dir: "through",
    records: [],
    suites: [ci(coldInfo, "2026-12-09T09:00:00.000Z", false, { setup: 270, unit: 150, toolchain: 1900, e2e: 2800 }, { go: "cached", "kubernetes-1.36.5": 900, "kubernetes-1.37.2": 850, pulumi: 400 })],
  };
  assert.equal(
    renderCiTimes([...only, through])[1],
    "- nothing cached (a fresh machine, every toolchain family built): **85.3 min**, a run that failed (exit 1) but went through the whole suite " +
      "(run 20261209T0900Z-eeeeeee, 2026-12-09 09:00 UTC, commit eeeeeee; \"ci\"; its toolchain families took 35.8 min to build; its record marks cached: go (its setup phase 4.5 min))",
  );
  // One that stopped before the end-to-end tests measures nothing of the kind.
  const early: RunRecords = { dir: "early", records: [], suites: [ci(coldInfo, "2026-12-09T09:00:00.000Z", false, { setup: 270, unit: 150 }, { go: 95, pulumi: 400 })] };
  assert.match(renderCiTimes([...only, early])[1], /not measured yet/);
});

test("files that do not parse or carry another schema are named in warnings", () => {
  assert.equal(warnings.length, 2);
  assert.match(warnings.join("\n"), /skipping .*broken-1\.json/);
  assert.match(warnings.join("\n"), /ignoring .*future-1\.json: schema 2/);
});

test("with no run committed the page says so", () => {
  const empty = renderReliability(loadRuns(path.join(work, "nowhere")));
  assert.match(empty, /No run is committed yet/);
  assert.ok(!empty.includes("## Run ") && !empty.includes("## CI runs"));
  assert.deepEqual(renderCiTimes([]), [
    "- toolchain cached: not measured yet by a recorded run",
    "- nothing cached (a fresh machine, every toolchain family built): not measured yet by a recorded run",
  ]);
});

// The script on the made-up runs, writing into the temp folder (a copy of the real README).
const out = path.join(work, "reliability.md");
const readme = path.join(work, "README.md");
const original = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
fs.writeFileSync(readme, original);
const run = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, "--runs", path.join(work, "runs"), "--out", out, "--readme", readme, ...args], { encoding: "utf8", cwd: work });

test("--check passes on the page the script wrote and fails once it is edited", () => {
  assert.equal(run().status, 0);
  assert.equal(fs.readFileSync(out, "utf8"), page);
  assert.equal(run("--check").status, 0);
  fs.appendFileSync(out, "a figure typed by hand\n");
  const edited = run("--check");
  assert.equal(edited.status, 1);
  assert.match(edited.stderr, /reliability\.md is not what the run records give: run `npm run report`/);
  const bare = spawnSync(process.execPath, [SCRIPT, "--runs"], { encoding: "utf8", cwd: work });
  assert.equal(bare.status, 2);
  assert.match(bare.stderr, /--runs needs a value: --runs DIR/);
});

test("the README's block is rewritten, checked, and its markers required", () => {
  assert.equal(run().status, 0);
  const written = fs.readFileSync(readme, "utf8");
  assert.equal(written, withCiTimes(original, ciTimes));
  assert.ok(written.includes(`${README_START}\n${ciTimes.join("\n")}\n${README_END}\n`));
  assert.equal(written.split(README_START).length, 2, "exactly one block");
  const ok = run("--check");
  assert.equal(ok.status, 0);
  assert.match(ok.stdout, /README\.md is up to date/);

  fs.writeFileSync(readme, written.replace("**44.3 min**", "**40.0 min**"));
  const edited = run("--check");
  assert.equal(edited.status, 1);
  assert.match(edited.stderr, /README\.md is not what the run records give: run `npm run report`/);
  assert.match(edited.stdout, /reliability\.md is up to date/);
  assert.equal(run().status, 0);
  assert.equal(fs.readFileSync(readme, "utf8"), written, "written again");

  const bare = written.split("\n").filter((l) => l !== README_START && l !== README_END).join("\n");
  fs.writeFileSync(readme, bare);
  for (const args of [[], ["--check"]]) {
    const refused = run(...args);
    assert.equal(refused.status, 2, `exit 2 with ${JSON.stringify(args)}`);
    assert.match(refused.stderr, /README\.md needs exactly one block for the CI times, .*a line `<!-- generated:ci-times \(npm run report\) -->` and below it a line `<!-- \/generated:ci-times -->` \(it has neither\)/);
  }
  assert.equal(fs.readFileSync(readme, "utf8"), bare, "left as it was");
  fs.writeFileSync(readme, `${bare}\n${README_START}\n${README_END}\n${README_START}\n${README_END}\n`);
  assert.match(run("--check").stderr, /it has 2 opening and 2 closing lines/);
});
