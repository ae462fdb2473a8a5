// Package provkit is a small frame for hakube's own resource provider plugins: it
// serves the engine's ResourceProvider gRPC protocol for a table of resource kinds,
// diffs inputs (a change replaces unless the input is declared updatable) and turns
// property maps into plain Go values for the handlers.
//
// The providers do not accept secrets (the engine strips secrets before calling and
// marks outputs secret again where the input of the same name was secret, which is
// also how upstream's providers flow secretness by default); outputs that upstream's
// schemas mark secret (Kind.Secrets) are returned as secrets, which the engine keeps.
// They do not run during previews (outputs of new or changed resources are unknown in
// a preview).
package provkit

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/pulumi/pulumi/pkg/v3/resource/provider"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Values are plain: string, float64, bool, []any, map[string]any, Asset, Archive.
type Values = map[string]any

// Asset is a file or text asset passed as an input.
type Asset struct{ Path, Text, URI string }

// Archive is an archive input; only path archives (a directory or a tar/zip file) and
// maps of assets are carried.
type Archive struct {
	Path   string
	Assets map[string]any
}

// Kind describes one resource type.
type Kind struct {
	// Updatable lists inputs whose change is an in-place update; any other changed
	// input replaces the resource.
	Updatable []string
	// Defaults are applied by Check to inputs that are absent.
	Defaults Values
	// Validate reports input problems (property -> reason) for known inputs.
	Validate func(in Values) map[string]string
	// Create returns the ID and the outputs (merged over the inputs).
	Create func(ctx context.Context, urn string, in Values) (string, Values, error)
	// Update returns the new outputs (merged over the new inputs); nil means the
	// previous outputs are kept and merged over the new inputs.
	Update func(ctx context.Context, urn, id string, oldState, oldIn, newIn Values, changed []string) (Values, error)
	Delete func(ctx context.Context, urn, id string, state Values) error
	// Replace may force a replacement from the current state (e.g. a certificate due
	// for renewal).
	Replace func(state, in Values) bool
	// Refresh returns outputs to lay over the state on a refresh (Read); nil keeps the
	// state as it is.
	Refresh func(state, in Values) Values
	// Secrets lists outputs that are always returned as secrets (as the upstream
	// providers mark them in their schemas), whatever the engine sent.
	Secrets []string
}

// Server implements pulumirpc.ResourceProviderServer for a table of kinds.
type Server struct {
	pulumirpc.UnimplementedResourceProviderServer
	Name    string
	Version string
	Kinds   map[string]*Kind
	Invokes map[string]func(ctx context.Context, args Values) (Values, error)
	// Unsupported, when set, is the message for any resource type or function not in
	// the tables.
	Unsupported string
}

// Main serves the provider; it returns when the engine disconnects.
func Main(s *Server) error { return MainServer(s.Name, s) }

// MainServer serves a server that wraps a Server (to override some methods).
func MainServer(name string, srv pulumirpc.ResourceProviderServer) error {
	return provider.Main(name, func(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return srv, nil
	})
}

var opts = plugin.MarshalOptions{KeepUnknowns: true, SkipNulls: true}

// outOpts marshals results: the engine keeps secrets in what a provider returns even
// when the provider does not accept secrets.
var outOpts = plugin.MarshalOptions{KeepUnknowns: true, SkipNulls: true, KeepSecrets: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	if s == nil {
		return resource.PropertyMap{}, nil
	}
	return plugin.UnmarshalProperties(s, opts)
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, opts)
}

// marshalOut marshals a result, marking the kind's secret outputs.
func (k *Kind) marshalOut(m resource.PropertyMap) (*structpb.Struct, error) {
	for _, name := range k.Secrets {
		if v, ok := m[resource.PropertyKey(name)]; ok && !v.IsNull() && !v.IsSecret() && !v.IsComputed() {
			m[resource.PropertyKey(name)] = resource.MakeSecret(v)
		}
	}
	return plugin.MarshalProperties(m, outOpts)
}

