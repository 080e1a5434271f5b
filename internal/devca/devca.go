// Package devca is the development certificate authority that `fog up` keeps in its data
// directory: it signs the API's and every PostgreSQL instance's server certificate, and
// clients trust its certificate.
package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority with its key.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// LoadOrCreate reads ca.crt and ca.key from dir, creating them on first use.
func LoadOrCreate(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return create(certPath, keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	ca, err := FromPEM(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA files in %s: %w", dir, err)
	}
	return ca, nil
}

func create(certPath, keyPath string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Fog development CA", Organization: []string{"Fog"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kder, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, fmt.Errorf("write CA key: %w", err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write CA: %w", err)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// Issue signs a server certificate for the given DNS names and IP addresses and returns the
// certificate and key in PEM.
func (ca *CA) Issue(dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cn := "fog"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Fog"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %v: %w", dnsNames, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// ReplicationCN is the common name of the replication client certificate of instance uid:
// its identity towards its failover-group partner.
func ReplicationCN(uid string) string { return "repl." + uid }

// IssueReplication signs the replication client certificate of instance uid.
func (ca *CA) IssueReplication(uid string) (certPEM, keyPEM []byte, err error) {
	return ca.IssueClient(ReplicationCN(uid))
}

// IssueClient signs a client certificate for commonName (a replication identity) and returns
// the certificate and key in PEM.
func (ca *CA) IssueClient(commonName string) (certPEM, keyPEM []byte, err error) {
	csr, key, err := NewRequest(commonName, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	crt, err := ca.SignRequest(csr, ClientUsage, commonName, 2*365*24*time.Hour)
	return crt, key, err
}

// FromPEM loads a CA from its certificate and key in PEM (as kept in a shared store, so that
// several servers sign with one CA).
func FromPEM(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("CA is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// KeyPEM returns the CA's key in PEM.
func (ca *CA) KeyPEM() []byte {
	kder, _ := x509.MarshalECPrivateKey(ca.key)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// Save writes the CA to dir as LoadOrCreate reads it.
func (ca *CA) Save(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), ca.KeyPEM(), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644)
}

// Usage is what a certificate signed from a request may be used for.
type Usage int

const (
	// ServerUsage is a TLS server certificate (an instance, a listener).
	ServerUsage Usage = iota
	// ClientUsage is a TLS client certificate (an agent's identity towards the server).
	ClientUsage
)

// ParseRequest reads a PKCS #10 certificate request (DER or PEM) and checks that it is signed
// by the key it carries: whoever sent it holds that key.
func ParseRequest(csr []byte) (*x509.CertificateRequest, error) {
	if b, _ := pem.Decode(csr); b != nil {
		csr = b.Bytes
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}
	return req, nil
}

// SignRequest signs a PKCS #10 certificate request (DER or PEM): the subject's key never
// leaves the requester, the CA key never leaves the signer. For ClientUsage the subject's
// common name is commonName, whatever the request asks; for ServerUsage the request's DNS
// names and IP addresses are kept, so a caller that signs for someone else must check them
// first (agentapi does: an agent gets only its own region's names). Other kinds of subject
// alternative name (URIs, e-mail addresses) are never copied.
func (ca *CA) SignRequest(csr []byte, usage Usage, commonName string, validity time.Duration) ([]byte, error) {
	req, err := ParseRequest(csr)
	if err != nil {
		return nil, err
	}
	// Valid from a little before now, for clocks behind the signer's: an hour, or a quarter
	// of a short validity, so that a short-lived certificate's lifetime is still mostly ahead.
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"Fog"}},
		NotBefore:    now.Add(-min(time.Hour, validity/4)),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	switch usage {
	case ClientUsage:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames, tmpl.IPAddresses = req.DNSNames, req.IPAddresses
		if tmpl.Subject.CommonName == "" && len(req.DNSNames) > 0 {
			tmpl.Subject.CommonName = req.DNSNames[0]
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// NewRequest makes a key and a certificate request for it, returning both in PEM.
func NewRequest(commonName string, dnsNames []string, ips []net.IP) (csrPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: commonName}, DNSNames: dnsNames, IPAddresses: ips,
	}, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}
