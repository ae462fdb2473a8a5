// Package provkittest serves a provider in-process and hands tests the engine's own
// client for it (plugin.NewProviderWithClient from the Pulumi SDK), so that a test sees
// each call as the engine makes it: secrets stripped from what the provider receives
// when it does not accept them and marked again on what comes back, replace keys,
// refreshed state. Only tests import it.
package provkittest

import (
	"context"
	"net"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Engine serves srv on a loopback port and returns the engine's client for it,
// configured as the default provider of package pkg.
func Engine(t testing.TB, pkg string, srv pulumirpc.ResourceProviderServer) plugin.Provider {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	gs := grpc.NewServer()
	pulumirpc.RegisterResourceProviderServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc client: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	p := plugin.NewProviderWithClient(nil, pulumirpc.NewResourceProviderClient(conn), false)
	typ := tokens.Type("pulumi:providers:" + pkg)
	if _, err := p.Configure(context.Background(), plugin.ConfigureRequest{Type: &typ, Inputs: resource.PropertyMap{}}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return p
}

// URN names a resource of type typ in a test stack.
func URN(typ, name string) resource.URN {
	return resource.NewURN("test", "hakube", "", tokens.Type(typ), name)
}

// Props builds a property map from plain Go values (strings, numbers, bools, slices,
// maps, and resource.PropertyValue for secrets and assets).
func Props(m map[string]any) resource.PropertyMap {
	out := resource.PropertyMap{}
	for k, v := range m {
		if pv, ok := v.(resource.PropertyValue); ok {
			out[resource.PropertyKey(k)] = pv
			continue
		}
		out[resource.PropertyKey(k)] = resource.NewPropertyValueRepl(v, nil, func(x any) (resource.PropertyValue, bool) {
			if pv, ok := x.(resource.PropertyValue); ok {
				return pv, true
			}
			return resource.PropertyValue{}, false
		})
	}
	return out
}

// Secret marks a plain value secret.
func Secret(v any) resource.PropertyValue {
	return resource.MakeSecret(resource.NewPropertyValue(v))
}

// Str reads a string property, looking through a secret; ok is false when absent or
// not a string.
func Str(m resource.PropertyMap, k string) (string, bool) {
	v, has := m[resource.PropertyKey(k)]
	if !has {
		return "", false
	}
	if v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !v.IsString() {
		return "", false
	}
	return v.StringValue(), true
}

// IsSecret says whether property k is present and a secret.
func IsSecret(m resource.PropertyMap, k string) bool {
	v, has := m[resource.PropertyKey(k)]
	return has && v.IsSecret()
}
