// Key rotations and certificate renewal: the pure decisions (which step is safe, when a
// certificate is due) and the scripts that count what each encryption key protects in etcd,
// run against a stub etcdctl.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import * as yaml from "js-yaml";
import { keyRingActiveSince, keyRingChangeProblem, keyRingProvider, parseKeyUsage, resolveKeyRing } from "../../components/pki/keyRing";
import { nextRenewal, renewalDue } from "../../components/pki/renewal";
import { encryptionConfig, secretboxPrefix, secretKeyUsageScript, secretsEncryptedGateScript } from "../../components/apiserver/render";

const NOW = Date.parse("2026-12-03T12:00:00Z");
const ring = (keys: string[], active: string, activeSince?: string) => ({ keys, active, activeSince });

test("resolveKeyRing: defaults to one key, the first active; names the argument of a bad list", () => {
  assert.deepEqual(resolveKeyRing(undefined, "secretsEncryption", undefined), { keys: ["key1"], active: "key1" });
  assert.deepEqual(resolveKeyRing(undefined, "secretsEncryption", { keys: ["key1", "key2"] }), { keys: ["key1", "key2"], active: "key1" });
  assert.throws(() => resolveKeyRing(undefined, "secretsEncryption", { keys: [] }), /secretsEncryption\.keys.*1 to 5 key names/);
  assert.throws(() => resolveKeyRing(undefined, "secretsEncryption", { keys: ["key1", "key1"] }), /secretsEncryption\.keys\[1\].*"key1".*not already in the list/);
  assert.throws(() => resolveKeyRing(undefined, "secretsEncryption", { keys: ["Key 2"] }), /secretsEncryption\.keys\[0\].*"Key 2"/);
  assert.throws(() => resolveKeyRing(undefined, "secretsEncryption", { keys: ["key1"], active: "key2" }), /secretsEncryption\.active.*"key2".*one of keys \(key1\)/);
});

test("key ring: add, switch, drop are each safe; out of order they are refused with what to do", () => {
  const p = (d: ReturnType<typeof ring> | undefined, k: string[], a: string, retire = 0, usage?: Record<string, number> | string) =>
    keyRingChangeProblem("secretsEncryption", "the key", d, { keys: k, active: a }, NOW, retire, usage);
  assert.equal(p(undefined, ["key1", "key2"], "key2"), undefined, "a first deployment takes any ring");
  assert.equal(p(ring(["key1"], "key1"), ["key1"], "key1"), undefined, "no change");
  assert.equal(p(ring(["key1"], "key1"), ["key1", "key2"], "key1"), undefined, "add");
  assert.equal(p(ring(["key1", "key2"], "key1"), ["key1", "key2"], "key2"), undefined, "switch to a deployed key");
  assert.equal(p(ring(["key1", "key2"], "key2"), ["key2"], "key2", 0, { key2: 12 }), undefined, "drop once nothing uses it");
  assert.match(p(ring(["key1"], "key1"), ["key1", "key2"], "key2")!, /invalid argument secretsEncryption: got keys \[key1, key2\] with key2 active.*add key2 to keys with key1 still active/);
  assert.match(p(ring(["key1", "key2"], "key1"), ["key2"], "key2")!, /one step at a time: make key2 active.*drop key1 in a later one/);
  assert.match(p(ring(["key1", "key2"], "key2"), ["key2"], "key2", 0, { key1: 3, key2: 9 })!, /found 3 with key1.*rewrite/);
  assert.match(p(ring(["key1", "key2"], "key2"), ["key2"], "key2", 0, "host unreachable")!, /could not look: host unreachable/);
});

