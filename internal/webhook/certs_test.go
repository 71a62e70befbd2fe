package webhook

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

var testID = identity{DNS: []string{"edgenet-webhook.edgenet-system.svc"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}

func TestEnsureSecret(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	c := fake.NewClientset()
	first, err := ensureSecret(ctx, c, "ns", "tls", testID, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.servingUsable(testID, now); err != nil {
		t.Fatalf("new bundle unusable: %v", err)
	}
	sec, err := c.CoreV1().Secrets("ns").Get(ctx, "tls", metav1.GetOptions{})
	if err != nil || sec.Type != corev1.SecretTypeTLS || !bundleOf(sec.Data).equal(first) {
		t.Fatalf("secret not written as made: %v", err)
	}

	t.Run("reused by the next replica", func(t *testing.T) {
		again, err := ensureSecret(ctx, c, "ns", "tls", testID, now)
		if err != nil || !again.equal(first) {
			t.Fatalf("second call made new certificates (err %v)", err)
		}
	})
	t.Run("serving certificate reissued from the same CA a month before it ends", func(t *testing.T) {
		later := now.Add(certLifetime - renewBefore + time.Hour)
		b, err := ensureSecret(ctx, c, "ns", "tls", testID, later)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.CACert, first.CACert) || bytes.Equal(b.Cert, first.Cert) {
			t.Fatal("want same CA, new serving certificate")
		}
		if err := b.servingUsable(testID, later); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("new name reissues", func(t *testing.T) {
		id := identity{DNS: []string{"other.edgenet-system.svc"}}
		b, err := ensureSecret(ctx, c, "ns", "tls", id, now)
		if err != nil || b.servingUsable(id, now) != nil || !bytes.Equal(b.CACert, first.CACert) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("garbage CA replaced", func(t *testing.T) {
		sec, _ := c.CoreV1().Secrets("ns").Get(ctx, "tls", metav1.GetOptions{})
		sec.Data[secretCAKey] = []byte("garbage")
		if _, err := c.CoreV1().Secrets("ns").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		b, err := ensureSecret(ctx, c, "ns", "tls", testID, now)
		if err != nil || b.servingUsable(testID, now) != nil || bytes.Equal(b.CACert, first.CACert) {
			t.Fatalf("want a new CA (err %v)", err)
		}
	})
}

func TestServingCertificateChecks(t *testing.T) {
	now := time.Now()
	b, err := newBundle(testID, now)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newBundle(testID, now)
	tests := []struct {
		name string
		b    bundle
		id   identity
		at   time.Time
		ok   bool
	}{
		{"fresh", b, testID, now, true},
		{"names a DNS name it lacks", b, identity{DNS: []string{"x.y.svc"}}, now, false},
		{"names an IP it lacks", b, identity{IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}, now, false},
		{"signed by another CA", bundle{CACert: other.CACert, CAKey: other.CAKey, Cert: b.Cert, Key: b.Key}, testID, now, false},
		{"key of another certificate", bundle{CACert: b.CACert, CAKey: b.CAKey, Cert: b.Cert, Key: other.Key}, testID, now, false},
		{"close to its end", b, testID, now.Add(certLifetime - time.Hour), false},
		{"empty", bundle{}, testID, now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.b.servingUsable(tt.id, tt.at); (err == nil) != tt.ok {
				t.Fatalf("servingUsable = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	ca, _ := x509.ParseCertificate(mustDER(b.CACert))
	if !ca.IsCA || ca.NotAfter.Before(now.Add(caLifetime-2*time.Hour)) {
		t.Errorf("CA %v until %v", ca.IsCA, ca.NotAfter)
	}
}

func TestSyncCABundle(t *testing.T) {
	ctx := context.Background()
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "edgenet-webhook"},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "a.edgenet.io"}, {Name: "b.edgenet.io"}},
	}
	c := fake.NewClientset(vwc)
	log := slog.New(slog.DiscardHandler)
	if err := syncCABundle(ctx, c, "edgenet-webhook", []byte("CA"), log); err != nil {
		t.Fatal(err)
	}
	got, _ := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "edgenet-webhook", metav1.GetOptions{})
	for _, w := range got.Webhooks {
		if string(w.ClientConfig.CABundle) != "CA" {
			t.Errorf("%s: caBundle %q", w.Name, w.ClientConfig.CABundle)
		}
	}
	if err := syncCABundle(ctx, c, "missing", []byte("CA"), log); err == nil {
		t.Error("missing configuration: no error")
	}
}

// Replicas starting together race to create the Secret: all end up with the winner's.
func TestEnsureSecretConcurrentReplicas(t *testing.T) {
	c := fake.NewClientset()
	const replicas = 4
	got := make(chan bundle, replicas)
	errs := make(chan error, replicas)
	for range replicas {
		go func() {
			b, err := ensureSecret(context.Background(), c, "ns", "tls", testID, time.Now())
			got <- b
			errs <- err
		}()
	}
	var first bundle
	for i := range replicas {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		b := <-got
		if i == 0 {
			first = b
		} else if !b.equal(first) {
			t.Fatal("replicas serve different certificates")
		}
	}
	sec, _ := c.CoreV1().Secrets("ns").Get(context.Background(), "tls", metav1.GetOptions{})
	if !bundleOf(sec.Data).equal(first) {
		t.Fatal("replicas serve what the Secret does not hold")
	}
}
