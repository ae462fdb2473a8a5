import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { Host } from "../types";
import { firstHostAddress, isDnsName, isIpv4 } from "../net";
import { invalid, knownValue, requireCidr, requireHosts, requireInteger } from "../validation";
import { renderKubeconfig } from "./kubeconfig";
import { CertificateRenewal } from "./renewal";
import { KeyRing, KeyRingSpec, resolveKeyRing } from "./keyRing";

/** A PEM certificate with its private key (the key is a Pulumi secret). */
export interface KeyPair {
  readonly certPem: pulumi.Output<string>;
  readonly keyPem: pulumi.Output<string>;
}

export interface ClusterPkiArgs {
  /** Hosts that run kube-apiserver: their addresses go into the serving certificate. */
  readonly controlPlaneHosts: readonly Host[];
  /**
   * Hosts that run etcd; each gets a server and a peer certificate.
   * @default controlPlaneHosts (stacked etcd)
   */
  readonly etcdHosts?: readonly Host[];
  /** The stable API endpoint clients use: a virtual IP or a load balancer's DNS name. */
  readonly apiEndpoint: pulumi.Input<string>;
  /** @default "10.96.0.0/12" */
  readonly serviceCidr?: string;
  /** @default "cluster.local" */
  readonly clusterDomain?: string;
  /** Extra DNS names or IPs for the apiserver certificate. @default [] */
  readonly extraApiServerSans?: readonly string[];
  /** Validity of the three CAs. @default 87600 (10 years) */
  readonly caValidityHours?: number;
  /** Validity of every leaf certificate. @default 8760 (1 year) */
  readonly certificateValidityHours?: number;
  /**
   * A `pulumi up` this many hours or fewer before a leaf certificate expires renews it.
   * @default 720 (30 days)
   */
  readonly earlyRenewalHours?: number;
  /**
   * The service-account signing keys, by name, oldest first, and the one that signs; every
   * key's public half verifies. Rotation is three `pulumi up`s: add a key (`keys: ["key1",
   * "key2"]`), make it active (`active: "key2"`), and once every token the old key signed has
   * expired (`tokenMaxHours` after the switch; a preview refuses it sooner), drop the old one
   * (`keys: ["key2"]`). `tokenMaxHours` caps every token's lifetime
   * (`--service-account-max-token-expiration`; the kubelet's own last an hour).
   * @default { keys: ["key1"], active: the first key, tokenMaxHours: 24 }
   */
  readonly serviceAccountKeys?: { readonly keys?: readonly string[]; readonly active?: string; readonly tokenMaxHours?: number };
  /**
   * The cluster, etcd and front-proxy CAs, each by name, oldest first, and the one that
   * signs; every CA listed is trusted. A CA rotates in three `pulumi up`s, each rolled host by
   * host and each safe to stop after: add a CA (`keys: ["ca1", "ca2"]`: trusted everywhere,
   * nothing signed by it yet), make it active (`active: "ca2"`: every leaf certificate is
   * issued anew from it, kubeconfigs switch, kubelets bootstrap again), then drop the old one
   * (`keys: ["ca2"]`: a certificate from the old CA is refused from then on). A preview
   * refuses a switch to a CA not deployed yet, and a switch and a drop at once.
   * @default { keys: ["ca1"], active: the first } for each
   */
  readonly certificateAuthorities?: {
    readonly cluster?: CaRingArgs;
    readonly etcd?: CaRingArgs;
    readonly frontProxy?: CaRingArgs;
  };
}

/** One CA's ring: its CA names, oldest first, and the one that signs (default: the first). */
export interface CaRingArgs {
  readonly keys?: readonly string[];
  readonly active?: string;
}

type Usage = "server" | "client" | "peer";

/** When one certificate of the PKI expires, and from when a `pulumi up` renews it. */
export interface CertificateExpiry {
  /** The certificate's resource name, e.g. "local-pki-apiserver-cp-1". */
  readonly name: string;
  /** "ca" or "leaf". */
  readonly kind: "ca" | "leaf";
  /** RFC 3339 end of validity. */
  readonly notAfter: string;
  /** RFC 3339: from this time on, the next `pulumi up` issues it anew. */
  readonly renewFrom: string;
}

/** Expiries sorted soonest first (ties by name); pure. */
export function sortExpiries(list: readonly CertificateExpiry[]): CertificateExpiry[] {
  return [...list].sort((a, b) => Date.parse(a.notAfter) - Date.parse(b.notAfter) || a.name.localeCompare(b.name));
}

