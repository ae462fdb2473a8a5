// Command pulumi-resource-tls is hakube's own implementation of the resources of the
// `tls` Pulumi package that the @pulumi/tls Node.js SDK drives: PrivateKey,
// SelfSignedCert, CertRequest, LocallySignedCert and the getPublicKey function, with
// the SDK's property names and the upstream provider's (terraform-provider-tls)
// semantics: every input change replaces, except earlyRenewalHours; a certificate
// inside its early-renewal window (from validityEndTime - earlyRenewalHours on) is
// replaced, and a refresh then records readyForRenewal = true; private keys are
// returned as secrets. The upstream provider's module is not served by the Go module
// proxy here; see toolchain/README.md.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"hakube.local/toolchain/pulumi/internal/provkit"
)

var version = "0.0.0-dev"

type V = provkit.Values

// now is the clock (a variable so that tests can move it, as upstream's tests do).
var now = time.Now

func main() {
	if err := provkit.Main(newServer()); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-tls: %v\n", err)
		os.Exit(1)
	}
}

func newServer() *provkit.Server {
	return &provkit.Server{
		Name:    "tls",
		Version: version,
		Kinds: map[string]*provkit.Kind{
			"tls:index/privateKey:PrivateKey": {
				Defaults: V{"rsaBits": 2048.0, "ecdsaCurve": "P224"},
				Validate: validateKey,
				Create:   createKey,
				Secrets:  []string{"privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"},
			},
			"tls:index/selfSignedCert:SelfSignedCert": {
				Updatable: []string{"earlyRenewalHours"},
				Defaults:  V{"earlyRenewalHours": 0.0, "isCaCertificate": false, "setSubjectKeyId": false, "setAuthorityKeyId": false},
				Validate:  validateCert,
				Create:    createSelfSigned,
				Update:    updateRenewal,
				Replace:   dueForRenewal,
				Refresh:   refreshRenewal,
				Secrets:   []string{"privateKeyPem"},
			},
			"tls:index/certRequest:CertRequest": {
				Create:  createRequest,
				Secrets: []string{"privateKeyPem"},
			},
			"tls:index/locallySignedCert:LocallySignedCert": {
				Updatable: []string{"earlyRenewalHours"},
				Defaults:  V{"earlyRenewalHours": 0.0, "isCaCertificate": false, "setSubjectKeyId": false},
				Validate:  validateCert,
				Create:    createLocallySigned,
				Update:    updateRenewal,
				Replace:   dueForRenewal,
				Refresh:   refreshRenewal,
				Secrets:   []string{"caPrivateKeyPem"},
			},
		},
		Invokes: map[string]func(context.Context, V) (V, error){
			"tls:index/getPublicKey:getPublicKey": getPublicKey,
		},
	}
}

func validateKey(in V) map[string]string {
	p := map[string]string{}
	switch a := provkit.Str(in, "algorithm"); a {
	case "RSA", "ECDSA", "ED25519":
	case "":
		if _, known := in["algorithm"]; !known {
			p["algorithm"] = "is required"
		}
	default:
		p["algorithm"] = fmt.Sprintf("must be RSA, ECDSA or ED25519, got %q", a)
	}
	switch c := provkit.Str(in, "ecdsaCurve"); c {
	case "P224", "P256", "P384", "P521", "":
	default:
		p["ecdsaCurve"] = fmt.Sprintf("must be P224, P256, P384 or P521, got %q", c)
	}
	return p
}

var keyUsages = map[string]x509.KeyUsage{
	"digital_signature":  x509.KeyUsageDigitalSignature,
	"content_commitment": x509.KeyUsageContentCommitment,
	"key_encipherment":   x509.KeyUsageKeyEncipherment,
	"data_encipherment":  x509.KeyUsageDataEncipherment,
	"key_agreement":      x509.KeyUsageKeyAgreement,
	"cert_signing":       x509.KeyUsageCertSign,
	"crl_signing":        x509.KeyUsageCRLSign,
	"encipher_only":      x509.KeyUsageEncipherOnly,
	"decipher_only":      x509.KeyUsageDecipherOnly,
}

