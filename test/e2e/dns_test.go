package e2e

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// From a pod on every node, through the kubelet's resolv.conf (search path, DNS
// service IP) and the service proxy: cluster names per the Kubernetes DNS spec, and a
// site name forwarded to the site's DNS server.
func TestClusterDNSFromEveryNode(t *testing.T) {
	ns := testNamespace(t, "e2e-dns")
	pods := echoDaemonSet(t, ns, "echo")
	ctx := context.Background()
	cases := []struct {
		name, qtype string
		want        []string // substrings of the answer
	}{
		{"kubernetes.default", "A", []string{"rcode NOERROR", "kubernetes.default.svc.cluster.local.", "IN\tA\t172.28.0.1"}},
		{"kubernetes.default.svc", "A", []string{"IN\tA\t172.28.0.1"}},
		{"kubernetes.default.svc.cluster.local.", "A", []string{"IN\tA\t172.28.0.1"}},
		{"edgenet-dns.edgenet-system", "A", []string{"IN\tA\t172.28.0.10"}},
		{"_https._tcp.kubernetes.default.svc.cluster.local.", "SRV", []string{"IN\tSRV\t0 100 443 kubernetes.default.svc.cluster.local."}},
		{"1.0.28.172.in-addr.arpa.", "PTR", []string{"IN\tPTR\tkubernetes.default.svc.cluster.local."}},
		{"nothing-here.default.svc.cluster.local.", "A", []string{"rcode NXDOMAIN"}},
		{"kubernetes.default.svc.cluster.local.", "AAAA", []string{"rcode NOERROR"}},
		{"dns-version.cluster.local.", "TXT", []string{`"1.1.0"`}},
		{"gateway.site.example.", "A", []string{"IN\tA\t192.168.50.1"}},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt(8080)}}},
	}
	svc, err := app.client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		// Short names resolve through the pod's search path: "echo" in the pod's own
		// namespace, "echo.<ns>" from anywhere.
		for _, name := range []string{"echo", "echo." + ns} {
			out, err := execIn(ctx, p, "dns", name)
			if err != nil || !strings.Contains(out, "echo."+ns+".svc.cluster.local.") || !strings.Contains(out, svc.Spec.ClusterIP) {
				t.Errorf("%s: short name %s: want %s: %v %s", p.Spec.NodeName, name, svc.Spec.ClusterIP, err, out)
			}
		}
		for _, c := range cases {
			out, err := execIn(ctx, p, "dns", "-type", c.qtype, c.name)
			if err != nil {
				t.Errorf("%s: %s %s: %v %s", p.Spec.NodeName, c.qtype, c.name, err, out)
				continue
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s: %s %s: answer lacks %q:\n%s", p.Spec.NodeName, c.qtype, c.name, w, out)
				}
			}
		}
		// TCP works too (the probe's -tcp).
		if out, err := execIn(ctx, p, "dns", "-tcp", "kubernetes.default.svc.cluster.local."); err != nil || !strings.Contains(out, "172.28.0.1") {
			t.Errorf("%s: DNS over TCP: %v %s", p.Spec.NodeName, err, out)
		}
	}
}
