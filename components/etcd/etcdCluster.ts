import * as pulumi from "@pulumi/pulumi";
import { Host } from "../types";
import { ClusterPki } from "../pki/clusterPki";
import { BinarySource, defaultBinarySource } from "../binaries/source";
import { installBinaries, planBinaries } from "../binaries/install";
import { gateStep, hostStep, onceStep, StepFile } from "../remote/hostStep";
import { invalid, requireEtcdMemberCount, requireHosts, requireInteger, requireVersion } from "../validation";
import { MINIMUM_ETCD_VERSION, parseVersion } from "../version";
import {
  clientUrl,
  ETCD_PKI,
  ETCDCTL_ENV,
  etcdCreateScript,
  etcdctlEnv,
  etcdDeleteScript,
  etcdLeaveScript,
  etcdGateScript,
  EtcdMember,
  EtcdSettings,
  etcdUnit,
  etcdUpdateScript,
  initialCluster,
  MEMBER_ENV,
  memberEnv,
} from "./render";
import { INITIAL_CLUSTER_ENV, initialClusterEnv } from "./member";
import { EtcdMembership } from "./membership";
import type { ObservedNetwork } from "../observe/hostObservation";
import * as command from "@pulumi/command";
import { retryFunction, scriptPrologue, sha256 } from "../remote/files";
import {
  isBackupRequest,
  RESTORE_KEY,
  RESTORE_KEY_CERT,
  restoreCheckScript,
  restoreDataScript,
  restoreFinishScript,
  restoreStartScript,
  restoreStopScript,
} from "../backup/restore";
import type { KeyPair } from "../pki/clusterPki";

/** A restore of every member from one backup in this `pulumi up` (see components/backup/restore.ts). */
export interface EtcdRestoreRequest {
  /** "latest", or a backup's name (etcd-<time>-r<revision>). */
  readonly from: string;
  /** `CONFIRM_HEALTHY` to restore over a cluster that still has quorum. */
  readonly confirm?: string;
  /** The backup program and its configuration (`backupFiles`), and the key backups are encrypted to. */
  readonly files: readonly StepFile[];
  readonly key: KeyPair;
  /** The control-plane hosts: their apiservers and controllers stop for the restore and start after it. */
  readonly apiHosts: readonly Host[];
}

export const DEFAULT_ETCD_VERSION = "v3.6.16";

export interface EtcdClusterArgs {
  /** One member per host: 3 or 5 (7 is accepted); the control-plane hosts (stacked) or hosts of their own. */
  readonly hosts: readonly Host[];
  /** Supplies the etcd CA and the member certificates. */
  readonly pki: ClusterPki;
  /** @default "v3.6.16" */
  readonly version?: string;
  /** @default { kind: "release" } */
  readonly binaries?: BinarySource;
  /** Leader heartbeat. @default 100 */
  readonly heartbeatIntervalMs?: number;
  /** At least 5 heartbeats (etcd's own rule). @default 1000 */
  readonly electionTimeoutMs?: number;
  /** @default 2379 */
  readonly clientPort?: number;
  /** @default 2380 */
  readonly peerPort?: number;
  /** @default "/var/lib/etcd" */
  readonly dataDir?: string;
  /** How long the readiness gate waits for every member to be healthy. @default 300 */
  readonly readyTimeoutSeconds?: number;
  /**
   * Stacked topology: a rolling restart of a member first stops the kube-apiserver on the
   * same host (it drains through its shutdown delay and the balancer stops using it), and
   * starts it again after the member is healthy, waiting `settleSeconds` for the
   * balancer to use it again. @default undefined (nothing else is touched)
   */
  readonly localApiServer?: { readonly securePort: number; readonly settleSeconds: number };
  /**
   * How a resize is checked at preview (see {@link EtcdMembership}): the argument a refusal
   * names, and on a local stack the bridge the hosts are reached through.
   * @default { argument: "hosts" }
   */
  readonly membership?: { readonly argument?: string; readonly network?: ObservedNetwork };
  /** Restore every member from a backup in this `pulumi up` (HaControlPlane sets it from `backups.restore`). */
  readonly restore?: EtcdRestoreRequest;
}

