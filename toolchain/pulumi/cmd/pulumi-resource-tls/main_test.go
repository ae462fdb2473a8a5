package main

// Tests of hakube's tls provider through its gRPC methods, called by the engine's own
// provider client (provkittest.Engine). What they pin comes from
// hashicorp/terraform-provider-tls (which pulumi-tls bridges), internal/provider/:
//
//   - resource_private_key.go: rsa_bits defaults to 2048, ecdsa_curve to P224; every
//     input RequiresReplace; private_key_pem ("RSA PRIVATE KEY", "EC PRIVATE KEY", or
//     PKCS#8 "PRIVATE KEY" for ED25519), private_key_pem_pkcs8 and private_key_openssh
//     (empty for ECDSA P224, which x/crypto/ssh cannot marshal) are Sensitive, i.e.
//     secrets in Pulumi (the SDK also lists them in additionalSecretOutputs).
//   - common_key.go setPublicKeyAttributes: id = hashForState(PKIX DER) (SHA-1 hex of
//     the trimmed bytes); public_key_openssh and both fingerprints empty for P224.
//   - common_cert.go createCertificate: NotBefore = now, NotAfter = now + validity
//     hours; id = serial number; allowed_uses as key usages and extended key usages;
//     a CA needs a non-empty subject and gets a subject key id; generateSubjectKeyID
//     hashes the PKCS#1 key (RSA), the uncompressed point (ECDSA), the ASN.1 encoding
//     of the key (ED25519); set_authority_key_id takes the issuer's subject key id.
//   - common_cert.go modifyPlanIfCertificateReadyForRenewal / modifyStateIfCertificate
//     ReadyForRenewal: a certificate is ready for renewal once validity_end_time -
//     early_renewal_hours - now <= 0; the plan (Diff) then RequiresReplace on
//     ready_for_renewal, and Read (refresh) sets ready_for_renewal = true.
//   - resource_self_signed_cert.go, resource_locally_signed_cert.go: early_renewal_hours
//     is the only input without RequiresReplace (an in-place update); validity_period
//     _hours and early_renewal_hours are validated AtLeast(0) (0 is allowed: born expired).
//   - attribute_plan_modifier_bool ReadyForRenewal: ready_for_renewal starts true when
//     validity_period_hours is 0 or early_renewal_hours >= validity_period_hours.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"golang.org/x/crypto/ssh"
	"hakube.local/toolchain/pulumi/internal/provkit/provkittest"
)

const (
	keyType   = "tls:index/privateKey:PrivateKey"
	selfType  = "tls:index/selfSignedCert:SelfSignedCert"
	csrType   = "tls:index/certRequest:CertRequest"
	localType = "tls:index/locallySignedCert:LocallySignedCert"
)

var ctx = context.Background()

// setNow moves the provider's clock for the rest of the test.
func setNow(t *testing.T, at time.Time) {
	t.Helper()
	old := now
	now = func() time.Time { return at }
	t.Cleanup(func() { now = old })
}

type res struct {
	t      *testing.T
	p      plugin.Provider
	typ    string
	urn    resource.URN
	id     resource.ID
	inputs resource.PropertyMap
	state  resource.PropertyMap
}

func newRes(t *testing.T, p plugin.Provider, typ, name string) *res {
	return &res{t: t, p: p, typ: typ, urn: provkittest.URN(typ, name)}
}

func (r *res) check(news map[string]any) (resource.PropertyMap, []plugin.CheckFailure) {
	r.t.Helper()
	resp, err := r.p.Check(ctx, plugin.CheckRequest{URN: r.urn, Name: r.urn.Name(), Type: tokens.Type(r.typ),
		Olds: r.inputs, News: provkittest.Props(news)})
	if err != nil {
		r.t.Fatalf("check: %v", err)
	}
	return resp.Properties, resp.Failures
}

