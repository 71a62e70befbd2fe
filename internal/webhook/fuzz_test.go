package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"go4.org/netipx"
	admissionv1 "k8s.io/api/admission/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
)

// FuzzServeHTTP feeds arbitrary request bodies to the handler: it must never panic,
// answer 200 with a well-formed review or 400, and never admit a CREATE or UPDATE of
// a ComputeNetwork whose settings do not pass Check (re-decoded here on their own).
func FuzzServeHTTP(f *testing.F) {
	valid := validSpec()
	bad := with(func(s *v1.ComputeNetworkSpec) { s.Gateway = "10.0.0.1"; s.PodCIDR = "192.168.50.0/25" })
	f.Add(review(f, request(admissionv1.Create, &valid, nil)))
	f.Add(review(f, request(admissionv1.Create, &bad, nil)))
	f.Add(review(f, request(admissionv1.Update, &valid, &bad)))
	f.Add(review(f, request(admissionv1.Update, &bad, &valid)))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE",` +
		`"resource":{"group":"edgenet.io","version":"v1alpha1","resource":"computenetworks"},"object":{"spec":{"nodes":-1}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"UPDATE",` +
		`"resource":{"group":"edgenet.io","version":"v1alpha1","resource":"computenetworks"},"object":{"spec":{}},"oldObject":null}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		(&Handler{Nodes: twoNodes}).ServeHTTP(w, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body)))
		if w.Code == http.StatusBadRequest {
			return
		}
		if w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
		var in, out admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("200 for a body that does not decode: %v", err)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("response review does not decode: %v %s", err, w.Body)
		}
		if out.Response.UID != in.Request.UID {
			t.Fatalf("UID %q, want %q", out.Response.UID, in.Request.UID)
		}
		req := in.Request
		ours := req.Resource.Group == v1.GroupName && req.Resource.Resource == v1.ResourceComputeNetworks && req.SubResource == ""
		if !out.Response.Allowed {
			if out.Response.Result == nil || out.Response.Result.Message == "" {
				t.Fatalf("denied without a message")
			}
			return
		}
		if !ours {
			t.Fatalf("admitted %v/%s", req.Resource, req.SubResource)
		}
		if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
			return
		}
		var obj v1.ComputeNetwork
		if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
			t.Fatalf("admitted an object that does not decode: %v", err)
		}
		if _, errs := Check(obj.Spec); len(errs) > 0 {
			t.Fatalf("admitted invalid settings: %v", errs)
		}
		s, _ := SettingsOf(obj.Spec)
		if err := CheckNodes(s, twoNodes.nodes); err != nil {
			t.Fatalf("admitted settings that leave Nodes out: %v", err)
		}
		if req.Operation == admissionv1.Update {
			var old v1.ComputeNetwork
			if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
				t.Fatalf("admitted an update whose old object does not decode: %v", err)
			}
			if old.Spec.PodCIDR != obj.Spec.PodCIDR && (old.Spec.PodCIDR != "" || obj.Spec.PodCIDR != "") {
				o, _ := SettingsOf(old.Spec)
				if o.PodCIDR != s.PodCIDR {
					t.Fatalf("admitted a pod CIDR change %q -> %q", old.Spec.PodCIDR, obj.Spec.PodCIDR)
				}
			}
		}
	})
}

// FuzzAdmitSpec fuzzes the fields of a CREATE: the handler admits exactly what Check
// and CheckNodes accept, a denial names each problem's field path in the message and
// in a cause, and what is admitted passes independent checks (netipx) of the core
// rules: masked site subnet, gateway, node and external ranges inside it, node range
// large enough, no overlaps among the ranges.
func FuzzAdmitSpec(f *testing.F) {
	f.Add(int32(2), "192.168.50.0/24", "192.168.50.1", "192.168.50.10-192.168.50.19", "192.168.50.100-192.168.50.119", "", "172.27.0.0/16", "172.28.0.0/16", int32(26), "cluster.local", "")
	f.Add(int32(3), "192.168.50.0/24", "192.168.60.1", "192.168.50.10-192.168.50.12", "192.168.50.12", "10.0.0.0/8", "172.27.0.0/16", "172.27.0.0/16", int32(26), "Cluster", "127.0.0.1")
	f.Add(int32(1), "2001:db8::/64", "2001:db8::1", "2001:db8::10-2001:db8::1f", "2001:db8::100/120", "", "fd00:27::/56", "fd00:28::/112", int32(64), "cluster.local", "2001:db8::53")
	f.Add(int32(0), "not-a-cidr", "", "x-y", "1.2.3.4-1.2.3.0", "::/0", "", "", int32(-1), "", "fe80::1%eth0")
	f.Fuzz(func(t *testing.T, nodes int32, site, gw, nodeRange, ext0, ext1, pod, svc string, block int32, domain, dns string) {
		spec := v1.ComputeNetworkSpec{Nodes: nodes, SiteSubnet: v1.CIDR(site), Gateway: v1.IPAddress(gw),
			NodeIPRange: v1.IPRange(nodeRange), ExternalServiceIPRanges: []v1.IPRange{v1.IPRange(ext0)},
			PodCIDR: v1.CIDR(pod), ServiceCIDR: v1.CIDR(svc), PodBlockSize: block, ClusterDomain: domain}
		if ext1 != "" {
			spec.ExternalServiceIPRanges = append(spec.ExternalServiceIPRanges, v1.IPRange(ext1))
		}
		if dns != "" {
			spec.UpstreamDNS = []v1.IPAddress{v1.IPAddress(dns)}
		}
		resp := (&Handler{Nodes: fakeNodes{}}).Admit(context.Background(), request(admissionv1.Create, &spec, nil))
		s, errs := Check(spec)
		if resp.Allowed != (len(errs) == 0) {
			t.Fatalf("allowed=%v but Check gives %d errors: %v", resp.Allowed, len(errs), errs)
		}
		if !resp.Allowed {
			causes := resp.Result.Details.Causes
			if resp.Result.Code != 422 || len(causes) != len(errs) {
				t.Fatalf("code %d with %d causes for %d errors", resp.Result.Code, len(causes), len(errs))
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Field, "spec.") || causes[i].Field != e.Field || !strings.Contains(resp.Result.Message, e.Field+": ") {
					t.Fatalf("error %d %q: cause %q, message %q", i, e.Field, causes[i].Field, resp.Result.Message)
				}
			}
			return
		}
		// Independent re-checks of what was admitted.
		p, err := netip.ParsePrefix(site)
		if err != nil || p != p.Masked() {
			t.Fatalf("admitted site subnet %q", site)
		}
		g, err := netip.ParseAddr(gw)
		if err != nil || !p.Contains(g) {
			t.Fatalf("admitted gateway %q outside %s", gw, p)
		}
		var set netipx.IPSetBuilder
		total := uint64(0)
		ranges := append([]computenet.Range{s.NodeIPs}, s.ExternalIPs...)
		for _, r := range ranges {
			ir := netipx.IPRangeFrom(r.From, r.To)
			if !ir.IsValid() || !p.Contains(r.From) || !p.Contains(r.To) || ir.Contains(g) {
				t.Fatalf("admitted range %v (site %s, gateway %s)", r, p, g)
			}
			set.AddRange(ir)
			total += r.Size()
		}
		for _, c := range []netip.Prefix{s.PodCIDR, s.ServiceCIDR} {
			set.AddPrefix(c)
			total += computenet.PrefixRange(c).Size()
		}
		ips, _ := set.IPSet()
		var union uint64
		for _, r := range ips.Ranges() {
			union += computenet.Range{From: r.From(), To: r.To()}.Size()
		}
		if union != total {
			t.Fatalf("admitted overlapping ranges: union %d addresses, sum %d", union, total)
		}
		if s.NodeIPs.Size() < uint64(nodes)+1 {
			t.Fatalf("admitted %d nodes in %v", nodes, s.NodeIPs)
		}
	})
}
