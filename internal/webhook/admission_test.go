package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
)

// validSpec is the appliance's factory settings as the CRD (with its defaults) holds them.
func validSpec() v1.ComputeNetworkSpec { return SpecOf(computenet.Defaults()) }

func TestSpecOfFactorySettings(t *testing.T) {
	want := v1.ComputeNetworkSpec{
		Nodes: 2, SiteSubnet: "192.168.50.0/24", Gateway: "192.168.50.1",
		NodeIPRange:             "192.168.50.10-192.168.50.19",
		ExternalServiceIPRanges: []v1.IPRange{"192.168.50.100-192.168.50.119"},
		PodCIDR:                 "172.27.0.0/16", ServiceCIDR: "172.28.0.0/16", PodBlockSize: 26,
		ClusterDomain: "cluster.local",
	}
	if got := validSpec(); !reflect.DeepEqual(got, want) {
		t.Errorf("SpecOf(Defaults()) = %+v\nwant %+v", got, want)
	}
}

func with(f func(*v1.ComputeNetworkSpec)) v1.ComputeNetworkSpec {
	s := validSpec()
	f(&s)
	return s
}

type fakeNodes struct {
	nodes []Node
	err   error
}

func (f fakeNodes) ListNodes(context.Context) ([]Node, error) { return f.nodes, f.err }

func node(name string, ips ...string) Node {
	n := Node{Name: name}
	for _, ip := range ips {
		n.InternalIPs = append(n.InternalIPs, netip.MustParseAddr(ip))
	}
	return n
}

// twoNodes is the appliance's cluster: node1 and node2 on the first two node IPs.
var twoNodes = fakeNodes{nodes: []Node{node("node1", "192.168.50.10"), node("node2", "192.168.50.11")}}

func request(op admissionv1.Operation, obj, old *v1.ComputeNetworkSpec) *admissionv1.AdmissionRequest {
	raw := func(s *v1.ComputeNetworkSpec) runtime.RawExtension {
		if s == nil {
			return runtime.RawExtension{}
		}
		b, _ := json.Marshal(&v1.ComputeNetwork{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: "ComputeNetwork"},
			ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: *s})
		return runtime.RawExtension{Raw: b}
	}
	return &admissionv1.AdmissionRequest{
		UID:       types.UID("uid-1"),
		Kind:      metav1.GroupVersionKind{Group: v1.GroupName, Version: "v1alpha1", Kind: "ComputeNetwork"},
		Resource:  metav1.GroupVersionResource{Group: v1.GroupName, Version: "v1alpha1", Resource: v1.ResourceComputeNetworks},
		Name:      "default",
		Operation: op,
		Object:    raw(obj),
		OldObject: raw(old),
	}
}

func ptr[T any](v T) *T { return &v }