const USES: Record<Usage, string[]> = {
  server: ["digital_signature", "key_encipherment", "server_auth"],
  client: ["digital_signature", "key_encipherment", "client_auth"],
  peer: ["digital_signature", "key_encipherment", "server_auth", "client_auth"],
};

/** Names every Kubernetes client resolves the in-cluster API at. */
export function apiServerDnsNames(clusterDomain: string): string[] {
  return ["kubernetes", "kubernetes.default", "kubernetes.default.svc", `kubernetes.default.svc.${clusterDomain}`];
}

/** Splits SAN entries into IP addresses and DNS names (pure, deduplicated, stable order). */
export function splitSans(entries: readonly string[]): { ipAddresses: string[]; dnsNames: string[] } {
  const unique = [...new Set(entries)];
  return { ipAddresses: unique.filter(isIpv4), dnsNames: unique.filter((e) => !isIpv4(e)) };
}

/**
 * The cluster's certificates: cluster, etcd and front-proxy CAs, the service-account
 * key pair, per-member etcd certificates, the apiserver's serving and client
 * certificates, and client certificates (and kubeconfigs) for controller-manager,
 * scheduler and an admin. All keys are ECDSA P-256 and Pulumi secrets.
 */
export class ClusterPki extends pulumi.ComponentResource {
  /** The active cluster CA: signs every cluster leaf (and, in the controller-manager, CSRs). */
  public readonly clusterCa: KeyPair;
  /** The active etcd CA. */
  public readonly etcdCa: KeyPair;
  /** The active front-proxy CA. */
  public readonly frontProxyCa: KeyPair;
  /**
   * What verifiers trust: every CA of each ring (PEM blocks, the active CA first, so every
   * rotation step changes the files, and the services reading them restart).
   */
  public readonly clusterCaBundle: pulumi.Output<string>;
  public readonly etcdCaBundle: pulumi.Output<string>;
  public readonly frontProxyCaBundle: pulumi.Output<string>;
  /** The CA rings, as resolved. */
  public readonly certificateAuthorities: { readonly cluster: KeyRingSpec; readonly etcd: KeyRingSpec; readonly frontProxy: KeyRingSpec };
  /**
   * The first cluster CA's certificate, kept through CA rotations: what names this cluster
   * (its backups' folder) for good.
   */
  public readonly clusterIdentityPem: pulumi.Output<string>;
  /**
   * Signs and verifies service-account tokens, the same on every apiserver: `privateKeyPem`
   * is the active key, `publicKeyPem` every key's public half (PEM blocks, one per key).
   */
  public readonly serviceAccount: { readonly publicKeyPem: pulumi.Output<string>; readonly privateKeyPem: pulumi.Output<string> };
  /** The service-account keys, as resolved, and the longest a token may last (seconds). */
  public readonly serviceAccountKeys: { readonly keys: readonly string[]; readonly active: string; readonly tokenMaxSeconds: number };
  /** Per etcd host name. */
  public readonly etcdServer: Record<string, KeyPair> = {};
  public readonly etcdPeer: Record<string, KeyPair> = {};
  /**
   * The apiserver serving certificate per control-plane host name: the endpoint, that
   * host's address and name, the first service IP, loopback and the kubernetes names. One
   * per host, so adding or removing a control-plane host re-issues no other host's
   * certificate (and restarts no other apiserver).
   */
  public readonly apiServerServing: Record<string, KeyPair> = {};
  public readonly apiServerEtcdClient: KeyPair;
  public readonly apiServerKubeletClient: KeyPair;
  public readonly frontProxyClient: KeyPair;
  /** For etcdctl on the hosts (health gates, status). */
  public readonly etcdHealthcheckClient: KeyPair;
  public readonly controllerManagerClient: KeyPair;
  public readonly schedulerClient: KeyPair;
  public readonly adminClient: KeyPair;
  /** Every SAN of the apiserver serving certificates (the union over the hosts). */
  public readonly apiServerSans: pulumi.Output<string[]>;

  private readonly validityHours: number;
  private readonly earlyRenewalHours: number;
  private readonly issued: { name: string; kind: "ca" | "leaf"; end: pulumi.Output<string>; earlyHours: number }[] = [];

