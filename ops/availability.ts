// Availability, asserted in one place: what every probed scenario of the end-to-end suite
// may cost its clients, and the check that holds each run to it.
//
// Every scenario runs probes through the VIP (a new connection per request, and one kept
// HTTP/2 connection) and, on a stack with workers, a pod's two clients through the
// `kubernetes` Service (ops/scenarios.ts `withProbes`). Each history is checked the same way:
// - the longest failure window (first failed request to the next success) of every probe
//   stays under the loss bound (ops/bounds.ts, derived from VRRP, HAProxy and etcd timings):
//   a lost machine may cost that much, planned work no more;
// - planned work (a rolling change, an upgrade, a replacement, a repair, a resize, a
//   renewal, a rotation step) is held to a budget of failures a client-go caller would see.
//   A failed request is one of three kinds:
//     * resent after a refused stream: the server refused the HTTP/2 stream unprocessed
//       (REFUSED_STREAM) and the request was sent again and answered, as Go's transport
//       does: not a failure at all (counted apart);
//     * retry-after: a 429 or 5xx carrying Retry-After, which client-go sends again on its
//       own (an apiserver in its shutdown drain window answers so): not seen by a caller;
//     * resent by client-go: a read (GET) whose connection was reset or closed under it
//       (ECONNRESET, EOF, a lost or GOAWAY'd HTTP/2 connection): client-go's request()
//       sends a GET again on exactly these (rest/request.go isErrRetryableFunc:
//       IsConnectionReset, IsProbableEOF, IsHTTP2ConnectionLost; never a write, which may
//       have been applied): not seen by a caller;
//     * stalled: no answer within the probe's own timeout (2 s, what makes the probes see a
//       failure window at all). client-go sets no timeout of its own (rest.Config.Timeout:
//       zero means none; kubectl's --request-timeout defaults to 0), so its caller is still
//       waiting, not failed: a stall costs latency, which the window bound holds (every
//       window, stalls included, under the loss bound); counted apart in the records and
//       the report, never in the budget;
//     * visible: every other failure (refused connections, a write whose connection was
//       reset, 5xx without Retry-After): what a client-go caller gets as an error.
//   The budget is 0 visible failures for every planned change: hakube restarts one host at
//   a time behind readiness gates, HAProxy takes a stopping apiserver out of the rotation
//   before it stops (NOLB for the whole shutdown delay), and the apiserver's graceful
//   shutdown answers what it can no longer serve with Retry-After; nothing in that design
//   lets a request fail where a client would see it. Where a scenario's planned part starts
//   after an unplanned fault (8: a machine lost, then the repair; 9: services stopped by
//   hand, then the repair), the budget applies from `facts.plannedFrom` on.
// - etcd's quorum lost by design (5) has no window bound: writes must fail while two of three
//   members are stopped; its test asserts that they fail, and that they all succeed again
//   after recovery.
import { availabilityBound, Bound } from "./bounds";
import { failureWindowsOf } from "./probe";

export type ScenarioKind = "loss" | "planned" | "quorum-loss";

export interface Expectation {
  readonly kind: ScenarioKind;
  /** Visible failures allowed in the planned part (planned and repaired-loss scenarios). */
  readonly visibleBudget?: number;
  /** Why the budget is above 0, where it is. */
  readonly budgetWhy?: string;
  /** What the scenario does, for the reports. */
  readonly what: string;
}

/**
 * Every probed scenario of the suite, by the name its result carries (ops/scenarios.ts).
 * A result whose name is not here fails the check: a new scenario needs its line.
 */
export const EXPECTATIONS: readonly { readonly name: RegExp; readonly expect: Expectation }[] = [
  { name: /^lose-quiet-machine$/, expect: { kind: "loss", what: "1. a machine holding neither VIP nor Lease loses its link" } },
  { name: /^lose-lease-holder-default$/, expect: { kind: "loss", what: "2. the Lease holder loses its link (default leader election)" } },
  { name: /^lose-lease-holder-tuned$/, expect: { kind: "loss", what: "2b. the Lease holder loses its link (tuned leader election 8/6/1)" } },
  { name: /^lose-vip-holder$/, expect: { kind: "loss", what: "3. the VIP holder loses its link" } },
  { name: /^kill-apiserver$/, expect: { kind: "loss", what: "4. kill -9 of one kube-apiserver" } },
  { name: /^lose-everything-holder$/, expect: { kind: "loss", what: "11. the machine holding VIP, both Leases and etcd leadership loses its link" } },
  { name: /^etcd-quorum$/, expect: { kind: "quorum-loss", what: "5. etcd members stopped one, then two (quorum lost by design), then started" } },
  { name: /^lose-machine-for-good$/, expect: { kind: "loss", visibleBudget: 0, what: "8. a machine lost for good, then pulumi up --refresh makes it anew" } },
  { name: /^repair-stopped-services$/, expect: { kind: "loss", visibleBudget: 0, what: "9. etcd and kube-scheduler stopped by hand, then pulumi up --refresh" } },
  {
    name: /^rolling-upgrade$/,
    expect: { kind: "planned", visibleBudget: 0, what: "6. the minor upgrade with an apiserver flag, an etcd setting, tuned leader election and every leaf certificate issued anew, rolled" },
  },
  { name: /^rolling-rings-(add|switch|drop)$/, expect: { kind: "planned", visibleBudget: 0, what: "13. every key ring rotated: one step, rolled" } },
  {
    name: /^replace-machine$/,
    expect: {
      kind: "planned",
      visibleBudget: 2,
      budgetWhy:
        "the machine replaced holds the VIP: its HAProxy stops with it, and a TCP balancer cannot hand a connection over, so each client connected through it " +
        "loses the request it has in flight at that instant: one for each of the two probes through the VIP (a new connection per request, and the kept HTTP/2 one); " +
        "client-go sends a GET again, not a write, and the pod's client only reads (2026-12-07: exactly one write of each probe, reset)",
      what: "7. the VIP holder's machine replaced (pulumi up --replace)",
    },
  },
  { name: /^replace-etcd-machine$/, expect: { kind: "planned", visibleBudget: 0, what: "local-external: an etcd machine replaced" } },
  { name: /^resize-3-to-5$/, expect: { kind: "planned", visibleBudget: 0, what: "10b. grow 3 -> 5" } },
  { name: /^resize-5-to-3$/, expect: { kind: "planned", visibleBudget: 0, what: "10c. shrink 5 -> 3" } },
];

