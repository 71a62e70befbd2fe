package webui

import (
	"net/netip"
	"reflect"
	"testing"

	v1 "edgenet.io/edgenet/api/v1alpha1"
)

func TestBuildPreview(t *testing.T) {
	ip := netip.MustParseAddr
	svcs := []LBService{
		{Key: "demo/web", IPs: []netip.Addr{ip("192.168.50.100")}},
		{Key: "demo/api", IPs: []netip.Addr{ip("192.168.50.119")}},
		{Key: "demo/waiting", Pending: "NoFreeAddress"},
		{Key: "edgenet-system/edgenet-ui", IPs: []netip.Addr{ip("192.168.50.19")}}, // other pool: never affected
	}
	tests := []struct {
		name           string
		edit           func(*v1.ComputeNetworkSpec)
		wantApplicable bool
		wantChanged    []string
		wantOutside    []ServiceImpact
		wantPool       PoolChange
		wantRefusals   []string
	}{
		{name: "no change",
			edit: func(*v1.ComputeNetworkSpec) {}, wantApplicable: true,
			wantPool: PoolChange{SizeBefore: 20, SizeAfter: 20, UsedAfter: 2, FreeAfter: 18}},
		{name: "widen the external range",
			edit: func(s *v1.ComputeNetworkSpec) {
				s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.100 - 192.168.50.149"}
			},
			wantApplicable: true, wantChanged: []string{"spec.externalServiceIPRanges"},
			wantPool: PoolChange{SizeBefore: 20, SizeAfter: 50, UsedAfter: 2, FreeAfter: 48}},
		{name: "narrowing leaves a Service outside",
			edit: func(s *v1.ComputeNetworkSpec) {
				s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.100-192.168.50.109"}
			},
			wantApplicable: true, wantChanged: []string{"spec.externalServiceIPRanges"},
			wantOutside: []ServiceImpact{{Service: "demo/api", IP: "192.168.50.119"}},
			wantPool:    PoolChange{SizeBefore: 20, SizeAfter: 10, UsedAfter: 1, FreeAfter: 9}},
		{name: "pod CIDR is immutable",
			edit:        func(s *v1.ComputeNetworkSpec) { s.PodCIDR = "172.29.0.0/16" },
			wantChanged: []string{"spec.podCIDR"}, wantRefusals: []string{"spec.podCIDR"},
			wantPool: PoolChange{SizeBefore: 20, SizeAfter: 20, UsedAfter: 2, FreeAfter: 18}},
		{name: "invalid range is refused and sizes nothing",
			edit: func(s *v1.ComputeNetworkSpec) {
				s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.200-192.168.50.100"}
			},
			wantChanged: []string{"spec.externalServiceIPRanges"}, wantRefusals: []string{"spec.externalServiceIPRanges[0]"},
			wantPool: PoolChange{SizeBefore: 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oldSpec := defaultSpec()
			newSpec := defaultSpec()
			tt.edit(&newSpec)
			old, err := SettingsFromSpec(oldSpec)
			if err != nil {
				t.Fatal(err)
			}
			next, nextErr := SettingsFromSpec(newSpec)
			p := BuildPreview(oldSpec, newSpec, old, next, nextErr, svcs)
			if p.Applicable != tt.wantApplicable {
				t.Errorf("applicable %v, want %v (refusals %v)", p.Applicable, tt.wantApplicable, p.Refusals)
			}
			var changed, refused []string
			for _, c := range p.Changes {
				changed = append(changed, c.Field)
			}
			for _, r := range p.Refusals {
				refused = append(refused, r.Field)
			}
			if !reflect.DeepEqual(changed, tt.wantChanged) {
				t.Errorf("changed %v, want %v", changed, tt.wantChanged)
			}
			if !reflect.DeepEqual(refused, tt.wantRefusals) {
				t.Errorf("refused %v, want %v", refused, tt.wantRefusals)
			}
			if len(tt.wantOutside) == 0 {
				tt.wantOutside = []ServiceImpact{}
			}
			if !reflect.DeepEqual(p.ServicesOutside, tt.wantOutside) {
				t.Errorf("outside %v, want %v", p.ServicesOutside, tt.wantOutside)
			}
			if p.Pool != tt.wantPool {
				t.Errorf("pool %+v, want %+v", p.Pool, tt.wantPool)
			}
			if !reflect.DeepEqual(p.PendingServices, []string{"demo/waiting"}) {
				t.Errorf("pending %v", p.PendingServices)
			}
		})
	}
}

func TestPreviewShowsNormalizedValues(t *testing.T) {
	oldSpec, newSpec := defaultSpec(), defaultSpec()
	newSpec.ExternalServiceIPRanges = []v1.IPRange{" 192.168.50.100 - 192.168.50.149 "}
	old, _ := SettingsFromSpec(oldSpec)
	next, err := SettingsFromSpec(newSpec)
	if err != nil {
		t.Fatal(err)
	}
	p := BuildPreview(oldSpec, newSpec, old, next, nil, nil)
	want := []FieldChange{{"spec.externalServiceIPRanges", "192.168.50.100-192.168.50.119", "192.168.50.100-192.168.50.149"}}
	if !reflect.DeepEqual(p.Changes, want) {
		t.Fatalf("changes %+v, want %+v", p.Changes, want)
	}
}
