package main

// The stand-in serves the provider resource only: CheckConfig accepts a kubeconfig
// document or a path and rejects anything else; every Kubernetes object and function
// fails with a message that names the stand-in.

import (
	"context"
	"strings"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

var ctx = context.Background()

func TestCheckConfigKubeconfig(t *testing.T) {
	s := newServer()
	for text, ok := range map[string]bool{
		"apiVersion: v1\nclusters:\n- cluster: {}\n": true,
		"/etc/kubernetes/admin.conf":                 true,
		"~/.kube/config":                             true,
		"not a kubeconfig":                           false,
	} {
		news, err := structpb.NewStruct(map[string]any{"kubeconfig": text})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.CheckConfig(ctx, &pulumirpc.CheckRequest{Urn: "urn:pulumi:s::p::pulumi:providers:kubernetes::k", News: news})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(resp.GetFailures()) == 0; got != ok {
			t.Errorf("kubeconfig %q: accepted=%v, want %v (failures %v)", text, got, ok, resp.GetFailures())
		}
	}
}

func TestObjectsAreUnsupported(t *testing.T) {
	s := newServer()
	_, err := s.Create(ctx, &pulumirpc.CreateRequest{Urn: "urn:pulumi:s::p::kubernetes:core/v1:Namespace::ns", Type: "kubernetes:core/v1:Namespace"})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "only the provider resource") {
		t.Errorf("create a Namespace: %v, want Unimplemented naming the stand-in", err)
	}
	_, err = s.Invoke(ctx, &pulumirpc.InvokeRequest{Tok: "kubernetes:yaml:decode"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("invoke: %v, want Unimplemented", err)
	}
}
