package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Defaults of Config, matching deploy/base/webhook.yaml.
const (
	DefaultService              = "edgenet-webhook"
	DefaultSecret               = "edgenet-webhook-tls"
	DefaultWebhookConfiguration = "edgenet-webhook"
	DefaultAddr                 = ":9443"
)

// Config configures Run.
type Config struct {
	Client    kubernetes.Interface
	Namespace string // of the Service and the Secret
	// Service, Secret and WebhookConfiguration default to the names above.
	Service, Secret, WebhookConfiguration string
	Addr                                  string // listen address, default :9443
	// ExtraIPs are IP SANs of the serving certificate besides the Service's DNS names,
	// for a webhook configuration that calls a URL (tests call https://127.0.0.1).
	ExtraIPs []netip.Addr
	Handler  http.Handler // the admission handler, served at Path
	Log      *slog.Logger
	Resync   time.Duration // how often the Secret and caBundle are re-checked, default 1m
}

// Run serves the webhook until ctx ends. It takes the CA and serving certificate
// from the Secret (creating or renewing them there), serves HTTPS at cfg.Addr, and
// keeps the webhook configuration's caBundle equal to the CA, re-checking every
// Resync. Every replica runs it: the first to find no Secret creates it, the others
// use what it wrote. The listener sets SO_REUSEPORT, so replicas sharing a network
// namespace (hostNetwork pods on one node) both serve.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	if cfg.Secret == "" {
		cfg.Secret = DefaultSecret
	}
	if cfg.WebhookConfiguration == "" {
		cfg.WebhookConfiguration = DefaultWebhookConfiguration
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Resync == 0 {
		cfg.Resync = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	svc := cfg.Service + "." + cfg.Namespace + ".svc"
	id := identity{DNS: []string{svc, svc + ".cluster.local", cfg.Service + "." + cfg.Namespace}, IPs: cfg.ExtraIPs}
	s := &server{cfg: cfg, id: id}

	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("webhook: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, cfg.Handler)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certificate},
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}

	// Until a certificate is loaded, handshakes fail and the readiness probe with them.
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	defer srv.Close()
	t := time.NewTimer(0)
	defer t.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			return nil
		case err := <-errc:
			return fmt.Errorf("webhook: serve: %w", err)
		case <-t.C:
		}
		next := cfg.Resync
		if err := s.sync(ctx); err != nil {
			// Fast at first (the configuration may be applied a moment after us), then
			// no more often than Resync.
			backoff = min(2*backoff, cfg.Resync)
			next = backoff
			cfg.Log.Warn("webhook certificate or caBundle not in sync", "err", err, "retry", next)
		} else {
			backoff = time.Second
		}
		t.Reset(next)
	}
}

type server struct {
	cfg  Config
	id   identity
	cert atomic.Pointer[tls.Certificate]
	have bundle
}

func (s *server) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("webhook: no serving certificate yet")
}

// sync loads (or makes) the certificates and brings the caBundle in line.
func (s *server) sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := ensureSecret(ctx, s.cfg.Client, s.cfg.Namespace, s.cfg.Secret, s.id, time.Now())
	if err != nil {
		return err
	}
	if !b.equal(s.have) {
		c, err := b.tlsCert()
		if err != nil {
			return err
		}
		s.cert.Store(c)
		s.have = b
		s.cfg.Log.Info("serving certificate loaded", "secret", s.cfg.Namespace+"/"+s.cfg.Secret, "names", s.id.DNS)
	}
	return syncCABundle(ctx, s.cfg.Client, s.cfg.WebhookConfiguration, b.CACert, s.cfg.Log)
}

// ensureSecret returns the certificates of the Secret, creating it or renewing what
// in it is unusable. Concurrent replicas race through create and compare-and-swap
// updates; the loser re-reads the winner's Secret.
func ensureSecret(ctx context.Context, c kubernetes.Interface, ns, name string, id identity, now time.Time) (bundle, error) {
	secrets := c.CoreV1().Secrets(ns)
	for range 5 {
		sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			b, err := newBundle(id, now)
			if err != nil {
				return bundle{}, fmt.Errorf("webhook: %w", err)
			}
			sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "edgenet-controller"}},
				Type: corev1.SecretTypeTLS, Data: b.data()}
			_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return bundle{}, fmt.Errorf("webhook: create secret %s/%s: %w", ns, name, err)
			}
			return b, nil
		}
		if err != nil {
			return bundle{}, fmt.Errorf("webhook: get secret %s/%s: %w", ns, name, err)
		}
		b := bundleOf(sec.Data)
		if b.servingUsable(id, now) == nil {
			return b, nil
		}
		if b.caUsable(now) == nil {
			b, err = b.reissue(id, now)
		} else {
			b, err = newBundle(id, now)
		}
		if err != nil {
			return bundle{}, fmt.Errorf("webhook: %w", err)
		}
		sec = sec.DeepCopy()
		sec.Data = b.data()
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return bundle{}, fmt.Errorf("webhook: update secret %s/%s: %w", ns, name, err)
		}
		return b, nil
	}
	return bundle{}, fmt.Errorf("webhook: secret %s/%s kept changing under us", ns, name)
}

// syncCABundle sets the caBundle of every webhook of the configuration to ca. A
// missing configuration is an error, so the caller retries until deploy/ created it.
func syncCABundle(ctx context.Context, c kubernetes.Interface, name string, ca []byte, log *slog.Logger) error {
	cfgs := c.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	for range 5 {
		vwc, err := cfgs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("webhook: get ValidatingWebhookConfiguration %s: %w", name, err)
		}
		changed := false
		vwc = vwc.DeepCopy()
		for i := range vwc.Webhooks {
			if !bytes.Equal(vwc.Webhooks[i].ClientConfig.CABundle, ca) {
				vwc.Webhooks[i].ClientConfig.CABundle = ca
				changed = true
			}
		}
		if !changed {
			return nil
		}
		_, err = cfgs.Update(ctx, vwc, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("webhook: update caBundle of %s: %w", name, err)
		}
		log.Info("caBundle updated", "webhookconfiguration", name)
		return nil
	}
	return fmt.Errorf("webhook: ValidatingWebhookConfiguration %s kept changing under us", name)
}

// ClientNodes lists Nodes through the apiserver (from its watch cache).
type ClientNodes struct{ Client kubernetes.Interface }

// ListNodes returns every Node, stripped to what the checks need.
func (c ClientNodes) ListNodes(ctx context.Context) ([]Node, error) {
	list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, fmt.Errorf("webhook: list nodes: %w", err)
	}
	out := make([]Node, len(list.Items))
	for i := range list.Items {
		out[i] = NodeOf(&list.Items[i])
	}
	return out, nil
}