// plain turns a property value into a plain Go value; unknowns become nil and set
// *unknown.
func plain(v resource.PropertyValue, unknown *bool) any {
	switch {
	case v.IsComputed() || v.IsOutput() && !v.OutputValue().Known:
		*unknown = true
		return nil
	case v.IsOutput():
		return plain(v.OutputValue().Element, unknown)
	case v.IsSecret():
		return plain(v.SecretValue().Element, unknown)
	case v.IsNull():
		return nil
	case v.IsBool():
		return v.BoolValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsString():
		return v.StringValue()
	case v.IsArray():
		out := make([]any, 0, len(v.ArrayValue()))
		for _, e := range v.ArrayValue() {
			out = append(out, plain(e, unknown))
		}
		return out
	case v.IsObject():
		return plainMap(v.ObjectValue(), unknown)
	case v.IsAsset():
		a := v.AssetValue()
		return Asset{Path: a.Path, Text: a.Text, URI: a.URI}
	case v.IsArchive():
		a := v.ArchiveValue()
		ar := Archive{Path: a.Path}
		if a.Assets != nil {
			ar.Assets = a.Assets
		}
		return ar
	}
	return nil
}

func plainMap(m resource.PropertyMap, unknown *bool) Values {
	out := Values{}
	for k, v := range m {
		out[string(k)] = plain(v, unknown)
	}
	return out
}

// toProps turns plain outputs back into a property map. Assets and archives that
// came in are passed through from the inputs by the caller.
func toProps(v Values) resource.PropertyMap {
	out := resource.PropertyMap{}
	for k, e := range v {
		switch x := e.(type) {
		case Asset, Archive:
			continue
		case nil:
			continue
		default:
			out[resource.PropertyKey(k)] = resource.NewPropertyValue(x)
		}
	}
	return out
}

// merge lays outputs over inputs (inputs keep assets and archives as they came).
func merge(inputs resource.PropertyMap, outputs Values) resource.PropertyMap {
	m := inputs.Copy()
	for k, v := range toProps(outputs) {
		m[k] = v
	}
	return m
}

func (s *Server) kind(urn string, typ string) (*Kind, error) {
	if typ == "" {
		typ = string(resource.URN(urn).Type())
	}
	k, ok := s.Kinds[typ]
	if !ok && s.Unsupported != "" {
		return nil, status.Errorf(codes.Unimplemented, "%s: %s", typ, s.Unsupported)
	}
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "%s provider (hakube build): unknown resource type %q", s.Name, typ)
	}
	return k, nil
}

func (s *Server) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: s.Version}, nil
}

func (s *Server) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	b, _ := json.Marshal(map[string]any{"name": s.Name, "version": s.Version,
		"description": "hakube's own build of the " + s.Name + " provider (no schema)"})
	return &pulumirpc.GetSchemaResponse{Schema: string(b)}, nil
}

func (s *Server) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (s *Server) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (s *Server) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: false, SupportsPreview: false}, nil
}

func (s *Server) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (s *Server) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	k, err := s.kind(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	for key, def := range k.Defaults {
		if _, ok := news[resource.PropertyKey(key)]; !ok {
			news[resource.PropertyKey(key)] = resource.NewPropertyValue(def)
		}
	}
	var failures []*pulumirpc.CheckFailure
	unknown := false
	in := plainMap(news, &unknown)
	if k.Validate != nil {
		problems := k.Validate(in)
		keys := make([]string, 0, len(problems))
		for p := range problems {
			keys = append(keys, p)
		}
		sort.Strings(keys)
		for _, p := range keys {
			failures = append(failures, &pulumirpc.CheckFailure{Property: p, Reason: problems[p]})
		}
	}
	out, err := marshal(news)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: out, Failures: failures}, nil
}

func (s *Server) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	k, err := s.kind(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	olds, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	if req.GetOldInputs() == nil {
		if olds, err = unmarshal(req.GetOlds()); err != nil {
			return nil, err
		}
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	state, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	changed := changedKeys(olds, news, req.GetIgnoreChanges())
	updatable := map[string]bool{}
	for _, u := range k.Updatable {
		updatable[u] = true
	}
	var replaces []string
	for _, c := range changed {
		if !updatable[c] {
			replaces = append(replaces, c)
		}
	}
	if k.Replace != nil {
		unknown := false
		if k.Replace(plainMap(state, &unknown), plainMap(news, &unknown)) && len(replaces) == 0 {
			replaces = append(replaces, "readyForRenewal")
			changed = append(changed, "readyForRenewal")
		}
	}
	if len(changed) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_SOME, Diffs: changed, Replaces: replaces}, nil
}

