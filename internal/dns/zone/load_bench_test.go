package zone

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkLoad10kOneBatch is the initial list of 10k services arriving as one batch
// (how internal/dns/kube applies it), against one Update per service.
func BenchmarkLoad10k(b *testing.B) {
	svcs := make([]Service, 10000)
	for i := range svcs {
		svcs[i] = Service{Namespace: fmt.Sprintf("ns%d", i%10), Name: fmt.Sprintf("svc%d", i), Type: ClusterIP,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{172, 28, byte(i >> 8), byte(i)})}}
	}
	b.Run("one-batch", func(b *testing.B) {
		for range b.N {
			st, _ := NewStore(Config{Domain: "cluster.local"})
			st.Update(func(tx *Tx) {
				for _, s := range svcs {
					tx.SetService(s)
				}
			})
		}
	})
	b.Run("update-per-service", func(b *testing.B) {
		for range b.N {
			st, _ := NewStore(Config{Domain: "cluster.local"})
			for _, s := range svcs[:2000] {
				st.Update(func(tx *Tx) { tx.SetService(s) })
			}
		}
	})
}
