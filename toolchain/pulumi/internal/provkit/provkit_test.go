package provkit_test

// The frame's own rules, through the engine's client (provkittest.Engine): what is a
// change, what replaces, what Check fills in, what an update keeps, which outputs are
// secret, what a refresh lays over the state. The secret handling rests on the engine
// (sdk/go/common/resource/plugin/provider_plugin.go, annotateSecrets): a provider that
// does not accept secrets gets them stripped, and outputs of the same name as a
// secret input are marked secret again; outputs a provider returns as secrets are kept.

import (
	"context"
	"slices"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"hakube.local/toolchain/pulumi/internal/provkit"
	"hakube.local/toolchain/pulumi/internal/provkit/provkittest"
)

var ctx = context.Background()

const typ = "test:index:Thing"

type calls struct {
	created, updated, deleted []provkit.Values
	changed                   [][]string
}

func server(c *calls) *provkit.Server {
	return &provkit.Server{Name: "test", Version: "1.0.0", Kinds: map[string]*provkit.Kind{
		typ: {
			Updatable: []string{"soft"},
			Defaults:  provkit.Values{"level": 3.0},
			Validate: func(in provkit.Values) map[string]string {
				if provkit.Str(in, "hard") == "bad" {
					return map[string]string{"hard": "is bad", "another": "too"}
				}
				return nil
			},
			Secrets: []string{"token"},
			Create: func(_ context.Context, _ string, in provkit.Values) (string, provkit.Values, error) {
				c.created = append(c.created, in)
				return "id-1", provkit.Values{"computed": "c1", "token": "t1", "echo": provkit.Str(in, "hard")}, nil
			},
			Update: func(_ context.Context, _, _ string, _, _, ni provkit.Values, ch []string) (provkit.Values, error) {
				c.updated = append(c.updated, ni)
				c.changed = append(c.changed, ch)
				return nil, nil // keep the computed outputs
			},
			Delete: func(_ context.Context, _, _ string, st provkit.Values) error {
				c.deleted = append(c.deleted, st)
				return nil
			},
			Refresh: func(_, _ provkit.Values) provkit.Values {
				return provkit.Values{"refreshed": true}
			},
		},
	}}
}

var urn = provkittest.URN(typ, "t")

func check(t *testing.T, p plugin.Provider, news map[string]any) (resource.PropertyMap, []plugin.CheckFailure) {
	t.Helper()
	resp, err := p.Check(ctx, plugin.CheckRequest{URN: urn, Name: "t", Type: typ, News: provkittest.Props(news)})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Properties, resp.Failures
}