func TestAdmit(t *testing.T) {
	valid := validSpec()
	tests := []struct {
		name   string
		req    *admissionv1.AdmissionRequest
		nodes  NodeLister
		code   int32    // 0: allowed
		fields []string // field paths of the causes, in order
		msg    []string // substrings of the message
	}{
		{name: "valid create", req: request(admissionv1.Create, &valid, nil), nodes: twoNodes},
		{name: "valid create, no nodes yet", req: request(admissionv1.Create, &valid, nil), nodes: fakeNodes{}},
		{name: "gateway outside the site subnet",
			req:  request(admissionv1.Create, ptr(with(func(s *v1.ComputeNetworkSpec) { s.Gateway = "10.0.0.1" })), nil),
			code: 422, fields: []string{"spec.gateway"}, msg: []string{"must be inside the site subnet 192.168.50.0/24"}},
		{name: "node range too small for the nodes",
			req:  request(admissionv1.Create, ptr(with(func(s *v1.ComputeNetworkSpec) { s.NodeIPRange = "192.168.50.10-192.168.50.11" })), nil),
			code: 422, fields: []string{"spec.nodeIPRange"}, msg: []string{"2 nodes need 3"}},
		{name: "external range overlaps the node range",
			req: request(admissionv1.Create, ptr(with(func(s *v1.ComputeNetworkSpec) {
				s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.100-192.168.50.119", "192.168.50.15-192.168.50.30"}
			})), nil),
			code: 422, fields: []string{"spec.externalServiceIPRanges[1]"}, msg: []string{"overlaps spec.nodeIPRange"}},
		{name: "pod CIDR overlaps the site subnet",
			req:  request(admissionv1.Create, ptr(with(func(s *v1.ComputeNetworkSpec) { s.PodCIDR = "192.168.0.0/16" })), nil),
			code: 422, fields: []string{"spec.podCIDR", "spec.podCIDR", "spec.podCIDR"}, msg: []string{"must not overlap the site subnet"}},
		{name: "service CIDR too large",
			req:  request(admissionv1.Create, ptr(with(func(s *v1.ComputeNetworkSpec) { s.ServiceCIDR = "10.0.0.0/8" })), nil),
			code: 422, fields: []string{"spec.serviceCIDR"}, msg: []string{"prefix length must be between /12 and /28"}},
		{name: "upstream DNS on loopback",
			req:  request(admissionv1.Create, ptr(with(func(s *v1.ComputeNetworkSpec) { s.UpstreamDNS = []v1.IPAddress{"127.0.0.53"} })), nil),
			code: 422, fields: []string{"spec.upstreamDNS[0]"}, msg: []string{"reachable from pods"}},
		{name: "malformed range reported once, as not parsing",
			req:  request(admissionv1.Create, ptr(with(func(s *v1.ComputeNetworkSpec) { s.NodeIPRange = "192.168.50.10-bogus" })), nil),
			code: 422, fields: []string{"spec.nodeIPRange"}, msg: []string{"does not parse"}},
		{name: "many errors at once",
			req: request(admissionv1.Create, ptr(v1.ComputeNetworkSpec{
				Nodes: 3, SiteSubnet: "192.168.50.0/24", Gateway: "192.168.60.1",
				NodeIPRange:             "192.168.50.10-192.168.50.12",
				ExternalServiceIPRanges: []v1.IPRange{"192.168.50.12-192.168.50.20", "10.1.1.1"},
				PodCIDR:                 "172.27.0.0/16", ServiceCIDR: "172.27.0.0/16", PodBlockSize: 26,
				ClusterDomain: "Cluster.Local",
			}), nil),
			code: 422,
			fields: []string{"spec.gateway", "spec.nodeIPRange", "spec.externalServiceIPRanges[1]",
				"spec.externalServiceIPRanges[0]", "spec.serviceCIDR", "spec.clusterDomain"},
			msg: []string{"is invalid (6 errors)"}},

		{name: "update: external range may change",
			req: request(admissionv1.Update, ptr(with(func(s *v1.ComputeNetworkSpec) {
				s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.100-192.168.50.101"}
			})), &valid), nodes: twoNodes},
		{name: "update: pod CIDR, service CIDR and block size are fixed",
			req: request(admissionv1.Update, ptr(with(func(s *v1.ComputeNetworkSpec) {
				s.PodCIDR, s.ServiceCIDR, s.PodBlockSize = "172.29.0.0/16", "172.30.0.0/16", 24
			})), &valid), nodes: twoNodes,
			code: 422, fields: []string{"spec.podCIDR", "spec.serviceCIDR", "spec.podBlockSize"},
			msg: []string{`cannot change once the cluster exists (was "172.27.0.0/16")`, `(was "26")`}},
		{name: "update: node range that drops node2",
			req: request(admissionv1.Update, ptr(with(func(s *v1.ComputeNetworkSpec) {
				s.NodeIPRange, s.Nodes = "192.168.50.20-192.168.50.29", 2
			})), &valid), nodes: twoNodes,
			code: 422, fields: []string{"spec.nodeIPRange", "spec.nodeIPRange"},
			msg: []string{`192.168.50.10 of Node "node1" is not inside`, `192.168.50.11 of Node "node2" is not inside`}},
		{name: "update: node2's IP would become the cluster VIP",
			req: request(admissionv1.Update, ptr(with(func(s *v1.ComputeNetworkSpec) {
				s.NodeIPRange, s.Nodes = "192.168.50.9-192.168.50.11", 2
			})), &valid), nodes: twoNodes,
			code: 422, fields: []string{"spec.nodeIPRange"}, msg: []string{`of Node "node2" is the cluster VIP`}},
		{name: "update: fewer nodes than Node objects",
			req: request(admissionv1.Update, ptr(with(func(s *v1.ComputeNetworkSpec) { s.Nodes = 1 })), &valid), nodes: twoNodes,
			code: 422, fields: []string{"spec.nodes"}, msg: []string{"at least the number of Nodes in the cluster, 2 (node1, node2)"}},
		{name: "update: nodes list unavailable",
			req: request(admissionv1.Update, &valid, &valid), nodes: fakeNodes{err: errors.New("connection refused")},
			code: 500, msg: []string{"cannot list the Nodes", "connection refused"}},
		{name: "update: undecodable old object",
			req: func() *admissionv1.AdmissionRequest {
				r := request(admissionv1.Update, &valid, &valid)
				r.OldObject.Raw = []byte("{")
				return r
			}(),
			code: 400, msg: []string{"cannot decode the old ComputeNetwork"}},
		{name: "delete is not checked", req: request(admissionv1.Delete, nil, &valid), nodes: twoNodes},
		{name: "other resource",
			req: func() *admissionv1.AdmissionRequest {
				r := request(admissionv1.Create, &valid, nil)
				r.Resource.Resource = "addresspools"
				return r
			}(),
			code: 400, msg: []string{"not addresspools.edgenet.io"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Handler{Nodes: tt.nodes}
			resp := h.Admit(context.Background(), tt.req)
			if resp.UID != tt.req.UID {
				t.Errorf("UID %q, want %q", resp.UID, tt.req.UID)
			}
			if tt.code == 0 {
				if !resp.Allowed {
					t.Fatalf("denied: %+v", resp.Result)
				}
				return
			}
			if resp.Allowed || resp.Result == nil {
				t.Fatalf("allowed, want code %d", tt.code)
			}
			if resp.Result.Code != tt.code {
				t.Errorf("code %d, want %d (%s)", resp.Result.Code, tt.code, resp.Result.Message)
			}
			for _, m := range tt.msg {
				if !strings.Contains(resp.Result.Message, m) {
					t.Errorf("message lacks %q:\n%s", m, resp.Result.Message)
				}
			}
			if tt.fields == nil {
				return
			}
			var got []string
			for _, c := range resp.Result.Details.Causes {
				got = append(got, c.Field)
				if !strings.Contains(resp.Result.Message, c.Field+": ") {
					t.Errorf("message does not name %s:\n%s", c.Field, resp.Result.Message)
				}
			}
			if !slices.Equal(got, tt.fields) {
				t.Errorf("cause fields %q, want %q\n%s", got, tt.fields, resp.Result.Message)
			}
		})
	}
}