var extUsages = map[string]x509.ExtKeyUsage{
	"any_extended":                  x509.ExtKeyUsageAny,
	"server_auth":                   x509.ExtKeyUsageServerAuth,
	"client_auth":                   x509.ExtKeyUsageClientAuth,
	"code_signing":                  x509.ExtKeyUsageCodeSigning,
	"email_protection":              x509.ExtKeyUsageEmailProtection,
	"ipsec_end_system":              x509.ExtKeyUsageIPSECEndSystem,
	"ipsec_tunnel":                  x509.ExtKeyUsageIPSECTunnel,
	"ipsec_user":                    x509.ExtKeyUsageIPSECUser,
	"timestamping":                  x509.ExtKeyUsageTimeStamping,
	"ocsp_signing":                  x509.ExtKeyUsageOCSPSigning,
	"microsoft_server_gated_crypto": x509.ExtKeyUsageMicrosoftServerGatedCrypto,
	"netscape_server_gated_crypto":  x509.ExtKeyUsageNetscapeServerGatedCrypto,
}

// validateCert checks a certificate's inputs as upstream's validators do: known
// allowed uses, and validityPeriodHours and earlyRenewalHours of at least 0.
func validateCert(in V) map[string]string {
	p := map[string]string{}
	for _, k := range []string{"validityPeriodHours", "earlyRenewalHours"} {
		if n, ok := in[k].(float64); ok && n < 0 {
			p[k] = fmt.Sprintf("must be at least 0, got %v", n)
		}
	}
	for _, u := range provkit.Strs(in, "allowedUses") {
		_, k := keyUsages[u]
		_, e := extUsages[u]
		if !k && !e {
			p["allowedUses"] = fmt.Sprintf("unknown use %q", u)
		}
	}
	return p
}

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func createKey(_ context.Context, _ string, in V) (string, V, error) {
	var priv crypto.Signer
	var pemText string
	var err error
	switch provkit.Str(in, "algorithm") {
	case "RSA":
		k, e := rsa.GenerateKey(rand.Reader, int(provkit.Num(in, "rsaBits", 2048)))
		if e != nil {
			return "", nil, e
		}
		priv, pemText = k, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
	case "ECDSA":
		curves := map[string]elliptic.Curve{"P224": elliptic.P224(), "P256": elliptic.P256(), "P384": elliptic.P384(), "P521": elliptic.P521()}
		k, e := ecdsa.GenerateKey(curves[provkit.Str(in, "ecdsaCurve")], rand.Reader)
		if e != nil {
			return "", nil, e
		}
		der, e := x509.MarshalECPrivateKey(k)
		if e != nil {
			return "", nil, e
		}
		priv, pemText = k, pemBlock("EC PRIVATE KEY", der)
	case "ED25519":
		_, k, e := ed25519.GenerateKey(rand.Reader)
		if e != nil {
			return "", nil, e
		}
		der, e := x509.MarshalPKCS8PrivateKey(k)
		if e != nil {
			return "", nil, e
		}
		priv, pemText = k, pemBlock("PRIVATE KEY", der)
	default:
		return "", nil, provkit.Errorf("algorithm must be RSA, ECDSA or ED25519")
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", nil, err
	}
	out := V{"privateKeyPem": pemText, "privateKeyPemPkcs8": pemBlock("PRIVATE KEY", pkcs8), "privateKeyOpenssh": ""}
	if b, err := ssh.MarshalPrivateKey(priv, ""); err == nil {
		out["privateKeyOpenssh"] = string(pem.EncodeToMemory(b))
	}
	pub, err := publicKeyOutputs(priv.Public())
	if err != nil {
		return "", nil, err
	}
	for k, v := range pub {
		out[k] = v
	}
	// The ID, as upstream's: the SHA-1 of the public key's DER (PKIX), in hex.
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return "", nil, err
	}
	sum := sha1.Sum([]byte(strings.TrimSpace(string(der))))
	return fmt.Sprintf("%x", sum), out, nil
}