func diff(t *testing.T, p plugin.Provider, olds, state, news resource.PropertyMap, ignore ...string) plugin.DiffResult {
	t.Helper()
	d, err := p.Diff(ctx, plugin.DiffRequest{URN: urn, Name: "t", Type: typ, ID: "id-1",
		OldInputs: olds, OldOutputs: state, NewInputs: news, AllowUnknowns: true, IgnoreChanges: ignore})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCheckDefaultsAndFailures(t *testing.T) {
	p := provkittest.Engine(t, "test", server(&calls{}))
	in, failures := check(t, p, map[string]any{"hard": "x"})
	if v := in["level"]; !v.IsNumber() || v.NumberValue() != 3 {
		t.Errorf("default level = %v", v)
	}
	in, _ = check(t, p, map[string]any{"hard": "x", "level": 7.0})
	if v := in["level"]; v.NumberValue() != 7 {
		t.Errorf("a given level was overwritten: %v", v)
	}
	_, failures = check(t, p, map[string]any{"hard": "bad"})
	if len(failures) != 2 || failures[0].Property != "another" || failures[1].Property != "hard" {
		t.Errorf("failures %v, want both, sorted", failures)
	}
}

func TestDiffReplacesUnlessUpdatable(t *testing.T) {
	p := provkittest.Engine(t, "test", server(&calls{}))
	olds := provkittest.Props(map[string]any{"hard": "a", "soft": "a", "list": []any{"x"}})
	cases := []struct {
		name    string
		news    resource.PropertyMap
		changes plugin.DiffChanges
		replace []resource.PropertyKey
		ignore  []string
	}{
		{"same", olds.Copy(), plugin.DiffNone, nil, nil},
		{"updatable", provkittest.Props(map[string]any{"hard": "a", "soft": "b", "list": []any{"x"}}), plugin.DiffSome, nil, nil},
		{"other", provkittest.Props(map[string]any{"hard": "b", "soft": "a", "list": []any{"x"}}), plugin.DiffSome, []resource.PropertyKey{"hard"}, nil},
		{"nested", provkittest.Props(map[string]any{"hard": "a", "soft": "a", "list": []any{"x", "y"}}), plugin.DiffSome, []resource.PropertyKey{"list"}, nil},
		{"removed", provkittest.Props(map[string]any{"hard": "a", "soft": "a"}), plugin.DiffSome, []resource.PropertyKey{"list"}, nil},
		{"null is absent", provkittest.Props(map[string]any{"hard": "a", "soft": "a", "list": []any{"x"}, "extra": nil}), plugin.DiffNone, nil, nil},
		{"ignored", provkittest.Props(map[string]any{"hard": "b", "soft": "a", "list": []any{"x"}}), plugin.DiffNone, nil, []string{"hard"}},
		{"unknown", resource.PropertyMap{"hard": resource.MakeComputed(resource.NewProperty("")), "soft": resource.NewProperty("a"),
			"list": olds["list"]}, plugin.DiffSome, []resource.PropertyKey{"hard"}, nil},
		{"secret, same value", provkittest.Props(map[string]any{"hard": provkittest.Secret("a"), "soft": "a", "list": []any{"x"}}), plugin.DiffNone, nil, nil},
	}
	for _, c := range cases {
		d := diff(t, p, olds, olds, c.news, c.ignore...)
		if d.Changes != c.changes || !slices.Equal(d.ReplaceKeys, c.replace) {
			t.Errorf("%s: changes %v replace %v, want %v %v", c.name, d.Changes, d.ReplaceKeys, c.changes, c.replace)
		}
	}
}

func TestLifecycle(t *testing.T) {
	c := &calls{}
	p := provkittest.Engine(t, "test", server(c))
	ins, _ := check(t, p, map[string]any{"hard": "h", "soft": "s1", "pass": provkittest.Secret("pw")})

	created, err := p.Create(ctx, plugin.CreateRequest{URN: urn, Name: "t", Type: typ, Properties: ins})
	if err != nil {
		t.Fatal(err)
	}
	if created.ID != "id-1" || len(c.created) != 1 {
		t.Fatalf("create: id %q, calls %d", created.ID, len(c.created))
	}
	if got := provkit.Str(c.created[0], "pass"); got != "pw" {
		t.Errorf("the provider got pass=%q, want the secret's value", got)
	}
	st := created.Properties
	if !provkittest.IsSecret(st, "token") || !provkittest.IsSecret(st, "pass") || provkittest.IsSecret(st, "echo") {
		t.Errorf("secrets: token %v (kind Secrets), pass %v (same-name input), echo %v (want plain)",
			provkittest.IsSecret(st, "token"), provkittest.IsSecret(st, "pass"), provkittest.IsSecret(st, "echo"))
	}
	if s, _ := provkittest.Str(st, "computed"); s != "c1" {
		t.Errorf("computed = %q", s)
	}

	news, _ := check(t, p, map[string]any{"hard": "h", "soft": "s2"})
	updated, err := p.Update(ctx, plugin.UpdateRequest{URN: urn, Name: "t", Type: typ, ID: "id-1",
		OldInputs: ins, OldOutputs: st, NewInputs: news})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.changed) != 1 || !slices.Equal(c.changed[0], []string{"pass", "soft"}) {
		t.Errorf("changed keys %v", c.changed)
	}
	up := updated.Properties
	if s, _ := provkittest.Str(up, "computed"); s != "c1" {
		t.Errorf("an update returning nil lost the computed output: %v", up)
	}
	if s, _ := provkittest.Str(up, "soft"); s != "s2" {
		t.Errorf("soft = %q after the update", s)
	}
	if _, has := up["pass"]; has {
		t.Error("a removed input lingers in the state")
	}
	if !provkittest.IsSecret(up, "token") {
		t.Error("token is not secret after the update")
	}

	read, err := p.Read(ctx, plugin.ReadRequest{URN: urn, Name: "t", Type: typ, ID: "id-1", Inputs: news, State: up})
	if err != nil {
		t.Fatal(err)
	}
	if v := read.Outputs["refreshed"]; !v.IsBool() || !v.BoolValue() {
		t.Errorf("refresh overlay missing: %v", read.Outputs)
	}
	if s, _ := provkittest.Str(read.Outputs, "computed"); s != "c1" {
		t.Error("refresh lost the state")
	}

	if _, err := p.Delete(ctx, plugin.DeleteRequest{URN: urn, Name: "t", Type: typ, ID: "id-1", Inputs: news, Outputs: up}); err != nil {
		t.Fatal(err)
	}
	if len(c.deleted) != 1 || provkit.Str(c.deleted[0], "computed") != "c1" {
		t.Errorf("delete got %v, want the state", c.deleted)
	}
}

func TestPreviewCreatesNothing(t *testing.T) {
	c := &calls{}
	s := server(c)
	in, err := plugin.MarshalProperties(provkittest.Props(map[string]any{"hard": "h"}), plugin.MarshalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.Create(ctx, &pulumirpc.CreateRequest{Urn: string(urn), Type: typ, Properties: in, Preview: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.created) != 0 || resp.GetId() != "" {
		t.Errorf("a preview ran Create (%d calls, id %q)", len(c.created), resp.GetId())
	}
}

func TestConfigureRefusesSecrets(t *testing.T) {
	resp, err := server(&calls{}).Configure(ctx, &pulumirpc.ConfigureRequest{AcceptSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAcceptSecrets() || resp.GetSupportsPreview() {
		t.Errorf("configure: %+v, want no secrets and no previews", resp)
	}
}

func TestUnknownTypes(t *testing.T) {
	s := server(&calls{})
	_, err := s.Check(ctx, &pulumirpc.CheckRequest{Urn: string(provkittest.URN("test:index:Other", "o")), Type: "test:index:Other"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown type: %v", err)
	}
	s.Unsupported = "not here"
	_, err = s.Check(ctx, &pulumirpc.CheckRequest{Urn: string(provkittest.URN("test:index:Other", "o")), Type: "test:index:Other"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unsupported type: %v", err)
	}
}
