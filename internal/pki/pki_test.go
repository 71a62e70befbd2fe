package pki

import (
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Issued certificates chain to the CA and carry the names and usages asked for.
func TestIssueVerifiesAgainstCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.168.50.10")
	if err := ca.Issue(Spec{Name: "srv", CN: "kube-apiserver", Server: true, IPs: []netip.Addr{ip}, DNS: []string{"kubernetes"}}); err != nil {
		t.Fatal(err)
	}
	if err := ca.Issue(Spec{Name: "cli", CN: "system:node:n1", Orgs: []string{"system:nodes"}, Client: true}); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, "ca.crt")))
	srv := readCert(t, ca.Path("srv.crt"))
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: "kubernetes", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server cert: %v", err)
	}
	if err := srv.VerifyHostname(ip.String()); err != nil {
		t.Errorf("server cert IP SAN: %v", err)
	}
	cli := readCert(t, ca.Path("cli.crt"))
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client cert: %v", err)
	}
	if cli.Subject.CommonName != "system:node:n1" || len(cli.Subject.Organization) != 1 || cli.Subject.Organization[0] != "system:nodes" {
		t.Errorf("client subject %v", cli.Subject)
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client-only certificate verifies for server auth")
	}
	if fi, err := os.Stat(ca.Path("cli.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi.Mode(), err)
	}
}
