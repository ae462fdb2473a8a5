package main

// Tests of hakube's command provider through its gRPC methods, called by the engine's
// own provider client (provkittest.Engine). What they pin comes from pulumi-command
// (v1.x, built on pulumi-go-provider's infer):
//
//   - provider/pkg/provider/common/inputs.go: `triggers` is the only input tagged
//     provider:"replaceOnChanges" (the SDK also sets replaceOnChanges: ["triggers[*]"]);
//     `update` is "The command to run on update, if empty, create will run again";
//     PULUMI_COMMAND_STDOUT/_STDERR hold the previous step's outputs.
//   - provider/pkg/provider/remote/commandInputs (remote/command.go): `connection` is
//     tagged provider:"secret" only (replaceOnChanges was dropped after v0.x), so a
//     change of it is an update; infer's Diff replaces only replaceOnChanges inputs.
//   - provider/pkg/provider/{local,remote}/commandController.go: Update runs
//     `update`, else `create`, whatever changed, keeping the previous outputs when
//     neither is set; Delete runs `delete` with the state.
//   - provider/pkg/provider/local/commandOutputs.go: /bin/sh -c by default, one
//     trailing newline trimmed from stdout and stderr, the previous outputs in the
//     environment only when addPreviousOutputInEnv is not false and only when not empty.
//   - provider/pkg/provider/remote/copyController.go: Update copies again only when the
//     source's hash or remotePath changed (so a new connection copies nothing); the
//     placement table of sftpCopy; Check wants a path/text asset or a path archive.
//   - pulumi-go-provider infer/resource.go (ensureDefaultSecrets) and pulumi-command
//     v0.9.1 (#274): secretness flows only to the output of the same name, so a secret
//     stdin or environment does not make stdout/stderr secret (issues #260, #401: use
//     additionalSecretOutputs); `connection` is a secret output (schema secret, SDK
//     additionalSecretOutputs).

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"hakube.local/toolchain/pulumi/internal/provkit"
	"hakube.local/toolchain/pulumi/internal/provkit/provkittest"
)

const (
	localType  = "command:local:Command"
	remoteType = "command:remote:Command"
	copyType   = "command:remote:CopyToRemote"
)

var ctx = context.Background()

func engine(t *testing.T) plugin.Provider {
	return provkittest.Engine(t, "command", newServer(localRunner, remoteRunner, copyToRemote))
}

// res is one resource's life through the engine: Check, Create, then Diff and Update
// to new inputs, Delete.
type res struct {
	t      *testing.T
	p      plugin.Provider
	typ    string
	urn    resource.URN
	id     resource.ID
	inputs resource.PropertyMap
	state  resource.PropertyMap
}

func newRes(t *testing.T, p plugin.Provider, typ string) *res {
	return &res{t: t, p: p, typ: typ, urn: provkittest.URN(typ, strings.ReplaceAll(t.Name(), "/", "-"))}
}

func (r *res) check(olds, news resource.PropertyMap) (resource.PropertyMap, []plugin.CheckFailure) {
	r.t.Helper()
	resp, err := r.p.Check(ctx, plugin.CheckRequest{URN: r.urn, Name: r.urn.Name(), Type: tokens.Type(r.typ), Olds: olds, News: news})
	if err != nil {
		r.t.Fatalf("check: %v", err)
	}
	return resp.Properties, resp.Failures
}

func (r *res) create(in map[string]any) error {
	r.t.Helper()
	checked, failures := r.check(nil, provkittest.Props(in))
	if len(failures) > 0 {
		r.t.Fatalf("check failures: %v", failures)
	}
	resp, err := r.p.Create(ctx, plugin.CreateRequest{URN: r.urn, Name: r.urn.Name(), Type: tokens.Type(r.typ), Properties: checked})
	if err != nil {
		return err
	}
	if resp.ID == "" {
		r.t.Fatalf("create returned no ID")
	}
	r.id, r.inputs, r.state = resp.ID, checked, resp.Properties
	return nil
}

func (r *res) mustCreate(in map[string]any) {
	r.t.Helper()
	if err := r.create(in); err != nil {
		r.t.Fatalf("create: %v", err)
	}
}

func (r *res) diff(in map[string]any) (resource.PropertyMap, plugin.DiffResult) {
	r.t.Helper()
	news, failures := r.check(r.inputs, provkittest.Props(in))
	if len(failures) > 0 {
		r.t.Fatalf("check failures: %v", failures)
	}
	d, err := r.p.Diff(ctx, plugin.DiffRequest{URN: r.urn, Name: r.urn.Name(), Type: tokens.Type(r.typ), ID: r.id,
		OldInputs: r.inputs, OldOutputs: r.state, NewInputs: news})
	if err != nil {
		r.t.Fatalf("diff: %v", err)
	}
	return news, d
}

// update runs what the engine runs for new inputs: Diff, then Update when Diff asks for
// an in-place update. It fails the test when Diff asks for a replacement.
func (r *res) update(in map[string]any) (plugin.DiffResult, error) {
	r.t.Helper()
	news, d := r.diff(in)
	if d.Changes != plugin.DiffSome {
		return d, nil
	}
	if len(d.ReplaceKeys) > 0 {
		r.t.Fatalf("diff wants a replacement (%v), not an update", d.ReplaceKeys)
	}
	resp, err := r.p.Update(ctx, plugin.UpdateRequest{URN: r.urn, Name: r.urn.Name(), Type: tokens.Type(r.typ), ID: r.id,
		OldInputs: r.inputs, OldOutputs: r.state, NewInputs: news})
	if err != nil {
		return d, err
	}
	r.inputs, r.state = news, resp.Properties
	return d, nil
}

func (r *res) mustUpdate(in map[string]any) plugin.DiffResult {
	r.t.Helper()
	d, err := r.update(in)
	if err != nil {
		r.t.Fatalf("update: %v", err)
	}
	return d
}

func (r *res) delete() error {
	r.t.Helper()
	_, err := r.p.Delete(ctx, plugin.DeleteRequest{URN: r.urn, Name: r.urn.Name(), Type: tokens.Type(r.typ), ID: r.id,
		Inputs: r.inputs, Outputs: r.state})
	return err
}

