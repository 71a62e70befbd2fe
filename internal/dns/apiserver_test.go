package dns

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"edgenet.io/edgenet/internal/testenv"
)

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// eventually fails the test if cond has not held within 15 s.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// Against a real kube-apiserver: records follow creates, updates and deletes, the server
// keeps answering from its last state when its apiserver goes away, and catches up with
// what changed meanwhile (through a second apiserver on the same etcd) when it returns.
func TestRunAgainstAPIServer(t *testing.T) {
	env := testenv.Start(t)
	dir := t.TempDir()
	kubeconfig := env.Kubeconfig
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644) // never reached: no query leaves the zone
	addr := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Kubeconfig: kubeconfig, ClusterDomain: "cluster.local", Listen: []string{addr},
			ResolvConf: resolv, MetricsAddr: "-"})
	}()
	t.Cleanup(func() { cancel(); <-done })

	c := &mdns.Client{Timeout: time.Second}
	query := func(name string, qtype uint16) (*mdns.Msg, error) {
		r, _, err := c.Exchange(new(mdns.Msg).SetQuestion(name, qtype), addr)
		return r, err
	}
	answerIs := func(name string, qtype uint16, want string) func() error {
		return func() error {
			r, err := query(name, qtype)
			if err != nil {
				return err
			}
			if want == "NXDOMAIN" {
				if r.Rcode != mdns.RcodeNameError {
					return fmt.Errorf("rcode %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
				}
				return nil
			}
			for _, rr := range r.Answer {
				if a, ok := rr.(*mdns.A); ok && a.A.String() == want {
					return nil
				}
				if s, ok := rr.(*mdns.SRV); ok && fmt.Sprint(s.Port) == want {
					return nil
				}
			}
			return fmt.Errorf("answer %v, want %s", r.Answer, want)
		}
	}

	kube := env.Client.CoreV1()
	bg := context.Background()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "sql", Port: 5432, Protocol: corev1.ProtocolTCP}}},
	}
	svc, err := kube.Services("default").Create(bg, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip := svc.Spec.ClusterIP
	eventually(t, "A after create", answerIs("db.default.svc.cluster.local.", mdns.TypeA, ip))
	eventually(t, "SRV after create", answerIs("_sql._tcp.db.default.svc.cluster.local.", mdns.TypeSRV, "5432"))

	svc.Spec.Ports[0].Port = 6543
	if _, err := kube.Services("default").Update(bg, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SRV after update", answerIs("_sql._tcp.db.default.svc.cluster.local.", mdns.TypeSRV, "6543"))

	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 6379}}}}
	other, err = kube.Services("default").Create(bg, other, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "second service", answerIs("cache.default.svc.cluster.local.", mdns.TypeA, other.Spec.ClusterIP))
	if err := kube.Services("default").Delete(bg, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NXDOMAIN after delete", answerIs("db.default.svc.cluster.local.", mdns.TypeA, "NXDOMAIN"))

	// The apiserver goes away: answers continue from the last known state.
	other2, err := env.ExtraAPIServer()
	if err != nil {
		t.Fatal(err)
	}
	env.StopAPIServer()
	time.Sleep(500 * time.Millisecond)
	for i := 0; i < 5; i++ {
		if err := answerIs("cache.default.svc.cluster.local.", mdns.TypeA, other.Spec.ClusterIP)(); err != nil {
			t.Fatalf("with the apiserver stopped: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Meanwhile the cluster changes; the server sees it once its apiserver is back.
	late, err := other2.CoreV1().Services("default").Create(bg, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other2.CoreV1().Services("default").Delete(bg, "cache", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := answerIs("cache.default.svc.cluster.local.", mdns.TypeA, other.Spec.ClusterIP)(); err != nil {
		t.Fatalf("cut off from its apiserver, the server should still answer from its last state: %v", err)
	}
	if err := env.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "created while away", answerIs("late.default.svc.cluster.local.", mdns.TypeA, late.Spec.ClusterIP))
	eventually(t, "deleted while away", answerIs("cache.default.svc.cluster.local.", mdns.TypeA, "NXDOMAIN"))
}
