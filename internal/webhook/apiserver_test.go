package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/api/v1alpha1/crdtest"
	"edgenet.io/edgenet/internal/testenv"
)

// webhookConfigFromDeploy reads the ValidatingWebhookConfiguration of
// deploy/base/webhook.yaml, so the test runs the rules the cluster gets.
func webhookConfigFromDeploy(t *testing.T) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "base", "webhook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		if err := yaml.UnmarshalStrict([]byte(doc), &vwc); err == nil && vwc.Kind == "ValidatingWebhookConfiguration" {
			return &vwc
		}
	}
	t.Fatal("no ValidatingWebhookConfiguration in deploy/base/webhook.yaml")
	return nil
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// collectWarnings records the apiserver's Warning headers.
type collectWarnings struct{ got []string }

func (c *collectWarnings) HandleWarningHeader(_ int, _ string, text string) {
	c.got = append(c.got, text)
}

// TestAgainstAPIServer registers the webhook of deploy/ with a real kube-apiserver,
// pointed by URL at Run on 127.0.0.1, and checks what the apiserver itself refuses.
func TestAgainstAPIServer(t *testing.T) {
	env := testenv.Start(t)
	crdtest.Install(t, env.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "edgenet-system"
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	vwc := webhookConfigFromDeploy(t)
	url := "https://" + addr + Path
	vwc.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	if _, err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	warnings := &collectWarnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandlerWithContext = nil
	cfg.WarningHandler = warnings
	c, err := v1.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cn := func(spec v1.ComputeNetworkSpec) *v1.ComputeNetwork {
		return &v1.ComputeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: spec}
	}

	// Before the webhook serves, failurePolicy Fail keeps every ComputeNetwork out.
	if _, err := c.ComputeNetworks().Create(ctx, cn(validSpec()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil {
		t.Fatal("created a ComputeNetwork with no webhook serving")
	} else if !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("no webhook serving: %v", err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- Run(runCtx, Config{Client: env.Client, Namespace: ns, Addr: addr,
			ExtraIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Handler:  &Handler{Nodes: ClientNodes{Client: env.Client}},
			Log:      slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Run makes the Secret and writes the caBundle; then dry runs get through.
	for {
		_, err := c.ComputeNetworks().Create(ctx, cn(validSpec()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("webhook never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("webhook answering %v after Run started (certificate Secret created, caBundle written)", time.Since(start).Round(time.Millisecond))
	// Round trip of a dry-run create through the apiserver, CEL and the webhook (with
	// its Node list): the latency an admin's kubectl apply sees, on loopback.
	var lat []time.Duration
	for range 100 {
		t0 := time.Now()
		if _, err := c.ComputeNetworks().Create(ctx, cn(validSpec()), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	t.Logf("dry-run create through the webhook: median %v, p90 %v, max %v (100 requests)",
		lat[50].Round(10*time.Microsecond), lat[90].Round(10*time.Microsecond), lat[99].Round(10*time.Microsecond))
	sec, err := env.Client.CoreV1().Secrets(ns).Get(ctx, DefaultSecret, metav1.GetOptions{})
	if err != nil || sec.Type != corev1.SecretTypeTLS {
		t.Fatalf("certificate Secret: %v", err)
	}

	t.Run("invalid create refused with every field path", func(t *testing.T) {
		spec := validSpec()
		spec.Nodes = 3
		spec.Gateway = "192.168.60.1" // outside the site subnet: CEL refuses it too
		spec.NodeIPRange = "192.168.50.10-192.168.50.12"
		spec.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.12-192.168.50.20", "10.1.1.1"}
		spec.ServiceCIDR = "172.27.0.0/16"
		_, err := c.ComputeNetworks().Create(ctx, cn(spec), metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Fatalf("got %v, want Invalid", err)
		}
		// CEL runs before admission: fix the gateway to see the webhook's full list.
		spec.Gateway = "192.168.50.1"
		_, err = c.ComputeNetworks().Create(ctx, cn(spec), metav1.CreateOptions{})
		var se *apierrors.StatusError
		if !errors.As(err, &se) || !apierrors.IsInvalid(err) {
			t.Fatalf("got %v, want Invalid", err)
		}
		if !strings.Contains(err.Error(), `admission webhook "computenetworks.edgenet.io" denied the request`) {
			t.Errorf("not the webhook's denial: %v", err)
		}
		want := []string{"spec.nodeIPRange", "spec.externalServiceIPRanges[1]", "spec.externalServiceIPRanges[0]", "spec.serviceCIDR"}
		var got []string
		for _, cause := range se.ErrStatus.Details.Causes {
			got = append(got, cause.Field)
		}
		if !slices.Equal(got, want) {
			t.Errorf("causes %q, want %q\n%v", got, want, err)
		}
		for _, f := range want {
			if !strings.Contains(err.Error(), f+": ") {
				t.Errorf("message does not name %s: %v", f, err)
			}
		}
		if _, err := c.ComputeNetworks().Get(ctx, "default", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("refused object exists: %v", err)
		}
	})

	// The cluster's two nodes, on the first two node IPs.
	for i, ip := range []string{"192.168.50.10", "192.168.50.11"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%d", i+1)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
		if _, err := env.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ComputeNetworks().Create(ctx, cn(validSpec()), metav1.CreateOptions{}); err != nil {
		t.Fatalf("valid create: %v", err)
	}
	update := func(f func(*v1.ComputeNetworkSpec)) error {
		cur, err := c.ComputeNetworks().Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return err
		}
		f(&cur.Spec)
		_, err = c.ComputeNetworks().Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}
	for _, tc := range []struct {
		what   string
		change func(*v1.ComputeNetworkSpec)
		want   []string // fragments of the Invalid error; none: accepted
		warn   string   // fragment of a warning of an accepted change
	}{
		{what: "pod CIDR fixed", change: func(s *v1.ComputeNetworkSpec) { s.PodCIDR = "172.29.0.0/16" },
			want: []string{"spec.podCIDR", "cannot change once the cluster exists"}},
		{what: "block size fixed", change: func(s *v1.ComputeNetworkSpec) { s.PodBlockSize = 24 },
			want: []string{"spec.podBlockSize", "cannot change once the cluster exists"}},
		{what: "node range leaving out node2", change: func(s *v1.ComputeNetworkSpec) { s.NodeIPRange = "192.168.50.11-192.168.50.13"; s.Nodes = 2 },
			want: []string{"spec.nodeIPRange", `192.168.50.10 of Node "node1" is not inside the range`}},
		{what: "fewer nodes than Nodes", change: func(s *v1.ComputeNetworkSpec) { s.Nodes = 1 },
			want: []string{"spec.nodes", "at least the number of Nodes in the cluster, 2"}},
		{what: "an invalid update lists every error", change: func(s *v1.ComputeNetworkSpec) {
			s.Nodes = 1
			s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.1-192.168.50.5"}
			s.UpstreamDNS = []v1.IPAddress{"127.0.0.1"}
		}, want: []string{"spec.nodes", "spec.externalServiceIPRanges[0]: must not contain the gateway", "spec.upstreamDNS[0]"}},
		{what: "external range widened", change: func(s *v1.ComputeNetworkSpec) {
			s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.100-192.168.50.149"}
		}, warn: "IPOutsidePool"},
		{what: "node range grown with a node more", change: func(s *v1.ComputeNetworkSpec) { s.NodeIPRange = "192.168.50.10-192.168.50.29"; s.Nodes = 3 }},
	} {
		t.Run(tc.what, func(t *testing.T) {
			warnings.got = nil
			err := update(tc.change)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if tc.warn != "" && !slices.ContainsFunc(warnings.got, func(w string) bool { return strings.Contains(w, tc.warn) }) {
					t.Errorf("warnings %q lack %q", warnings.got, tc.warn)
				}
				return
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("got %v, want Invalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
	got, _ := c.ComputeNetworks().Get(ctx, "default", metav1.GetOptions{})
	if got.Spec.PodCIDR != "172.27.0.0/16" || got.Spec.Nodes != 3 || got.Spec.ExternalServiceIPRanges[0] != "192.168.50.100-192.168.50.149" {
		t.Errorf("stored spec %+v", got.Spec)
	}
}
