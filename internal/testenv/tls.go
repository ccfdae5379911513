package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSServerName is a name the server certificate of NewTLSFiles holds besides 127.0.0.1 and
// localhost: the name Consul's own tooling gives a dc1 server, for tests of a TLS server name
// that is not the address dialled.
const TLSServerName = "server.dc1.consul"

// TLSFiles are the PEM files of a throwaway PKI: a CA, a server certificate and key for
// 127.0.0.1, localhost and TLSServerName, and a client certificate and key, both signed by the CA.
type TLSFiles struct {
	CAFile, ServerCert, ServerKey, ClientCert, ClientKey string
}

// NewTLSFiles generates a fresh PKI in a t.TempDir. Every call makes a new CA, so the files of
// a second call are the "wrong CA" for an agent started with the first.
func NewTLSFiles(t testing.TB) TLSFiles {
	t.Helper()
	dir := t.TempDir()
	f := TLSFiles{
		CAFile:     filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	if err := f.generate(); err != nil {
		t.Fatalf("tls files: %v", err)
	}
	return f
}

// CADir returns a new directory holding only the CA certificate, for the options that take a
// CA path (consul-template's -consul-ssl-ca-path, ca_path): every file there is read as one.
func (f TLSFiles) CADir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := os.ReadFile(f.CAFile)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o644)
	}
	if err != nil {
		t.Fatalf("CA directory: %v", err)
	}
	return dir
}

func (f TLSFiles) generate() error {
	now := time.Now()
	ca := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "autopilot test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caKey, caDER, err := issue(ca, nil, nil)
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	if err := writePEM(f.CAFile, "CERTIFICATE", caDER); err != nil {
		return err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	leaves := []struct {
		cert, key string
		tmpl      *x509.Certificate
	}{
		{f.ServerCert, f.ServerKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: TLSServerName},
			DNSNames:    []string{TLSServerName, "localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			// Consul presents its server certificate on outgoing RPC too.
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}},
		{f.ClientCert, f.ClientKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "autopilot test client"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	for _, l := range leaves {
		l.tmpl.NotBefore, l.tmpl.NotAfter = ca.NotBefore, ca.NotAfter
		l.tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		key, der, err := issue(l.tmpl, ca, caKey)
		if err != nil {
			return fmt.Errorf("%s: %w", l.tmpl.Subject.CommonName, err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return fmt.Errorf("%s key: %w", l.tmpl.Subject.CommonName, err)
		}
		if err := writePEM(l.cert, "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(l.key, "EC PRIVATE KEY", keyDER); err != nil {
			return err
		}
	}
	return nil
}

// issue makes a P-256 key and a certificate for it from tmpl, signed by parent's key, or
// self-signed when parent is nil.
func issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62)); err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	return key, der, err
}

func writePEM(path, blockType string, der []byte) error {
	b := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// hcl is the agent configuration that serves HTTPS with the server certificate and requires a
// client certificate signed by the CA there, in Consul 1.12+'s tls stanza. verify_incoming is
// set for HTTPS only: in tls.defaults it would also cover the server RPC port, where the agent's
// own plaintext streaming subscriptions would then be refused and every blocking health query
// would answer 500.
func (f TLSFiles) hcl() string {
	return fmt.Sprintf("tls { defaults { ca_file = %q cert_file = %q key_file = %q } "+
		"https { verify_incoming = true } }", f.CAFile, f.ServerCert, f.ServerKey)
}

// clientConfig is a TLS client configuration that trusts the CA and presents the client
// certificate, as a client of an agent with verify_incoming must.
func (f TLSFiles) clientConfig() (*tls.Config, error) {
	ca, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no certificate", f.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}
