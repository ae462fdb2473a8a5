// Probes that send reads and writes through the API endpoint at a fixed rate and record
// every failure and every slow answer. Two kinds, as real clients behave:
// - "per-request": a new TCP+TLS connection for every request;
// - "http2": one long-lived HTTP/2 connection, reused like client-go does; it is only
//   replaced when it closes or when a ping gets no answer (client-go's health check). Like
//   Go's HTTP/2 transport under client-go, it sends a request again when the server refused
//   its stream unprocessed (RST_STREAM REFUSED_STREAM, RFC 9113 8.7: "can be safely
//   retried"), within the same timeout; the reports count these (`retriedUnprocessed`).
// Every loop is bounded in count and in time. Writes create ConfigMaps; each one the API
// acknowledged is checked at the end (none may be lost).
import * as http2 from "http2";
import { assertSafeUrl } from "./guard";
import * as https from "https";
import * as yaml from "js-yaml";

export interface ClientCredentials {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Client credentials from an admin kubeconfig (embedded data). */
export function credentialsFromKubeconfig(kubeconfig: string): ClientCredentials {
  const doc = yaml.load(kubeconfig) as any;
  const b64 = (s: string) => Buffer.from(s, "base64").toString("utf8");
  return {
    ca: b64(doc.clusters[0].cluster["certificate-authority-data"]),
    cert: b64(doc.users[0].user["client-certificate-data"]),
    key: b64(doc.users[0].user["client-key-data"]),
  };
}

export interface ProbeOptions {
  readonly name: string;
  readonly kind: "per-request" | "http2";
  /** https://host:port */
  readonly endpoint: string;
  readonly credentials: ClientCredentials;
  /** Namespace the probe writes ConfigMaps into (must exist). */
  readonly namespace: string;
  /** @default 100 */
  readonly intervalMs?: number;
  /** A request not answered in this time is a failure. @default 2000 */
  readonly timeoutMs?: number;
  /** An answer slower than this is counted as slow. @default 1000 */
  readonly slowMs?: number;
  /** Hard bounds on the loop. @default 3000 requests, 300 s */
  readonly maxRequests?: number;
  readonly maxDurationMs?: number;
}

export interface RequestRecord {
  readonly at: number; // ms since epoch when sent
  readonly ms: number;
  readonly op: "read" | "write";
  readonly ok: boolean;
  readonly status?: number;
  readonly error?: string;
  /** A write's ConfigMap name. */
  readonly name?: string;
  /** A failed answer that asked to be retried (`retryAfterOf`): the seconds it named. */
  readonly retryAfterSeconds?: number;
  /** HTTP/2: times the server refused this request's stream unprocessed and it was sent again. */
  readonly retriedUnprocessed?: number;
}

export interface ProbeReport {
  readonly name: string;
  readonly kind: ProbeOptions["kind"];
  readonly requests: number;
  readonly failedRequests: number;
  /** Failed requests whose answer asked to be retried (a 429 or 5xx with Retry-After, `retryAfterOf`): client-go sends these again. */
  readonly failedWithRetryAfter: number;
  readonly slowRequests: number;
  /** Requests sent again after the server refused their stream unprocessed (HTTP/2), answered or not. */
  readonly retriedUnprocessed: number;
  /** Longest span from the first failed request to the next success (ms). */
  readonly longestFailureMs: number;
  readonly failureWindows: { start: number; end: number }[];
  readonly acknowledgedWrites: string[];
  readonly reconnects: number;
  readonly records: RequestRecord[];
}

export interface Answer {
  status: number;
  body: string;
  /** The Retry-After header in seconds, when the answer carried one. */
  retryAfterSeconds?: number;
  /** HTTP/2: refused-unprocessed attempts before this answer. */
  retriedUnprocessed?: number;
}

/** Attempts of one request on the HTTP/2 probe: the first and up to two after refused streams. */
export const HTTP2_ATTEMPTS = 3;

/** A request whose stream the server refused before processing it (safe to send again). */
class RefusedStream extends Error {
  constructor(readonly attempts: number) {
    super(`stream refused unprocessed (NGHTTP2_REFUSED_STREAM) ${attempts} time(s)`);
  }
}

/**
 * Whether client-go would send this answer's request again, and after how many seconds: a
 * 429 or any 5xx that carries a Retry-After header in seconds (client-go's `checkWait`).
 * An apiserver that is shutting down answers so (429 in its drain window, 503 once it stops
 * accepting requests); a balancer with no apiserver left answers 503 without one. The
 * probes do not retry (they count every failed answer); this only tells the reports which
 * failures a client-go client would not have seen as failures.
 */
export function retryAfterOf(a: Answer): number | undefined {
  if (a.status !== 429 && a.status < 500) return undefined;
  return a.retryAfterSeconds;
}

function retryAfterHeader(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  return v !== undefined && /^\d+$/.test(v.trim()) ? Number(v.trim()) : undefined;
}

/** One HTTPS request on a connection of its own, with the client certificate. */
export function httpsRequest(
  baseUrl: string,
  credentials: ClientCredentials,
  method: string,
  path: string,
  opts: { body?: string; timeoutMs?: number } = {},
): Promise<Answer> {
  const url = new URL(path, baseUrl);
  const timeoutMs = opts.timeoutMs ?? 3000;
  return new Promise((resolve, reject) => {
    assertSafeUrl(baseUrl); // a refusal rejects the promise, like a failed request
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method,
        agent: false, // a new connection for every request
        ca: credentials.ca,
        cert: credentials.cert,
        key: credentials.key,
        headers: { "content-type": "application/json", accept: "application/json", connection: "close" },
        timeout: timeoutMs,
      },
      (res) => {
        let data = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (data += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data, retryAfterSeconds: retryAfterHeader(res.headers["retry-after"]) }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

export class Probe {
  private readonly records: RequestRecord[] = [];
  private readonly acknowledged: string[] = [];
  private timer?: NodeJS.Timeout;
  private session?: http2.ClientHttp2Session;
  private reconnects = 0;
  private seq = 0;
  private startedAt = 0;
  private pending = new Set<Promise<void>>();
  private stopped = false;
  private readonly o: Required<ProbeOptions>;

  constructor(options: ProbeOptions) {
    this.o = { intervalMs: 100, timeoutMs: 2000, slowMs: 1000, maxRequests: 3000, maxDurationMs: 300_000, ...options };
  }

  start(): void {
    this.startedAt = Date.now();
    this.timer = setInterval(() => this.tick(), this.o.intervalMs);
  }

  /** Stops sending, waits for the requests in flight, and reports. */
  async stop(): Promise<ProbeReport> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.pending]);
    this.session?.destroy();
    return this.report();
  }

  private tick(): void {
    if (this.stopped) return;
    if (this.records.length + this.pending.size >= this.o.maxRequests || Date.now() - this.startedAt > this.o.maxDurationMs) {
      if (this.timer) clearInterval(this.timer);
      return;
    }
    const n = this.seq++;
    const op: "read" | "write" = n % 2 === 0 ? "read" : "write";
    const name = `probe-${this.o.name}-${n}`;
    const path =
      op === "read"
        ? `/api/v1/namespaces/${this.o.namespace}/configmaps?limit=1`
        : `/api/v1/namespaces/${this.o.namespace}/configmaps`;
    const body =
      op === "write"
        ? JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, labels: { "hakube-probe": this.o.name } }, data: { n: String(n) } })
        : undefined;
    const at = Date.now();
    const p = this.send(op === "read" ? "GET" : "POST", path, body)
      .then((a) => {
        const ok = op === "read" ? a.status === 200 : a.status === 201;
        if (ok && op === "write") this.acknowledged.push(name);
        const retryAfterSeconds = ok ? undefined : retryAfterOf(a);
        this.records.push({
          at, ms: Date.now() - at, op, ok, status: a.status, error: ok ? undefined : a.body.slice(0, 200), name: op === "write" ? name : undefined,
          ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
          ...(a.retriedUnprocessed ? { retriedUnprocessed: a.retriedUnprocessed } : {}),
        });
      })
      .catch((e: Error) => {
        const retriedUnprocessed = e instanceof RefusedStream ? e.attempts - 1 : 0;
        this.records.push({ at, ms: Date.now() - at, op, ok: false, error: e.message, name: op === "write" ? name : undefined, ...(retriedUnprocessed ? { retriedUnprocessed } : {}) });
      });
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private send(method: string, path: string, body?: string): Promise<Answer> {
    return this.o.kind === "per-request" ? this.sendHttps(method, path, body) : this.sendHttp2(method, path, body);
  }

  private sendHttps(method: string, path: string, body?: string): Promise<Answer> {
    return httpsRequest(this.o.endpoint, this.o.credentials, method, path, { body, timeoutMs: this.o.timeoutMs });
  }

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) {
      return this.session;
    }
    if (this.session) this.reconnects++;
    assertSafeUrl(this.o.endpoint);
    const session = http2.connect(this.o.endpoint, {
      ca: this.o.credentials.ca,
      cert: this.o.credentials.cert,
      key: this.o.credentials.key,
    });
    session.on("error", () => session.destroy());
    session.on("goaway", () => session.close());
    this.session = session;
    return session;
  }

  /**
   * One request over the shared HTTP/2 connection, sent again (at most HTTP2_ATTEMPTS in
   * all, within one timeout) when the server refuses its stream unprocessed: Go's HTTP/2
   * transport does the same for client-go (`canRetryError`: REFUSED_STREAM, or a GOAWAY
   * that left the stream unprocessed; a refused stream's request never reached a handler).
   */
  private async sendHttp2(method: string, path: string, body?: string): Promise<Answer> {
    const deadline = Date.now() + this.o.timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const a = await this.sendHttp2Once(method, path, body, Math.max(1, deadline - Date.now()));
        return attempt > 1 ? { ...a, retriedUnprocessed: attempt - 1 } : a;
      } catch (e) {
        if (!(e instanceof RefusedStream)) throw e;
        if (attempt >= HTTP2_ATTEMPTS || Date.now() >= deadline) throw new RefusedStream(attempt);
      }
    }
  }

  /**
   * Like client-go: requests share the connection; a request that times out does not
   * drop it, but then a ping is sent and the connection is dropped if the ping is not
   * answered in time (client-go: ReadIdleTimeout, then PingTimeout).
   */
  private sendHttp2Once(method: string, path: string, body: string | undefined, timeoutMs: number): Promise<Answer> {
    const session = this.connect();
    return new Promise((resolve, reject) => {
      let data = "";
      let status = 0;
      let retryAfterSeconds: number | undefined;
      const req = session.request({
        ":method": method,
        ":path": path,
        "content-type": "application/json",
        accept: "application/json",
      });
      const timer = setTimeout(() => {
        req.close(http2.constants.NGHTTP2_CANCEL);
        this.healthCheck(session);
        reject(new Error(`timeout after ${this.o.timeoutMs} ms`));
      }, timeoutMs);
      req.setEncoding("utf8");
      req.on("response", (headers) => {
        status = Number(headers[":status"] ?? 0);
        retryAfterSeconds = retryAfterHeader(headers["retry-after"]);
      });
      req.on("data", (c) => (data += c));
      req.on("end", () => {
        clearTimeout(timer);
        resolve({ status, body: data, retryAfterSeconds });
      });
      req.on("error", (e) => {
        clearTimeout(timer);
        reject(req.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ? new RefusedStream(1) : e);
      });
      req.end(body);
    });
  }

  private pinging = false;

  private healthCheck(session: http2.ClientHttp2Session): void {
    if (this.pinging || session.destroyed) return;
    this.pinging = true;
    const timer = setTimeout(() => {
      session.destroy(new Error("ping timeout"));
      this.pinging = false;
    }, this.o.timeoutMs);
    const sent = session.ping((err) => {
      clearTimeout(timer);
      this.pinging = false;
      if (err) session.destroy();
    });
    if (!sent) {
      clearTimeout(timer);
      this.pinging = false;
    }
  }

  private report(): ProbeReport {
    const records = [...this.records].sort((a, b) => a.at - b.at);
    const windows = failureWindowsOf(records);
    return {
      name: this.o.name,
      kind: this.o.kind,
      requests: records.length,
      failedRequests: records.filter((r) => !r.ok).length,
      failedWithRetryAfter: records.filter((r) => !r.ok && r.retryAfterSeconds !== undefined).length,
      slowRequests: records.filter((r) => r.ok && r.ms > this.o.slowMs).length,
      retriedUnprocessed: records.filter((r) => (r.retriedUnprocessed ?? 0) > 0).length,
      longestFailureMs: windows.reduce((m, w) => Math.max(m, w.end - w.start), 0),
      failureWindows: windows,
      acknowledgedWrites: [...this.acknowledged],
      reconnects: this.reconnects,
      records,
    };
  }
}