  constructor(name: string, args: ClusterPkiArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:ClusterPki", name, {}, opts);
    requireHosts(this, "controlPlaneHosts", args.controlPlaneHosts);
    const etcdHosts = args.etcdHosts ?? args.controlPlaneHosts;
    requireHosts(this, "etcdHosts", etcdHosts);
    const serviceCidr = requireCidr(this, "serviceCidr", args.serviceCidr ?? "10.96.0.0/12");
    const clusterDomain = args.clusterDomain ?? "cluster.local";
    if (!isDnsName(clusterDomain)) {
      invalid(this, "clusterDomain", clusterDomain, 'a DNS domain such as "cluster.local"');
    }
    (args.extraApiServerSans ?? []).forEach((san, i) => {
      if (!isIpv4(san) && !isDnsName(san)) {
        invalid(this, `extraApiServerSans[${i}]`, san, "an IPv4 address or a DNS name");
      }
    });
    const endpoint = knownValue(args.apiEndpoint);
    if (endpoint !== undefined && !isIpv4(endpoint) && !isDnsName(endpoint)) {
      invalid(this, "apiEndpoint", endpoint, "an IPv4 address or a DNS name");
    }
    const caHours = requireInteger(this, "caValidityHours", args.caValidityHours ?? 87600, 24, 876000);
    this.validityHours = requireInteger(this, "certificateValidityHours", args.certificateValidityHours ?? 8760, 1, 876000);
    this.earlyRenewalHours = requireInteger(this, "earlyRenewalHours", args.earlyRenewalHours ?? 720, 0, 876000);
    if (this.earlyRenewalHours >= this.validityHours) {
      invalid(this, "earlyRenewalHours", this.earlyRenewalHours, `less than certificateValidityHours (${this.validityHours})`);
    }
    if (this.validityHours > caHours) {
      invalid(this, "certificateValidityHours", this.validityHours, `at most caValidityHours (${caHours})`);
    }

    const cas = args.certificateAuthorities;
    const cluster = this.caRing(`${name}-cluster-ca`, "kubernetes", caHours, "certificateAuthorities.cluster", cas?.cluster, "the cluster CA", true);
    const etcd = this.caRing(`${name}-etcd-ca`, "etcd-ca", caHours, "certificateAuthorities.etcd", cas?.etcd, "the etcd CA");
    const frontProxy = this.caRing(`${name}-front-proxy-ca`, "front-proxy-ca", caHours, "certificateAuthorities.frontProxy", cas?.frontProxy, "the front-proxy CA");
    this.clusterCa = cluster.signing;
    this.etcdCa = etcd.signing;
    this.frontProxyCa = frontProxy.signing;
    this.clusterCaBundle = cluster.bundle;
    this.etcdCaBundle = etcd.bundle;
    this.frontProxyCaBundle = frontProxy.bundle;
    this.certificateAuthorities = { cluster: cluster.ring, etcd: etcd.ring, frontProxy: frontProxy.ring };
    this.clusterIdentityPem = pulumi
      .all([cluster.record.identity, this.clusterCa.certPem])
      .apply(([identity, active]) => (typeof identity === "string" && identity.includes("BEGIN CERTIFICATE") ? identity : active));

    // The first key keeps the name it had before rotations existed.
    const saRing = resolveKeyRing(this, "serviceAccountKeys", args.serviceAccountKeys);
    const tokenMaxHours = requireInteger(this, "serviceAccountKeys.tokenMaxHours", args.serviceAccountKeys?.tokenMaxHours ?? 24, 1, 8760);
    this.serviceAccountKeys = { ...saRing, tokenMaxSeconds: tokenMaxHours * 3600 };
    const saKeys = new Map(saRing.keys.map((k) => [k, this.privateKey(k === "key1" ? `${name}-service-account` : `${name}-service-account-${k}`, true)]));
    const saRecord = new KeyRing(
      `${name}-service-account-keys`,
      { argument: "serviceAccountKeys", what: "the service-account signing key", spec: saRing, retireAfterSeconds: tokenMaxHours * 3600 },
      { parent: this },
    );
    const active = saKeys.get(saRing.active)!;
    // The key files wait for the record, so a refused step touches no host.
    this.serviceAccount = {
      publicKeyPem: pulumi
        .all([saRecord.id, ...saRing.keys.map((k) => saKeys.get(k)!.publicKeyPem)])
        .apply(([, ...pems]) => pems.map((p) => (p.endsWith("\n") ? p : `${p}\n`)).join("")),
      privateKeyPem: pulumi.secret(pulumi.all([saRecord.id, active.privateKeyPem]).apply(([, pem]) => pem)),
    };

    for (const host of etcdHosts) {
      const sans = pulumi.output(host.address).apply((address) => [host.name, "localhost", address, "127.0.0.1"]);
      this.etcdServer[host.name] = this.leaf(`${name}-etcd-server-${host.name}`, this.etcdCa, { commonName: host.name }, "peer", sans);
      this.etcdPeer[host.name] = this.leaf(`${name}-etcd-peer-${host.name}`, this.etcdCa, { commonName: host.name }, "peer", sans);
    }
    this.etcdHealthcheckClient = this.leaf(`${name}-etcd-healthcheck-client`, this.etcdCa, { commonName: "hakube-etcd-healthcheck" }, "client");
    this.apiServerEtcdClient = this.leaf(`${name}-apiserver-etcd-client`, this.etcdCa, { commonName: "kube-apiserver-etcd-client" }, "client");

    this.apiServerSans = pulumi
      .all([args.apiEndpoint, pulumi.all(args.controlPlaneHosts.map((h) => h.address))])
      .apply(([apiEndpoint, addresses]) => [
        apiEndpoint,
        ...addresses,
        ...args.controlPlaneHosts.map((h) => h.name),
        firstHostAddress(serviceCidr),
        "127.0.0.1",
        "localhost",
        ...apiServerDnsNames(clusterDomain),
        ...(args.extraApiServerSans ?? []),
      ]);
    for (const host of args.controlPlaneHosts) {
      const sans = pulumi.all([args.apiEndpoint, host.address]).apply(([apiEndpoint, address]) => [
        apiEndpoint,
        address,
        host.name,
        firstHostAddress(serviceCidr),
        "127.0.0.1",
        "localhost",
        ...apiServerDnsNames(clusterDomain),
        ...(args.extraApiServerSans ?? []),
      ]);
      this.apiServerServing[host.name] = this.leaf(`${name}-apiserver-${host.name}`, this.clusterCa, { commonName: "kube-apiserver" }, "server", sans);
    }
    this.apiServerKubeletClient = this.leaf(
      `${name}-apiserver-kubelet-client`,
      this.clusterCa,
      { commonName: "kube-apiserver-kubelet-client", organization: "system:masters" },
      "client",
    );
    this.frontProxyClient = this.leaf(`${name}-front-proxy-client`, this.frontProxyCa, { commonName: "front-proxy-client" }, "client");
    this.controllerManagerClient = this.leaf(
      `${name}-controller-manager`,
      this.clusterCa,
      { commonName: "system:kube-controller-manager" },
      "client",
    );
    this.schedulerClient = this.leaf(`${name}-scheduler`, this.clusterCa, { commonName: "system:kube-scheduler" }, "client");
    this.adminClient = this.leaf(`${name}-admin`, this.clusterCa, { commonName: "hakube-admin", organization: "system:masters" }, "client");

    this.registerOutputs({
      clusterCaCertPem: this.clusterCaBundle,
      etcdCaCertPem: this.etcdCaBundle,
      frontProxyCaCertPem: this.frontProxyCaBundle,
      apiServerSans: this.apiServerSans,
    });
  }