export function expectationOf(name: string): Expectation | undefined {
  return EXPECTATIONS.find((e) => e.name.test(name))?.expect;
}

/** The timings the local stacks run with, from which the loss bound is derived. */
export function suiteBound(advertIntervalSeconds: number): Bound {
  return availabilityBound({
    advertIntervalSeconds,
    electionTimeoutMs: 1200, // the larger of the two etcd settings the suite runs (etcd's default 1000, the rolled 1200)
    probeTimeoutMs: 2000,
  });
}

/** One request of a probe's history, as the probes record it. */
export interface HistoryRecord {
  readonly at: number;
  /** read (GET) or write (POST); the in-cluster probe only reads. */
  readonly op?: string;
  readonly ms: number;
  readonly ok: boolean;
  readonly status?: number;
  readonly error?: string;
  readonly retryAfterSeconds?: number;
  readonly retriedUnprocessed?: number;
}

export type FailureKind = "retry-after" | "client-go-resends" | "stalled" | "visible";

/**
 * A connection reset or closed under a request, as the probes report it (Node's errors for
 * the probes through the VIP, Go's for the pod's): what client-go's IsConnectionReset,
 * IsProbableEOF and IsHTTP2ConnectionLost recognise. No answer at all (status absent).
 */
const CONNECTION_LOST =
  /ECONNRESET|connection reset by peer|socket hang up|\bEOF\b|use of closed network connection|http2: client connection lost|server sent GOAWAY and closed the connection|ERR_HTTP2_(SESSION_ERROR|STREAM_CANCEL|GOAWAY_SESSION)|broken connection|socket disconnected before secure TLS connection was established/i;

/**
 * The probe gave up waiting at its own timeout, with no answer: the VIP probes' "timeout
 * after N ms", the pod's Go client's Client.Timeout (a context deadline).
 */
const STALLED = /timeout after \d+ ms|Client\.Timeout exceeded|context deadline exceeded/;

/** How a failed request counts (see the top of this file); undefined for a success. */
export function failureKind(r: HistoryRecord): FailureKind | undefined {
  if (r.ok) return undefined;
  if (r.retryAfterSeconds !== undefined && (r.status === 429 || (r.status ?? 0) >= 500)) return "retry-after";
  if ((r.op ?? "read") === "read" && r.status === undefined && CONNECTION_LOST.test(r.error ?? "")) return "client-go-resends";
  if (r.status === undefined && STALLED.test(r.error ?? "")) return "stalled";
  return "visible";
}

export interface ProbeHistory {
  /** e.g. "vip per-request", "in-cluster http2". */
  readonly probe: string;
  readonly records: readonly HistoryRecord[];
}

export interface ProbeAvailability {
  readonly probe: string;
  readonly requests: number;
  readonly failed: number;
  readonly retryAfter: number;
  readonly clientGoResends: number;
  /** No answer within the probe's timeout: latency a client-go caller waits through, held by the window bound. */
  readonly stalled: number;
  readonly visible: number;
  /** Visible failures sent at or after the planned part's start. */
  readonly visiblePlanned: number;
  readonly resentAfterRefusedStream: number;
  readonly longestWindowMs: number;
  /** When the longest window started, ms after the first request. */
  readonly longestWindowAtMs?: number;
}