func publicKeyOutputs(pub crypto.PublicKey) (V, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	out := V{"publicKeyPem": pemBlock("PUBLIC KEY", der), "publicKeyOpenssh": "", "publicKeyFingerprintMd5": "", "publicKeyFingerprintSha256": ""}
	if sp, err := ssh.NewPublicKey(pub); err == nil {
		out["publicKeyOpenssh"] = string(ssh.MarshalAuthorizedKey(sp))
		m := md5.Sum(sp.Marshal())
		hexes := make([]string, len(m))
		for i, b := range m {
			hexes[i] = fmt.Sprintf("%02x", b)
		}
		out["publicKeyFingerprintMd5"] = strings.Join(hexes, ":")
		out["publicKeyFingerprintSha256"] = ssh.FingerprintSHA256(sp)
	}
	return out, nil
}

func parsePrivateKey(text, field string) (crypto.Signer, string, error) {
	b, _ := pem.Decode([]byte(text))
	if b == nil {
		return nil, "", provkit.Errorf("%s: not a PEM-encoded private key", field)
	}
	var k any
	var err error
	switch b.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, "", provkit.Errorf("%s: %v", field, err)
	}
	switch key := k.(type) {
	case *rsa.PrivateKey:
		return key, "RSA", nil
	case *ecdsa.PrivateKey:
		return key, "ECDSA", nil
	case ed25519.PrivateKey:
		return key, "ED25519", nil
	}
	return nil, "", provkit.Errorf("%s: unsupported key type %T", field, k)
}

func algorithmOf(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PublicKey:
		return "ED25519"
	}
	return ""
}

func subjectName(s V) pkix.Name {
	n := pkix.Name{CommonName: provkit.Str(s, "commonName"), SerialNumber: provkit.Str(s, "serialNumber")}
	add := func(dst *[]string, k string) {
		if v := provkit.Str(s, k); v != "" {
			*dst = append(*dst, v)
		}
	}
	add(&n.Organization, "organization")
	add(&n.OrganizationalUnit, "organizationalUnit")
	add(&n.Country, "country")
	add(&n.Province, "province")
	add(&n.Locality, "locality")
	add(&n.PostalCode, "postalCode")
	n.StreetAddress = provkit.Strs(s, "streetAddresses")
	if e := provkit.Str(s, "emailAddress"); e != "" {
		n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: e})
	}
	return n
}

func sans(in V) ([]string, []net.IP, []*url.URL, error) {
	var ips []net.IP
	for _, s := range provkit.Strs(in, "ipAddresses") {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, nil, nil, provkit.Errorf("ipAddresses: %q is not an IP address", s)
		}
		ips = append(ips, ip)
	}
	var uris []*url.URL
	for _, s := range provkit.Strs(in, "uris") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, nil, nil, provkit.Errorf("uris: %v", err)
		}
		uris = append(uris, u)
	}
	return provkit.Strs(in, "dnsNames"), ips, uris, nil
}

func template(in V) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	// 0 hours is allowed, as upstream: the certificate is born expired (and so due for
	// renewal at once).
	hours := provkit.Num(in, "validityPeriodHours", -1)
	if hours < 0 {
		return nil, provkit.Errorf("validityPeriodHours must be a number of hours (at least 0)")
	}
	start := now().UTC().Truncate(time.Second)
	t := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             start,
		NotAfter:              start.Add(time.Duration(hours * float64(time.Hour))),
		BasicConstraintsValid: true,
		IsCA:                  provkit.Bool(in, "isCaCertificate", false),
	}
	if t.IsCA {
		if m := provkit.Num(in, "maxPathLength", -1); m >= 0 {
			t.MaxPathLen = int(m)
			t.MaxPathLenZero = m == 0
		} else {
			t.MaxPathLen = -1
		}
	}
	for _, u := range provkit.Strs(in, "allowedUses") {
		if k, ok := keyUsages[u]; ok {
			t.KeyUsage |= k
		} else if e, ok := extUsages[u]; ok {
			t.ExtKeyUsage = append(t.ExtKeyUsage, e)
		}
	}
	return t, nil
}

// subjectKeyID is the SHA-1 of the public key as upstream computes it: of the PKCS#1
// RSAPublicKey for RSA, of the uncompressed point for ECDSA, of the DER OCTET STRING
// of the key for ED25519.
func subjectKeyID(pub crypto.PublicKey) []byte {
	var data []byte
	switch k := pub.(type) {
	case *rsa.PublicKey:
		data = x509.MarshalPKCS1PublicKey(k)
	case *ecdsa.PublicKey:
		// The SubjectPublicKeyInfo's BIT STRING holds the uncompressed point (P224 too,
		// which crypto/ecdh does not know).
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return nil
		}
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(der, &spki); err != nil {
			return nil
		}
		data = spki.PublicKey.Bytes
	case ed25519.PublicKey:
		b, err := asn1.Marshal([]byte(k))
		if err != nil {
			return nil
		}
		data = b
	default:
		return nil
	}
	sum := sha1.Sum(data)
	return sum[:]
}