func (r *res) create(in map[string]any) error {
	r.t.Helper()
	checked, failures := r.check(in)
	if len(failures) > 0 {
		r.t.Fatalf("check failures: %v", failures)
	}
	resp, err := r.p.Create(ctx, plugin.CreateRequest{URN: r.urn, Name: r.urn.Name(), Type: tokens.Type(r.typ), Properties: checked})
	if err != nil {
		return err
	}
	r.id, r.inputs, r.state = resp.ID, checked, resp.Properties
	return nil
}

func (r *res) mustCreate(in map[string]any) *res {
	r.t.Helper()
	if err := r.create(in); err != nil {
		r.t.Fatalf("create %s: %v", r.typ, err)
	}
	return r
}

func (r *res) diff(in map[string]any) (resource.PropertyMap, plugin.DiffResult) {
	r.t.Helper()
	news, failures := r.check(in)
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

func (r *res) update(in map[string]any) {
	r.t.Helper()
	news, d := r.diff(in)
	if d.Changes != plugin.DiffSome || len(d.ReplaceKeys) > 0 {
		r.t.Fatalf("diff %+v: want an in-place update", d)
	}
	resp, err := r.p.Update(ctx, plugin.UpdateRequest{URN: r.urn, Name: r.urn.Name(), Type: tokens.Type(r.typ), ID: r.id,
		OldInputs: r.inputs, OldOutputs: r.state, NewInputs: news})
	if err != nil {
		r.t.Fatalf("update: %v", err)
	}
	r.inputs, r.state = news, resp.Properties
}

func (r *res) refresh() resource.PropertyMap {
	r.t.Helper()
	resp, err := r.p.Read(ctx, plugin.ReadRequest{URN: r.urn, Name: r.urn.Name(), Type: tokens.Type(r.typ), ID: r.id,
		Inputs: r.inputs, State: r.state})
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	if resp.Outputs == nil {
		r.t.Fatalf("read says the resource is gone")
	}
	return resp.Outputs
}

func (r *res) out(k string) string {
	r.t.Helper()
	s, ok := provkittest.Str(r.state, k)
	if !ok {
		r.t.Fatalf("output %q missing or not a string", k)
	}
	return s
}

func (r *res) boolOut(k string) bool {
	r.t.Helper()
	v := r.state[resource.PropertyKey(k)]
	if !v.IsBool() {
		r.t.Fatalf("output %q = %v, not a bool", k, v)
	}
	return v.BoolValue()
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func decodePEM(t *testing.T, text, typ string) []byte {
	t.Helper()
	b, rest := pem.Decode([]byte(text))
	if b == nil || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("not one PEM block: %q", text)
	}
	if b.Type != typ {
		t.Fatalf("PEM type %q, want %q", b.Type, typ)
	}
	return b.Bytes
}

func parseCert(t *testing.T, text string) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(decodePEM(t, text, "CERTIFICATE"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func key(t *testing.T, p plugin.Provider, name string, in map[string]any) *res {
	return newRes(t, p, keyType, name).mustCreate(in)
}

func TestPrivateKeyDefaults(t *testing.T) {
	r := newRes(t, provkittest.Engine(t, "tls", newServer()), keyType, "k")
	checked, failures := r.check(map[string]any{"algorithm": "RSA"})
	if len(failures) > 0 {
		t.Fatal(failures)
	}
	if v := checked["rsaBits"]; !v.IsNumber() || v.NumberValue() != 2048 {
		t.Errorf("rsaBits default = %v, want 2048", v)
	}
	if v, _ := provkittest.Str(checked, "ecdsaCurve"); v != "P224" {
		t.Errorf("ecdsaCurve default = %q, want P224", v)
	}
	for name, in := range map[string]map[string]any{
		"no algorithm":    {},
		"bad algorithm":   {"algorithm": "DSA"},
		"bad ecdsa curve": {"algorithm": "ECDSA", "ecdsaCurve": "P192"},
	} {
		if _, failures := r.check(in); len(failures) == 0 {
			t.Errorf("%s: no check failure", name)
		}
	}
}

func TestPrivateKeyFormatsSecretsAndID(t *testing.T) {
	p := provkittest.Engine(t, "tls", newServer())
	cases := []struct {
		in      map[string]any
		pemType string
		ssh     bool
	}{
		{map[string]any{"algorithm": "RSA", "rsaBits": 2048.0}, "RSA PRIVATE KEY", true},
		{map[string]any{"algorithm": "ECDSA", "ecdsaCurve": "P256"}, "EC PRIVATE KEY", true},
		{map[string]any{"algorithm": "ECDSA"}, "EC PRIVATE KEY", false}, // P224
		{map[string]any{"algorithm": "ED25519"}, "PRIVATE KEY", true},
	}
	for i, c := range cases {
		r := key(t, p, "k"+string(rune('a'+i)), c.in)
		label := c.in["algorithm"].(string)
		if label == "ECDSA" {
			label += " " + r.out("ecdsaCurve")
		}

		for _, k := range []string{"privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"} {
			if !provkittest.IsSecret(r.state, k) {
				t.Errorf("%s: %s is not a secret", label, k)
			}
		}
		for _, k := range []string{"publicKeyPem", "publicKeyOpenssh", "publicKeyFingerprintMd5", "publicKeyFingerprintSha256"} {
			if provkittest.IsSecret(r.state, k) {
				t.Errorf("%s: %s is a secret", label, k)
			}
		}

		decodePEM(t, r.out("privateKeyPem"), c.pemType)
		pk8, err := x509.ParsePKCS8PrivateKey(decodePEM(t, r.out("privateKeyPemPkcs8"), "PRIVATE KEY"))
		if err != nil {
			t.Fatalf("%s: PKCS#8: %v", label, err)
		}
		pubDER := decodePEM(t, r.out("publicKeyPem"), "PUBLIC KEY")
		pub, err := x509.ParsePKIXPublicKey(pubDER)
		if err != nil {
			t.Fatal(err)
		}
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(pk8.(crypto.Signer).Public()) {
			t.Errorf("%s: publicKeyPem is not the private key's", label)
		}
		sum := sha1.Sum([]byte(strings.TrimSpace(string(pubDER))))
		if string(r.id) != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: id %s, want the SHA-1 of the public key's DER", label, r.id)
		}

		if !c.ssh {
			for _, k := range []string{"privateKeyOpenssh", "publicKeyOpenssh", "publicKeyFingerprintMd5", "publicKeyFingerprintSha256"} {
				if r.out(k) != "" {
					t.Errorf("%s: %s = %q, want empty (P224 is not an SSH key type)", label, k, r.out(k))
				}
			}
			continue
		}
		if _, err := ssh.ParseRawPrivateKey([]byte(r.out("privateKeyOpenssh"))); err != nil {
			t.Errorf("%s: privateKeyOpenssh: %v", label, err)
		}
		sp, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.out("publicKeyOpenssh")))
		if err != nil {
			t.Fatalf("%s: publicKeyOpenssh: %v", label, err)
		}
		if got := r.out("publicKeyFingerprintSha256"); got != ssh.FingerprintSHA256(sp) {
			t.Errorf("%s: sha256 fingerprint %q", label, got)
		}
		if got := r.out("publicKeyFingerprintMd5"); got != ssh.FingerprintLegacyMD5(sp) {
			t.Errorf("%s: md5 fingerprint %q, want %q", label, got, ssh.FingerprintLegacyMD5(sp))
		}
	}
}

