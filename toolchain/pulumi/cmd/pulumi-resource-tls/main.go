// Command pulumi-resource-tls is hakube's own implementation of the resources of the
// `tls` Pulumi package that the @pulumi/tls Node.js SDK drives: PrivateKey,
// SelfSignedCert, CertRequest, LocallySignedCert and the getPublicKey function, with
// the SDK's property names and the upstream provider's semantics (every input change
// replaces, except earlyRenewalHours; a certificate inside its early-renewal window
// is replaced). The upstream provider's module is not served by the Go module proxy
// here; see toolchain/README.md.
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

func main() {
	s := &provkit.Server{
		Name:    "tls",
		Version: version,
		Kinds: map[string]*provkit.Kind{
			"tls:index/privateKey:PrivateKey": {
				Defaults: V{"rsaBits": 2048.0, "ecdsaCurve": "P224"},
				Validate: validateKey,
				Create:   createKey,
			},
			"tls:index/selfSignedCert:SelfSignedCert": {
				Updatable: []string{"earlyRenewalHours"},
				Defaults:  V{"earlyRenewalHours": 0.0, "isCaCertificate": false, "setSubjectKeyId": false, "setAuthorityKeyId": false},
				Validate:  validateUses,
				Create:    createSelfSigned,
				Update:    updateRenewal,
				Replace:   dueForRenewal,
			},
			"tls:index/certRequest:CertRequest": {
				Create: createRequest,
			},
			"tls:index/locallySignedCert:LocallySignedCert": {
				Updatable: []string{"earlyRenewalHours"},
				Defaults:  V{"earlyRenewalHours": 0.0, "isCaCertificate": false, "setSubjectKeyId": false},
				Validate:  validateUses,
				Create:    createLocallySigned,
				Update:    updateRenewal,
				Replace:   dueForRenewal,
			},
		},
		Invokes: map[string]func(context.Context, V) (V, error){
			"tls:index/getPublicKey:getPublicKey": getPublicKey,
		},
	}
	if err := provkit.Main(s); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-tls: %v\n", err)
		os.Exit(1)
	}
}

func validateKey(in V) map[string]string {
	p := map[string]string{}
	switch a := provkit.Str(in, "algorithm"); a {
	case "RSA", "ECDSA", "ED25519", "":
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

func validateUses(in V) map[string]string {
	p := map[string]string{}
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
	sum := sha1.Sum([]byte(out["publicKeyPem"].(string)))
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
	hours := provkit.Num(in, "validityPeriodHours", 0)
	if hours <= 0 {
		return nil, provkit.Errorf("validityPeriodHours must be a positive number of hours")
	}
	now := time.Now().UTC().Truncate(time.Second)
	t := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now,
		NotAfter:              now.Add(time.Duration(hours * float64(time.Hour))),
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

func subjectKeyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
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
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:]
}

func certOutputs(t *x509.Certificate, der []byte, in V) V {
	return V{
		"certPem":           pemBlock("CERTIFICATE", der),
		"validityStartTime": t.NotBefore.Format(time.RFC3339),
		"validityEndTime":   t.NotAfter.Format(time.RFC3339),
		"readyForRenewal":   renewalDue(t.NotAfter.Format(time.RFC3339), provkit.Num(in, "earlyRenewalHours", 0)),
	}
}

func renewalDue(end string, earlyHours float64) bool {
	e, err := time.Parse(time.RFC3339, end)
	if err != nil {
		return false
	}
	return !time.Now().Before(e.Add(-time.Duration(earlyHours * float64(time.Hour))))
}

func dueForRenewal(state, in V) bool {
	end := provkit.Str(state, "validityEndTime")
	return end != "" && renewalDue(end, provkit.Num(in, "earlyRenewalHours", 0))
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
	if provkit.Bool(in, "setSubjectKeyId", false) || t.IsCA {
		t.SubjectKeyId = subjectKeyID(key.Public())
	}
	if provkit.Bool(in, "setAuthorityKeyId", false) {
		t.AuthorityKeyId = subjectKeyID(key.Public())
	}
	der, err := x509.CreateCertificate(rand.Reader, t, t, key.Public(), key)
	if err != nil {
		return "", nil, provkit.Errorf("creating the certificate: %v", err)
	}
	out := certOutputs(t, der, in)
	out["keyAlgorithm"] = alg
	return t.SerialNumber.String(), out, nil
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
