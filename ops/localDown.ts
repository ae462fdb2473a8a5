// Tears the local stack down, in bounded time, whatever is left of it (scripts/local-down.sh).
// A whole stack (bridge up, every machine running and answering SSH) goes through
// `pulumi destroy`, which stops every service and removes every resource. When machines or
// the bridge are already gone (a host reboot, a half-finished teardown) `pulumi destroy`
// would spend minutes dialling machines that no longer exist; instead each machine is
// cleaned up on the host with the same script LocalMachines uses, the bridge and its
// guard route are removed, and the stack's state is dropped (`pulumi stack rm --force`),
// so the next scripts/local-up.sh starts from nothing. Either way it ends by checking that
// nothing is left, and exits 1 if something is.
import * as fs from "fs";
import { machineCleanupScript, MachineSpec, networkDeleteScript, nspawnLockFile } from "../components/machines/localRender";
import { machineProcessRunning } from "../components/machines/localMachines";
import { assertSafeDestination } from "./guard";
import { allMachines, Credentials, LocalHost, LocalOutputs, pulumi, run } from "./localStack";

const STATE_DIR = "/var/lib/hakube/machines";
const t0 = Date.now();
function say(line: string): void {
  console.log(`[local-down ${String(Math.round((Date.now() - t0) / 1000)).padStart(4)}s] ${line}`);
}

function dirOf(outputs: LocalOutputs, h: LocalHost): string {
  return h.dir ?? `${STATE_DIR}/${outputs.bridge}/${h.name}`;
}

function machineRunning(outputs: LocalOutputs, h: LocalHost): boolean {
  return fs.existsSync(`/run/netns/${h.netns}`) && machineProcessRunning(dirOf(outputs, h));
}

/** Why the stack is not whole, or undefined when pulumi destroy can reach everything. */
export function wholeStackProblem(outputs: LocalOutputs): string | undefined {
  if (!fs.existsSync(`/sys/class/net/${outputs.bridge}/bridge`)) return `bridge ${outputs.bridge} is gone`;
  const stopped = allMachines(outputs).filter((h) => !machineRunning(outputs, h)).map((h) => h.name);
  if (stopped.length > 0) return `machine(s) ${stopped.join(", ")} not running`;
  const cred = new Credentials(outputs);
  try {
    for (const h of allMachines(outputs)) {
      assertSafeDestination(h.address);
      if (cred.ssh(h.address, "true", 10_000).status !== 0) return `${h.name} does not answer SSH`;
    }
  } finally {
    cred.dispose();
  }
  return undefined;
}

/** What is still on the host of this stack's machines and network. */
export function leftovers(outputs: LocalOutputs): string[] {
  const left: string[] = [];
  const links = run("ip", ["-o", "link", "show"]).stdout;
  if (links.includes(` ${outputs.bridge}:`)) left.push(`bridge ${outputs.bridge}`);
  const namespaces = run("ip", ["netns", "list"]).stdout;
  for (const h of allMachines(outputs)) {
    if (links.includes(` ${h.veth}@`) || links.includes(` ${h.veth}:`)) left.push(`link ${h.veth}`);
    if (namespaces.split("\n").some((l) => l.split(" ")[0] === h.netns)) left.push(`namespace ${h.netns}`);
    if (fs.existsSync(dirOf(outputs, h))) left.push(`files ${dirOf(outputs, h)}`);
    if (fs.existsSync(nspawnLockFile(dirOf(outputs, h)))) left.push(`lock ${nspawnLockFile(dirOf(outputs, h))}`);
  }
  if (outputs.subnet && run("ip", ["route", "show", outputs.subnet]).stdout.trim() !== "") left.push(`route ${outputs.subnet}`);
  const nspawn = run("pgrep", ["-f", `systemd-nspawn.*${outputs.bridge}`]).stdout.trim();
  if (nspawn) left.push(`nspawn processes ${nspawn.split("\n").join(" ")}`);
  return left;
}

/** Removes every machine, the bridge and the guard route on the host, and drops the state. */
function cleanUpLocally(outputs: LocalOutputs): void {
  for (const h of allMachines(outputs)) {
    const spec = { dir: dirOf(outputs, h), netns: h.netns, veth: h.veth } as MachineSpec;
    const r = run("bash", ["-c", `set -u\n${machineCleanupScript(spec)}`], { timeoutMs: 60_000 });
    say(`${h.name}: ${r.status === 0 ? "removed" : `cleanup exit ${r.status}: ${r.stderr.trim().split("\n").pop()}`}`);
  }
  const net = run("bash", ["-c", networkDeleteScript({ bridge: outputs.bridge, hostCidr: "", subnet: outputs.subnet ?? "0.0.0.0/32", owner: "" })], { timeoutMs: 30_000 });
  say(net.stdout.trim().split("\n").pop() ?? "bridge removed");
  try {
    fs.rmdirSync(`${STATE_DIR}/${outputs.bridge}`);
  } catch {
    // not empty or not there: reported by the leftovers check
  }
  const rm = pulumi(["stack", "rm", "--force", "--yes", "--preserve-config"], 120_000);
  say(rm.status === 0 ? "stack state removed (the next scripts/local-up.sh starts from nothing)" : `pulumi stack rm failed: ${rm.stderr.trim()}`);
}

function main(): number {
  const out = pulumi(["stack", "output", "--json", "--show-secrets"], 120_000);
  const outputs = out.status === 0 ? (JSON.parse(out.stdout || "{}") as Partial<LocalOutputs>) : {};
  if (!outputs.bridge || !outputs.hosts) {
    say("the stack has no machines in its outputs: pulumi destroy");
    const d = pulumi(["destroy", "--yes", "--skip-preview"], 600_000);
    process.stdout.write(d.stdout.split("\n").slice(-6).join("\n"));
    return d.status === 0 ? 0 : 1;
  }
  const full = outputs as LocalOutputs;
  const problem = wholeStackProblem(full);
  if (problem === undefined) {
    say("every machine answers: pulumi destroy");
    const d = pulumi(["destroy", "--yes", "--skip-preview"], 600_000);
    if (d.status !== 0) {
      say(`pulumi destroy failed (exit ${d.status}); cleaning up on the host instead`);
      cleanUpLocally(full);
    }
  } else {
    say(`${problem}: cleaning up on the host, without SSH to machines that are not there`);
    cleanUpLocally(full);
  }
  const left = leftovers(full);
  if (left.length > 0) {
    console.error(`hakube: local-down left: ${left.join("; ")}`);
    return 1;
  }
  say("nothing left (machines, namespaces, links, bridge, route)");
  return 0;
}

if (require.main === module) {
  try {
    process.exitCode = main();
  } catch (e) {
    console.error(`hakube: local-down: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
