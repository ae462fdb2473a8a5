// Prints bench/results/ha.json (written by the HA scenarios) as a table.
import * as fs from "fs";

const file = process.argv[2] ?? "bench/results/ha.json";
if (!fs.existsSync(file)) {
  console.error(`no results at ${file}: run npm run bench:ha (as root)`);
  process.exit(1);
}
const r = JSON.parse(fs.readFileSync(file, "utf8"));
const rows: string[][] = [["scenario", "requests", "failed", "longest failure (ms)", "acked writes", "lost", "pulumi up (s)", "until healthy (s)", "in-cluster failed", "in-cluster longest (ms)"]];
// The in-cluster probe's two clients, "per-request/http2".
const both = (s: any, key: string) => (s.inCluster?.length ? s.inCluster.map((x: any) => String(x[key])).join("/") : "-");
const seconds = (v: unknown, scale = 1) => (typeof v === "number" && v >= 0 ? (v / scale).toFixed(1) : "-");
for (const [name, s] of Object.entries<any>(r.scenarios)) {
  rows.push([
    ...[name, s.requests, s.failedRequests, s.longestFailureMs, s.acknowledgedWrites, s.acknowledgedWritesLost].map(String),
    // Heal, replace and resize cases: how long their pulumi up ran, and until every check was healthy.
    seconds(s.facts?.upSeconds),
    seconds(s.facts?.healthyAfterMs, 1000),
    both(s, "failedRequests"),
    both(s, "longestFailureMs"),
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
console.log(`HA benchmark (${r.machine.date}, ${r.machine.cpus} CPUs ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, kernel ${r.machine.kernel}; pods reach the API through: ${r.podApiAccess ?? "?"})`);
console.log(line(rows[0]));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
rows.slice(1).forEach((row) => console.log(line(row)));
const ms = (v: unknown) => (typeof v === "number" ? `${(v / 1000).toFixed(1)} s` : "n/a");
console.log("");
console.log(`lease takeover, default 15/10/2   controller-manager ${ms(r.leaseTakeoverMs.default)}, scheduler ${ms(r.leaseTakeoverMs.defaultScheduler)}`);
console.log(`lease takeover, tuned 8/6/1       controller-manager ${ms(r.leaseTakeoverMs.tuned)}, scheduler ${ms(r.leaseTakeoverMs.tunedScheduler)}`);
console.log(`VIP failover                      ${ms(r.vipFailoverMs)}`);
console.log(`pulumi up from nothing to ready   ${typeof r.upSeconds === "number" ? r.upSeconds.toFixed(1) : "n/a"} s`);
console.log(`no-change preview                 ${typeof r.noChangePreviewSeconds === "number" ? r.noChangePreviewSeconds.toFixed(1) : "n/a"} s`);
// The tail of the loss scenarios: every run of each, against the availability bound.
const bound: number | undefined = r.availabilityBound?.ms;
const tail: string[][] = [["scenario (runs)", "failed: median", "worst", "window: median (ms)", "worst (ms)", `over ${bound ?? "?"} ms`]];
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2] : Math.round((s[s.length / 2 - 1] + s[s.length / 2]) / 2);
};
for (const [name, s] of Object.entries<any>(r.scenarios)) {
  const runs: any[] = s.runs ?? [];
  if (!/^(lose|kill)-/.test(name) || runs.length === 0) continue;
  const failed = runs.map((x) => x.failedRequests);
  const windows = runs.map((x) => x.longestFailureMs);
  tail.push([
    `${name} (${runs.length})`,
    String(median(failed)),
    String(Math.max(...failed)),
    String(median(windows)),
    String(Math.max(...windows)),
    bound === undefined ? "?" : String(windows.filter((w) => w > bound).length),
  ]);
}
if (tail.length > 1) {
  const tw = tail[0].map((_, i) => Math.max(...tail.map((row) => row[i].length)));
  const tline = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(tw[i]) : c.padStart(tw[i]))).join("  ");
  console.log("");
  console.log(`the tail (bound ${bound ?? "?"} ms = ${r.availabilityBound ? JSON.stringify(r.availabilityBound.parts) : "?"})`);
  console.log(tline(tail[0]));
  console.log(tw.map((w) => "-".repeat(w)).join("  "));
  tail.slice(1).forEach((row) => console.log(tline(row)));
}
console.log("");
console.log(JSON.stringify({ scenarios: r.scenarios, leaseTakeoverMs: r.leaseTakeoverMs, vipFailoverMs: r.vipFailoverMs, upSeconds: r.upSeconds, noChangePreviewSeconds: r.noChangePreviewSeconds, machine: r.machine }));
