package endpoints

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// BenchmarkCompute measures the pure computation for one Service: from scratch (no
// slices yet), in steady state (nothing changed), and after one readiness flip.
func BenchmarkCompute(b *testing.B) {
	zones := map[string]string{"n1": "zone-a"}
	for _, n := range []int{1000, 10000} {
		s := svc("web", namedPort("http", "http", corev1.ProtocolTCP), tcpPort("metrics", 9100))
		pods := podsN(0, n, cport("http", 8080, corev1.ProtocolTCP))
		c := newFakeCluster(b)
		c.apply(mustPlan(&s, pods, zones, nil))
		existing := c.list()
		flipped := append([]Pod(nil), pods...)
		flipped[n/2].Ready = false

		for _, bc := range []struct {
			name     string
			pods     []Pod
			existing bool
		}{{"scratch", pods, false}, {"steady", pods, true}, {"one-flip", flipped, true}} {
			b.Run(fmt.Sprintf("pods=%d/%s", n, bc.name), func(b *testing.B) {
				var ex = existing
				if !bc.existing {
					ex = nil
				}
				b.ReportAllocs()
				var p Plan
				for b.Loop() {
					p, _ = Compute(&s, bc.pods, zones, ex, Options{})
				}
				b.ReportMetric(float64(p.Writes()), "writes")
			})
		}
	}
}

func mustPlan(s *Service, pods []Pod, zones map[string]string, existing []*discoveryv1.EndpointSlice) Plan {
	p, _ := Compute(s, pods, zones, existing, Options{})
	return p
}