/**
 * An etcd cluster with peer and client TLS (client-certificate auth), one systemd unit
 * per member. `ready` completes when every member reports healthy; dependents wait on it.
 * A change rolls through the members one at a time, each waiting until it is healthy.
 */
export class EtcdCluster extends pulumi.ComponentResource {
  /** `https://<address>:<clientPort>` per member. */
  public readonly clientEndpoints: pulumi.Output<string[]>;
  /** Completes when every member reports healthy. */
  public readonly ready: pulumi.Resource;
  public readonly memberNames: string[];
  /** The member hosts, in order. */
  public readonly hosts: readonly Host[];
  public readonly version: string;
  public readonly clientPort: number;
  /** The deployed member set (checked at preview when it changes). */
  public readonly membership: EtcdMembership;
  /** With a restore: completes when the restored cluster is healthy and the stale apiserver entries are gone. */
  public readonly restored?: pulumi.Resource;
  /** With a restore: the restore's manifest (the backup restored from). */
  public readonly restoredFrom?: pulumi.Output<string>;
  /** With a restore: the steps that start the API side again. */
  public readonly restoreStarted?: pulumi.Resource[];
  /** With a restore: what makes its one-off steps run (a new request). */
  public readonly restoreTriggers?: pulumi.Input<string>[];