test("key ring: a signing key is dropped only once the tokens it signed have expired", () => {
  const since = "2026-12-03T11:00:00Z";
  const p = (now: number) => keyRingChangeProblem("serviceAccountKeys", "the key", ring(["key1", "key2"], "key2", since), { keys: ["key2"], active: "key2" }, now, 7200);
  assert.match(p(NOW)!, /drop it after 2026-12-03T13:00:00.000Z/);
  assert.equal(p(Date.parse("2026-12-03T13:00:01Z")), undefined);
  assert.match(
    keyRingChangeProblem("serviceAccountKeys", "the key", ring(["key1", "key2"], "key2"), { keys: ["key2"], active: "key2" }, NOW, 7200)!,
    /an unknown time/,
    "no record of the switch: refused",
  );
});

test("key ring provider: the switch time travels in the inputs, so the next preview can tell when an old key may go", async () => {
  // Pulumi hands check the old inputs, not the outputs: what check returns is all a later preview sees.
  assert.equal(keyRingActiveSince({ active: "key1", activeSince: "2026-12-01T00:00:00.000Z" }, "key1", NOW), "2026-12-01T00:00:00.000Z");
  assert.equal(keyRingActiveSince({ active: "key1", activeSince: "2026-12-01T00:00:00.000Z" }, "key2", NOW), new Date(NOW).toISOString());
  assert.equal(keyRingActiveSince(undefined, "key1", NOW), new Date(NOW).toISOString());
  const base = { argument: "serviceAccountKeys", what: "the key", retireAfterSeconds: 3600 };
  const check = async (olds: any, keys: string[], active: string) => {
    const r = await keyRingProvider.check!(olds, { ...base, keys, active });
    return { inputs: r.inputs as any, failures: r.failures ?? [] };
  };
  const first = await check(undefined, ["key1"], "key1");
  assert.deepEqual(first.failures, []);
  assert.match(first.inputs.activeSince, /^\d{4}-\d\d-\d\dT/);
  const added = await check(first.inputs, ["key1", "key2"], "key1");
  assert.equal(added.inputs.activeSince, first.inputs.activeSince, "adding a key keeps the time key1 became active");
  const switched = await check({ ...added.inputs, activeSince: "2026-01-01T00:00:00.000Z" }, ["key1", "key2"], "key2");
  assert.notEqual(switched.inputs.activeSince, "2026-01-01T00:00:00.000Z", "a switch records a new time");
  const early = await check(switched.inputs, ["key2"], "key2");
  assert.equal(early.failures.length, 1);
  assert.match(String(early.failures[0].reason), /drop it after \d{4}-\d\d-\d\dT/, "the refusal names a date, not an unknown time");
  const late = await check({ ...switched.inputs, activeSince: "2026-01-01T00:00:00.000Z" }, ["key2"], "key2");
  assert.deepEqual(late.failures, [], "an hour after the switch key1 may go");
  const outs = await keyRingProvider.update!("key-ring", added.inputs, switched.inputs);
  assert.equal(outs.outs.activeSince, switched.inputs.activeSince);
});

test("parseKeyUsage counts the `uses` lines", () => {
  assert.deepEqual(parseKeyUsage("uses key1\nuses key2\nuses key1\nusage done\n"), { key1: 2, key2: 1 });
});

test("encryption config: the active key first, the others after it, identity last", () => {
  const k = (n: number) => Buffer.alloc(32, n).toString("base64");
  const doc = yaml.load(encryptionConfig([{ name: "key2", secret: k(2) }, { name: "key1", secret: k(1) }])) as any;
  const keys = doc.resources[0].providers[0].secretbox.keys;
  assert.deepEqual(keys.map((x: any) => x.name), ["key2", "key1"]);
  assert.equal(keys[1].secret, k(1));
  assert.deepEqual(doc.resources[0].providers.at(-1), { identity: {} });
  assert.throws(() => encryptionConfig([{ name: "key3", secret: k(3).slice(0, 20) }]), /key3 must be 32 bytes/);
});

