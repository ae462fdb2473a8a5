import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { renderFileBundle, retryFunction, scriptPrologue, sha256, writeFilesFunction } from "../../components/remote/files";
import { run, tempDir } from "../helpers/tools";

const writeScript = (extra = "") =>
  [scriptPrologue, writeFilesFunction, "hakube_write_files", 'printf "%s" "$HAKUBE_CHANGED" > "$ROOT/changed"', extra].join("\n");

test("the bundle round-trips through the real write script with modes and atomic writes", () => {
  const root = tempDir("files");
  const files = [
    { path: `${root}/etc/pki/server.key`, mode: "0600" as const, content: `-----BEGIN ${"PRIVATE"} KEY-----\nabc\n` },
    { path: `${root}/etc/unit.service`, mode: "0644" as const, content: "[Unit]\nDescription=x y z\n\u00e9\n" },
    { path: `${root}/bin/check.sh`, mode: "0755" as const, content: "#!/bin/sh\nexit 0\n" },
  ];
  const first = run("bash", ["-c", writeScript()], { input: renderFileBundle(files), env: { ...process.env, ROOT: root } });
  assert.equal(first.status, 0, first.stderr);
  for (const f of files) {
    assert.equal(fs.readFileSync(f.path, "utf8"), f.content);
    assert.equal((fs.statSync(f.path).mode & 0o777).toString(8), f.mode.slice(1));
  }
  assert.equal(fs.readFileSync(path.join(root, "changed"), "utf8").trim().split("\n").length, 3);
  assert.ok(!first.stdout.includes("PRIVATE KEY"), "contents never printed");

  // Second run with one file changed: only that file is reported.
  const changed = [files[0], { ...files[1], content: "[Unit]\nDescription=changed\n" }, files[2]];
  const second = run("bash", ["-c", writeScript()], { input: renderFileBundle(changed), env: { ...process.env, ROOT: root } });
  assert.equal(second.status, 0, second.stderr);
  assert.equal(fs.readFileSync(path.join(root, "changed"), "utf8").trim(), files[1].path);
  assert.deepEqual(fs.readdirSync(path.join(root, "etc")).filter((n) => n.startsWith(".hakube")), [], "no temp files left");
  fs.rmSync(root, { recursive: true, force: true });
});

test("a key file is never readable by others, even while being written", () => {
  assert.match(scriptPrologue, /umask 077/);
  assert.match(writeFilesFunction, /chmod "\$mode" "\$tmp"\n\s+printf/);
});

test("bundle rejects unsafe or duplicate paths", () => {
  assert.throws(() => renderFileBundle([{ path: "relative/x", mode: "0644", content: "" }]), /unsafe/);
  assert.throws(() => renderFileBundle([{ path: "/etc/../x", mode: "0644", content: "" }]), /unsafe/);
  assert.throws(() => renderFileBundle([{ path: "/etc/a b", mode: "0644", content: "" }]), /unsafe/);
  assert.throws(
    () =>
      renderFileBundle([
        { path: "/etc/x", mode: "0644", content: "" },
        { path: "/etc/x", mode: "0600", content: "" },
      ]),
    /twice/,
  );
});

test("hakube_retry is bounded and reports what failed", () => {
  const script = `${scriptPrologue}\n${retryFunction}\nn=0\nhakube_retry 3 0 "thing" -- false`;
  const r = run("bash", ["-c", script]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /thing: still failing after 3 attempts/);
  const ok = run("bash", ["-c", `${scriptPrologue}\n${retryFunction}\nhakube_retry 3 0 "thing" -- true && echo fine`]);
  assert.equal(ok.stdout.trim(), "fine");
});

test("sha256 is stable hex", () => {
  assert.equal(sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});
