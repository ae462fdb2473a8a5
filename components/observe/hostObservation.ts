// Drift made visible: one HostObservation per control-plane host. A refresh
// (`pulumi preview --refresh`, `pulumi up --refresh`) looks at the host over SSH: a
// different machine behind the name (its /etc/machine-id), a host that does not answer,
// a service that is not running or a file a step wrote that changed. What it finds moves a
// repair generation in the state, which the host's steps carry in their script header, so
// exactly those steps show in the preview and run in the update. A refresh that finds
// nothing returns the state unchanged: a healthy cluster stays "no changes".
import * as pulumi from "@pulumi/pulumi";
import { Host, HostConnection } from "../types";
import { judge, Known, noRepairs, OBSERVE_SCRIPT, Observation, parseObservation, Repairs } from "./observe";
import { ObservedNetwork, runWhereRoutable, SshTarget, sshTarget } from "./ssh";

export type { ObservedNetwork } from "./ssh";

interface ObservationInputs {
  readonly name: string;
  readonly connection: SshTarget;
  readonly instance: string;
  readonly network?: ObservedNetwork;
}

interface ObservationOutputs extends ObservationInputs, Known {}

/** Looks at the host: its observation, or why it could not be looked at. Never throws. */
async function look(inputs: ObservationInputs, attempts: number): Promise<Observation | string> {
  let last = "";
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 2000));
    const result = await runWhereRoutable(inputs.connection, inputs.network, OBSERVE_SCRIPT, 20000);
    if ("unreachable" in result && !result.unreachable.startsWith("over SSH:")) return `unreachable: ${result.unreachable}`;
    const seen = "stdout" in result ? parseObservation(result.stdout) : undefined;
    if (seen) return seen;
    last = "unreachable" in result ? result.unreachable : "over SSH: no observation in the output";
  }
  return `unreachable ${last}`;
}

function connectionKey(c: SshTarget | undefined): string {
  return JSON.stringify([c?.host, c?.port ?? 22, c?.user ?? "root", c?.privateKey, c?.proxy?.host, c?.proxy?.port, c?.proxy?.user, c?.proxy?.privateKey]);
}

function outputs(inputs: ObservationInputs, known: Known): ObservationOutputs {
  return {
    name: inputs.name,
    connection: inputs.connection,
    instance: inputs.instance,
    ...(inputs.network ? { network: inputs.network } : {}),
    machineId: known.machineId,
    repairs: known.repairs,
  };
}

/** Serialized into the state by Pulumi. */
export const hostObservationProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: ObservationOutputs, news: ObservationInputs) {
    const changes =
      olds.instance !== news.instance ||
      connectionKey(olds.connection) !== connectionKey(news.connection) ||
      JSON.stringify(olds.network ?? null) !== JSON.stringify(news.network ?? null);
    return { changes, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs: ObservationInputs) {
    // A host that does not answer yet is recorded without a machine id; its steps dial with
    // their own retries and fail clearly if it stays away.
    const seen = await look(inputs, 10);
    const known: Known = { machineId: typeof seen === "string" ? "" : seen.machineId, repairs: noRepairs() };
    return { id: `observe-${inputs.name}`, outs: outputs(inputs, known) };
  },
  async update(_id: string, olds: ObservationOutputs, news: ObservationInputs) {
    // A new instance or connection: remember the machine now behind the name. Its steps run
    // again anyway (the instance is in their header), so nothing is bumped here.
    const seen = await look(news, 10);
    const known: Known = {
      machineId: typeof seen === "string" ? olds.machineId ?? "" : seen.machineId,
      repairs: { ...noRepairs(), ...(olds.repairs ?? {}) },
    };
    return { outs: outputs(news, known) };
  },
  async read(id: string, props: ObservationOutputs) {
    if (!props.connection?.privateKey) {
      return { id, props }; // nothing to look with (a password-only connection)
    }
    const known: Known = { machineId: props.machineId ?? "", repairs: { ...noRepairs(), ...(props.repairs ?? {}) } };
    const after = judge(known, await look(props, 3));
    return { id, props: after === known ? props : { ...props, machineId: after.machineId, repairs: after.repairs } };
  },
};

/**
 * Looks at one host on refresh (see the module comment). `repairs` per component:
 * "0", or "<n> <reason>" after the n-th problem found; `instance` combines the host's
 * instance with its host-wide repairs, so every step on the host runs again after one.
 */
export class HostObservation extends pulumi.dynamic.Resource {
  // `declare`: no class field, which (ES2022) would overwrite the output the base class set.
  declare public readonly machineId: pulumi.Output<string>;
  declare public readonly repairs: pulumi.Output<Repairs>;

  constructor(name: string, args: { readonly host: Host; readonly network?: ObservedNetwork }, opts?: pulumi.CustomResourceOptions) {
    const connection = pulumi.output(args.host.connection).apply((c: pulumi.Unwrap<HostConnection>) => sshTarget(c));
    super(
      hostObservationProvider,
      name,
      {
        name: args.host.name,
        connection: pulumi.secret(connection),
        instance: args.host.instance ?? "",
        network: args.network,
        machineId: undefined,
        repairs: undefined,
      },
      { ...opts, additionalSecretOutputs: ["connection"] },
    );
  }

  /** The host as its steps should see it: instance and repairs include what the observation found. */
  observed(host: Host): Host {
    return {
      ...host,
      instance: pulumi.all([host.instance ?? "", this.repairs]).apply(([instance, r]) =>
        r?.host && r.host !== "0" ? `${instance} repair ${r.host}` : instance,
      ),
      repairs: this.repairs,
    };
  }
}
