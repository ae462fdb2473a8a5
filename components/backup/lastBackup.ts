// The newest backup in storage, as the stack program sees it when it runs: read from the
// manifests (etcd-<time>-r<revision>.json; names sort by time) with the storage's access key,
// over S3's ListObjectsV2 and GetObject signed with AWS Signature Version 4. A stack output:
// it changes as backups are made, and a changed stack output is no resource change (a
// healthy cluster's preview stays "no changes"). Reading never fails the program: a
// storage that does not answer gives `error`.
import * as crypto from "crypto";
import * as https from "https";
import { ObservedNetwork, stackNetworkProblem } from "../observe/ssh";

/** What the status summary and the stack output show of a backup. */
export interface BackupSummary {
  readonly name: string;
  readonly time: string;
  readonly revision: number;
  /** Encrypted size in storage, bytes. */
  readonly size: number;
  /** The snapshot's size, bytes. */
  readonly dbSize: number;
  readonly totalKey: number;
  readonly member: string;
}

export interface LastBackup {
  /** When storage was asked (the program's run). */
  readonly checkedAt: string;
  /** The newest backup; absent when there is none yet. */
  readonly backup?: BackupSummary;
  /** Seconds from the backup to `checkedAt`. */
  readonly ageSeconds?: number;
  /** Why storage could not be read. */
  readonly error?: string;
}

export interface S3Access {
  readonly endpoint: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** PEM the endpoint's certificate chains to, when not a public CA. */
  readonly caCertificate?: string;
}

/** S3's URI encoding: every byte but unreserved characters, '/' kept in paths. */
export function s3Encode(s: string, keepSlash = false): string {
  const e = encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return keepSlash ? e.replace(/%2F/g, "/") : e;
}

const hex = (data: string | Buffer) => crypto.createHash("sha256").update(data).digest("hex");
const hmac = (key: string | Buffer, data: string) => crypto.createHmac("sha256", key).update(data).digest();

/**
 * The headers of a Signature Version 4 request (empty payload): Authorization, x-amz-date
 * and x-amz-content-sha256. `path` is the encoded path, `query` the parameters.
 */
export function signV4(a: {
  method: string;
  host: string;
  path: string;
  query: Record<string, string>;
  region: string;
  service?: string;
  accessKeyId: string;
  secretAccessKey: string;
  now: Date;
}): Record<string, string> {
  const service = a.service ?? "s3";
  const amzDate = a.now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const day = amzDate.slice(0, 8);
  const payload = hex("");
  const query = Object.keys(a.query)
    .sort()
    .map((k) => `${s3Encode(k)}=${s3Encode(a.query[k])}`)
    .join("&");
  const headers = `host:${a.host}\nx-amz-content-sha256:${payload}\nx-amz-date:${amzDate}\n`;
  const signed = "host;x-amz-content-sha256;x-amz-date";
  const canonical = [a.method, a.path, query, headers, signed, payload].join("\n");
  const scope = `${day}/${a.region}/${service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, hex(canonical)].join("\n");
  const key = hmac(hmac(hmac(hmac(`AWS4${a.secretAccessKey}`, day), a.region), service), "aws4_request");
  const signature = crypto.createHmac("sha256", key).update(toSign).digest("hex");
  return {
    authorization: `AWS4-HMAC-SHA256 Credential=${a.accessKeyId}/${scope}, SignedHeaders=${signed}, Signature=${signature}`,
    "x-amz-date": amzDate,
    "x-amz-content-sha256": payload,
  };
}

/** The key of the newest manifest among a listing's keys (backup names sort by time). */
export function newestManifestKey(keys: readonly string[], prefix: string): string | undefined {
  const re = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/etcd-\\d{8}T\\d{6}Z-r\\d+\\.json$`);
  return keys.filter((k) => re.test(k)).sort().pop();
}

/** The <Key> values of a ListObjectsV2 answer. */
export function listedKeys(xml: string): string[] {
  return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1].replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'"));
}

/** A manifest's summary, or an error naming what is missing. */
export function summarizeManifest(text: string): BackupSummary {
  const m = JSON.parse(text) as Record<string, unknown>;
  for (const f of ["name", "time"]) if (typeof m[f] !== "string") throw new Error(`the manifest has no ${f}`);
  const num = (f: string) => (typeof m[f] === "number" ? (m[f] as number) : 0);
  return { name: m.name as string, time: m.time as string, revision: num("revision"), size: num("size"), dbSize: num("dbSize"), totalKey: num("totalKey"), member: String(m.member ?? "") };
}

/** The summary of the newest backup; `now` stamps checkedAt and the age. */
export function lastBackupOf(manifest: string | undefined, now: Date): LastBackup {
  if (manifest === undefined) return { checkedAt: now.toISOString() };
  const backup = summarizeManifest(manifest);
  const age = Math.round((now.getTime() - Date.parse(backup.time)) / 1000);
  return { checkedAt: now.toISOString(), backup, ...(Number.isFinite(age) ? { ageSeconds: age } : {}) };
}

function get(s: S3Access, key: string | undefined, query: Record<string, string>, timeoutMs: number): Promise<string> {
  const url = new URL(s.endpoint);
  const path = `/${s3Encode(s.bucket)}${key === undefined ? "" : `/${s3Encode(key, true)}`}`;
  const headers = signV4({ method: "GET", host: url.host, path, query, region: s.region, accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, now: new Date() });
  const search = Object.keys(query).sort().map((k) => `${s3Encode(k)}=${s3Encode(query[k])}`).join("&");
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: url.hostname, port: url.port || 443, path: search ? `${path}?${search}` : path, method: "GET", headers, timeout: timeoutMs, ...(s.caCertificate ? { ca: s.caCertificate } : {}) },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (body += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode} from ${url.host}: ${body.slice(0, 200)}`))));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url.host} in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/**
 * Asks storage for its newest backup. On a local stack, `network` is the bridge storage is
 * reached through: nothing is sent while it is missing.
 */
export async function readLastBackup(s: S3Access, network?: ObservedNetwork, timeoutMs = 5000): Promise<LastBackup> {
  const now = new Date();
  try {
    const problem = stackNetworkProblem(new URL(s.endpoint).hostname, network);
    if (problem) return { checkedAt: now.toISOString(), error: `storage not asked: ${problem}` };
    const keys: string[] = [];
    let token: string | undefined;
    for (let page = 0; page < 20; page++) {
      const xml = await get(s, undefined, { "list-type": "2", "max-keys": "1000", prefix: `${s.prefix}/`, ...(token ? { "continuation-token": token } : {}) }, timeoutMs);
      keys.push(...listedKeys(xml));
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1] : undefined;
      if (!token) break;
    }
    const newest = newestManifestKey(keys, s.prefix);
    return lastBackupOf(newest === undefined ? undefined : await get(s, newest, {}, timeoutMs), now);
  } catch (e) {
    return { checkedAt: now.toISOString(), error: (e as Error).message };
  }
}