export function probeAvailability(h: ProbeHistory, plannedFrom = -Infinity): ProbeAvailability {
  const records = [...h.records].sort((a, b) => a.at - b.at);
  const longest = failureWindowsOf(records).reduce<{ start: number; end: number } | undefined>((m, w) => (!m || w.end - w.start > m.end - m.start ? w : m), undefined);
  const kinds = records.map(failureKind);
  return {
    probe: h.probe,
    requests: records.length,
    failed: records.filter((r) => !r.ok).length,
    retryAfter: kinds.filter((k) => k === "retry-after").length,
    clientGoResends: kinds.filter((k) => k === "client-go-resends").length,
    stalled: kinds.filter((k) => k === "stalled").length,
    visible: kinds.filter((k) => k === "visible").length,
    visiblePlanned: records.filter((r, i) => kinds[i] === "visible" && r.at >= plannedFrom).length,
    resentAfterRefusedStream: records.filter((r) => (r.retriedUnprocessed ?? 0) > 0).length,
    longestWindowMs: longest ? longest.end - longest.start : 0,
    longestWindowAtMs: longest ? longest.start - records[0].at : undefined,
  };
}

/** What the check needs of a scenario's result (ops/scenarios.ts ScenarioResult). */
export interface ProbedRun {
  readonly name: string;
  readonly records: readonly (HistoryRecord & { probe: string })[];
  readonly inCluster?: readonly { kind: string; records: readonly HistoryRecord[] }[];
  readonly facts: Record<string, unknown>;
}

/** Every probe's history of a run: the VIP's two probes, then the pod's two clients. */
export function histories(r: ProbedRun): ProbeHistory[] {
  const vip = [...new Set(r.records.map((x) => x.probe))].map((probe) => ({ probe: `vip ${probe}`, records: r.records.filter((x) => x.probe === probe) }));
  const pod = (r.inCluster ?? []).map((x) => ({ probe: `in-cluster ${x.kind}`, records: x.records }));
  return [...vip, ...pod];
}

export interface Availability {
  readonly expectation?: Expectation;
  readonly boundMs: number;
  readonly probes: readonly ProbeAvailability[];
  /** Bounds the run went over: the test fails on these. */
  readonly problems: readonly string[];
}

/**
 * The check: every probe's longest window under the bound (loss and planned scenarios),
 * the planned part's visible failures within the budget, and an expectation for every
 * scenario. Returns the measures and the problems (empty: the run is within its bounds).
 */
export function checkAvailability(r: ProbedRun, bound: Bound): Availability {
  const expectation = expectationOf(r.name);
  const plannedFrom = typeof r.facts.plannedFrom === "number" ? r.facts.plannedFrom : -Infinity;
  const probes = histories(r).map((h) => probeAvailability(h, plannedFrom));
  const problems: string[] = [];
  if (!expectation) {
    problems.push(`${r.name}: no availability expectation (add its line to EXPECTATIONS in ops/availability.ts)`);
  } else {
    if (probes.length === 0) problems.push(`${r.name}: no probe history to check`);
    for (const p of probes) {
      if (p.requests === 0) problems.push(`${r.name} ${p.probe}: no request recorded`);
      if (expectation.kind !== "quorum-loss" && p.longestWindowMs > bound.ms) {
        problems.push(
          `${r.name} ${p.probe}: a failure window of ${p.longestWindowMs} ms (from ${p.longestWindowAtMs} ms in) is over the bound of ${bound.ms} ms`,
        );
      }
    }
    if (expectation.visibleBudget !== undefined) {
      const visible = probes.reduce((a, p) => a + p.visiblePlanned, 0);
      if (visible > expectation.visibleBudget) {
        const where = probes.filter((p) => p.visiblePlanned > 0).map((p) => `${p.probe} ${p.visiblePlanned}`).join(", ");
        problems.push(
          `${r.name}: ${visible} failed requests a client-go caller would see (${where}) over the budget of ${expectation.visibleBudget}`,
        );
      }
    }
  }
  return { expectation, boundMs: bound.ms, probes, problems };
}

/** Every failed request of a run (the first `max`), its kind, in time order: for the records. */
export function failuresOf(
  r: ProbedRun,
  max = 60,
  which: (x: HistoryRecord) => boolean = () => true,
): { probe: string; op: string; atMs: number; ms: number; status?: number; kind: FailureKind; error?: string }[] {
  const all = histories(r).flatMap((h) => h.records.map((x) => ({ h, x })));
  const t0 = all.length ? Math.min(...all.map((a) => a.x.at)) : 0;
  return all
    .filter((a) => !a.x.ok && which(a.x))
    .sort((a, b) => a.x.at - b.x.at)
    .slice(0, max)
    .map(({ h, x }) => ({ probe: h.probe, op: x.op ?? "read", atMs: x.at - t0, ms: x.ms, status: x.status, kind: failureKind(x)!, error: x.error?.slice(0, 120) }));
}

/** The first visible failures of a run (of its planned part, where it has one), for a failed check's message. */
export function visibleFailures(r: ProbedRun, max = 12): string {
  const plannedFrom = typeof r.facts.plannedFrom === "number" ? r.facts.plannedFrom : -Infinity;
  return JSON.stringify(failuresOf(r, max, (x) => failureKind(x) === "visible" && x.at >= plannedFrom).map(({ kind: _kind, ...f }) => f));
}