  constructor(name: string, args: EtcdClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:EtcdCluster", name, {}, opts);
    requireHosts(this, "hosts", args.hosts);
    requireEtcdMemberCount(this, "hosts", args.hosts.length);
    this.version = requireVersion(this, "version", args.version ?? DEFAULT_ETCD_VERSION, parseVersion(MINIMUM_ETCD_VERSION)).text;
    const heartbeatIntervalMs = requireInteger(this, "heartbeatIntervalMs", args.heartbeatIntervalMs ?? 100, 10, 10000);
    const electionTimeoutMs = requireInteger(this, "electionTimeoutMs", args.electionTimeoutMs ?? 1000, 50, 50000);
    if (electionTimeoutMs < 5 * heartbeatIntervalMs) {
      invalid(this, "electionTimeoutMs", electionTimeoutMs, `at least 5 x heartbeatIntervalMs (${5 * heartbeatIntervalMs})`);
    }
    const clientPort = requireInteger(this, "clientPort", args.clientPort ?? 2379, 1, 65533);
    this.clientPort = clientPort;
    const peerPort = requireInteger(this, "peerPort", args.peerPort ?? 2380, 1, 65535);
    if (peerPort === clientPort || peerPort === clientPort + 2) {
      invalid(this, "peerPort", peerPort, `a port other than clientPort (${clientPort}) and the metrics port (${clientPort + 2})`);
    }
    const dataDir = args.dataDir ?? "/var/lib/etcd";
    if (!/^\/[A-Za-z0-9._\/-]+$/.test(dataDir)) {
      invalid(this, "dataDir", dataDir, "an absolute path");
    }
    const readyAttempts = Math.ceil(requireInteger(this, "readyTimeoutSeconds", args.readyTimeoutSeconds ?? 300, 10, 3600) / 2);
    for (const host of args.hosts) {
      if (!args.pki.etcdServer[host.name]) {
        invalid(this, "pki", host.name, "a ClusterPki whose etcdHosts include every etcd host");
      }
    }
    const plan = planBinaries(this, "binaries", "etcd", this.version, ["etcd", "etcdctl", "etcdutl"], args.binaries ?? defaultBinarySource);
    const settings: EtcdSettings = { clusterToken: name, dataDir, clientPort, peerPort, heartbeatIntervalMs, electionTimeoutMs };
    this.memberNames = args.hosts.map((h) => h.name);
    this.hosts = args.hosts;

    const members = pulumi
      .all(args.hosts.map((h) => h.address))
      .apply((addresses) => args.hosts.map((h, i): EtcdMember => ({ name: h.name, address: addresses[i] })));
    this.clientEndpoints = members.apply((ms) => ms.map((m) => clientUrl(m, settings)));
    const sharedFiles: StepFile[] = [
      { path: `${ETCD_PKI}/ca.crt`, mode: "0644", content: args.pki.etcdCaBundle },
      { path: `${ETCD_PKI}/healthcheck-client.crt`, mode: "0644", content: args.pki.etcdHealthcheckClient.certPem },
      { path: `${ETCD_PKI}/healthcheck-client.key`, mode: "0600", content: args.pki.etcdHealthcheckClient.keyPem },
      { path: ETCDCTL_ENV, mode: "0644", content: members.apply((ms) => etcdctlEnv(ms, settings)) },
    ];

    // The member set, checked at preview against the live cluster when it changes; every
    // step waits for it, so a refused resize touches nothing.
    this.membership = new EtcdMembership(
      `${name}-membership`,
      {
        argument: args.membership?.argument ?? "hosts",
        clientPort,
        members: args.hosts.map((h) => ({ name: h.name, connection: h.connection })),
        network: args.membership?.network,
      },
      { parent: this },
    );

    // Members are chained: a change restarts one member, waits until it is healthy, then
    // moves on, so quorum is never lost. On creation each step only starts its member. A
    // new member (a resize) joins as a learner at the end of the chain, is promoted, and
    // only then does the next one join; a member removed leaves the cluster in its delete
    // (last member first), before it is stopped.
    const binaries = args.hosts.map((host) =>
      installBinaries(`${name}-${host.name}-binaries`, host, "etcd", plan, { parent: this, dependsOn: [this.membership] }),
    );
    const restore = args.restore ? this.restoreSteps(name, args.hosts, args.restore, binaries, members, settings, sharedFiles) : undefined;
    let previous: pulumi.Resource | undefined;
    const steps = args.hosts.map((host, i) => {
      const binaries_ = binaries[i];
      const step = hostStep(
        `${name}-${host.name}`,
        {
          host,
          files: [
            ...sharedFiles,
            { path: `${ETCD_PKI}/server.crt`, mode: "0644", content: args.pki.etcdServer[host.name].certPem },
            { path: `${ETCD_PKI}/server.key`, mode: "0600", content: args.pki.etcdServer[host.name].keyPem },
            { path: `${ETCD_PKI}/peer.crt`, mode: "0644", content: args.pki.etcdPeer[host.name].certPem },
            { path: `${ETCD_PKI}/peer.key`, mode: "0600", content: args.pki.etcdPeer[host.name].keyPem },
            {
              path: "/etc/systemd/system/etcd.service",
              mode: "0600",
              secret: false,
              content: members.apply((ms) => etcdUnit(ms[i], ms, settings)),
            },
            { path: MEMBER_ENV, mode: "0644", content: members.apply((ms) => memberEnv(ms[i], settings)) },
            // The bootstrap values; a joining member writes the running cluster's instead.
            { path: INITIAL_CLUSTER_ENV, mode: "0644", content: members.apply((ms) => initialClusterEnv(initialCluster(ms, settings))) },
          ],
          // Only a member the cluster is first deployed with may start a new cluster; any
          // other, with no data and no quorum around it, refuses (the state says it exists).
          create: this.membership.bootstrap.apply((b) => etcdCreateScript(dataDir, readyAttempts, clientPort, (b ?? []).includes(host.name))),
          update: etcdUpdateScript(readyAttempts, clientPort, args.localApiServer, dataDir),
          strictDelete: etcdLeaveScript(dataDir),
          delete: etcdDeleteScript,
          identity: [`binaries ${plan.identity}`],
          component: { name: "etcd", units: ["etcd.service"] },
        },
        { parent: this, dependsOn: [...(previous ? [binaries_, previous] : [binaries_, this.membership]), ...(restore?.data ?? [])] },
      );
      previous = step;
      return step;
    });

    this.ready = gateStep(
      `${name}-ready`,
      { host: args.hosts[0], script: etcdGateScript(readyAttempts), guards: steps },
      { parent: this },
    );

    if (restore && args.restore) {
      const triggers = restore.triggers;
      const finish = new command.remote.Command(
        `${name}-restore-finish`,
        { connection: args.hosts[0].connection, create: `${scriptPrologue}\n${retryFunction}\n${restoreFinishScript(readyAttempts)}`, triggers },
        { parent: this, dependsOn: [this.ready] },
      );
      const starts = args.restore.apiHosts.map(
        (host) =>
          new command.remote.Command(
            `${name}-restore-start-${host.name}`,
            { connection: host.connection, create: `${scriptPrologue}\n${restoreStartScript}`, triggers },
            { parent: this, dependsOn: [finish] },
          ),
      );
      this.restored = finish;
      this.restoredFrom = restore.manifest;
      this.restoreStarted = starts;
      this.restoreTriggers = triggers;
    }

    this.registerOutputs({ clientEndpoints: this.clientEndpoints, version: this.version });
  }

