// etcd backups (pure rendering): the program every etcd host runs on its timer, the
// units, and its configuration. One program, `hakube-etcd-backup`, with subcommands:
//   run              the timer's job: on the member whose turn it is, snapshot, check,
//                    encrypt, upload, keep the newest N; a no-op on the others
//   list             the backups in storage, oldest first (one manifest per line)
//   latest           the newest backup's manifest
//   fetch NAME OUT   download a backup, check this stack signed it, decrypt it (key from
//                    $HAKUBE_BACKUP_KEY_FILE), check it is whole and of this cluster;
//                    writes OUT only if all holds
// Storage is S3 (or S3-compatible), spoken with curl's SigV4 signing; the credentials
// come from a 0600 file (curl -K) or, on EC2, from the instance profile (IMDSv2), never
// from a command line. Snapshots are encrypted to a certificate (CMS, AES-256-GCM): the
// hosts hold only the public half, so a host taken over cannot read old backups; the
// private key is a Pulumi secret written to a host only for a restore.
// Each manifest (the backup's name, the cluster id, the sha256 of the snapshot and of its
// ciphertext) is signed with a key only the stack and the etcd hosts hold (ECDSA P-256,
// `openssl dgst -sha256`); a fetch checks the signature with the public half from the
// stack before it believes anything in the manifest or decrypts anything. The recipient
// certificate is public, so encryption alone says nothing of who made a backup.
// Snapshots are staged on disk under the state directory (tmpfs would hold twice the
// database in RAM), after a check that the disk has room; the stage goes on every way out.
import { shellFunction } from "../remote/shell";
import { ETCDCTL_ENV, MEMBER_ENV } from "../etcd/render";

export const BACKUP_DIR = "/etc/hakube/backup";
export const BACKUP_PROGRAM = "/usr/local/sbin/hakube-etcd-backup";
export const BACKUP_ENV = `${BACKUP_DIR}/backup.env`;
export const BACKUP_USER_CONF = `${BACKUP_DIR}/s3-user.conf`;
export const BACKUP_RECIPIENT = `${BACKUP_DIR}/recipient.crt`;
export const BACKUP_STORAGE_CA = `${BACKUP_DIR}/storage-ca.crt`;
/** The private key manifests are signed with (0600, on the etcd hosts only). */
export const BACKUP_SIGNING_KEY = `${BACKUP_DIR}/signing.key`;
/** Its public half, which a fetch verifies every manifest with. */
export const BACKUP_VERIFY_KEY = `${BACKUP_DIR}/signing.pub`;
export const BACKUP_STATE_DIR = "/var/lib/hakube/backup";
export const BACKUP_UNIT = "hakube-etcd-backup";
/** Free space kept beyond what a backup stages (etcd may share the disk). */
export const BACKUP_DISK_RESERVE_MIB = 256;

export interface BackupStorage {
  /** `https://host:port` (S3-compatible) or `https://s3.<region>.amazonaws.com`. */
  readonly endpoint: string;
  readonly bucket: string;
  /** Object key prefix, without a trailing slash. */
  readonly prefix: string;
  readonly region: string;
  /** "static": access key and secret in BACKUP_USER_CONF; "instance-profile": EC2's role. */
  readonly credentials: "static" | "instance-profile";
  /** Whether BACKUP_STORAGE_CA holds the CA the endpoint's certificate chains to. */
  readonly customCa: boolean;
}

export interface BackupSettings {
  readonly storage: BackupStorage;
  /** Which cluster the snapshots belong to (a restore refuses another cluster's). */
  readonly clusterId: string;
  readonly intervalMinutes: number;
  /** How many backups storage keeps (the newest). */
  readonly keep: number;
}

