package main

// Jump hosts. connection.proxy (the SDK's ProxyConnection: host, port, user,
// privateKey, privateKeyPassword, password, dialErrorLimit, perDialTimeout; hakube adds
// hostKey) is an SSH server that forwards the connection to the host (`ssh -J`), as
// AwsMachines' bastion. The jump host's key is pinned like the host's: its
// connection.proxy.hostKey is required and checked, and a jump host presenting another
// key is refused at once and sent nothing, so neither the jump host nor the host
// behind it gets a password, a key signature, a command or a file.

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"hakube.local/toolchain/pulumi/internal/provkit"
	"hakube.local/toolchain/pulumi/internal/provkit/provkittest"
)

// throughJump is the connection to target through jump, with the given fields of the
// proxy set (a nil value removes one).
func throughJump(target, jump *testSSHD, proxyKV ...any) map[string]any {
	return with(target.connection(), "proxy", with(jump.proxyConnection(), proxyKV...))
}

// waitClosed waits until no connection to the servers is open: the provider closed
// what it dialed, the jump host's connection too.
func waitClosed(t *testing.T, servers ...*testSSHD) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range servers {
		for {
			_, open := s.connections()
			if open == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%d connection(s) to the server on port %d still open", open, s.port)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// checkFailures checks inputs as a preview does (unknown values allowed) and returns
// its failures by property.
func checkFailures(t *testing.T, typ string, in map[string]any) map[string]string {
	t.Helper()
	urn := provkittest.URN(typ, "check")
	resp, err := engine(t).Check(ctx, plugin.CheckRequest{URN: urn, Name: urn.Name(), Type: tokens.Type(typ),
		News: provkittest.Props(in), AllowUnknowns: true})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	out := map[string]string{}
	for _, f := range resp.Failures {
		out[string(f.Property)] = f.Reason
	}
	return out
}

// A command through a jump host runs on the host behind it; the jump host only opens
// one direct-tcpip channel to it per connection and runs nothing itself, and both
// connections are closed once the command is done.
func TestRemoteThroughJumpHost(t *testing.T) {
	jump, target := startSSHD(t, true), startSSHD(t, true)
	dir := t.TempDir()
	deleted := filepath.Join(dir, "deleted")
	in := map[string]any{
		"connection":  throughJump(target, jump),
		"create":      `echo "$(cat) $GREETING"`,
		"update":      `echo "was:$PULUMI_COMMAND_STDOUT"`,
		"delete":      `echo "$PULUMI_COMMAND_STDOUT" > ` + deleted,
		"environment": map[string]any{"GREETING": "hello"},
		"stdin":       provkittest.Secret("through-the-jump-host"),
	}
	r := newRes(t, engine(t), remoteType)
	r.mustCreate(in)
	if got := r.out("stdout"); got != "through-the-jump-host hello" {
		t.Errorf("stdout = %q", got)
	}
	targetAddr := net.JoinHostPort(target.addr, strconv.Itoa(target.port))
	if got := jump.forwarded(); !slices.Equal(got, []string{targetAddr}) {
		t.Errorf("the jump host forwarded to %q, want one channel to the host (%s)", got, targetAddr)
	}
	if got := target.commands(); len(got) != 1 || !strings.Contains(got[0], "GREETING") {
		t.Errorf("the host ran %q, want the create command", got)
	}
	waitClosed(t, jump, target)

	r.mustUpdate(with(in, "stdin", provkittest.Secret("changed")))
	if got := r.out("stdout"); got != "was:through-the-jump-host hello" {
		t.Errorf("update stdout = %q", got)
	}
	if err := r.delete(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := strings.TrimSpace(readFile(t, deleted)); got != "was:through-the-jump-host hello" {
		t.Errorf("delete wrote %q", got)
	}
	if got := target.commands(); len(got) != 3 {
		t.Errorf("the host ran %d commands (%q), want create, update and delete", len(got), got)
	}
	if got := jump.forwarded(); !slices.Equal(got, []string{targetAddr, targetAddr, targetAddr}) {
		t.Errorf("the jump host forwarded to %q, want one channel to the host per command", got)
	}
	if got := jump.commands(); len(got) != 0 {
		t.Errorf("the jump host ran %q, want nothing", got)
	}
	if _, sessions := jump.contacts(); sessions != 0 {
		t.Errorf("the jump host opened %d sessions, want none", sessions)
	}
	if accepted, _ := target.connections(); accepted != 3 {
		t.Errorf("the host saw %d connections, want 3", accepted)
	}
	waitClosed(t, jump, target)
}

// A copy through a jump host lands on the host behind it: a file and a directory.
func TestCopyThroughJumpHost(t *testing.T) {
	jump, target := startSSHD(t, true), startSSHD(t, true)
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
	dest := t.TempDir()
	conn := throughJump(target, jump)
	cp := newRes(t, engine(t), copyType)
	cp.mustCreate(map[string]any{"connection": conn, "source": fileAsset(t, file), "remotePath": dest})
	if got := readFile(t, filepath.Join(dest, "f.txt")); got != "F" {
		t.Errorf("copied file holds %q", got)
	}
	cp2 := newRes(t, engine(t), copyType)
	cp2.mustCreate(map[string]any{"connection": conn, "source": pathArchive(t, tree), "remotePath": dest})
	if got := readFile(t, filepath.Join(dest, "tree", "sub", "g.txt")); got != "G" {
		t.Errorf("copied directory's file holds %q", got)
	}
	if got := target.commands(); len(got) != 2 {
		t.Errorf("the host ran %q, want the two copies", got)
	}
	if got := jump.commands(); len(got) != 0 {
		t.Errorf("the jump host ran %q, want nothing", got)
	}
	if got := jump.forwarded(); len(got) != 2 {
		t.Errorf("the jump host forwarded to %q, want two channels", got)
	}
	waitClosed(t, jump, target)
}

// Check wants connection.proxy.hostKey as it wants connection.hostKey, failing on that
// property (not on connection or connection.proxy, whose values hold private keys);
// values unknown at preview pass.
func TestRemoteCheckWantsAJumpHostKey(t *testing.T) {
	key := authorizedKey(t, newHostKey(t, "ssh-ed25519"))
	jumpKey := authorizedKey(t, newHostKey(t, "ssh-ed25519"))
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
	conn := func(proxy any) map[string]any {
		return map[string]any{"host": "10.0.0.5", "user": "root", "privateKey": "k", "hostKey": key, "proxy": proxy}
	}
	proxy := func(kv ...any) map[string]any {
		return with(map[string]any{"host": "203.0.113.10", "user": "ubuntu", "privateKey": "jk", "port": 22.0}, kv...)
	}
	unknown := resource.MakeComputed(resource.NewProperty(""))
	for _, typ := range []string{remoteType, copyType} {
		t.Run(typ, func(t *testing.T) {
			refused := []struct {
				name  string
				proxy any
				want  []string
			}{
				{"no hostKey", proxy(), []string{"is required", "authorized_keys"}},
				{"empty hostKey", proxy("hostKey", ""), []string{"is required"}},
				{"malformed hostKey", proxy("hostKey", "ssh-ed25519 not-base64"), []string{"authorized_keys"}},
				{"a private key", proxy("hostKey", "-----BEGIN OPENSSH PRIV"+"ATE KEY-----\nb3Bl\n-----END OPENSSH PRIV"+"ATE KEY-----\n"), []string{"authorized_keys"}},
				{"a known_hosts line", proxy("hostKey", "203.0.113.10 "+jumpKey), []string{"authorized_keys"}},
				{"a secret proxy without hostKey", provkittest.Secret(proxy()), []string{"is required"}},
			}
			for _, c := range refused {
				failures := checkFailures(t, typ, inputs(typ, conn(c.proxy)))
				reason, found := failures["connection.proxy.hostKey"]
				if !found || len(failures) != 1 {
					t.Errorf("%s: failures %v, want one on connection.proxy.hostKey", c.name, failures)
					continue
				}
				for _, w := range c.want {
					if !strings.Contains(reason, w) {
						t.Errorf("%s: reason %q does not say %q", c.name, reason, w)
					}
				}
				for _, v := range []string{"not-base64", "PRIVATE", "b3Bl", "203.0.113.10"} {
					if strings.Contains(reason, v) {
						t.Errorf("%s: reason %q echoes the value (%s)", c.name, reason, v)
					}
				}
			}
			accepted := map[string]any{
				"a key":                        proxy("hostKey", jumpKey),
				"a key with a comment":         proxy("hostKey", jumpKey+" root@bastion\n"),
				"a key unknown at preview":     proxy("hostKey", unknown),
				"a proxy unknown at preview":   unknown,
				"a secret proxy":               provkittest.Secret(proxy("hostKey", jumpKey)),
				"a jump host unknown":          proxy("hostKey", jumpKey, "host", unknown),
				"the same key as the host's":   proxy("hostKey", key),
				"settings of the SDK's proxy":  proxy("hostKey", jumpKey, "dialErrorLimit", 3.0, "perDialTimeout", 7.0),
				"a password instead of a key":  proxy("hostKey", jumpKey, "privateKey", nil, "password", "pw"),
				"an encrypted key with its pw": proxy("hostKey", jumpKey, "privateKeyPassword", "pw"),
			}
			for name, p := range accepted {
				if failures := checkFailures(t, typ, inputs(typ, conn(p))); len(failures) > 0 {
					t.Errorf("%s: check failures %v", name, failures)
				}
			}
		})
	}
}

// A resource whose state has a jump host without a valid hostKey (Delete uses the
// state without a Check) is refused when it dials: neither the jump host nor the host
// is contacted.
func TestRemoteWithoutJumpHostKeyRunsNothing(t *testing.T) {
	jump, target := startSSHD(t, true), startSSHD(t, true)
	noContact := func(t *testing.T) {
		t.Helper()
		for name, s := range map[string]*testSSHD{"jump host": jump, "host": target} {
			if accepted, _ := s.connections(); accepted != 0 {
				t.Errorf("the %s saw %d connections, want none", name, accepted)
			}
		}
	}
	for name, conn := range map[string]map[string]any{
		"no hostKey":        throughJump(target, jump, "hostKey", nil),
		"malformed hostKey": throughJump(target, jump, "hostKey", "ssh-ed25519 not-base64"),
	} {
		t.Run(name, func(t *testing.T) {
			r := newRes(t, engine(t), remoteType)
			r.id = "made-before"
			r.inputs = provkittest.Props(map[string]any{"connection": conn, "create": "true", "delete": "echo deleting"})
			r.state = provkittest.Props(map[string]any{"connection": conn, "create": "true", "delete": "echo deleting",
				"stdout": "", "stderr": ""})
			err := r.delete()
			if err == nil {
				t.Fatal("delete through a jump host without a valid hostKey succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range []string{"connection.proxy.hostKey", "authorized_keys"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			noContact(t)
		})
	}
	t.Run("copy", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "copied")
		err := copyToRemote(ctx, V{"connection": throughJump(target, jump, "hostKey", nil),
			"source": provkit.Asset{Text: "text"}, "remotePath": dest})
		if err == nil || !strings.Contains(err.Error(), "connection.proxy.hostKey") {
			t.Errorf("copy without the jump host's hostKey: error %v, want one naming connection.proxy.hostKey", err)
		}
		if _, err := os.Stat(dest); err == nil {
			t.Error("the file was copied")
		}
		noContact(t)
	})
}

// A jump host presenting another key than connection.proxy.hostKey (or none of its
// type) is refused at once, without retries and before any authentication; the host
// behind it is not reached at all.
func TestRemoteJumpHostKeyMismatchIsRefusedAtOnce(t *testing.T) {
	jump := startSSHDWith(t, sshdOptions{password: "pw"})
	target := startSSHD(t, true)
	otherEd25519 := authorizedKey(t, newHostKey(t, "ssh-ed25519"))
	ecdsaKey := authorizedKey(t, newHostKey(t, "ecdsa-sha2-nistp256"))
	jumpAddr := net.JoinHostPort(jump.addr, strconv.Itoa(jump.port))
	cases := []struct {
		name string
		conn map[string]any
		want string
	}{
		{"another key, key auth", throughJump(target, jump, "hostKey", otherEd25519), "did not match connection.proxy.hostKey"},
		{"another key, password auth", throughJump(target, jump, "hostKey", otherEd25519, "privateKey", nil, "password", "pw"),
			"did not match connection.proxy.hostKey"},
		{"no key of the pinned type", throughJump(target, jump, "hostKey", ecdsaKey), "no ecdsa-sha2-nistp256 host key"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.conn["dialErrorLimit"] = 5.0
			mark := filepath.Join(dir, "ran")
			start := time.Now()
			r := newRes(t, engine(t), remoteType)
			err := r.create(map[string]any{"connection": c.conn, "create": "cat > " + mark, "stdin": provkittest.Secret("secret-stdin")})
			took := time.Since(start)
			if err == nil {
				t.Fatal("create through a jump host with another key succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range []string{c.want, "the jump host " + jumpAddr} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
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
					t.Errorf("%s exists: something was sent", p)
				}
			}
			if auths, sessions := jump.contacts(); auths != 0 || sessions != 0 {
				t.Errorf("the jump host saw %d authentications and %d sessions, want none", auths, sessions)
			}
			if got := jump.forwarded(); len(got) != 0 {
				t.Errorf("the jump host was asked to forward to %q", got)
			}
			if accepted, _ := target.connections(); accepted != 0 {
				t.Errorf("the host saw %d connections, want none", accepted)
			}
			waitClosed(t, jump)
		})
	}
}

// The host behind a good jump host presenting another key is refused at once, before
// any authentication, and the jump host's connection is closed.
func TestRemoteHostKeyMismatchThroughJumpHostIsRefused(t *testing.T) {
	jump, target := startSSHD(t, true), startSSHD(t, true)
	conn := with(throughJump(target, jump), "hostKey", authorizedKey(t, newHostKey(t, "ssh-ed25519")), "dialErrorLimit", 5.0)
	jumpAddr := net.JoinHostPort(jump.addr, strconv.Itoa(jump.port))
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	start := time.Now()
	r := newRes(t, engine(t), remoteType)
	err := r.create(map[string]any{"connection": conn, "create": "touch " + mark})
	took := time.Since(start)
	if err == nil {
		t.Fatal("create on a host with another key succeeded")
	}
	t.Logf("error: %v", err)
	for _, w := range []string{"did not match connection.hostKey", "through the jump host " + jumpAddr} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if took > 3*time.Second {
		t.Errorf("refusal took %v: the dial was retried", took)
	}
	cp := newRes(t, engine(t), copyType)
	dest := filepath.Join(dir, "copied")
	err = cp.create(map[string]any{"connection": conn, "source": provkitText(t, "file"), "remotePath": dest})
	if err == nil || !strings.Contains(err.Error(), "did not match connection.hostKey") {
		t.Errorf("copy error %v, want a host key mismatch", err)
	}
	for _, p := range []string{mark, dest} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists: the host was sent something", p)
		}
	}
	if got := target.commands(); len(got) != 0 {
		t.Errorf("the host ran %q", got)
	}
	if auths, sessions := target.contacts(); auths != 0 || sessions != 0 {
		t.Errorf("the host saw %d authentications and %d sessions, want none", auths, sessions)
	}
	if got := jump.forwarded(); len(got) != 2 {
		t.Errorf("the jump host forwarded to %q, want one channel per try (no retries)", got)
	}
	if got := jump.commands(); len(got) != 0 {
		t.Errorf("the jump host ran %q", got)
	}
	waitClosed(t, jump, target)
}