func (r *res) out(k string) string {
	r.t.Helper()
	s, ok := provkittest.Str(r.state, k)
	if !ok {
		r.t.Fatalf("output %q missing or not a string in %v", k, r.state)
	}
	return s
}

// with returns a copy of m with the given keys set (a nil value removes the key).
func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runs counts the lines a command appended to a log file.
func runs(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestLocalCreateRunsCreateWithShellAndTrimsOneNewline(t *testing.T) {
	r := newRes(t, engine(t), localType)
	r.mustCreate(map[string]any{"create": `printf 'out\n\n'; printf 'err\n' >&2; [ -n "$0" ] && echo "$0" >&2`})
	if got := r.out("stdout"); got != "out\n" {
		t.Errorf("stdout = %q, want one trailing newline trimmed: %q", got, "out\n")
	}
	if got := r.out("stderr"); got != "err\n/bin/sh" {
		t.Errorf("stderr = %q, want %q (run by /bin/sh -c)", got, "err\n/bin/sh")
	}
}

func TestLocalCreateHonoursDirInterpreterEnvironmentAndStdin(t *testing.T) {
	dir := t.TempDir()
	r := newRes(t, engine(t), localType)
	r.mustCreate(map[string]any{
		"create":      `echo "$(pwd) $GREETING $(cat) ${BASH_VERSION:+bash}"`,
		"dir":         dir,
		"interpreter": []any{"/bin/bash", "-c"},
		"environment": map[string]any{"GREETING": "hello"},
		"stdin":       "from-stdin",
	})
	if got, want := r.out("stdout"), dir+" hello from-stdin bash"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestLocalCreateFailsWithTheCommandsOutput(t *testing.T) {
	r := newRes(t, engine(t), localType)
	err := r.create(map[string]any{"create": "echo went-wrong >&2; exit 3"})
	if err == nil {
		t.Fatal("create of a failing command succeeded")
	}
	if !strings.Contains(err.Error(), "went-wrong") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("error %q should carry the command's stderr and exit status", err)
	}
}

// Which input changes replace and which update (and so run `update`/`create`).
func TestLocalDiffOnlyTriggersReplace(t *testing.T) {
	base := map[string]any{
		"create": "echo c", "update": "echo u", "delete": "echo d", "triggers": []any{"a"},
		"environment": map[string]any{"A": "1"}, "dir": "/", "interpreter": []any{"/bin/sh", "-c"},
		"stdin": "in", "logging": "stdoutAndStderr", "addPreviousOutputInEnv": true,
	}
	cases := []struct {
		key     string
		value   any
		replace bool
	}{
		{"triggers", []any{"b"}, true},
		{"triggers", []any{"a", "b"}, true},
		{"create", "echo c2", false},
		{"update", "echo u2", false},
		{"delete", "echo d2", false},
		{"environment", map[string]any{"A": "2"}, false},
		{"dir", "/tmp", false},
		{"interpreter", []any{"/bin/bash", "-c"}, false},
		{"stdin", "in2", false},
		{"logging", "none", false},
		{"addPreviousOutputInEnv", false, false},
	}
	p := engine(t)
	r := newRes(t, p, localType)
	r.mustCreate(base)
	if _, d := r.diff(base); d.Changes != plugin.DiffNone {
		t.Errorf("unchanged inputs: changes = %v, want none", d.Changes)
	}
	for _, c := range cases {
		_, d := r.diff(with(base, c.key, c.value))
		if d.Changes != plugin.DiffSome {
			t.Errorf("%s changed: changes = %v, want some", c.key, d.Changes)
			continue
		}
		replaces := slices.Contains(d.ReplaceKeys, resource.PropertyKey(c.key))
		if replaces != c.replace || (!c.replace && len(d.ReplaceKeys) > 0) {
			t.Errorf("%s changed: replace keys %v, want replace=%v", c.key, d.ReplaceKeys, c.replace)
		}
	}
	// Triggers appearing where there were none replace too.
	_, d := r.diff(with(base, "triggers", nil))
	if !slices.Contains(d.ReplaceKeys, "triggers") {
		t.Errorf("triggers removed: replace keys %v, want triggers", d.ReplaceKeys)
	}
}

func TestLocalUpdateRunsUpdateWithPreviousOutputs(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	in := map[string]any{
		"create": "echo create >> " + log + "; echo first; echo first-err >&2",
		"update": `echo update >> ` + log + `; echo "was:$PULUMI_COMMAND_STDOUT/$PULUMI_COMMAND_STDERR"`,
	}
	r := newRes(t, engine(t), localType)
	r.mustCreate(in)
	r.mustUpdate(with(in, "environment", map[string]any{"X": "1"}))
	if got := r.out("stdout"); got != "was:first/first-err" {
		t.Errorf("stdout after update = %q, want the previous outputs in PULUMI_COMMAND_STDOUT/_STDERR", got)
	}
	if got := runs(t, log); !slices.Equal(got, []string{"create", "update"}) {
		t.Errorf("runs = %v, want create then update", got)
	}
}

func TestLocalUpdateWithoutUpdateCommandRerunsCreate(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	in := map[string]any{"create": `echo create >> ` + log + `; echo "n=$N"`, "environment": map[string]any{"N": "1"}}
	r := newRes(t, engine(t), localType)
	r.mustCreate(in)
	r.mustUpdate(with(in, "environment", map[string]any{"N": "2"}))
	if got := r.out("stdout"); got != "n=2" {
		t.Errorf("stdout = %q, want create run again with the new inputs (n=2)", got)
	}
	if got := runs(t, log); !slices.Equal(got, []string{"create", "create"}) {
		t.Errorf("runs = %v, want create twice", got)
	}
}

// Any change that is not a replacement runs the update: also a change of delete,
// logging or addPreviousOutputInEnv alone.
func TestLocalUpdateRunsWhateverChanged(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	in := map[string]any{"create": "echo create >> " + log, "update": "echo update >> " + log, "delete": "true"}
	r := newRes(t, engine(t), localType)
	r.mustCreate(in)
	r.mustUpdate(with(in, "delete", "echo other"))
	r.mustUpdate(with(in, "delete", "echo other", "logging", "none"))
	r.mustUpdate(with(in, "delete", "echo other", "logging", "none", "addPreviousOutputInEnv", false))
	if got := runs(t, log); !slices.Equal(got, []string{"create", "update", "update", "update"}) {
		t.Errorf("runs = %v, want create and three updates", got)
	}
	// No change: Diff says none and nothing runs.
	if d := r.mustUpdate(with(in, "delete", "echo other", "logging", "none", "addPreviousOutputInEnv", false)); d.Changes != plugin.DiffNone {
		t.Errorf("unchanged: changes = %v", d.Changes)
	}
	if got := runs(t, log); len(got) != 4 {
		t.Errorf("runs = %v after a no-change update", got)
	}
}

func TestLocalUpdateWithNeitherCommandKeepsOutputs(t *testing.T) {
	in := map[string]any{"create": "echo kept", "delete": "true"}
	r := newRes(t, engine(t), localType)
	r.mustCreate(in)
	r.mustUpdate(map[string]any{"delete": "echo changed"})
	if got := r.out("stdout"); got != "kept" {
		t.Errorf("stdout = %q, want the previous output kept", got)
	}
}

func TestLocalPreviousOutputsOnlyWhenSetAndWanted(t *testing.T) {
	os.Unsetenv("PULUMI_COMMAND_STDOUT")
	show := `echo "${PULUMI_COMMAND_STDOUT-unset}"`
	// An empty previous stdout is not passed.
	r := newRes(t, engine(t), localType)
	r.mustCreate(map[string]any{"create": "true", "update": show})
	r.mustUpdate(map[string]any{"create": "true", "update": show + " "})
	if got := r.out("stdout"); got != "unset" {
		t.Errorf("after an empty stdout: %q, want unset", got)
	}
	// addPreviousOutputInEnv: false (of the new inputs) leaves them out.
	r2 := newRes(t, engine(t), localType)
	r2.mustCreate(map[string]any{"create": "echo prev", "update": show})
	r2.mustUpdate(map[string]any{"create": "echo prev", "update": show, "addPreviousOutputInEnv": false})
	if got := r2.out("stdout"); got != "unset" {
		t.Errorf("with addPreviousOutputInEnv false: %q, want unset", got)
	}
}

func TestLocalDeleteRunsDeleteWithTheState(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "deleted")
	r := newRes(t, engine(t), localType)
	r.mustCreate(map[string]any{"create": "echo created-output", "delete": `echo "$PULUMI_COMMAND_STDOUT" > ` + mark})
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("delete ran on create")
	}
	if err := r.delete(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := strings.TrimSpace(readFile(t, mark)); got != "created-output" {
		t.Errorf("delete saw PULUMI_COMMAND_STDOUT = %q, want the state's stdout", got)
	}
	// A failing delete fails the deletion.
	r2 := newRes(t, engine(t), localType)
	r2.mustCreate(map[string]any{"create": "true", "delete": "exit 4"})
	if err := r2.delete(); err == nil {
		t.Error("a failing delete command did not fail the deletion")
	}
	// No delete command: nothing to run.
	r3 := newRes(t, engine(t), localType)
	r3.mustCreate(map[string]any{"create": "true"})
	if err := r3.delete(); err != nil {
		t.Errorf("delete without a command: %v", err)
	}
}

