// The availability check of the end-to-end suite (ops/availability.ts) fed made-up
// histories: a 10 s outage fails it, a clean run passes, and the failures a client-go
// caller would not see (answers with Retry-After, streams refused unprocessed and sent
// again) do not count against a planned change's budget.
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkAvailability, EXPECTATIONS, failureKind, failuresOf, HistoryRecord, ProbedRun, suiteBound } from "../../ops/availability";

const BOUND = suiteBound(0.3);
const T0 = 1_800_000_000_000;

/** 100 ms apart for `seconds`, each answered in 20 ms; `fail(t)` (ms from the start) says which fail and how. */
function history(seconds: number, fail: (t: number) => Partial<HistoryRecord> | undefined = () => undefined): HistoryRecord[] {
  return Array.from({ length: seconds * 10 }, (_, i) => {
    const f = fail(i * 100);
    return { at: T0 + i * 100, ms: f?.ms ?? 20, ok: f === undefined, ...f };
  });
}

function run(name: string, vip: HistoryRecord[], pod: HistoryRecord[] = history(60), facts: Record<string, unknown> = {}): ProbedRun {
  return {
    name,
    records: [...vip.map((r) => ({ ...r, probe: "per-request" })), ...history(60).map((r) => ({ ...r, probe: "http2" }))],
    inCluster: [
      { kind: "per-request", records: pod },
      { kind: "http2", records: history(60) },
    ],
    facts,
  };
}

const outage = (from: number, to: number) => (t: number) => (t >= from && t < to ? { ms: 5, error: "connect ECONNREFUSED 10.213.7.100:8443" } : undefined);

test("the loss bound is derived from the stack's timings and is a few seconds", () => {
  assert.ok(BOUND.ms >= 4000 && BOUND.ms <= 7000, JSON.stringify(BOUND));
});

test("a 10 s outage through the VIP fails a loss scenario's check, naming the probe and the window", () => {
  const a = checkAvailability(run("lose-vip-holder", history(60, outage(20_000, 30_000))), BOUND);
  assert.equal(a.problems.length, 1, JSON.stringify(a.problems));
  assert.match(a.problems[0], /lose-vip-holder vip per-request: a failure window of \d+ ms \(from 20000 ms in\) is over the bound of \d+ ms/);
  assert.ok(a.probes[0].longestWindowMs >= 10_000);
});

test("a 10 s outage seen only by the pod fails the check too", () => {
  const a = checkAvailability(run("lose-quiet-machine", history(60), history(60, outage(5_000, 15_000))), BOUND);
  assert.match(a.problems.join("\n"), /in-cluster per-request: a failure window of \d+ ms/);
});

test("a 10 s outage during planned work fails both the window and the budget", () => {
  const a = checkAvailability(run("rolling-rings-switch", history(60, outage(10_000, 20_000))), BOUND);
  assert.equal(a.problems.length, 2, JSON.stringify(a.problems));
  assert.match(a.problems[1], /rolling-rings-switch: 100 failed requests a client-go caller would see \(vip per-request 100\) over the budget of 0/);
});

test("a loss within its bound passes; its failures are not held to a budget", () => {
  const a = checkAvailability(run("lose-everything-holder", history(60, outage(20_000, 22_000))), BOUND);
  assert.deepEqual(a.problems, []);
  assert.equal(a.probes[0].visible, 20);
});

test("planned work: a 429 with Retry-After and a stream refused then answered cost nothing; a refused connection costs the budget", () => {
  const gentle = history(60, (t) => (t === 30_000 ? { status: 429, retryAfterSeconds: 5, error: "HTTP 429" } : undefined)).map((r, i) => (i === 400 ? { ...r, retriedUnprocessed: 1 } : r));
  const ok = checkAvailability(run("rolling-upgrade", gentle), BOUND);
  assert.deepEqual(ok.problems, []);
  assert.equal(ok.probes[0].retryAfter, 1);
  assert.equal(ok.probes[0].resentAfterRefusedStream, 1);
  const refused = history(60, (t) => (t === 30_000 ? { error: "connect ECONNREFUSED 10.213.7.100:8443" } : undefined));
  const bad = checkAvailability(run("rolling-upgrade", refused), BOUND);
  assert.match(bad.problems.join("\n"), /1 failed requests a client-go caller would see/);
});

test("planned work: a request the probe stopped waiting for is a stall (client-go has no timeout of its own): not in the budget, but held to the window bound", () => {
  const short = history(60, (t) => (t >= 30_000 && t < 32_000 ? { ms: 2000, error: "timeout after 2000 ms" } : undefined));
  const ok = checkAvailability(run("rolling-upgrade", short), BOUND);
  assert.deepEqual(ok.problems, []);
  assert.equal(ok.probes[0].stalled, 20);
  assert.equal(ok.probes[0].visible, 0);
  const long = history(60, (t) => (t >= 30_000 && t < 40_000 ? { ms: 2000, error: "timeout after 2000 ms" } : undefined));
  const bad = checkAvailability(run("rolling-upgrade", long), BOUND);
  assert.equal(bad.problems.length, 1, JSON.stringify(bad.problems));
  assert.match(bad.problems[0], /rolling-upgrade vip per-request: a failure window of \d+ ms \(from 30000 ms in\) is over the bound/);
  const goClient = 'Get "https://kubernetes.default.svc/api/v1/namespaces/hakube-probe": context deadline exceeded (Client.Timeout exceeded while awaiting headers)';
  assert.equal(failureKind({ at: 0, ms: 2001, ok: false, op: "read", error: goClient }), "stalled");
  assert.equal(failureKind({ at: 0, ms: 2001, ok: false, op: "write", error: "timeout after 2000 ms" }), "stalled", "a write the caller still waits for");
  assert.equal(failureKind({ at: 0, ms: 2001, ok: false, status: 504, error: "timeout after 2000 ms" }), "visible", "an answer is not a stall");
});