/** The environment file the program reads (no secret in it). */
export function renderBackupEnv(s: BackupSettings): string {
  const e = s.storage;
  return [
    `HAKUBE_BACKUP_ENDPOINT=${e.endpoint}`,
    `HAKUBE_BACKUP_BUCKET=${e.bucket}`,
    `HAKUBE_BACKUP_PREFIX=${e.prefix}`,
    `HAKUBE_BACKUP_REGION=${e.region}`,
    `HAKUBE_BACKUP_CREDENTIALS=${e.credentials}`,
    `HAKUBE_BACKUP_CA=${e.customCa ? BACKUP_STORAGE_CA : ""}`,
    `HAKUBE_BACKUP_CLUSTER=${s.clusterId}`,
    `HAKUBE_BACKUP_KEEP=${s.keep}`,
    "",
  ].join("\n");
}

/** curl's config for static credentials (a secret file, mode 0600). */
export function renderUserConf(accessKeyId: string, secretAccessKey: string): string {
  const q = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
  return `user = "${q(accessKeyId)}:${q(secretAccessKey)}"\n`;
}

const functions = [
  shellFunction(
    "hb_die",
    // A failed run leaves its reason for the status summary (and the unit fails).
    `echo "hakube-etcd-backup: $*" >&2
if [ "\${HB_RECORD:-}" = 1 ]; then
  local why="$*"
  why=\${why//[\\"\\\\]/}
  printf '{"time":"%s","error":"%s"}\\n' "$(date -u +%FT%TZ)" "$why" > "$HB_STATE/last-failure.json" || true
fi
exit 1`,
  ),
  // Percent-encoding of a query value or key path segment (RFC 3986 unreserved kept).
  shellFunction(
    "hb_urlencode",
    `local s=$1 out="" c i
for (( i = 0; i < \${#s}; i++ )); do
  c=\${s:i:1}
  case "$c" in
    [A-Za-z0-9.~_-]) out+=$c ;;
    /) if [ "\${2:-}" = path ]; then out+=/; else out+=%2F; fi ;;
    *) out+=$(printf '%%%02X' "'$c") ;;
  esac
done
printf '%s' "$out"`,
  ),
  // A curl config with the credentials, in a private temporary file: static ones from
  // BACKUP_USER_CONF, or the instance profile's through IMDSv2 (with their session token).
  shellFunction(
    "hb_credentials",
    `local conf=$HB_RUN/curl.conf
: > "$conf"
chmod 0600 "$conf"
case "$HAKUBE_BACKUP_CREDENTIALS" in
  static)
    [ -r ${BACKUP_USER_CONF} ] || hb_die "no storage credentials in ${BACKUP_USER_CONF}"
    cat ${BACKUP_USER_CONF} >> "$conf" ;;
  instance-profile)
    local token role creds ak sk st
    token=$(curl -sS --fail --max-time 3 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" http://169.254.169.254/latest/api/token) || hb_die "no IMDSv2 token (is this an EC2 instance with an instance profile?)"
    role=$(curl -sS --fail --max-time 3 -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/iam/security-credentials/ | head -n 1) || hb_die "no instance profile role"
    creds=$(curl -sS --fail --max-time 3 -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/iam/security-credentials/$role") || hb_die "no credentials for role $role"
    ak=$(printf '%s' "$creds" | sed -n 's/.*"AccessKeyId" *: *"\\([^"]*\\)".*/\\1/p')
    sk=$(printf '%s' "$creds" | sed -n 's/.*"SecretAccessKey" *: *"\\([^"]*\\)".*/\\1/p')
    st=$(printf '%s' "$creds" | sed -n 's/.*"Token" *: *"\\([^"]*\\)".*/\\1/p')
    [ -n "$ak" ] && [ -n "$sk" ] || hb_die "the instance profile's credentials could not be read"
    printf 'user = "%s:%s"\\nheader = "x-amz-security-token: %s"\\n' "$ak" "$sk" "$st" >> "$conf" ;;
  *) hb_die "HAKUBE_BACKUP_CREDENTIALS is '$HAKUBE_BACKUP_CREDENTIALS', expected static or instance-profile" ;;
esac
printf '%s' "$conf"`,
  ),
  // hb_s3 METHOD KEY QUERY [curl args...]: one signed request; the body goes to stdout.
  // The query must be sorted by name and encoded already: curl signs it as written.
  shellFunction(
    "hb_s3",
    `local method=$1 key=$2 query=$3
shift 3
local url="$HAKUBE_BACKUP_ENDPOINT/$HAKUBE_BACKUP_BUCKET"
[ -z "$key" ] || url+="/$(hb_urlencode "$key" path)"
[ -z "$query" ] || url+="?$query"
local ca=()
[ -z "$HAKUBE_BACKUP_CA" ] || ca=(--cacert "$HAKUBE_BACKUP_CA")
curl -sS --fail-with-body --max-time 600 --retry 2 --retry-delay 1 -K "$HB_CONF" "\${ca[@]}" \\
  --aws-sigv4 "aws:amz:$HAKUBE_BACKUP_REGION:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \\
  -X "$method" "$@" "$url"`,
  ),
  // Object keys under the prefix (one page of up to 1000; storage keeps far fewer).
  shellFunction(
    "hb_keys",
    `local out
out=$(hb_s3 GET "" "list-type=2&max-keys=1000&prefix=$(hb_urlencode "$HAKUBE_BACKUP_PREFIX/")") || hb_die "cannot list $HAKUBE_BACKUP_ENDPOINT/$HAKUBE_BACKUP_BUCKET/$HAKUBE_BACKUP_PREFIX/: $out"
printf '%s' "$out" | grep -o '<Key>[^<]*</Key>' | sed 's/^<Key>//; s/<\\/Key>$//' | sort || true`,
  ),
  // Whether this member takes the snapshot: the first healthy member by name that is not
  // the leader (the leader's disk and CPU are the cluster's), or the leader when it is the
  // only healthy one. Every member asks the same cluster, so one of them answers yes.
  shellFunction(
    "hb_my_turn",
    `local status first
# A member that does not answer is left out of the list (etcdctl then exits non-zero).
status=$(etcdctl endpoint status --cluster -w fields 2>/dev/null || true)
# Per endpoint (its "Endpoint" line ends the record): leader or not, for every voter.
first=$(printf '%s\\n' "$status" | awk -F' : ' '
  $1 == "\\"MemberID\\"" { id = $2 }
  $1 == "\\"Leader\\"" { leader = $2 }
  $1 == "\\"IsLearner\\"" { learner = $2 }
  $1 == "\\"Endpoint\\"" { gsub(/"/, "", $2); if (learner == "false") print (leader == id ? "1" : "0") " " $2 }' | sort | head -n 1 | cut -d' ' -f2)
[ "$first" = "$HAKUBE_ETCD_CLIENT_URL" ]`,
  ),
  shellFunction(
    "hb_field",
    // hb_field JSON NAME: a number or string field of a flat JSON object.
    `printf '%s' "$1" | sed -n "s/.*\\"$2\\" *: *\\"\\{0,1\\}\\([^,\\"}]*\\)\\"\\{0,1\\}.*/\\1/p"`,
  ),
  // hb_room BYTES WHAT: the stage's filesystem has room for BYTES and the reserve besides.
  shellFunction(
    "hb_room",
    `local need=$(( $1 + ${BACKUP_DISK_RESERVE_MIB} * 1048576 )) avail
avail=$(df --output=avail -B1 "$HB_TMP" 2>/dev/null | tail -n 1 | tr -d ' ')
[[ "$avail" =~ ^[0-9]+$ ]] || hb_die "cannot read the free space under $HB_STATE"
[ "$avail" -ge "$need" ] || hb_die "not enough free space for the backup under $HB_STATE: $(( avail / 1048576 )) MiB free, $(( need / 1048576 )) MiB needed ($2, and ${BACKUP_DISK_RESERVE_MIB} MiB kept free)"`,
  ),
  // The snapshot file is whole: etcd appends the sha256 of the rest (size mod 512 is 32).
  shellFunction(
    "hb_snapshot_whole",
    `local f=$1 size want got
size=$(stat -c %s "$f")
[ $(( size % 512 )) -eq 32 ] || return 1
want=$(tail -c 32 "$f" | od -An -tx1 | tr -d ' \\n')
got=$(head -c $(( size - 32 )) "$f" | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ]`,
  ),
];

