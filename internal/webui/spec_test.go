package webui

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/webhook"
)

func defaultSpec() v1.ComputeNetworkSpec { return webhook.SpecOf(computenet.Defaults()) }

func TestSettingsFromSpec(t *testing.T) {
	tests := []struct {
		name string
		edit func(*v1.ComputeNetworkSpec)
		// wantFields are the field paths of the errors, in order; nil means valid.
		wantFields []string
		wantReason string // substring of the first error's reason
	}{
		{name: "defaults", edit: func(*v1.ComputeNetworkSpec) {}},
		{name: "empty defaulted fields take the CRD defaults", edit: func(s *v1.ComputeNetworkSpec) {
			s.PodCIDR, s.ServiceCIDR, s.ClusterDomain, s.PodBlockSize = "", "", "", 0
		}},
		{name: "unparsable external range is reported once, with its index",
			edit: func(s *v1.ComputeNetworkSpec) {
				s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.100-192.168.50.119", "192.168.50.300"}
			},
			wantFields: []string{"spec.externalServiceIPRanges[1]"}},
		{name: "range outside the site subnet",
			edit:       func(s *v1.ComputeNetworkSpec) { s.ExternalServiceIPRanges = []v1.IPRange{"10.0.0.1-10.0.0.5"} },
			wantFields: []string{"spec.externalServiceIPRanges[0]"}, wantReason: "inside the site subnet"},
		{name: "bad gateway text",
			edit:       func(s *v1.ComputeNetworkSpec) { s.Gateway = "gw" },
			wantFields: []string{"spec.gateway"}, wantReason: "not an IP address"},
		{name: "errors come in form order",
			edit: func(s *v1.ComputeNetworkSpec) {
				s.UpstreamDNS = []v1.IPAddress{"x"}
				s.SiteSubnet = "nonsense"
			},
			wantFields: []string{"spec.siteSubnet", "spec.upstreamDNS[0]"}},
		{name: "too few node IPs",
			edit:       func(s *v1.ComputeNetworkSpec) { s.Nodes = 10 },
			wantFields: []string{"spec.nodeIPRange"}, wantReason: "10 nodes need 11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := defaultSpec()
			tt.edit(&spec)
			_, err := SettingsFromSpec(spec)
			if tt.wantFields == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var fes computenet.FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("want FieldErrors, got %v", err)
			}
			var got []string
			for _, e := range fes {
				got = append(got, e.Field)
			}
			if !reflect.DeepEqual(got, tt.wantFields) {
				t.Fatalf("fields %v, want %v (errors: %v)", got, tt.wantFields, err)
			}
			if !strings.Contains(fes[0].Reason, tt.wantReason) {
				t.Errorf("reason %q does not say %q", fes[0].Reason, tt.wantReason)
			}
		})
	}
}

func TestSpecRoundTrip(t *testing.T) {
	s := computenet.Defaults()
	got, err := SettingsFromSpec(webhook.SpecOf(s))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip changed the settings:\n got %+v\nwant %+v", got, s)
	}
}

// FuzzSettingsFromSpec: any text in any field gives settings or field errors, never a panic, and every
// error names a spec field.
func FuzzSettingsFromSpec(f *testing.F) {
	d := defaultSpec()
	f.Add(int32(2), string(d.SiteSubnet), string(d.Gateway), string(d.NodeIPRange), string(d.ExternalServiceIPRanges[0]), string(d.PodCIDR), string(d.ServiceCIDR), int32(26), "cluster.local", "")
	f.Fuzz(func(t *testing.T, nodes int32, site, gw, nodeIPs, ext, pod, svc string, block int32, domain, dns string) {
		spec := v1.ComputeNetworkSpec{Nodes: nodes, SiteSubnet: v1.CIDR(site), Gateway: v1.IPAddress(gw), NodeIPRange: v1.IPRange(nodeIPs),
			PodCIDR: v1.CIDR(pod), ServiceCIDR: v1.CIDR(svc), PodBlockSize: block, ClusterDomain: domain}
		for _, x := range strings.Split(ext, ",") {
			spec.ExternalServiceIPRanges = append(spec.ExternalServiceIPRanges, v1.IPRange(x))
		}
		if dns != "" {
			spec.UpstreamDNS = append(spec.UpstreamDNS, v1.IPAddress(dns))
		}
		s, err := SettingsFromSpec(spec)
		if err == nil {
			// Valid settings survive the trip through the spec unchanged.
			again, err := SettingsFromSpec(webhook.SpecOf(s))
			if err != nil || !reflect.DeepEqual(again, s) {
				t.Fatalf("valid %+v does not round-trip: %v", s, err)
			}
			return
		}
		var fes computenet.FieldErrors
		if !errors.As(err, &fes) || len(fes) == 0 {
			t.Fatalf("error is not FieldErrors: %v", err)
		}
		for _, e := range fes {
			if !strings.HasPrefix(e.Field, "spec.") {
				t.Fatalf("error without a spec field path: %+v", e)
			}
		}
	})
}

// TestAssetsHaveNoInlineScript: the CSP allows scripts from files only, so a page with inline script or an
// event-handler attribute would break silently in the browser.
func TestAssetsHaveNoInlineScript(t *testing.T) {
	ents, err := assets.ReadDir("assets")
	if err != nil {
		t.Fatal(err)
	}
	pages := 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".html") {
			continue
		}
		pages++
		b, _ := assets.ReadFile("assets/" + e.Name())
		html := strings.ToLower(string(b))
		for i := 0; ; {
			j := strings.Index(html[i:], "<script")
			if j < 0 {
				break
			}
			tag := html[i+j : i+j+strings.Index(html[i+j:], ">")]
			if !strings.Contains(tag, "src=") {
				t.Errorf("%s: inline <script>", e.Name())
			}
			i += j + 1
		}
		for _, attr := range []string{" onclick=", " onload=", " onsubmit=", " oninput=", " onchange=", "javascript:", " style="} {
			if strings.Contains(html, attr) {
				t.Errorf("%s: %q is blocked by the CSP", e.Name(), strings.TrimSpace(attr))
			}
		}
	}
	if pages != 4 {
		t.Errorf("%d pages, want 4", pages)
	}
}
