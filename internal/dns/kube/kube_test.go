package kube

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"edgenet.io/edgenet/internal/dns/zone"
)

func ptr[T any](v T) *T { return &v }

func service(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{"big": "data"}},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports},
	}
}

func slice(ns, svc, name string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc, "other": "x"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
		Endpoints:   eps,
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSourceMirrorsAPI(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "empty"}},
		service("default", "kubernetes", "10.96.0.1", corev1.ServicePort{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443}),
		service("default", "db", "None", corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.org"}},
		slice("default", "db", "db-1",
			discoveryv1.Endpoint{Addresses: []string{"10.244.0.5"}, Hostname: ptr("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
			discoveryv1.Endpoint{Addresses: []string{"10.244.0.6"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}}),
	)
	store, err := zone.NewStore(zone.Config{Domain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	src := New(client, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "sync", store.Synced)

	answers := func(name string, qt uint16) []string {
		r := store.Snapshot().Lookup(name, qt)
		var out []string
		for _, rr := range r.Answer {
			switch v := rr.(type) {
			case *dns.A:
				out = append(out, v.A.String())
			case *dns.SRV:
				out = append(out, v.Target)
			case *dns.CNAME:
				out = append(out, v.Target)
			}
		}
		return out
	}
	check := func(name string, qt uint16, want ...string) {
		t.Helper()
		waitFor(t, name+" = "+strings.Join(want, ","), func() bool { return strings.Join(answers(name, qt), ",") == strings.Join(want, ",") })
	}
	check("kubernetes.default.svc.cluster.local.", dns.TypeA, "10.96.0.1")
	check("_https._tcp.kubernetes.default.svc.cluster.local.", dns.TypeSRV, "kubernetes.default.svc.cluster.local.")
	check("db.default.svc.cluster.local.", dns.TypeA, "10.244.0.5")
	check("db-0.db.default.svc.cluster.local.", dns.TypeA, "10.244.0.5")
	check("_http._tcp.db.default.svc.cluster.local.", dns.TypeSRV, "db-0.db.default.svc.cluster.local.")
	check("ext.default.svc.cluster.local.", dns.TypeCNAME, "example.org.")
	if r := store.Snapshot().Lookup("empty.svc.cluster.local.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Errorf("namespace without services: %s", dns.RcodeToString[r.Rcode])
	}

	// Changes flow through per service.
	ctx2 := context.Background()
	es := slice("default", "db", "db-1",
		discoveryv1.Endpoint{Addresses: []string{"10.244.0.5"}, Hostname: ptr("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
		discoveryv1.Endpoint{Addresses: []string{"10.244.0.6"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx2, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("db.default.svc.cluster.local.", dns.TypeA, "10.244.0.5", "10.244.0.6")
	// A second slice for the same service adds to it.
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx2, slice("default", "db", "db-2",
		discoveryv1.Endpoint{Addresses: []string{"10.244.1.7"}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("db.default.svc.cluster.local.", dns.TypeA, "10.244.0.5", "10.244.0.6", "10.244.1.7")
	if err := client.DiscoveryV1().EndpointSlices("default").Delete(ctx2, "db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	check("db.default.svc.cluster.local.", dns.TypeA, "10.244.1.7")
	if err := client.CoreV1().Services("default").Delete(ctx2, "kubernetes", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	check("kubernetes.default.svc.cluster.local.", dns.TypeA)
	if _, err := client.CoreV1().Services("other").Create(ctx2, service("other", "new", "10.96.0.99"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("new.other.svc.cluster.local.", dns.TypeA, "10.96.0.99")
}

func TestServiceModel(t *testing.T) {
	for name, tc := range map[string]struct {
		svc  *corev1.Service
		want zone.ServiceType
		ok   bool
	}{
		"clusterIP":    {service("a", "b", "10.0.0.1"), zone.ClusterIP, true},
		"headless":     {service("a", "b", "None"), zone.Headless, true},
		"pending":      {service("a", "b", ""), 0, false},
		"externalName": {&corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "x.y"}}, zone.ExternalName, true},
		"dual stack":   {&corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1", ClusterIPs: []string{"10.0.0.1", "fd00::1"}}}, zone.ClusterIP, true},
	} {
		m, ok := ServiceModel(tc.svc)
		if ok != tc.ok || ok && m.Type != tc.want {
			t.Errorf("%s: %v %v", name, m.Type, ok)
		}
		if name == "dual stack" && len(m.ClusterIPs) != 2 {
			t.Errorf("dual stack: %v", m.ClusterIPs)
		}
	}
}

func TestTransformsStrip(t *testing.T) {
	o, _ := stripService(service("a", "b", "10.0.0.1", corev1.ServicePort{Name: "p", Port: 1, NodePort: 30000}))
	svc := o.(*corev1.Service)
	if svc.Annotations != nil || svc.Spec.Ports[0].NodePort != 0 || svc.Spec.ClusterIP != "10.0.0.1" {
		t.Errorf("service not stripped: %+v", svc)
	}
	o, _ = stripSlice(slice("a", "b", "c", discoveryv1.Endpoint{Addresses: []string{"1.2.3.4"}, NodeName: ptr("n1")}))
	es := o.(*discoveryv1.EndpointSlice)
	if len(es.Labels) != 1 || es.Endpoints[0].NodeName != nil || es.Endpoints[0].Addresses[0] != "1.2.3.4" {
		t.Errorf("slice not stripped: %+v", es)
	}
}