// certOutputs are a new certificate's outputs. readyForRenewal is true from the start,
// as upstream's plan sets it, only for a certificate born inside its renewal window: 0
// validity hours, or earlyRenewalHours >= validityPeriodHours.
func certOutputs(t *x509.Certificate, der []byte, in V) V {
	validity, early := provkit.Num(in, "validityPeriodHours", 0), provkit.Num(in, "earlyRenewalHours", 0)
	return V{
		"certPem":           pemBlock("CERTIFICATE", der),
		"validityStartTime": t.NotBefore.Format(time.RFC3339),
		"validityEndTime":   t.NotAfter.Format(time.RFC3339),
		"readyForRenewal":   validity == 0 || early >= validity,
	}
}

// renewalDue says whether a certificate ending at end is due for renewal with
// earlyHours of early renewal: from end - earlyHours on, as upstream (the time left
// to the early-renewal time is <= 0).
func renewalDue(end string, earlyHours float64) bool {
	e, err := time.Parse(time.RFC3339, end)
	if err != nil {
		return false
	}
	return !now().Before(e.Add(-time.Duration(earlyHours * float64(time.Hour))))
}

// dueForRenewal (Diff) replaces a certificate due for renewal, with the
// earlyRenewalHours of the new inputs, as upstream's plan does.
func dueForRenewal(state, in V) bool {
	end := provkit.Str(state, "validityEndTime")
	return end != "" && renewalDue(end, provkit.Num(in, "earlyRenewalHours", 0))
}

// refreshRenewal (Read) records readyForRenewal = true for a certificate due for
// renewal with the earlyRenewalHours of its state, as upstream's Read does.
func refreshRenewal(state, _ V) V {
	end := provkit.Str(state, "validityEndTime")
	if end != "" && renewalDue(end, provkit.Num(state, "earlyRenewalHours", 0)) {
		return V{"readyForRenewal": true}
	}
	return nil
}

func updateRenewal(_ context.Context, _, _ string, state, _, newIn V, _ []string) (V, error) {
	out := V{}
	for _, k := range []string{"certPem", "validityStartTime", "validityEndTime", "keyAlgorithm", "caKeyAlgorithm"} {
		if v, ok := state[k]; ok && v != nil {
			out[k] = v
		}
	}
	out["readyForRenewal"] = renewalDue(provkit.Str(state, "validityEndTime"), provkit.Num(newIn, "earlyRenewalHours", 0))
	return out, nil
}

func createSelfSigned(_ context.Context, _ string, in V) (string, V, error) {
	key, alg, err := parsePrivateKey(provkit.Str(in, "privateKeyPem"), "privateKeyPem")
	if err != nil {
		return "", nil, err
	}
	t, err := template(in)
	if err != nil {
		return "", nil, err
	}
	t.Subject = subjectName(provkit.Obj(in, "subject"))
	if t.DNSNames, t.IPAddresses, t.URIs, err = sans(in); err != nil {
		return "", nil, err
	}
	if err := checkCASubject(t); err != nil {
		return "", nil, err
	}
	if provkit.Bool(in, "setSubjectKeyId", false) || t.IsCA {
		t.SubjectKeyId = subjectKeyID(key.Public())
	}
	if provkit.Bool(in, "setAuthorityKeyId", false) {
		// The issuer is the certificate itself: its subject key identifier.
		if len(t.SubjectKeyId) == 0 {
			return "", nil, provkit.Errorf("setAuthorityKeyId: could not determine the authority key identifier " +
				"(set setSubjectKeyId or isCaCertificate)")
		}
		t.AuthorityKeyId = t.SubjectKeyId
	}
	der, err := x509.CreateCertificate(rand.Reader, t, t, key.Public(), key)
	if err != nil {
		return "", nil, provkit.Errorf("creating the certificate: %v", err)
	}
	out := certOutputs(t, der, in)
	out["keyAlgorithm"] = alg
	return t.SerialNumber.String(), out, nil
}