func changedKeys(olds, news resource.PropertyMap, ignore []string) []string {
	skip := map[string]bool{}
	for _, i := range ignore {
		skip[i] = true
	}
	keys := map[string]bool{}
	for k := range olds {
		keys[string(k)] = true
	}
	for k := range news {
		keys[string(k)] = true
	}
	var out []string
	for k := range keys {
		if skip[k] {
			continue
		}
		o, oh := olds[resource.PropertyKey(k)]
		n, nh := news[resource.PropertyKey(k)]
		if oh && o.IsNull() {
			oh = false
		}
		if nh && n.IsNull() {
			nh = false
		}
		if !oh && !nh {
			continue
		}
		if oh != nh || n.ContainsUnknowns() || !o.DeepEquals(n) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (s *Server) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	k, err := s.kind(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	ins, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		out, err := marshal(ins)
		return &pulumirpc.CreateResponse{Properties: out}, err
	}
	unknown := false
	in := plainMap(ins, &unknown)
	id, outs, err := k.Create(ctx, req.GetUrn(), in)
	if err != nil {
		return nil, err
	}
	props, err := k.marshalOut(merge(ins, outs))
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (s *Server) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	k, err := s.kind(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	state, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	oldIns, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		out, err := marshal(news)
		return &pulumirpc.UpdateResponse{Properties: out}, err
	}
	unknown := false
	st, oi, ni := plainMap(state, &unknown), plainMap(oldIns, &unknown), plainMap(news, &unknown)
	var outs Values
	if k.Update != nil {
		if outs, err = k.Update(ctx, req.GetUrn(), req.GetId(), st, oi, ni, changedKeys(oldIns, news, req.GetIgnoreChanges())); err != nil {
			return nil, err
		}
	}
	if outs == nil {
		// Keep the computed outputs of the previous state.
		outs = Values{}
		for key, v := range st {
			if _, isInput := ni[key]; !isInput {
				if _, wasInput := oi[key]; !wasInput {
					outs[key] = v
				}
			}
		}
	}
	props, err := k.marshalOut(merge(news, outs))
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (s *Server) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	k, err := s.kind(req.GetUrn(), req.GetType())
	if err != nil {
		return nil, err
	}
	if k.Delete == nil {
		return &emptypb.Empty{}, nil
	}
	state, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	unknown := false
	if err := k.Delete(ctx, req.GetUrn(), req.GetId(), plainMap(state, &unknown)); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Read (refresh) keeps what the state says (these resources have nothing to read
// back), with the kind's Refresh laid over it.
func (s *Server) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	k, err := s.kind(req.GetUrn(), "")
	if err != nil || k.Refresh == nil || req.GetProperties() == nil {
		return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
	}
	state, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	ins, err := unmarshal(req.GetInputs())
	if err != nil {
		return nil, err
	}
	unknown := false
	over := k.Refresh(plainMap(state, &unknown), plainMap(ins, &unknown))
	props, err := k.marshalOut(merge(state, over))
	if err != nil {
		return nil, err
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: props, Inputs: req.GetInputs()}, nil
}

func (s *Server) Invoke(ctx context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	fn, ok := s.Invokes[req.GetTok()]
	if !ok && s.Unsupported != "" {
		return nil, status.Errorf(codes.Unimplemented, "%s: %s", req.GetTok(), s.Unsupported)
	}
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "%s provider (hakube build): unknown function %q", s.Name, req.GetTok())
	}
	args, err := unmarshal(req.GetArgs())
	if err != nil {
		return nil, err
	}
	unknown := false
	out, err := fn(ctx, plainMap(args, &unknown))
	if err != nil {
		return nil, err
	}
	ret, err := marshal(merge(args, out))
	if err != nil {
		return nil, err
	}
	return &pulumirpc.InvokeResponse{Return: ret}, nil
}

// Accessors for plain values.

func Str(v Values, k string) string {
	s, _ := v[k].(string)
	return s
}

func Num(v Values, k string, def float64) float64 {
	if n, ok := v[k].(float64); ok {
		return n
	}
	return def
}

func Bool(v Values, k string, def bool) bool {
	if b, ok := v[k].(bool); ok {
		return b
	}
	return def
}

func Strs(v Values, k string) []string {
	arr, _ := v[k].([]any)
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func Obj(v Values, k string) Values {
	m, _ := v[k].(map[string]any)
	if m == nil {
		return Values{}
	}
	return m
}

// Errorf makes an error the engine shows as the resource's failure.
func Errorf(format string, args ...any) error {
	return status.Error(codes.Unknown, fmt.Sprintf(format, args...))
}
