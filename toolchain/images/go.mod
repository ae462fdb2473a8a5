// hakube's own small images for the worker nodes, built from local binaries (no registry):
// pause (the pod sandbox) and probe (in-cluster checks and measurements). Managed by
// toolchain/build.sh, which also packs them, and CoreDNS, into image archives.
module hakube.local/toolchain/images

go 1.26.0
