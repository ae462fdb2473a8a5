// A stateful stand-in for etcdctl and systemctl, for running hakube's membership scripts
// on the test machine: the cluster is a JSON file (members, health per client URL), and
// every membership command is logged, so tests assert what the script did.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { retryFunction } from "../../components/remote/files";
import { tempDir } from "./tools";

export interface FakeMember {
  id: string;
  name: string;
  peer: string;
  client: string;
  learner: boolean;
  started: boolean;
}

export interface FakeCluster {
  members: FakeMember[];
  /** Health of each client URL (a missing entry is unhealthy). */
  health: Record<string, boolean>;
  /** How many promote attempts fail ("not in sync") before one succeeds. */
  promoteFailures: number;
  log: string[];
  /** How many member adds fail with etcd's "unhealthy cluster" before one succeeds. */
  addFailures?: number;
  /** The leader's id (for endpoint status and move-leader). */
  leader?: string;
  /** The member this machine runs: systemctl start marks it started and healthy. */
  self: { name: string; peer: string; client: string };
}

const FAKE = `#!/usr/bin/env node
const fs = require("fs");
const file = process.env.FAKE_ETCD_STATE;
const s = JSON.parse(fs.readFileSync(file, "utf8"));
const save = () => fs.writeFileSync(file, JSON.stringify(s));
const tool = require("path").basename(process.argv[1]);
const args = process.argv.slice(2);
const endpoints = (process.env.ETCDCTL_ENDPOINTS || "").split(",").filter(Boolean);
const reachable = endpoints.some((e) => s.health[e]);
function done(code, out) { if (out) process.stdout.write(out); save(); process.exit(code); }
if (tool === "systemctl") {
  const unit = args.filter((a) => !a.startsWith("-"))[1];
  const verb = args.filter((a) => !a.startsWith("-"))[0];
  s.log.push("systemctl " + args.join(" "));
  if (unit === "etcd.service" && verb === "start") {
    const m = s.members.find((x) => x.peer === s.self.peer);
    if (m) { m.name = s.self.name; m.client = s.self.client; m.started = true; }
    s.health[s.self.client] = true;
    s.health["https://127.0.0.1:2379"] = true;
  }
  if (unit === "etcd.service" && (verb === "stop" || (verb === "disable" && args.includes("--now")))) s.health[s.self.client] = s.health["https://127.0.0.1:2379"] = false;
  done(0);
}
if (args[0] === "endpoint" && args[1] === "health") {
  done(endpoints.length > 0 && endpoints.every((e) => s.health[e]) ? 0 : 1);
}
if (args[0] === "endpoint" && args[1] === "status") {
  const self = s.members.find((x) => x.peer === s.self.peer);
  if (!self || !s.health["https://127.0.0.1:2379"]) done(1);
  done(0, JSON.stringify([{ Endpoint: endpoints[0], Status: { header: { member_id: parseInt(self.id, 16) }, leader: parseInt(s.leader || "0", 16) } }]) + "\\n");
}
if (args[0] === "move-leader") {
  s.log.push("move-leader " + args[1]);
  s.leader = args[1];
  done(0);
}
if (args[0] !== "member") done(2, "");
if (!reachable) { process.stderr.write("context deadline exceeded\\n"); done(1); }
if (args[1] === "list") {
  done(0, s.members.map((m) => [m.id, m.started ? "started" : "unstarted", m.started ? m.name : "", m.peer, m.started ? m.client : "", String(m.learner)].join(", ")).join("\\n") + "\\n");
}
if (args[1] === "add") {
  if ((s.addFailures || 0) > 0) { s.addFailures--; s.log.push("member add (unhealthy cluster)"); process.stderr.write("Error: etcdserver: unhealthy cluster\\n"); done(1); }
  const peer = args.find((a) => a.startsWith("--peer-urls=")).split("=")[1];
  const id = (0x1000 + s.members.length * 17 + s.log.length).toString(16);
  s.members.push({ id, name: args[2], peer, client: "", learner: args.includes("--learner"), started: false });
  s.log.push("member add " + args[2] + (args.includes("--learner") ? " --learner" : ""));
  done(0, "Member " + id + " added\\n");
}
if (args[1] === "remove") {
  // etcd's strict reconfiguration check: the members left must still have a quorum started.
  const left = s.members.filter((m) => m.id !== args[2] && !m.learner);
  const up = left.filter((m) => m.started && s.health[m.client]).length;
  if (up < Math.floor(left.length / 2) + 1) { process.stderr.write("etcdserver: re-configuration failed due to not enough started members\\n"); s.log.push("member remove " + args[2] + " (refused)"); done(1); }
  s.members = s.members.filter((m) => m.id !== args[2]);
  s.log.push("member remove " + args[2]);
  done(0);
}
if (args[1] === "promote") {
  const m = s.members.find((x) => x.id === args[2]);
  if (!m || !m.started || s.promoteFailures > 0) { s.promoteFailures--; s.log.push("member promote " + args[2] + " (not in sync)"); done(1); }
  m.learner = false;
  s.log.push("member promote " + args[2]);
  done(0);
}
done(2);
`;

export interface FakeEtcd {
  readonly dir: string;
  state(): FakeCluster;
  run(body: string): { status: number | null; stdout: string; stderr: string };
  dispose(): void;
}

export function fakeEtcd(cluster: Omit<FakeCluster, "log">): FakeEtcd {
  const dir = tempDir("fake-etcd");
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  for (const tool of ["etcdctl", "systemctl"]) fs.writeFileSync(path.join(bin, tool), FAKE, { mode: 0o755 });
  // The etcd account exists (the scripts make it with useradd otherwise, which must not
  // touch the test machine's accounts).
  fs.writeFileSync(path.join(bin, "id"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  fs.writeFileSync(path.join(bin, "useradd"), "#!/bin/sh\necho useradd must not run here >&2\nexit 1\n", { mode: 0o755 });
  const stateFile = path.join(dir, "state.json");
  fs.writeFileSync(stateFile, JSON.stringify({ ...cluster, log: [] }));
  return {
    dir,
    state: () => JSON.parse(fs.readFileSync(stateFile, "utf8")) as FakeCluster,
    run(body) {
      const r = spawnSync("bash", ["-c", `set -euo pipefail\n${retryFunction}\n${body}`], {
        encoding: "utf8",
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, FAKE_ETCD_STATE: stateFile },
        timeout: 60_000,
      });
      return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    },
    dispose: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
