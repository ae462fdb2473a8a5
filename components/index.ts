// hakube: Pulumi components for a highly available Kubernetes control plane.
// This file only re-exports the public API.
export * from "./types";
export * from "./net";
export * from "./version";
export * from "./validation";
export * from "./systemd";
export * from "./remote/files";
export * from "./remote/hostStep";
export * from "./binaries/source";
export * from "./binaries/install";
export * from "./pki/kubeconfig";
export * from "./pki/clusterPki";
export * from "./etcd/render";
export * from "./etcd/etcdCluster";
export * from "./apiserver/render";
export * from "./apiserver/apiServerPool";
export * from "./loadbalancer/render";
export * from "./loadbalancer/keepalivedLoadBalancer";
export * from "./controllers/render";
export * from "./controllers/leaderElectedControllers";
export * from "./controlplane/deployedVersions";
export * from "./controlplane/haControlPlane";
export * from "./machines/localRender";
export * from "./machines/localMachines";
export * from "./aws/awsRender";
export * from "./aws/awsMachines";
export * from "./aws/awsNetworkLoadBalancer";