// Secret inputs reach the command in the clear; what comes back is secret where the
// input of the same name was, and stdout/stderr stay as they are.
func TestLocalSecretsFlowToTheSameNameOnly(t *testing.T) {
	r := newRes(t, engine(t), localType)
	r.mustCreate(map[string]any{
		"create":      `printf '%s %s' "$(cat)" "$TOKEN"; printf warn >&2`,
		"stdin":       provkittest.Secret("s3cr3t"),
		"environment": map[string]any{"TOKEN": provkittest.Secret("t0ken"), "PLAIN": "p"},
	})
	if got := r.out("stdout"); got != "s3cr3t t0ken" {
		t.Errorf("stdout = %q: the command should get the secrets' values", got)
	}
	if !provkittest.IsSecret(r.state, "stdin") {
		t.Error("stdin output is not secret")
	}
	env := r.state["environment"]
	if !env.IsObject() || !env.ObjectValue()["TOKEN"].IsSecret() || env.ObjectValue()["PLAIN"].IsSecret() {
		t.Errorf("environment output %v: want TOKEN secret, PLAIN not", env)
	}
	if provkittest.IsSecret(r.state, "stdout") || provkittest.IsSecret(r.state, "stderr") {
		t.Error("stdout/stderr became secret; upstream leaves that to additionalSecretOutputs")
	}
}

func TestLocalRunInvoke(t *testing.T) {
	p := engine(t)
	resp, err := p.Invoke(ctx, plugin.InvokeRequest{Tok: "command:local:run",
		Args: provkittest.Props(map[string]any{"command": "echo ran; echo e >&2"})})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Failures) > 0 {
		t.Fatalf("failures: %v", resp.Failures)
	}
	if got, _ := provkittest.Str(resp.Properties, "stdout"); got != "ran" {
		t.Errorf("stdout = %q", got)
	}
	if got, _ := provkittest.Str(resp.Properties, "stderr"); got != "e" {
		t.Errorf("stderr = %q", got)
	}
}

func TestRemoteCheckNeedsAConnection(t *testing.T) {
	r := newRes(t, engine(t), remoteType)
	_, failures := r.check(nil, provkittest.Props(map[string]any{"create": "true"}))
	if len(failures) == 0 || failures[0].Property != "connection" {
		t.Errorf("failures = %v, want connection required", failures)
	}
}