  /**
   * A client certificate from the cluster CA (e.g. for kube-proxy, or an approver of
   * kubelet serving certificates), renewed like the others. `organization` is the group.
   */
  public clientCertificate(name: string, subject: { commonName: string; organization?: string }): KeyPair {
    return this.leaf(name, this.clusterCa, subject, "client");
  }

  /**
   * Every certificate this PKI issued (the CAs and every leaf, including those made later
   * with `clientCertificate`), soonest expiry first. Call it after the last
   * `clientCertificate` (a stack does, when it exports it).
   */
  public certificateExpiry(): pulumi.Output<CertificateExpiry[]> {
    const issued = [...this.issued];
    return pulumi.all(issued.map((c) => c.end)).apply((ends) =>
      sortExpiries(
        issued.map((c, i) => ({
          name: c.name,
          kind: c.kind,
          notAfter: ends[i],
          renewFrom: Number.isNaN(Date.parse(ends[i])) ? "" : new Date(Date.parse(ends[i]) - c.earlyHours * 3_600_000).toISOString(),
        })),
      ),
    );
  }

  /** A kubeconfig (secret) for one of this PKI's client certificates and an API URL. */
  public kubeconfig(client: KeyPair, userName: string, server: pulumi.Input<string>, clusterName = "hakube"): pulumi.Output<string> {
    return pulumi.secret(
      pulumi.all([server, this.clusterCaBundle, client.certPem, client.keyPem]).apply(([srv, ca, cert, key]) =>
        renderKubeconfig({ clusterName, server: srv, caCertPem: ca, userName, clientCertPem: cert, clientKeyPem: key }),
      ),
    );
  }

