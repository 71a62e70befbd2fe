package webui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
)

// PoolName is the AddressPool holding just the cluster VIP, which the UI's LoadBalancer Service names (annotation
// edgenet.io/address-pool) so that the announcer puts the UI on the VIP with ARP/NDP and failover.
const PoolName = "edgenet-ui"

// ServeOptions says where and how Serve listens.
type ServeOptions struct {
	Addr              string // e.g. ":8443"
	CertFile, KeyFile string // both empty: a self-signed certificate is generated
	// Hosts go into a generated certificate besides localhost and the cluster VIP.
	Hosts []string
	// ManagePool keeps AddressPool PoolName on the cluster VIP.
	ManagePool bool
}

// Serve runs the UI over HTTPS until ctx ends.
func (s *Server) Serve(ctx context.Context, o ServeOptions) error {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CertFile != "" || o.KeyFile != "" {
		c, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return fmt.Errorf("webui: TLS key pair: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	} else {
		hosts := append([]string{"localhost", "127.0.0.1", "::1", "edgenet-ui", "edgenet-ui." + s.cfg.Namespace + ".svc"}, o.Hosts...)
		if vip, err := s.clusterVIP(ctx); err == nil {
			hosts = append(hosts, vip.String())
		}
		c, err := SelfSigned(hosts, s.cfg.Now())
		if err != nil {
			return err
		}
		tc.Certificates = []tls.Certificate{c}
		s.log.Info("serving a self-signed certificate", "hosts", hosts)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("webui: %w", err)
	}
	srv := &http.Server{Handler: s, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	if o.ManagePool {
		go s.keepPool(ctx)
	}
	s.log.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("webui: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func (s *Server) clusterVIP(ctx context.Context) (netip.Addr, error) {
	cn, err := s.cfg.Edgenet.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}, err
	}
	r, err := computenet.ParseRange(string(cn.Spec.NodeIPRange))
	if err != nil {
		return netip.Addr{}, err
	}
	return computenet.Settings{NodeIPs: r}.ClusterVIP(), nil
}

// keepPool reconciles the UI's pool at start, after each applied change and every 30 s.
func (s *Server) keepPool(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		if err := s.EnsurePool(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("UI address pool", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.appliedChanges():
		}
	}
}

// EnsurePool creates or updates AddressPool PoolName to hold just the cluster VIP, not auto-assigned.
func (s *Server) EnsurePool(ctx context.Context) error {
	vip, err := s.clusterVIP(ctx)
	if err != nil {
		return fmt.Errorf("webui: cluster VIP: %w", err)
	}
	no := false
	want := v1.AddressPoolSpec{Addresses: []v1.IPRange{v1.IPRange(vip.String())}, AutoAssign: &no}
	pools := s.cfg.Edgenet.AddressPools()
	cur, err := pools.Get(ctx, PoolName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = pools.Create(ctx, &v1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: PoolName,
			Labels: map[string]string{"app.kubernetes.io/name": "edgenet-ui"}}, Spec: want}, metav1.CreateOptions{})
		if err == nil {
			s.log.Info("created the UI address pool", "vip", vip)
		}
		return err
	}
	if err != nil {
		return err
	}
	if slices.Equal(cur.Spec.Addresses, want.Addresses) && !cur.Spec.AutoAssignEnabled() {
		return nil
	}
	cur.Spec.Addresses, cur.Spec.AutoAssign = want.Addresses, want.AutoAssign
	_, err = pools.Update(ctx, cur, metav1.UpdateOptions{})
	if err == nil {
		s.log.Info("moved the UI address pool", "vip", vip)
	}
	return err
}

// SelfSigned makes a one-year ECDSA P-256 certificate for hosts (names or addresses).
func SelfSigned(hosts []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("webui: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "edgenet-ui"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("webui: certificate: %w", err)
	}
	if len(der) == 0 {
		return tls.Certificate{}, errors.New("webui: empty certificate")
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
