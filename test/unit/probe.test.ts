// The probes against a stub API on loopback (HTTPS and HTTP/2, a throwaway certificate):
// every failed answer is counted, and the ones that ask to be retried (a 429 or 5xx with
// Retry-After, as a stopping apiserver answers) are told apart for the reports; the HTTP/2
// probe sends a request again when the server refuses its stream unprocessed, as Go's
// transport does, and counts it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as http2 from "http2";
import * as https from "https";
import { AddressInfo } from "net";
import * as path from "path";
import { deleteProbeWrites, HTTP2_ATTEMPTS, Probe, ProbeReport, retryAfterOf } from "../../ops/probe";
import { run, tempDir } from "../helpers/tools";

const dir = tempDir("probe");
let credentials: { ca: string; cert: string; key: string };

before(() => {
  const key = path.join(dir, "key.pem");
  const cert = path.join(dir, "cert.pem");
  const r = run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=stub", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]);
  assert.equal(r.status, 0, r.stderr);
  const pem = fs.readFileSync(cert, "utf8");
  credentials = { ca: pem, cert: pem, key: fs.readFileSync(key, "utf8") };
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** What the stub answers to the probe's writes (POST), in the order it sends them; reads (GET) succeed. */
const WRITES: { status: number; retryAfter?: string }[] = [
  { status: 201 },
  { status: 429, retryAfter: "5" }, // an apiserver in its drain window
  { status: 503, retryAfter: "1" }, // an apiserver that stopped accepting requests
  { status: 503 }, // a balancer with no apiserver left
  { status: 500, retryAfter: "soon" }, // not a number of seconds: not a retry hint
  { status: 201 }, // and every later write
];

/** A write's place in WRITES, from its ConfigMap's name (the probe numbers read, write, ...: writes are 1, 3, 5, ...). */
function writeIndex(name: string): number {
  return (Number(name.split("-").pop()) - 1) / 2;
}

/** What a stub answers a write: a status (with Retry-After), or (HTTP/2) its stream refused unprocessed. */
type WriteAnswer = { status: number; retryAfter?: string } | "refuse";

/**
 * A probe of `kind` against a stub API on loopback: reads succeed, each write is answered
 * by `answer` (from its place among the writes) until `enough()` holds (bounded in time).
 */
async function probeAgainst(kind: "per-request" | "http2", o: { name: string; maxRequests: number; answer: (write: number) => WriteAnswer; enough: () => boolean }): Promise<ProbeReport> {
  type StubRequest = { method?: string; setEncoding(e: BufferEncoding): unknown; on(e: string, f: (c: string) => void): unknown; stream?: http2.ServerHttp2Stream };
  const onRequest = (req: StubRequest, res: { writeHead(s: number, h: Record<string, string>): { end(b: string): void } }) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      const a = req.method === "POST" ? o.answer(writeIndex(JSON.parse(body).metadata.name)) : { status: 200 };
      if (a === "refuse") return void req.stream!.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      res.writeHead(a.status, { "content-type": "application/json", ...(a.retryAfter ? { "retry-after": a.retryAfter } : {}) }).end("{}");
    });
  };
  const server =
    kind === "http2"
      ? http2.createSecureServer({ cert: credentials.cert, key: credentials.key }, (req, res) => onRequest(req, res))
      : https.createServer({ cert: credentials.cert, key: credentials.key }, (req, res) => onRequest(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    const probe = new Probe({ name: o.name, kind, endpoint: `https://127.0.0.1:${port}`, credentials, namespace: "probe", intervalMs: 10, maxRequests: o.maxRequests });
    probe.start();
    for (let i = 0; i < 300 && !o.enough(); i++) await new Promise((r) => setTimeout(r, 20));
    return await probe.stop();
  } finally {
    if ("closeAllConnections" in server) (server as https.Server).closeAllConnections();
    server.close();
  }
}

test("retryAfterOf: a 429 or 5xx with Retry-After in seconds is one client-go sends again; nothing else is", () => {
  assert.equal(retryAfterOf({ status: 429, body: "", retryAfterSeconds: 5 }), 5);
  assert.equal(retryAfterOf({ status: 503, body: "", retryAfterSeconds: 1 }), 1);
  assert.equal(retryAfterOf({ status: 503, body: "" }), undefined);
  assert.equal(retryAfterOf({ status: 404, body: "", retryAfterSeconds: 5 }), undefined);
  assert.equal(retryAfterOf({ status: 201, body: "", retryAfterSeconds: 5 }), undefined);
});