// A change of the connection alone is an update that runs `update`, on the new
// connection; a change of triggers replaces.
func TestRemoteConnectionChangeRunsUpdate(t *testing.T) {
	first, second := startSSHD(t, true), startSSHD(t, true)
	in := map[string]any{"connection": first.connection(), "create": "echo create-ran", "update": "echo update-ran"}
	r := newRes(t, engine(t), remoteType)
	r.mustCreate(in)
	if got := r.out("stdout"); got != "create-ran" {
		t.Errorf("stdout = %q", got)
	}
	if !provkittest.IsSecret(r.state, "connection") {
		t.Error("connection output is not secret")
	}

	d := r.mustUpdate(with(in, "connection", second.connection()))
	if d.Changes != plugin.DiffSome || len(d.ReplaceKeys) != 0 || !slices.Contains(d.ChangedKeys, "connection") {
		t.Fatalf("connection change: diff %+v, want an update of connection", d)
	}
	if got := r.out("stdout"); got != "update-ran" {
		t.Errorf("stdout after a connection change = %q, want update-ran", got)
	}
	if got := second.commands(); len(got) != 1 || !strings.Contains(got[0], "update-ran") {
		t.Errorf("new host ran %q, want the update command", got)
	}
	if got := first.commands(); len(got) != 1 {
		t.Errorf("old host ran %q, want only the create", got)
	}

	_, d = r.diff(with(in, "connection", second.connection(), "triggers", []any{"x"}))
	if !slices.Contains(d.ReplaceKeys, "triggers") || slices.Contains(d.ReplaceKeys, "connection") {
		t.Errorf("triggers change: replace keys %v, want triggers only", d.ReplaceKeys)
	}
}

func TestRemoteConnectionChangeWithoutUpdateRerunsCreate(t *testing.T) {
	first, second := startSSHD(t, true), startSSHD(t, true)
	in := map[string]any{"connection": first.connection(), "create": "echo create-ran"}
	r := newRes(t, engine(t), remoteType)
	r.mustCreate(in)
	r.mustUpdate(with(in, "connection", second.connection()))
	if got := second.commands(); len(got) != 1 || !strings.Contains(got[0], "create-ran") {
		t.Errorf("new host ran %q, want create again", got)
	}
}

func TestRemoteStdinEnvironmentAndDelete(t *testing.T) {
	for _, acceptEnv := range []bool{true, false} {
		name := "sshd-refuses-env"
		if acceptEnv {
			name = "sshd-accepts-env"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			srv := startSSHD(t, acceptEnv)
			in := map[string]any{
				"connection":  srv.connection(),
				"create":      `echo "$(cat) $GREETING"`,
				"update":      `echo "was:$PULUMI_COMMAND_STDOUT"`,
				"delete":      `echo "$PULUMI_COMMAND_STDOUT" > ` + filepath.Join(dir, "deleted"),
				"environment": map[string]any{"GREETING": "it's \"quoted\" $HOME"},
				"stdin":       provkittest.Secret("over-ssh"),
			}
			r := newRes(t, engine(t), remoteType)
			r.mustCreate(in)
			want := `over-ssh it's "quoted" $HOME`
			if got := r.out("stdout"); got != want {
				t.Errorf("stdout = %q, want %q", got, want)
			}
			r.mustUpdate(with(in, "stdin", provkittest.Secret("changed")))
			if got := r.out("stdout"); got != "was:"+want {
				t.Errorf("update stdout = %q", got)
			}
			if err := r.delete(); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "deleted"))); got != "was:"+want {
				t.Errorf("delete saw %q", got)
			}
		})
	}
}

func TestRemoteCommandFailureFails(t *testing.T) {
	srv := startSSHD(t, true)
	r := newRes(t, engine(t), remoteType)
	err := r.create(map[string]any{"connection": srv.connection(), "create": "echo remote-broke >&2; exit 7"})
	if err == nil || !strings.Contains(err.Error(), "remote-broke") {
		t.Errorf("create error = %v, want the remote stderr", err)
	}
}

func TestCopyCheckWantsAPathOrTextSource(t *testing.T) {
	r := newRes(t, engine(t), copyType)
	conn := map[string]any{"host": "h", "hostKey": authorizedKey(t, newHostKey(t, "ssh-ed25519"))}
	cases := map[string]map[string]any{
		"no source":  {"connection": conn, "remotePath": "/x"},
		"URI asset":  {"connection": conn, "remotePath": "/x", "source": resource.NewProperty(&resource.Asset{URI: "https://example.com/x"})},
		"no connect": {"remotePath": "/x", "source": resource.NewProperty(&resource.Asset{Text: "t"})},
	}
	for name, in := range cases {
		if _, failures := r.check(nil, provkittest.Props(in)); len(failures) == 0 {
			t.Errorf("%s: no check failure", name)
		}
	}
	text, err := resource.NewTextAsset("t")
	if err != nil {
		t.Fatal(err)
	}
	if _, failures := r.check(nil, provkittest.Props(map[string]any{"connection": conn, "remotePath": "/x",
		"source": resource.NewProperty(text)})); len(failures) > 0 {
		t.Errorf("text asset: failures %v", failures)
	}
}

func fileAsset(t *testing.T, p string) resource.PropertyValue {
	t.Helper()
	a, err := resource.NewPathAsset(p)
	if err != nil {
		t.Fatal(err)
	}
	return resource.NewProperty(a)
}

func pathArchive(t *testing.T, p string) resource.PropertyValue {
	t.Helper()
	a, err := resource.NewPathArchive(p)
	if err != nil {
		t.Fatal(err)
	}
	return resource.NewProperty(a)
}

