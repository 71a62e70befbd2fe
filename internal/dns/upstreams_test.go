package dns

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/api/v1alpha1/crdtest"
	"edgenet.io/edgenet/internal/testenv"
)

// siteResolver answers every A question with addr, on ip:port over UDP.
func siteResolver(t *testing.T, listen, addr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg).SetReply(r)
		rr, _ := mdns.NewRR(fmt.Sprintf("%s 1 IN A %s", r.Question[0].Name, addr))
		m.Answer = []mdns.RR{rr}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
}

// Against a real kube-apiserver with the edgenet CRDs: the forwarder follows
// spec.upstreamDNS of the ComputeNetwork as the admin changes it, and falls back to the
// configured resolvers when it names none.
func TestUpstreamsFollowComputeNetwork(t *testing.T) {
	env := testenv.Start(t)
	crdtest.Install(t, env.Config)
	// spec.upstreamDNS holds addresses without a port: the site resolvers listen on
	// port 53 of loopback addresses of their own.
	fallbackPort := freeUDPPort(t)
	siteResolver(t, fmt.Sprintf("127.0.0.1:%d", fallbackPort), "192.0.2.1")
	siteResolver(t, "127.0.0.2:53", "192.0.2.2")
	siteResolver(t, "127.0.0.3:53", "192.0.2.3")

	addr := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Kubeconfig: env.Kubeconfig, ClusterDomain: "cluster.local", Listen: []string{addr},
			Upstreams: []string{fmt.Sprintf("127.0.0.1:%d", fallbackPort)}, MetricsAddr: "-", FollowComputeNetwork: true})
	}()
	t.Cleanup(func() { cancel(); <-done })

	// Each question is new (the cache would otherwise answer from the previous upstream).
	n := 0
	answeredBy := func(want string) func() error {
		return func() error {
			n++
			r, _, err := (&mdns.Client{Timeout: time.Second}).Exchange(new(mdns.Msg).SetQuestion(fmt.Sprintf("q%d.site.example.", n), mdns.TypeA), addr)
			if err != nil {
				return err
			}
			if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != want {
				return fmt.Errorf("answer %v, want %s", r.Answer, want)
			}
			return nil
		}
	}
	eventually(t, "no ComputeNetwork: the configured upstream", answeredBy("192.0.2.1"))

	edge, err := v1.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	cn := &v1.ComputeNetwork{ObjectMeta: metav1.ObjectMeta{Name: v1.ComputeNetworkName}, Spec: v1.ComputeNetworkSpec{
		Nodes: 2, SiteSubnet: "192.168.50.0/24", Gateway: "192.168.50.1",
		NodeIPRange:             "192.168.50.10-192.168.50.19",
		ExternalServiceIPRanges: []v1.IPRange{"192.168.50.100-192.168.50.119"},
		PodCIDR:                 "172.27.0.0/16", ServiceCIDR: "172.28.0.0/16", PodBlockSize: 26,
		ClusterDomain: "cluster.local", UpstreamDNS: []v1.IPAddress{"127.0.0.2"},
	}}
	if cn, err = edge.ComputeNetworks().Create(bg, cn, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "upstreamDNS set", answeredBy("192.0.2.2"))

	cn.Spec.UpstreamDNS = []v1.IPAddress{"127.0.0.3"}
	if cn, err = edge.ComputeNetworks().Update(bg, cn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "upstreamDNS changed", answeredBy("192.0.2.3"))

	cn.Spec.UpstreamDNS = nil
	if _, err = edge.ComputeNetworks().Update(bg, cn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "upstreamDNS cleared: back to the configured upstream", answeredBy("192.0.2.1"))
}