for (const kind of ["per-request", "http2"] as const) {
  test(`the ${kind} probe counts every failed answer and tells the ones with Retry-After apart`, async () => {
    let answered = 0;
    const report = await probeAgainst(kind, {
      name: `stub-${kind}`,
      maxRequests: WRITES.length * 2 + 4,
      answer: (i) => (answered++, WRITES[Math.min(i, WRITES.length - 1)]),
      enough: () => answered >= WRITES.length + 1,
    });
    const writes = report.records.filter((r) => r.op === "write");
    assert.ok(writes.length >= WRITES.length, `${writes.length} writes sent`);
    const first = writes
      .filter((r) => writeIndex(r.name!) < WRITES.length)
      .sort((a, b) => writeIndex(a.name!) - writeIndex(b.name!))
      .map((r) => [r.status, r.ok, r.retryAfterSeconds]);
    assert.deepEqual(first, [
      [201, true, undefined],
      [429, false, 5],
      [503, false, 1],
      [503, false, undefined],
      [500, false, undefined],
      [201, true, undefined],
    ]);
    assert.equal(report.failedRequests, report.records.filter((r) => !r.ok).length);
    assert.equal(report.failedWithRetryAfter, 2);
    assert.ok(report.records.filter((r) => r.op === "read").every((r) => r.ok), "reads succeed");
    assert.deepEqual(report.acknowledgedWrites.length, writes.filter((r) => r.ok).length);
  });
}

test("the http2 probe sends a request again when the server refuses its stream unprocessed (as Go's transport does), at most HTTP2_ATTEMPTS times, and counts it", async () => {
  // Write 1: refused once, then created. Write 2: refused every time. Others: created.
  const attempts = new Map<number, number>();
  const report = await probeAgainst("http2", {
    name: "stub-refused",
    maxRequests: 10,
    answer: (i) => {
      const n = (attempts.get(i) ?? 0) + 1;
      attempts.set(i, n);
      return (i === 1 && n === 1) || i === 2 ? "refuse" : { status: 201 };
    },
    enough: () => attempts.size >= 5,
  });
  const writes = new Map(report.records.filter((r) => r.op === "write").map((r) => [writeIndex(r.name!), r]));
  assert.deepEqual([writes.get(0)?.ok, writes.get(0)?.retriedUnprocessed], [true, undefined], "write 0: answered at once");
  assert.deepEqual([writes.get(1)?.ok, writes.get(1)?.status, writes.get(1)?.retriedUnprocessed], [true, 201, 1], "write 1: sent again once, then created");
  assert.equal(writes.get(2)?.ok, false, "write 2: refused every time is a failure");
  assert.equal(writes.get(2)?.retriedUnprocessed, HTTP2_ATTEMPTS - 1);
  assert.match(writes.get(2)?.error ?? "", /REFUSED_STREAM/);
  assert.equal(attempts.get(2), HTTP2_ATTEMPTS, "bounded: the server saw each attempt");
  assert.equal(report.retriedUnprocessed, 2);
  assert.equal(report.failedRequests, 1);
  assert.ok(report.acknowledgedWrites.includes("probe-stub-refused-3"), "write 1 acknowledged");
});

test("a probe's ConfigMaps are deleted once checked: one DELETE of its label's collection, retried (bounded) until the API accepts it", async () => {
  const seen: string[] = [];
  let answers = [500, 200];
  const server = https.createServer({ cert: credentials.cert, key: credentials.key }, (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(answers.shift() ?? 200, { "content-type": "application/json" }).end("{}");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    assert.equal(await deleteProbeWrites(endpoint, credentials, "hakube-probe", "resize-3-to-5-per-request"), true);
    assert.deepEqual(seen, [
      "DELETE /api/v1/namespaces/hakube-probe/configmaps?labelSelector=hakube-probe%3Dresize-3-to-5-per-request",
      "DELETE /api/v1/namespaces/hakube-probe/configmaps?labelSelector=hakube-probe%3Dresize-3-to-5-per-request",
    ]);
    answers = [403, 403, 403, 403];
    assert.equal(await deleteProbeWrites(endpoint, credentials, "hakube-probe", "x"), false, "refused three times: reported, not thrown");
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