func TestPrivateKeyEveryChangeReplaces(t *testing.T) {
	r := key(t, provkittest.Engine(t, "tls", newServer()), "k", map[string]any{"algorithm": "ECDSA", "ecdsaCurve": "P256"})
	if _, d := r.diff(map[string]any{"algorithm": "ECDSA", "ecdsaCurve": "P256"}); d.Changes != plugin.DiffNone {
		t.Errorf("no change: %v", d.Changes)
	}
	for _, in := range []map[string]any{
		{"algorithm": "ECDSA", "ecdsaCurve": "P384"},
		{"algorithm": "RSA"},
		{"algorithm": "ECDSA", "ecdsaCurve": "P256", "rsaBits": 4096.0},
	} {
		if _, d := r.diff(in); len(d.ReplaceKeys) == 0 {
			t.Errorf("%v: diff %+v, want a replacement", in, d)
		}
	}
}

func ca(t *testing.T, p plugin.Provider, extra ...any) (*res, *res) {
	k := key(t, p, "ca-key", map[string]any{"algorithm": "ECDSA", "ecdsaCurve": "P256"})
	in := with(map[string]any{
		"privateKeyPem":       k.state["privateKeyPem"],
		"subject":             map[string]any{"commonName": "test-ca", "organization": "hakube"},
		"isCaCertificate":     true,
		"validityPeriodHours": 100.0,
		"earlyRenewalHours":   10.0,
		"allowedUses":         []any{"cert_signing", "crl_signing", "digital_signature"},
	}, extra...)
	return k, newRes(t, p, selfType, "ca").mustCreate(in)
}

