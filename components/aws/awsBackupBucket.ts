import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";
import { invalid, requireInteger } from "../validation";
import type { BackupStorageArgs } from "../backup/etcdBackups";
import { LastBackup, lastBackupOf, newestManifestKey } from "../backup/lastBackup";

export interface AwsBackupBucketArgs {
  /** The AWS region the bucket is in (the endpoint is `https://s3.<region>.amazonaws.com`). */
  readonly region: string;
  /** Object key prefix the etcd hosts may write. @default "hakube/etcd" */
  readonly prefix?: string;
  /**
   * Days after which storage itself expires a backup (a second line behind the backup
   * program's own `keep`), and old versions of overwritten or deleted ones. @default 14
   */
  readonly expireAfterDays?: number;
  /** Delete the bucket with its backups on `pulumi destroy`. @default false */
  readonly forceDestroy?: boolean;
  readonly tags?: Record<string, string>;
}

/**
 * An S3 bucket for etcd backups: versioned, encrypted at rest (SSE-S3), public access
 * blocked, TLS-only by policy, backups expired by lifecycle; and an instance profile for
 * the etcd hosts that may list, read, write and delete under the prefix only.
 */
export class AwsBackupBucket extends pulumi.ComponentResource {
  public readonly bucket: aws.s3.Bucket;
  /** For the etcd instances (`AwsMachines` `etcdInstanceProfile`). */
  public readonly instanceProfile: aws.iam.InstanceProfile;
  /** `HaControlPlane`'s `backups.storage`. */
  public readonly storage: BackupStorageArgs;
  /**
   * The newest backup in the bucket when the program ran, read with the credentials Pulumi
   * runs with (the hosts' instance profile is theirs alone), or why it could not be read.
   */
  public readonly lastBackup: pulumi.Output<LastBackup>;

  constructor(name: string, args: AwsBackupBucketArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:AwsBackupBucket", name, {}, opts);
    if (!/^[a-z]{2}(-[a-z]+)+-\d$/.test(args.region)) invalid(this, "region", args.region, "an AWS region such as eu-central-1");
    const prefix = args.prefix ?? "hakube/etcd";
    if (!/^[A-Za-z0-9][A-Za-z0-9._\/-]*[A-Za-z0-9]$/.test(prefix) || prefix.includes("//")) {
      invalid(this, "prefix", prefix, "a key prefix without a leading or trailing '/'");
    }
    const days = requireInteger(this, "expireAfterDays", args.expireAfterDays ?? 14, 1, 3650);
    const parent = { parent: this };
    this.bucket = new aws.s3.Bucket(name, { bucketPrefix: `${name}-`, forceDestroy: args.forceDestroy ?? false, tags: args.tags }, parent);
    const bucket = this.bucket.bucket;
    new aws.s3.BucketVersioning(`${name}-versioning`, { bucket, versioningConfiguration: { status: "Enabled" } }, parent);
    new aws.s3.BucketServerSideEncryptionConfiguration(
      `${name}-encryption`,
      { bucket, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" }, bucketKeyEnabled: true }] },
      parent,
    );
    new aws.s3.BucketPublicAccessBlock(
      `${name}-public-access`,
      { bucket, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
      parent,
    );
    new aws.s3.BucketLifecycleConfiguration(
      `${name}-lifecycle`,
      {
        bucket,
        rules: [
          {
            id: "expire-etcd-backups",
            status: "Enabled",
            filter: { prefix: `${prefix}/` },
            expiration: { days },
            noncurrentVersionExpiration: { noncurrentDays: days },
            abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
          },
        ],
      },
      parent,
    );
    new aws.s3.BucketPolicy(
      `${name}-tls-only`,
      {
        bucket,
        policy: this.bucket.arn.apply((arn) =>
          JSON.stringify({
            Version: "2012-10-17",
            Statement: [
              {
                Sid: "TlsOnly",
                Effect: "Deny",
                Principal: "*",
                Action: "s3:*",
                Resource: [arn, `${arn}/*`],
                Condition: { Bool: { "aws:SecureTransport": "false" } },
              },
            ],
          }),
        ),
      },
      parent,
    );
    const role = new aws.iam.Role(
      `${name}-etcd`,
      {
        assumeRolePolicy: JSON.stringify({
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
        }),
        tags: args.tags,
      },
      parent,
    );
    new aws.iam.RolePolicy(
      `${name}-etcd-backups`,
      {
        role: role.id,
        policy: this.bucket.arn.apply((arn) =>
          JSON.stringify({
            Version: "2012-10-17",
            Statement: [
              { Sid: "ListThePrefix", Effect: "Allow", Action: "s3:ListBucket", Resource: arn, Condition: { StringLike: { "s3:prefix": [`${prefix}/*`] } } },
              { Sid: "BackupObjects", Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], Resource: `${arn}/${prefix}/*` },
            ],
          }),
        ),
      },
      parent,
    );
    this.instanceProfile = new aws.iam.InstanceProfile(`${name}-etcd`, { role: role.name, tags: args.tags }, parent);
    this.storage = {
      endpoint: `https://s3.${args.region}.amazonaws.com`,
      bucket,
      prefix,
      region: args.region,
      credentials: "instance-profile",
    };
    this.lastBackup = bucket.apply(async (b): Promise<LastBackup> => {
      const now = new Date();
      try {
        const listed = await aws.s3.getObjects({ bucket: b, prefix: `${prefix}/`, maxKeys: 1000 }, { parent: this });
        const newest = newestManifestKey(listed.keys, prefix);
        if (newest === undefined) return lastBackupOf(undefined, now);
        const object = await aws.s3.getObject({ bucket: b, key: newest, downloadBody: "true" }, { parent: this });
        return lastBackupOf(Buffer.from(object.bodyBase64 ?? "", "base64").toString("utf8"), now);
      } catch (e) {
        return { checkedAt: now.toISOString(), error: (e as Error).message.split("\n")[0] };
      }
    });
    this.registerOutputs({ bucket });
  }
}