func TestAdmitWarnsOnExternalRangeChange(t *testing.T) {
	old := validSpec()
	resp := (&Handler{Nodes: twoNodes}).Admit(context.Background(), request(admissionv1.Update,
		ptr(with(func(s *v1.ComputeNetworkSpec) { s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.200"} })), &old))
	if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "IPOutsidePool") {
		t.Fatalf("allowed=%v warnings=%q", resp.Allowed, resp.Warnings)
	}
	resp = (&Handler{Nodes: twoNodes}).Admit(context.Background(), request(admissionv1.Update, &old, &old))
	if !resp.Allowed || len(resp.Warnings) != 0 {
		t.Fatalf("unchanged ranges: allowed=%v warnings=%q", resp.Allowed, resp.Warnings)
	}
}

func review(t testing.TB, req *admissionv1.AdmissionRequest) []byte {
	b, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServeHTTP(t *testing.T) {
	valid := validSpec()
	bad := with(func(s *v1.ComputeNetworkSpec) { s.Gateway = "10.0.0.1" })
	tests := []struct {
		name    string
		method  string
		body    []byte
		status  int
		allowed bool
	}{
		{"valid object", http.MethodPost, review(t, request(admissionv1.Create, &valid, nil)), 200, true},
		{"invalid object", http.MethodPost, review(t, request(admissionv1.Create, &bad, nil)), 200, false},
		{"GET", http.MethodGet, nil, 405, false},
		{"not JSON", http.MethodPost, []byte("not json"), 400, false},
		{"v1beta1 review", http.MethodPost, []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`), 400, false},
		{"no request", http.MethodPost, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, false},
		{"too large", http.MethodPost, bytes.Repeat([]byte(" "), maxBody+1), 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			(&Handler{Nodes: twoNodes}).ServeHTTP(w, httptest.NewRequest(tt.method, Path, bytes.NewReader(tt.body)))
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status != 200 {
				return
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Request != nil {
				t.Errorf("review envelope %+v", out.TypeMeta)
			}
			if out.Response == nil || out.Response.UID != "uid-1" || out.Response.Allowed != tt.allowed {
				t.Errorf("response %+v, want allowed=%v for uid-1", out.Response, tt.allowed)
			}
		})
	}
}