func TestSelfSignedCert(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	setNow(t, start)
	p := provkittest.Engine(t, "tls", newServer())
	_, r := ca(t, p)
	c := parseCert(t, r.out("certPem"))
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Error("not a CA certificate")
	}
	if c.Subject.CommonName != "test-ca" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "hakube" {
		t.Errorf("subject %v", c.Subject)
	}
	if !c.NotBefore.Equal(start) || !c.NotAfter.Equal(start.Add(100*time.Hour)) {
		t.Errorf("validity %v..%v, want now..now+100h", c.NotBefore, c.NotAfter)
	}
	if r.out("validityStartTime") != start.Format(time.RFC3339) || r.out("validityEndTime") != start.Add(100*time.Hour).Format(time.RFC3339) {
		t.Errorf("validity outputs %s..%s", r.out("validityStartTime"), r.out("validityEndTime"))
	}
	if string(r.id) != c.SerialNumber.String() {
		t.Errorf("id %s, want the serial number %s", r.id, c.SerialNumber)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %b", c.KeyUsage)
	}
	if r.out("keyAlgorithm") != "ECDSA" || r.boolOut("readyForRenewal") {
		t.Errorf("keyAlgorithm %q, readyForRenewal %v", r.out("keyAlgorithm"), r.boolOut("readyForRenewal"))
	}
	// Subject key id of an ECDSA key: SHA-1 of the uncompressed point.
	pub := c.PublicKey.(*ecdsa.PublicKey)
	point, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha1.Sum(point); string(c.SubjectKeyId) != string(sum[:]) {
		t.Errorf("subject key id %x, want %x", c.SubjectKeyId, sum)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if !provkittest.IsSecret(r.state, "privateKeyPem") {
		t.Error("privateKeyPem output is not secret")
	}
}