// checkCASubject: a CA certificate needs at least one distinguished name in its
// subject (RFC 5280 4.1.2.6), which upstream enforces.
func checkCASubject(t *x509.Certificate) error {
	if t.IsCA && len(t.Subject.ToRDNSequence()) == 0 {
		return provkit.Errorf("subject: must contain at least one distinguished name when creating a certificate authority (isCaCertificate)")
	}
	return nil
}

func createRequest(_ context.Context, _ string, in V) (string, V, error) {
	key, alg, err := parsePrivateKey(provkit.Str(in, "privateKeyPem"), "privateKeyPem")
	if err != nil {
		return "", nil, err
	}
	r := &x509.CertificateRequest{Subject: subjectName(provkit.Obj(in, "subject"))}
	if r.DNSNames, r.IPAddresses, r.URIs, err = sans(in); err != nil {
		return "", nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, r, key)
	if err != nil {
		return "", nil, provkit.Errorf("creating the certificate request: %v", err)
	}
	text := pemBlock("CERTIFICATE REQUEST", der)
	sum := sha1.Sum([]byte(text))
	return fmt.Sprintf("%x", sum), V{"certRequestPem": text, "keyAlgorithm": alg}, nil
}

func createLocallySigned(_ context.Context, _ string, in V) (string, V, error) {
	b, _ := pem.Decode([]byte(provkit.Str(in, "certRequestPem")))
	if b == nil {
		return "", nil, provkit.Errorf("certRequestPem: not a PEM-encoded certificate request")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return "", nil, provkit.Errorf("certRequestPem: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return "", nil, provkit.Errorf("certRequestPem: bad signature: %v", err)
	}
	cb, _ := pem.Decode([]byte(provkit.Str(in, "caCertPem")))
	if cb == nil {
		return "", nil, provkit.Errorf("caCertPem: not a PEM-encoded certificate")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return "", nil, provkit.Errorf("caCertPem: %v", err)
	}
	caKey, caAlg, err := parsePrivateKey(provkit.Str(in, "caPrivateKeyPem"), "caPrivateKeyPem")
	if err != nil {
		return "", nil, err
	}
	t, err := template(in)
	if err != nil {
		return "", nil, err
	}
	t.Subject = csr.Subject
	t.DNSNames, t.IPAddresses, t.URIs, t.EmailAddresses = csr.DNSNames, csr.IPAddresses, csr.URIs, csr.EmailAddresses
	if err := checkCASubject(t); err != nil {
		return "", nil, err
	}
	if provkit.Bool(in, "setSubjectKeyId", false) || t.IsCA {
		t.SubjectKeyId = subjectKeyID(csr.PublicKey)
	}
	der, err := x509.CreateCertificate(rand.Reader, t, ca, csr.PublicKey, caKey)
	if err != nil {
		return "", nil, provkit.Errorf("signing the certificate: %v", err)
	}
	out := certOutputs(t, der, in)
	out["caKeyAlgorithm"] = caAlg
	return t.SerialNumber.String(), out, nil
}

func getPublicKey(_ context.Context, args V) (V, error) {
	var pub crypto.PublicKey
	if text := provkit.Str(args, "privateKeyPem"); text != "" {
		k, _, err := parsePrivateKey(text, "privateKeyPem")
		if err != nil {
			return nil, err
		}
		pub = k.Public()
	} else if text := provkit.Str(args, "privateKeyOpenssh"); text != "" {
		k, err := ssh.ParseRawPrivateKey([]byte(text))
		if err != nil {
			return nil, provkit.Errorf("privateKeyOpenssh: %v", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, provkit.Errorf("privateKeyOpenssh: unsupported key type %T", k)
		}
		pub = s.Public()
	} else {
		return nil, provkit.Errorf("one of privateKeyPem or privateKeyOpenssh is required")
	}
	out, err := publicKeyOutputs(pub)
	if err != nil {
		return nil, err
	}
	out["algorithm"] = algorithmOf(pub)
	sum := sha256.Sum256([]byte(out["publicKeyPem"].(string)))
	out["id"] = base64.RawURLEncoding.EncodeToString(sum[:])
	return out, nil
}