// A connection change alone copies nothing; a new source or remotePath copies again;
// triggers replace.
func TestCopyUpdateCopiesOnlyForSourceOrPath(t *testing.T) {
	first, second := startSSHD(t, true), startSSHD(t, true)
	local, remote := t.TempDir(), t.TempDir()
	src := filepath.Join(local, "file.txt")
	if err := os.WriteFile(src, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(remote, "copied.txt")
	in := map[string]any{"connection": first.connection(), "source": fileAsset(t, src), "remotePath": dest}
	r := newRes(t, engine(t), copyType)
	r.mustCreate(in)
	if got := readFile(t, dest); got != "one" {
		t.Fatalf("copied %q", got)
	}
	if !provkittest.IsSecret(r.state, "connection") {
		t.Error("connection output is not secret")
	}

	if err := os.Remove(dest); err != nil {
		t.Fatal(err)
	}
	d := r.mustUpdate(with(in, "connection", second.connection()))
	if d.Changes != plugin.DiffSome || len(d.ReplaceKeys) > 0 {
		t.Fatalf("connection change: diff %+v, want an update", d)
	}
	if _, err := os.Stat(dest); err == nil || len(second.commands()) != 0 {
		t.Errorf("a connection change copied again (%v)", second.commands())
	}

	if err := os.WriteFile(src, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.mustUpdate(with(in, "connection", second.connection(), "source", fileAsset(t, src)))
	if got := readFile(t, dest); got != "two" {
		t.Errorf("after a source change the remote file holds %q", got)
	}
	dest2 := filepath.Join(remote, "moved.txt")
	r.mustUpdate(with(in, "connection", second.connection(), "source", fileAsset(t, src), "remotePath", dest2))
	if got := readFile(t, dest2); got != "two" {
		t.Errorf("after a remotePath change the new remote file holds %q", got)
	}

	_, d = r.diff(with(in, "triggers", []any{"t"}))
	if !slices.Contains(d.ReplaceKeys, "triggers") {
		t.Errorf("triggers change: replace keys %v", d.ReplaceKeys)
	}
}

// Where a copy lands, per upstream's table.
func TestCopyPlacement(t *testing.T) {
	srv := startSSHD(t, true)
	local := t.TempDir()
	file := filepath.Join(local, "f.txt")
	if err := os.WriteFile(file, []byte("F"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(local, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "sub", "g.txt"), []byte("G"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(local, "a.tar")
	if err := os.WriteFile(tarball, []byte("not unpacked"), 0o644); err != nil {
		t.Fatal(err)
	}
	text, err := resource.NewTextAsset("T")
	if err != nil {
		t.Fatal(err)
	}

	copyOK := func(t *testing.T, source resource.PropertyValue, dest string) {
		t.Helper()
		r := newRes(t, engine(t), copyType)
		r.mustCreate(map[string]any{"connection": srv.connection(), "source": source, "remotePath": dest})
	}
	copyFails := func(t *testing.T, source resource.PropertyValue, dest string) {
		t.Helper()
		r := newRes(t, engine(t), copyType)
		if err := r.create(map[string]any{"connection": srv.connection(), "source": source, "remotePath": dest}); err == nil {
			t.Errorf("copy to %s succeeded, want an error", dest)
		}
	}

	t.Run("file to missing path", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "new.txt")
		copyOK(t, fileAsset(t, file), dest)
		if got := readFile(t, dest); got != "F" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("file into existing dir", func(t *testing.T) {
		dest := t.TempDir()
		copyOK(t, fileAsset(t, file), dest)
		if got := readFile(t, filepath.Join(dest, "f.txt")); got != "F" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("file over existing file", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "old.txt")
		if err := os.WriteFile(dest, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		copyOK(t, fileAsset(t, file), dest)
		if got := readFile(t, dest); got != "F" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("text asset to a file, not to a dir", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "t.txt")
		copyOK(t, resource.NewProperty(text), dest)
		if got := readFile(t, dest); got != "T" {
			t.Errorf("got %q", got)
		}
		copyFails(t, resource.NewProperty(text), t.TempDir())
	})
	t.Run("dir without slash lands as dest/dir", func(t *testing.T) {
		for _, existing := range []bool{true, false} {
			dest := t.TempDir()
			if !existing {
				dest = filepath.Join(dest, "new")
			}
			copyOK(t, pathArchive(t, tree), dest)
			if got := readFile(t, filepath.Join(dest, "tree", "sub", "g.txt")); got != "G" {
				t.Errorf("existing=%v: got %q", existing, got)
			}
		}
	})
	t.Run("dir with slash lands its contents in dest", func(t *testing.T) {
		dest := t.TempDir()
		copyOK(t, pathArchive(t, tree+"/"), dest)
		if got := readFile(t, filepath.Join(dest, "sub", "g.txt")); got != "G" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("dir onto a file fails", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(dest, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		copyFails(t, pathArchive(t, tree), dest)
	})
	t.Run("only the last element is created", func(t *testing.T) {
		copyFails(t, pathArchive(t, tree), filepath.Join(t.TempDir(), "a", "b"))
	})
	t.Run("archive files are copied as they are", func(t *testing.T) {
		dest := t.TempDir()
		copyOK(t, pathArchive(t, tarball), dest)
		if got := readFile(t, filepath.Join(dest, "a.tar")); got != "not unpacked" {
			t.Errorf("got %q", got)
		}
	})
}

// A command that exits 0 without reading all of its stdin (`true`, as a step whose update
// only records new inputs) succeeds: x/crypto/ssh reports io.EOF for the stdin it could not
// write once the channel closed, which is not the command failing.
func TestRemoteCommandThatIgnoresItsStdinSucceeds(t *testing.T) {
	srv := startSSHD(t, true)
	big := strings.Repeat("x", 3<<20) // beyond the 2 MiB channel window: the write outlives `true`
	for _, c := range []struct {
		command string
		wantErr bool
	}{{"true", false}, {"exit 3", true}} {
		r := newRes(t, engine(t), remoteType)
		err := r.create(map[string]any{"connection": srv.connection(), "create": c.command, "stdin": provkittest.Secret(big)})
		if (err != nil) != c.wantErr {
			t.Errorf("%s with 3 MiB on stdin: error = %v, want error %v", c.command, err, c.wantErr)
		}
	}
}

// Host keys. hakube verifies every host it connects to: connection.hostKey (the host's
// public key, authorized_keys format) is required, the host must present exactly that
// key, and a host that does not is sent nothing (no authentication, so no password or
// key signature; no command; no stdin; no file).

// hostKeyFailure checks inputs as a preview does (unknown values allowed) and returns
// the reason of the check failure on connection.hostKey, if any; it fails the test on
// failures on other properties.
func hostKeyFailure(t *testing.T, typ string, in map[string]any) (string, bool) {
	t.Helper()
	urn := provkittest.URN(typ, "check")
	resp, err := engine(t).Check(ctx, plugin.CheckRequest{URN: urn, Name: urn.Name(), Type: tokens.Type(typ),
		News: provkittest.Props(in), AllowUnknowns: true})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	failures := resp.Failures
	reason, found := "", false
	for _, f := range failures {
		if f.Property != "connection.hostKey" {
			t.Errorf("check failure on %q (%s); want failures on connection.hostKey only", f.Property, f.Reason)
			continue
		}
		reason, found = f.Reason, true
	}
	return reason, found
}

// Check refuses a connection without hostKey or with a malformed one, for remote
// commands and copies alike, on the property connection.hostKey (a failure on
// `connection` would make the engine print the whole connection, private key
// included). Values unknown at preview pass.
func TestRemoteCheckWantsAHostKey(t *testing.T) {
	key := authorizedKey(t, newHostKey(t, "ssh-ed25519"))
	other := authorizedKey(t, newHostKey(t, "ssh-ed25519"))
	text, err := resource.NewTextAsset("t")
	if err != nil {
		t.Fatal(err)
	}
	inputs := func(typ string, conn any) map[string]any {
		if typ == copyType {
			return map[string]any{"connection": conn, "remotePath": "/x", "source": resource.NewProperty(text)}
		}
		return map[string]any{"connection": conn, "create": "true"}
	}
	conn := func(kv ...any) map[string]any {
		return with(map[string]any{"host": "10.0.0.1", "user": "root", "privateKey": "k"}, kv...)
	}
	unknown := resource.MakeComputed(resource.NewProperty(""))
	for _, typ := range []string{remoteType, copyType} {
		t.Run(typ, func(t *testing.T) {
			refused := []struct {
				name string
				conn any
				want []string // in the reason
			}{
				{"no hostKey", conn(), []string{"is required", "public SSH key", "authorized_keys", "verifies every host"}},
				{"empty hostKey", conn("hostKey", ""), []string{"is required", "authorized_keys"}},
				{"secret connection without hostKey", provkittest.Secret(conn()), []string{"is required"}},
				{"not a key", conn("hostKey", "AAAAC3NzaC1lZDI1NTE5"), []string{"authorized_keys"}},
				{"a private key", conn("hostKey", "-----BEGIN OPENSSH PRIV"+"ATE KEY-----\nb3Bl\n-----END OPENSSH PRIV"+"ATE KEY-----\n"), []string{"authorized_keys"}},
				{"a number", conn("hostKey", 7.0), []string{"authorized_keys"}},
				{"two keys", conn("hostKey", key+"\n"+other+"\n"), []string{"one key"}},
				{"a known_hosts line", conn("hostKey", "10.0.0.1 "+key), []string{"authorized_keys"}},
			}
			for _, c := range refused {
				reason, found := hostKeyFailure(t, typ, inputs(typ, c.conn))
				if !found {
					t.Errorf("%s: no check failure on connection.hostKey", c.name)
					continue
				}
				for _, w := range c.want {
					if !strings.Contains(reason, w) {
						t.Errorf("%s: reason %q does not say %q", c.name, reason, w)
					}
				}
				for _, v := range []string{"AAAAC3NzaC1lZDI1NTE5", "PRIVATE", "b3Bl", "10.0.0.1"} {
					if strings.Contains(reason, v) {
						t.Errorf("%s: reason %q echoes the value (%s)", c.name, reason, v)
					}
				}
			}
			accepted := map[string]any{
				"a key":                     conn("hostKey", key),
				"a key with a comment":      conn("hostKey", key+" root@machine\n"),
				"a key unknown at preview":  conn("hostKey", unknown),
				"a connection unknown":      unknown,
				"a secret connection":       provkittest.Secret(conn("hostKey", key)),
				"a host unknown at preview": conn("hostKey", key, "host", unknown),
			}
			for name, c := range accepted {
				if reason, found := hostKeyFailure(t, typ, inputs(typ, c)); found {
					t.Errorf("%s: check failure %q", name, reason)
				}
			}
		})
	}
}

// A remote command whose connection has no hostKey (the state of a resource made
// before hostKey was required, which Delete uses without a Check) is refused when it
// dials: the server is not even contacted.
func TestRemoteWithoutHostKeyRunsNothing(t *testing.T) {
	srv := startSSHD(t, true)
	for name, conn := range map[string]map[string]any{
		"no hostKey":        with(srv.connection(), "hostKey", nil),
		"malformed hostKey": with(srv.connection(), "hostKey", "ssh-ed25519 not-base64"),
	} {
		t.Run(name, func(t *testing.T) {
			r := newRes(t, engine(t), remoteType)
			r.id = "made-before"
			r.inputs = provkittest.Props(map[string]any{"connection": conn, "create": "true", "delete": "echo deleting"})
			r.state = provkittest.Props(map[string]any{"connection": conn, "create": "true", "delete": "echo deleting",
				"stdout": "", "stderr": ""})
			err := r.delete()
			if err == nil {
				t.Fatal("delete over a connection without a valid hostKey succeeded")
			}
			for _, w := range []string{"connection.hostKey", "authorized_keys"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if got := srv.commands(); len(got) != 0 {
				t.Errorf("the server ran %q", got)
			}
			if auths, sessions := srv.contacts(); auths != 0 || sessions != 0 {
				t.Errorf("the server saw %d authentications and %d sessions, want none", auths, sessions)
			}
		})
	}
	t.Run("copy", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "copied")
		err := copyToRemote(ctx, V{"connection": with(srv.connection(), "hostKey", nil),
			"source": provkit.Asset{Text: "text"}, "remotePath": dest})
		if err == nil || !strings.Contains(err.Error(), "connection.hostKey") {
			t.Errorf("copy without hostKey: error %v, want one naming connection.hostKey", err)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Error("the file was copied")
		}
		if auths, sessions := srv.contacts(); auths != 0 || sessions != 0 {
			t.Errorf("the server saw %d authentications and %d sessions, want none", auths, sessions)
		}
	})
}

// A host that presents another key than hostKey (or has no key of its type) is
// refused at once, not retried as a machine still booting, and is sent nothing: no
// password, no command, no stdin, no file.
func TestRemoteHostKeyMismatchIsRefusedAtOnce(t *testing.T) {
	impostor := startSSHDWith(t, sshdOptions{acceptEnv: true, password: "pw"})
	otherEd25519 := authorizedKey(t, newHostKey(t, "ssh-ed25519"))
	ecdsaKey := authorizedKey(t, newHostKey(t, "ecdsa-sha2-nistp256"))
	base := with(impostor.connection(), "dialErrorLimit", 5.0, "perDialTimeout", 5.0)
	cases := []struct {
		name string
		conn map[string]any
		want string
	}{
		{"another key, key auth", with(base, "hostKey", otherEd25519), "did not match connection.hostKey"},
		{"another key, password auth", with(base, "hostKey", otherEd25519, "privateKey", nil, "password", "pw"), "did not match connection.hostKey"},
		{"no key of the pinned type", with(base, "hostKey", ecdsaKey), "no ecdsa-sha2-nistp256 host key"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mark := filepath.Join(dir, "ran")
			start := time.Now()
			r := newRes(t, engine(t), remoteType)
			err := r.create(map[string]any{"connection": c.conn, "create": "cat > " + mark, "stdin": provkittest.Secret("secret-stdin")})
			took := time.Since(start)
			if err == nil {
				t.Fatal("create on a host with another key succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if took > 3*time.Second {
				t.Errorf("refusal took %v: the dial was retried", took)
			}
			cp := newRes(t, engine(t), copyType)
			dest := filepath.Join(dir, "copied")
			err = cp.create(map[string]any{"connection": c.conn, "source": provkitText(t, "file"), "remotePath": dest})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("copy error %v, want one that says %q", err, c.want)
			}
			for _, p := range []string{mark, dest} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s exists: the host was sent something", p)
				}
			}
			if got := impostor.commands(); len(got) != 0 {
				t.Errorf("the host ran %q", got)
			}
			if auths, sessions := impostor.contacts(); auths != 0 || sessions != 0 {
				t.Errorf("the host saw %d authentications and %d sessions, want none", auths, sessions)
			}
		})
	}
}

// A server holding several host keys (OpenSSH's default: rsa, ecdsa, ed25519) is
// asked for the pinned one, whichever it is.
func TestRemoteHostKeyPinsOneOfSeveral(t *testing.T) {
	types := []string{"ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519"}
	srv := startSSHDWith(t, sshdOptions{acceptEnv: true, hostKeyTypes: types})
	for _, typ := range types {
		t.Run(typ, func(t *testing.T) {
			conn := with(srv.connection(), "hostKey", srv.hostKeys[typ])
			r := newRes(t, engine(t), remoteType)
			r.mustCreate(map[string]any{"connection": conn, "create": "echo pinned-" + typ})
			if got := r.out("stdout"); got != "pinned-"+typ {
				t.Errorf("stdout = %q", got)
			}
			dest := filepath.Join(t.TempDir(), "copied")
			cp := newRes(t, engine(t), copyType)
			cp.mustCreate(map[string]any{"connection": conn, "source": provkitText(t, typ), "remotePath": dest})
			if got := readFile(t, dest); got != typ {
				t.Errorf("copied %q", got)
			}
		})
	}
}

// Re-pinning a host. hostKey is hakube's own (upstream has none), and a new pin for
// the same host changes nothing on it: hostKey added to every connection of a stack made
// before it was required, or the pin of a host whose key was rotated. Such a change of
// the connection alone is still a change of `connection` for Diff, so that the new
// connection is stored (and used from then on, by Delete too), but Update runs no
// command and keeps stdout and stderr; otherwise every remote command of an old stack
// would run its update on every host at once. A change of anything else with it runs
// the update as any other change does.

// stateHostKey is connection.hostKey in the resource's state (its outputs).
func stateHostKey(t *testing.T, r *res) string {
	t.Helper()
	v, ok := r.state["connection"]
	if ok && v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !ok || !v.IsObject() {
		t.Fatalf("no connection object in the state %v", r.state)
	}
	s, ok := provkittest.Str(v.ObjectValue(), "hostKey")
	if !ok {
		t.Fatalf("no connection.hostKey in the state")
	}
	return s
}

// checkRepinned checks the diff of a change of the connection alone and the state the
// update left: the new pin stored in a secret connection, stdout and stderr kept.
func checkRepinned(t *testing.T, r *res, d plugin.DiffResult, hostKey, stdout string) {
	t.Helper()
	if d.Changes != plugin.DiffSome || len(d.ReplaceKeys) != 0 || !slices.Equal(d.ChangedKeys, []resource.PropertyKey{"connection"}) {
		t.Errorf("diff %+v, want an update of connection alone", d)
	}
	if got := stateHostKey(t, r); got != hostKey {
		t.Errorf("connection.hostKey in the state = %q, want the new pin %q", got, hostKey)
	}
	if !provkittest.IsSecret(r.state, "connection") {
		t.Error("connection output is not secret")
	}
	if got := r.out("stdout"); got != stdout {
		t.Errorf("stdout = %q, want the previous %q", got, stdout)
	}
	if got := r.out("stderr"); got != "previous-stderr" {
		t.Errorf("stderr = %q, want the previous one", got)
	}
}

func TestRemoteHostKeyOnlyChangeRunsNothing(t *testing.T) {
	const ed, ec = "ssh-ed25519", "ecdsa-sha2-nistp256"
	t.Run("pin changed", func(t *testing.T) {
		srv := startSSHDWith(t, sshdOptions{acceptEnv: true, hostKeyTypes: []string{ed, ec}})
		deleted := filepath.Join(t.TempDir(), "deleted")
		in := map[string]any{"connection": with(srv.connection(), "hostKey", srv.hostKeys[ed]),
			"create": "echo create-ran; echo previous-stderr >&2", "update": "echo update-ran",
			"delete": `echo "deleted after $PULUMI_COMMAND_STDOUT" > ` + deleted}
		r := newRes(t, engine(t), remoteType)
		r.mustCreate(in)

		d := r.mustUpdate(with(in, "connection", with(srv.connection(), "hostKey", srv.hostKeys[ec])))
		if got := srv.commands(); len(got) != 1 {
			t.Errorf("the host ran %q, want only the create: a new pin alone runs nothing", got)
		}
		checkRepinned(t, r, d, srv.hostKeys[ec], "create-ran")

		// The host drops its old key: Delete must dial with the new pin.
		srv.dropHostKey(ed)
		if err := r.delete(); err != nil {
			t.Fatalf("delete after re-pinning: %v", err)
		}
		if got := strings.TrimSpace(readFile(t, deleted)); got != "deleted after create-ran" {
			t.Errorf("delete wrote %q", got)
		}
	})
	t.Run("pin added to a resource made before hostKey", func(t *testing.T) {
		srv := startSSHD(t, true)
		deleted := filepath.Join(t.TempDir(), "deleted")
		in := map[string]any{"connection": srv.connection(), "create": "echo create-ran", "update": "echo update-ran",
			"delete": `echo "deleted after $PULUMI_COMMAND_STDOUT" > ` + deleted}
		unpinned := with(in, "connection", with(srv.connection(), "hostKey", nil))
		r := newRes(t, engine(t), remoteType)
		r.id = "made-before"
		r.inputs = provkittest.Props(unpinned)
		r.state = provkittest.Props(with(unpinned, "connection", provkittest.Secret(unpinned["connection"]),
			"stdout", "made-before", "stderr", "previous-stderr"))

		d := r.mustUpdate(in)
		if got := srv.commands(); len(got) != 0 {
			t.Errorf("the host ran %q, want nothing: adding the pin runs nothing", got)
		}
		checkRepinned(t, r, d, srv.hostKey, "made-before")
		if err := r.delete(); err != nil {
			t.Fatalf("delete after pinning: %v", err)
		}
		if got := strings.TrimSpace(readFile(t, deleted)); got != "deleted after made-before" {
			t.Errorf("delete wrote %q", got)
		}
	})
}

// A new pin together with a change of another connection field or of another input
// runs the update, on the new connection.
func TestRemoteHostKeyChangeWithOtherChangesRunsUpdate(t *testing.T) {
	const ed, ec = "ssh-ed25519", "ecdsa-sha2-nistp256"
	for name, change := range map[string]func(in, repinned map[string]any) map[string]any{
		"another connection field": func(in, repinned map[string]any) map[string]any {
			return with(in, "connection", with(repinned, "user", "deploy"))
		},
		"another input": func(in, repinned map[string]any) map[string]any {
			return with(in, "connection", repinned, "environment", map[string]any{"NEW": "1"})
		},
		"a connection setting": func(in, repinned map[string]any) map[string]any {
			return with(in, "connection", with(repinned, "perDialTimeout", 6.0))
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := startSSHDWith(t, sshdOptions{acceptEnv: true, hostKeyTypes: []string{ed, ec}})
			in := map[string]any{"connection": with(srv.connection(), "hostKey", srv.hostKeys[ed]),
				"create": "echo create-ran", "update": "echo update-ran"}
			r := newRes(t, engine(t), remoteType)
			r.mustCreate(in)
			srv.dropHostKey(ed)
			d := r.mustUpdate(change(in, with(srv.connection(), "hostKey", srv.hostKeys[ec])))
			if d.Changes != plugin.DiffSome || len(d.ReplaceKeys) != 0 {
				t.Fatalf("diff %+v, want an update", d)
			}
			if got := srv.commands(); len(got) != 2 || !strings.Contains(got[1], "update-ran") {
				t.Errorf("the host ran %q, want the create and then the update", got)
			}
			if got := r.out("stdout"); got != "update-ran" {
				t.Errorf("stdout = %q, want update-ran", got)
			}
			if got := stateHostKey(t, r); got != srv.hostKeys[ec] {
				t.Errorf("connection.hostKey in the state = %q, want the new pin", got)
			}
		})
	}
}

// A copy re-pinned copies nothing and stores the new pin, which the next copy uses.
func TestCopyHostKeyOnlyChangeCopiesNothing(t *testing.T) {
	const ed, ec = "ssh-ed25519", "ecdsa-sha2-nistp256"
	srv := startSSHDWith(t, sshdOptions{acceptEnv: true, hostKeyTypes: []string{ed, ec}})
	dest := filepath.Join(t.TempDir(), "copied")
	in := map[string]any{"connection": with(srv.connection(), "hostKey", srv.hostKeys[ed]),
		"source": provkitText(t, "one"), "remotePath": dest}
	r := newRes(t, engine(t), copyType)
	r.mustCreate(in)
	if err := os.Remove(dest); err != nil {
		t.Fatal(err)
	}

	repinned := with(srv.connection(), "hostKey", srv.hostKeys[ec])
	d := r.mustUpdate(with(in, "connection", repinned))
	if d.Changes != plugin.DiffSome || len(d.ReplaceKeys) != 0 || !slices.Equal(d.ChangedKeys, []resource.PropertyKey{"connection"}) {
		t.Errorf("diff %+v, want an update of connection alone", d)
	}
	if _, err := os.Stat(dest); err == nil || len(srv.commands()) != 1 {
		t.Errorf("a new pin alone copied again (%q)", srv.commands())
	}
	if got := stateHostKey(t, r); got != srv.hostKeys[ec] {
		t.Errorf("connection.hostKey in the state = %q, want the new pin", got)
	}
	if !provkittest.IsSecret(r.state, "connection") {
		t.Error("connection output is not secret")
	}

	srv.dropHostKey(ed)
	r.mustUpdate(with(in, "connection", repinned, "source", provkitText(t, "two")))
	if got := readFile(t, dest); got != "two" {
		t.Errorf("after a source change the remote file holds %q", got)
	}
}

func provkitText(t *testing.T, s string) resource.PropertyValue {
	t.Helper()
	a, err := resource.NewTextAsset(s)
	if err != nil {
		t.Fatal(err)
	}
	return resource.NewProperty(a)
}