func TestSelfSignedCertRules(t *testing.T) {
	p := provkittest.Engine(t, "tls", newServer())
	k := key(t, p, "k", map[string]any{"algorithm": "ECDSA", "ecdsaCurve": "P256"})
	base := map[string]any{"privateKeyPem": k.state["privateKeyPem"], "validityPeriodHours": 10.0,
		"allowedUses": []any{"server_auth"}, "subject": map[string]any{"commonName": "x"}}

	r := newRes(t, p, selfType, "c")
	for name, in := range map[string]map[string]any{
		"negative validity": with(base, "validityPeriodHours", -1.0),
		"negative early":    with(base, "earlyRenewalHours", -1.0),
		"unknown use":       with(base, "allowedUses", []any{"launch_missiles"}),
	} {
		if _, failures := r.check(in); len(failures) == 0 {
			t.Errorf("%s: no check failure", name)
		}
	}
	if err := newRes(t, p, selfType, "ca").create(with(base, "isCaCertificate", true, "subject", map[string]any{})); err == nil ||
		!strings.Contains(err.Error(), "distinguished name") {
		t.Errorf("CA without a subject: %v, want an error", err)
	}
	if err := newRes(t, p, selfType, "aki").create(with(base, "setAuthorityKeyId", true)); err == nil {
		t.Error("setAuthorityKeyId without a subject key id: no error")
	}
	aki := newRes(t, p, selfType, "aki2").mustCreate(with(base, "setAuthorityKeyId", true, "setSubjectKeyId", true))
	c := parseCert(t, aki.out("certPem"))
	if len(c.SubjectKeyId) == 0 || string(c.AuthorityKeyId) != string(c.SubjectKeyId) {
		t.Errorf("authority key id %x, want the subject key id %x", c.AuthorityKeyId, c.SubjectKeyId)
	}
	if slices.Compare(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) != 0 {
		t.Errorf("ext key usage %v", c.ExtKeyUsage)
	}
	// 0 hours is allowed: the certificate is born due for renewal.
	zero := newRes(t, p, selfType, "zero").mustCreate(with(base, "validityPeriodHours", 0.0))
	if !zero.boolOut("readyForRenewal") {
		t.Error("0 validity hours: readyForRenewal false")
	}
	if _, d := zero.diff(with(base, "validityPeriodHours", 0.0)); !slices.Contains(d.ReplaceKeys, "readyForRenewal") {
		t.Errorf("0 validity hours: diff %+v, want a renewal", d)
	}
	born := newRes(t, p, selfType, "born").mustCreate(with(base, "earlyRenewalHours", 10.0))
	if !born.boolOut("readyForRenewal") {
		t.Error("earlyRenewalHours >= validityPeriodHours: readyForRenewal false")
	}
}

// Subject key ids of RSA and ED25519 keys, as upstream hashes them.
func TestSubjectKeyIDs(t *testing.T) {
	p := provkittest.Engine(t, "tls", newServer())
	for _, alg := range []string{"RSA", "ED25519"} {
		k := key(t, p, "k-"+alg, map[string]any{"algorithm": alg})
		r := newRes(t, p, selfType, "c-"+alg).mustCreate(map[string]any{"privateKeyPem": k.state["privateKeyPem"],
			"validityPeriodHours": 1.0, "allowedUses": []any{}, "setSubjectKeyId": true})
		c := parseCert(t, r.out("certPem"))
		var data []byte
		switch pub := c.PublicKey.(type) {
		case *rsa.PublicKey:
			data = x509.MarshalPKCS1PublicKey(pub)
		case ed25519.PublicKey:
			var err error
			if data, err = asn1.Marshal([]byte(pub)); err != nil {
				t.Fatal(err)
			}
		}
		if sum := sha1.Sum(data); string(c.SubjectKeyId) != string(sum[:]) {
			t.Errorf("%s: subject key id %x, want %x", alg, c.SubjectKeyId, sum)
		}
		if r.out("keyAlgorithm") != alg {
			t.Errorf("keyAlgorithm %q", r.out("keyAlgorithm"))
		}
	}
}

// earlyRenewalHours changes in place; every other input replaces.
func TestCertDiff(t *testing.T) {
	p := provkittest.Engine(t, "tls", newServer())
	k, r := ca(t, p)
	k2 := key(t, p, "other-key", map[string]any{"algorithm": "ED25519"})
	base := map[string]any{"privateKeyPem": k.state["privateKeyPem"], "subject": map[string]any{"commonName": "test-ca", "organization": "hakube"},
		"isCaCertificate": true, "validityPeriodHours": 100.0, "earlyRenewalHours": 10.0,
		"allowedUses": []any{"cert_signing", "crl_signing", "digital_signature"}}
	if _, d := r.diff(base); d.Changes != plugin.DiffNone {
		t.Fatalf("no change: %+v", d)
	}
	if _, d := r.diff(with(base, "earlyRenewalHours", 20.0)); d.Changes != plugin.DiffSome || len(d.ReplaceKeys) > 0 {
		t.Errorf("earlyRenewalHours: %+v, want an update", d)
	}
	for _, kv := range [][2]any{
		{"validityPeriodHours", 200.0},
		{"allowedUses", []any{"cert_signing"}},
		{"subject", map[string]any{"commonName": "other"}},
		{"dnsNames", []any{"a.example"}},
		{"ipAddresses", []any{"10.0.0.1"}},
		{"isCaCertificate", false},
		{"privateKeyPem", k2.state["privateKeyPem"]},
	} {
		if _, d := r.diff(with(base, kv[0], kv[1])); !slices.Contains(d.ReplaceKeys, resource.PropertyKey(kv[0].(string))) {
			t.Errorf("%s: replace keys %v", kv[0], d.ReplaceKeys)
		}
	}
}

