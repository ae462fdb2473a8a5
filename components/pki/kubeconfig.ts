// Kubeconfig rendering (pure). Certificates are embedded as base64 data, so the result
// holds a private key (or a token) and must be handled as a secret.

/** The cluster, and the user's credentials: a client certificate, or a bearer token (a bootstrap token). */
export type KubeconfigInput = {
  readonly clusterName: string;
  readonly server: string;
  readonly caCertPem: string;
  readonly userName: string;
} & ({ readonly clientCertPem: string; readonly clientKeyPem: string } | { readonly token: string });

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

export function renderKubeconfig(input: KubeconfigInput): string {
  if (!/^https:\/\/[^\s]+$/.test(input.server)) {
    throw new Error(`kubeconfig server must be an https URL, got ${JSON.stringify(input.server)}`);
  }
  const context = `${input.userName}@${input.clusterName}`;
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${JSON.stringify(input.clusterName)}`,
    "  cluster:",
    `    server: ${JSON.stringify(input.server)}`,
    `    certificate-authority-data: ${b64(input.caCertPem)}`,
    "users:",
    `- name: ${JSON.stringify(input.userName)}`,
    "  user:",
    ...("token" in input
      ? [`    token: ${JSON.stringify(input.token)}`]
      : [`    client-certificate-data: ${b64(input.clientCertPem)}`, `    client-key-data: ${b64(input.clientKeyPem)}`]),
    "contexts:",
    `- name: ${JSON.stringify(context)}`,
    "  context:",
    `    cluster: ${JSON.stringify(input.clusterName)}`,
    `    user: ${JSON.stringify(input.userName)}`,
    `current-context: ${JSON.stringify(context)}`,
    "",
  ].join("\n");
}
