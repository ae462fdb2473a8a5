import { test } from "node:test";
import assert from "node:assert/strict";
import * as yaml from "js-yaml";
import { mergeFlags, renderFlags } from "../../components/systemd";
import { renderKubeconfig } from "../../components/pki/kubeconfig";

test("flags are rendered once each and escaped for systemd", () => {
  assert.deepEqual(renderFlags([["a", 1], ["b-c", true], ["d", "50%"]]), ["--a=1", "--b-c=true", "--d=50%%"]);
  assert.throws(() => renderFlags([["a", 1], ["a", 2]]), /twice/);
  assert.throws(() => renderFlags([["a", "x y"]]), /cannot pass/);
  assert.throws(() => renderFlags([["A", "x"]]), /bad flag name/);
  assert.deepEqual(mergeFlags([["a", "1"], ["b", "2"]], { b: "3", c: "4" }), [["a", "1"], ["b", "3"], ["c", "4"]]);
});

test("kubeconfig embeds CA and client credentials and parses", () => {
  const text = renderKubeconfig({
    clusterName: "hakube",
    server: "https://10.0.0.100:8443",
    caCertPem: "CA",
    userName: "system:kube-scheduler",
    clientCertPem: "CERT",
    clientKeyPem: "KEY",
  });
  const doc = yaml.load(text) as any;
  assert.equal(doc.clusters[0].cluster.server, "https://10.0.0.100:8443");
  assert.equal(Buffer.from(doc.clusters[0].cluster["certificate-authority-data"], "base64").toString(), "CA");
  assert.equal(Buffer.from(doc.users[0].user["client-key-data"], "base64").toString(), "KEY");
  assert.equal(doc.users[0].name, "system:kube-scheduler");
  assert.equal(doc["current-context"], "system:kube-scheduler@hakube");
  assert.throws(() => renderKubeconfig({ ...({} as any), server: "http://x" }), /https URL/);
});