// What may pass with time is retried (a jump host or a host still booting), each hop
// with its own dialErrorLimit; what will not is not (a jump host that does not forward,
// a key the jump host does not accept). Each error names the hop that failed.
func TestRemoteThroughJumpHostRetriesOnlyWhatMayPass(t *testing.T) {
	closedPort := func(t *testing.T) int {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := lis.Addr().(*net.TCPAddr).Port
		lis.Close()
		return port
	}
	jump, target := startSSHD(t, true), startSSHD(t, true)
	jumpAddr := net.JoinHostPort(jump.addr, strconv.Itoa(jump.port))
	down := closedPort(t)
	cases := []struct {
		name    string
		conn    map[string]any
		want    []string
		retried bool
	}{
		{"the jump host down", with(throughJump(target, jump, "port", float64(down), "dialErrorLimit", 2.0, "perDialTimeout", 2.0),
			"dialErrorLimit", 5.0), []string{"the jump host 127.0.0.1:" + strconv.Itoa(down), "failed"}, true},
		{"the host down behind the jump host", with(throughJump(target, jump), "port", float64(down), "dialErrorLimit", 2.0),
			[]string{"through the jump host " + jumpAddr, "failed", "connect"}, true},
		{"a jump host that does not forward", with(throughJump(target, jump), "host", "localhost", "dialErrorLimit", 5.0),
			[]string{"through the jump host " + jumpAddr, "administratively prohibited"}, false},
		{"a key the jump host does not accept", with(throughJump(target, jump, "privateKey", target.keyPEM), "dialErrorLimit", 5.0),
			[]string{"the jump host " + jumpAddr, "unable to authenticate"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := newRes(t, engine(t), remoteType)
			err := r.create(map[string]any{"connection": c.conn, "create": "echo ran"})
			took := time.Since(start)
			if err == nil {
				t.Fatal("create succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// A retry waits a second first; a second retry would take longer than 3 s.
			if c.retried && (took < time.Second || took > 3*time.Second) {
				t.Errorf("took %v, want one retry (dialErrorLimit 2)", took)
			}
			if !c.retried && took >= time.Second {
				t.Errorf("took %v: it was retried", took)
			}
			waitClosed(t, jump, target)
		})
	}
	if got := target.commands(); len(got) != 0 {
		t.Errorf("the host ran %q", got)
	}
	if got := jump.commands(); len(got) != 0 {
		t.Errorf("the jump host ran %q", got)
	}
}

// A new pin of the jump host's key (its key rotated) is a new pin like the host's: the
// connection is stored and used from then on, nothing runs.
func TestRemoteJumpHostKeyOnlyChangeRunsNothing(t *testing.T) {
	const ed, ec = "ssh-ed25519", "ecdsa-sha2-nistp256"
	jump := startSSHDWith(t, sshdOptions{hostKeyTypes: []string{ed, ec}})
	target := startSSHD(t, true)
	deleted := filepath.Join(t.TempDir(), "deleted")
	in := map[string]any{"connection": throughJump(target, jump, "hostKey", jump.hostKeys[ed]),
		"create": "echo create-ran; echo previous-stderr >&2", "update": "echo update-ran",
		"delete": `echo "deleted after $PULUMI_COMMAND_STDOUT" > ` + deleted}
	r := newRes(t, engine(t), remoteType)
	r.mustCreate(in)

	d := r.mustUpdate(with(in, "connection", throughJump(target, jump, "hostKey", jump.hostKeys[ec])))
	if got := target.commands(); len(got) != 1 {
		t.Errorf("the host ran %q, want only the create: a new pin of the jump host alone runs nothing", got)
	}
	if d.Changes != plugin.DiffSome || !slices.Equal(d.ChangedKeys, []resource.PropertyKey{"connection"}) {
		t.Errorf("diff %+v, want an update of connection", d)
	}
	if got := r.out("stdout"); got != "create-ran" {
		t.Errorf("stdout = %q, want the previous one", got)
	}

	// The jump host drops its old key: Delete must dial it with the new pin.
	jump.dropHostKey(ed)
	if err := r.delete(); err != nil {
		t.Fatalf("delete after re-pinning the jump host: %v", err)
	}
	if got := strings.TrimSpace(readFile(t, deleted)); got != "deleted after create-ran" {
		t.Errorf("delete wrote %q", got)
	}

	// Another change of the jump host (its user, another jump host) runs the update.
	r2 := newRes(t, engine(t), remoteType)
	in2 := with(in, "connection", throughJump(target, jump, "hostKey", jump.hostKeys[ec]), "delete", nil)
	r2.mustCreate(in2)
	r2.mustUpdate(with(in2, "connection", throughJump(target, jump, "hostKey", jump.hostKeys[ec], "perDialTimeout", 6.0)))
	if got := r2.out("stdout"); got != "update-ran" {
		t.Errorf("stdout after another change of the jump host = %q, want update-ran", got)
	}
}