  /**
   * The restore's steps before the members' own: check (every etcd host), stop (every
   * control-plane host), data (every etcd host). Each re-runs only when the request changes.
   */
  private restoreSteps(
    name: string,
    hosts: readonly Host[],
    r: EtcdRestoreRequest,
    binaries: readonly pulumi.Resource[],
    members: pulumi.Output<EtcdMember[]>,
    settings: EtcdSettings,
    sharedFiles: readonly StepFile[],
  ): { data: pulumi.Resource[]; manifest: pulumi.Output<string>; triggers: pulumi.Input<string>[] } {
    if (!isBackupRequest(r.from)) {
      invalid(this, "backups.restore.from", r.from, '"latest" or a backup name such as etcd-20261201T120000Z-r1234 (npm run backups lists them)');
    }
    // A new request (another backup, or the same one again after the setting was removed) runs it.
    const triggers = [sha256(`restore ${r.from} ${r.confirm ?? ""}`)];
    const files: StepFile[] = [
      ...sharedFiles,
      ...r.files,
      { path: RESTORE_KEY, mode: "0600", content: r.key.keyPem },
      { path: RESTORE_KEY_CERT, mode: "0644", content: r.key.certPem },
    ];
    // The first host resolves "latest"; the others fetch the very same backup by name.
    // Each check runs once per request: a change of the backup settings runs no restore.
    const first = onceStep(
      `${name}-restore-check-${hosts[0].name}`,
      { host: hosts[0], files, create: restoreCheckScript(r.from, r.confirm), triggers },
      { parent: this, dependsOn: [binaries[0]] },
    );
    const manifest = first.stdout.apply((out) => /^hakube-restore-manifest (.*)$/m.exec(out ?? "")?.[1] ?? "");
    const resolved = manifest.apply((m) => /"name":"([^"]+)"/.exec(m)?.[1] ?? "");
    const checks = [
      first,
      ...hosts.slice(1).map((host, j) =>
        onceStep(
          `${name}-restore-check-${host.name}`,
          // "latest" was checked against quorum by the first host already; confirm carries over.
          { host, files, create: resolved.apply((n) => restoreCheckScript(n, r.confirm)), triggers },
          { parent: this, dependsOn: [binaries[j + 1], first] },
        ),
      ),
    ];
    const stops = r.apiHosts.map(
      (host) =>
        new command.remote.Command(
          `${name}-restore-stop-${host.name}`,
          { connection: host.connection, create: `${scriptPrologue}\n${restoreStopScript}`, triggers },
          { parent: this, dependsOn: checks },
        ),
    );
    const token = `${settings.clusterToken}-restore-${triggers[0].slice(0, 8)}`;
    const data = hosts.map(
      (host, i) =>
        new command.remote.Command(
          `${name}-restore-data-${host.name}`,
          {
            connection: host.connection,
            create: members.apply((ms) => `${scriptPrologue}\n${restoreDataScript(ms[i], ms, settings, token)}`),
            triggers,
          },
          { parent: this, dependsOn: [...checks, ...stops] },
        ),
    );
    return { data, manifest, triggers };
  }
}

