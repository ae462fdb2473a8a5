import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import * as tls from "@pulumi/tls";
import { Host } from "../types";
import { hostStep } from "../remote/hostStep";
import { sha256 } from "../remote/files";
import { invalid, knownValue, requireInteger } from "../validation";
import { isIpv4 } from "../net";
import { renderUnit } from "../systemd";

export interface LocalObjectStoreArgs {
  /** The machine storage runs on: not an etcd host (backups must leave the etcd machines). */
  readonly host: Host;
  /** A folder holding the `versitygw` binary (the toolchain's `versitygw-<version>`). */
  readonly binaryDirectory: string;
  /** @default "hakube-backups" */
  readonly bucket?: string;
  /** @default 7070 */
  readonly port?: number;
}

const BINARY = "/usr/local/bin/versitygw";
const ETC = "/etc/hakube/object-store";
const DATA = "/var/lib/hakube/object-store";

/**
 * An S3-compatible server of its own for backups on a local stack: versitygw's POSIX
 * backend (each object a file under /var/lib/hakube/object-store), HTTPS with a
 * certificate of its own, one root access key (secret), one bucket.
 */
export class LocalObjectStore extends pulumi.ComponentResource {
  public readonly endpoint: pulumi.Output<string>;
  public readonly bucket: string;
  /** PEM of the server's (self-signed) certificate: the CA clients trust. */
  public readonly caCertificate: pulumi.Output<string>;
  /** Secret. */
  public readonly accessKeyId: pulumi.Output<string>;
  /** Secret. */
  public readonly secretAccessKey: pulumi.Output<string>;
  /** Completes when the bucket exists and the server answers. */
  public readonly ready: pulumi.Resource;

  constructor(name: string, args: LocalObjectStoreArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:LocalObjectStore", name, {}, opts);
    const port = requireInteger(this, "objectStore.port", args.port ?? 7070, 1, 65535);
    const bucket = args.bucket ?? "hakube-backups";
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) invalid(this, "objectStore.bucket", bucket, "an S3 bucket name (3-63 lower-case letters, digits, '.', '-')");
    const binary = path.join(args.binaryDirectory, "versitygw");
    if (!fs.existsSync(binary)) {
      invalid(this, "objectStore.binaryDirectory", args.binaryDirectory, "a folder holding versitygw (toolchain/build.sh versitygw builds it)");
    }
    const address = knownValue(args.host.address);
    if (address !== undefined && !isIpv4(address)) invalid(this, "objectStore.host.address", address, "an IPv4 address");
    this.bucket = bucket;
    this.endpoint = pulumi.interpolate`https://${args.host.address}:${port}`;

    const key = new tls.PrivateKey(`${name}-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, { parent: this, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"] });
    const cert = new tls.SelfSignedCert(
      `${name}-cert`,
      {
        privateKeyPem: key.privateKeyPem,
        subject: { commonName: `hakube object store ${name}` },
        ipAddresses: [args.host.address],
        validityPeriodHours: 87600,
        earlyRenewalHours: 720,
        allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
      },
      { parent: this },
    );
    this.caCertificate = cert.certPem;
    // The root credentials, derived from a secret key of their own (no random provider needed).
    const seed = new tls.PrivateKey(`${name}-credentials`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, { parent: this, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"] });
    this.accessKeyId = pulumi.secret(seed.privateKeyPem.apply((p) => `HAKUBE${sha256(`access ${p}`).slice(0, 14).toUpperCase()}`));
    this.secretAccessKey = pulumi.secret(seed.privateKeyPem.apply((p) => sha256(`secret ${p}`).slice(0, 40)));

    const triggers = [sha256(fs.readFileSync(binary).toString("base64")), ...(args.host.instance === undefined ? [] : [args.host.instance])];
    const copy = new command.remote.CopyToRemote(
      `${name}-binary`,
      { connection: args.host.connection, source: new pulumi.asset.FileAsset(binary), remotePath: "/usr/local/bin/.versitygw.upload", triggers },
      { parent: this },
    );
    this.ready = hostStep(
      `${name}-server`,
      {
        host: args.host,
        files: [
          { path: `${ETC}/server.crt`, mode: "0644", content: cert.certPem },
          { path: `${ETC}/server.key`, mode: "0600", content: key.privateKeyPem },
          {
            path: `${ETC}/root.env`,
            mode: "0600",
            content: pulumi.all([this.accessKeyId, this.secretAccessKey]).apply(([a, s]) => `ROOT_ACCESS_KEY_ID=${a}\nROOT_SECRET_ACCESS_KEY=${s}\n`),
          },
          {
            path: `${ETC}/curl.conf`,
            mode: "0600",
            content: pulumi.all([this.accessKeyId, this.secretAccessKey]).apply(([a, s]) => `user = "${a}:${s}"\n`),
          },
          {
            path: "/etc/systemd/system/hakube-object-store.service",
            mode: "0644",
            content: pulumi.output(args.host.address).apply((a) =>
              renderUnit({
                description: "hakube object store (versitygw, S3 API for etcd backups)",
                documentation: "https://github.com/versity/versitygw",
                binary: BINARY,
                type: "simple",
                environmentFiles: [`${ETC}/root.env`],
                flags: [
                  ["port", `${a}:${port}`],
                  ["cert", `${ETC}/server.crt`],
                  ["key", `${ETC}/server.key`],
                ],
                args: ["posix", DATA],
              }),
            ),
          },
        ],
        create: objectStoreCreateScript(bucket, port),
        delete: `systemctl disable --now hakube-object-store.service`,
        identity: triggers.slice(0, 1),
        component: { name: "backup", units: ["hakube-object-store.service"] },
      },
      { parent: this, dependsOn: [copy] },
    );
    this.registerOutputs({ endpoint: this.endpoint, caCertificate: this.caCertificate });
  }
}

function objectStoreCreateScript(bucket: string, port: number): string {
  return `install -m 0755 /usr/local/bin/.versitygw.upload ${BINARY}
install -d -m 0700 ${DATA}
systemctl daemon-reload
systemctl enable hakube-object-store.service >/dev/null 2>&1
systemctl restart hakube-object-store.service
addr=$(sed -n 's/.*--port=\\([0-9.]*\\):.*/\\1/p' /etc/systemd/system/hakube-object-store.service | head -n 1)
hakube_bucket() {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -K ${ETC}/curl.conf --cacert ${ETC}/server.crt \\
    --aws-sigv4 "aws:amz:us-east-1:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "https://$addr:${port}/${bucket}") || return 1
  # 200: made; 409: it exists already (ours).
  [ "$code" = 200 ] || [ "$code" = 409 ]
}
hakube_retry 30 1 "the bucket ${bucket} on https://$addr:${port}" -- hakube_bucket
echo "hakube: object store ready at https://$addr:${port}/${bucket}"`;
}
