// Command pulumi-resource-kubernetes is a stand-in for the `kubernetes` Pulumi
// provider: it serves only the provider resource itself (`new k8s.Provider(...)`
// registers, checks its kubeconfig and keeps its configuration), so a program that
// exposes a Provider for a new cluster runs fully offline. Any Kubernetes resource
// or function through it fails with a message saying so. The upstream provider's
// module is not served by the Go module proxy at the npm release; see
// toolchain/README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"hakube.local/toolchain/pulumi/internal/provkit"
)

var version = "0.0.0-dev"

type stub struct{ *provkit.Server }

// CheckConfig rejects a kubeconfig that is plainly not one (when it is known).
func (s stub) CheckConfig(ctx context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	resp, err := s.Server.CheckConfig(ctx, req)
	if err != nil {
		return nil, err
	}
	if v, ok := req.GetNews().GetFields()["kubeconfig"]; ok {
		if text := v.GetStringValue(); text != "" && !strings.Contains(text, "clusters") && !strings.HasPrefix(strings.TrimSpace(text), "/") && !strings.HasPrefix(strings.TrimSpace(text), "~") {
			resp.Failures = append(resp.Failures, &pulumirpc.CheckFailure{Property: "kubeconfig", Reason: "is neither a kubeconfig document (no clusters) nor a path"})
		}
	}
	return resp, nil
}

func newServer() stub {
	return stub{&provkit.Server{Name: "kubernetes", Version: version, Kinds: map[string]*provkit.Kind{},
		Unsupported: "hakube's offline kubernetes provider serves only the provider resource; " +
			"manage cluster objects with kubectl, or install the upstream pulumi-resource-kubernetes plugin"}}
}

func main() {
	if err := provkit.MainServer("kubernetes", newServer()); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-kubernetes: %v\n", err)
		os.Exit(1)
	}
}
