import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import * as tls from "@pulumi/tls";
import * as fs from "fs";
import * as path from "path";
import { execFileSync } from "child_process";
import { createHash } from "crypto";
import { Host } from "../types";
import { cidrsOverlap, cidrSize, formatIpv4, parseCidr } from "../net";
import { invalid, requireCidr, requireInteger } from "../validation";
import {
  baseImageScript,
  defaultImagePackages,
  HOST_KEY_LINE,
  machineCreateScript,
  machineDeleteScript,
  machineUpdateScript,
  MachineSpec,
  bridgeOwnerAlias,
  networkCreateScript,
  ownerOfAlias,
  networkDeleteScript,
} from "./localRender";
import { LocalMachinesState } from "./localState";

/** Machines of one kind (e.g. control plane, etcd), named `<namePrefix>-1` ... */
export interface LocalMachineGroup {
  readonly namePrefix: string;
  /** 0 to 19. */
  readonly count: number;
  /**
   * Machines that run kubelet and containers (worker nodes): each boot prepares what
   * kubelet needs of an nspawn container (see `nodePrepUnit`), and `nodeRuntime` gives the
   * settings their WorkerPool needs. @default false
   */
  readonly nodes?: boolean;
}

export interface LocalMachinesArgs {
  /** Number of machines (one group; or give `groups`). */
  readonly count?: number;
  /** Machine names are `<namePrefix>-1` ... @default "node" */
  readonly namePrefix?: string;
  /**
   * Several kinds of machines on one bridge, instead of `count` and `namePrefix`. Group g
   * takes the addresses from .(11 + 20 g) up, so growing one group never moves another's
   * machines. E.g. `[{ namePrefix: "cp", count: 3 }, { namePrefix: "etcd", count: 3 }]`:
   * cp-1..3 at .11-.13, etcd-1..3 at .31-.33.
   */
  readonly groups?: readonly LocalMachineGroup[];
  /** Private subnet of the bridge; the host takes .1, machines .11 upwards. @default "10.213.7.0/24" */
  readonly subnet?: string;
  /** Bridge name (at most 15 characters). @default "hk" + 6 hex of the Pulumi project and stack */
  readonly bridgeName?: string;
  /** @default { suite: "bookworm", mirror: "http://deb.debian.org/debian", cacheDir: "/var/cache/hakube/images" } */
  readonly image?: { readonly suite?: string; readonly mirror?: string; readonly cacheDir?: string; readonly extraPackages?: readonly string[] };
  /** Where machine root file systems live. @default "/var/lib/hakube/machines" */
  readonly stateDir?: string;
  /** @default 120 */
  readonly bootTimeoutSeconds?: number;
}

/** What the fault-injection tests need to know about a machine. */
export interface LocalMachine extends Host {
  readonly address: string;
  /** Host-side veth: `ip link set <veth> down` cuts the machine off the network. */
  readonly veth: string;
  readonly netns: string;
  /** The machine's root file system on the host (its pid file and log sit beside it). */
  readonly dir: string;
  /** Its SSH host key (public), which every connection to it verifies. */
  readonly hostKey: pulumi.Output<string>;
}

/**
 * N systemd-nspawn machines from a cached Debian image, each in its own network
 * namespace on an isolated bridge with a private subnet and no route out, with sshd and
 * a per-stack SSH key (a secret). Yields `Host`s. Needs root. `pulumi destroy` removes
 * the machines, namespaces, links and the bridge.
 */
export class LocalMachines extends pulumi.ComponentResource {
  /** Every machine, group by group. */
  public readonly hosts: LocalMachine[];
  /** The machines of each group, by name prefix. */
  public readonly groups: Readonly<Record<string, LocalMachine[]>>;
  public readonly bridge: string;
  public readonly hostAddress: string;
  /** What the last refresh found of the machines (their repair generations). */
  public readonly state: LocalMachinesState;
  /**
   * What kubelet and containerd need to run inside these machines (for a WorkerPool's
   * `runtime`): cgroup v1 with the cgroupfs driver, the kernel settings left alone, no
   * negative oom_score_adj (the host's bounding set lacks CAP_SYS_RESOURCE) and no session
   * keyrings (nspawn's seccomp filter refuses them).
   */
  public readonly nodeRuntime = {
    cgroupDriver: "cgroupfs",
    allowCgroupV1: true,
    protectKernelDefaults: false,
    restrictOomScoreAdj: true,
    noNewKeyring: true,
  } as const;
  /** The stack's SSH private key (OpenSSH format, secret). */
  public readonly sshPrivateKey: pulumi.Output<string>;

