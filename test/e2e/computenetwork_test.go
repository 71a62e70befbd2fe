package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
)

func edgenetClient(t *testing.T) *v1.Client {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v1.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setExternalRanges replaces spec.externalServiceIPRanges of ComputeNetwork default.
func setExternalRanges(t *testing.T, c *v1.Client, ranges ...string) {
	t.Helper()
	ctx := context.Background()
	eventually(t, 10*time.Second, "external ranges "+strings.Join(ranges, ","), func() error {
		cn, err := c.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cn.Spec.ExternalServiceIPRanges = nil
		for _, r := range ranges {
			cn.Spec.ExternalServiceIPRanges = append(cn.Spec.ExternalServiceIPRanges, v1.IPRange(r))
		}
		_, err = c.ComputeNetworks().Update(ctx, cn, metav1.UpdateOptions{})
		return err
	})
}

// lbState is a LoadBalancer Service's address and the reason of its allocation condition.
func lbState(t *testing.T, ns, name string) (ip, reason string) {
	t.Helper()
	s, err := app.client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Status.LoadBalancer.Ingress) > 0 {
		ip = s.Status.LoadBalancer.Ingress[0].IP
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, "edgenet.io/LoadBalancerIPAllocated"); c != nil {
		reason = c.Reason
	}
	return ip, reason
}

