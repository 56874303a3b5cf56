package clustertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made up in memory for one test, with one
// certificate it issued for 127.0.0.1 and localhost that every node uses,
// both to serve and, when client certificates are asked for, to dial.
type CA struct {
	// Pool holds the CA's certificate: trust it to trust the nodes.
	Pool *x509.CertPool
	// Certificate is the nodes' certificate and key, valid for server and
	// client authentication.
	Certificate tls.Certificate

	// caDER is the CA's certificate, DER-encoded, for WriteFiles.
	caDER []byte
}

// NewCA makes a CA and the nodes' certificate, failing t on error.
func NewCA(t testing.TB) *CA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("CA key: %v", err)
	}
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "rafthttp test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("CA certificate: %v", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("parse CA certificate: %v", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("node key: %v", err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "rafthttp test node"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("node certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse node certificate: %v", err)
	}

	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &CA{
		Pool:        pool,
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		caDER:       caDER,
	}
}

// WriteFiles writes the nodes' certificate, its private key (PKCS #8) and
// the CA's certificate as PEM files in dir, for programs that load TLS
// material from files, and returns their paths. It fails t on error.
func (ca *CA) WriteFiles(t testing.TB, dir string) (certFile, keyFile, caFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Certificate.PrivateKey)
	if err != nil {
		t.Fatalf("marshal node key: %v", err)
	}
	certFile = filepath.Join(dir, "node.pem")
	keyFile = filepath.Join(dir, "node-key.pem")
	caFile = filepath.Join(dir, "ca.pem")
	for _, file := range []struct {
		path      string
		blockType string
		der       []byte
	}{
		{certFile, "CERTIFICATE", ca.Certificate.Certificate[0]},
		{keyFile, "PRIVATE KEY", keyDER},
		{caFile, "CERTIFICATE", ca.caDER},
	} {
		data := pem.EncodeToMemory(&pem.Block{Type: file.blockType, Bytes: file.der})
		if err := os.WriteFile(file.path, data, 0o600); err != nil {
			t.Fatalf("write %s: %v", file.path, err)
		}
	}
	return certFile, keyFile, caFile
}

// ServerConfig returns a server configuration with HTTP/2 enabled, so that
// a client offering h2 gets it, which is what NewDialTLS must avoid. With
// clientCerts, clients must present a certificate signed by the CA.
func (ca *CA) ServerConfig(clientCerts bool) *tls.Config {
	config := &tls.Config{
		Certificates: []tls.Certificate{ca.Certificate},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
	if clientCerts {
		config.ClientAuth = tls.RequireAndVerifyClientCert
		config.ClientCAs = ca.Pool
	}
	return config
}

// ClientConfig returns a client configuration that trusts the CA and, like
// a config shared with an application's HTTP/2 clients, offers h2 first.
// With clientCerts it presents the nodes' certificate.
func (ca *CA) ClientConfig(clientCerts bool) *tls.Config {
	config := &tls.Config{
		RootCAs:    ca.Pool,
		NextProtos: []string{"h2", "http/1.1"},
		MinVersion: tls.VersionTLS12,
	}
	if clientCerts {
		config.Certificates = []tls.Certificate{ca.Certificate}
	}
	return config
}

// Options returns cluster options for a TLS cluster: servers with HTTP/2
// enabled and, with clientCerts, mutual TLS.
func (ca *CA) Options(clientCerts bool) Options {
	return Options{ServerTLS: ca.ServerConfig(clientCerts), ClientTLS: ca.ClientConfig(clientCerts)}
}
