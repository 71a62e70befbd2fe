package webhook

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"time"
)

// Keys of the certificate Secret (a kubernetes.io/tls Secret plus the CA).
const (
	secretCACert = "ca.crt"
	secretCAKey  = "ca.key"
	secretCert   = "tls.crt"
	secretKey    = "tls.key"
)

// Lifetimes: the CA lives long (its certificate is the caBundle every apiserver
// trusts), the serving certificate a year and is reissued a month before it ends.
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	certLifetime = 365 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
	clockSkew    = time.Hour
)

// identity is who the serving certificate must name.
type identity struct {
	DNS []string
	IPs []netip.Addr
}

// bundle is the PEM content of the certificate Secret.
type bundle struct {
	CACert, CAKey, Cert, Key []byte
}

func (b bundle) data() map[string][]byte {
	return map[string][]byte{secretCACert: b.CACert, secretCAKey: b.CAKey, secretCert: b.Cert, secretKey: b.Key}
}

func bundleOf(data map[string][]byte) bundle {
	return bundle{CACert: data[secretCACert], CAKey: data[secretCAKey], Cert: data[secretCert], Key: data[secretKey]}
}

func (b bundle) equal(o bundle) bool {
	return bytes.Equal(b.CACert, o.CACert) && bytes.Equal(b.CAKey, o.CAKey) &&
		bytes.Equal(b.Cert, o.Cert) && bytes.Equal(b.Key, o.Key)
}

// caUsable says why the bundle's CA cannot sign (nil if it can until well after now).
func (b bundle) caUsable(now time.Time) error {
	ca, _, err := parsePair(b.CACert, b.CAKey)
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	if !ca.IsCA {
		return errors.New("CA: not a CA certificate")
	}
	if now.Add(renewBefore).After(ca.NotAfter) {
		return fmt.Errorf("CA: expires %s", ca.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// servingUsable says why the bundle's serving certificate must be reissued (nil if
// it chains to the CA, names every identity and is not close to its end).
func (b bundle) servingUsable(id identity, now time.Time) error {
	if err := b.caUsable(now); err != nil {
		return err
	}
	cert, _, err := parsePair(b.Cert, b.Key)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	ca, _ := x509.ParseCertificate(mustDER(b.CACert))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, name := range id.DNS {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now}); err != nil {
			return fmt.Errorf("serving certificate: %w", err)
		}
	}
	for _, ip := range id.IPs {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: ip.String(), Roots: pool, CurrentTime: now}); err != nil {
			return fmt.Errorf("serving certificate: %w", err)
		}
	}
	if now.Add(renewBefore).After(cert.NotAfter) {
		return fmt.Errorf("serving certificate: expires %s", cert.NotAfter.Format(time.RFC3339))
	}
	return nil
}

func (b bundle) tlsCert() (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	return &c, nil
}

// newBundle makes a CA and a serving certificate signed by it.
func newBundle(id identity, now time.Time) (bundle, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return bundle{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "edgenet-webhook-ca"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return bundle{}, fmt.Errorf("create CA: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return bundle{}, err
	}
	b := bundle{CACert: pemOf("CERTIFICATE", der), CAKey: pemOf("EC PRIVATE KEY", keyDER)}
	return b.reissue(id, now)
}

// reissue returns b with a new serving certificate from b's CA.
func (b bundle) reissue(id identity, now time.Time) (bundle, error) {
	ca, caKey, err := parsePair(b.CACert, b.CAKey)
	if err != nil {
		return bundle{}, fmt.Errorf("CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return bundle{}, err
	}
	cn := "edgenet-webhook"
	if len(id.DNS) > 0 {
		cn = id.DNS[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     id.DNS,
	}
	for _, ip := range id.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return bundle{}, fmt.Errorf("sign serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return bundle{}, err
	}
	b.Cert, b.Key = pemOf("CERTIFICATE", der), pemOf("EC PRIVATE KEY", keyDER)
	return b, nil
}

// parsePair parses a PEM certificate and its EC key and checks they belong together.
func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("no PEM key")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("key does not match the certificate")
	}
	return cert, key, nil
}

func mustDER(p []byte) []byte {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil
	}
	return b.Bytes
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