  /** `retain`: key material the cluster depends on for good (a CA's, a service-account key), retained on delete. */
  private privateKey(name: string, retain = false): tls.PrivateKey {
    return new tls.PrivateKey(
      name,
      { algorithm: "ECDSA", ecdsaCurve: "P256" },
      { parent: this, additionalSecretOutputs: ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"], ...(retain ? { retainOnDelete: true } : {}) },
    );
  }

  /**
   * One CA ring: a self-signed CA per name (the first CA keeps the name it had before
   * rotations existed), the record that refuses unsafe steps, the active CA for signing and the
   * bundle of all for trust. Both wait for the record, so a refused step touches nothing.
   */
  private caRing(
    name: string,
    commonName: string,
    hours: number,
    argument: string,
    given: CaRingArgs | undefined,
    what: string,
    keepIdentity = false,
  ): { ring: KeyRingSpec; signing: KeyPair; bundle: pulumi.Output<string>; record: KeyRing } {
    const ring = resolveKeyRing(this, argument, given, "ca1");
    const cas = new Map(ring.keys.map((k) => [k, k === "ca1" ? this.selfSignedCa(name, commonName, hours) : this.selfSignedCa(`${name}-${k}`, `${commonName}-${k}`, hours)]));
    const active = cas.get(ring.active)!;
    const record = new KeyRing(
      `${name}-ring`,
      { argument, what: `certificates of ${what}`, spec: ring, ...(keepIdentity ? { identity: active.certPem } : {}) },
      { parent: this },
    );
    const order = [ring.active, ...ring.keys.filter((k) => k !== ring.active)];
    return {
      ring,
      record,
      signing: {
        certPem: pulumi.all([record.id, active.certPem]).apply(([, pem]) => pem),
        keyPem: pulumi.secret(pulumi.all([record.id, active.keyPem]).apply(([, pem]) => pem)),
      },
      bundle: pulumi
        .all([record.id, ...order.map((k) => cas.get(k)!.certPem)])
        .apply(([, ...pems]) => pems.map((p) => (p.endsWith("\n") ? p : `${p}\n`)).join("")),
    };
  }

  private selfSignedCa(name: string, commonName: string, hours: number): KeyPair {
    const key = this.privateKey(`${name}-key`, true);
    const earlyRenewalHours = Math.min(this.earlyRenewalHours * 2, hours - 1);
    const cert = new tls.SelfSignedCert(
      name,
      {
        privateKeyPem: key.privateKeyPem,
        subject: { commonName },
        isCaCertificate: true,
        validityPeriodHours: hours,
        earlyRenewalHours,
        allowedUses: ["cert_signing", "crl_signing", "digital_signature", "key_encipherment"],
      },
      { parent: this, retainOnDelete: true },
    );
    this.issued.push({ name, kind: "ca", end: cert.validityEndTime, earlyHours: earlyRenewalHours });
    return { certPem: cert.certPem, keyPem: pulumi.secret(key.privateKeyPem) };
  }

  private leaf(
    name: string,
    ca: KeyPair,
    subject: { commonName: string; organization?: string },
    usage: Usage,
    sans?: pulumi.Input<string[]>,
  ): KeyPair {
    const key = this.privateKey(`${name}-key`);
    const split = sans ? pulumi.output(sans).apply(splitSans) : undefined;
    const csr = new tls.CertRequest(
      `${name}-csr`,
      {
        privateKeyPem: key.privateKeyPem,
        subject,
        dnsNames: split?.dnsNames,
        ipAddresses: split?.ipAddresses,
      },
      { parent: this },
    );
    // hakube decides renewal (./renewal.ts): a new generation re-issues the certificate.
    const renewal = new CertificateRenewal(
      `${name}-renewal`,
      { validityHours: this.validityHours, earlyRenewalHours: this.earlyRenewalHours },
      { parent: this },
    );
    const cert = new tls.LocallySignedCert(
      name,
      {
        certRequestPem: csr.certRequestPem,
        caCertPem: ca.certPem,
        caPrivateKeyPem: ca.keyPem,
        validityPeriodHours: this.validityHours,
        earlyRenewalHours: this.earlyRenewalHours,
        allowedUses: USES[usage],
      },
      // A string, never undefined (what mocks give a dynamic resource's output).
      { parent: this, replacementTrigger: renewal.generation.apply((g) => String(g ?? 1)) },
    );
    this.issued.push({ name, kind: "leaf", end: cert.validityEndTime, earlyHours: this.earlyRenewalHours });
    return { certPem: cert.certPem, keyPem: pulumi.secret(key.privateKeyPem) };
  }
}