test("a read whose connection was reset or closed under it is sent again by client-go; a write is not, nor a refused connection", () => {
  const lost = (op: string, error: string) => failureKind({ at: 0, ms: 1, ok: false, op, error });
  for (const error of ["read ECONNRESET", "Get \"https://kubernetes.default.svc/api\": read tcp 10.244.1.12:33812->10.96.0.1:443: read: connection reset by peer", "socket hang up", "unexpected EOF", "http2: client connection lost"]) {
    assert.equal(lost("read", error), "client-go-resends", error);
    assert.equal(lost("write", error), "visible", `a write: ${error}`);
  }
  assert.equal(lost("read", "Client network socket disconnected before secure TLS connection was established"), "client-go-resends", "closed in the TLS handshake: Go sees EOF");
  assert.equal(lost("read", "connect ECONNREFUSED 10.213.7.100:8443"), "visible");
  assert.equal(failureKind({ at: 0, ms: 1, ok: false, op: "read", status: 500, error: "EOF in body" }), "visible", "an answer is not a lost connection");
});

test("a 503 without Retry-After and a 429 without it are visible; a 404 with Retry-After is too", () => {
  assert.equal(failureKind({ at: 0, ms: 1, ok: false, status: 503 }), "visible");
  assert.equal(failureKind({ at: 0, ms: 1, ok: false, status: 429 }), "visible");
  assert.equal(failureKind({ at: 0, ms: 1, ok: false, status: 404, retryAfterSeconds: 1 }), "visible");
  assert.equal(failureKind({ at: 0, ms: 1, ok: false, status: 503, retryAfterSeconds: 1 }), "retry-after");
  assert.equal(failureKind({ at: 0, ms: 1, ok: true, status: 200 }), undefined);
});

test("a repair after a loss: failures of the loss are free, those after plannedFrom count", () => {
  const early = history(60, (t) => (t >= 5_000 && t < 6_000 ? { error: "connect ECONNREFUSED" } : undefined));
  assert.deepEqual(checkAvailability(run("lose-machine-for-good", early, history(60), { plannedFrom: T0 + 10_000 }), BOUND).problems, []);
  const late = history(60, (t) => (t === 40_000 ? { error: "connect ECONNREFUSED" } : undefined));
  assert.equal(checkAvailability(run("lose-machine-for-good", late, history(60), { plannedFrom: T0 + 10_000 }), BOUND).problems.length, 1);
});

test("etcd's quorum lost by design has no window bound", () => {
  assert.deepEqual(checkAvailability(run("etcd-quorum", history(60, outage(10_000, 30_000))), BOUND).problems, []);
});

test("planned work: a reset read costs nothing, a reset write costs the budget; the records list every failure with its kind", () => {
  const read = history(60, (t) => (t === 30_000 ? { op: "read", error: "read ECONNRESET" } : undefined));
  assert.deepEqual(checkAvailability(run("rolling-upgrade", read), BOUND).problems, []);
  const write = history(60, (t) => (t === 30_000 ? { op: "write", error: "read ECONNRESET" } : undefined));
  assert.match(checkAvailability(run("rolling-upgrade", write), BOUND).problems.join("\n"), /1 failed requests a client-go caller would see/);
  const failures = failuresOf(run("rolling-upgrade", write));
  assert.deepEqual(failures.map((f) => [f.probe, f.op, f.atMs, f.kind]), [["vip per-request", "write", 30_000, "visible"]]);
});

test("every bound is asserted: the shrink's resets (an open defect until the leaving balancer stopped announcing the VIP first) fail the run", () => {
  const resets = history(60, (t) => (t >= 30_000 && t < 30_500 ? { op: "write", error: "read ECONNRESET" } : undefined));
  const shrink = checkAvailability(run("resize-5-to-3", resets), BOUND);
  assert.match(shrink.problems.join("\n"), /resize-5-to-3: 5 failed requests a client-go caller would see/);
  const long = checkAvailability(run("repair-stopped-services", history(60, outage(20_000, 30_000))), BOUND);
  assert.match(long.problems.join("\n"), /repair-stopped-services vip per-request: a failure window/);
  for (const e of EXPECTATIONS) if ((e.expect.visibleBudget ?? 0) > 0) assert.ok((e.expect.budgetWhy ?? "").length > 40, `${e.name.source}: a budget above 0 says why`);
});

test("a scenario with no line in the table, or no history, fails the check", () => {
  assert.match(checkAvailability(run("something-new", history(10)), BOUND).problems[0], /no availability expectation/);
  assert.match(checkAvailability({ name: "lose-vip-holder", records: [], facts: {} }, BOUND).problems[0], /no probe history/);
});

test("every line of the table is a scenario kind with a description; planned ones have a budget", () => {
  for (const e of EXPECTATIONS) {
    assert.ok(e.expect.what.length > 10);
    if (e.expect.kind === "planned") assert.equal(typeof e.expect.visibleBudget, "number", e.name.source);
  }
});