export function renderBackupProgram(): string {
  return `#!/bin/bash
# Managed by hakube; changes are overwritten by the next \`pulumi up\`.
# etcd backups: see \`${BACKUP_PROGRAM} help\`.
set -euo pipefail
umask 077
[ -r ${BACKUP_ENV} ] || { echo "hakube-etcd-backup: ${BACKUP_ENV} is missing" >&2; exit 1; }
set -a
. ${BACKUP_ENV}
[ ! -r ${ETCDCTL_ENV} ] || . ${ETCDCTL_ENV}
[ ! -r ${MEMBER_ENV} ] || . ${MEMBER_ENV}
set +a
${functions.join("\n")}
state=${BACKUP_STATE_DIR}
HB_STATE=$state
mkdir -p "$state"
chmod 0700 "$state"
[ "\${1:-}" != run ] || HB_RECORD=1
# The storage credentials stay in memory (/run); snapshots and ciphertext are staged on
# disk, in a folder of their own removed on every way out (a stage left by a run that was
# killed outright goes once it is 4 hours old).
find "$state" -maxdepth 1 -name 'stage.*' -type d -mmin +240 -exec rm -rf {} + 2>/dev/null || true
HB_RUN=$(mktemp -d /run/hakube-etcd-backup.XXXXXX)
HB_TMP=
# A signal (systemd's stop) ends the run through the EXIT trap, which a second one cannot cut short.
trap 'trap "" TERM INT HUP; rm -rf "$HB_RUN" \${HB_TMP:+"$HB_TMP"}' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
HB_TMP=$(mktemp -d ${BACKUP_STATE_DIR}/stage.XXXXXX)
HB_CONF=$(hb_credentials)

cmd=\${1:-help}
case "$cmd" in
  run)
    if ! hb_my_turn; then
      echo "hakube-etcd-backup: not this member's turn (another member takes the snapshot)"
      exit 0
    fi
    [ -r ${BACKUP_SIGNING_KEY} ] || hb_die "no signing key at ${BACKUP_SIGNING_KEY} (a backup nobody can verify would be refused by every restore)"
    started=$(date +%s)
    name="etcd-$(date -u +%Y%m%dT%H%M%SZ)"
    snap=$HB_TMP/snapshot.db
    # Room for the snapshot and its ciphertext (each about the database's size).
    db=$(ETCDCTL_ENDPOINTS="$HAKUBE_ETCD_CLIENT_URL" etcdctl endpoint status -w fields 2>/dev/null | awk -F' : ' '$1 == "\\"DBSize\\"" { print $2; exit }')
    [[ "$db" =~ ^[0-9]+$ ]] || hb_die "cannot read the database size of $HAKUBE_ETCD_NAME"
    hb_room $(( db * 2 )) "the database is $(( db / 1048576 )) MiB: the snapshot and its ciphertext"
    if ! out=$(ETCDCTL_ENDPOINTS="$HAKUBE_ETCD_CLIENT_URL" etcdctl snapshot save "$snap" 2>&1); then
      printf '%s\\n' "$out" | tail -n 5 >&2
      hb_die "snapshot of $HAKUBE_ETCD_NAME failed"
    fi
    hb_snapshot_whole "$snap" || hb_die "the snapshot is not whole (its sha256 does not match)"
    st=$(etcdutl snapshot status "$snap" -w json 2>/dev/null) || hb_die "etcdutl snapshot status refused the snapshot"
    revision=$(hb_field "$st" revision)
    name="$name-r$revision"
    # RSA-OAEP (SHA-256) key transport; a decryption reads the padding from the message, so
    # backups made with PKCS#1 v1.5 before still decrypt.
    openssl cms -encrypt -binary -aes-256-gcm -stream -outform DER -in "$snap" -out "$HB_TMP/snapshot.cms" \\
      -recip ${BACKUP_RECIPIENT} -keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256 -keyopt rsa_mgf1_md:sha256 \\
      || hb_die "encryption failed"
    sha=$(sha256sum "$snap" | cut -d' ' -f1)
    cms_sha=$(sha256sum "$HB_TMP/snapshot.cms" | cut -d' ' -f1)
    recipient=$(openssl x509 -in ${BACKUP_RECIPIENT} -noout -serial | cut -d= -f2)
    size=$(stat -c %s "$HB_TMP/snapshot.cms")
    manifest=$(printf '{"name":"%s","cluster":"%s","time":"%s","member":"%s","revision":%s,"totalKey":%s,"dbSize":%s,"size":%s,"sha256":"%s","cmsSha256":"%s","etcdVersion":"%s","recipient":"%s"}' \\
      "$name" "$HAKUBE_BACKUP_CLUSTER" "$(date -u +%FT%TZ)" "$HAKUBE_ETCD_NAME" "$revision" "$(hb_field "$st" totalKey)" \\
      "$(stat -c %s "$snap")" "$size" "$sha" "$cms_sha" "$(hb_field "$st" version)" "$recipient")
    printf '%s\\n' "$manifest" > "$HB_TMP/manifest.json"
    openssl dgst -sha256 -sign ${BACKUP_SIGNING_KEY} -out "$HB_TMP/manifest.sig" "$HB_TMP/manifest.json" || hb_die "signing the manifest of $name failed"
    # The snapshot and the signature first, the manifest last: a backup counts once its manifest is there.
    hb_s3 PUT "$HAKUBE_BACKUP_PREFIX/$name.db.cms" "" -T "$HB_TMP/snapshot.cms" -o /dev/null || hb_die "upload of $name failed"
    hb_s3 PUT "$HAKUBE_BACKUP_PREFIX/$name.sig" "" -T "$HB_TMP/manifest.sig" -o /dev/null || hb_die "upload of $name's signature failed"
    hb_s3 PUT "$HAKUBE_BACKUP_PREFIX/$name.json" "" -T "$HB_TMP/manifest.json" -o /dev/null || hb_die "upload of $name's manifest failed"
    printf '%s\\n' "$manifest" > "$state/last-success.json"
    rm -f "$state/last-failure.json"
    # Retention: the newest $HAKUBE_BACKUP_KEEP backups stay (a name sorts by its time).
    keys=$(hb_keys)
    mapfile -t manifests < <(printf '%s\\n' "$keys" | grep '\\.json$' || true)
    drop=$(( \${#manifests[@]} - HAKUBE_BACKUP_KEEP ))
    for (( i = 0; i < drop; i++ )); do
      old=\${manifests[i]%.json}
      hb_s3 DELETE "$old.json" "" -o /dev/null || hb_die "cannot delete the old backup $old"
      hb_s3 DELETE "$old.db.cms" "" -o /dev/null || true
      hb_s3 DELETE "$old.sig" "" -o /dev/null || true
      echo "hakube-etcd-backup: removed the old backup \${old##*/}"
    done
    echo "hakube-etcd-backup: backup $name: revision $revision, $size bytes, $(( $(date +%s) - started )) s"
    ;;
  list)
    keys=$(hb_keys)
    for key in $(printf '%s\\n' "$keys" | grep '\\.json$' || true); do
      hb_s3 GET "$key" "" || hb_die "cannot read $key"
    done
    ;;
  latest)
    keys=$(hb_keys)
    key=$(printf '%s\\n' "$keys" | grep '\\.json$' | tail -n 1 || true)
    [ -n "$key" ] || hb_die "no backup in $HAKUBE_BACKUP_ENDPOINT/$HAKUBE_BACKUP_BUCKET/$HAKUBE_BACKUP_PREFIX/"
    hb_s3 GET "$key" ""
    ;;
  fetch)
    want=\${2:-}; out=\${3:-}
    [ -n "$want" ] && [ -n "$out" ] || hb_die "usage: fetch NAME|latest OUT"
    [ -r "\${HAKUBE_BACKUP_KEY_FILE:-}" ] || hb_die "HAKUBE_BACKUP_KEY_FILE names no readable key file"
    [ -r "\${HAKUBE_BACKUP_KEY_CERT:-${BACKUP_RECIPIENT}}" ] || hb_die "no certificate of the backup key"
    [ "$(openssl pkey -in "$HAKUBE_BACKUP_KEY_FILE" -pubout 2>/dev/null)" = "$(openssl x509 -in "\${HAKUBE_BACKUP_KEY_CERT:-${BACKUP_RECIPIENT}}" -noout -pubkey 2>/dev/null)" ] \\
      || hb_die "the key given does not belong to the backup certificate (their public keys differ)"
    verify=\${HAKUBE_BACKUP_VERIFY_KEY:-${BACKUP_VERIFY_KEY}}
    [ -r "$verify" ] || hb_die "no public key to verify backups with at $verify"
    keys=$(hb_keys)
    if [ "$want" = latest ]; then
      key=$(printf '%s\\n' "$keys" | grep '\\.json$' | tail -n 1 || true)
      [ -n "$key" ] || hb_die "no backup in $HAKUBE_BACKUP_ENDPOINT/$HAKUBE_BACKUP_BUCKET/$HAKUBE_BACKUP_PREFIX/"
      want=\${key##*/}; want=\${want%.json}
    fi
    [[ "$want" =~ ^etcd-[0-9TZ]+-r[0-9]+$ ]] || hb_die "'$want' is not a backup name (etcd-<time>-r<revision>, or latest)"
    printf '%s\\n' "$keys" | grep -qxF "$HAKUBE_BACKUP_PREFIX/$want.json" \\
      || hb_die "backup '$want' does not exist in $HAKUBE_BACKUP_ENDPOINT/$HAKUBE_BACKUP_BUCKET/$HAKUBE_BACKUP_PREFIX/"
    hb_s3 GET "$HAKUBE_BACKUP_PREFIX/$want.json" "" -o "$HB_TMP/manifest.json" || hb_die "cannot read the manifest of backup '$want'"
    # Nothing in the manifest counts before this stack's signature over it is checked:
    # whoever may write to storage can encrypt to the (public) certificate and write a
    # manifest that matches, but cannot sign one.
    printf '%s\\n' "$keys" | grep -qxF "$HAKUBE_BACKUP_PREFIX/$want.sig" \\
      || hb_die "backup '$want' is not signed (storage has no $want.sig): refusing it; it was planted, or made before backups were signed"
    hb_s3 GET "$HAKUBE_BACKUP_PREFIX/$want.sig" "" -o "$HB_TMP/manifest.sig" || hb_die "cannot read the signature of backup '$want'"
    openssl dgst -sha256 -verify "$verify" -signature "$HB_TMP/manifest.sig" "$HB_TMP/manifest.json" >/dev/null 2>&1 \\
      || hb_die "backup '$want' does not carry a valid signature of this stack's backup signing key: refusing it (planted, or altered in storage)"
    manifest=$(cat "$HB_TMP/manifest.json")
    signed=$(hb_field "$manifest" name)
    [ "$signed" = "$want" ] || hb_die "backup '$want' is signed as backup '$signed': refusing it (a signed manifest copied under another name)"
    cms_sha=$(hb_field "$manifest" cmsSha256)
    [[ "$cms_sha" =~ ^[0-9a-f]{64}$ ]] || hb_die "backup '$want' has no sha256 of its encrypted file in its signed manifest"
    cluster=$(hb_field "$manifest" cluster)
    [ "$cluster" = "$HAKUBE_BACKUP_CLUSTER" ] || hb_die "backup '$want' is of another cluster ($cluster, this is $HAKUBE_BACKUP_CLUSTER)"
    to=$(hb_field "$manifest" recipient)
    mine=$(openssl x509 -in "\${HAKUBE_BACKUP_KEY_CERT:-${BACKUP_RECIPIENT}}" -noout -serial | cut -d= -f2)
    [ -z "$to" ] || [ "$to" = "$mine" ] || hb_die "backup '$want' was encrypted to another backup key (certificate serial $to; this key's is $mine)"
    size=$(hb_field "$manifest" size); db=$(hb_field "$manifest" dbSize)
    [[ "$size" =~ ^[0-9]+$ && "$db" =~ ^[0-9]+$ ]] || hb_die "backup '$want' has no sizes in its signed manifest"
    hb_room $(( size + db )) "backup '$want' is $(( size / 1048576 )) MiB encrypted and $(( db / 1048576 )) MiB decrypted"
    hb_s3 GET "$HAKUBE_BACKUP_PREFIX/$want.db.cms" "" -o "$HB_TMP/snapshot.cms" || hb_die "cannot download backup '$want'"
    [ "$(sha256sum "$HB_TMP/snapshot.cms" | cut -d' ' -f1)" = "$cms_sha" ] \\
      || hb_die "backup '$want' does not match its signed manifest (the encrypted file's sha256 differs): the file is corrupt, truncated or replaced"
    openssl cms -decrypt -binary -inform DER -in "$HB_TMP/snapshot.cms" -inkey "$HAKUBE_BACKUP_KEY_FILE" -out "$HB_TMP/snapshot.db" 2>/dev/null \\
      || hb_die "backup '$want' cannot be decrypted: the file is corrupt or truncated, or encrypted to another key"
    [ "$(sha256sum "$HB_TMP/snapshot.db" | cut -d' ' -f1)" = "$(hb_field "$manifest" sha256)" ] || hb_die "backup '$want' does not match its manifest's sha256"
    hb_snapshot_whole "$HB_TMP/snapshot.db" || hb_die "backup '$want' is not a whole etcd snapshot"
    etcdutl snapshot status "$HB_TMP/snapshot.db" -w json >/dev/null 2>&1 || hb_die "etcdutl refuses backup '$want'"
    mv -f "$HB_TMP/snapshot.db" "$out"
    printf '%s\\n' "$manifest"
    ;;
  help|*)
    sed -n '2,3p' "$0"
    echo "usage: $0 run | list | latest | fetch NAME|latest OUT (HAKUBE_BACKUP_KEY_FILE=<private key>; HAKUBE_BACKUP_VERIFY_KEY=<public key> @default ${BACKUP_VERIFY_KEY})"
    [ "$cmd" = help ]
    ;;
esac
`;
}

/** The service the timer starts (and `systemctl start` runs on demand). */
export function renderBackupService(): string {
  return `# Managed by hakube; changes are overwritten by the next \`pulumi up\`.
[Unit]
Description=hakube etcd backup (snapshot, encrypt, upload, keep the newest)
After=etcd.service network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=${BACKUP_PROGRAM} run
TimeoutStartSec=1800
Nice=10
IOSchedulingClass=idle
`;
}

export function renderBackupTimer(intervalMinutes: number): string {
  return `# Managed by hakube; changes are overwritten by the next \`pulumi up\`.
[Unit]
Description=hakube etcd backup every ${intervalMinutes} min

[Timer]
OnBootSec=${intervalMinutes}min
OnUnitActiveSec=${intervalMinutes}min
AccuracySec=30s
RandomizedDelaySec=0
Persistent=false

[Install]
WantedBy=timers.target
`;
}