/**
 * Failure windows of records sorted by time: from the first failed request to the end of
 * the next successful one (or of the last record, when the failures run to the end).
 */
export function failureWindowsOf(records: readonly { at: number; ms: number; ok: boolean }[]): { start: number; end: number }[] {
  const windows: { start: number; end: number }[] = [];
  let open: number | undefined;
  for (const r of records) {
    if (!r.ok && open === undefined) open = r.at;
    if (r.ok && open !== undefined) {
      windows.push({ start: open, end: r.at + r.ms });
      open = undefined;
    }
  }
  if (open !== undefined) {
    const last = records[records.length - 1];
    windows.push({ start: open, end: last.at + last.ms });
  }
  return windows;
}

/**
 * Deletes a probe's ConfigMaps once they are checked (tests tear down what they create: a
 * suite run writes some 20 000, which otherwise stay in etcd, its backups and the
 * controllers' caches for every later scenario). Bounded; true when the API accepted it.
 */
export async function deleteProbeWrites(endpoint: string, credentials: ClientCredentials, namespace: string, probeName: string): Promise<boolean> {
  const path = `/api/v1/namespaces/${namespace}/configmaps?labelSelector=hakube-probe%3D${probeName}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const answer = await httpsRequest(endpoint, credentials, "DELETE", path, { timeoutMs: 60_000 });
      if (answer.status === 200) return true;
    } catch {
      // retried below
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  return false;
}

/** Names of the acknowledged writes that are not in the API (read back through the endpoint). */
export async function lostWrites(
  endpoint: string,
  credentials: ClientCredentials,
  namespace: string,
  probeName: string,
  acknowledged: readonly string[],
): Promise<string[]> {
  const path = `/api/v1/namespaces/${namespace}/configmaps?labelSelector=hakube-probe%3D${probeName}`;
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      const answer = await httpsRequest(endpoint, credentials, "GET", path, { timeoutMs: 15_000 });
      if (answer.status === 200) {
        const present = new Set((JSON.parse(answer.body).items as { metadata: { name: string } }[]).map((i) => i.metadata.name));
        return acknowledged.filter((n) => !present.has(n));
      }
    } catch {
      // retried below
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  throw new Error(`could not list the probe's ConfigMaps through ${endpoint}`);
}