// The renewal window, at diff and at refresh, for self-signed and locally signed
// certificates alike.
func TestEarlyRenewal(t *testing.T) {
	start := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	setNow(t, start)
	p := provkittest.Engine(t, "tls", newServer())
	k, self := ca(t, p)
	leafKey := key(t, p, "leaf-key", map[string]any{"algorithm": "ECDSA", "ecdsaCurve": "P256"})
	csr := newRes(t, p, csrType, "csr").mustCreate(map[string]any{"privateKeyPem": leafKey.state["privateKeyPem"],
		"subject": map[string]any{"commonName": "leaf"}})
	signed := newRes(t, p, localType, "leaf").mustCreate(map[string]any{"certRequestPem": csr.state["certRequestPem"],
		"caCertPem": self.state["certPem"], "caPrivateKeyPem": k.state["privateKeyPem"],
		"validityPeriodHours": 100.0, "earlyRenewalHours": 10.0, "allowedUses": []any{"server_auth"}})

	for _, r := range []*res{self, signed} {
		t.Run(r.typ, func(t *testing.T) {
			in := map[string]any{}
			for k, v := range r.inputs {
				in[string(k)] = v
			}
			due := start.Add(90 * time.Hour) // validity end - earlyRenewalHours

			setNow(t, due.Add(-time.Second))
			if _, d := r.diff(in); d.Changes != plugin.DiffNone {
				t.Errorf("a second before the window: diff %+v, want none", d)
			}
			if got := r.refresh()["readyForRenewal"]; !got.IsBool() || got.BoolValue() {
				t.Errorf("a second before the window: refreshed readyForRenewal = %v", got)
			}

			setNow(t, due)
			if _, d := r.diff(in); d.Changes != plugin.DiffSome || !slices.Contains(d.ReplaceKeys, "readyForRenewal") {
				t.Errorf("in the window: diff %+v, want a replacement for readyForRenewal", d)
			}
			refreshed := r.refresh()
			if got := refreshed["readyForRenewal"]; !got.IsBool() || !got.BoolValue() {
				t.Errorf("in the window: refreshed readyForRenewal = %v, want true", got)
			}
			if got, _ := provkittest.Str(refreshed, "certPem"); got != r.out("certPem") {
				t.Error("refresh changed the certificate")
			}

			// Fewer early hours (of the new inputs) move the window out again: an update
			// that keeps the certificate.
			cert := r.out("certPem")
			r.update(with(in, "earlyRenewalHours", 5.0))
			if r.out("certPem") != cert || r.boolOut("readyForRenewal") {
				t.Errorf("after the update: same cert %v, readyForRenewal %v", r.out("certPem") == cert, r.boolOut("readyForRenewal"))
			}
			setNow(t, start.Add(95*time.Hour))
			if _, d := r.diff(with(in, "earlyRenewalHours", 5.0)); !slices.Contains(d.ReplaceKeys, "readyForRenewal") {
				t.Errorf("in the new window: diff %+v", d)
			}
		})
	}
}

