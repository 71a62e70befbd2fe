package appliance

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"edgenet.io/edgenet/internal/computenet"
)

func TestSettingsFileOverridesDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(path, []byte("nodes: 3\nsiteSubnet: 10.20.0.0/24\ngateway: 10.20.0.1\nnodeIPRange: 10.20.0.10-10.20.0.13\nexternalServiceIPRanges: [10.20.0.200-10.20.0.220]\n"), 0o644)
	s, err := LoadSettingsFile(path, computenet.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if s.Nodes != 3 || s.SiteSubnet != netip.MustParsePrefix("10.20.0.0/24") || s.NodeIPs.String() != "10.20.0.10-10.20.0.13" ||
		len(s.ExternalIPs) != 1 || s.ExternalIPs[0].String() != "10.20.0.200-10.20.0.220" {
		t.Errorf("got %+v", s)
	}
	if s.PodCIDR != computenet.DefaultPodCIDR || s.ClusterDomain != "cluster.local" {
		t.Errorf("defaults lost: %+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("valid file refused: %v", err)
	}
}

// Every malformed field is reported with its path, and the base is returned unchanged.
func TestSettingsFileReportsEveryBadField(t *testing.T) {
	f := FileSettings{SiteSubnet: "10.0.0.0/33", Gateway: "x", NodeIPRange: "1.2.3.4-", ExternalServiceIPRanges: []string{"ok", "10.0.0.1-10.0.0.2"}, UpstreamDNS: []string{"nope"}}
	base := computenet.Defaults()
	s, err := f.Apply(base)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, field := range []string{"spec.siteSubnet", "spec.gateway", "spec.nodeIPRange", "spec.externalServiceIPRanges[0]", "spec.upstreamDNS[0]"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error misses %s:\n%v", field, err)
		}
	}
	if s.SiteSubnet != base.SiteSubnet || s.NodeIPs != base.NodeIPs {
		t.Errorf("base changed: %+v", s)
	}
	if _, err := LoadSettingsFile(writeTemp(t, "nodes: 2\nbogus: 1\n"), base); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown field not refused: %v", err)
	}
}

func writeTemp(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientIPAvoidsEveryRange(t *testing.T) {
	s := computenet.Defaults()
	s.ExternalIPs = []computenet.Range{{From: netip.MustParseAddr("192.168.50.250"), To: netip.MustParseAddr("192.168.50.254")}}
	ips, err := freeSiteIPs(s, 2)
	if err != nil || ips[0] != netip.MustParseAddr("192.168.50.249") || ips[1] != netip.MustParseAddr("192.168.50.248") {
		t.Errorf("freeSiteIPs = %v, %v; want 192.168.50.249, .248", ips, err)
	}
}