// The ComputeNetwork is checked by the apiserver itself (the webhook every controller
// replica serves): invalid settings are refused listing every problem, the pod CIDR is
// fixed, and the external range changes live. The original spec is restored at the end.
func TestComputeNetworkValidatedByTheAPIServer(t *testing.T) {
	ctx := context.Background()
	c := edgenetClient(t)
	orig, err := c.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		eventually(t, 20*time.Second, "original spec restored", func() error {
			cn, err := c.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cn.Spec = orig.Spec
			_, err = c.ComputeNetworks().Update(ctx, cn, metav1.UpdateOptions{})
			return err
		})
	})

	t.Run("status Ready with the node IPs in use", func(t *testing.T) {
		eventually(t, 20*time.Second, "Ready", func() error {
			cn, err := c.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cond := meta.FindStatusCondition(cn.Status.Conditions, v1.ConditionReady)
			if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != cn.Generation {
				return fmt.Errorf("Ready condition %+v at generation %d", cond, cn.Generation)
			}
			if want := int32(len(app.state.Nodes) + 1); cn.Status.NodeIPsUsed != want {
				return fmt.Errorf("nodeIPsUsed %d, want %d", cn.Status.NodeIPsUsed, want)
			}
			return nil
		})
	})

	t.Run("kubectl apply of invalid settings refused listing every error", func(t *testing.T) {
		manifest := fmt.Sprintf(`apiVersion: edgenet.io/v1alpha1
kind: ComputeNetwork
metadata:
  name: default
spec:
  nodes: 1
  siteSubnet: %s
  gateway: %s
  nodeIPRange: %s
  externalServiceIPRanges: ["%s", "%s"]
  podCIDR: %s
  serviceCIDR: %s
  podBlockSize: %d
  clusterDomain: %s
  upstreamDNS: ["127.0.0.53"]
`, orig.Spec.SiteSubnet, orig.Spec.Gateway, orig.Spec.NodeIPRange,
			orig.Spec.Gateway,     // holds the gateway
			orig.Spec.NodeIPRange, // overlaps the node IPs
			orig.Spec.PodCIDR, orig.Spec.ServiceCIDR, orig.Spec.PodBlockSize, orig.Spec.ClusterDomain)
		file := filepath.Join(t.TempDir(), "cn.yaml")
		if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := app.kubectl(ctx, "apply", "-f", file)
		if err == nil {
			t.Fatalf("kubectl apply accepted invalid settings:\n%s", out)
		}
		t.Logf("kubectl apply said:\n%s", out)
		// kubectl prints an Invalid error from its causes: one line per field path.
		for _, want := range []string{`The ComputeNetwork "default" is invalid`,
			`spec.nodes: Invalid value: "1": must be at least the number of Nodes in the cluster`,
			`spec.externalServiceIPRanges[0]: Invalid value: "` + string(orig.Spec.Gateway) + `": must not contain the gateway`,
			`spec.externalServiceIPRanges[1]: Invalid value: "` + string(orig.Spec.NodeIPRange) + `": overlaps spec.nodeIPRange`,
			`spec.upstreamDNS[0]: Invalid value: "127.0.0.53": must be a unicast address reachable from pods`} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl output lacks %q", want)
			}
		}
		cn, err := c.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
		if err != nil || cn.Generation != orig.Generation {
			t.Errorf("refused apply changed the object: generation %d -> %d (%v)", orig.Generation, cn.Generation, err)
		}
	})

	t.Run("pod CIDR change refused", func(t *testing.T) {
		out, err := app.kubectl(ctx, "patch", "computenetwork", "default", "--type=merge", "-p", `{"spec":{"podCIDR":"172.29.0.0/16"}}`)
		if err == nil || !strings.Contains(out, "podCIDR") || !strings.Contains(out, "cannot change once the cluster exists") {
			t.Fatalf("pod CIDR change: err %v:\n%s", err, out)
		}
		cn, _ := c.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
		if cn.Spec.PodCIDR != orig.Spec.PodCIDR {
			t.Fatalf("pod CIDR now %s", cn.Spec.PodCIDR)
		}
	})

	t.Run("external range widened and shrunk live", func(t *testing.T) {
		// Two addresses of the external range no Service holds.
		r, err := computenet.ParseRange(string(orig.Spec.ExternalServiceIPRanges[0]))
		if err != nil {
			t.Fatal(err)
		}
		svcs, err := app.client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var held []string
		for _, s := range svcs.Items {
			for _, in := range s.Status.LoadBalancer.Ingress {
				held = append(held, in.IP)
			}
		}
		var free []netip.Addr
		for i := uint64(0); i < r.Size() && len(free) < 2; i++ {
			a, _ := r.Addr(i)
			if b := a.As4(); a.Is4() && (b[3] == 0 || b[3] == 255) || slices.Contains(held, a.String()) {
				continue
			}
			free = append(free, a)
		}
		if len(free) < 2 {
			t.Fatalf("no two free addresses in %s (held: %v)", r, held)
		}
		one, two := free[0].String(), free[1].String()

		ns := testNamespace(t, "e2e-computenet")
		setExternalRanges(t, c, one)
		lb := corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "none"}, Ports: httpPort()}
		service(t, ns, "first", lb)
		eventually(t, 20*time.Second, "first gets the one address", func() error {
			if ip, reason := lbState(t, ns, "first"); ip != one {
				return fmt.Errorf("first has %q (%s), want %s", ip, reason, one)
			}
			return nil
		})
		service(t, ns, "second", lb)
		eventually(t, 20*time.Second, "second pending: pool exhausted", func() error {
			if ip, reason := lbState(t, ns, "second"); ip != "" || reason != "PoolExhausted" {
				return fmt.Errorf("second has %q, reason %q", ip, reason)
			}
			return nil
		})

		start := time.Now()
		setExternalRanges(t, c, one, two)
		eventually(t, 20*time.Second, "second gets the new address", func() error {
			if ip, reason := lbState(t, ns, "second"); ip != two {
				return fmt.Errorf("second has %q (%s), want %s", ip, reason, two)
			}
			return nil
		})
		t.Logf("range widened: the pending Service got %s %v after the update", two, time.Since(start).Round(10*time.Millisecond))

		setExternalRanges(t, c, one)
		eventually(t, 20*time.Second, "second keeps its address, flagged", func() error {
			if ip, reason := lbState(t, ns, "second"); ip != two || reason != "IPOutsidePool" {
				return fmt.Errorf("second has %q, reason %q; want %s, IPOutsidePool", ip, reason, two)
			}
			return nil
		})
		if ip, _ := lbState(t, ns, "first"); ip != one {
			t.Errorf("first now has %q, want %s", ip, one)
		}
		cn, err := c.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cond := meta.FindStatusCondition(cn.Status.Conditions, v1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
			t.Errorf("Ready after the range changes: %+v", cond)
		}
	})
}