func TestCertRequestAndLocallySignedCert(t *testing.T) {
	p := provkittest.Engine(t, "tls", newServer())
	caKey, caCert := ca(t, p)
	leafKey := key(t, p, "leaf-key", map[string]any{"algorithm": "RSA"})
	csrIn := map[string]any{"privateKeyPem": leafKey.state["privateKeyPem"],
		"subject":  map[string]any{"commonName": "kube-apiserver", "organization": "system:masters"},
		"dnsNames": []any{"kubernetes.default"}, "ipAddresses": []any{"10.0.0.1"}}
	csr := newRes(t, p, csrType, "csr").mustCreate(csrIn)
	req, err := x509.ParseCertificateRequest(decodePEM(t, csr.out("certRequestPem"), "CERTIFICATE REQUEST"))
	if err != nil {
		t.Fatal(err)
	}
	if err := req.CheckSignature(); err != nil {
		t.Errorf("request signature: %v", err)
	}
	if req.Subject.CommonName != "kube-apiserver" || len(req.DNSNames) != 1 || len(req.IPAddresses) != 1 {
		t.Errorf("request %v %v %v", req.Subject, req.DNSNames, req.IPAddresses)
	}
	if csr.out("keyAlgorithm") != "RSA" || !provkittest.IsSecret(csr.state, "privateKeyPem") {
		t.Errorf("keyAlgorithm %q, privateKeyPem secret %v", csr.out("keyAlgorithm"), provkittest.IsSecret(csr.state, "privateKeyPem"))
	}
	if _, d := csr.diff(with(csrIn, "dnsNames", []any{"other"})); len(d.ReplaceKeys) == 0 {
		t.Errorf("request change: %+v, want a replacement", d)
	}

	leaf := newRes(t, p, localType, "leaf").mustCreate(map[string]any{"certRequestPem": csr.state["certRequestPem"],
		"caCertPem": caCert.state["certPem"], "caPrivateKeyPem": caKey.state["privateKeyPem"],
		"validityPeriodHours": 24.0, "allowedUses": []any{"server_auth", "client_auth", "key_encipherment"}})
	c := parseCert(t, leaf.out("certPem"))
	caC := parseCert(t, caCert.out("certPem"))
	pool := x509.NewCertPool()
	pool.AddCert(caC)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default", CurrentTime: c.NotBefore.Add(time.Minute),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("does not verify against the CA: %v", err)
	}
	if c.Subject.CommonName != "kube-apiserver" || c.IsCA || string(c.AuthorityKeyId) != string(caC.SubjectKeyId) {
		t.Errorf("subject %v, CA %v, authority key id %x (CA's subject key id %x)", c.Subject, c.IsCA, c.AuthorityKeyId, caC.SubjectKeyId)
	}
	if leaf.out("caKeyAlgorithm") != "ECDSA" || !provkittest.IsSecret(leaf.state, "caPrivateKeyPem") {
		t.Errorf("caKeyAlgorithm %q, caPrivateKeyPem secret %v", leaf.out("caKeyAlgorithm"), provkittest.IsSecret(leaf.state, "caPrivateKeyPem"))
	}
	if !c.NotAfter.Equal(c.NotBefore.Add(24 * time.Hour)) {
		t.Errorf("validity %v..%v", c.NotBefore, c.NotAfter)
	}
}

func TestGetPublicKey(t *testing.T) {
	p := provkittest.Engine(t, "tls", newServer())
	k := key(t, p, "k", map[string]any{"algorithm": "ED25519"})
	for _, arg := range []string{"privateKeyPem", "privateKeyOpenssh"} {
		resp, err := p.Invoke(ctx, plugin.InvokeRequest{Tok: "tls:index/getPublicKey:getPublicKey",
			Args: provkittest.Props(map[string]any{arg: k.out(arg)})})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := provkittest.Str(resp.Properties, "publicKeyPem"); got != k.out("publicKeyPem") {
			t.Errorf("from %s: publicKeyPem differs from the key's", arg)
		}
		if got, _ := provkittest.Str(resp.Properties, "algorithm"); got != "ED25519" {
			t.Errorf("from %s: algorithm %q", arg, got)
		}
	}
}
