import * as crypto from "crypto";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { Host } from "../types";
import type { KeyPair } from "../pki/clusterPki";
import type { ObservedNetwork } from "../observe/ssh";
import { LastBackup, readLastBackup } from "./lastBackup";
import { hostStep, StepFile } from "../remote/hostStep";
import { invalid, requireHosts, requireInteger } from "../validation";
import {
  BACKUP_ENV,
  BACKUP_PROGRAM,
  BACKUP_RECIPIENT,
  BACKUP_SIGNING_KEY,
  BACKUP_STORAGE_CA,
  BACKUP_UNIT,
  BACKUP_USER_CONF,
  BACKUP_VERIFY_KEY,
  BackupStorage,
  renderBackupEnv,
  renderBackupProgram,
  renderBackupService,
  renderBackupTimer,
  renderUserConf,
} from "./render";

/** Where backups go: an S3 bucket, or any S3-compatible server. */
export interface BackupStorageArgs {
  /** `https://host[:port]` of the S3 API (AWS: `https://s3.<region>.amazonaws.com`). */
  readonly endpoint: pulumi.Input<string>;
  readonly bucket: pulumi.Input<string>;
  /** Object key prefix, e.g. the stack's name. @default "hakube/etcd" */
  readonly prefix?: string;
  /** @default "us-east-1" */
  readonly region?: string;
  /**
   * An access key pair (pass both as secrets), or `"instance-profile"` on EC2 (the
   * hosts' role must allow s3:PutObject, GetObject, DeleteObject and ListBucket on the prefix).
   */
  readonly credentials: { readonly accessKeyId: pulumi.Input<string>; readonly secretAccessKey: pulumi.Input<string> } | "instance-profile";
  /** PEM of the CA the endpoint's certificate chains to, when it is not a public one. */
  readonly caCertificate?: pulumi.Input<string>;
}

export interface EtcdBackupsArgs {
  /** The etcd hosts; each runs the timer, and one healthy member per round takes the snapshot. */
  readonly hosts: readonly Host[];
  readonly storage: BackupStorageArgs;
  /** Which cluster the backups are of: a PEM certificate whose public key names it (the cluster CA). */
  readonly clusterCaCertificate: pulumi.Input<string>;
  /** @default 30 */
  readonly intervalMinutes?: number;
  /** Backups kept in storage, the newest. @default 48 (a day at the default interval) */
  readonly keep?: number;
  /** What the steps wait for (the etcd cluster being ready). */
  readonly after?: readonly pulumi.Resource[];
  /** The key pair backups are encrypted to. @default a new one ({@link backupKeyPair}) */
  readonly key?: KeyPair;
  /** The key backups are signed with. @default a new one ({@link backupSigningKey}) */
  readonly signingKey?: SigningKey;
  /**
   * Read the newest backup from storage each time the program runs, for {@link
   * EtcdBackups.lastBackup} (needs an access key: with "instance-profile" credentials only
   * the hosts can read storage; AwsBackupBucket reads it through the AWS provider). @default true
   */
  readonly readLastBackup?: boolean;
  /** On a local stack: the bridge storage is reached through (nothing is sent while it is missing). */
  readonly network?: ObservedNetwork;
}

/** The settings of backups, resolved (see {@link resolveBackupSettings}). */
export interface ResolvedBackupSettings {
  readonly prefix: string;
  readonly region: string;
  readonly intervalMinutes: number;
  readonly keep: number;
}

/** Checks and defaults the backup settings; bad input names the argument. */
export function resolveBackupSettings(
  parent: pulumi.Resource | undefined,
  a: { readonly storage: BackupStorageArgs; readonly intervalMinutes?: number; readonly keep?: number },
): ResolvedBackupSettings {
  const intervalMinutes = requireInteger(parent, "backups.intervalMinutes", a.intervalMinutes ?? 30, 1, 1440);
  const keep = requireInteger(parent, "backups.keep", a.keep ?? 48, 1, 400);
  const prefix = a.storage.prefix ?? "hakube/etcd";
  if (!/^[A-Za-z0-9][A-Za-z0-9._\/-]*[A-Za-z0-9]$/.test(prefix) || prefix.includes("//") || prefix.includes("..")) {
    invalid(parent, "backups.storage.prefix", prefix, "letters, digits, '.', '_', '-' and '/' between path segments, without a leading or trailing '/'");
  }
  const region = a.storage.region ?? "us-east-1";
  if (!/^[a-z0-9-]+$/.test(region)) invalid(parent, "backups.storage.region", region, "a region name such as us-east-1");
  return { prefix, region, intervalMinutes, keep };
}