  constructor(name: string, args: LocalMachinesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:LocalMachines", name, {}, opts);
    if (typeof process.getuid === "function" && process.getuid() !== 0) {
      invalid(this, "LocalMachines", `uid ${process.getuid()}`, "root: creating namespaces, links and nspawn machines needs it (run with sudo)");
    }
    if ((args.groups === undefined) === (args.count === undefined)) {
      invalid(this, "count", args.count ?? null, "either count (with namePrefix) or groups, not both");
    }
    const groups: LocalMachineGroup[] = args.groups
      ? args.groups.map((g, i) => ({ namePrefix: g.namePrefix, count: requireInteger(this, `groups[${i}].count`, g.count, 0, 19), nodes: g.nodes }))
      : [{ namePrefix: args.namePrefix ?? "node", count: requireInteger(this, "count", args.count as number, 1, 50) }];
    if (groups.length === 0 || groups.length > 4) {
      invalid(this, "groups", `${groups.length} group(s)`, "1 to 4 groups");
    }
    groups.forEach((g, i) => {
      if (!/^[a-z][a-z0-9-]{0,20}$/.test(g.namePrefix)) {
        invalid(this, args.groups ? `groups[${i}].namePrefix` : "namePrefix", g.namePrefix, "a short lowercase DNS label");
      }
      if (groups.findIndex((o) => o.namePrefix === g.namePrefix) !== i) {
        invalid(this, `groups[${i}].namePrefix`, g.namePrefix, "a prefix no other group has");
      }
    });
    const count = groups.reduce((a, g) => a + g.count, 0);
    const subnet = requireCidr(this, "subnet", args.subnet ?? "10.213.7.0/24");
    const highest = groups.length === 1 ? 11 + count : 11 + 20 * (groups.length - 1) + groups[groups.length - 1].count;
    if (cidrSize(subnet) < highest + 5) {
      invalid(this, "subnet", subnet.text, `a subnet with room for machines up to .${highest} (a /24 is plenty)`);
    }
    const id = createHash("sha256").update(`${pulumi.getProject()}/${pulumi.getStack()}/${name}`).digest("hex").slice(0, 6);
    this.bridge = args.bridgeName ?? `hk${id}`;
    if (!/^[A-Za-z0-9_-]{1,15}$/.test(this.bridge)) {
      invalid(this, "bridgeName", this.bridge, "an interface name of 1 to 15 letters, digits, '-' or '_'");
    }
    const bootTimeoutSeconds = requireInteger(this, "bootTimeoutSeconds", args.bootTimeoutSeconds ?? 120, 5, 1800);
    const stateDir = args.stateDir ?? "/var/lib/hakube/machines";
    // Who holds the bridge: this project directory, state backend and stack. A second
    // checkout of the same project computes the same bridge name, and must not take it.
    const rootDir = pulumi.runtime.getRootDirectory?.() ?? process.cwd();
    const root = fs.existsSync(rootDir) ? fs.realpathSync(rootDir) : path.resolve(rootDir);
    const ownerId = createHash("sha256")
      .update(`${root}\n${process.env.PULUMI_BACKEND_URL ?? ""}\n${pulumi.getStack()}\n${name}`)
      .digest("hex")
      .slice(0, 12);
    const owner = bridgeOwnerAlias(ownerId, pulumi.getStack(), root);
    preflight(this, subnet.text, this.bridge, ownerId, `${stateDir}/${this.bridge}`);
    const packages = [...defaultImagePackages, ...(args.image?.extraPackages ?? [])];
    const suite = args.image?.suite ?? "bookworm";
    const mirror = args.image?.mirror ?? "http://deb.debian.org/debian";
    const cacheDir = args.image?.cacheDir ?? "/var/cache/hakube/images";
    const imageKey = `${suite}-${createHash("sha256").update(JSON.stringify([suite, mirror, packages])).digest("hex").slice(0, 12)}`;
    const hostAddress = formatIpv4(subnet.network + 1);
    this.hostAddress = hostAddress;

    const key = new tls.PrivateKey(
      `${name}-ssh-key`,
      { algorithm: "ED25519" },
      { parent: this, additionalSecretOutputs: ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"] },
    );
    this.sshPrivateKey = pulumi.secret(key.privateKeyOpenssh);
    const image = new command.local.Command(
      `${name}-image`,
      {
        create: baseImageScript({ cacheDir, suite, mirror, packages, key: imageKey }),
        interpreter: ["/bin/bash", "-c"],
        triggers: [imageKey],
      },
      { parent: this },
    );
    const network = { bridge: this.bridge, hostCidr: `${hostAddress}/${subnet.prefix}`, subnet: subnet.text, owner };
    const bridge = new command.local.Command(
      `${name}-network`,
      { create: networkCreateScript(network), delete: networkDeleteScript(network), interpreter: ["/bin/bash", "-c"] },
      { parent: this },
    );

    // The first group keeps the names and addresses of a single-group stack.
    const specs = groups.flatMap((g, gi) =>
      Array.from({ length: g.count }, (_, i): MachineSpec & { group: string } => {
        const machineName = `${g.namePrefix}-${i + 1}`;
        return {
          group: g.namePrefix,
          name: machineName,
          image: `${cacheDir}/${imageKey}`,
          dir: `${stateDir}/${this.bridge}/${machineName}`,
          netns: gi === 0 ? `${this.bridge}-${i + 1}` : `${this.bridge}-g${gi}-${i + 1}`,
          veth: `${this.bridge}${"vwxy"[gi]}${i + 1}`,
          bridge: this.bridge,
          address: formatIpv4(subnet.network + 11 + 20 * gi + i),
          prefixLength: subnet.prefix,
          gateway: hostAddress,
          bootTimeoutSeconds,
          ...(g.nodes ? { node: true } : {}),
        };
      }),
    );
    // A refresh looks at the machines on this host: one found gone is made anew by the
    // next `pulumi up` (its update script carries the repair), one found stopped is booted.
    this.state = new LocalMachinesState(
      `${name}-state`,
      { machines: specs.map((m) => ({ name: m.name, dir: m.dir, netns: m.netns })) },
      { parent: this },
    );
    const repairs = this.state.repairs;
    this.hosts = specs.map(({ group: _group, ...spec }) => {
      const machineName = spec.name;
      const address = spec.address;
      const machine = new command.local.Command(
        `${name}-${machineName}`,
        {
          create: machineCreateScript(spec),
          update: repairs.apply((r) => machineUpdateScript(spec, r?.[machineName] && r[machineName] !== "0" ? `repair ${r[machineName]}` : "")),
          delete: machineDeleteScript(spec),
          interpreter: ["/bin/bash", "-c"],
          environment: { HAKUBE_PUBLIC_KEY: key.publicKeyOpenssh },
        },
        // The old machine goes first: both use the same folder, namespace and address.
        { parent: this, dependsOn: [image, bridge], deleteBeforeReplace: true },
      );
      const hostKey = machine.stdout.apply((out) => {
        const k = HOST_KEY_LINE.exec(out)?.[1];
        if (!k) throw new Error(`local machine ${machineName}: its create or update printed no host key (hakube-hostkey line); its output: ${out.slice(-500)}`);
        return k;
      });
      return {
        name: machineName,
        address,
        veth: spec.veth,
        netns: spec.netns,
        dir: spec.dir,
        instance: machine.stdout.apply((out) => /^hakube-instance (\S+)$/m.exec(out)?.[1] ?? ""),
        hostKey,
        // The connection waits for the machine to answer SSH, and verifies its host key.
        connection: pulumi.secret(
          hostKey.apply((k) => ({ host: address, user: "root", privateKey: key.privateKeyOpenssh, hostKey: k, dialErrorLimit: 30 })),
        ),
      };
    });
    this.groups = Object.fromEntries(groups.map((g) => [g.namePrefix, this.hosts.filter((_, i) => specs[i].group === g.namePrefix)]));
    this.registerOutputs({ bridge: this.bridge, addresses: this.hosts.map((h) => h.address) });
  }
}

/**
 * Checks at preview what would make creation fail half-way: missing tools or kernel
 * features, and a subnet already routed on this host (other than by our own bridge).
 */
function preflight(parent: pulumi.Resource, subnetText: string, bridge: string, ownerId: string, machinesDir: string): void {
  for (const tool of ["/usr/bin/systemd-nspawn", "/usr/sbin/debootstrap", "/usr/sbin/ip", "/usr/bin/setsid"]) {
    if (!fs.existsSync(tool) && !fs.existsSync(tool.replace("/usr", ""))) {
      invalid(parent, "LocalMachines", tool, "installed (Debian packages systemd-container, debootstrap, iproute2, util-linux; scripts/local-up.sh installs them)");
    }
  }
  if (!fs.existsSync("/proc/self/ns/net")) {
    invalid(parent, "LocalMachines", "no network namespaces", "a kernel with network namespaces (CONFIG_NET_NS)");
  }
  const holder = bridgeHeldByOther(bridge, ownerId, machinesDir);
  if (holder) {
    invalid(
      parent,
      "bridgeName",
      bridge,
      `a bridge no other stack holds: ${holder}; tear that stack down first (its scripts/local-down.sh), or give this one its own hakube:bridgeName and hakube:subnet`,
    );
  }
  let routes = "";
  try {
    routes = execFileSync("ip", ["-4", "-o", "route", "show"], { encoding: "utf8" });
  } catch {
    return;
  }
  const conflict = findSubnetConflict(routes, subnetText, bridge);
  if (conflict) {
    invalid(parent, "subnet", subnetText, `a subnet not already in use on this host (${conflict}); pick another, e.g. 10.213.8.0/24`);
  }
}

/** Whether the nspawn process of the machine in `dir` runs (its pid file, beside the folder, names a live process). */
export function machineProcessRunning(dir: string): boolean {
  try {
    const pid = Number(fs.readFileSync(`${dir}.pid`, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 && fs.existsSync(`/proc/${pid}`);
  } catch {
    return false;
  }
}

/**
 * Another stack's hold on the bridge, described, or undefined: the bridge exists, its
 * alias names another owner, and machines of it are running (a pid file of a live
 * process in its machines folder). A foreign alias with nothing running is stale and is
 * taken over.
 */
function bridgeHeldByOther(bridge: string, ownerId: string, machinesDir: string): string | undefined {
  let alias = "";
  try {
    alias = fs.readFileSync(`/sys/class/net/${bridge}/ifalias`, "utf8").trim();
  } catch {
    return undefined; // no such bridge
  }
  const other = ownerOfAlias(alias);
  if (other === undefined || other === ownerId) return undefined;
  const running = (fs.existsSync(machinesDir) ? fs.readdirSync(machinesDir) : [])
    .filter((f) => f.endsWith(".pid"))
    .map((f) => f.replace(/\.pid$/, ""))
    .filter((name) => machineProcessRunning(`${machinesDir}/${name}`));
  if (running.length === 0) return undefined;
  return `${bridge} is held by ${alias.replace(/^hakube /, "")} (machines running: ${running.join(", ")})`;
}

/** A route of `ip -4 -o route show` output that overlaps the subnet, other than our bridge's. */
export function findSubnetConflict(routes: string, subnetText: string, bridge: string): string | undefined {
  const wanted = parseCidr(subnetText);
  if (!wanted) return undefined;
  for (const line of routes.split("\n").filter(Boolean)) {
    const [dest] = line.split(" ");
    const dev = /\bdev (\S+)/.exec(line)?.[1];
    const cidr = dest === "default" ? undefined : parseCidr(dest.includes("/") ? dest : `${dest}/32`);
    if (cidr && dev !== bridge && cidrsOverlap(cidr, wanted)) {
      return `${dest} is routed via ${dev}`;
    }
  }
  return undefined;

}
