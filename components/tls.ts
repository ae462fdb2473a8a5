// The TLS settings every hakube endpoint shares (pure): TLS 1.2 at least and, for TLS 1.2,
// only ECDHE key exchange with AEAD ciphers (the CIS Kubernetes Benchmark's list, and
// what Mozilla's "intermediate" profile allows). TLS 1.3's suites are all AEAD and are
// not configurable in Go.

/** Go's names, for kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and etcd. */
export const TLS_CIPHER_SUITES: readonly string[] = [
  "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
  "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

/** The same suites by OpenSSL's names, for HAProxy's TLS health checks. */
export const OPENSSL_CIPHERS: readonly string[] = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
];

/** Kubernetes components' `--tls-min-version` value. */
export const KUBERNETES_TLS_MIN_VERSION = "VersionTLS12";
/** etcd's `--tls-min-version` value. */
export const ETCD_TLS_MIN_VERSION = "TLS1.2";

/** CBC ciphers (for ECDSA and RSA keys) a hardened endpoint must refuse: tests offer them. */
export const WEAK_OPENSSL_CIPHERS: readonly string[] = ["ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA"];