/** Runs a script with a stub etcdctl serving `secrets` (key -> value) from a folder. */
function withStubEtcd(secrets: Record<string, string>, script: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-usage-"));
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  const store = path.join(dir, "store");
  fs.mkdirSync(store);
  Object.entries(secrets).forEach(([k, v], i) => {
    fs.writeFileSync(path.join(store, String(i)), v);
    fs.writeFileSync(path.join(store, `${i}.name`), k);
  });
  fs.writeFileSync(
    path.join(bin, "etcdctl"),
    `#!/bin/bash
store=${JSON.stringify(store)}
if [ "$1 $3 $4" = "get --prefix --keys-only" ]; then for f in "$store"/*.name; do cat "$f"; echo; echo; done; exit 0; fi
for f in "$store"/*.name; do if [ "$(cat "$f")" = "$2" ]; then cat "\${f%.name}"; echo; exit 0; fi; done
exit 1
`,
    { mode: 0o755 },
  );
  const etc = path.join(dir, "etcdctl.env");
  fs.writeFileSync(etc, "ETCDCTL_CACERT=/nonexistent\n");
  const body = script.replace(/\/etc\/etcd\/etcdctl\.env/g, etc);
  const r = spawnSync("bash", ["-c", `set -euo pipefail\n${body}`], { encoding: "utf8", env: { PATH: `${bin}:/usr/bin:/bin` } });
  fs.rmSync(dir, { recursive: true, force: true });
  return r;
}

test("the usage script names each Secret's key from its value's prefix in etcd", () => {
  const r = withStubEtcd(
    {
      "/registry/secrets/default/a": `${secretboxPrefix("key2")}\x01\x02binary\nmore`,
      "/registry/secrets/kube-system/b": `${secretboxPrefix("key1")}zz`,
      "/registry/secrets/default/c": "k8s\x00\x0a\x0cplain",
    },
    secretKeyUsageScript(2379),
  );
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(parseKeyUsage(r.stdout), { key2: 1, key1: 1, identity: 1 });
  assert.match(r.stdout, /^usage done$/m);
});

test("the Secrets gate fails while a Secret is not on the active key, and passes once all are", () => {
  const mixed = withStubEtcd(
    { "/registry/secrets/default/a": `${secretboxPrefix("key2")}x`, "/registry/secrets/default/b": `${secretboxPrefix("key1")}y` },
    secretsEncryptedGateScript(2379, "key2"),
  );
  assert.notEqual(mixed.status, 0);
  assert.match(mixed.stderr, /1 of 2 Secrets in etcd are not encrypted with key2/);
  const done = withStubEtcd(
    { "/registry/secrets/default/a": `${secretboxPrefix("key2")}x`, "/registry/secrets/default/b": `${secretboxPrefix("key2")}y` },
    secretsEncryptedGateScript(2379, "key2"),
  );
  assert.equal(done.status, 0, done.stderr);
  assert.match(done.stdout, /all 2 Secrets in etcd are encrypted with key2/);
});

test("renewal: due from validity minus the early window after issue; a new generation then, or when the validity changes", () => {
  const s = { validityHours: 100, earlyRenewalHours: 10, issuedAt: "2026-12-01T00:00:00Z", generation: 3 };
  const at = (h: number) => Date.parse(s.issuedAt) + h * 3_600_000;
  assert.equal(renewalDue(s, at(89)), false);
  assert.equal(renewalDue(s, at(90)), true);
  assert.deepEqual(nextRenewal(s, { validityHours: 100, earlyRenewalHours: 10 }, at(50)), s, "not due: unchanged");
  const renewed = nextRenewal(s, { validityHours: 100, earlyRenewalHours: 10 }, at(95));
  assert.equal(renewed.generation, 4);
  assert.equal(renewed.issuedAt, new Date(at(95)).toISOString());
  assert.equal(nextRenewal(s, { validityHours: 100, earlyRenewalHours: 60 }, at(45)).generation, 4, "a wider window can make it due");
  assert.equal(nextRenewal(s, { validityHours: 200, earlyRenewalHours: 10 }, at(1)).generation, 4, "a new validity issues it anew");
  assert.equal(renewalDue({ ...s, issuedAt: "" }, at(0)), true, "no record: due");
});
