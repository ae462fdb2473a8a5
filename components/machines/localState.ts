// What a refresh finds of a stack's local machines, kept in the state: per machine a
// repair generation, "0" while nothing was ever found wrong, "<n> <reason>" once the n-th
// problem was seen (it only moves forward). The machine's update script carries the
// generation, so a refresh that finds a machine gone makes the next `pulumi up` make it
// anew (or boot it again), and a refresh that finds everything in order changes nothing.
import * as pulumi from "@pulumi/pulumi";
import { bump } from "../observe/observe";

export interface LocalMachineFacts {
  readonly name: string;
  /** The machine's root file system; its pid and instance files sit beside it. */
  readonly dir: string;
  readonly netns: string;
}

interface StateInputs {
  readonly machines: readonly LocalMachineFacts[];
}

/** The state of a {@link LocalMachinesState}: the machines looked at, and their repair generations. */
export interface LocalMachinesStateOutputs extends StateInputs {
  readonly repairs: Record<string, string>;
}

/**
 * What is wrong with a local machine, read on this host, or undefined when it runs:
 * its files, its instance token, its nspawn process (the pid file names a process
 * started on its folder) and its network namespace. Pure of Pulumi; reads only files.
 */
export function localMachineProblem(m: LocalMachineFacts): string | undefined {
  // Required here: the provider runs this serialized, outside this module.
  const fs = require("fs") as typeof import("fs");
  if (!fs.existsSync(`${m.dir}/root`) || !fs.existsSync(`${m.dir}.instance`)) {
    return `machine ${m.name} is gone (no files in ${m.dir})`;
  }
  let cmdline = "";
  try {
    const pid = fs.readFileSync(`${m.dir}.pid`, "utf8").trim();
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    cmdline = "";
  }
  if (!cmdline.includes(`--directory=${m.dir} `)) {
    return `machine ${m.name} is not running (no systemd-nspawn on ${m.dir})`;
  }
  if (!fs.existsSync(`/run/netns/${m.netns}`)) {
    return `machine ${m.name} has lost its network namespace ${m.netns}`;
  }
  return undefined;
}

/** The outputs after a look at the machines: unchanged (the same object) when all run. */
export function observeLocalMachines(state: LocalMachinesStateOutputs, problemOf: (m: LocalMachineFacts) => string | undefined): LocalMachinesStateOutputs {
  let changed = false;
  const repairs: Record<string, string> = { ...state.repairs };
  for (const m of state.machines) {
    const problem = problemOf(m);
    if (problem !== undefined) {
      repairs[m.name] = bump(repairs[m.name], problem);
      changed = true;
    }
  }
  return changed ? { ...state, repairs } : state;
}

function sameMachines(a: readonly LocalMachineFacts[] | undefined, b: readonly LocalMachineFacts[]): boolean {
  return JSON.stringify(a ?? []) === JSON.stringify(b);
}

/** Serialized into the state by Pulumi: captures only the pure functions above. */
export const localMachinesStateProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: LocalMachinesStateOutputs, news: StateInputs) {
    return { changes: !sameMachines(olds.machines, news.machines), replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs: StateInputs) {
    const repairs = Object.fromEntries(inputs.machines.map((m) => [m.name, "0"]));
    return { id: "local-machines-state", outs: { machines: inputs.machines, repairs } };
  },
  async update(_id: string, olds: LocalMachinesStateOutputs, news: StateInputs) {
    // Machines kept keep their generation; new ones start at "0".
    const repairs = Object.fromEntries(news.machines.map((m) => [m.name, olds.repairs?.[m.name] ?? "0"]));
    return { outs: { machines: news.machines, repairs } };
  },
  async read(id: string, props: LocalMachinesStateOutputs) {
    return { id, props: observeLocalMachines(props, localMachineProblem) };
  },
};

/**
 * One per LocalMachines: a refresh (`pulumi up --refresh`, `pulumi preview --refresh`)
 * looks at every machine on this host and records what it found missing.
 */
export class LocalMachinesState extends pulumi.dynamic.Resource {
  /** Per machine name: "0", or "<n> <reason>" after the n-th problem a refresh found. */
  // `declare`: no class field, which (ES2022) would overwrite the output the base class set.
  declare public readonly repairs: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: { readonly machines: readonly LocalMachineFacts[] }, opts?: pulumi.CustomResourceOptions) {
    super(localMachinesStateProvider, name, { machines: args.machines, repairs: undefined }, opts);
  }
}