/**
 * The key pair backups are encrypted to: the hosts get only the certificate, so they never
 * hold what decrypts a backup. Never renewed: a new key could not read the backups made
 * before it. The private key is a secret in the state: keep a copy outside it. Both are
 * retained on delete (they exist only in the state, so what keeps them is that they stay
 * registered: HaControlPlane makes them whether or not backups are on).
 */
export function backupKeyPair(name: string, parent: pulumi.Resource): KeyPair {
  const key = new tls.PrivateKey(
    `${name}-key`,
    { algorithm: "RSA", rsaBits: 3072 },
    { parent, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"], retainOnDelete: true },
  );
  const cert = new tls.SelfSignedCert(
    `${name}-cert`,
    {
      privateKeyPem: key.privateKeyPem,
      subject: { commonName: `hakube etcd backups ${name}` },
      validityPeriodHours: 100 * 8760,
      earlyRenewalHours: 0,
      allowedUses: ["key_encipherment", "data_encipherment"],
    },
    // The subject names the component: a rename (with aliases) must not replace the
    // certificate, whose serial every earlier backup's manifest records (a restore refuses
    // a backup made for another serial).
    { parent, retainOnDelete: true, ignoreChanges: ["subject"] },
  );
  return { keyPem: pulumi.secret(key.privateKeyPem), certPem: cert.certPem };
}

/** A key backups are signed with: the private half is a secret; the public half checks them. */
export interface SigningKey {
  readonly keyPem: pulumi.Output<string>;
  readonly publicKeyPem: pulumi.Output<string>;
}

/**
 * The key every backup's manifest is signed with (ECDSA P-256). Only the stack and the etcd
 * hosts that make backups hold it; a restore checks each backup with its public half (from
 * the stack, never from storage), so whoever may only write to storage cannot plant a
 * backup. Never renewed: a new key would refuse every backup signed before it.
 */
export function backupSigningKey(name: string, parent: pulumi.Resource): SigningKey {
  const key = new tls.PrivateKey(
    `${name}-signing-key`,
    { algorithm: "ECDSA", ecdsaCurve: "P256" },
    { parent, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"], retainOnDelete: true },
  );
  return { keyPem: pulumi.secret(key.privateKeyPem), publicKeyPem: key.publicKeyPem };
}

/**
 * The backup program and its configuration, as step files (the credentials file is
 * secret): what a backup and a restore both need, with the public key that checks backups.
 * The signing key itself is not among them ({@link backupSigningKeyFile}).
 */
export function backupFiles(
  storage: BackupStorageArgs,
  s: ResolvedBackupSettings,
  clusterId: pulumi.Input<string>,
  certPem: pulumi.Input<string>,
  verifyKeyPem: pulumi.Input<string>,
): StepFile[] {
  const env = pulumi.all([storage.endpoint, storage.bucket, clusterId]).apply(([endpoint, bucket, id]) => {
    const st: BackupStorage = {
      endpoint,
      bucket,
      prefix: s.prefix,
      region: s.region,
      credentials: storage.credentials === "instance-profile" ? "instance-profile" : "static",
      customCa: storage.caCertificate !== undefined,
    };
    return renderBackupEnv({ storage: st, clusterId: id, intervalMinutes: s.intervalMinutes, keep: s.keep });
  });
  return [
    { path: BACKUP_PROGRAM, mode: "0755", content: renderBackupProgram() },
    { path: BACKUP_ENV, mode: "0644", content: env },
    { path: BACKUP_RECIPIENT, mode: "0644", content: certPem },
    { path: BACKUP_VERIFY_KEY, mode: "0644", content: verifyKeyPem },
    { path: `/etc/systemd/system/${BACKUP_UNIT}.service`, mode: "0644", content: renderBackupService() },
    { path: `/etc/systemd/system/${BACKUP_UNIT}.timer`, mode: "0644", content: renderBackupTimer(s.intervalMinutes) },
    ...(storage.caCertificate !== undefined ? [{ path: BACKUP_STORAGE_CA, mode: "0644" as const, content: storage.caCertificate }] : []),
    ...(storage.credentials !== "instance-profile"
      ? [
          {
            path: BACKUP_USER_CONF,
            mode: "0600" as const,
            content: pulumi.all([storage.credentials.accessKeyId, storage.credentials.secretAccessKey]).apply(([a, k]) => renderUserConf(a, k)),
          },
        ]
      : []),
  ];
}

/** The signing key, for the hosts that make backups only (0600, a secret step file). */
export function backupSigningKeyFile(key: SigningKey): StepFile {
  return { path: BACKUP_SIGNING_KEY, mode: "0600", content: key.keyPem };
}

/** The first 16 hex digits of the sha256 of a certificate's public key: stable across renewals of the certificate. */
export function clusterIdOf(certPem: string): string {
  const spki = new crypto.X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
  return crypto.createHash("sha256").update(spki).digest("hex").slice(0, 16);
}

/**
 * Scheduled, encrypted etcd snapshots off the etcd machines. Every etcd host gets the
 * backup program and a systemd timer; on each round the first healthy follower (by client
 * URL; the leader only when no follower answers) takes the snapshot, checks it, encrypts
 * it to this component's backup certificate and uploads it with a manifest signed with
 * the backup signing key, then removes backups beyond `keep`. The backup key (`backupKey`,
 * a secret) is the only way to read them: keep a copy outside the Pulumi state. A restore
 * accepts only backups whose signature checks with `backupVerifyKey`.
 */
export class EtcdBackups extends pulumi.ComponentResource {
  /** PEM of the private key backups are encrypted to (secret). */
  public readonly backupKey: pulumi.Output<string>;
  /** PEM of its certificate (on every etcd host). */
  public readonly backupCertificate: pulumi.Output<string>;
  /** PEM of the public key every backup's signature is checked with (on every etcd host). */
  public readonly backupVerifyKey: pulumi.Output<string>;
  /** The cluster id written into every manifest. */
  public readonly clusterId: pulumi.Output<string>;
  public readonly steps: pulumi.Resource[];
  /**
   * The newest backup in storage when the program ran (name, time, revision, sizes, age), or
   * why storage could not be read; undefined when it is not read (see `readLastBackup`).
   */
  public readonly lastBackup?: pulumi.Output<LastBackup>;
  /** Settings a status or restore reads. */
  public readonly settings: { readonly prefix: string; readonly intervalMinutes: number; readonly keep: number };

  constructor(name: string, args: EtcdBackupsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:EtcdBackups", name, {}, opts);
    requireHosts(this, "hosts", args.hosts);
    const resolved = resolveBackupSettings(this, args);
    const { prefix, intervalMinutes, keep } = resolved;
    this.settings = { prefix, intervalMinutes, keep };
    const pair = args.key ?? backupKeyPair(name, this);
    this.backupKey = pair.keyPem;
    this.backupCertificate = pair.certPem;
    const signing = args.signingKey ?? backupSigningKey(name, this);
    this.backupVerifyKey = signing.publicKeyPem;
    this.clusterId = pulumi.output(args.clusterCaCertificate).apply(clusterIdOf);
    const files = [...backupFiles(args.storage, resolved, this.clusterId, pair.certPem, signing.publicKeyPem), backupSigningKeyFile(signing)];
    this.steps = args.hosts.map((host) =>
      hostStep(
        `${name}-${host.name}`,
        {
          host,
          files,
          create: backupCreateScript,
          delete: backupDeleteScript,
          component: { name: "backup", units: [`${BACKUP_UNIT}.timer`] },
        },
        { parent: this, dependsOn: [...(args.after ?? [])] },
      ),
    );
    const creds = args.storage.credentials;
    if (creds !== "instance-profile" && args.readLastBackup !== false) {
      const s = args.storage;
      this.lastBackup = pulumi.unsecret(
        pulumi
          .all([s.endpoint, s.bucket, creds.accessKeyId, creds.secretAccessKey, s.caCertificate])
          .apply(([endpoint, bucket, accessKeyId, secretAccessKey, caCertificate]) =>
            readLastBackup({ endpoint, bucket, prefix, region: resolved.region, accessKeyId, secretAccessKey, caCertificate }, args.network),
          ),
      );
    }
    this.registerOutputs({ backupCertificate: this.backupCertificate, backupVerifyKey: this.backupVerifyKey, clusterId: this.clusterId });
  }
}

/** Installs openssl where it is missing, then (re)starts the timer. */
export const backupCreateScript = `if ! command -v openssl >/dev/null; then
  echo "hakube: installing openssl"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq openssl >/dev/null
fi
systemctl daemon-reload
systemctl enable ${BACKUP_UNIT}.timer >/dev/null 2>&1
systemctl restart ${BACKUP_UNIT}.timer
# A first backup now (the member whose turn it is takes it; the others return at once).
systemctl start --no-block ${BACKUP_UNIT}.service
echo "hakube: etcd backups scheduled ($(systemctl show -P TimersMonotonic ${BACKUP_UNIT}.timer | head -c 120))"`;

export const backupDeleteScript = `systemctl disable --now ${BACKUP_UNIT}.timer >/dev/null 2>&1
rm -f /etc/systemd/system/${BACKUP_UNIT}.timer /etc/systemd/system/${BACKUP_UNIT}.service ${BACKUP_PROGRAM}
systemctl daemon-reload`;
