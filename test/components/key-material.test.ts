// The key material old backups and the running cluster depend on stays in the state when a
// setting is turned off: the backup key is made whether or not backups are on, and every
// such key is retained on delete (none of them is protected: see the README's Backups and
// restore).
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { ETCD_DIGEST, hosts, isSecret, program, recorded, valueOf } from "../helpers/mocks";
import { HaControlPlane } from "../../components";

let without: HaControlPlane;
before(async () => {
  [without] = await program(() => [
    new HaControlPlane("nb", {
      controlPlaneHosts: hosts(3),
      loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } },
      binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
      apiServer: { secretsEncryption: { keys: ["key1", "key2"] } },
      certificates: { serviceAccountKeys: { keys: ["key1", "key2"] }, certificateAuthorities: { etcd: { keys: ["ca1", "ca2"] } } },
    }),
  ]);
});

const named = (name: string) => {
  const r = recorded.find((x) => x.name === name);
  assert.ok(r, `${name} is registered; have ${recorded.map((x) => x.name).join(", ")}`);
  return r!;
};

test("backups off: the backup key pair stays (same names as with backups on), so turning backups on again reads every earlier backup", async () => {
  assert.equal(without.backups, undefined, "no backups component");
  const key = named("nb-backups-key");
  assert.equal(key.type, "tls:index/privateKey:PrivateKey");
  assert.equal(named("nb-backups-cert").type, "tls:index/selfSignedCert:SelfSignedCert");
  assert.equal(key.parent, without, "a child of the control plane, as with backups on");
  assert.ok(await valueOf(without.backupKey));
  assert.equal(await isSecret(without.backupKey), true);
  assert.match(await valueOf(without.backupCertificate), /mock-nb-backups-cert/);
});

test("key material is retained on delete: the backup key and certificate, every CA's key and certificate, every service-account key, every Secrets encryption key", () => {
  const wanted = [
    ...["cluster-ca", "etcd-ca", "etcd-ca-ca2", "front-proxy-ca"].flatMap((ca) => [`nb-pki-${ca}-key`, `nb-pki-${ca}`]),
    "nb-pki-service-account",
    "nb-pki-service-account-key2",
    "nb-apiserver-encryption-key",
    "nb-apiserver-encryption-key-key2",
    "nb-backups-key",
    "nb-backups-cert",
  ];
  for (const name of wanted) assert.equal(named(name).retainOnDelete, true, `${name} is retained on delete`);
  // Leaf certificates and their keys are issued anew at will: not retained.
  assert.equal(named("nb-pki-admin-key").retainOnDelete, false);
  assert.ok(recorded.every((r) => !(r.resource as unknown as { __protect?: boolean }).__protect), "nothing is protected (rotations drop keys; a destroy must work)");
});
